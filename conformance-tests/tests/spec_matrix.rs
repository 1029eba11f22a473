//! The spec-conformance matrix: every executable of the suite answers the protocol the same way.
//! Each test runs against every [`Subject`]; a plugin joins by adding one entry to `subjects()`.
//! Plugins run inside a node namespace with a real container namespace, as a runtime runs them.

use std::path::Path;

use conformance_tests::{CniVars, Invocation, Netns, Outcome, OvnLab, PluginDir, TempDir};
use serde_json::{json, Value};

/// Every CNI version, oldest first.
const VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// One executable under test and a valid configuration for it.
struct Subject {
    /// Executable name in the release directory.
    name: &'static str,
    /// A valid configuration at `version`, keeping any state under `scratch`.
    config: fn(scratch: &Path, version: &str) -> Value,
    /// IPAM plugins print the abbreviated result (no interfaces).
    ipam: bool,
}

fn subjects() -> Vec<Subject> {
    vec![
        Subject {
            name: "static",
            config: |_, v| {
                json!({"cniVersion": v, "name": "matrix", "type": "static", "ipam": {"type": "static",
                "addresses": [{"address": "10.77.0.5/24", "gateway": "10.77.0.1"}],
                "routes": [{"dst": "0.0.0.0/0"}]}})
            },
            ipam: true,
        },
        Subject {
            name: "whereabouts",
            config: |scratch, v| {
                json!({"cniVersion": v, "name": "matrix", "type": "whereabouts", "ipam": {"type": "whereabouts",
                "range": "10.78.0.0/24", "gateway": "10.78.0.1", "routes": [{"dst": "0.0.0.0/0"}],
                "store_dir": scratch.join("store")}})
            },
            ipam: true,
        },
        Subject {
            name: "bridge",
            config: |_, v| {
                json!({"cniVersion": v, "name": "matrix", "type": "bridge", "bridge": "br-mx", "isGateway": true,
                "ipam": {"type": "static", "addresses": [{"address": "10.79.0.5/24"}], "routes": [{"dst": "0.0.0.0/0"}]}})
            },
            ipam: false,
        },
        Subject {
            name: "ovn-overlay",
            // The fixture's node is an OVN node; its per-node file is copied into `scratch`.
            config: |scratch, v| {
                json!({"cniVersion": v, "name": "matrix-ovn", "type": "ovn-overlay",
                "netAttachDefName": "ns/matrix-ovn", "subnets": "10.80.0.0/24",
                "nodeConfig": scratch.join("ovn-node.json")})
            },
            ipam: false,
        },
        Subject {
            name: "localnet",
            // The fixture maps physical network "matrixnet" to the node's br-phy.
            config: |scratch, v| {
                json!({"cniVersion": v, "name": "matrix-ln", "type": "localnet",
                "physicalNetworkName": "matrixnet", "vlanID": 42, "subnets": "10.81.0.0/24",
                "nodeConfig": scratch.join("ovn-node.json")})
            },
            ipam: false,
        },
    ]
}

/// A node namespace (a node of a one-node OVN lab, so that the OVN plugins run too), a container
/// namespace and a CNI_PATH holding our executables.
struct Fixture {
    lab: OvnLab,
    container: Netns,
    plugins: PluginDir,
    scratch: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let names: Vec<&str> = subjects().iter().map(|s| s.name).collect();
        let lab = OvnLab::start("mx", 1);
        lab.nodes[0].vsctl(&[
            "set",
            "open_vswitch",
            ".",
            "external_ids:ovn-bridge-mappings=matrixnet:br-phy",
        ]);
        let scratch = TempDir::new("mx");
        std::fs::copy(lab.nodes[0].node_file(), scratch.join("ovn-node.json"))
            .expect("per-node file");
        Fixture {
            lab,
            container: Netns::new("mx-ctr"),
            plugins: PluginDir::ours(&names),
            scratch,
        }
    }

    fn vars(&self, command: &str, container_id: &str) -> CniVars {
        CniVars {
            command: command.into(),
            container_id: container_id.into(),
            netns: self.container.path().display().to_string(),
            ifname: "eth0".into(),
            args: String::new(),
            path: self.plugins.path().display().to_string(),
        }
    }

    /// The node's runtime names the node's settings file; the OVN subjects' configurations
    /// repeat it in `nodeConfig`, which a configuration may do.
    fn invoke(&self, s: &Subject, vars: &CniVars) -> Invocation {
        let node_file = self.scratch.join("ovn-node.json");
        Invocation::new(self.plugins.plugin(s.name))
            .in_node(&self.lab.nodes[0].ns)
            .env(
                "MULTIHOME_OVN_NODE_CONFIG",
                &node_file.display().to_string(),
            )
            .vars(vars)
    }

    fn config(&self, s: &Subject, version: &str) -> Value {
        (s.config)(self.scratch.path(), version)
    }

    fn run(&self, s: &Subject, command: &str, cid: &str, conf: &Value) -> Outcome {
        self.invoke(s, &self.vars(command, cid))
            .stdin_json(conf)
            .run()
    }
}

