//! Real container runtimes driving the plugins (issue 19): podman 4.3 with its CNI network
//! backend, and containerd 1.6 through `ctr run --cni` (go-cni). Each runs inside a node network
//! namespace and a private mount namespace of its own, so that it sees a fresh sysfs with the
//! cgroup hierarchy it needs (`ip netns exec` remounts /sys, which hides the machine's), and,
//! for containerd, the test's conf and plugin directories bind-mounted over /etc/cni/net.d and
//! /opt/cni/bin (ctr has no flags for them). Containers run a busybox root filesystem made at
//! test time (no image can be pulled). Nothing touches the machine's real CNI directories, its
//! container storage or its root network namespace; everything is removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use crate::{Node, TempDir};

/// The busybox applets the tests use.
const APPLETS: [&str; 8] = ["sh", "sleep", "ping", "ip", "cat", "ls", "true", "ifconfig"];

/// One runtime lab at a time per test process: podman's rootful lock segment (/dev/shm) and the
/// cgroup hierarchies are the machine's.
static ONE_RUNTIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_RUNTIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A root filesystem in `dir`: /bin/busybox (Debian's busybox-static) and its applets.
pub fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "run", "var"] {
        std::fs::create_dir_all(dir.join(d)).expect("rootfs dir");
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("/bin/busybox (make deps installs busybox-static)");
    for a in APPLETS {
        let link = dir.join("bin").join(a);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).expect("applet link");
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The mounts every runtime client needs in its private mount namespace: nothing it mounts
/// propagates back, a fresh sysfs, and `cgroups` on /sys/fs/cgroup.
fn private_mounts(cgroups: &str) -> String {
    format!("mount --make-rprivate / && umount -l /sys && mount -t sysfs sysfs /sys && {cgroups}")
}

/// podman 4.3, its CNI backend, its own storage and configuration in a scratch directory.
pub struct Podman {
    /// The node namespace podman (and so the plugins) run in.
    pub node: Node,
    dir: TempDir,
    /// Holds the private mount namespace every podman call enters: podman bind-mounts the
    /// containers' network namespaces under /run/netns there, and a later call (stop, exec, rm)
    /// must see them.
    holder: Holder,
    /// Released last (fields drop in order), once the holder and the node are gone.
    _serial: MutexGuard<'static, ()>,
}

/// A process that keeps a private mount namespace (set up by `script`) inside a node.
struct Holder(std::process::Child);

impl Holder {
    /// Runs `sh -c "<mounts> && touch <ready> && exec <then>"` in `node` under `unshare -m`, and
    /// waits until the mounts are in place (the `ready` file exists).
    fn start(node: &Node, mounts: &str, then: &str, ready: &Path, log: &Path) -> Holder {
        let log = std::fs::File::create(log).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", node.name(), "unshare", "-m", "sh", "-c"])
            .arg(format!(
                "{mounts} && touch {:?} && exec {then}",
                ready.display().to_string()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("unshare");
        crate::wait_until(
            "the private mount namespace is ready",
            Duration::from_secs(10),
            || ready.exists(),
        );
        Holder(child)
    }

    /// `nsenter` into the holder's mount and network namespaces, then `program`.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.0.id().to_string(), "-m", "-n", program]);
        c
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::fmt::Debug for Podman {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Podman in {}", self.node.name())
    }
}

impl Podman {
    /// podman with the CNI plugins of `plugin_dirs` (searched in order), its conflists in
    /// [`Podman::net_dir`], cgroups disabled (crun 1.8 refuses this machine's mixed v1/v2
    /// layout) and no default ulimits (crun cannot raise them here).
    pub fn new(tag: &str, plugin_dirs: &[&Path]) -> Podman {
        let serial = one_at_a_time();
        let node = Node::new(&format!("{tag}-node"));
        let dir = TempDir::new(&format!("{tag}-podman"));
        for d in [
            "net.d", "storage", "run", "tmp", "rootfs", "static", "volumes",
        ] {
            std::fs::create_dir_all(dir.join(d)).expect("podman dir");
        }
        busybox_rootfs(&dir.join("rootfs"));
        let dirs: Vec<String> = plugin_dirs
            .iter()
            .map(|d| format!("{:?}", d.display().to_string()))
            .collect();
        let p = |n: &str| format!("{:?}", dir.join(n).display().to_string());
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ncgroups = \"disabled\"\ndefault_ulimits = []\n\n\
                 [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [{}]\nnetwork_config_dir = {}\n\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = {}\n\
                 tmp_dir = {}\nstatic_dir = {}\nvolume_path = {}\n",
                dirs.join(", "),
                p("net.d"),
                p("events.log"),
                p("tmp"),
                p("static"),
                p("volumes"),
            ),
        )
        .expect("containers.conf");
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = {}\nrunroot = {}\n",
                p("storage"),
                p("run")
            ),
        )
        .expect("storage.conf");
        let holder = Holder::start(
            &node,
            &private_mounts("mount -t cgroup2 none /sys/fs/cgroup"),
            "sleep 1000000",
            &dir.join("ready"),
            &dir.join("holder.log"),
        );
        Podman {
            _serial: serial,
            node,
            dir,
            holder,
        }
    }

    /// Where podman reads (and `podman network create` writes) conflists.
    pub fn net_dir(&self) -> PathBuf {
        self.dir.join("net.d")
    }

    /// Writes the conflist of network `name`.
    pub fn write_conflist(&self, name: &str, conflist: &Value) {
        std::fs::write(
            self.net_dir().join(format!("{name}.conflist")),
            serde_json::to_string_pretty(conflist).expect("json"),
        )
        .expect("conflist");
    }

    /// `podman args...` in the node and the lab's private mount namespace.
    pub fn podman(&self, args: &[&str]) -> Output {
        self.holder
            .command("podman")
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .output()
            .expect("podman (make deps installs podman)")
    }

    /// [`Podman::podman`] that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(out.status.success(), "podman {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `podman run -d --name <name> --network <network> <extra>` of busybox sleeping.
    pub fn run(&self, name: &str, network: &str, extra: &[&str]) -> Output {
        let rootfs = self.dir.join("rootfs").display().to_string();
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        args.extend(extra);
        args.extend(["--rootfs", &rootfs, "/bin/sleep", "3600"]);
        self.podman(&args)
    }

    /// The address podman reports for container `name` on `network`.
    pub fn ip_of(&self, name: &str, network: &str) -> String {
        self.ok(&[
            "inspect",
            name,
            "--format",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        ])
    }

    /// Whether container `from` reaches `ip` (busybox ping, three tries).
    pub fn reaches(&self, from: &str, ip: &str) -> bool {
        self.podman(&["exec", from, "ping", "-c", "3", "-W", "1", ip])
            .status
            .success()
    }

    /// `ip -o addr show eth0` inside container `name`.
    pub fn addresses(&self, name: &str) -> String {
        self.ok(&["exec", name, "ip", "-o", "addr", "show", "eth0"])
    }

    /// `ip -o link show eth0` inside container `name`.
    pub fn link(&self, name: &str) -> String {
        self.ok(&["exec", name, "ip", "-o", "link", "show", "eth0"])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
    }
}

