// The live view of a gossip node or local cluster. Plain JS, no external requests: the
// snapshot comes from /snapshot at load, then from server-sent events on /events.
//
// What is drawn is exposed for tests: the <svg id="graph"> carries data-node-count (nodes
// that report a snapshot), data-remote-count (peers drawn only because a view or a feed
// names them), data-edge-count (directed partial-view edges), data-node-ids (reporting
// nodes, sorted, comma-separated), data-eager-count and data-lazy-count (links of the
// selected feed); each node is a <g id="node-ID"> (class "remote" for the others), each
// edge a <line id="edge-FROM-TO">, each eager link a <line id="eager-SOURCE-NODE"> (full
// hex ids); <body data-ready="true"> once a snapshot with at least one node is drawn.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const SIZE = 600;
const short = (id) => (id ? id.slice(0, 8) : "-");
let latest = null;
let chosenFeed = "";
let feedTouched = false;

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  row.appendChild(td);
  return td;
}

// Circle layout, nodes in id order, so a node keeps its place between updates.
function layout(ids) {
  const pos = new Map();
  const r = ids.length > 1 ? SIZE / 2 - 60 : 0;
  ids.forEach((id, i) => {
    const a = (2 * Math.PI * i) / ids.length - Math.PI / 2;
    pos.set(id, { x: SIZE / 2 + r * Math.cos(a), y: SIZE / 2 + r * Math.sin(a) });
  });
  return pos;
}

// A node is drawn dead when any other node's failure detector has convicted it.
function deadSet(nodes) {
  const dead = new Set();
  for (const n of nodes) for (const p of n.peers || []) if (!p.live) dead.add(p.node);
  return dead;
}

// Peers that appear in a view or as a feed source without reporting a snapshot of their own
// (a single node's page shows its peers this way) are drawn as "remote" nodes.
function remotePeers(nodes, drawn) {
  const remote = new Set();
  for (const n of nodes) {
    for (const v of n.view || []) if (v.node && !drawn.has(v.node)) remote.add(v.node);
    for (const f of n.feeds || []) if (f.source && !drawn.has(f.source)) remote.add(f.source);
  }
  return [...remote].sort();
}

function drawGraph(nodes) {
  const svg = document.getElementById("graph");
  const ids = nodes.map((n) => n.node_id).sort();
  const reporting = new Set(ids);
  const remote = remotePeers(nodes, reporting);
  const pos = layout([...ids, ...remote]);
  const dead = deadSet(nodes);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const edges = el("g", { id: "edges" });
  const tree = el("g", { id: "tree" });
  const verts = el("g", { id: "nodes" });
  svg.append(edges, tree, verts);

  let edgeCount = 0;
  for (const n of nodes) {
    for (const v of n.view || []) {
      if (!v.node || v.node === n.node_id) continue;
      const a = pos.get(n.node_id), b = pos.get(v.node);
      edges.appendChild(el("line", {
        id: `edge-${n.node_id}-${v.node}`, class: "edge membership",
        x1: a.x, y1: a.y, x2: b.x, y2: b.y,
      }));
      edgeCount++;
    }
  }

  let eager = 0, lazy = 0;
  if (chosenFeed) {
    const lazySeen = new Set();
    for (const n of nodes) {
      const f = (n.feeds || []).find((x) => x.feed === chosenFeed);
      if (!f) continue;
      if (f.source) {
        const a = pos.get(f.source), b = pos.get(n.node_id);
        const mx = a.x + (b.x - a.x) * 0.82, my = a.y + (b.y - a.y) * 0.82;
        tree.appendChild(el("line", {
          id: `eager-${f.source}-${n.node_id}`, class: "edge eager",
          x1: a.x, y1: a.y, x2: b.x, y2: b.y,
        }));
        tree.appendChild(el("circle", { cx: mx, cy: my, r: 5, fill: "#d9480f" }));
        eager++;
      }
      for (const p of f.lazy || []) {
        if (!pos.has(p)) continue;
        const key = [n.node_id, p].sort().join("-");
        if (lazySeen.has(key)) continue;
        lazySeen.add(key);
        const a = pos.get(n.node_id), b = pos.get(p);
        tree.appendChild(el("line", {
          id: `lazy-${key}`, class: "edge lazy", x1: a.x, y1: a.y, x2: b.x, y2: b.y,
        }));
        lazy++;
      }
    }
  }

  const byId = new Map(nodes.map((n) => [n.node_id, n]));
  for (const id of [...ids, ...remote]) {
    const p = pos.get(id);
    const n = byId.get(id);
    const state = dead.has(id) ? "dead" : "live";
    const g = el("g", {
      id: `node-${id}`,
      class: n ? `node ${state}` : `node remote ${state}`,
      "data-view-size": n ? (n.view || []).length : "",
    });
    const radius = chosenFeed && chosenFeed === id ? 24 : n ? 18 : 12;
    g.appendChild(el("circle", { cx: p.x, cy: p.y, r: radius }));
    g.appendChild(el("text", { x: p.x, y: p.y + radius + 18 }, short(id)));
    const title = n
      ? `${id}\nudp ${n.addr}\nview ${(n.view || []).length}`
      : `${id}\n(a peer; reports no snapshot here)`;
    g.appendChild(el("title", {}, title));
    verts.appendChild(g);
  }

  svg.setAttribute("data-node-count", String(ids.length));
  svg.setAttribute("data-remote-count", String(remote.length));
  svg.setAttribute("data-edge-count", String(edgeCount));
  svg.setAttribute("data-node-ids", ids.join(","));
  svg.setAttribute("data-eager-count", String(eager));
  svg.setAttribute("data-lazy-count", String(lazy));
  document.getElementById("summary").textContent =
    `${ids.length} nodes` + (remote.length ? ` (+${remote.length} peers)` : "") +
    `, ${edgeCount} view edges` +
    (chosenFeed ? `, feed ${short(chosenFeed)}: ${eager} eager, ${lazy} lazy` : "");
}

