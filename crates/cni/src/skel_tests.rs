use std::cell::RefCell;
use std::collections::HashMap;

use super::*;
use crate::result::IpConfig;

/// A plugin that records which verb ran and answers with one address.
#[derive(Default)]
struct Recorder {
    calls: RefCell<Vec<&'static str>>,
    fail_with: Option<Error>,
}

impl Recorder {
    fn answer(&self, verb: &'static str) -> Result<(), Error> {
        self.calls.borrow_mut().push(verb);
        self.fail_with.clone().map_or(Ok(()), Err)
    }
}

impl Plugin for Recorder {
    fn about(&self) -> &str {
        "recorder"
    }
    fn known_args(&self) -> &[&str] {
        &["IP"]
    }
    fn add(&self, _: &Call) -> Result<CniResult, Error> {
        self.answer("ADD")?;
        Ok(CniResult {
            ips: vec![IpConfig {
                interface: None,
                address: "10.0.0.2/24".parse().unwrap(),
                gateway: None,
            }],
            ..CniResult::default()
        })
    }
    fn del(&self, _: &Call) -> Result<(), Error> {
        self.answer("DEL")
    }
    fn check(&self, _: &Call) -> Result<(), Error> {
        self.answer("CHECK")
    }
    fn status(&self, _: &Call) -> Result<(), Error> {
        self.answer("STATUS")
    }
    fn gc(&self, _: &Call) -> Result<(), Error> {
        self.answer("GC")
    }
}

fn env_for(command: &str) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", ""),
        ("CNI_PATH", "/nonexistent"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn run_with(p: &Recorder, env: &HashMap<String, String>, stdin: &str) -> (i32, Value) {
    let out = dispatch(p, |k| env.get(k).cloned(), stdin.as_bytes());
    let v = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap()
    };
    (out.exit_code, v)
}

fn conf(version: &str) -> String {
    json!({"cniVersion": version, "name": "net", "type": "recorder"}).to_string()
}

#[test]
fn version_echoes_the_request_with_every_supported_version() {
    let p = Recorder::default();
    let env: HashMap<String, String> = [("CNI_COMMAND".to_string(), "VERSION".to_string())].into();
    let (code, v) = run_with(&p, &env, r#"{"cniVersion":"0.3.1"}"#);
    assert_eq!(code, 0);
    assert_eq!(v["cniVersion"], "0.3.1");
    assert_eq!(
        v["supportedVersions"],
        json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    assert_eq!(run_with(&p, &env, "").1["cniVersion"], "1.1.0");
    assert_eq!(run_with(&p, &env, "{oops").1["code"], 6);
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn add_prints_the_result_in_the_config_version() {
    let p = Recorder::default();
    let (code, v) = run_with(&p, &env_for("ADD"), &conf("0.3.1"));
    assert_eq!(code, 0);
    assert_eq!(
        v,
        json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.2/24"}], "dns": {}})
    );
    let (_, v) = run_with(&p, &env_for("ADD"), &conf("0.2.0"));
    assert_eq!(
        v,
        json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}, "dns": {}})
    );
}

#[test]
fn bad_stdin_is_code_6_and_the_plugin_is_not_called() {
    let p = Recorder::default();
    for stdin in ["", "{not json", "42"] {
        let (code, v) = run_with(&p, &env_for("ADD"), stdin);
        assert_eq!((code, v["code"].as_u64()), (1, Some(6)), "{stdin:?}");
        assert_eq!(v["cniVersion"], "1.1.0");
    }
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn each_missing_variable_is_code_4_naming_it() {
    let p = Recorder::default();
    for name in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let mut env = env_for("ADD");
        env.insert(name.into(), String::new());
        let (code, v) = run_with(&p, &env, &conf("1.0.0"));
        assert_eq!((code, v["code"].as_u64()), (1, Some(4)), "{name}");
        assert!(v["msg"].as_str().unwrap().contains(name), "{v}");
        assert_eq!(
            v["cniVersion"], "1.0.0",
            "errors speak the config's version"
        );
    }
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn invalid_container_id_interface_name_and_verb_are_code_4() {
    let p = Recorder::default();
    for (key, value) in [
        ("CNI_CONTAINERID", "-bad"),
        ("CNI_IFNAME", "a/b"),
        ("CNI_IFNAME", "x".repeat(16).as_str()),
        ("CNI_COMMAND", "MOVE"),
    ] {
        let mut env = env_for("ADD");
        env.insert(key.into(), value.into());
        let (_, v) = run_with(&p, &env, &conf("1.0.0"));
        assert_eq!(v["code"], 4, "{key}={value}: {v}");
    }
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn unsupported_version_is_code_1() {
    let p = Recorder::default();
    let (_, v) = run_with(&p, &env_for("ADD"), &conf("0.9.0"));
    assert_eq!(v["code"], 1);
    assert!(v["msg"].as_str().unwrap().contains("0.9.0"));
}

#[test]
fn verbs_are_gated_by_version() {
    let p = Recorder::default();
    let cases = [
        ("CHECK", "0.3.1", "0.4.0"),
        ("STATUS", "1.0.0", "1.1.0"),
        ("GC", "1.0.0", "1.1.0"),
    ];
    for (verb, below, at) in cases {
        let (_, v) = run_with(&p, &env_for(verb), &conf(below));
        assert_eq!(v["code"], 1, "{verb} at {below}");
        assert!(v["msg"].as_str().unwrap().contains(verb));
        let (code, out) = run_with(&p, &env_for(verb), &conf(at));
        assert_eq!((code, out), (0, Value::Null), "{verb} at {at}");
    }
    assert_eq!(*p.calls.borrow(), vec!["CHECK", "STATUS", "GC"]);
}

#[test]
fn plugin_errors_keep_their_code() {
    let p = Recorder {
        fail_with: Some(Error::try_again_later("store busy")),
        ..Recorder::default()
    };
    let (code, v) = run_with(&p, &env_for("ADD"), &conf("1.1.0"));
    assert_eq!(code, 1);
    assert_eq!(
        v,
        json!({"cniVersion": "1.1.0", "code": 11, "msg": "store busy", "details": ""})
    );
}

#[test]
fn unknown_cni_args_fail_add_but_not_del() {
    let p = Recorder::default();
    let mut env = env_for("ADD");
    env.insert("CNI_ARGS".into(), "IP=10.0.0.9/24;FOO=1".into());
    assert_eq!(run_with(&p, &env, &conf("1.0.0")).1["code"], 4);
    env.insert(
        "CNI_ARGS".into(),
        "IgnoreUnknown=true;IP=10.0.0.9/24;FOO=1".into(),
    );
    assert_eq!(run_with(&p, &env, &conf("1.0.0")).0, 0);
    env.insert("CNI_COMMAND".into(), "DEL".into());
    env.insert("CNI_ARGS".into(), "FOO=1".into());
    assert_eq!(run_with(&p, &env, &conf("1.0.0")).0, 0);
}

#[test]
fn del_needs_no_netns() {
    let p = Recorder::default();
    let mut env = env_for("DEL");
    env.remove("CNI_NETNS");
    assert_eq!(run_with(&p, &env, &conf("0.3.0")).0, 0);
}
