//! The dhcp IPAM against real DHCP servers (dnsmasq, Kea, ISC dhcpd) on a namespace cabled to
//! the node's bridge, with our daemon and the reference's: leases, renewal, rebind, expiry,
//! daemon crashes, DEL without a daemon, RELEASE seen by the server, a retried ADD, 100
//! leases, and both halves of a node upgraded at different moments.

use std::path::Path;
use std::time::Duration;

use conformance_tests::dhcp::{DhcpLab, Server, ServerConf, DNS, DOMAIN, SERVER};
use conformance_tests::{ours, wait_until, Netns, Outcome, PluginDir};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// A lab serving `kind` with our daemon started: its plugins, a container, the 1.0.0 NAD.
fn started(kind: Server, conf: ServerConf) -> (DhcpLab, PluginDir, Netns, Value) {
    let mut lab = DhcpLab::new(kind, conf);
    lab.start_daemon(&[]);
    let nad = lab.nad("1.0.0");
    (lab, our_plugins(), Netns::new("dh-ctr"), nad)
}

/// Waits until the server holds no lease (the RELEASEs reached it).
fn wait_released(lab: &DhcpLab) {
    wait_until(
        "the server's leases released",
        Duration::from_secs(5),
        || lab.server_leases().is_empty(),
    );
}

/// Our bridge with our dhcp IPAM.
fn our_plugins() -> PluginDir {
    PluginDir::ours(&["bridge", "dhcp"])
}

fn bridge(
    lab: &DhcpLab,
    p: &PluginDir,
    cmd: &str,
    cid: &str,
    ctr: &Netns,
    conf: &Value,
) -> Outcome {
    lab.run(p, "bridge", cmd, cid, ctr.path(), conf)
}

fn with_prev(conf: &Value, result: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = result.clone();
    c
}

fn address(result: &Value) -> String {
    let ip = &result["ips"][0];
    ip["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {result}"))
        .to_string()
}

fn host(addr: &str) -> String {
    addr.split('/').next().unwrap().to_string()
}

fn pings(ctr: &Netns, to: &str) -> bool {
    ctr.run(&["ping", "-c1", "-W1", to]).status.success()
}

