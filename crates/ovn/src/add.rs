//! ADD: the logical switch port (created, adopted again for an idempotent or persistent ADD, or
//! bound to a second chassis for a live migration), then the node's veth and br-int port, the
//! container interface, and the wait for ovn-controller's `ovn-installed`; on a localnet network
//! with an `ipam` plugin (dhcp), then the IPAM's addresses and routes on the container interface
//! (the port's forwarding is in place, so a DHCP exchange can cross the physical network). A
//! failure undoes everything this call did, in reverse.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cni::{Call, CniResult, Error, Interface, IpConfig};
use ipnetwork::IpNetwork;
use netlink::{Link, LinkChange, Mac, Netlink, VethSpec};
use netns::NetNs;
use serde_json::json;

use crate::conf::{OvnConf, Topology, Who};
use crate::nb::{Nb, Port, Snapshot};
use crate::node::{NodeInfo, Ovs};
use crate::{alloc, ethtool, names, port};

/// Optimistic NB retries before "try again later".
const MAX_ATTEMPTS: usize = 200;

/// How the attachment got its logical port.
#[derive(Debug)]
enum Claimed {
    /// A new port (DEL of it on failure).
    Created(Port),
    /// An existing port whose options/external_ids were changed (restore on failure).
    Updated { before: Port, after: Port },
    /// The port already was this attachment's (a repeated ADD).
    Same(Port),
}

impl Claimed {
    fn port(&self) -> &Port {
        match self {
            Claimed::Created(p) | Claimed::Same(p) => p,
            Claimed::Updated { after, .. } => after,
        }
    }
}

#[derive(Debug)]
enum Undo {
    NbCreated {
        switch: String,
        port: Box<Port>,
    },
    NbUpdated {
        before: Box<Port>,
        after: Box<Port>,
    },
    OvsPort(String),
    Veth {
        index: u32,
        name: String,
    },
    /// The IPAM plugin's ADD (its DEL).
    Ipam,
}

struct Add<'a> {
    call: &'a Call,
    conf: OvnConf,
    who: Who,
    ns: NetNs,
    node: Netlink,
    cont: Netlink,
    ovs: Ovs,
    info: NodeInfo,
    undo: cni::undo::Journal<Undo>,
}

pub fn add(call: &Call, default_topology: Option<Topology>) -> Result<CniResult, Error> {
    let mut conf = OvnConf::from_call(call, default_topology)?;
    let who = Who::from_call(call);
    let path = call
        .env
        .netns
        .as_ref()
        .ok_or_else(|| Error::invalid_env("CNI_NETNS is required"))?;
    let ns = NetNs::open(path)
        .map_err(|e| Error::invalid_env(format!("CNI_NETNS={}: {e}", path.display())))?;
    let mut ovs = Ovs::connect(&conf)?;
    let info = ovs.info()?;
    port::check_node(&mut conf, &info, &ovs.endpoint)?;
    let node = Netlink::connect().map_err(port::kernel)?;
    let cont = Netlink::connect_in(&ns).map_err(port::kernel)?;
    if cont
        .link_by_name(&call.env.ifname)
        .map_err(port::kernel)?
        .is_some()
    {
        return Err(Error::invalid_env(format!(
            "CNI_IFNAME={}: the container already has an interface of that name",
            call.env.ifname
        )));
    }
    let mut add = Add {
        call,
        conf,
        who,
        ns,
        node,
        cont,
        ovs,
        info,
        undo: cni::undo::Journal::new(),
    };
    match add.run() {
        Ok(r) => Ok(r),
        Err(e) => Err(add.rollback(e)),
    }
}

