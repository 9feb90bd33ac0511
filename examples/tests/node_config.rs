//! `gossip-node`'s configuration and logs, run as a user would: `--config` files (good, bad,
//! unknown fields), `--print-default-config`, command-line overrides, `--help`, and the
//! volume of stderr at the default log level under a burst of traffic. Everything binds
//! 127.0.0.1; every wait has a timeout and every child is killed when its test ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use clap::CommandFactory;
use gossip_actors::NodeConfig;
use gossip_examples::config::{DEFAULT_BIND, DEFAULT_CLUSTER, DiscoveryKind, FileConfig};
use gossip_examples::node::NodeArgs;
use serde_json::Value;

mod support;
use support::wait_with_timeout;

const NODE: &str = env!("CARGO_BIN_EXE_gossip-node");

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gossip-node-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Runs `gossip-node` with `args` and no stdin; returns (status, stdout, stderr).
fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(NODE)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gossip-node starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("exits in 60 s");
    (
        status,
        out.join().expect("stdout"),
        err.join().expect("stderr"),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path.to_string_lossy().into_owned()
}

#[test]
fn an_invalid_value_is_refused_at_start_naming_the_field_and_range() {
    let dir = scratch("bad");
    let bad = write(
        &dir,
        "bad.toml",
        "passphrase = \"x\"\n[dissemination]\nfanout = 0\n",
    );
    let (status, stdout, stderr) = run(&["--config", &bad]);
    assert!(!status.success(), "{status}");
    assert_eq!(
        stderr.trim(),
        "gossip-node: invalid configuration: dissemination.fanout is 0 but must be at least 1"
    );
    assert!(stdout.is_empty(), "nothing started: {stdout}");

    let bad = write(&dir, "flow.toml", "[state.flow]\ndecrease_percent = 100\n");
    let (status, _, stderr) = run(&["--config", &bad, "--passphrase", "x"]);
    assert!(!status.success());
    assert!(
        stderr.contains("state.flow.decrease_percent is 100 but must be in 1..=99"),
        "{stderr}"
    );

    // A flag is checked the same way.
    let (status, _, stderr) = run(&["--passphrase", "x", "--max-datagram", "100"]);
    assert!(!status.success());
    assert!(
        stderr.contains("max_datagram is 100 but must be in 128..=65507"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_field_is_refused_naming_it() {
    let dir = scratch("unknown");
    let bad = write(&dir, "bad.toml", "[dissemination]\nfanot = 4\n");
    let (status, _, stderr) = run(&["--config", &bad, "--passphrase", "x"]);
    assert!(!status.success());
    assert!(
        stderr.starts_with(&format!(
            "gossip-node: {bad}: dissemination.fanot: unknown field `fanot`, expected one of `fanout`"
        )),
        "{stderr}"
    );
    let (status, _, stderr) = run(&["--passphrase", "x", "--set", "tree.colour=3"]);
    assert!(!status.success());
    assert!(
        stderr.contains("tree.colour: unknown field `colour`"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn print_default_config_is_complete_and_parses_back_to_the_defaults() {
    let (status, stdout, stderr) = run(&["--print-default-config"]);
    assert!(status.success(), "{stderr}");
    let parsed = FileConfig::from_toml(&stdout, "printed").expect("the printed file parses");
    assert_eq!(parsed, FileConfig::default());
    for (path, ..) in gossip_examples::config::FIELD_DOCS {
        let key = path.rsplit('.').next().unwrap_or(path);
        assert!(
            stdout.contains(&format!("\n{key} = ")) || stdout.contains(&format!("\n# {key} = ")),
            "{path} missing"
        );
    }
    for section in [
        "[dissemination]",
        "[tree]",
        "[state]",
        "[state.flow]",
        "[failure]",
        "[protocols]",
        "[fault]",
        "[cyclon]",
    ] {
        assert!(
            stdout.contains(&format!("\n{section}\n")),
            "{section} missing"
        );
    }
    assert!(stdout.contains("# Unit: ms. Default: 300. Range: > 0.\nack_timeout = 300\n"));
}

/// A node started from a file alone (key included) runs, and the file's values are used.
#[test]
fn a_node_runs_from_a_config_file() {
    let dir = scratch("good");
    let good = write(
        &dir,
        "node.toml",
        "bind = \"127.0.0.1:0\"\npassphrase = \"from the file\"\ndiscovery = \"cyclon\"\n\
         [dissemination]\nfanout = 4\n[cyclon]\nview_size = 10\n",
    );
    let mut child = Command::new(NODE)
        .args(["--config", &good])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gossip-node starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    writeln!(stdin, "quit").expect("write quit");
    let lines: Vec<String> = stdout.lines().map_while(Result::ok).collect();
    let status = wait_with_timeout(&mut child, Duration::from_secs(60)).expect("exits");
    assert!(status.success(), "{status}: {lines:?}");
    let ready: Value = serde_json::from_str(&lines[0]).expect("ready line");
    assert_eq!(ready["event"], "ready");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("{\"event\":\"bye\"}")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn command_line_flags_override_the_file() {
    let dir = scratch("override");
    let file = write(
        &dir,
        "node.toml",
        "bind = \"127.0.0.1:7100\"\nseeds = [\"127.0.0.1:7101\"]\ncluster = \"file\"\n\
         passphrase = \"file secret\"\nmax_datagram = 1500\n[fault]\nloss = 0.25\n\
         [dissemination]\nfanout = 5\n",
    );
    let parse = |extra: &[&str]| {
        let mut args = vec!["gossip-node", "--config", file.as_str()];
        args.extend_from_slice(extra);
        NodeArgs::parse_from_iter(args).resolve().expect("valid")
    };
    // The file alone.
    let (args, config) = parse(&[]);
    assert_eq!(args.bind, "127.0.0.1:7100".parse().unwrap());
    assert_eq!(args.seeds, vec!["127.0.0.1:7101".parse().unwrap()]);
    assert_eq!(args.cluster, "file");
    assert_eq!(args.passphrase.as_deref(), Some("file secret"));
    assert_eq!(args.max_datagram, 1500);
    assert_eq!(args.loss, 0.25);
    assert_eq!(config.node.max_datagram, 1500);
    assert_eq!(config.node.fault.loss, 0.25);
    assert_eq!(config.node.dissemination.fanout, 5);
    // Flags win, even when they repeat the default value.
    let (args, config) = parse(&[
        "--bind",
        "127.0.0.1:0",
        "--seed",
        "127.0.0.1:7200",
        "--cluster",
        "cli",
        "--max-datagram",
        "1400",
        "--loss",
        "0",
        "--set",
        "dissemination.fanout=6",
        "--key-file",
        "cluster.key",
    ]);
    assert_eq!(args.bind, "127.0.0.1:0".parse().unwrap());
    assert_eq!(args.seeds, vec!["127.0.0.1:7200".parse().unwrap()]);
    assert_eq!(args.cluster, "cli");
    assert_eq!(config.node.max_datagram, 1400);
    assert_eq!(config.node.fault.loss, 0.0);
    assert_eq!(config.node.dissemination.fanout, 6);
    // A key given on the command line replaces the file's passphrase.
    assert_eq!(args.passphrase, None);
    assert_eq!(args.key_file, Some(PathBuf::from("cluster.key")));
    assert_eq!(config.options.discovery, DiscoveryKind::Static);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--help` states each option's unit and its default, and those defaults are the file's.
#[test]
fn help_gives_units_and_the_file_defaults() {
    let help = NodeArgs::command().render_long_help().to_string();
    let defaults = FileConfig::default();
    assert_eq!(defaults.options.bind.to_string(), DEFAULT_BIND);
    assert_eq!(defaults.options.cluster, DEFAULT_CLUSTER);
    for expected in [
        format!("[default: {}]", defaults.options.bind),
        format!("[default: {}]", defaults.options.cluster),
        format!("[default: {}]", NodeConfig::default().max_datagram),
        format!("[default: {}]", NodeConfig::default().fault.loss),
        "--bind <IP:PORT>".to_owned(),
        "--max-datagram <BYTES>".to_owned(),
        "in bytes (128..=65507)".to_owned(),
        "probability (0..=1)".to_owned(),
        "--config <PATH>".to_owned(),
        "--set <PATH=VALUE>".to_owned(),
        "--print-default-config".to_owned(),
        "RUST_LOG".to_owned(),
    ] {
        assert!(
            help.contains(&expected),
            "--help lacks {expected:?}:\n{help}"
        );
    }
    // Without a file, the flags' defaults give exactly the default configuration.
    let (args, config) = NodeArgs::parse_from_iter(["gossip-node", "--passphrase", "x"])
        .resolve()
        .expect("valid");
    assert_eq!(config.node, NodeConfig::default());
    assert_eq!(args.bind, defaults.options.bind);
    assert_eq!(config.options.seeds, defaults.options.seeds);
}

/// Reads `reader`'s lines into a channel.
fn lines_of(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Two nodes exchange a burst of 300 broadcasts (about 600 datagrams through node A: each
/// push and its ack) at the default log level: A's stderr stays a handful of lines (start,
/// the peer, stop; 2 to 3 in practice), since nothing is logged per datagram at `info`. With
/// `RUST_LOG=trace` the same burst logs every datagram, which shows that `RUST_LOG` is
/// respected and that the bound is not vacuous.
#[test]
fn default_log_level_stays_quiet_under_a_burst_of_traffic() {
    let quiet = burst_stderr(None);
    assert!(
        quiet.len() <= 8,
        "{} lines at the default level:\n{}",
        quiet.len(),
        quiet.join("\n")
    );
    assert!(
        quiet.iter().any(|l| l.contains("node started")),
        "{quiet:?}"
    );
    assert!(
        quiet.iter().all(|l| l.contains("node{id=")),
        "every line names its node: {quiet:?}"
    );
    let loud = burst_stderr(Some("trace"));
    let datagram_lines = loud.iter().filter(|l| l.contains("datagram")).count();
    eprintln!(
        "stderr of node A over 300 broadcasts: {} lines at the default level, {} with \
         RUST_LOG=trace ({datagram_lines} per-datagram)",
        quiet.len(),
        loud.len()
    );
    assert!(
        datagram_lines >= 300,
        "RUST_LOG=trace logs each datagram: only {datagram_lines} of {} lines",
        loud.len()
    );
}

/// Runs two nodes, 300 broadcasts from one, waits until the other delivered them all, quits
/// both, and returns node A's stderr lines.
fn burst_stderr(rust_log: Option<&str>) -> Vec<String> {
    let spawn = |seed: Option<&str>| {
        let mut command = Command::new(NODE);
        command
            .args(["--passphrase", "burst", "--bind", "127.0.0.1:0"])
            .args(seed.map(|s| ["--seed", s]).into_iter().flatten())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        command.spawn().expect("gossip-node starts")
    };
    let ready = |rx: &Receiver<String>| -> String {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("ready line");
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["event"], "ready", "{line}");
        v["addr"].as_str().expect("addr").to_owned()
    };
    // B starts first on a free port; A seeds from it (B learns A from its packets).
    let mut b = spawn(None);
    let b_out = lines_of(b.stdout.take().expect("stdout"));
    let b_err = lines_of(b.stderr.take().expect("stderr"));
    let b_addr = ready(&b_out);
    let mut a = spawn(Some(&b_addr));
    let a_out = lines_of(a.stdout.take().expect("stdout"));
    let a_err = lines_of(a.stderr.take().expect("stderr"));
    ready(&a_out);
    let mut a_in = a.stdin.take().expect("stdin");
    let mut b_in = b.stdin.take().expect("stdin");
    for i in 0..300 {
        writeln!(a_in, "broadcast burst {i}").expect("command");
    }
    // Wait (bounded) until B delivered all 300.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut delivered = 0;
    while delivered < 300 && Instant::now() < deadline {
        if let Ok(line) = b_out.recv_timeout(Duration::from_millis(200))
            && line.contains("\"event\":\"delivered\"")
        {
            delivered += 1;
        }
    }
    assert_eq!(delivered, 300, "B delivered every broadcast");
    writeln!(a_in, "quit").expect("quit");
    writeln!(b_in, "quit").expect("quit");
    assert!(wait_with_timeout(&mut a, Duration::from_secs(30)).is_some_and(|s| s.success()));
    assert!(wait_with_timeout(&mut b, Duration::from_secs(30)).is_some_and(|s| s.success()));
    drop(b_err);
    let mut lines = Vec::new();
    while let Ok(line) = a_err.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    lines
}