#[test]
fn the_documentations_bridge_nad_gets_a_lease_checks_it_and_releases_it_in_every_version() {
    let conf = ServerConf {
        mtu: Some(1400),
        ..ServerConf::default()
    };
    let mut lab = DhcpLab::new(Server::Dnsmasq, conf);
    lab.start_daemon(&[]);
    let p = our_plugins();
    for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let ctr = Netns::new("dh-ctr");
        let other = Netns::new("dh-out");
        let nad = lab.nad(version);
        // Before the ADD the container is not on the wire.
        assert!(!ctr.has_link("net1"));
        let add = bridge(&lab, &p, "ADD", "c1", &ctr, &nad);
        assert!(add.ok(), "{version}: {add}");
        let r = add.json();
        let addr = address(&r);
        assert!(
            addr.starts_with("192.0.2.") && addr.ends_with("/24"),
            "{version}: {r}"
        );
        assert_eq!(r["ips"][0]["gateway"], SERVER, "{version}: {r}");
        let v4: Vec<String> = ctr
            .addresses("net1")
            .into_iter()
            .filter(|a| !a.contains(':'))
            .collect();
        assert_eq!(v4, vec![addr.clone()], "{version}");
        let routes = ctr.run_ok(&["ip", "route", "show", "default"]);
        assert!(
            routes.contains(&format!("via {SERVER} dev net1")),
            "{version}: {routes}"
        );
        // DNS from options 6, 15 and 119 (the reference leaves "dns" empty, cni #86).
        assert_eq!(r["dns"]["nameservers"], json!([DNS]), "{version}: {r}");
        assert_eq!(r["dns"]["domain"], DOMAIN, "{version}: {r}");
        assert_eq!(
            r["dns"]["search"],
            json!(["corp.example", "lab.example"]),
            "{version}: {r}"
        );
        // MTU from option 26.
        let link = ctr.run_ok(&["ip", "-j", "link", "show", "net1"]);
        let link: Value = serde_json::from_str(&link).unwrap();
        assert_eq!(link[0]["mtu"], 1400, "{version}");
        // The server holds exactly this lease, and the container reaches the wire.
        assert_eq!(lab.server_leases(), [host(&addr)], "{version}");
        assert!(pings(&ctr, SERVER), "{version}: the server does not answer");
        // A namespace that is not on the wire does not reach it (same destination).
        assert!(
            !pings(&other, SERVER),
            "{version}: reached the wire without an attachment"
        );
        // CHECK checks the lease: no new DORA.
        let discovers = lab.discovers();
        if version != "0.3.1" {
            let check = bridge(&lab, &p, "CHECK", "c1", &ctr, &with_prev(&nad, &r));
            assert!(check.ok(), "{version}: {check}");
            assert_eq!(
                lab.discovers(),
                discovers,
                "{version}: CHECK took a new lease"
            );
        }
        // A retried ADD (the runtime lost our answer) gets the same lease, no new DORA.
        assert_eq!(lab.state_files().len(), 1, "{version}");
        // DEL: the RELEASE reaches the server (its lease file drops the lease).
        let del = bridge(&lab, &p, "DEL", "c1", &ctr, &nad);
        assert!(del.ok(), "{version}: {del}");
        wait_until(
            &format!("{version}: the server released {addr}"),
            Duration::from_secs(5),
            || lab.server_leases().is_empty(),
        );
        assert!(
            lab.state_files().is_empty(),
            "{version}: a lease file is left"
        );
        assert!(!ctr.has_link("net1"));
        // DEL again: nothing to do, success.
        let again = bridge(&lab, &p, "DEL", "c1", &ctr, &nad);
        assert!(again.ok(), "{version}: {again}");
        // CHECK after DEL fails: there is no lease.
        if version != "0.3.1" {
            let check = lab.run(&p, "dhcp", "CHECK", "c1", ctr.path(), &with_prev(&nad, &r));
            assert!(!check.ok(), "{version}: CHECK passed without a lease");
        }
    }
}

#[test]
fn a_retried_add_joins_the_exchange_in_flight_with_a_slow_server() {
    // dnsmasq's ping check holds each OFFER about 3 s: a slow server.
    let conf = ServerConf {
        ping_check: true,
        ..ServerConf::default()
    };
    let mut lab = DhcpLab::new(Server::Dnsmasq, conf);
    lab.start_daemon(&[]);
    let p = our_plugins();
    let ctr = Netns::new("dh-ctr");
    // The link a main plugin made; the IPAM alone is called twice, as a runtime retrying an
    // ADD after its timeout does (multus #1031).
    lab.node.run_ok(&[
        "ip",
        "link",
        "add",
        "h1",
        "master",
        "br1",
        "type",
        "veth",
        "peer",
        "name",
        "net1",
        "netns",
        ctr.name(),
    ]);
    lab.node.run_ok(&["ip", "link", "set", "h1", "up"]);
    let nad = lab.nad("1.0.0");
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let a = s.spawn(|| lab.run(&p, "dhcp", "ADD", "c1", ctr.path(), &nad));
        // The second starts once the first is in its exchange with the server.
        wait_until("the first DISCOVER", Duration::from_secs(10), || {
            lab.discovers() >= 1
        });
        let b = s.spawn(|| lab.run(&p, "dhcp", "ADD", "c1", ctr.path(), &nad));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    for o in &outcomes {
        assert!(o.ok(), "{o}");
    }
    assert_eq!(address(&outcomes[0].json()), address(&outcomes[1].json()));
    assert_eq!(lab.server_leases().len(), 1, "{:?}", lab.server_leases());
    let log = lab.daemon_logs();
    let xids: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("send Some(Discover)"))
        .filter_map(|l| l.split("xid ").nth(1)?.split_whitespace().next())
        .collect();
    assert_eq!(xids.len(), 1, "two exchanges for one attachment:\n{log}");
    // A third ADD after the lease: the lease held, at once.
    let third = lab.run(&p, "dhcp", "ADD", "c1", ctr.path(), &nad);
    assert!(third.ok(), "{third}");
    assert_eq!(address(&third.json()), address(&outcomes[0].json()));
    let del = lab.run(&p, "dhcp", "DEL", "c1", ctr.path(), &nad);
    assert!(del.ok(), "{del}");
    wait_released(&lab);
}

