//! OVN secondary networks, the `ovn-overlay` (layer2) and `localnet` CNI plugins: the network
//! model on OVSDB (OVN-Kubernetes' names and external_ids in the northbound DB; the port on the
//! node's br-int) and the plugin verbs. The northbound DB is the cluster's source of truth: no
//! controller runs beside the plugin. Topology is a parameter of one model, not two copies.
//!
//! Owns: configuration (`conf`), naming conventions (`names`), address allocation (`alloc`),
//! the northbound side (`nb`), the node's OVS side (`node`), holding and releasing a logical port
//! (`port`), and ADD/DEL/CHECK/GC/STATUS.

mod add;
pub mod alloc;
mod check;
pub mod conf;
mod del;
mod ethtool;
mod gc;
pub mod names;
pub mod nb;
pub mod node;
pub mod port;

use cni::{Call, CniResult, Error, Plugin};

pub use conf::Topology;

/// The plugin; `topology` is the executable's default (None: `ovn-k8s-cni-overlay`, where the
/// configuration's `topology` key decides).
#[derive(Debug, Clone, Copy)]
pub struct Ovn {
    pub topology: Option<Topology>,
}

impl Plugin for Ovn {
    fn about(&self) -> &str {
        match self.topology {
            Some(Topology::Localnet) => {
                "multihome localnet: OVN secondary networks on the physical network (bridge mappings, VLANs)"
            }
            Some(Topology::Layer2) => "multihome ovn-overlay: OVN layer2 secondary networks (Geneve between nodes)",
            None => "multihome ovn-k8s-cni-overlay: OVN secondary networks, layer2 or localnet",
        }
    }

    fn known_args(&self) -> &[&str] {
        &[
            "MAC",
            "K8S_POD_NAMESPACE",
            "K8S_POD_NAME",
            "K8S_POD_UID",
            "K8S_POD_INFRA_CONTAINER_ID",
        ]
    }

    fn add(&self, call: &Call) -> Result<CniResult, Error> {
        add::add(call, self.topology)
    }

    fn del(&self, call: &Call) -> Result<(), Error> {
        del::del(call, self.topology)
    }

    fn check(&self, call: &Call) -> Result<(), Error> {
        check::check(call, self.topology)
    }

    fn status(&self, call: &Call) -> Result<(), Error> {
        gc::status(call, self.topology)
    }

    fn gc(&self, call: &Call) -> Result<(), Error> {
        gc::gc(call, self.topology)
    }
}

/// The plugin an executable named `argv0` is: `localnet`, `ovn-k8s-cni-overlay`, else layer2.
pub fn for_executable(argv0: &str) -> Ovn {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    let topology = match base {
        "localnet" => Some(Topology::Localnet),
        "ovn-k8s-cni-overlay" => None,
        _ => Some(Topology::Layer2),
    };
    Ovn { topology }
}
