//! The OVN manifests for clusters without OVN-Kubernetes (deploy/ovn): read as Kubernetes would
//! (YAML, by Debian's python3-yaml), checked for a three-member raft NB and SB with northd, nodes
//! whose ovn-controller and plugins are pointed at the same members, and a per-node file the
//! plugin accepts as it is written.

use std::path::Path;
use std::process::Command;

use conformance_tests::etcd::TestPki;
use conformance_tests::plugin::workspace_root;
use conformance_tests::{ours, CniVars, Invocation, Netns, TempDir};
use serde_json::{json, Value};

/// Every document of a YAML file, as JSON.
fn yaml(file: &str) -> Vec<Value> {
    let path = workspace_root().join(file);
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(&path)
        .output()
        .expect("python3 (make deps installs python3-yaml)");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The value of `--flag=` among a container's command words.
fn flag(c: &Value, flag: &str) -> String {
    c["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find_map(|w| w.strip_prefix(&format!("{flag}=")))
        .unwrap_or_else(|| panic!("no {flag}"))
        .to_string()
}

/// The members' endpoints of `port`, as the StatefulSet and its headless Service name them.
fn members(docs: &[Value], port: u16) -> String {
    let set = kind(docs, "StatefulSet");
    let (name, ns) = (
        set["metadata"]["name"].as_str().unwrap(),
        set["metadata"]["namespace"].as_str().unwrap(),
    );
    let service = set["spec"]["serviceName"].as_str().unwrap();
    let n = set["spec"]["replicas"].as_u64().unwrap();
    (0..n)
        .map(|i| format!("ssl:{name}-{i}.{service}.{ns}.svc.cluster.local:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn the_central_manifest_runs_nb_and_sb_as_three_member_raft_clusters_with_northd() {
    let docs = yaml("deploy/ovn/central.yaml");
    let set = kind(&docs, "StatefulSet");
    assert_eq!(set["spec"]["replicas"], 3);
    let pod = &set["spec"]["template"];
    assert_eq!(pod["spec"]["hostNetwork"], true);
    for (name, schema, db, client, raft) in [
        ("nb", "ovn-nb.ovsschema", "OVN_Northbound", 6641, 6643),
        ("sb", "ovn-sb.ovsschema", "OVN_Southbound", 6642, 6644),
    ] {
        let script = container(pod, "containers", name)["args"][0]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            script.contains(&format!(
                "create-cluster \"$db\" /usr/share/ovn/{schema} \"$me\""
            )),
            "{script}"
        );
        assert!(
            script.contains(&format!("join-cluster \"$db\" {db} \"$me\"")),
            "{script}"
        );
        assert!(
            script.contains(&format!("me=\"tcp:${{HOST_IP}}:{raft}\"")),
            "{script}"
        );
        assert!(script.contains(&format!(
            "ovn-central.multihome-ovn.svc.cluster.local:{raft}"
        )));
        assert!(
            script.contains(&format!("--remote=pssl:{client}")) && script.contains("--ca-cert="),
            "{script}"
        );
    }
    let northd = container(pod, "containers", "northd");
    assert_eq!(flag(northd, "--ovnnb-db"), members(&docs, 6641));
    assert_eq!(flag(northd, "--ovnsb-db"), members(&docs, 6642));
    let service = kind(&docs, "Service");
    let ports: Vec<u64> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [6641, 6642, 6643, 6644]);
    assert_eq!(service["spec"]["clusterIP"], "None");
}

#[test]
fn the_node_manifest_points_ovn_controller_and_the_plugins_at_the_same_members() {
    let central = yaml("deploy/ovn/central.yaml");
    let docs = yaml("deploy/ovn/node.yaml");
    let pod = &kind(&docs, "DaemonSet")["spec"]["template"];
    let script = container(pod, "initContainers", "configure")["args"][0]
        .as_str()
        .unwrap()
        .to_string();
    let var = |name: &str| {
        script
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}="))
            .to_string()
    };
    assert_eq!(var("NB"), members(&central, 6641));
    assert_eq!(var("SB"), members(&central, 6642));
    assert!(script.contains("external_ids:ovn-remote=\"$SB\""));
    assert!(script.contains("external_ids:ovn-bridge-mappings=\"$BRIDGE_MAPPINGS\""));
    let mappings = kind(&docs, "ConfigMap")["data"]["bridge-mappings"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        mappings.split(',').all(|m| m
            .split_once(':')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())),
        "{mappings}"
    );
    let controller = container(pod, "containers", "ovn-controller");
    assert_eq!(flag(controller, "--ca-cert"), "/etc/ovn/tls/ca.crt");

    // The per-node file the init container writes, as written, with the TLS files of this test.
    let start = script.find("<<NODE\n").unwrap() + "<<NODE\n".len();
    let end = script[start..].find("\nNODE").unwrap() + start;
    let node_file: Value =
        serde_json::from_str(&script[start..end].replace("$NB", &var("NB"))).unwrap();
    assert_eq!(node_file["nbdb"], json!(var("NB")));
    let pki = TestPki::generate();
    let dir = TempDir::new("deploy-node");
    let write = |name: &str, v: &Value| {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.display().to_string()
    };
    let mut here = node_file.clone();
    here["sslCaCert"] = json!(pki.ca);
    here["sslCertificate"] = json!(pki.client_cert);
    here["sslPrivateKey"] = json!(pki.client_key);
    let ok = write("ok.json", &here);
    let mut broken = here.clone();
    broken.as_object_mut().unwrap().remove("sslPrivateKey");
    let broken = write("broken.json", &broken);
    let node = Netns::new("deploy-node");
    let status = |file: &str| {
        Invocation::new(ours("ovn-overlay"))
            .in_node(&node)
            .env("MULTIHOME_OVN_NODE_CONFIG", file)
            .vars(&CniVars::command("STATUS"))
            .stdin_json(&json!({"cniVersion": "1.1.0", "name": "n", "type": "ovn-overlay"}))
            .run()
    };
    // Accepted as written: STATUS gets as far as the databases, which are not here (50).
    let out = status(&ok);
    assert_eq!(out.error_code(), Some(50), "{out}");
    // Without its key the file is refused (7): the test above could fail.
    let out = status(&broken);
    assert_eq!(out.error_code(), Some(7), "{out}");
    assert!(out.stdout_text().contains("sslPrivateKey"), "{out}");
    assert!(Path::new(&ok).exists());
}