#[test]
fn a_sigkilled_daemon_re_adopts_its_leases_and_renews_them_without_a_new_dora() {
    let conf = ServerConf {
        lease: 120,
        t1: Some(3),
        t2: Some(100),
        ..ServerConf::default()
    };
    let (mut lab, p, ctr, nad) = started(Server::Dnsmasq, conf);
    let add = bridge(&lab, &p, "ADD", "c1", &ctr, &nad);
    assert!(add.ok(), "{add}");
    let r = add.json();
    let ip = host(&address(&r));
    let first_expiry = lab.server_expiry(&ip).expect("a lease on the server");
    lab.stop_daemon(Signal::SIGKILL);
    lab.start_daemon(&[]);
    assert!(
        lab.daemon_logs().contains("re-adopted the lease of"),
        "{}",
        lab.daemon_logs()
    );
    // CHECK passes on the restarted daemon: the lease is held.
    let check = bridge(&lab, &p, "CHECK", "c1", &ctr, &with_prev(&nad, &r));
    assert!(check.ok(), "{check}");
    // At T1 (3 s) the restarted daemon renews: the server's expiry moves on, with no DISCOVER.
    wait_until(
        "a renewal by the restarted daemon",
        Duration::from_secs(15),
        || lab.server_expiry(&ip).is_some_and(|e| e > first_expiry),
    );
    assert_eq!(lab.discovers(), 1, "a new DORA:\n{}", lab.server_log());
    assert_eq!(lab.server_leases(), vec![ip.clone()]);
    assert!(pings(&ctr, SERVER));
    let del = bridge(&lab, &p, "DEL", "c1", &ctr, &nad);
    assert!(del.ok(), "{del}");
    wait_released(&lab);
}

#[test]
fn del_without_a_daemon_succeeds_and_the_lease_is_released() {
    let (mut lab, p, ctr, nad) = started(Server::Dnsmasq, ServerConf::default());
    let add = bridge(&lab, &p, "ADD", "c1", &ctr, &nad);
    assert!(add.ok(), "{add}");
    let ip = host(&address(&add.json()));
    assert_eq!(lab.server_leases(), vec![ip.clone()]);
    lab.stop_daemon(Signal::SIGKILL);
    // The reference fails this DEL (plugins #78) and the pod is stranded.
    let del = bridge(&lab, &p, "DEL", "c1", &ctr, &nad);
    assert!(del.ok(), "{del}");
    assert!(!ctr.has_link("net1"));
    wait_until(
        "the release without a daemon",
        Duration::from_secs(5),
        || lab.server_leases().is_empty(),
    );
    assert!(lab.state_files().is_empty());
    // The daemon back: it holds nothing, and a new ADD gets a lease again.
    lab.start_daemon(&[]);
    let add = bridge(&lab, &p, "ADD", "c2", &ctr, &nad);
    assert!(add.ok(), "{add}");
    assert_eq!(lab.server_leases().len(), 1);
    assert!(bridge(&lab, &p, "DEL", "c2", &ctr, &nad).ok());
}

#[test]
fn a_daemon_restarted_after_its_sandbox_was_removed_releases_the_lease() {
    let mut lab = DhcpLab::new(Server::Dnsmasq, ServerConf::default());
    lab.start_daemon(&[]);
    let p = our_plugins();
    let nad = lab.nad("1.0.0");
    let kept = Netns::new("dh-ctr");
    let gone = Netns::new("dh-ctr");
    assert!(bridge(&lab, &p, "ADD", "keep", &kept, &nad).ok());
    assert!(bridge(&lab, &p, "ADD", "gone", &gone, &nad).ok());
    assert_eq!(lab.server_leases().len(), 2);
    lab.stop_daemon(Signal::SIGKILL);
    // The pod went without a DEL while the daemon was down.
    drop(gone);
    lab.start_daemon(&[]);
    wait_until("the orphan's release", Duration::from_secs(5), || {
        lab.server_leases().len() == 1 && lab.state_files().len() == 1
    });
    assert_eq!(lab.server_leases(), [host(&kept.addresses("net1")[0])]);
    assert!(bridge(&lab, &p, "DEL", "keep", &kept, &nad).ok());
    wait_released(&lab);
}