/// containerd 1.6 (runc) in the node, with its own root, state and socket; `ctr` against it.
pub struct Containerd {
    /// The node namespace containerd (and so the plugins) run in.
    pub node: Node,
    dir: TempDir,
    daemon: Holder,
    /// The containerd namespace of the test's containers (also their cgroups' parent).
    pub namespace: String,
    /// Released last (fields drop in order), once the daemon and the node are gone.
    _serial: MutexGuard<'static, ()>,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "containerd in {}", self.node.name())
    }
}

/// The cgroup v1 controllers of this machine, each a hierarchy of its own.
const CGROUP_V1_CONTROLLERS: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
];

/// The cgroup v1 hierarchies runc needs (this machine's layout; the v2 one has no controllers).
const CGROUPS_V1: &str = "mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup && \
    for c in cpu cpuacct cpuset memory devices freezer blkio pids; do \
      mkdir -p /sys/fs/cgroup/$c && mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c; done && \
    mkdir -p /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd";

impl Containerd {
    /// Starts containerd with `conf_dir` over /etc/cni/net.d and `bin_dir` over /opt/cni/bin (in
    /// its private mount namespace only), and imports the busybox image as `localhost/mh-busybox`.
    pub fn start(tag: &str, conf_dir: &Path, bin_dir: &Path) -> Containerd {
        let serial = one_at_a_time();
        let node = Node::new(&format!("{tag}-node"));
        let dir = TempDir::new(&format!("{tag}-containerd"));
        for d in ["root", "state", "rootfs"] {
            std::fs::create_dir_all(dir.join(d)).expect("containerd dir");
        }
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {:?}\n",
                dir.join("root").display().to_string(),
                dir.join("state").display().to_string(),
                dir.join("containerd.sock").display().to_string(),
            ),
        )
        .expect("config.toml");
        let mounts = format!(
            "{} && mkdir -p /etc/cni/net.d /opt/cni/bin && mount --bind {:?} /etc/cni/net.d && \
             mount --bind {:?} /opt/cni/bin",
            private_mounts(CGROUPS_V1),
            conf_dir.display().to_string(),
            bin_dir.display().to_string(),
        );
        let daemon = Holder::start(
            &node,
            &mounts,
            &format!(
                "containerd --config {:?}",
                dir.join("config.toml").display().to_string()
            ),
            &dir.join("ready"),
            &dir.join("containerd.log"),
        );
        let c = Containerd {
            _serial: serial,
            namespace: crate::tempdir::unique_name(tag),
            node,
            dir,
            daemon,
        };
        crate::wait_until("containerd answers", Duration::from_secs(20), || {
            c.ctr(&["version"]).status.success()
        });
        c.import_busybox();
        c
    }

    /// `ctr --address <socket> -n <namespace> args...`, in the daemon's mount namespace (where
    /// /etc/cni/net.d and /opt/cni/bin are the test's) and network namespace.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.daemon
            .command("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(["-n", &self.namespace])
            .args(args)
            .output()
            .expect("ctr")
    }

    /// [`Containerd::ctr`] that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(out.status.success(), "ctr {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A docker-archive of the busybox root filesystem (layer, config, manifest), imported.
    fn import_busybox(&self) {
        let rootfs = self.dir.join("rootfs");
        busybox_rootfs(&rootfs);
        let img = self.dir.join("img");
        std::fs::create_dir_all(&img).expect("img dir");
        let layer = img.join("layer.tar");
        let ok = |cmd: &mut Command| {
            let out = cmd.output().expect("tar");
            assert!(out.status.success(), "{cmd:?}: {}", text(&out));
            out
        };
        ok(Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&layer)
            .arg("."));
        let sum = ok(Command::new("sha256sum").arg(&layer));
        let digest = String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        std::fs::write(
            img.join("config.json"),
            serde_json::json!({"architecture": "amd64", "os": "linux",
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{digest}")]}})
            .to_string(),
        )
        .expect("config.json");
        std::fs::write(
            img.join("manifest.json"),
            serde_json::json!([{"Config": "config.json", "RepoTags": ["localhost/mh-busybox:latest"],
                "Layers": ["layer.tar"]}])
            .to_string(),
        )
        .expect("manifest.json");
        let archive = self.dir.join("busybox.tar");
        ok(Command::new("tar")
            .arg("-C")
            .arg(&img)
            .arg("-cf")
            .arg(&archive)
            .args(["manifest.json", "config.json", "layer.tar"]));
        self.ok(&[
            "image",
            "import",
            "--snapshotter",
            "native",
            &archive.display().to_string(),
        ]);
    }

    /// `ctr run --rm --cni` of busybox sleeping as container (and task) `name`, in the
    /// foreground as a user runs it: ctr sets the network up (ADD) once the task exists, and tears
    /// it down (DEL, with an empty CNI_NETNS: the task's namespace is gone) when the task ends.
    /// (A detached `ctr run -d` never gets its DEL from ctr.) Returns once the task runs.
    pub fn run(&self, name: &str) -> Task {
        let child = self
            .daemon
            .command("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args([
                "-n",
                &self.namespace,
                "run",
                "--rm",
                "--snapshotter",
                "native",
                "--cni",
            ])
            .args(["localhost/mh-busybox:latest", name, "/bin/sleep", "3600"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ctr run");
        let mut task = Task {
            name: name.to_string(),
            child: Some(child),
        };
        crate::wait_until("the task runs", Duration::from_secs(20), || {
            if let Some(status) = task
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let out = task.child.take().map(|c| c.wait_with_output());
                panic!("ctr run {name} ended ({status}): {out:?}");
            }
            self.task_state(name).as_deref() == Some("RUNNING")
        });
        task
    }

    /// The task's status in `ctr task ls` (RUNNING, STOPPED), if it exists.
    pub fn task_state(&self, name: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&name)).then(|| f.last().unwrap_or(&"").to_string())
        })
    }

    /// Kills the task; returns what its `ctr run` printed once it ended (after its DEL).
    pub fn stop(&self, mut task: Task) -> Output {
        let _ = self.ctr(&["task", "kill", "-s", "KILL", &task.name]);
        task.child
            .take()
            .expect("a running ctr run")
            .wait_with_output()
            .expect("ctr run output")
    }

    /// `ctr task exec` of `argv` in the task `name`.
    pub fn exec(&self, name: &str, argv: &[&str]) -> Output {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let id = format!("x{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut args = vec!["task", "exec", "--exec-id", id.as_str(), name];
        args.extend(argv);
        self.ctr(&args)
    }

    /// The IPv4 address of `eth0` in task `name`.
    pub fn ip_of(&self, name: &str) -> String {
        let out = self.exec(name, &["ip", "-o", "-4", "addr", "show", "eth0"]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_default()
            .to_string()
    }

    /// Whether task `from` reaches `ip`.
    pub fn reaches(&self, from: &str, ip: &str) -> bool {
        self.exec(from, &["ping", "-c", "3", "-W", "1", ip])
            .status
            .success()
    }
}

/// A task started by [`Containerd::run`]: its foreground `ctr run`.
#[derive(Debug)]
pub struct Task {
    /// The container and task name.
    pub name: String,
    child: Option<std::process::Child>,
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let out = self.ctr(&["task", "ls", "-q"]);
        for t in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", t]);
        }
        let out = self.ctr(&["container", "ls", "-q"]);
        for c in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.ctr(&["task", "rm", "-f", c]);
            let _ = self.ctr(&["container", "rm", c]);
        }
        // runc leaves the namespace's parent cgroup in each hierarchy (the machine's own).
        for c in CGROUP_V1_CONTROLLERS.iter().chain(&["systemd"]) {
            let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{c}/{}", self.namespace));
        }
    }
}
