//! whereabouts on an etcd member that serves clients over TLS only and requires client
//! certificates (`--client-cert-auth`), with certificates made by `openssl` at test time: ADD
//! and DEL through https, the keys read back with etcdctl; a CA that did not sign etcd's
//! certificate and a missing client certificate refused, naming the file and the endpoint;
//! username and password authentication on top, a wrong password refused.

use std::time::{Duration, Instant};

use conformance_tests::etcd::TestPki;
use conformance_tests::{
    ours, CniVars, EtcdCluster, Invocation, Netns, Node, NodeSettings, Outcome,
};
use serde_json::{json, Value};

struct Lab {
    pki: TestPki,
    etcd: EtcdCluster,
    node: Node,
    ctr: Netns,
}

impl Lab {
    fn new() -> Lab {
        let pki = TestPki::generate();
        let node = Node::new("tls-node");
        Lab {
            etcd: EtcdCluster::start_tls(1, &node, &pki),
            pki,
            node,
            ctr: Netns::new("tls-ctr"),
        }
    }

    /// A whereabouts config on the TLS member with its CA and the client certificate; `ipam`
    /// keys merged over it (null removes one).
    fn conf(&self, ipam: Value) -> Value {
        let mut i = json!({"type": "whereabouts", "range": "10.130.0.0/24",
            "datastore": "etcd", "etcd_endpoints": self.etcd.endpoints(),
            "etcd_ca_cert_file": self.pki.ca, "etcd_cert_file": self.pki.client_cert,
            "etcd_key_file": self.pki.client_key, "etcd_request_timeout_ms": 3000});
        let o = i.as_object_mut().unwrap();
        for (k, v) in ipam.as_object().cloned().unwrap_or_default() {
            if v.is_null() {
                o.remove(&k);
            } else {
                o.insert(k, v);
            }
        }
        json!({"cniVersion": "1.1.0", "name": "tls-net", "type": "whereabouts", "ipam": i})
    }

    fn call(&self, command: &str, cid: &str, conf: &Value) -> Outcome {
        let vars = CniVars {
            command: command.into(),
            container_id: cid.into(),
            netns: self.ctr.path().display().to_string(),
            ifname: "net1".into(),
            args: String::new(),
            path: String::new(),
        };
        // The node's administrator set up the etcd the configuration repeats.
        let settings = NodeSettings::for_conf(conf);
        let (k, v) = settings.env();
        Invocation::new(ours("whereabouts"))
            .in_node(&self.node)
            .env(&k, &v)
            .vars(&vars)
            .stdin_json(conf)
            .run()
    }

