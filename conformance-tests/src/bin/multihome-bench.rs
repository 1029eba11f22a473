//! `make bench`: whole-process benchmarks of the suite's executables against Debian's reference
#![allow(clippy::print_stdout)] // a report printed for the person running `make bench`
//! plugins, side by side in one run, in network namespaces. Prints and writes docs/benchmarks.md.

use std::path::{Path, PathBuf};

use conformance_tests::bench::{in_netns, machine, table, timed_call, Samples};
use conformance_tests::{
    ours, reference, require_root, CniVars, EtcdCluster, Netns, Node, OvnLab, TempDir,
};
use ipam::range::{from_u128, to_u128, IpRange};
use ipam::store::{Owner, PoolId, Reservation};
use serde_json::{json, Value};
use whereabouts::conf::EtcdConf;
use whereabouts::etcd_store::EtcdStore;
use whereabouts::file_store::FileStore;

const WARMUP: usize = 10;

/// What the PNG plot shows, filled by the sections as they run.
#[derive(Default)]
struct Plot {
    /// (what, peer's median ms, ours median ms)
    bars: Vec<(String, f64, f64)>,
    /// (attachments per plugin, reference ms, ours ms, kernel alone ms)
    scale: Vec<(usize, f64, f64, f64)>,
}

static PLOT: std::sync::Mutex<Plot> = std::sync::Mutex::new(Plot {
    bars: Vec::new(),
    scale: Vec::new(),
});

fn plot_bar(what: &str, peer: f64, ours: f64) {
    PLOT.lock()
        .unwrap_or_else(|e| e.into_inner())
        .bars
        .push((what.to_string(), peer, ours));
}