impl Add<'_> {
    fn run(&mut self) -> Result<CniResult, Error> {
        let mut nb = Nb::connect(&self.conf)?;
        let snap = nb.ensure_switch(&self.conf)?;
        let claimed = self.claim(&mut nb, snap)?;
        match &claimed {
            Claimed::Created(p) => self.undo.push(Undo::NbCreated {
                switch: names::switch_name(&self.conf),
                port: Box::new(p.clone()),
            }),
            Claimed::Updated { before, after } => self.undo.push(Undo::NbUpdated {
                before: Box::new(before.clone()),
                after: Box::new(after.clone()),
            }),
            Claimed::Same(_) => {}
        }
        let lsp = claimed.port().clone();
        let mac: Mac = lsp
            .mac()
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| Error::internal(format!("logical port {} has no MAC", lsp.name)))?;
        let ips: Vec<IpNetwork> = port::port_networks(&lsp, &self.conf);

        // The node: veth, br-int port, container interface.
        let host_name = names::host_ifname(&lsp.name, &self.who);
        if let Some(old) = self.node.link_by_name(&host_name).map_err(port::kernel)? {
            // A leftover of an ADD of this very attachment that died half-way.
            self.node
                .del_link(old.index, &old.name)
                .map_err(port::kernel)?;
        }
        let spec = VethSpec {
            name: &host_name,
            peer: &self.call.env.ifname,
            peer_ns_fd: self.ns.raw_fd(),
            mtu: Some(self.conf.mtu),
            peer_mac: Some(mac),
        };
        self.node.add_veth(&spec).map_err(port::kernel)?;
        let host = self.link(&host_name, true)?;
        self.undo.push(Undo::Veth {
            index: host.index,
            name: host.name.clone(),
        });
        let br_int = self.info.br_int.clone().expect("checked by check_node");
        let mac_s = mac.to_string();
        let mut ext: Vec<(&str, &str)> = vec![
            ("iface-id", lsp.name.as_str()),
            ("attached_mac", mac_s.as_str()),
            ("sandbox", self.who.container_id.as_str()),
            (names::EXT_IFACE_NETWORK, self.conf.network.as_str()),
            (names::EXT_IFACE_IFNAME, self.who.ifname.as_str()),
        ];
        if let Some(uid) = &self.who.pod_uid {
            ext.push(("iface-id-ver", uid.as_str()));
        }
        // Everything is up before ovs-vswitchd opens the host end: on the userspace datapath a
        // port opened while its link was down sometimes never received (the container's packets
        // went nowhere while packets to it were delivered; seen about once in 60 ADDs).
        self.node
            .set_link(
                host.index,
                &host.name,
                &LinkChange {
                    up: Some(true),
                    ..Default::default()
                },
            )
            .map_err(port::kernel)?;
        let cont = self.link(&self.call.env.ifname.clone(), false)?;
        self.configure_container(&cont, &ips)?;
        self.ovs.add_port(&br_int, &host_name, &ext)?;
        self.undo.push(Undo::OvsPort(host_name.clone()));
        self.ovs
            .wait_installed(&host_name, &lsp.name, self.conf.ready_timeout)?;

        let ipam = match &self.conf.ipam {
            None => None,
            Some(_) => {
                self.undo.push(Undo::Ipam);
                let r = cni::delegate::ipam_add(self.call)?;
                if r.ips.is_empty() {
                    return Err(Error::internal("IPAM plugin returned missing IP config"));
                }
                self.configure_ipam(&cont, &r)?;
                Some(r)
            }
        };

        let mut result = CniResult::default();
        result.interfaces.push(Interface {
            name: host.name.clone(),
            mac: host.mac.map(|m| m.to_string()),
            ..Default::default()
        });
        result.interfaces.push(Interface {
            name: self.call.env.ifname.clone(),
            mac: Some(mac_s),
            sandbox: Some(self.ns.path().display().to_string()),
            ..Default::default()
        });
        for ip in ips {
            result.ips.push(IpConfig {
                address: ip,
                gateway: None,
                interface: Some(1),
            });
        }
        result.dns = self.call.conf.dns.clone();
        if let Some(r) = ipam {
            for mut ip in r.ips {
                ip.interface = Some(1);
                result.ips.push(ip);
            }
            result.routes = r.routes;
            if result.dns.is_empty() {
                result.dns = r.dns;
            }
        }
        Ok(result)
    }

    /// The IPAM result on the container interface: its addresses, and its routes (through the
    /// gateway of the address's family when a route names none).
    fn configure_ipam(&self, cont: &Link, r: &CniResult) -> Result<(), Error> {
        for ip in &r.ips {
            self.cont
                .add_address(cont.index, &cont.name, ip.address)
                .map_err(port::kernel)?;
        }
        let gw = |v4: bool| {
            r.ips
                .iter()
                .filter(|ip| ip.address.is_ipv4() == v4)
                .find_map(|ip| ip.gateway)
        };
        for route in &r.routes {
            let mut nl =
                netlink::Route::new(route.dst, route.gw.or(gw(route.dst.is_ipv4())), cont.index);
            nl.priority = route.priority;
            nl.mtu = route.mtu;
            nl.advmss = route.advmss;
            if let Some(t) = route.table {
                nl.table = t;
            }
            if let Some(s) = route.scope {
                nl.scope = s;
            }
            self.cont.add_route(&nl).map_err(port::kernel)?;
        }
        Ok(())
    }

    fn link(&self, name: &str, node: bool) -> Result<Link, Error> {
        let nl = if node { &self.node } else { &self.cont };
        nl.link_by_name(name)
            .map_err(port::kernel)?
            .ok_or_else(|| Error::internal(format!("interface {name} vanished")))
    }

    /// The logical port for this attachment, under optimistic concurrency.
    fn claim(&mut self, nb: &mut Nb, first: Snapshot) -> Result<Claimed, Error> {
        let persistent = self.conf.persistent_key();
        let name = names::port_name(&self.conf, &self.who, persistent.as_deref());
        let chassis = self.info.chassis.clone();
        let token = self.who.token();
        let switch = names::switch_name(&self.conf);
        let mut snap = first;
        let start = Instant::now();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Back off a little, with jitter, so that losers do not collide again at once.
                let jitter = u64::from(std::process::id() % 7) + attempt as u64 % 5;
                std::thread::sleep(Duration::from_micros(300 * jitter));
                snap = nb.snapshot(&switch)?.ok_or_else(|| {
                    Error::try_again_later(format!("logical switch {switch} vanished during ADD"))
                })?;
            }
            if let Some(existing) = snap.port(&name).cloned() {
                if existing.holder(&chassis) == Some(token.as_str()) {
                    return Ok(Claimed::Same(existing));
                }
                let (options, ext) = self.rebind(&existing, persistent.is_some());
                // A port parked by an older version gets the link-local entry now.
                let mended =
                    names::mended_port_security(&existing.addresses, &existing.port_security);
                let mended = mended.map(|m| vec![m]);
                if nb.update_port_and_security(&existing, &options, &ext, mended.as_deref())? {
                    let mut after = existing.clone();
                    after.options = options;
                    after.external_ids = ext;
                    if let Some(m) = mended {
                        after.port_security = m;
                    }
                    return Ok(Claimed::Updated {
                        before: existing,
                        after,
                    });
                }
                continue;
            }
            let skip = if attempt == 0 {
                0
            } else {
                (std::process::id() as usize + attempt) % 8
            };
            let nets = alloc::pick(&self.conf.subnets, &self.conf.exclude, &snap.used(), skip)?;
            let ips: Vec<std::net::IpAddr> = nets.iter().map(IpNetwork::ip).collect();
            let mac = self
                .conf
                .mac
                .unwrap_or_else(|| names::derived_mac(&ips, &name));
            let (addr, security) = names::port_entries(mac, &ips);
            let mut options = BTreeMap::new();
            options.insert("requested-chassis".to_string(), chassis.clone());
            if let Some(uid) = &self.who.pod_uid {
                options.insert("iface-id-ver".to_string(), uid.clone());
            }
            let mut ext = self.base_external_ids();
            ext.insert(names::at_key(&chassis), token.clone());
            if let Some(k) = &persistent {
                ext.insert(names::EXT_CLAIM.to_string(), k.clone());
            }
            let row = json!({
                "name": name,
                "addresses": ovsdb::value::set(vec![json!(addr)]),
                "port_security": ovsdb::value::set(vec![json!(security)]),
                "options": port::map_value(&options),
                "external_ids": port::map_value(&ext),
            });
            if let Some(created) = nb.insert_port(&snap, row)? {
                return Ok(Claimed::Created(created));
            }
            if start.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        Err(Error::try_again_later(format!(
            "too much contention on logical switch {switch}: could not allocate a port"
        )))
    }

    /// external_ids every port of this network carries (OVN-Kubernetes' keys).
    fn base_external_ids(&self) -> BTreeMap<String, String> {
        let mut ext = BTreeMap::new();
        ext.insert(names::EXT_NAD.to_string(), self.conf.nad.clone());
        ext.insert(names::EXT_NETWORK.to_string(), self.conf.network.clone());
        ext.insert(
            names::EXT_TOPOLOGY.to_string(),
            self.conf.topology.as_str().to_string(),
        );
        if let Some((ns, _)) = &self.who.pod {
            ext.insert("namespace".to_string(), ns.clone());
            ext.insert("pod".to_string(), "true".to_string());
        }
        ext
    }

    /// The options and external_ids of an existing port once this attachment holds it here:
    /// a port still held on another chassis by a live attachment with the same persistent
    /// identity is a live migration (bound to both, activated here on the VM's first RARP);
    /// otherwise this chassis takes the port over.
    fn rebind(
        &self,
        existing: &Port,
        persistent: bool,
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let chassis = &self.info.chassis;
        let mut options = existing.options.clone();
        let mut ext = existing.external_ids.clone();
        let others: Vec<String> = existing
            .chassis()
            .into_iter()
            .filter(|c| c != chassis && existing.holder(c).is_some())
            .collect();
        // Stale holders (no longer requested) and an older holder here are dropped.
        ext.retain(|k, _| {
            !k.starts_with(names::EXT_AT_PREFIX) || others.iter().any(|c| names::at_key(c) == *k)
        });
        ext.insert(names::at_key(chassis), self.who.token());
        for (k, v) in self.base_external_ids() {
            ext.insert(k, v);
        }
        if persistent && !others.is_empty() {
            let mut list = others.clone();
            list.push(chassis.clone());
            options.insert("requested-chassis".to_string(), list.join(","));
            options.insert("activation-strategy".to_string(), "rarp".to_string());
        } else {
            options.insert("requested-chassis".to_string(), chassis.clone());
            options.remove("activation-strategy");
        }
        // iface-id-ver names one pod: while two launcher pods hold the port (a live migration),
        // it would unbind the source the moment the target's ADD wrote its own UID, and the VM
        // would be cut off until its activation on the target. Bound to both, the port has none.
        match &self.who.pod_uid {
            Some(uid) if !persistent || others.is_empty() => {
                options.insert("iface-id-ver".to_string(), uid.clone());
            }
            _ => {
                options.remove("iface-id-ver");
            }
        }
        (options, ext)
    }

    /// Container end: IPv6 DAD off (the addresses are managed), addresses, TX checksum off on
    /// the userspace datapath, up.
    fn configure_container(&self, cont: &Link, ips: &[IpNetwork]) -> Result<(), Error> {
        let ifname = cont.name.clone();
        let has_v6 = ips.iter().any(IpNetwork::is_ipv6);
        let netdev = self.info.netdev;
        let csum = self
            .ns
            .run(|| {
                if has_v6 {
                    let _ = netlink::sysctl::ensure(
                        &format!("net/ipv6/conf/{ifname}/disable_ipv6"),
                        "0",
                    );
                    let _ =
                        netlink::sysctl::write(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0");
                }
                if netdev {
                    ethtool::tx_checksum_off(&ifname)
                } else {
                    Ok(())
                }
            })
            .map_err(|e| Error::internal(e.to_string()))?;
        csum.map_err(|e| {
            Error::internal(format!(
                "turning TX checksum offload off on {ifname} (br-int is on the userspace datapath): {e}"
            ))
        })?;
        for ip in ips {
            self.cont
                .add_address(cont.index, &ifname, *ip)
                .map_err(port::kernel)?;
        }
        self.cont
            .set_link(
                cont.index,
                &ifname,
                &LinkChange {
                    up: Some(true),
                    ..Default::default()
                },
            )
            .map_err(port::kernel)
    }

    fn rollback(&mut self, e: Error) -> Error {
        let mut nb: Option<Nb> = None;
        let mut journal = std::mem::take(&mut self.undo);
        journal.roll_back(e, |step| match step {
            Undo::Veth { index, name } => self
                .node
                .del_link(index, &name)
                .map(|_| ())
                .map_err(port::kernel),
            Undo::OvsPort(name) => self.ovs.del_port(&name),
            Undo::Ipam => cni::delegate::ipam_forward(self.call, cni::Command::Del),
            Undo::NbCreated { switch, port } => {
                port::nb_conn(&mut nb, &self.conf).and_then(|nb| match nb.snapshot(&switch)? {
                    // Guarded: a port someone else took over since is theirs.
                    Some(s) => nb.delete_port(&s.switch_uuid, &port).map(|_| ()),
                    None => Ok(()),
                })
            }
            Undo::NbUpdated { before, after } => {
                // The port security too, when this ADD mended it.
                let security = (after.port_security != before.port_security)
                    .then_some(before.port_security.as_slice());
                port::nb_conn(&mut nb, &self.conf).and_then(|nb| {
                    nb.update_port_and_security(
                        &after,
                        &before.options,
                        &before.external_ids,
                        security,
                    )
                    .map(|_| ())
                })
            }
        })
    }
}
