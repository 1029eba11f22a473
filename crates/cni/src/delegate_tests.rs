use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::args::CniArgs;
use crate::config::NetConf;
use crate::env::Env;

/// A scratch directory holding fake IPAM executables (shell scripts), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mh-cni-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn call(dir: &Scratch, ipam_type: &str) -> Call {
    let conf =
        json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge", "ipam": {"type": ipam_type}});
    Call {
        env: Env {
            command: crate::env::Command::Add,
            container_id: "c1".into(),
            netns: None,
            ifname: "eth0".into(),
            args: CniArgs::default(),
            path: vec![PathBuf::from("/nonexistent"), dir.0.clone()],
        },
        conf: NetConf::parse(conf.to_string().as_bytes()).unwrap(),
    }
}

#[test]
fn add_runs_the_delegate_with_the_config_and_parses_its_declared_version() {
    let dir = Scratch::new("add");
    let record = dir.0.join("seen");
    dir.script(
        "fake-ipam",
        &format!(
            "cat > {r}.stdin; echo \"$CNI_COMMAND\" > {r}.cmd\n\
             echo '{{\"cniVersion\":\"0.4.0\",\"ips\":[{{\"version\":\"4\",\"address\":\"10.9.0.5/16\"}}]}}'",
            r = record.display()
        ),
    );
    let c = call(&dir, "fake-ipam");
    let result = ipam_add(&c).unwrap();
    assert_eq!(result.ips[0].address.to_string(), "10.9.0.5/16");
    let stdin: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.0.join("seen.stdin")).unwrap()).unwrap();
    assert_eq!(
        stdin, c.conf.raw,
        "the complete configuration reaches the delegate"
    );
    assert_eq!(
        fs::read_to_string(dir.0.join("seen.cmd")).unwrap().trim(),
        "ADD"
    );
}

#[test]
fn forwarded_verbs_change_only_cni_command() {
    let dir = Scratch::new("fwd");
    let record = dir.0.join("cmd");
    dir.script(
        "fake-ipam",
        &format!(
            "cat >/dev/null; echo \"$CNI_COMMAND $HOME\" >> {}",
            record.display()
        ),
    );
    let c = call(&dir, "fake-ipam");
    for verb in [Command::Del, Command::Check, Command::Status, Command::Gc] {
        ipam_forward(&c, verb).unwrap();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let seen = fs::read_to_string(&record).unwrap();
    let expected: String = ["DEL", "CHECK", "STATUS", "GC"]
        .iter()
        .map(|v| format!("{v} {home}\n"))
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn the_delegates_error_code_passes_through() {
    let dir = Scratch::new("err");
    dir.script(
        "fake-ipam",
        "cat >/dev/null; echo '{\"code\":11,\"msg\":\"busy\",\"details\":\"d\"}'; exit 1",
    );
    let e = ipam_add(&call(&dir, "fake-ipam")).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str(), e.details.as_str()),
        (11, "busy", "d")
    );
}

#[test]
fn a_delegate_failing_without_json_is_an_internal_error() {
    let dir = Scratch::new("crash");
    dir.script("fake-ipam", "cat >/dev/null; echo boom; exit 3");
    let e = ipam_add(&call(&dir, "fake-ipam")).unwrap_err();
    assert_eq!(e.code, 999);
    assert!(e.msg.contains("boom"), "{}", e.msg);
}

#[test]
fn a_broken_result_is_code_6() {
    let dir = Scratch::new("broken");
    dir.script(
        "fake-ipam",
        "cat >/dev/null; echo '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"x\"}]}'",
    );
    assert_eq!(ipam_add(&call(&dir, "fake-ipam")).unwrap_err().code, 6);
}

#[test]
fn missing_plugin_and_path_tricks_are_rejected_with_names() {
    let dir = Scratch::new("missing");
    let e = ipam_add(&call(&dir, "nope")).unwrap_err();
    assert_eq!(e.code, 7);
    assert!(
        e.msg.contains("\"nope\"") && e.msg.contains("/nonexistent"),
        "{}",
        e.msg
    );
    assert_eq!(
        find("../bin/sh", std::slice::from_ref(&dir.0))
            .unwrap_err()
            .code,
        7
    );
    assert_eq!(find("static", &[]).unwrap_err().code, 4);
}
