#!/usr/bin/env python3
"""Drives the cluster's live web view in headless Chromium through chromedriver (W3C WebDriver
over HTTP, Python's standard library only) and checks what the page drew against the
cluster's own view (its /snapshot JSON). Called by scripts/web-e2e.sh, which starts the
cluster and chromedriver on 127.0.0.1 and cleans up.

Passes when, within --wait seconds, the page shows:
  - exactly the cluster's nodes (--nodes of them): the <svg id="graph"> data-node-ids and the
    <g id="node-ID"> elements equal the node ids in /snapshot;
  - exactly the cluster's partial-view edges: the <line id="edge-FROM-TO"> elements equal the
    (node, peer) pairs of every node's view in /snapshot, data-edge-count agrees, and there
    are nodes x (nodes - 1) of them (the cluster's full membership), no peer outside it;
  - the selected feed's eager links (source -> node) equal those in /snapshot, one for every
    node but the author (the feed's tree reached everyone);
  - a live server-sent-events connection (status "live"), and no request to another origin.
Then saves a screenshot. Exits 1 with the last mismatch otherwise.
"""

import argparse
import base64
import json
import sys
import time
import urllib.request

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Containers often have a small /dev/shm; a crash there would look like a page failure.
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
]

# Runs in the page: what it drew, as the test reads it.
PAGE_STATE_JS = """
const svg = document.getElementById('graph');
const ids = (sel) => [...document.querySelectorAll(sel)].map((e) => e.id);
return {
  ready: document.body.dataset.ready,
  status: document.getElementById('status').textContent,
  nodeCount: svg.dataset.nodeCount,
  remoteCount: svg.dataset.remoteCount,
  edgeCount: svg.dataset.edgeCount,
  eagerCount: svg.dataset.eagerCount,
  nodeIds: svg.dataset.nodeIds,
  nodes: ids('#graph g.node'),
  edges: ids('#graph line.edge.membership'),
  eager: ids('#graph line.edge.eager'),
  feed: document.getElementById('feed-select').value,
  rows: document.querySelectorAll('#nodes-table tbody tr').length,
  resources: performance.getEntriesByType('resource').map((e) => e.name),
};
"""


def http_json(method, url, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def expected_view(cluster, feed):
    nodes = cluster["nodes"]
    ids = {n["node_id"] for n in nodes}
    edges = {
        f"edge-{n['node_id']}-{v['node']}"
        for n in nodes
        for v in n["view"]
        if v.get("node") and v["node"] != n["node_id"]
    }
    eager = set()
    for n in nodes:
        for f in n["feeds"]:
            if f["feed"] == feed and f.get("source"):
                eager.add(f"eager-{f['source']}-{n['node_id']}")
    return sorted(ids), edges, eager


def compare(page, cluster, want_nodes, origin):
    ids, edges, eager = expected_view(cluster, page["feed"])
    if len(ids) != want_nodes:
        return f"the cluster reports {len(ids)} nodes, expected {want_nodes}"
    if page["ready"] != "true":
        return "the page has drawn no snapshot yet"
    if not page["status"].startswith("live"):
        return f"no live event stream (status {page['status']!r})"
    if page["nodeIds"].split(",") != ids or page["nodeCount"] != str(len(ids)):
        return f"page nodes {page['nodeIds']} ({page['nodeCount']}) != cluster nodes {ids}"
    if sorted(page["nodes"]) != sorted(f"node-{i}" for i in ids) or page["remoteCount"] != "0":
        return f"node elements {page['nodes']} != cluster nodes {ids}"
    if len(edges) != want_nodes * (want_nodes - 1):
        return f"the cluster's views hold {len(edges)} edges, expected full membership"
    if set(page["edges"]) != edges or page["edgeCount"] != str(len(edges)):
        return (
            f"page edges ({len(page['edges'])}, data-edge-count {page['edgeCount']}) "
            f"!= the cluster's {len(edges)}: {sorted(set(page['edges']) ^ edges)[:4]}"
        )
    if not page["feed"]:
        return "no feed selected"
    if len(eager) != want_nodes - 1:
        return f"feed {page['feed'][:8]} has {len(eager)} eager links so far"
    if set(page["eager"]) != eager or page["eagerCount"] != str(len(eager)):
        return f"page eager links {sorted(page['eager'])} != cluster {sorted(eager)}"
    if page["rows"] != want_nodes:
        return f"the nodes table has {page['rows']} rows"
    foreign = [r for r in page["resources"] if not r.startswith(origin)]
    if foreign:
        return f"requests to another origin: {foreign}"
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--driver", required=True)
    parser.add_argument("--page", required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--wait", type=float, default=90)
    args = parser.parse_args()

    capabilities = {
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": args.chromium,
                    "args": CHROMIUM_FLAGS + [f"--user-data-dir={args.profile}"],
                },
            }
        }
    }
    session = http_json("POST", f"{args.driver}/session", capabilities)["value"]["sessionId"]
    base = f"{args.driver}/session/{session}"
    try:
        http_json("POST", f"{base}/url", {"url": args.page})
        deadline = time.monotonic() + args.wait
        attempts = 0
        while True:
            attempts += 1
            page = http_json("POST", f"{base}/execute/sync", {"script": PAGE_STATE_JS, "args": []})[
                "value"
            ]
            with urllib.request.urlopen(f"{args.page}snapshot", timeout=30) as response:
                cluster = json.load(response)
            problem = compare(page, cluster, args.nodes, args.page)
            if problem is None:
                break
            if time.monotonic() > deadline:
                print(f"web-e2e: FAILED after {attempts} checks: {problem}", file=sys.stderr)
                return 1
            time.sleep(1)
        shot = http_json("GET", f"{base}/screenshot")["value"]
        with open(args.screenshot, "wb") as out:
            out.write(base64.b64decode(shot))
        print(
            f"web-e2e: the page drew {page['nodeCount']} nodes "
            f"({', '.join(i[:8] for i in page['nodeIds'].split(','))}), "
            f"{page['edgeCount']} partial-view edges and {page['eagerCount']} eager links of "
            f"feed {page['feed'][:8]}, equal to the cluster's /snapshot "
            f"(after {attempts} checks; status: {page['status']})"
        )
        return 0
    finally:
        try:
            http_json("DELETE", base, timeout=30)
        except OSError as err:
            print(f"web-e2e: closing the browser session: {err}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