function fillFeeds(nodes) {
  const select = document.getElementById("feed-select");
  const feeds = new Set();
  for (const n of nodes) for (const f of n.feeds || []) feeds.add(f.feed);
  const list = [...feeds].sort();
  if (!feedTouched && !chosenFeed && list.length) chosenFeed = list[0];
  const have = [...select.options].map((o) => o.value).join(",");
  if (have !== ["", ...list].join(",")) {
    select.innerHTML = "";
    select.appendChild(new Option("(none)", ""));
    for (const f of list) select.appendChild(new Option(short(f), f));
  }
  select.value = chosenFeed;
}

function fillTables(nodes) {
  const ids = nodes.map((n) => n.node_id).sort();
  const byId = new Map(nodes.map((n) => [n.node_id, n]));

  const tbody = document.querySelector("#nodes-table tbody");
  tbody.innerHTML = "";
  for (const id of ids) {
    const n = byId.get(id), c = n.counters || {};
    const row = document.createElement("tr");
    cell(row, short(id)).className = "mono";
    cell(row, n.addr);
    cell(row, (n.view || []).length);
    cell(row, c.broadcast_delivered);
    cell(row, c.broadcast_duplicates);
    cell(row, (c.rmr_broadcast || 0).toFixed(2));
    cell(row, (c.flow_rate_per_sec || 0).toFixed(1));
    const m = cell(row, "");
    if (n.http) {
      const a = document.createElement("a");
      a.href = `http://${n.http}/metrics`;
      a.textContent = n.http;
      m.appendChild(a);
    }
    tbody.appendChild(row);
  }

  const phiHead = document.querySelector("#phi-table thead");
  const phiBody = document.querySelector("#phi-table tbody");
  phiHead.innerHTML = "";
  phiBody.innerHTML = "";
  // Columns: the reporting nodes, then any other peer a failure detector tracks.
  const columns = [...ids];
  const extra = new Set();
  for (const n of nodes) for (const p of n.peers || []) if (!byId.has(p.node)) extra.add(p.node);
  columns.push(...[...extra].sort());
  const hr = document.createElement("tr");
  cell(hr, "");
  for (const id of columns) cell(hr, short(id));
  phiHead.appendChild(hr);
  for (const id of ids) {
    const row = document.createElement("tr");
    cell(row, short(id));
    const peers = new Map((byId.get(id).peers || []).map((p) => [p.node, p]));
    for (const other of columns) {
      const p = peers.get(other);
      if (!p) { cell(row, other === id ? "·" : "–", "phi"); continue; }
      const phi = p.phi === null || p.phi === undefined ? "…" : p.phi.toFixed(2);
      cell(row, p.live ? phi : `dead ${phi}`, `phi ${p.live ? (p.phi > 4 ? "warn" : "") : "dead"}`);
    }
    phiBody.appendChild(row);
  }

  const feedBody = document.querySelector("#feeds-table tbody");
  feedBody.innerHTML = "";
  for (const id of ids) {
    for (const f of byId.get(id).feeds || []) {
      if (chosenFeed && f.feed !== chosenFeed) continue;
      const row = document.createElement("tr");
      cell(row, short(id));
      cell(row, short(f.feed));
      cell(row, f.latest);
      cell(row, f.lag);
      cell(row, short(f.source));
      for (const list of [f.eager || [], f.lazy || []]) {
        const text = list.map(short).join(" ");
        cell(row, text, "list").title = text;
      }
      feedBody.appendChild(row);
    }
  }

  const all = [];
  for (const n of nodes) for (const d of n.deliveries || []) all.push([n.node_id, d]);
  all.sort((a, b) => b[1].at_ms - a[1].at_ms);
  const hops = new Map();
  for (const [, d] of all) hops.set(d.hop, (hops.get(d.hop) || 0) + 1);
  const maxCount = Math.max(1, ...hops.values());
  const hist = document.getElementById("hops");
  hist.innerHTML = "";
  for (const h of [...hops.keys()].sort((a, b) => a - b)) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.height = `${Math.max(2, (44 * hops.get(h)) / maxCount)}px`;
    bar.innerHTML = `<b>${hops.get(h)}</b><span>hop ${h}</span>`;
    hist.appendChild(bar);
  }
  const dBody = document.querySelector("#deliveries-table tbody");
  dBody.innerHTML = "";
  for (const [at, d] of all.slice(0, 15)) {
    const row = document.createElement("tr");
    cell(row, short(at));
    cell(row, d.id.slice(0, 12));
    cell(row, short(d.origin));
    cell(row, d.hop);
    dBody.appendChild(row);
  }
}

function render(snapshot) {
  latest = snapshot;
  const nodes = snapshot.nodes || [];
  fillFeeds(nodes);
  drawGraph(nodes);
  fillTables(nodes);
  if (nodes.length) document.body.setAttribute("data-ready", "true");
}

function setStatus(text, cls) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = `status ${cls}`;
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("snapshot", (e) => {
    render(JSON.parse(e.data));
    setStatus(`live · updated ${new Date().toLocaleTimeString()}`, "ok");
  });
  source.onerror = () => setStatus("disconnected; retrying…", "err");
}

document.getElementById("feed-select").addEventListener("change", (e) => {
  chosenFeed = e.target.value;
  feedTouched = true;
  if (latest) render(latest);
});

fetch("/snapshot", { cache: "no-store" })
  .then((r) => r.json())
  .then(render)
  .catch(() => setStatus("no snapshot yet", "err"))
  .finally(connect);
