//! `make demo` is the README's first command: it must keep working. This runs it and checks
//! that it succeeded, printed its table and matrix, and left nothing behind.

use std::process::Command;

#[test]
fn make_demo_attaches_vms_to_the_three_networks_and_cleans_up() {
    conformance_tests::require_root();
    let out = Command::new(env!("CARGO_BIN_EXE_multihome-demo"))
        .output()
        .expect("run multihome-demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for net in ["bridge-network", "private-overlay", "ovn-localnet"] {
        assert!(
            text.matches(net).count() >= 3,
            "{net} missing from the demo's output:\n{text}"
        );
    }
    assert!(text.contains("connectivity"), "{text}");
    // The VMs that keep their addresses: a requested one, one across a restart and a migration.
    for step in [
        "vm-g on node-a asked for 10.200.0.120: got 10.200.0.120/24",
        "vm-h started again (a new launcher pod)",
        "live migration to node-b, the target pod's ADD",
        "the router reaches vm-h",
    ] {
        assert!(text.contains(step), "{step:?} missing:\n{text}");
    }
    assert!(!text.contains("FAIL "), "a step failed:\n{text}");
    assert!(
        !text.contains("yes (!)") && !text.contains("NO (!)"),
        "an unexpected cell in the matrix:\n{text}"
    );
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.starts_with("mh-demo-"))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "the demo left namespaces: {left:?}");
}
