//! `gossip-node`'s keyring commands: add a key, make it primary, remove the old one, each
//! answered with the key ids held; refused steps change nothing.

use std::io::Write;
use std::process::{Command, Stdio};

use gossip_actors::crypto::Key;

#[test]
fn gossip_node_rotates_its_keyring_from_stdin() {
    let old = Key::from_passphrase("x", "gossip").expect("key");
    let new = Key::from_bytes([0xb0; 32]);
    assert_ne!(old.id(), new.id());
    let (a, b) = (format!("{:02x}", old.id()), format!("{:02x}", new.id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_gossip-node"))
        .args(["--passphrase", "x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gossip-node runs");
    let commands = [
        "keys".to_owned(),
        format!("primary-key {b}"),
        format!("add-key {}", new.to_hex()),
        format!("remove-key {a}"),
        format!("primary-key {b}"),
        format!("remove-key {b}"),
        format!("remove-key {a}"),
        "add-key nothex".to_owned(),
        "keys".to_owned(),
        "quit".to_owned(),
    ];
    let mut stdin = child.stdin.take().expect("stdin");
    for command in &commands {
        writeln!(stdin, "{command}").expect("write");
    }
    drop(stdin);
    let output = child.wait_with_output().expect("exits");
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines[0]["event"], "ready");
    let keyring = |primary: &str, accepted: &[&str]| serde_json::json!({"event": "keyring", "primary": primary, "accepted": accepted});
    let answers = &lines[1..lines.len() - 1];
    assert_eq!(answers.len(), commands.len() - 1, "{answers:?}");
    assert_eq!(answers[0], keyring(&a, &[]));
    assert_eq!(answers[1]["event"], "error", "B is not held yet");
    assert_eq!(answers[2], keyring(&a, &[&b]));
    assert_eq!(answers[3]["event"], "error", "A is the primary");
    assert!(
        answers[3]["error"]
            .as_str()
            .is_some_and(|e| e.contains("primary")),
        "{}",
        answers[3]
    );
    assert_eq!(answers[4], keyring(&b, &[&a]));
    assert_eq!(answers[5]["event"], "error", "B is now the primary");
    assert_eq!(answers[6], keyring(&b, &[]));
    assert_eq!(answers[7]["event"], "error", "not a key");
    assert_eq!(answers[8], keyring(&b, &[]));
    assert_eq!(lines.last().expect("bye")["event"], "bye");
}
