//! The `custom_node` example: a user actor's own protocol works beside a subset of the
//! built-in ones.

use std::process::Command;

#[test]
fn a_user_actor_speaks_its_own_protocol_beside_the_built_in_state_protocol() {
    let output = Command::new(env!("CARGO_BIN_EXE_custom_node"))
        .args(["--nodes", "3", "--pings", "10", "--json"])
        .output()
        .expect("custom_node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}: {stdout}",
        output.status
    );
    let last = stdout.lines().last().expect("a JSON line");
    let report: serde_json::Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(report["requests"], 60);
    assert_eq!(report["responses"], 60, "every ping answered: {report}");
    assert_eq!(report["state_converged"], true);
    assert_eq!(
        report["dissemination_running"], false,
        "only the chosen subset runs"
    );
}
