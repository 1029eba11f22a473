//! What a runtime knows about one attachment: libcni's `RuntimeConf`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

/// The per-attachment inputs of a CNI call, besides the network config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: the container's network namespace.
    pub netns: PathBuf,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` pairs, in order.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`ips`, `mac`, `portMappings`, ...); each plugin
    /// gets, in `runtimeConfig`, those whose capability it declares.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    /// An attachment of `ifname` in the namespace at `netns`.
    pub fn new(container_id: &str, netns: &Path, ifname: &str) -> RuntimeConf {
        RuntimeConf {
            container_id: container_id.to_owned(),
            netns: netns.to_path_buf(),
            ifname: ifname.to_owned(),
            ..RuntimeConf::default()
        }
    }

    /// An attachment of `eth0` with a fresh container ID.
    pub fn for_netns(netns: &Path) -> RuntimeConf {
        RuntimeConf::new(&container_id(), netns, "eth0")
    }

    /// What Multus passes for a Kubernetes pod: a fresh 64-hex container ID,
    /// `eth0`, and `CNI_ARGS` of
    /// `IgnoreUnknown=true;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;`
    /// `K8S_POD_INFRA_CONTAINER_ID=<id>;K8S_POD_UID=..`.
    pub fn multus(netns: &Path, namespace: &str, pod: &str, uid: &str) -> RuntimeConf {
        let rt = RuntimeConf::for_netns(netns);
        let id = rt.container_id.clone();
        rt.with_arg("IgnoreUnknown", "true")
            .with_arg("K8S_POD_NAMESPACE", namespace)
            .with_arg("K8S_POD_NAME", pod)
            .with_arg("K8S_POD_INFRA_CONTAINER_ID", &id)
            .with_arg("K8S_POD_UID", uid)
    }

    /// Sets the interface name.
    pub fn with_ifname(mut self, ifname: &str) -> RuntimeConf {
        self.ifname = ifname.to_owned();
        self
    }

    /// Appends one `CNI_ARGS` pair.
    pub fn with_arg(mut self, key: &str, value: &str) -> RuntimeConf {
        self.args.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets one capability argument.
    pub fn with_capability(mut self, capability: &str, value: Value) -> RuntimeConf {
        self.capability_args.insert(capability.to_owned(), value);
        self
    }

    /// `CNI_ARGS` as libcni joins it: `k=v;k2=v2`.
    pub fn cni_args(&self) -> String {
        let pairs: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(";")
    }
}

/// A fresh container ID: 64 lowercase hex digits, like a Docker/CRI ID.
pub fn container_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    (0..4u64)
        .map(|part| {
            let mut h = state.build_hasher();
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            h.write_u32(std::process::id());
            h.write_u64(part);
            format!("{:016x}", h.finish())
        })
        .collect()
}