    /// Keys under the store's prefix, read with etcdctl (CA, client certificate and key).
    fn keys(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["get", "--prefix", "--keys-only", "/multihome/whereabouts/"];
        args.extend(extra);
        let out = self.etcd.etcdctl(&self.etcd.endpoints(), &args);
        assert!(
            out.status.success(),
            "etcdctl get: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn etcdctl_ok(&self, args: &[&str]) {
        let out = self.etcd.etcdctl(&self.etcd.endpoints(), args);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn msg(out: &Outcome) -> String {
    out.json()["msg"].as_str().unwrap_or_default().to_string()
}

#[test]
fn add_and_del_through_https_with_a_client_certificate_write_and_remove_the_keys() {
    let lab = Lab::new();
    let conf = lab.conf(json!({}));
    let add = lab.call("ADD", "tls-a", &conf);
    assert!(add.ok(), "{add}");
    assert_eq!(add.json()["ips"][0]["address"], "10.130.0.1/24");
    let keys = lab.keys(&[]);
    for want in [
        "/multihome/whereabouts/ip/n=/4-0a820001",
        "/multihome/whereabouts/own/n=/c|tls-a|net1/4-0a820001",
        "/multihome/whereabouts/pools/n=",
    ] {
        assert!(
            keys.iter().any(|k| k == want),
            "{want} missing from {keys:?}"
        );
    }
    let status = lab.call("STATUS", "", &conf);
    assert!(status.ok(), "{status}");
    // The operators' tool through the same TLS files.
    let tool = ours("multihome-ipam").display().to_string();
    let endpoint = lab.etcd.endpoint(0);
    let (ca, cert, key) = (
        lab.pki.ca.display().to_string(),
        lab.pki.client_cert.display().to_string(),
        lab.pki.client_key.display().to_string(),
    );
    let listed = lab.node.run_ok(&[
        &tool,
        "--etcd-endpoints",
        &endpoint,
        "--etcd-ca-cert-file",
        &ca,
        "--etcd-cert-file",
        &cert,
        "--etcd-key-file",
        &key,
        "list",
    ]);
    assert!(
        listed.contains("10.130.0.1") && listed.contains("tls-a"),
        "{listed}"
    );
    let del = lab.call("DEL", "tls-a", &conf);
    assert!(del.ok(), "{del}");
    let left = lab.keys(&[]);
    assert!(
        !left
            .iter()
            .any(|k| k.contains("/ip/") || k.contains("/own/")),
        "DEL left {left:?}"
    );
}

#[test]
fn a_wrong_ca_or_no_client_certificate_is_refused_naming_the_file_and_the_endpoint() {
    let lab = Lab::new();
    let endpoint = lab.etcd.endpoint(0);
    let other = lab.pki.other_ca.display().to_string();
    let wrong_ca = lab.conf(json!({"etcd_ca_cert_file": lab.pki.other_ca}));

    // STATUS: 50, "the store cannot be used".
    let status = lab.call("STATUS", "", &wrong_ca);
    assert_eq!(status.error_code(), Some(50), "{status}");
    let m = msg(&status);
    assert!(m.contains(&other) && m.contains(&endpoint), "{m}");
    assert!(m.contains("not trusted"), "{m}");

    // ADD: 5 (I/O failure), at once: a certificate does not get trusted by waiting, so it is
    // not retried until the request timeout as an unreachable member would be.
    let started = Instant::now();
    let add = lab.call("ADD", "tls-b", &wrong_ca);
    assert_eq!(add.error_code(), Some(5), "{add}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    let m = msg(&add);
    assert!(m.contains(&other) && m.contains(&endpoint), "{m}");

    // A CA file that is not there: STATUS 50 and ADD 5, naming it.
    let missing = lab.pki.dir().join("missing-ca.pem");
    let gone = lab.conf(json!({"etcd_ca_cert_file": missing}));
    let status = lab.call("STATUS", "", &gone);
    assert_eq!(status.error_code(), Some(50), "{status}");
    assert!(
        msg(&status).contains(&missing.display().to_string()),
        "{status}"
    );
    let add = lab.call("ADD", "tls-b", &gone);
    assert_eq!(add.error_code(), Some(5), "{add}");
    assert!(msg(&add).contains("ipam.etcd_ca_cert_file"), "{add}");

    // The right CA but no client certificate: etcd refuses the session.
    let anonymous = lab.conf(json!({"etcd_cert_file": null, "etcd_key_file": null}));
    let add = lab.call("ADD", "tls-b", &anonymous);
    assert_eq!(add.error_code(), Some(5), "{add}");
    let m = msg(&add);
    assert!(
        m.contains(&endpoint) && m.contains("client certificate"),
        "{m}"
    );

    // Plain HTTP to the TLS port: etcd closes the connection, as a dying member would (so it
    // is retried, then "try again later"); the message points at the scheme.
    let plain = lab.conf(
        json!({"etcd_endpoints": [endpoint.replace("https://", "http://")],
        "etcd_request_timeout_ms": 500}),
    );
    let add = lab.call("ADD", "tls-b", &plain);
    assert_eq!(add.error_code(), Some(11), "{add}");
    assert!(msg(&add).contains("https://"), "{add}");

    assert!(
        !lab.keys(&[]).iter().any(|k| k.contains("/ip/")),
        "nothing was reserved"
    );
}

#[test]
fn username_and_password_authenticate_and_a_wrong_password_is_refused() {
    let lab = Lab::new();
    lab.etcdctl_ok(&["user", "add", "root:s3cret"]);
    lab.etcdctl_ok(&["auth", "enable"]);

    // With authentication on, etcd's JSON gateway refuses client certificates that carry a
    // CommonName (over gRPC etcd would take the CN as the user): a certificate without one.
    let cn = lab.conf(json!({"etcd_username": "root", "etcd_password": "s3cret"}));
    let add = lab.call("ADD", "tls-c", &cn);
    assert_eq!(add.error_code(), Some(5), "{add}");
    assert!(msg(&add).contains("without a CommonName"), "{add}");

    let good = lab.conf(json!({"etcd_username": "root", "etcd_password": "s3cret",
        "etcd_cert_file": lab.pki.client_nocn_cert, "etcd_key_file": lab.pki.client_nocn_key}));
    let add = lab.call("ADD", "tls-c", &good);
    assert!(add.ok(), "{add}");
    assert_eq!(add.json()["ips"][0]["address"], "10.130.0.1/24");
    let status = lab.call("STATUS", "", &good);
    assert!(status.ok(), "{status}");
    let keys = lab.keys(&["--user", "root:s3cret"]);
    assert!(
        keys.iter()
            .any(|k| k == "/multihome/whereabouts/ip/n=/4-0a820001"),
        "{keys:?}"
    );

    let bad = lab.conf(json!({"etcd_username": "root", "etcd_password": "wrong",
        "etcd_cert_file": lab.pki.client_nocn_cert, "etcd_key_file": lab.pki.client_nocn_key}));
    let add = lab.call("ADD", "tls-d", &bad);
    assert_eq!(add.error_code(), Some(5), "{add}");
    let m = msg(&add);
    assert!(
        m.contains("authenticating as user \"root\"") && m.contains("authentication failed"),
        "{m}"
    );
    let status = lab.call("STATUS", "", &bad);
    assert_eq!(status.error_code(), Some(50), "{status}");
    assert!(msg(&status).contains("authentication failed"), "{status}");

    // Without a user, etcd refuses the request.
    let anonymous = lab.conf(json!({"etcd_cert_file": lab.pki.client_nocn_cert,
        "etcd_key_file": lab.pki.client_nocn_key}));
    let add = lab.call("ADD", "tls-d", &anonymous);
    assert_eq!(add.error_code(), Some(5), "{add}");

    let del = lab.call("DEL", "tls-c", &good);
    assert!(del.ok(), "{del}");
    assert!(
        !lab.keys(&["--user", "root:s3cret"])
            .iter()
            .any(|k| k.contains("/ip/")),
        "DEL released the address"
    );
    lab.etcdctl_ok(&["--user", "root:s3cret", "auth", "disable"]);
}