/// A CNI error: non-zero exit and exactly `{cniVersion, code, msg, details}` on stdout.
fn assert_error(s: &Subject, what: &str, out: &Outcome, code: u64) -> Value {
    assert!(
        !out.ok(),
        "{}: {what}: expected error {code}, got success: {out}",
        s.name
    );
    let v = out
        .try_json()
        .unwrap_or_else(|| panic!("{}: {what}: stdout is not JSON: {out}", s.name));
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("error object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["cniVersion", "code", "details", "msg"],
        "{}: {what}: {v}",
        s.name
    );
    assert_eq!(v["code"], code, "{}: {what}: {v}", s.name);
    assert!(
        !v["msg"].as_str().unwrap_or_default().is_empty(),
        "{}: {what}: empty msg",
        s.name
    );
    v
}

#[test]
fn version_answers_each_requested_version_with_the_full_list() {
    let f = Fixture::new();
    for s in subjects() {
        for v in VERSIONS {
            let out = f
                .invoke(&s, &CniVars::command("VERSION"))
                .stdin(format!(r#"{{"cniVersion":"{v}"}}"#))
                .run();
            assert!(out.ok(), "{}: {out}", s.name);
            assert_eq!(
                out.json(),
                json!({"cniVersion": v, "supportedVersions": VERSIONS}),
                "{}",
                s.name
            );
        }
    }
}

#[test]
fn add_without_stdin_or_with_invalid_json_is_code_6() {
    let f = Fixture::new();
    for s in subjects() {
        for (what, stdin) in [
            ("no stdin", ""),
            ("invalid JSON", "{\"cniVersion\": "),
            ("not an object", "[]"),
        ] {
            let out = f.invoke(&s, &f.vars("ADD", "c-stdin")).stdin(stdin).run();
            assert_error(&s, what, &out, 6);
        }
    }
}

#[test]
fn each_missing_required_variable_is_code_4_naming_it() {
    let f = Fixture::new();
    let required = [
        (
            "ADD",
            &["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"][..],
        ),
        ("CHECK", &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"][..]),
        ("DEL", &["CNI_CONTAINERID", "CNI_IFNAME"][..]),
        ("GC", &["CNI_PATH"][..]),
    ];
    for s in subjects() {
        let conf = f.config(&s, "1.1.0");
        for (verb, names) in required {
            for name in names {
                for absent in ["unset", "empty"] {
                    let inv = f.invoke(&s, &f.vars(verb, "c-env")).stdin_json(&conf);
                    let inv = if absent == "unset" {
                        inv.without_env(name)
                    } else {
                        inv.env(name, "")
                    };
                    let e =
                        assert_error(&s, &format!("{verb} with {name} {absent}"), &inv.run(), 4);
                    assert!(e["msg"].as_str().unwrap().contains(name), "{}: {e}", s.name);
                }
            }
        }
    }
}

#[test]
fn invalid_container_id_interface_name_and_command_are_code_4() {
    let f = Fixture::new();
    for s in subjects() {
        let conf = f.config(&s, "1.1.0");
        let cases = [
            ("CNI_CONTAINERID", "-starts-with-dash"),
            ("CNI_CONTAINERID", "has space"),
            ("CNI_IFNAME", "sixteen-bytes-xx"),
            ("CNI_IFNAME", "a/b"),
            ("CNI_IFNAME", ".."),
            ("CNI_COMMAND", "FROBNICATE"),
        ];
        for (key, value) in cases {
            let out = f
                .invoke(&s, &f.vars("ADD", "c-bad"))
                .env(key, value)
                .stdin_json(&conf)
                .run();
            assert_error(&s, &format!("{key}={value}"), &out, 4);
        }
    }
}

#[test]
fn unsupported_cni_version_is_code_1() {
    let f = Fixture::new();
    for s in subjects() {
        for bad in ["0.9.0", "2.0.0", "1.0"] {
            let e = assert_error(&s, bad, &f.run(&s, "ADD", "c-ver", &f.config(&s, bad)), 1);
            assert!(e["msg"].as_str().unwrap().contains(bad), "{}: {e}", s.name);
        }
    }
}

#[test]
fn verbs_below_their_version_are_code_1() {
    let f = Fixture::new();
    for s in subjects() {
        for (verb, below) in [
            ("CHECK", "0.3.1"),
            ("CHECK", "0.1.0"),
            ("STATUS", "1.0.0"),
            ("GC", "1.0.0"),
            ("GC", "0.4.0"),
        ] {
            let out = f.run(&s, verb, "c-gate", &f.config(&s, below));
            let e = assert_error(&s, &format!("{verb} at {below}"), &out, 1);
            assert_eq!(
                e["cniVersion"], below,
                "{}: errors speak the config's version",
                s.name
            );
        }
    }
}

#[test]
fn del_twice_and_del_of_something_never_added_succeed() {
    let f = Fixture::new();
    for s in subjects() {
        let conf = f.config(&s, "1.0.0");
        let added = f.run(&s, "ADD", "c-del-twice", &conf);
        assert!(added.ok(), "{}: {added}", s.name);
        for attempt in ["first DEL", "second DEL"] {
            let out = f.run(&s, "DEL", "c-del-twice", &conf);
            assert!(
                out.ok() && out.stdout.is_empty(),
                "{}: {attempt}: {out}",
                s.name
            );
        }
        let never = f.run(&s, "DEL", "c-never-added", &conf);
        assert!(
            never.ok(),
            "{}: DEL of a never-added attachment: {never}",
            s.name
        );
        let no_netns = f
            .invoke(&s, &f.vars("DEL", "c-never-added"))
            .env("CNI_NETNS", "")
            .stdin_json(&conf)
            .run();
        assert!(
            no_netns.ok(),
            "{}: DEL without CNI_NETNS: {no_netns}",
            s.name
        );
    }
}

#[test]
fn add_prints_the_result_in_each_requested_version() {
    let f = Fixture::new();
    for s in subjects() {
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            let cid = format!("c-res-{}", v.replace('.', ""));
            let out = f.run(&s, "ADD", &cid, &f.config(&s, v));
            assert!(out.ok(), "{} at {v}: {out}", s.name);
            let r = out.json();
            assert_eq!(r["cniVersion"], v, "{}: {r}", s.name);
            let ips = r["ips"]
                .as_array()
                .unwrap_or_else(|| panic!("{} at {v}: no ips: {r}", s.name));
            assert!(!ips.is_empty(), "{} at {v}: {r}", s.name);
            for ip in ips {
                assert_eq!(
                    ip.get("version").is_some(),
                    v < "1.0.0",
                    "{} at {v}: ips[].version: {r}",
                    s.name
                );
                assert_eq!(
                    ip.get("interface").is_some(),
                    !s.ipam,
                    "{} at {v}: ips[].interface: {r}",
                    s.name
                );
            }
            assert_eq!(
                r.get("interfaces").is_some(),
                !s.ipam,
                "{} at {v}: interfaces: {r}",
                s.name
            );
            assert!(r["dns"].is_object(), "{} at {v}: dns: {r}", s.name);
            assert!(f.run(&s, "DEL", &cid, &f.config(&s, v)).ok());
        }
    }
}

#[test]
fn add_prints_0_2_0_results_as_ip4_and_ip6() {
    let f = Fixture::new();
    for s in subjects() {
        let out = f.run(&s, "ADD", "c-legacy", &f.config(&s, "0.2.0"));
        assert!(out.ok(), "{}: {out}", s.name);
        let r = out.json();
        assert_eq!(r["cniVersion"], "0.2.0");
        assert!(r["ip4"]["ip"].is_string(), "{}: {r}", s.name);
        assert!(
            r.get("ips").is_none() && r.get("interfaces").is_none(),
            "{}: {r}",
            s.name
        );
        assert!(f.run(&s, "DEL", "c-legacy", &f.config(&s, "0.2.0")).ok());
    }
}

#[test]
fn check_with_the_add_result_status_and_gc_succeed() {
    let f = Fixture::new();
    for s in subjects() {
        let mut conf = f.config(&s, "1.1.0");
        let added = f.run(&s, "ADD", "c-check", &conf);
        assert!(added.ok(), "{}: {added}", s.name);
        conf["prevResult"] = added.json();
        let check = f.run(&s, "CHECK", "c-check", &conf);
        assert!(
            check.ok() && check.stdout.is_empty(),
            "{}: CHECK: {check}",
            s.name
        );
        // libcni passes CNI_PATH with STATUS too: a main plugin needs it to ask its IPAM.
        let status_vars = CniVars {
            path: f.plugins.path().display().to_string(),
            ..CniVars::command("STATUS")
        };
        let status = f
            .invoke(&s, &status_vars)
            .stdin_json(&f.config(&s, "1.1.0"))
            .run();
        assert!(status.ok(), "{}: STATUS: {status}", s.name);
        // GC keeps what the valid attachments hold (CHECK still passes) and removes the rest
        // (CHECK then fails), except for static, which holds nothing.
        let gc_vars = CniVars {
            path: f.plugins.path().display().to_string(),
            ..CniVars::command("GC")
        };
        for (valid, kept) in [
            (json!([{"containerID": "c-check", "ifname": "eth0"}]), true),
            (json!([]), s.name == "static"),
        ] {
            let mut gc_conf = f.config(&s, "1.1.0");
            gc_conf["cni.dev/valid-attachments"] = valid.clone();
            let gc = f.invoke(&s, &gc_vars).stdin_json(&gc_conf).run();
            assert!(gc.ok(), "{}: GC {valid}: {gc}", s.name);
            let check = f.run(&s, "CHECK", "c-check", &conf);
            assert_eq!(
                check.ok(),
                kept,
                "{}: CHECK after GC with valid attachments {valid}: {check}",
                s.name
            );
        }
        assert!(f.run(&s, "DEL", "c-check", &f.config(&s, "1.1.0")).ok());
    }
}