#[test]
fn kea_renews_rebinds_when_unicast_is_lost_expires_with_the_server_gone_and_regains() {
    let conf = ServerConf {
        lease: 12,
        t1: Some(3),
        t2: Some(6),
        ..ServerConf::default()
    };
    let (mut lab, p, ctr, nad) = started(Server::Kea, conf);
    let add = bridge(&lab, &p, "ADD", "c1", &ctr, &nad);
    assert!(add.ok(), "{add}\n{}", lab.daemon_logs());
    let r = add.json();
    let ip = host(&address(&r));
    let check = |lab: &DhcpLab| bridge(lab, &p, "CHECK", "c1", &ctr, &with_prev(&nad, &r)).ok();
    // RENEWING: unicast to the server at T1.
    let e0 = lab.server_expiry(&ip).expect("kea's lease");
    wait_until("a renewal", Duration::from_secs(10), || {
        lab.server_expiry(&ip).is_some_and(|e| e > e0)
    });
    // Unicast to the server lost (a firewall between): REBINDING by broadcast at T2 still
    // extends the lease. The drop counter proves the unicast renewals were tried and lost.
    // (Filtered where the node's bridge forwards: the server's raw socket sees frames before
    // its own firewall would.)
    lab.node.run_ok(&["nft", "add table bridge lab; add chain bridge lab f { type filter hook forward priority 0; }; add rule bridge lab f ip daddr 192.0.2.1 udp dport 67 counter drop"]);
    let e1 = lab.server_expiry(&ip).unwrap();
    wait_until("a rebinding", Duration::from_secs(15), || {
        lab.server_expiry(&ip).is_some_and(|e| e > e1)
    });
    let counters = lab.node.run_ok(&["nft", "list", "table", "bridge", "lab"]);
    assert!(
        !counters.contains("packets 0 "),
        "no unicast renewal was dropped: {counters}"
    );
    assert!(check(&lab), "CHECK failed while the lease is good");
    lab.node
        .run_ok(&["nft", "delete", "table", "bridge", "lab"]);
    // The server gone: the lease expires and CHECK says so.
    lab.stop_server();
    wait_until("the lease's expiry", Duration::from_secs(20), || {
        !check(&lab)
    });
    // The server back: the daemon regains the same address, CHECK passes again.
    lab.start_server();
    wait_until("the lease regained", Duration::from_secs(30), || {
        check(&lab)
    });
    assert_eq!(lab.server_leases(), vec![ip.clone()]);
    assert!(pings(&ctr, SERVER));
    assert!(bridge(&lab, &p, "DEL", "c1", &ctr, &nad).ok());
    wait_released(&lab);
}

#[test]
fn kea_and_isc_dhcpd_serve_add_check_del_with_the_release_seen() {
    for kind in [Server::Kea, Server::Isc] {
        let mut lab = DhcpLab::new(kind, ServerConf::default());
        lab.start_daemon(&[]);
        let p = our_plugins();
        let ctr = Netns::new("dh-ctr");
        let nad = lab.nad("1.1.0");
        let add = bridge(&lab, &p, "ADD", "c1", &ctr, &nad);
        assert!(add.ok(), "{kind:?}: {add}\n{}", lab.daemon_logs());
        let r = add.json();
        let ip = host(&address(&r));
        assert_eq!(lab.server_leases(), vec![ip.clone()], "{kind:?}");
        assert_eq!(r["dns"]["nameservers"], json!([DNS]), "{kind:?}: {r}");
        assert!(pings(&ctr, SERVER), "{kind:?}");
        let n = lab.discovers();
        let check = bridge(&lab, &p, "CHECK", "c1", &ctr, &with_prev(&nad, &r));
        assert!(check.ok(), "{kind:?}: {check}");
        assert_eq!(lab.discovers(), n, "{kind:?}: CHECK took a new lease");
        assert!(bridge(&lab, &p, "DEL", "c1", &ctr, &nad).ok());
        wait_until(
            &format!("{kind:?}: the release"),
            Duration::from_secs(5),
            || lab.server_leases().is_empty(),
        );
    }
}

