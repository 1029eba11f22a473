//! etcd members started by the tests that need them: 1 or 3 members on the loopback of a
//! namespace the test created (never the machine's own), each member its own process with its
//! own data directory, stoppable and restartable to simulate failures. Everything is stopped and
//! removed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Netns, TempDir};

/// How long a member (or the cluster) may take to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    child: Mutex<Option<Child>>,
}

/// An etcd cluster inside `netns`.
#[derive(Debug)]
pub struct EtcdCluster {
    netns: String,
    members: Vec<Member>,
    initial_cluster: String,
    _dir: TempDir,
}

/// A free TCP port number (asked of the kernel, released at once; etcd binds it inside the
/// test's namespace, where nothing else listens).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl EtcdCluster {
    /// Starts `n` members inside `netns` and waits until the cluster answers.
    pub fn start(n: usize, netns: &Netns) -> EtcdCluster {
        let dir = TempDir::new("etcd");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.join(&format!("m{i}")),
                child: Mutex::new(None),
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let cluster = EtcdCluster {
            netns: netns.name().to_string(),
            members,
            initial_cluster,
            _dir: dir,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_healthy(&(0..n).collect::<Vec<_>>());
        cluster
    }

    fn spawn(&self, i: usize) {
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::File::create(m.data_dir.with_extension("log")).expect("etcd log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "etcd"])
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .args([
                "--initial-cluster-token",
                &self.netns,
                "--initial-cluster-state",
                "new",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd (make deps installs etcd-server): {e}"));
        *self.members[i]
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    /// Process ids of the running members (for CPU accounting).
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| {
                m.child
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(Child::id)
            })
            .collect()
    }

    /// Client URLs of every member (`http://127.0.0.1:port`), reachable inside the namespace.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Kills member `i` (as a crash would) and waits for the process to be gone.
    pub fn stop_member(&self, i: usize) {
        let taken = self.members[i]
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut c) = taken {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts member `i` with its data and waits until it answers.
    pub fn start_member(&self, i: usize) {
        let running = self.members[i]
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !running {
            self.spawn(i);
        }
        self.wait_healthy(&[i]);
    }

    /// `etcdctl` inside the namespace against `endpoints`.
    pub fn etcdctl(&self, endpoints: &[String], args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "etcdctl",
                "--endpoints",
                &endpoints.join(","),
            ])
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("etcdctl (make deps installs etcd-client)")
    }

    fn wait_healthy(&self, which: &[usize]) {
        let deadline = Instant::now() + START_TIMEOUT;
        for &i in which {
            loop {
                let out = self.etcdctl(
                    &[self.endpoint(i)],
                    &["endpoint", "health", "--command-timeout=1s"],
                );
                if out.status.success() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd member {} did not become healthy: {}",
                    self.members[i].name,
                    String::from_utf8_lossy(&out.stderr)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