/// Writes `png` with gnuplot (Debian's gnuplot-nox, from `make deps`): medians of ours against
/// the peer per benchmark, and bridge ADD as a node's attachments grow.
fn write_plot(png: &Path) {
    let plot = PLOT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("bench-plot");
    let mut bars = String::new();
    for (what, peer, ours) in &plot.bars {
        bars.push_str(&format!("\"{what}\" {peer:.3} {ours:.3}\n"));
    }
    let mut scale = String::new();
    for (n, r, o, k) in &plot.scale {
        scale.push_str(&format!("{n} {r:.3} {o:.3} {k:.3}\n"));
    }
    std::fs::write(dir.join("bars.dat"), bars).expect("bars.dat");
    std::fs::write(dir.join("scale.dat"), scale).expect("scale.dat");
    let panels = if plot.scale.is_empty() { 1 } else { 2 };
    let mut script = format!(
        "set terminal png size {},560 font ',10'\nset output '{}'\nset multiplot layout 1,{panels}\n\
         set title 'median ms per call, peer vs multihome (lower is better)'\n\
         set style data histogram\nset style histogram cluster gap 1\nset style fill solid 0.85 border -1\n\
         set xtics rotate by -25 scale 0\nset ylabel 'ms (log scale)'\nset logscale y\nset yrange [0.3:*]\nset key top left\nset grid ytics\n\
         plot '{}' using 2:xtic(1) title 'peer (reference plugin / host-local / shell)' lc rgb '#999999', \
         '' using 3 title 'multihome' lc rgb '#1f77b4'\n",
        600 * panels,
        png.display(),
        dir.join("bars.dat").display()
    );
    if panels == 2 {
        script.push_str(&format!(
            "set title 'bridge ADD as attachments on one node grow'\nset style data linespoints\n\
             unset logscale y\nset yrange [0:*]\nset xtics rotate by 0 scale 1\nset xlabel 'attachments per plugin'\nset ylabel 'ADD ms'\n\
             plot '{0}' using 1:2 title 'reference bridge + host-local' lc rgb '#999999' pt 7, \
             '{0}' using 1:3 title 'multihome bridge + whereabouts' lc rgb '#1f77b4' pt 7, \
             '{0}' using 1:4 title 'kernel alone (3 ip calls)' lc rgb '#2ca02c' pt 5\n",
            dir.join("scale.dat").display()
        ));
    }
    script.push_str("unset multiplot\n");
    std::fs::write(dir.join("plot.gp"), &script).expect("plot.gp");
    let out = std::process::Command::new("gnuplot")
        .arg(dir.join("plot.gp"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run gnuplot (make deps installs gnuplot-nox): {e}"));
    assert!(
        out.status.success(),
        "gnuplot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("wrote {}", png.display());
}

struct Options {
    write: Option<PathBuf>,
    /// `--plot FILE`: the PNG alone (with `--only`, the sections that ran).
    plot: Option<PathBuf>,
    iterations: usize,
    only: Option<String>,
}

fn options() -> Options {
    let mut opts = Options {
        write: None,
        plot: None,
        iterations: 300,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--write" => opts.write = args.next().map(PathBuf::from),
            "--plot" => opts.plot = args.next().map(PathBuf::from),
            "--only" => opts.only = args.next(),
            "--iterations" => {
                opts.iterations = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(opts.iterations)
            }
            other => panic!(
                "unknown argument {other:?}; use --write FILE, --plot FILE, --iterations N, --only SECTION"
            ),
        }
    }
    opts
}

/// static ADD as a whole process: ours and the reference alternate, so drift hits both alike;
/// `/bin/true` spawned the same way shows what process creation alone costs here.
fn static_add(iterations: usize) -> String {
    let node = Node::new("bench-node");
    let ctr = Netns::new("bench-ctr");
    let conf = json!({"cniVersion": "1.0.0", "name": "bench", "type": "static", "ipam": {"type": "static",
        "addresses": [{"address": "10.90.0.5/24", "gateway": "10.90.0.1"}, {"address": "fd90::5/64"}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.90.0.53"]}}});
    let vars = CniVars {
        command: "ADD".into(),
        container_id: "bench-static".into(),
        netns: ctr.path().display().to_string(),
        ifname: "eth0".into(),
        args: "IgnoreUnknown=true;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod".into(),
        path: "/usr/lib/cni".into(),
    };
    let (env, stdin) = (vars.env(), conf.to_string().into_bytes());
    let (theirs_bin, ours_bin) = (reference("static"), ours("static"));
    let [floor, theirs, mine] = in_netns(node.path(), move || {
        let mut floor = Samples::new("`/bin/true` (process creation floor)");
        let mut theirs = Samples::new("reference `static` (Go, Debian 1.1.1)");
        let mut mine = Samples::new("multihome `static` (Rust)");
        for i in 0..WARMUP + iterations {
            let f = timed_call(Path::new("/bin/true"), &env, &stdin);
            let (t, o) = (
                timed_call(&theirs_bin, &env, &stdin),
                timed_call(&ours_bin, &env, &stdin),
            );
            if i >= WARMUP {
                floor.push(f);
                theirs.push(t);
                mine.push(o);
            }
        }
        [floor, theirs, mine]
    });
    let ratio = theirs.median() / mine.median();
    let net = (theirs.median() - floor.median()) / (mine.median() - floor.median());
    plot_bar("static ADD", theirs.median(), mine.median());
    eprintln!(
        "static ADD: reference {:.2} ms, ours {:.2} ms: {ratio:.1}x",
        theirs.median(),
        mine.median()
    );
    format!(
        "## static IPAM: ADD as a whole process\n\n\
         One ADD (two addresses, a route, DNS) from spawn to exit, spawned from a thread inside a node\n\
         namespace with the same environment and stdin; the executables alternate, {iterations} calls\n\
         each after {WARMUP} warm-up calls. Most of the time is process start: the Go binary maps and\n\
         initialises its runtime (garbage collector, scheduler threads) before `main`; ours is a small,\n\
         statically linked Rust binary (no dynamic loader: that alone took 0.4 ms of its 1.5 ms when it\n\
         was dynamically linked) that parses, validates and prints. `/bin/true` is dynamically linked.\n\n{}\n\
         **Ours is {ratio:.1}x faster** (median against median, same run); above the process-creation\n\
         floor, {net:.1}x.\n",
        table(&[&theirs, &mine, &floor])
    )
}

/// A whereabouts (file store) config and a host-local config over same-sized ranges.
fn ipam_configs(store: &Path) -> (Value, Value) {
    let hl = json!({"cniVersion": "1.0.0", "name": "bench-hl", "type": "host-local",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.70.0.0/16"}]], "dataDir": store.join("host-local")}});
    let wb = json!({"cniVersion": "1.0.0", "name": "bench-wb", "type": "whereabouts",
        "ipam": {"type": "whereabouts", "range": "10.71.0.0/16", "store_dir": store.join("whereabouts")}});
    (hl, wb)
}

/// What the node's runtime adds to every plugin's environment during a section (the node's
/// settings directory, naming its etcd cluster); empty outside it.
static NODE_ENV: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

fn env_for(vars: &CniVars, command: &str, cid: &str) -> Vec<(String, String)> {
    let mut env = CniVars {
        command: command.into(),
        container_id: cid.into(),
        ..vars.clone()
    }
    .env();
    env.extend(
        NODE_ENV
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned(),
    );
    env
}

/// whereabouts (file store) ADD and DEL against host-local, alternating, as whole processes.
fn whereabouts_vs_host_local(iterations: usize) -> String {
    let node = Node::new("bench-node");
    let ctr = Netns::new("bench-ctr");
    let scratch = TempDir::new("bench-wb");
    let (hl, wb) = ipam_configs(scratch.path());
    let vars = CniVars {
        netns: ctr.path().display().to_string(),
        ifname: "net1".into(),
        args: "IgnoreUnknown=true;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod".into(),
        path: "/usr/lib/cni".into(),
        ..CniVars::default()
    };
    let (hl_bin, wb_bin) = (reference("host-local"), ours("whereabouts"));
    let (hl_in, wb_in) = (hl.to_string().into_bytes(), wb.to_string().into_bytes());
    let series = in_netns(node.path(), move || {
        let mut s = [
            Samples::new("host-local ADD (Go, Debian 1.1.1)"),
            Samples::new("whereabouts ADD (ours, file store)"),
            Samples::new("host-local DEL"),
            Samples::new("whereabouts DEL (ours)"),
        ];
        let total = WARMUP + iterations;
        for i in 0..total {
            let cid = format!("bench-{i}");
            let a = timed_call(&hl_bin, &env_for(&vars, "ADD", &cid), &hl_in);
            let b = timed_call(&wb_bin, &env_for(&vars, "ADD", &cid), &wb_in);
            if i >= WARMUP {
                s[0].push(a);
                s[1].push(b);
            }
        }
        for i in 0..total {
            let cid = format!("bench-{i}");
            let a = timed_call(&hl_bin, &env_for(&vars, "DEL", &cid), &hl_in);
            let b = timed_call(&wb_bin, &env_for(&vars, "DEL", &cid), &wb_in);
            if i >= WARMUP {
                s[2].push(a);
                s[3].push(b);
            }
        }
        s
    });
    let [hl_add, wb_add, hl_del, wb_del] = &series;
    plot_bar(
        "host-local vs whereabouts ADD",
        hl_add.median(),
        wb_add.median(),
    );
    eprintln!(
        "whereabouts ADD {:.2} ms vs host-local {:.2} ms",
        wb_add.median(),
        hl_add.median()
    );
    format!(
        "## whereabouts (embedded file store) against host-local\n\n\
         {iterations} ADDs of distinct attachments on a /16, then their DELs, alternating between\n\
         Debian's host-local and our whereabouts, whole processes in a node namespace. Ours fsyncs\n\
         every file it replaces (crash-safe; host-local does not) and keeps a cluster-wide\n\
         configuration model; host-local writes one file per address.\n\n{}\n{}\n",
        table(&[hl_add, wb_add]),
        table(&[hl_del, wb_del])
    )
}

/// whereabouts ADD with 10 reservations in a /16 and with 60,000: allocation must not scan the pool.
fn whereabouts_scale(iterations: usize) -> String {
    let node = Node::new("bench-node");
    let ctr = Netns::new("bench-ctr");
    let scratch = TempDir::new("bench-scale");
    let mut configs = Vec::new();
    for (label, n) in [("10", 10u32), ("60,000", 60_000)] {
        let dir = scratch.join(&format!("store-{n}"));
        let conf = json!({"cniVersion": "1.0.0", "name": "scale", "type": "whereabouts",
            "ipam": {"type": "whereabouts", "range": "10.72.0.0/16", "store_dir": dir}});
        prefill(&dir, n);
        configs.push((label, conf.to_string().into_bytes()));
    }
    let vars = CniVars {
        netns: ctr.path().display().to_string(),
        ifname: "net1".into(),
        args: "IgnoreUnknown=true;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=scale".into(),
        ..CniVars::default()
    };
    let bin = ours("whereabouts");
    let series = in_netns(node.path(), move || {
        let mut out: Vec<Samples> = configs
            .iter()
            .map(|(l, _)| Samples::new(&format!("ADD with {l} reservations")))
            .collect();
        for i in 0..WARMUP + iterations {
            let cid = format!("scale-{i}");
            for (k, (_, conf)) in configs.iter().enumerate() {
                let t = timed_call(&bin, &env_for(&vars, "ADD", &cid), conf);
                timed_call(&bin, &env_for(&vars, "DEL", &cid), conf);
                if i >= WARMUP {
                    out[k].push(t);
                }
            }
        }
        out
    });
    let ratio = series[1].median() / series[0].median();
    eprintln!("whereabouts ADD at 60k / at 10: {ratio:.2}");
    format!(
        "## whereabouts ADD as the pool grows\n\n\
         The same /16 pre-filled with 10 and with 60,000 reservations (written with the store's bulk\n\
         import); each sample is an ADD of a new attachment (followed, untimed, by its DEL, so the size\n\
         stays put). The store reads and rewrites only the 256-address block, the owner-index shard and\n\
         the range hint it touches, so the pool's size barely matters.\n\n{}\n\
         **ADD with 60,000 reservations takes {ratio:.2}x the time of ADD with 10** (target: within 2x).\n",
        table(&[&series[0], &series[1]])
    )
}

/// Fills a store's default pool with `n` reservations from the bottom of 10.72.0.0/16.
fn prefill(dir: &Path, n: u32) {
    let range = IpRange::new(
        "ipam",
        "10.72.0.0/16".parse().expect("cidr"),
        None,
        None,
        Vec::new(),
        None,
    )
    .expect("range");
    let mut next = range.first();
    let mut bulk = Vec::new();
    for i in 0..n {
        let ip = next.expect("the /16 holds 60,000");
        bulk.push(Reservation {
            ip,
            owner: Owner {
                container_id: format!("{i:064x}"),
                ifname: "net1".into(),
                pod_ref: Some(format!("bench/pod-{i}")),
                network: Some("bench".into()),
                sticky: None,
            },
        });
        next = range.next_allocatable(from_u128(to_u128(ip) + 1, true));
    }
    FileStore::new(dir)
        .import(
            &PoolId {
                network: String::new(),
                cidr: None,
            },
            &range,
            &bulk,
        )
        .expect("import");
}

/// Concurrent clients in the throughput benchmark (the issue's figure).
const CLIENTS: usize = 24;

/// `total` ADDs of distinct attachments from [`CLIENTS`] threads, each spawning whole processes
/// one after the other; returns allocations per second.
fn burst(bin: &Path, conf: &[u8], vars: &CniVars, tag: &str, total: usize) -> f64 {
    burst_with(bin, conf, vars, tag, total, &|_| {})
}

/// [`burst`], calling `progress` with the number of ADDs done after each (to kill a member
/// part-way through).
fn burst_with(
    bin: &Path,
    conf: &[u8],
    vars: &CniVars,
    tag: &str,
    total: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> f64 {
    let done = &std::sync::atomic::AtomicUsize::new(0);
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..CLIENTS {
            s.spawn(move || {
                for i in (0..total).filter(|i| i % CLIENTS == t) {
                    // A pod of its own per ADD: with one pod name for all, every ADD after the
                    // first is "the same pod restarted" and takes that pod's address over.
                    let id = format!("{tag}-{i}");
                    let vars = CniVars {
                        args: format!(
                            "IgnoreUnknown=true;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={id}"
                        ),
                        ..vars.clone()
                    };
                    timed_call(bin, &env_for(&vars, "ADD", &id), conf);
                    progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
                }
            });
        }
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn etcd_conf(endpoints: Vec<String>) -> EtcdConf {
    EtcdConf {
        endpoints,
        username: None,
        password: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        prefix: whereabouts::conf::DEFAULT_ETCD_PREFIX.to_string(),
        dial_timeout_ms: 2000,
        request_timeout_ms: 5000,
    }
}

/// whereabouts on a 3-member etcd cluster: allocations per second with 24 concurrent clients
/// (and the file store's for comparison), and ADD latency with 10 and 20,000 reservations.
fn whereabouts_etcd(iterations: usize) -> String {
    let out = whereabouts_etcd_section(iterations);
    NODE_ENV.lock().unwrap_or_else(|e| e.into_inner()).clear();
    out
}

fn whereabouts_etcd_section(iterations: usize) -> String {
    let node = Node::new("bench-node");
    let ctr = Netns::new("bench-ctr");
    let scratch = TempDir::new("bench-etcd");
    let etcd = EtcdCluster::start(3, &node);
    let endpoints = etcd.endpoints();
    // The node's administrator names the cluster; the NADs repeat it.
    let settings = conformance_tests::NodeSettings::for_ipam(
        &json!({"datastore": "etcd", "etcd_endpoints": endpoints}),
    );
    *NODE_ENV.lock().unwrap_or_else(|e| e.into_inner()) = vec![settings.env()];
    let conf = |name: &str, range: &str| {
        json!({"cniVersion": "1.0.0", "name": name, "type": "whereabouts", "ipam": {"type": "whereabouts",
            "range": range, "network_name": name, "datastore": "etcd", "etcd_endpoints": endpoints}})
        .to_string()
        .into_bytes()
    };
    let burst_etcd = conf("burst", "10.73.0.0/16");
    let burst_file =
        json!({"cniVersion": "1.0.0", "name": "burst", "type": "whereabouts", "ipam": {
        "type": "whereabouts", "range": "10.74.0.0/16", "store_dir": scratch.join("file")}})
        .to_string()
        .into_bytes();
    let small = conf("scale-10", "10.75.0.0/16");
    let large = conf("scale-20k", "10.76.0.0/16");
    let vars = CniVars {
        netns: ctr.path().display().to_string(),
        ifname: "net1".into(),
        args: "IgnoreUnknown=true;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=etcd".into(),
        ..CniVars::default()
    };
    let bin = ours("whereabouts");
    let total = (CLIENTS * 25).max(300);
    let store_conf = etcd_conf(endpoints.clone());
    let pids = etcd.pids();
    let etcd_cpu = move || -> f64 {
        // utime + stime of the members, in seconds (clock ticks of 1/100 s).
        pids.iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .filter_map(|st| {
                let f: Vec<&str> = st.rsplit(')').next()?.split_whitespace().collect();
                Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
            })
            .sum::<f64>()
            / 100.0
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let burst_killed = conf("burst-killed", "10.74.0.0/16");
    let victim = etcd.pids()[2];
    let (rate_etcd, etcd_share, rate_file, rate_killed, series) =
        in_netns(node.path(), move || {
            let store = EtcdStore::connect(&store_conf).expect("connect to the bench cluster");
            for (name, range, n) in [
                ("scale-10", "10.75.0.0/16", 10u32),
                ("scale-20k", "10.76.0.0/16", 20_000),
            ] {
                let range =
                    IpRange::new(name, range.parse().unwrap(), None, None, Vec::new(), None)
                        .expect("range");
                let id = PoolId {
                    network: name.into(),
                    cidr: None,
                };
                let mut bulk = Vec::new();
                let mut next = range.start;
                for i in 0..n {
                    bulk.push(Reservation {
                        ip: next,
                        owner: Owner {
                            container_id: format!("pre-{i}"),
                            ifname: "net1".into(),
                            pod_ref: None,
                            network: Some(name.into()),
                            sticky: None,
                        },
                    });
                    next = range
                        .next_allocatable(from_u128(to_u128(next) + 1, true))
                        .expect("room");
                }
                store.import(&id, &range, &bulk).expect("import");
            }
            let cpu_before = etcd_cpu();
            let rate_etcd = burst(&bin, &burst_etcd, &vars, "etcd", total);
            let etcd_share = (etcd_cpu() - cpu_before) / (total as f64 / rate_etcd) / cores * 100.0;
            let rate_file = burst(&bin, &burst_file, &vars, "file", total);

            let mut out = [
                Samples::new("etcd ADD with 10 reservations"),
                Samples::new("etcd ADD with 20,000 reservations"),
            ];
            for i in 0..WARMUP + iterations.min(200) {
                let cid = format!("scale-{i}");
                for (k, c) in [&small, &large].into_iter().enumerate() {
                    let t = timed_call(&bin, &env_for(&vars, "ADD", &cid), c);
                    timed_call(&bin, &env_for(&vars, "DEL", &cid), c);
                    if i >= WARMUP {
                        out[k].push(t);
                    }
                }
            }
            // Last (it leaves two members): the same burst on a fresh pool while one member is
            // SIGKILLed a third of the way in.
            let rate_killed = burst_with(&bin, &burst_killed, &vars, "killed", total, &|n| {
                if n == total / 3 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(victim as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            });
            (rate_etcd, etcd_share, rate_file, rate_killed, out)
        });
    drop(etcd);
    let ratio = series[1].median() / series[0].median();
    eprintln!("whereabouts on etcd: {rate_etcd:.0} ADD/s with {CLIENTS} clients; ADD at 20k / at 10: {ratio:.2}");
    format!(
        "## whereabouts on etcd: throughput and scale\n\n\
         A 3-member etcd 3.4 cluster (Debian's etcd-server, each member its own process and data\n\
         directory on this machine's disk) inside a node namespace. {CLIENTS} client threads each spawn\n\
         whole `whereabouts` ADD processes back to back, {total} ADDs of distinct attachments in all,\n\
         every process given all three endpoints (each talks to one member picked at random). An ADD\n\
         is a new HTTP/1.1 connection to etcd's v3 JSON gateway and two requests: one read\n\
         transaction (the range's hint and a page of keys from it) and one transaction that claims\n\
         the hinted address only if its key does not exist yet (no lock anywhere; a lost claim\n\
         brings the next page back in the same transaction). Every ADD is a pod of its own.\n\n\
         | store | ADDs per second, {CLIENTS} concurrent clients |\n|---|---:|\n\
         | etcd, 3 members | **{rate_etcd:.0}** |\n\
         | etcd, 3 members, one killed a third of the way in | **{rate_killed:.0}** |\n\
         | embedded file store (one node) | {rate_file:.0} |\n\
         | whereabouts v0.6.2, Kubernetes store (published: 1000 pods in 2529 s, pod start included) | ~0.4 |\n\n\
         The file store's figure is 24 clients on one pool of one node, which take turns on the\n\
         pool's lock (held for a call's few fdatasyncs). The second etcd row is the same burst on a\n\
         fresh pool with one member SIGKILLed after a third of the ADDs: each process retries on\n\
         another member, and every ADD succeeds.\n\n\
         Target: at least 300 per second on this 2-core machine. During the etcd burst the three\n\
         members used **{etcd_share:.0}% of the machine's CPU** (their utime + stime over the burst's\n\
         wall time and {cores} cores): here the limit is etcd's own work per call, with all three\n\
         members and the clients sharing two cores (a real cluster gives each member its own\n\
         machine). Measured with the members' CPU time over 600 ADDs: about 3.5 ms of etcd CPU per\n\
         ADD through the JSON gateway (a quarter of it JSON encoding inside etcd), 2.5 ms through\n\
         gRPC with the same requests; the gateway was kept because it drops gRPC, tokio and protoc\n\
         from the plugin and the figure meets the target. Fewer requests per ADD is what moved it.\n\
         whereabouts' own figure is an anchor, not a same-run measurement: it cannot run here (it\n\
         needs a Kubernetes API server).\n\n\
         ADD as the pool grows: the same cluster holds a pool with 10 and one with 20,000 reservations\n\
         (written with the store's bulk import); each sample is an ADD of a new attachment, followed,\n\
         untimed, by its DEL.\n\n{}\n\
         **ADD with 20,000 reservations takes {ratio:.2}x the time of ADD with 10** (target: within 2x):\n\
         no value holds a pool, and the search reads one page of keys from the hint.\n",
        table(&[&series[0], &series[1]])
    )
}

/// One bridge configuration under test: label, plugin, CNI_PATH, config, container namespace.
struct BridgeSubject {
    label: &'static str,
    plugin: PathBuf,
    path: String,
    conf: Vec<u8>,
    ctr: Netns,
}

/// bridge ADD and DEL as whole processes: the reference bridge + host-local against ours with
/// host-local (same IPAM), with whereabouts and with static; `ip link add/del` of a veth pair
/// in the same run is the kernel's floor.
fn bridge_add_del(iterations: usize) -> String {
    let node = Node::new("bench-node");
    let scratch = TempDir::new("bench-br");
    let ours_dir = ours("bridge").parent().unwrap().display().to_string();
    let hl = |name: &str, bridge: &str, subnet: &str| {
        json!({"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": bridge, "isGateway": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": scratch.join(name)}})
        .to_string()
        .into_bytes()
    };
    let subjects = vec![
        BridgeSubject {
            label: "reference bridge + host-local (Go, Debian 1.1.1)",
            plugin: reference("bridge"),
            path: "/usr/lib/cni".into(),
            conf: hl("ref", "br-ref", "10.80.0.0/16"),
            ctr: Netns::new("bench-ctr"),
        },
        BridgeSubject {
            label: "multihome bridge + host-local (same IPAM)",
            plugin: ours("bridge"),
            path: format!("{ours_dir}:/usr/lib/cni"),
            conf: hl("hl", "br-hl", "10.81.0.0/16"),
            ctr: Netns::new("bench-ctr"),
        },
        BridgeSubject {
            label: "multihome bridge + whereabouts (file store)",
            plugin: ours("bridge"),
            path: ours_dir.clone(),
            conf: json!({"cniVersion": "1.0.0", "name": "wb", "type": "bridge", "bridge": "br-wb", "isGateway": true,
                "ipam": {"type": "whereabouts", "range": "10.82.0.0/16", "gateway": "10.82.0.1", "store_dir": scratch.join("wb")}})
            .to_string()
            .into_bytes(),
            ctr: Netns::new("bench-ctr"),
        },
        BridgeSubject {
            label: "multihome bridge + static",
            plugin: ours("bridge"),
            path: ours_dir.clone(),
            conf: json!({"cniVersion": "1.0.0", "name": "st", "type": "bridge", "bridge": "br-st", "isGateway": true,
                "ipam": {"type": "static", "addresses": [{"address": "10.83.0.2/16"}]}})
            .to_string()
            .into_bytes(),
            ctr: Netns::new("bench-ctr"),
        },
    ];
    let floor_ns = Netns::new("bench-ctr");
    let floor_path = floor_ns.path().to_path_buf();
    let plan: Vec<(String, PathBuf, String, Vec<u8>, String)> = subjects
        .iter()
        .map(|s| {
            (
                s.label.to_string(),
                s.plugin.clone(),
                s.path.clone(),
                s.conf.clone(),
                s.ctr.path().display().to_string(),
            )
        })
        .collect();
    let (adds, dels, floor_add, floor_del) = in_netns(node.path(), move || {
        let mut adds: Vec<Samples> = plan
            .iter()
            .map(|p| Samples::new(&format!("{} ADD", p.0)))
            .collect();
        let mut dels: Vec<Samples> = plan
            .iter()
            .map(|p| Samples::new(&format!("{} DEL", p.0)))
            .collect();
        let mut floor_add =
            Samples::new("`ip link add` veth pair into a netns (kernel + iproute2 floor)");
        let mut floor_del = Samples::new("`ip link del` of that veth (kernel teardown floor)");
        let ip = Path::new("/usr/sbin/ip");
        let floor_env = vec![(
            "PATH".to_string(),
            "/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        )];
        for i in 0..WARMUP + iterations {
            let cid = format!("bench-{i}");
            for (k, (_, plugin, path, conf, ctr)) in plan.iter().enumerate() {
                let vars = CniVars {
                    netns: ctr.clone(),
                    ifname: "net1".into(),
                    path: path.clone(),
                    ..CniVars::default()
                };
                let a = timed_call(plugin, &env_for(&vars, "ADD", &cid), conf);
                let d = timed_call(plugin, &env_for(&vars, "DEL", &cid), conf);
                if i >= WARMUP {
                    adds[k].push(a);
                    dels[k].push(d);
                }
            }
            let ns = floor_path.display().to_string();
            let a = timed_call_args(
                ip,
                &[
                    "link", "add", "name", "vfloor", "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
                &floor_env,
            );
            let d = timed_call_args(ip, &["link", "del", "vfloor"], &floor_env);
            if i >= WARMUP {
                floor_add.push(a);
                floor_del.push(d);
            }
        }
        (adds, dels, floor_add, floor_del)
    });
    drop(subjects);
    let ratio = adds[0].median() / adds[1].median();
    let best = adds[1..]
        .iter()
        .map(Samples::median)
        .fold(f64::INFINITY, f64::min);
    let del_over_floor = (dels[1].median() / floor_del.median() - 1.0) * 100.0;
    plot_bar("bridge ADD (+IPAM)", adds[0].median(), adds[2].median());
    plot_bar("bridge DEL (+IPAM)", dels[0].median(), dels[2].median());
    eprintln!(
        "bridge ADD: reference {:.2} ms, ours (host-local) {:.2} ms: {ratio:.1}x; DEL ours {:.2} ms vs floor {:.2} ms",
        adds[0].median(),
        adds[1].median(),
        dels[1].median(),
        floor_del.median()
    );
    let add_rows: Vec<&Samples> = adds.iter().chain([&floor_add]).collect();
    let del_rows: Vec<&Samples> = dels.iter().chain([&floor_del]).collect();
    format!(
        "## bridge: ADD and DEL as whole processes\n\n\
         Each iteration runs ADD then DEL of a new attachment (isGateway, IPv4) for each configuration\n\
         in turn, in one node namespace, each with its own container namespace and bridge; then `ip`\n\
         creates and deletes a veth pair the same way: what the kernel alone costs, plus iproute2's\n\
         own start. {iterations} iterations after {WARMUP} warm-up ones.\n\n\
         ADD:\n\n{}\n\
         **Ours with the same IPAM (host-local) is {ratio:.1}x faster than the reference**; the fastest\n\
         of ours (with `static`) takes 1/{:.1} of the reference's time. Where ours goes: two process\n\
         starts (bridge, then its IPAM: about 0.7 ms each here, see the static section) and the\n\
         kernel's veth creation (most of the `ip link add` row); the rest is a dozen netlink round\n\
         trips. The reference adds two Go runtime starts and a port-state poll that sleeps 50 ms when\n\
         the port is not up at the first look (#463).\n\n\
         DEL:\n\n{}\n\
         Our DEL with host-local is {del_over_floor:+.0}% against the `ip link del` floor: the kernel\n\
         waits for RCU grace periods while it tears a veth down, and every caller waits with it.\n",
        table(&add_rows),
        adds[0].median() / best,
        table(&del_rows),
    )
}

/// A whole-process call with arguments and no stdin.
fn timed_call_args(program: &Path, args: &[&str], env: &[(String, String)]) -> std::time::Duration {
    let start = std::time::Instant::now();
    let out = std::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// Peak resident memory (KiB) of one call and the processes it waited for (its IPAM), as GNU
/// time reports it from wait4's rusage.
fn peak_kib(program: &Path, env: &[(String, String)], stdin: &[u8]) -> u64 {
    use std::io::Write;
    let mut child = std::process::Command::new("/usr/bin/time")
        .args(["-f", "MAXRSS %M"])
        .arg(program)
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("/usr/bin/time (Debian package time): {e}"));
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin);
    }
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("MAXRSS ")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no MAXRSS from /usr/bin/time: {text}"))
}

/// Peak memory per ADD, ours against the reference, each the largest of `n` calls.
fn memory(iterations: usize) -> String {
    let node = Node::new("bench-node");
    let ctr = Netns::new("bench-ctr");
    let scratch = TempDir::new("bench-mem");
    let n = iterations.clamp(5, 30);
    let ours_dir = ours("bridge").parent().unwrap().display().to_string();
    let st = |t: &str| {
        json!({"cniVersion": "1.0.0", "name": "mem", "type": t, "ipam": {"type": "static",
            "addresses": [{"address": "10.91.0.5/24"}]}})
        .to_string()
        .into_bytes()
    };
    let hl = |t: &str, dir: &str| {
        json!({"cniVersion": "1.0.0", "name": "mem", "type": t, "bridge": "br-mem", "ipam": {"type": "host-local",
            "ranges": [[{"subnet": "10.92.0.0/16"}]], "dataDir": scratch.join(dir)}})
        .to_string()
        .into_bytes()
    };
    let wb = json!({"cniVersion": "1.0.0", "name": "mem", "type": "bridge", "bridge": "br-mem2", "ipam": {
        "type": "whereabouts", "range": "10.93.0.0/16", "store_dir": scratch.join("wb")}})
    .to_string()
    .into_bytes();
    let cases: Vec<(&str, PathBuf, String, Vec<u8>, bool)> = vec![
        (
            "reference `static`",
            reference("static"),
            "/usr/lib/cni".into(),
            st("static"),
            false,
        ),
        (
            "multihome `static`",
            ours("static"),
            ours_dir.clone(),
            st("static"),
            false,
        ),
        (
            "reference `host-local`",
            reference("host-local"),
            "/usr/lib/cni".into(),
            hl("host-local", "hl"),
            false,
        ),
        (
            "multihome `whereabouts` (file store)",
            ours("whereabouts"),
            ours_dir.clone(),
            {
                json!({"cniVersion": "1.0.0", "name": "mem", "type": "whereabouts", "ipam": {"type": "whereabouts",
                "range": "10.94.0.0/16", "store_dir": scratch.join("wb-alone")}}).to_string().into_bytes()
            },
            false,
        ),
        (
            "reference `bridge` + `host-local`",
            reference("bridge"),
            "/usr/lib/cni".into(),
            hl("bridge", "hl-br"),
            true,
        ),
        (
            "multihome `bridge` + `whereabouts`",
            ours("bridge"),
            ours_dir.clone(),
            wb,
            true,
        ),
    ];
    let vars = CniVars {
        netns: ctr.path().display().to_string(),
        ifname: "net1".into(),
        ..CniVars::default()
    };
    let rows = in_netns(node.path(), move || {
        cases
            .iter()
            .map(|(label, bin, path, conf, main)| {
                let v = CniVars {
                    path: path.clone(),
                    ..vars.clone()
                };
                let peak = (0..n)
                    .map(|i| {
                        let cid = format!("mem-{i}");
                        let kib = peak_kib(bin, &env_for(&v, "ADD", &cid), conf);
                        if *main {
                            timed_call(bin, &env_for(&v, "DEL", &cid), conf);
                        }
                        kib
                    })
                    .max()
                    .unwrap_or(0);
                (label.to_string(), peak)
            })
            .collect::<Vec<_>>()
    });
    let mut table = String::from("| call | peak RSS, MiB |\n|---|---:|\n");
    for (label, kib) in &rows {
        table.push_str(&format!("| {label} ADD | {:.1} |\n", *kib as f64 / 1024.0));
    }
    eprintln!("memory: {rows:?}");
    format!(
        "## Peak memory per call\n\n\
         The largest resident set of {n} ADDs of each executable, as GNU time reports it from the\n\
         kernel's accounting (for a main plugin, the larger of it and the IPAM process it ran).\n\n{table}"
    )
}

/// bridge ADD latency as the attachments of one node grow from 20 to 2000: ours (with
/// whereabouts) against the reference (with host-local), each on its own bridge and container
/// namespace in one node; the standing attachments are added untimed, then each sample is an ADD
/// of one more (followed, untimed, by its DEL).
fn node_scale(iterations: usize) -> String {
    let node = Node::new("bench-node");
    let (ctr_ref, ctr_ours) = (Netns::new("bench-ctr"), Netns::new("bench-ctr"));
    let scratch = TempDir::new("bench-nodescale");
    let samples = iterations.clamp(10, 40);
    let ours_dir = ours("bridge").parent().unwrap().display().to_string();
    let ref_conf =
        json!({"cniVersion": "1.0.0", "name": "grow-ref", "type": "bridge", "bridge": "br-gref",
        "isGateway": true, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.95.0.0/16"}]],
        "dataDir": scratch.join("hl")}})
        .to_string()
        .into_bytes();
    let our_conf = json!({"cniVersion": "1.0.0", "name": "grow-ours", "type": "bridge", "bridge": "br-gours",
        "isGateway": true, "ipam": {"type": "whereabouts", "range": "10.96.0.0/16", "gateway": "10.96.0.1", "store_dir": scratch.join("wb")}})
    .to_string()
    .into_bytes();
    let subjects = [
        (
            "reference bridge + host-local",
            reference("bridge"),
            "/usr/lib/cni".to_string(),
            ref_conf,
            ctr_ref.path().display().to_string(),
        ),
        (
            "multihome bridge + whereabouts",
            ours("bridge"),
            ours_dir,
            our_conf,
            ctr_ours.path().display().to_string(),
        ),
    ];
    // A Linux bridge takes at most 1023 ports (BR_MAX_PORTS): 1000 per plugin, 2000 on the node.
    let levels = [10usize, 500, 1000];
    // Every attachment in a sandbox of its own, as pods and VMs have.
    let sandboxes: Vec<Netns> = (0..2 * levels[levels.len() - 1])
        .map(|_| Netns::new("bench-sb"))
        .collect();
    let paths: Vec<String> = sandboxes
        .iter()
        .map(|n| n.path().display().to_string())
        .collect();
    let probe = Netns::new("bench-sb");
    let probe_ns = probe.path().display().to_string();
    let probe_name = probe.name().to_string();
    let rows = in_netns(node.path(), move || {
        let mut rows: Vec<(usize, Vec<f64>)> = Vec::new();
        let mut standing = 0;
        for &level in &levels {
            let mut medians = Vec::new();
            for (k, (_, bin, path, conf, ctr)) in subjects.iter().enumerate() {
                let v = CniVars {
                    netns: ctr.clone(),
                    ifname: "net1".into(),
                    path: path.clone(),
                    ..CniVars::default()
                };
                for i in standing..level {
                    let vi = CniVars {
                        netns: paths[k * levels[levels.len() - 1] + i].clone(),
                        ..v.clone()
                    };
                    timed_call(bin, &env_for(&vi, "ADD", &format!("stand-{i}")), conf);
                }
                // New interfaces keep the kernel busy for seconds (IPv6 duplicate address
                // detection, router solicitations, MLD), under the lock every netlink change
                // takes: let that settle so the samples measure the size, not the backlog.
                std::thread::sleep(std::time::Duration::from_secs(SETTLE_SECS));
                let mut s = Samples::new("grow");
                for p in 0..samples {
                    let cid = format!("probe-{level}-{p}");
                    s.push(timed_call(bin, &env_for(&v, "ADD", &cid), conf));
                    timed_call(bin, &env_for(&v, "DEL", &cid), conf);
                }
                medians.push(s.median());
            }
            // The kernel alone at this size: a veth pair into a sandbox, enslaved, then deleted.
            let ip = Path::new("/usr/sbin/ip");
            let env = vec![(
                "PATH".to_string(),
                "/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            )];
            let mut floor = Samples::new("floor");
            for _ in 0..samples {
                let t = std::time::Instant::now();
                timed_call_args(
                    ip,
                    &[
                        "link", "add", "name", "vgrow", "type", "veth", "peer", "name", "eth9",
                        "netns", &probe_ns,
                    ],
                    &env,
                );
                timed_call_args(
                    ip,
                    &["link", "set", "vgrow", "master", "br-gours", "up"],
                    &env,
                );
                // Carrier on both ends, as an attachment has: the port starts forwarding.
                timed_call_args(ip, &["-n", &probe_name, "link", "set", "eth9", "up"], &env);
                floor.push(t.elapsed());
                timed_call_args(ip, &["link", "del", "vgrow"], &env);
            }
            medians.push(floor.median());
            standing = level;
            rows.push((level, medians));
        }
        rows
    });
    drop(sandboxes);
    drop(probe);
    let mut table = String::from(
        "| attachments per plugin | reference ADD ms | ours ADD ms | speed-up | kernel alone (3 `ip` calls) ms |\n|---:|---:|---:|---:|---:|\n",
    );
    for (level, m) in &rows {
        table.push_str(&format!(
            "| {level} | {:.2} | {:.2} | {:.1}x | {:.2} |\n",
            m[0],
            m[1],
            m[0] / m[1],
            m[2]
        ));
    }
    let growth = rows.last().map(|(_, m)| m[1]).unwrap_or(f64::NAN) / rows[0].1[1];
    PLOT.lock().unwrap_or_else(|e| e.into_inner()).scale =
        rows.iter().map(|(n, m)| (*n, m[0], m[1], m[2])).collect();
    eprintln!("node scale: ours at 2000 / at 10 = {growth:.2}");
    format!(
        "## bridge ADD as attachments on one node grow\n\n\
         Each plugin has its own bridge and container namespace in one node; the standing\n\
         attachments (10, then 500, then 1000 per plugin, so 2000 on the node at the end; a Linux\n\
         bridge takes at most 1023 ports) are added untimed, and each sample is the ADD of one more\n\
         (median of {samples}, each followed untimed by its DEL), {SETTLE_SECS} s after the standing ones\n\
         were added (new interfaces keep the kernel busy for a while: IPv6 duplicate address\n\
         detection, router solicitations, MLD).\n\n{table}\n\
         Ours at 1000 attachments per bridge takes {growth:.2}x its time at 10, about as much growth\n\
         as the reference's. The last column is the kernel alone at the same size, through three\n\
         `ip` processes (a veth pair into a sandbox, enslaved to the bridge and up, the sandbox end\n\
         up); it grows less, and it does not wait for the new port to forward, which both plugins\n\
         do. Where the rest of the growth comes from is not established yet. What is established:\n\
         ours never dumps the node's links or addresses in the steady state (the gateway address is\n\
         added and found already there, the bridge MAC is pinned once; both were per-ADD dumps or\n\
         changes before, and the reference still does them), and its IPAM reads one block and one\n\
         index shard whatever the pool's size.\n"
    )
}

/// The shell baseline's ADD: the same NB port, veth, container setup and br-int port with
/// ovn-nbctl, ip and ovs-vsctl, then ovs-vsctl wait-until for ovn-installed (a shell plugin's way).
const SHELL_ADD: &str = r#"set -e
ovn-nbctl --db="$NB" lsp-add "$SW" "$PORT" -- lsp-set-addresses "$PORT" "$MAC $IP" \
  -- lsp-set-port-security "$PORT" "$MAC $IP" \
  -- set logical_switch_port "$PORT" options:requested-chassis="$CHASSIS" external_ids:k8s.ovn.org/network=bench-ovn
ip link add name "$HOST" mtu 1400 type veth peer name net1 mtu 1400 netns "$CTR"
ip -n "$CTR" link set net1 address "$MAC"
ip -n "$CTR" addr add "$IP/16" dev net1
ip -n "$CTR" link set net1 up
ip link set "$HOST" up
ovs-vsctl --db="$OVS" add-port br-int "$HOST" -- set interface "$HOST" external_ids:iface-id="$PORT" external_ids:attached_mac="$MAC"
ovs-vsctl --db="$OVS" --timeout=20 wait-until interface "$HOST" external_ids:ovn-installed=true
"#;

const SHELL_DEL: &str = r#"set -e
ovs-vsctl --db="$OVS" --if-exists del-port br-int "$HOST"
ip link del "$HOST" 2>/dev/null || true
ovn-nbctl --db="$NB" --if-exists lsp-del "$PORT"
"#;

/// ovn-overlay ADD (until ovn-controller installed the port) and DEL against the same steps as
/// shell commands, alternating in one lab; then a live migration's outage under a 10 ms ping.
fn ovn_overlay(iterations: usize) -> String {
    let lab = OvnLab::start("bench-ovn", 2);
    let node = &lab.nodes[0];
    let ctr = Netns::new("bench-ovn-ctr");
    let conf = json!({"cniVersion": "1.1.0", "name": "bench-ovn", "type": "ovn-overlay",
        "netAttachDefName": "bench/bench-ovn", "subnets": "10.60.0.0/16",
        "nodeConfig": node.node_file()});
    let stdin = conf.to_string().into_bytes();
    // localnet on the same node: physical network "benchphys" mapped to br-phy, VLAN 10.
    node.vsctl(&[
        "set",
        "open_vswitch",
        ".",
        "external_ids:ovn-bridge-mappings=benchphys:br-phy",
    ]);
    let ln_conf = json!({"cniVersion": "1.1.0", "name": "bench-ln", "type": "localnet",
        "netAttachDefName": "bench/bench-ln", "subnets": "10.63.0.0/16", "vlanID": 10,
        "physicalNetworkName": "benchphys", "nodeConfig": node.node_file()});
    let ln_stdin = ln_conf.to_string().into_bytes();
    let ln_dir = conformance_tests::PluginDir::empty().with_link("localnet", &ours("ovn-overlay"));
    let ln_plugin = ln_dir.plugin("localnet");
    // The shell baseline's switch, so that both sides start from an existing switch.
    lab.nbctl(&["ls-add", "bench-shell"]);
    let plugin = ours("ovn-overlay");
    let vars = CniVars {
        netns: ctr.path().display().to_string(),
        ifname: "net1".into(),
        path: "/usr/lib/cni".into(),
        ..CniVars::default()
    };
    let path_env = (
        "PATH".to_string(),
        "/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    );
    let shell_env = |i: usize| -> Vec<(String, String)> {
        let ip = format!("10.61.{}.{}", i / 250, i % 250 + 1);
        vec![
            path_env.clone(),
            ("NB".into(), lab.nbdb()),
            ("OVS".into(), node.ovsdb()),
            ("SW".into(), "bench-shell".into()),
            ("PORT".into(), format!("shell-{i}")),
            (
                "MAC".into(),
                format!("0a:58:0a:3d:{:02x}:{:02x}", i / 250, i % 250 + 1),
            ),
            ("IP".into(), ip),
            ("HOST".into(), format!("sh{i}")),
            ("CTR".into(), ctr.name().to_string()),
            ("CHASSIS".into(), node.chassis.clone()),
        ]
    };
    let bash = PathBuf::from("/bin/bash");
    let mut add_ours = Samples::new(
        "multihome `ovn-overlay` ADD (allocates the IP in NB, waits for ovn-installed)",
    );
    let mut add_shell =
        Samples::new("shell: ovn-nbctl + ip + ovs-vsctl, wait-until ovn-installed (IP given)");
    let mut del_ours = Samples::new("multihome `ovn-overlay` DEL");
    let mut del_shell = Samples::new("shell: ovs-vsctl del-port + ip link del + ovn-nbctl lsp-del");
    let mut add_ln =
        Samples::new("multihome `localnet` ADD (VLAN 10, same steps on a localnet switch)");
    let mut del_ln = Samples::new("multihome `localnet` DEL");
    let rounds = (iterations / 4).clamp(20, 100);
    let node_path = node.ns.path().to_path_buf();
    let envs: Vec<Vec<(String, String)>> = (0..rounds + 3).map(shell_env).collect();
    // The node's runtime names its settings file (the NADs repeat it in nodeConfig).
    let node_env = node.plugin_env();
    let (a1, a2, d1, d2, a3, d3) = in_netns(&node_path, move || {
        for (i, shell_env) in envs.iter().enumerate() {
            let cid = format!("bench-{i}");
            let mut add = env_for(&vars, "ADD", &cid);
            let mut del = env_for(&vars, "DEL", &cid);
            add.push(node_env.clone());
            del.push(node_env.clone());
            let t_ours = timed_call(&plugin, &add, &stdin);
            let t_del = timed_call(&plugin, &del, &stdin);
            let t_shell = timed_call(&bash, shell_env, SHELL_ADD.as_bytes());
            let t_shell_del = timed_call(&bash, shell_env, SHELL_DEL.as_bytes());
            let t_ln = timed_call(&ln_plugin, &add, &ln_stdin);
            let t_ln_del = timed_call(&ln_plugin, &del, &ln_stdin);
            if i >= 3 {
                add_ln.push(t_ln);
                del_ln.push(t_ln_del);
                add_ours.push(t_ours);
                del_ours.push(t_del);
                add_shell.push(t_shell);
                del_shell.push(t_shell_del);
            }
        }
        (add_ours, add_shell, del_ours, del_shell, add_ln, del_ln)
    });
    let outage = migration_outage(&lab);
    plot_bar("OVN port ADD (shell)", a2.median(), a1.median());
    plot_bar("OVN port DEL (shell)", d2.median(), d1.median());
    eprintln!(
        "ovn-overlay: ADD ours {:.1} ms vs shell {:.1} ms; DEL {:.1} vs {:.1}; migration outage {outage}",
        a1.median(),
        a2.median(),
        d1.median(),
        d2.median()
    );
    format!(
        "## ovn-overlay and localnet: ADD until installed, and DEL, against shell commands\n\n\
         A real OVN lab (central NB/SB ovsdb-servers and ovn-northd; two nodes with their own\n\
         ovsdb-server, ovs-vswitchd on the userspace datapath and ovn-controller). Each round does one\n\
         ADD and one DEL with the plugin, then the same steps as a shell-based plugin would, with\n\
         `ovn-nbctl`, `ip` and `ovs-vsctl` in one bash process; {rounds} rounds after 3 warm-up rounds,\n\
         alternating. ADD ends when ovn-controller has set `ovn-installed` on the port (the shell\n\
         waits with `ovs-vsctl wait-until`), so most of it is OVN's own propagation (NB, northd, SB,\n\
         ovn-controller, flows). The shell side is given its IP and MAC; the plugin allocates them\n\
         in an NB transaction. `localnet` runs the same rounds on a localnet switch (VLAN 10, its\n\
         physical network mapped to the node's br-phy).\n\n{}\n{}\n\
         **Live migration**: a VM with a persistent claim moves between nodes while another VM\n\
         pings it every 10 ms; the target binds the port on both nodes (OVN multi-chassis,\n\
         activation on the VM's RARP), the source stops, the target sends its RARP, the source's DEL\n\
         completes the move: {outage}.\n",
        table(&[&a2, &a1, &a3]),
        table(&[&d2, &d1, &d3])
    )
}

/// Pings lost in one migration run, for a table: how many, how many in a row, and what went
/// wrong besides (no answers at the end, duplicate answers).
fn lost_per_run(p: &conformance_tests::migration::Pings) -> String {
    let mut out = format!("{} ({} in a row)", p.lost(), p.longest_gap());
    if p.answered.last().map(|a| a.0) <= Some(p.sent - 10) {
        out.push_str(", not recovered");
    }
    if p.dups > 0 {
        out.push_str(&format!(", {} duplicates", p.dups));
    }
    out
}

/// Runs the live-migration scenario of the tests once (conformance-tests/src/ovn_migration.rs)
/// and describes the outage.
fn migration_outage(lab: &OvnLab) -> String {
    use conformance_tests::ovn::{addr_of, pod_args, Vm};
    use conformance_tests::ovn_migration::{Network, Pod};
    let plugins =
        conformance_tests::PluginDir::empty().with_link("ovn-overlay", &ours("ovn-overlay"));
    let conf = json!({"cniVersion": "1.1.0", "name": "bench-mig", "type": "ovn-overlay",
        "netAttachDefName": "bench/bench-mig", "subnets": "10.62.0.0/24", "allowPersistentIPs": true,
        "args": {"cni": {"ipam-claim-reference": "vm-a.net1"}}});
    let mut plain = conf.clone();
    if let Some(o) = plain.as_object_mut() {
        o.remove("allowPersistentIPs");
        o.remove("args");
    }
    let net = Network {
        lab,
        plugins: &plugins,
        exe: "ovn-overlay",
        conf: &conf,
        port: "bench.bench.mig_bench_vm-a.net1",
    };
    let pod = |node: usize, name: &str| Pod {
        node,
        vm: Vm::new(&format!("mig-{name}")),
        args: pod_args("bench", &format!("virt-launcher-a-{name}")),
    };
    let (src, dst, cli) = (pod(0, "src"), pod(1, "dst"), pod(1, "cli"));
    let held = net.call("ADD", &src);
    let client = Network {
        conf: &plain,
        ..net
    };
    client.call("ADD", &cli);
    let ip = addr_of(&held);
    conformance_tests::wait_until(
        "the client reaches the VM",
        std::time::Duration::from_secs(20),
        || cli.vm.ns.run(&["ping", "-c1", "-W1", &ip]).status.success(),
    );
    let moved = net.migrate(&src, &held, &dst, (&cli.vm.ns, "net1"), false);
    net.call("DEL", &dst);
    client.call("DEL", &cli);
    let p = &moved.pings;
    format!(
        "{} of {} pings lost in all, at most {} in a row; the longest time between two answers {:.0} ms{}",
        p.lost(),
        p.sent,
        p.longest_gap(),
        p.longest_silence_ms(),
        if lost_per_run(p).contains(", ") { format!(" ({})", lost_per_run(p)) } else { String::new() }
    )
}

/// A VM's live migration on a bridge network (issue 18): the outage under a 10 ms ping from a
/// host on the wire, for each way of plugging the launcher pods in, a few runs each.
fn bridge_migration(_iterations: usize) -> String {
    use conformance_tests::migration::{migrate, Binding, Timing};
    let timing = Timing {
        pod_start: std::time::Duration::from_millis(1000),
        copy: std::time::Duration::from_millis(1000),
    };
    let runs = 3;
    let mut rows = String::new();
    let mut sent = 0;
    for binding in [Binding::Up, Binding::Sticky, Binding::Down] {
        let pings: Vec<_> = (0..runs)
            .map(|i| migrate(&format!("bm{i}"), binding, timing))
            .collect();
        sent = pings[0].sent;
        let mut gaps: Vec<f64> = pings.iter().map(|p| p.longest_silence_ms()).collect();
        gaps.sort_by(f64::total_cmp);
        let lost: Vec<String> = pings
            .iter()
            .map(|p| format!("{} ({} in a row)", p.lost(), p.longest_gap()))
            .collect();
        eprintln!(
            "bridge migration, {}: longest gaps {gaps:?} ms",
            binding.describe()
        );
        rows.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {} |\n",
            binding.describe(),
            gaps[gaps.len() / 2],
            gaps[0],
            gaps[gaps.len() - 1],
            lost.join(", ")
        ));
    }
    format!(
        "## bridge: a VM's live migration, outage under a 10 ms ping\n\n\
         Two simulated nodes whose `br1` share a simulated datacenter wire (a Linux bridge) with a\n\
         host on it; the host pings the VM every 10 ms throughout. The migration as KubeVirt's\n\
         bridge binding does it (conformance-tests/src/migration.rs): the target launcher pod's ADD\n\
         on node B with the VM's MAC (and, sticky, its address); {} ms later (the pod starting) the\n\
         in-pod wiring (the pod interface's MAC replaced, addresses removed, in-pod bridge and tap,\n\
         every link up); {} ms later (the memory copy) the cut-over: the VM stops on the source,\n\
         runs on the target and sends QEMU's RARP; then the source's DEL. Outage: the longest time\n\
         between two answers (`ping -D` timestamps; 10 ms asked, so 10 ms is no outage); {runs} runs\n\
         each; pings lost of {sent} sent. With the pod interface up at ADD its\n\
         kernel speaks with the VM's MAC (IPv6 MLD and router solicitation) and the switches send\n\
         the VM's frames to node B, where it does not run yet, until the cut-over: the outage is as\n\
         long as the migration (kubevirt #11069 measured about 5 s): the pod start plus the copy; on\n\
         the sticky network the copy only, because until the wiring the target pod holds the VM's\n\
         address and answers in its place (pings pass; a TCP peer would get resets).\n\
         `disableContainerInterface` keeps the pod silent: only the cut-over is lost.\n\n\
         | pod interface | outage ms (median) | min ms | max ms | pings lost, per run |\n\
         |---|---:|---:|---:|---|\n{rows}",
        timing.pod_start.as_millis(),
        timing.copy.as_millis(),
        sent = sent,
    )
}

/// A VM's live migration on a localnet network, IPv4 against IPv6 (issue 20), in one lab: the
/// outage under a 10 ms ping from a router on the physical network, with and without the
/// guest's own announcements, a few runs each.
fn localnet_migration(_iterations: usize) -> String {
    use conformance_tests::ovn::{pod_args, NodeBridge, Vm};
    use conformance_tests::ovn_migration::{Network, Pod};
    let lab = OvnLab::start_with_tor(
        "bench-lnm",
        2,
        NodeBridge {
            bridge: "br0-ovs".into(),
            port: "ens4".into(),
            localnet: "br0-network".into(),
        },
    );
    let r4 = lab.add_host("bench-lnm-r4", None, "192.168.250.1/24");
    let r6 = lab.add_host("bench-lnm-r6", None, "fd00:250::1/64");
    let plugins = conformance_tests::PluginDir::empty().with_link("localnet", &ours("ovn-overlay"));
    let conf = |name: &str, subnets: &str, exclude: &str| {
        json!({"cniVersion": "1.1.0", "name": name, "type": "localnet",
            "netAttachDefName": format!("bench/{name}"), "physicalNetworkName": "br0-network",
            "subnets": subnets, "excludeSubnets": exclude, "allowPersistentIPs": true,
            "args": {"cni": {"ipam-claim-reference": "vm-a.net1"}}})
    };
    let (v4, v6) = (
        conf("bench-lnm4", "192.168.250.0/24", "192.168.250.0/28"),
        conf("bench-lnm6", "fd00:250::/64", "fd00:250::/120"),
    );
    let variants: [(&str, &Value, &Netns, bool); 3] = [
        ("IPv4: RARP, and the guest's gratuitous ARP", &v4, &r4, true),
        (
            "IPv6: RARP, and the guest's unsolicited NAs (address and link-local)",
            &v6,
            &r6,
            true,
        ),
        (
            "IPv6: RARP alone (a guest that does not announce itself)",
            &v6,
            &r6,
            false,
        ),
    ];
    let runs = 3;
    let mut results: Vec<Vec<conformance_tests::migration::Pings>> =
        vec![Vec::new(); variants.len()];
    for run in 0..runs {
        for (v, (_, conf, router, guest)) in variants.iter().enumerate() {
            let port = format!(
                "bench.{}_bench_vm-a.net1",
                conf["name"].as_str().unwrap_or_default().replace('-', ".")
            );
            let net = Network {
                lab: &lab,
                plugins: &plugins,
                exe: "localnet",
                conf,
                port: &port,
            };
            let pod = |node: usize, role: &str| Pod {
                node,
                vm: Vm::new(&format!("lnm{v}{role}")),
                args: pod_args("bench", &format!("virt-launcher-{run}-{v}-{role}")),
            };
            let (src, dst) = (pod(run % 2, "s"), pod((run + 1) % 2, "d"));
            let held = net.call("ADD", &src);
            let ip = conformance_tests::ovn::addr_of(&held);
            conformance_tests::wait_until(
                "the router reaches the VM",
                std::time::Duration::from_secs(20),
                || {
                    router
                        .run(&["ping", "-c1", "-W1", "-q", &ip])
                        .status
                        .success()
                },
            );
            let moved = net.migrate(&src, &held, &dst, (router, "eth0"), *guest);
            net.call("DEL", &dst);
            results[v].push(moved.pings);
        }
    }
    let mut rows = String::new();
    let mut sent = 0;
    for ((label, ..), pings) in variants.iter().zip(&results) {
        sent = pings[0].sent;
        let mut gaps: Vec<f64> = pings.iter().map(|p| p.longest_silence_ms()).collect();
        gaps.sort_by(f64::total_cmp);
        let lost: Vec<String> = pings.iter().map(lost_per_run).collect();
        eprintln!("localnet migration, {label}: longest gaps {gaps:?} ms");
        rows.push_str(&format!(
            "| {label} | {:.0} | {:.0} | {:.0} | {} |\n",
            gaps[gaps.len() / 2],
            gaps[0],
            gaps[gaps.len() - 1],
            lost.join(", ")
        ));
    }
    format!(
        "## localnet: a VM's live migration, IPv4 against IPv6, outage under a 10 ms ping\n\n\
         One localnet lab (OVN, two nodes, a top-of-rack switch: an OVS bridge whose revalidator\n\
         runs every 100 ms, docs/ipv6.md); a router on the physical network pings the VM every\n\
         10 ms: an IPv4-only network and an IPv6-only one, single-stack routers.\n\
         The migration of conformance-tests/src/ovn_migration.rs: the VM's port held by a claim,\n\
         the target pod's ADD (the port bound to both nodes, activated by RARP); after 100 answers\n\
         through the source, the cut-over (the source's NIC down; the target sends QEMU's five\n\
         rounds of RARP, with, for a guest that announces itself, a gratuitous ARP or an\n\
         unsolicited NA per address in each); the source's DEL. The guest's neighbour cache moves\n\
         with it. Outage: the longest time between two answers (`ping -D`; 10 ms asked, so 10 ms is\n\
         no outage); {runs} runs each, alternating directions; pings lost of {sent} sent.\n\n\
         | network, announcements | outage ms (median) | min ms | max ms | pings lost, per run |\n\
         |---|---:|---:|---:|---|\n{rows}"
    )
}

/// ovn-overlay ADD from three nodes at once (8 VMs each), timed per ADD until ovn-installed:
/// against a standalone NB and SB, then against three-member raft clusters, in the same run.
fn ovn_cluster(_iterations: usize) -> String {
    let burst = |lab: &OvnLab, label: &str| -> Samples {
        let plugins = conformance_tests::PluginDir::empty()
            .with_link("ovn-k8s-cni-overlay", &ours("ovn-overlay"));
        let conf = json!({"cniVersion": "1.1.0", "name": "bench-raft", "type": "ovn-k8s-cni-overlay",
            "topology": "layer2", "netAttachDefName": "bench/bench-raft", "subnets": "10.64.0.0/16"});
        let mut samples = Samples::new(label);
        let times: Vec<std::time::Duration> = std::thread::scope(|s| {
            let workers: Vec<_> = lab
                .nodes
                .iter()
                .enumerate()
                .map(|(n, node)| {
                    let (plugins, conf) = (&plugins, &conf);
                    s.spawn(move || {
                        (0..8)
                            .map(|k| {
                                let vm = conformance_tests::ovn::Vm::new(&format!("br{n}{k}"));
                                let t = std::time::Instant::now();
                                let out = conformance_tests::ovn::call(
                                    plugins,
                                    "ovn-k8s-cni-overlay",
                                    node,
                                    "ADD",
                                    &vm,
                                    "net1",
                                    "",
                                    conf,
                                );
                                let took = t.elapsed();
                                assert!(out.ok(), "{}", out.stdout_text());
                                let del = conformance_tests::ovn::call(
                                    plugins,
                                    "ovn-k8s-cni-overlay",
                                    node,
                                    "DEL",
                                    &vm,
                                    "net1",
                                    "",
                                    conf,
                                );
                                assert!(del.ok(), "{}", del.stdout_text());
                                took
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        for t in times {
            samples.push(t);
        }
        samples
    };
    let standalone = {
        let lab = OvnLab::start("bench-solo", 3);
        burst(
            &lab,
            "ovn-overlay ADD, 3 nodes at once: standalone NB and SB",
        )
    };
    let clustered = {
        let lab = OvnLab::start_clustered("bench-raft", 3);
        burst(
            &lab,
            "ovn-overlay ADD, 3 nodes at once: NB and SB 3-member raft clusters",
        )
    };
    eprintln!(
        "ovn cluster: ADD median {:.1} ms standalone, {:.1} ms clustered",
        standalone.median(),
        clustered.median()
    );
    format!(
        "## ovn-overlay against a clustered NB and SB\n\n\
         Three nodes ADD eight VMs each at once (each ADD timed until ovn-controller set\n\
         `ovn-installed`, then DEL, untimed), first on a lab whose NB and SB are one ovsdb-server\n\
         each, then on one where both are three-member raft clusters (raft over TCP between the\n\
         members' namespaces; the plugin writes through the NB leader, ovn-controller reads SB\n\
         from any member). Healthy clusters: no member is killed here (the tests do that).\n\n{}",
        table(&[&standalone, &clustered])
    )
}

/// Pause after growing a node before sampling it (see `node_scale`).
const SETTLE_SECS: u64 = 12;

/// dhcp: ADD until leased through the bridge plugin (ours in both), with the reference's dhcp
/// executable and daemon against ours, on one dnsmasq on the node's bridge; then the daemons'
/// threads and memory with 20 leases held each.
fn dhcp_add(iterations: usize) -> String {
    use conformance_tests::dhcp::{start_daemon_in, DhcpLab, Server, ServerConf};
    let mut lab = DhcpLab::new(Server::Dnsmasq, ServerConf::default());
    lab.start_daemon(&[]);
    let ref_socket = lab.dir.join("run/reference.sock");
    let reference_daemon = start_daemon_in(
        &lab.node,
        &[
            &reference("dhcp").display().to_string(),
            "daemon",
            "-socketpath",
            &ref_socket.display().to_string(),
        ],
        &ref_socket,
        &lab.dir.join("reference-daemon.log"),
    );
    let mine_dir = conformance_tests::PluginDir::ours(&["bridge", "dhcp"]);
    let theirs_dir = conformance_tests::PluginDir::ours(&["bridge"]).with_reference(&["dhcp"]);
    let ours_nad = lab.nad("1.0.0");
    let mut theirs_nad = ours_nad.clone();
    theirs_nad["ipam"]["daemonSocketPath"] = json!(ref_socket);
    let ctr = Netns::new("bench-dhcp");
    let settings = lab.settings.env();
    let env = |dir: &conformance_tests::PluginDir, command: &str, cid: &str| {
        let mut e = CniVars {
            command: command.into(),
            container_id: cid.into(),
            netns: ctr.path().display().to_string(),
            ifname: "net1".into(),
            args: String::new(),
            path: dir.path().display().to_string(),
        }
        .env();
        e.push(settings.clone());
        e
    };
    // The reference takes seconds per ADD (its first DISCOVER leaves before the link is up, then
    // it backs off): a few calls tell.
    let n = iterations.clamp(3, 8);
    let jobs = [
        (
            Samples::new("reference `dhcp` client and daemon (Go, Debian 1.1.1)"),
            theirs_dir.plugin("bridge"),
            env(&theirs_dir, "ADD", "bench-ref"),
            env(&theirs_dir, "DEL", "bench-ref"),
            theirs_nad.to_string().into_bytes(),
        ),
        (
            Samples::new("multihome `dhcp` client and daemon (Rust)"),
            mine_dir.plugin("bridge"),
            env(&mine_dir, "ADD", "bench-ours"),
            env(&mine_dir, "DEL", "bench-ours"),
            ours_nad.to_string().into_bytes(),
        ),
    ];
    let [theirs, mine] = in_netns(lab.node.path(), move || {
        jobs.map(|(mut samples, bridge, add, del, stdin)| {
            for _ in 0..n {
                samples.push(timed_call(&bridge, &add, &stdin));
                timed_call(&bridge, &del, &stdin);
            }
            samples
        })
    });
    // 20 leases held by each daemon: threads and memory.
    let ctrs: Vec<Netns> = (0..40).map(|_| Netns::new("bench-dl")).collect();
    let (ref_before, ours_before) = (
        conformance_tests::dhcp::threads_and_rss(reference_daemon.pid()),
        conformance_tests::dhcp::threads_and_rss(lab.daemon().expect("our daemon").pid()),
    );
    std::thread::scope(|s| {
        for (i, c) in ctrs.iter().enumerate() {
            let (dir, nad) = if i % 2 == 0 {
                (&theirs_dir, &theirs_nad)
            } else {
                (&mine_dir, &ours_nad)
            };
            let lab = &lab;
            s.spawn(move || {
                let out = lab.run(dir, "bridge", "ADD", &format!("held-{i}"), c.path(), nad);
                assert!(out.ok(), "{out}");
            });
        }
    });
    let (ref_after, ours_after) = (
        conformance_tests::dhcp::threads_and_rss(reference_daemon.pid()),
        conformance_tests::dhcp::threads_and_rss(lab.daemon().expect("our daemon").pid()),
    );
    let ratio = theirs.median() / mine.median();
    eprintln!(
        "dhcp ADD: reference {:.1} ms, ours {:.1} ms: {ratio:.1}x; 20 leases: reference {} threads {} KiB, ours {} threads {} KiB",
        theirs.median(),
        mine.median(),
        ref_after.0,
        ref_after.1,
        ours_after.0,
        ours_after.1
    );
    let per_lease =
        |before: (u64, u64), after: (u64, u64)| (after.1.saturating_sub(before.1) as f64) / 20.0;
    let out = format!(
        "## dhcp: ADD until leased\n\n\
         One ADD of the documentation's bridge network with `ipam: {{\"type\": \"dhcp\"}}` (our `bridge` in\n\
         both rows), from spawn to the lease in the result: the dhcp executable, its daemon and a\n\
         whole DORA with dnsmasq 2.90 (`--no-ping`) on a namespace cabled to the node's bridge; a DEL\n\
         (untimed) after each. {n} calls each. The reference's daemon can send its first DISCOVER while\n\
         the container link is still down (`network is down`) and then backs off for seconds (a race\n\
         with the link coming up: earlier runs on another kernel measured its median at 2.4 s); ours\n\
         sets the link up, sends at once and retransmits after 0.5 s.\n\n{}\n\
         **Ours is {ratio:.1}x faster** (median against median, same run).\n\n\
         With 20 leases held by each daemon (ADDs in parallel, same dnsmasq):\n\n\
         | daemon | threads before | threads with 20 leases | RSS before KiB | RSS with 20 leases KiB | KiB per lease |\n\
         |---|---:|---:|---:|---:|---:|\n\
         | reference | {} | {} | {} | {} | {:.0} |\n\
         | multihome | {} | {} | {} | {} | {:.0} |\n\n\
         The reference runs a goroutine on a locked OS thread per lease (threads grow with leases);\n\
         ours holds a lease as one record in memory and one file, renewed by one scheduler thread.\n",
        table(&[&theirs, &mine]),
        ref_before.0,
        ref_after.0,
        ref_before.1,
        ref_after.1,
        per_lease(ref_before, ref_after),
        ours_before.0,
        ours_after.0,
        ours_before.1,
        ours_after.1,
        per_lease(ours_before, ours_after),
    );
    for (i, c) in ctrs.iter().enumerate() {
        let (dir, nad) = if i % 2 == 0 {
            (&theirs_dir, &theirs_nad)
        } else {
            (&mine_dir, &ours_nad)
        };
        let _ = lab.run(dir, "bridge", "DEL", &format!("held-{i}"), c.path(), nad);
    }
    drop(reference_daemon);
    out
}

/// A named benchmark section: iterations in, markdown out.
type Section = (&'static str, fn(usize) -> String);

fn main() {
    require_root();
    let opts = options();
    let all: [Section; 12] = [
        ("static", static_add),
        ("bridge", bridge_add_del),
        ("whereabouts", whereabouts_vs_host_local),
        ("scale", whereabouts_scale),
        ("etcd", whereabouts_etcd),
        ("memory", memory),
        ("node-scale", node_scale),
        ("bridge-migration", bridge_migration),
        ("ovn", ovn_overlay),
        ("localnet-migration", localnet_migration),
        ("ovn-cluster", ovn_cluster),
        ("dhcp", dhcp_add),
    ];
    let sections: Vec<String> = all
        .iter()
        .filter(|(name, _)| opts.only.as_deref().is_none_or(|o| o == *name))
        .map(|(_, run)| run(opts.iterations))
        .collect();
    if opts.only.is_some() && opts.write.is_some() {
        panic!("--only writes a partial page: leave out --write");
    }
    let doc = format!(
        "# Benchmarks\n\nWritten by `make bench` (conformance-tests/src/bin/multihome-bench.rs); every figure is a\n\
         median of whole-process calls measured side by side with the peer in the same run, never a\n\
         timed test. Re-run it to refresh this page.\n\nMachine:\n{}\n{}",
        machine(),
        sections.join("\n")
    );
    println!("{doc}");
    if let Some(png) = &opts.plot {
        write_plot(png);
    }
    if let Some(path) = opts.write {
        let png = path.with_extension("png");
        write_plot(&png);
        let doc = doc.replacen(
            "\nMachine:\n",
            &format!(
                "\n![medians against the peers, and ADD as a node grows]({})\n\nMachine:\n",
                png.file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or("benchmarks.png")
            ),
            1,
        );
        std::fs::write(&path, &doc)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
    }
}