#[test]
fn our_client_works_with_the_reference_daemon_and_the_reference_client_with_ours() {
    let mut lab = DhcpLab::new(Server::Dnsmasq, ServerConf::default());
    let nad = lab.nad("1.0.0");
    // Our CNI executable, the reference daemon (the daemon upgraded last).
    lab.start_reference_daemon();
    let p = our_plugins();
    let ctr = Netns::new("dh-ctr");
    let add = bridge(&lab, &p, "ADD", "c1", &ctr, &nad);
    assert!(add.ok(), "{add}");
    let r = add.json();
    assert_eq!(lab.server_leases(), [host(&address(&r))]);
    let check = bridge(&lab, &p, "CHECK", "c1", &ctr, &with_prev(&nad, &r));
    assert!(check.ok(), "{check}");
    assert!(bridge(&lab, &p, "DEL", "c1", &ctr, &nad).ok());
    assert!(!ctr.has_link("net1"));
    // The reference CNI executable, our daemon (the executable upgraded last).
    lab.start_daemon(&[]);
    let mixed = PluginDir::ours(&["bridge"]).with_reference(&["dhcp"]);
    let add = bridge(&lab, &mixed, "ADD", "c2", &ctr, &nad);
    assert!(add.ok(), "{add}");
    let r = add.json();
    let ip = host(&address(&r));
    wait_until("the lease on the server", Duration::from_secs(5), || {
        lab.server_leases().contains(&ip)
    });
    // The reference's CHECK calls DHCP.Allocate: ours answers with the lease held.
    let n = lab.discovers();
    let check = bridge(&lab, &mixed, "CHECK", "c2", &ctr, &with_prev(&nad, &r));
    assert!(check.ok(), "{check}");
    assert_eq!(
        lab.discovers(),
        n,
        "the reference's CHECK took a new lease from our daemon"
    );
    assert!(bridge(&lab, &mixed, "DEL", "c2", &ctr, &nad).ok());
    wait_until("the release", Duration::from_secs(5), || {
        !lab.server_leases().contains(&ip)
    });
    assert!(lab.state_files().is_empty());
}

#[test]
fn gc_releases_the_leases_of_attachments_no_longer_valid_and_status_needs_the_daemon() {
    let mut lab = DhcpLab::new(Server::Dnsmasq, ServerConf::default());
    let p = our_plugins();
    let nad = lab.nad("1.1.0");
    let none = Path::new("");
    // STATUS without a daemon: 50 (ADD cannot be served); ADD: 11, try again later.
    let status = lab.run(&p, "dhcp", "STATUS", "", none, &nad);
    assert_eq!(status.error_code(), Some(50), "{status}");
    let ctr = Netns::new("dh-ctr");
    let add = bridge(&lab, &p, "ADD", "c0", &ctr, &nad);
    assert_eq!(add.error_code(), Some(11), "{add}");
    assert!(!ctr.has_link("net1"), "a failed ADD left its link");
    lab.start_daemon(&[]);
    let status = lab.run(&p, "dhcp", "STATUS", "", none, &nad);
    assert!(status.ok(), "{status}");
    let a = Netns::new("dh-ctr");
    let b = Netns::new("dh-ctr");
    assert!(bridge(&lab, &p, "ADD", "a", &a, &nad).ok());
    assert!(bridge(&lab, &p, "ADD", "b", &b, &nad).ok());
    assert_eq!(lab.server_leases().len(), 2);
    let mut gc = nad.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "net1"}]);
    let out = lab.run(&p, "dhcp", "GC", "", none, &gc);
    assert!(out.ok(), "{out}");
    wait_until("b released by GC", Duration::from_secs(5), || {
        lab.server_leases().len() == 1
    });
    assert_eq!(lab.server_leases(), [host(&a.addresses("net1")[0])]);
    assert_eq!(lab.state_files().len(), 1);
    assert!(bridge(&lab, &p, "DEL", "a", &a, &nad).ok());
    assert!(bridge(&lab, &p, "DEL", "b", &b, &nad).ok());
}

