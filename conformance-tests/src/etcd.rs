//! etcd members started by the tests that need them: 1 or 3 members on the loopback of a
//! namespace the test created (never the machine's own), each member its own process with its
//! own data directory, stoppable and restartable to simulate failures. Everything is stopped and
//! removed on drop. [`EtcdCluster::start_tls`] serves clients over TLS only and requires client
//! certificates, with certificates [`TestPki`] makes with the `openssl` command.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
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
    /// The address clients reach the members at (loopback unless another node must reach them).
    host: String,
    /// Server and client certificates when clients must speak TLS.
    tls: Option<TlsFiles>,
    _dir: TempDir,
}

/// What a TLS cluster is started with, and what its own etcdctl presents.
#[derive(Debug, Clone)]
struct TlsFiles {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// A throwaway PKI made with the `openssl` command in a temporary directory: a CA, a server
/// certificate for `IP:127.0.0.1` signed by it, a client certificate signed by it, and a second
/// CA that signed nothing etcd knows (to prove a wrong CA is refused). EC P-256 keys, valid for
/// a day.
#[derive(Debug)]
pub struct TestPki {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// etcd's certificate (`--cert-file`): SAN `IP:127.0.0.1`, server and client auth (etcd's
    /// JSON gateway dials the member's own gRPC port with it).
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A client certificate (CN `multihome-client`), client auth.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A client certificate without a CommonName (subject `O=multihome`): what etcd's JSON
    /// gateway accepts once authentication is on.
    pub client_nocn_cert: PathBuf,
    /// Its key.
    pub client_nocn_key: PathBuf,
    /// Another CA, unrelated to every certificate above.
    pub other_ca: PathBuf,
    dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (make deps installs it): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestPki {
    /// Makes the CA, the certificates and their keys.
    pub fn generate() -> TestPki {
        let dir = TempDir::new("pki");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let (key, pem, subj) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN=multihome test {ca}"),
            );
            let mut args = vec![
                "req", "-x509", "-days", "1", "-subj", &subj, "-keyout", &key, "-out", &pem,
            ];
            args.extend(ec);
            args.extend([
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(d, &args);
        }
        for (name, subj, usage) in [
            ("server", "/CN=etcd-test-server", "serverAuth,clientAuth"),
            ("client", "/CN=multihome-client", "clientAuth"),
            ("client-nocn", "/O=multihome", "clientAuth"),
        ] {
            let (key, csr, pem, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let san = if name == "server" {
                "subjectAltName=IP:127.0.0.1\n"
            } else {
                ""
            };
            std::fs::write(
                d.join(&ext),
                format!(
                    "{san}basicConstraints=critical,CA:FALSE\n\
                     keyUsage=critical,digitalSignature,keyEncipherment\n\
                     extendedKeyUsage={usage}\n"
                ),
            )
            .expect("write the extensions file");
            let mut args = vec!["req", "-subj", subj, "-keyout", &key, "-out", &csr];
            args.extend(ec);
            openssl(d, &args);
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "1",
                    "-extfile",
                    &ext,
                    "-out",
                    &pem,
                ],
            );
        }
        TestPki {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            client_nocn_cert: d.join("client-nocn.pem"),
            client_nocn_key: d.join("client-nocn.key"),
            other_ca: d.join("other-ca.pem"),
            dir,
        }
    }

    /// The directory holding everything.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
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
        EtcdCluster::start_with(n, netns, None, "127.0.0.1")
    }

    /// Starts `n` members inside `netns` serving clients at `host`, an address of that
    /// namespace that other node namespaces reach (a cluster every node of a test shares).
    pub fn start_serving_at(n: usize, netns: &Netns, host: std::net::IpAddr) -> EtcdCluster {
        EtcdCluster::start_with(n, netns, None, &host.to_string())
    }

    /// Starts `n` members whose client URLs are `https://` only and require a client
    /// certificate signed by `pki.ca` (`--client-cert-auth`); peers talk plain HTTP among
    /// themselves. [`EtcdCluster::etcdctl`] presents `pki`'s client certificate.
    pub fn start_tls(n: usize, netns: &Netns, pki: &TestPki) -> EtcdCluster {
        EtcdCluster::start_with(
            n,
            netns,
            Some(TlsFiles {
                ca: pki.ca.clone(),
                server_cert: pki.server_cert.clone(),
                server_key: pki.server_key.clone(),
                client_cert: pki.client_cert.clone(),
                client_key: pki.client_key.clone(),
            }),
            "127.0.0.1",
        )
    }

    fn start_with(n: usize, netns: &Netns, tls: Option<TlsFiles>, host: &str) -> EtcdCluster {
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
            host: host.to_string(),
            tls,
            _dir: dir,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_healthy(&(0..n).collect::<Vec<_>>());
        cluster
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn spawn(&self, i: usize) {
        let m = &self.members[i];
        let client = self.endpoint(i);
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
            .args(self.tls.iter().flat_map(|t| {
                [
                    "--cert-file".as_ref(),
                    t.server_cert.as_os_str(),
                    "--key-file".as_ref(),
                    t.server_key.as_os_str(),
                    "--trusted-ca-file".as_ref(),
                    t.ca.as_os_str(),
                    "--client-cert-auth".as_ref(),
                ]
            }))
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

    /// Client URLs of every member (`http://127.0.0.1:port`, `https://` for a TLS cluster),
    /// reachable inside the namespace (and from other nodes, for a cluster serving at an
    /// address they reach).
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!(
            "{}://{}:{}",
            self.scheme(),
            self.host,
            self.members[i].client_port
        )
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

    /// `etcdctl` inside the namespace against `endpoints` (with the CA and the client
    /// certificate of a TLS cluster).
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
            .args(self.tls.iter().flat_map(|t| {
                [
                    "--cacert".as_ref(),
                    t.ca.as_os_str(),
                    "--cert".as_ref(),
                    t.client_cert.as_os_str(),
                    "--key".as_ref(),
                    t.client_key.as_os_str(),
                ]
            }))
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