#[test]
fn a_socket_path_the_node_does_not_allow_is_refused_and_del_still_succeeds() {
    let mut lab = DhcpLab::new(Server::Dnsmasq, ServerConf::default());
    lab.start_daemon(&[]);
    let p = our_plugins();
    let ctr = Netns::new("dh-ctr");
    let mut nad = lab.nad("1.0.0");
    nad["ipam"]["daemonSocketPath"] = json!("/var/run/docker.sock");
    let add = bridge(&lab, &p, "ADD", "c1", &ctr, &nad);
    assert_eq!(add.error_code(), Some(7), "{add}");
    let msg = add.json()["msg"].as_str().unwrap().to_string();
    assert!(
        msg.contains("ipam.daemonSocketPath")
            && msg.contains("/var/run/docker.sock")
            && msg.contains("dhcp_socket_dirs"),
        "{msg}"
    );
    assert!(!ctr.has_link("net1"));
    assert!(lab.server_leases().is_empty());
    let del = bridge(&lab, &p, "DEL", "c1", &ctr, &nad);
    assert!(del.ok(), "{del}");
    let mut bad = lab.nad("1.0.0");
    bad["ipam"]["request"] = json!([{"option": "colour"}]);
    let add = bridge(&lab, &p, "ADD", "c1", &ctr, &bad);
    assert_eq!(add.error_code(), Some(7), "{add}");
    assert!(
        add.stdout_text().contains("ipam.request[0].option"),
        "{add}"
    );
    // The same network, well configured, works (the refusals were not the lab's fault).
    let good = lab.nad("1.0.0");
    assert!(bridge(&lab, &p, "ADD", "c1", &ctr, &good).ok());
    assert!(bridge(&lab, &p, "DEL", "c1", &ctr, &good).ok());
}

#[test]
fn a_hundred_concurrent_leases_on_one_daemon_with_bounded_threads_and_memory() {
    let mut lab = DhcpLab::new(Server::Dnsmasq, ServerConf::default());
    lab.start_daemon(&[]);
    let p = our_plugins();
    let nad = lab.nad("1.0.0");
    let ctrs: Vec<Netns> = (0..100).map(|_| Netns::new("dh-c")).collect();
    let (_, rss_before) = lab.daemon_threads_and_rss();
    std::thread::scope(|s| {
        for chunk in ctrs.chunks(10).enumerate() {
            let (lab, p, nad) = (&lab, &p, &nad);
            s.spawn(move || {
                for (i, ctr) in chunk.1.iter().enumerate() {
                    let cid = format!("c{}-{i}", chunk.0);
                    let add = bridge(lab, p, "ADD", &cid, ctr, nad);
                    assert!(add.ok(), "{cid}: {add}");
                }
            });
        }
    });
    let leases = lab.server_leases();
    let distinct: std::collections::BTreeSet<_> = leases.iter().collect();
    assert_eq!((leases.len(), distinct.len()), (100, 100), "{leases:?}");
    assert_eq!(lab.state_files().len(), 100);
    let (threads, rss) = lab.daemon_threads_and_rss();
    eprintln!("100 leases: daemon threads {threads}, RSS {rss} KiB (before {rss_before} KiB)");
    // Accept, scheduler, main: no thread per lease (the reference runs one OS thread each).
    assert!(threads <= 4, "{threads} threads for 100 leases");
    assert!(rss < 16 * 1024, "RSS {rss} KiB for 100 leases");
    std::thread::scope(|s| {
        for chunk in ctrs.chunks(10).enumerate() {
            let (lab, p, nad) = (&lab, &p, &nad);
            s.spawn(move || {
                for (i, ctr) in chunk.1.iter().enumerate() {
                    let cid = format!("c{}-{i}", chunk.0);
                    assert!(bridge(lab, p, "DEL", &cid, ctr, nad).ok(), "{cid}");
                }
            });
        }
    });
    wait_until("100 releases", Duration::from_secs(10), || {
        lab.server_leases().is_empty()
    });
    assert!(lab.state_files().is_empty());
    let _ = ours("dhcp");
}

/// The port state of `dev` on the node's bridge ("listening", "learning", "forwarding"...).
fn port_state(lab: &DhcpLab, dev: &str) -> String {
    let out = lab
        .node
        .run_ok(&["bridge", "-j", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v[0]["state"].as_str().unwrap_or_default().to_string()
}

#[test]
fn with_stp_on_the_bridge_add_waits_for_its_port_to_forward_before_the_exchange() {
    let mut lab = DhcpLab::new(Server::Dnsmasq, ServerConf::default());
    // Kernel STP with a 4 s forward delay: a new port listens, then learns, for 8 s.
    lab.node.run_ok(&[
        "ip",
        "link",
        "set",
        "dev",
        "br1",
        "type",
        "bridge",
        "stp_state",
        "1",
        "forward_delay",
        "400",
    ]);
    wait_until(
        "the uplink port forwarding",
        Duration::from_secs(30),
        || port_state(&lab, "up0") == "forwarding",
    );
    // An exchange bounded well below the port's 8 s of listening and learning: without the
    // wait, every DISCOVER is dropped at the port and ADD fails.
    lab.start_daemon(&["-timeout", "3s"]);
    let p = our_plugins();
    let ctr = Netns::new("dh-ctr");
    let nad = lab.nad("1.0.0");
    let add = bridge(&lab, &p, "ADD", "c1", &ctr, &nad);
    assert!(add.ok(), "{add}\n{}", lab.daemon_logs());
    let ip = host(&address(&add.json()));
    assert_eq!(lab.server_leases(), vec![ip]);
    let host_port = add.json()["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(port_state(&lab, &host_port), "forwarding");
    assert!(pings(&ctr, SERVER));
    assert!(bridge(&lab, &p, "DEL", "c1", &ctr, &nad).ok());
    wait_released(&lab);
}

#[test]
fn the_pod_name_goes_as_host_name_when_asked_and_broadcast_is_per_network() {
    let mut lab = DhcpLab::new(Server::Dnsmasq, ServerConf::default());
    lab.start_daemon(&[]);
    let p = our_plugins();
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=vms;K8S_POD_NAME=virt-launcher-web-0";
    // Asked: provide host-name fromArg K8S_POD_NAME, and answers broadcast.
    let mut asked = lab.nad("1.0.0");
    asked["ipam"]["provide"] = json!([{"option": "host-name", "fromArg": "K8S_POD_NAME"}]);
    asked["ipam"]["broadcast"] = json!(true);
    let a = Netns::new("dh-ctr");
    let add = lab.bridge_with_args(&p, "ADD", "a", a.path(), args, &asked);
    assert!(add.ok(), "{add}");
    let ip_a = host(&address(&add.json()));
    // Not asked: no host name, answers unicast to the offered address.
    let plain = lab.nad("1.0.0");
    let b = Netns::new("dh-ctr");
    let add = lab.bridge_with_args(&p, "ADD", "b", b.path(), args, &plain);
    assert!(add.ok(), "{add}");
    let ip_b = host(&address(&add.json()));
    let leases = lab.server_lease_file();
    let hostname = |ip: &str| {
        leases
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(ip))
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(hostname(&ip_a), "virt-launcher-web-0", "{leases}");
    assert_eq!(hostname(&ip_b), "*", "{leases}");
    let log = lab.daemon_logs();
    let offer_to = |ip: &str| {
        log.lines()
            .filter(|l| l.contains("got Some(Offer)") && l.contains(&format!("yiaddr {ip} ")))
            .filter_map(|l| l.rsplit(" to ").next())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(offer_to(&ip_a), ["255.255.255.255"], "{log}");
    assert_eq!(offer_to(&ip_b), vec![ip_b.clone()], "{log}");
    assert!(lab
        .bridge_with_args(&p, "DEL", "a", a.path(), args, &asked)
        .ok());
    assert!(lab
        .bridge_with_args(&p, "DEL", "b", b.path(), args, &plain)
        .ok());
    wait_until("the releases", Duration::from_secs(5), || {
        lab.server_leases().is_empty()
    });
}
