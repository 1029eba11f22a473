//! ADD: bridge, veth, port options, spoof check, IPAM, container addresses and routes, gateway,
//! masquerade, port up; every step that changed something registers its undo, and a failure
//! anywhere runs them in reverse (the reference leaves the veth and the bridge address, #29).

use std::net::IpAddr;

use cni::{code, Call, CniResult, Command, Error, Interface, Route as CniRoute};
use ipnetwork::IpNetwork;
use netlink::{Link, LinkChange, Netlink, Route, VethSpec};
use netns::NetNs;

use crate::conf::BridgeConf;
use crate::node::{self, kernel};

/// Attempts at a free random host veth name before giving up.
const VETH_NAME_ATTEMPTS: usize = 10;
/// IPAM plugins that talk on the bridge's wire during ADD (a DHCP exchange): the container end
/// is set up and the port must forward (past STP's listening and learning) before they run.
/// Others get the port as the reference gives it, without waiting for STP.
const IPAM_ON_THE_WIRE: [&str; 1] = ["dhcp"];

/// What to undo when a later step fails: each step that changed something pushes the step
/// that takes it back, so no change lacks an undo.
enum Undo {
    /// The container veth this ADD created (its host end here, the peer goes with it).
    Link {
        index: u32,
        name: String,
    },
    /// Node state that other attachments may share (the gateway address on the bridge or on
    /// `<bridge>.<vlan>`, the VLAN gateway pair, a forwarding sysctl): taken back only when no
    /// other attachment of this suite could be using it by then.
    Shared(SharedUndo),
    SpoofCheck(String),
    Ipam,
    Masquerade,
}

enum SharedUndo {
    /// `net` added to the link; `replaced` the addresses forceAddress removed for it.
    Address {
        index: u32,
        name: String,
        net: IpNetwork,
        replaced: Vec<IpNetwork>,
    },
    GatewayPair {
        index: u32,
        name: String,
    },
    Sysctl {
        key: &'static str,
        before: String,
    },
}

struct Attach<'a> {
    call: &'a Call,
    conf: &'a BridgeConf,
    node: Netlink,
    ns: NetNs,
    cont: Netlink,
    undo: cni::undo::Journal<Undo>,
    /// The bridge and this ADD's host veth, once known (what shared undo compares with).
    bridge_index: Option<u32>,
    own_host_index: Option<u32>,
}

pub fn add(call: &Call) -> Result<CniResult, Error> {
    let conf = BridgeConf::from_call(call)?;
    // Everything that can be known before touching the node is checked here: a result that
    // cannot be printed in the asked version, an IPAM plugin that is not in CNI_PATH.
    if conf.ipam.is_none() {
        cni::result::expressible(call.conf.version, 0, 0)?;
    }
    if let Some(ipam) = &conf.ipam {
        cni::delegate::find(ipam, &call.env.path)?;
    }
    let ns = node::open_netns(call)?;
    let cont = node::container_netlink(&ns)?;
    if cont
        .link_by_name(&call.env.ifname)
        .map_err(kernel)?
        .is_some()
    {
        return Err(Error::invalid_env(format!(
            "CNI_IFNAME={}: the container already has an interface of that name",
            call.env.ifname
        )));
    }
    if conf.is_gateway && conf.vlan != 0 {
        let name = format!("{}.{}", conf.bridge, conf.vlan);
        cni::env::validate_ifname(&name).map_err(|_| {
            Error::invalid_config(format!(
                "bridge {:?} with vlan {} needs a gateway interface {name:?}, longer than 15 bytes: use a shorter bridge name",
                conf.bridge, conf.vlan
            ))
        })?;
    }
    let mut a = Attach {
        call,
        conf: &conf,
        node: node::node_netlink()?,
        ns,
        cont,
        undo: cni::undo::Journal::new(),
        bridge_index: None,
        own_host_index: None,
    };
    match a.run() {
        Ok(r) => Ok(r),
        Err(e) => Err(a.rollback(e)),
    }
}

impl Attach<'_> {
    fn run(&mut self) -> Result<CniResult, Error> {
        let bridge = self.ensure_bridge()?;
        self.bridge_index = Some(bridge.index);
        let (host, cont) = self.create_veth()?;
        self.own_host_index = Some(host.index);
        self.attach_port(&bridge, &host)?;
        if self.conf.mac_spoof_check {
            let id = nft::spoofcheck::ref_id(&self.call.env.container_id, &self.call.env.ifname);
            let mac = cont.mac.map(|m| m.to_string()).unwrap_or_default();
            self.undo.push(Undo::SpoofCheck(id.clone()));
            nft::spoofcheck::setup(&nft::Nft::new(), &host.name, &mac, &id, &self.conf.network)
                .map_err(node::nft)?;
        }
        let mut result = CniResult {
            interfaces: vec![
                Interface {
                    name: bridge.name.clone(),
                    mac: None,
                    ..Default::default()
                },
                Interface {
                    name: host.name.clone(),
                    mac: None,
                    ..Default::default()
                },
                Interface {
                    name: cont.name.clone(),
                    mac: cont.mac.map(|m| m.to_string()),
                    sandbox: Some(self.ns.path().display().to_string()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        if self
            .conf
            .ipam
            .as_deref()
            .is_some_and(|t| IPAM_ON_THE_WIRE.contains(&t))
        {
            // Its exchange needs the port to forward: up both ends, wait out STP.
            self.set_up(&self.cont, &cont)?;
            node::wait_port_forwarding(&self.node, &host)?;
        }
        if self.conf.ipam.is_some() {
            self.undo.push(Undo::Ipam);
            let ipam = cni::delegate::ipam_add(self.call)?;
            if ipam.ips.is_empty() {
                return Err(Error::internal("IPAM plugin returned missing IP config"));
            }
            result.ips = ipam.ips;
            result.routes = ipam.routes;
            result.dns = ipam.dns;
            complete_l3(self.conf, &mut result)?;
            self.configure_container(&cont, &result)?;
            // The rules of this attachment before the node state other attachments share (the
            // gateway, forwarding): a failure here leaves nothing shared to take back.
            if self.conf.ip_masq.is_some() {
                self.undo.push(Undo::Masquerade);
                let addrs: Vec<IpNetwork> = result.ips.iter().map(|ip| ip.address).collect();
                nft::masquerade::setup(
                    &nft::Nft::new(),
                    &addrs,
                    &self.conf.network,
                    &self.call.env.ifname,
                    &self.call.env.container_id,
                )
                .map_err(node::nft)?;
            }
            if self.conf.is_gateway {
                self.configure_gateway(&bridge, &mut result)?;
            }
        } else if !self.conf.disable_container_interface {
            self.set_up(&self.cont, &cont)?;
        }
        let host = if self.conf.disable_container_interface {
            host
        } else {
            let host = node::wait_port_up(&self.node, &host)?;
            self.announce(&cont, &result);
            host
        };
        // The bridge's MAC follows its lowest port unless pinned: read it once ports settled.
        let bridge = self
            .node
            .link_by_index(bridge.index)
            .map_err(kernel)?
            .unwrap_or(bridge);
        result.interfaces[0].mac = bridge.mac.map(|m| m.to_string());
        result.interfaces[1].mac = host.mac.map(|m| m.to_string());
        if !self.call.conf.dns.is_empty() {
            result.dns = self.call.conf.dns.clone();
        }
        Ok(result)
    }

    /// Runs the undo steps in reverse; their failures go into the details of `e`.
    fn rollback(&mut self, e: Error) -> Error {
        let mut journal = std::mem::take(&mut self.undo);
        journal.roll_back(e, |step| match step {
            Undo::Link { index, name } => {
                self.node.del_link(index, &name).map(|_| ()).map_err(kernel)
            }
            Undo::SpoofCheck(id) => {
                nft::spoofcheck::teardown(&nft::Nft::new(), &id).map_err(node::nft)
            }
            Undo::Shared(shared) => self.undo_shared(shared),
            Undo::Ipam => cni::delegate::ipam_forward(self.call, Command::Del),
            Undo::Masquerade => nft::masquerade::teardown(
                &nft::Nft::new(),
                &self.conf.network,
                &self.call.env.ifname,
                &self.call.env.container_id,
            )
            .map_err(node::nft),
        })
    }

    /// Takes back shared node state this ADD made, unless another attachment of this suite
    /// (a host veth tagged with its owner, other than this ADD's) could be using it: on the
    /// bridge for its gateway address and VLAN gateway pair, anywhere on the node for the
    /// forwarding sysctls. What is kept is logged.
    fn undo_shared(&self, shared: SharedUndo) -> Result<(), Error> {
        let links = self.node.links().map_err(kernel)?;
        let (on_bridge, on_node) = others_attached(&links, self.own_host_index, self.bridge_index);
        match shared {
            SharedUndo::Address {
                index,
                name,
                net,
                replaced,
            } => {
                if on_bridge {
                    cni::log_warn!("undo: keeping {net} on {name}: other attachments use it");
                    return Ok(());
                }
                self.node.del_address(index, &name, net).map_err(kernel)?;
                for old in replaced {
                    self.node.add_address(index, &name, old).map_err(kernel)?;
                }
                Ok(())
            }
            SharedUndo::GatewayPair { index, name } => {
                if on_bridge {
                    cni::log_warn!("undo: keeping {name}: other attachments use it");
                    return Ok(());
                }
                self.node.del_link(index, &name).map(|_| ()).map_err(kernel)
            }
            SharedUndo::Sysctl { key, before } => {
                if on_node {
                    cni::log_warn!("undo: keeping {key}: other attachments may need it");
                    return Ok(());
                }
                netlink::sysctl::write(key, &before).map_err(|e| Error::internal(e.to_string()))
            }
        }
    }

    /// The bridge, created when missing; VLAN filtering switched on when VLANs are asked for.
    /// Nothing has been changed yet when this fails.
    fn ensure_bridge(&mut self) -> Result<Link, Error> {
        let conf = self.conf;
        let name = &conf.bridge;
        let existing = self.node.link_by_name(name).map_err(kernel)?;
        let mut br = match existing {
            Some(l) => l,
            None => {
                self.node
                    .add_bridge(name, conf.mtu, conf.wants_vlans())
                    .map_err(|e| vlan_error(e, conf))?;
                self.node
                    .link_by_name(name)
                    .map_err(kernel)?
                    .ok_or_else(|| {
                        Error::internal(format!("bridge {name} vanished right after its creation"))
                    })?
            }
        };
        if !br.is_bridge() {
            return Err(Error::invalid_config(format!(
                "bridge {name:?}: a link of that name exists and is {}, not a bridge",
                br.kind
                    .as_deref()
                    .map(|k| format!("a {k}"))
                    .unwrap_or_else(|| "a device".into())
            )));
        }
        if conf.wants_vlans() && br.vlan_filtering != Some(true) {
            if br.vlan_filtering.is_none() {
                return Err(vlan_unsupported(conf));
            }
            self.node
                .set_vlan_filtering(&br, true)
                .map_err(|e| vlan_error(e, conf))?;
        }
        let want_promisc = conf.promisc && !br.promisc;
        if !br.up || want_promisc {
            // We own the routes of the bridge: no router advertisements (as the reference).
            let _ = netlink::sysctl::ensure(&format!("net/ipv6/conf/{name}/accept_ra"), "0");
            let change = LinkChange {
                up: Some(true),
                promisc: want_promisc.then_some(true),
                ..Default::default()
            };
            self.node
                .set_link(br.index, name, &change)
                .map_err(kernel)?;
            br.up = true;
        }
        Ok(br)
    }

    /// The veth pair: host end `veth<hex>` here, container end CNI_IFNAME created directly in
    /// the container namespace with the MTU and the requested MAC.
    fn create_veth(&mut self) -> Result<(Link, Link), Error> {
        let ifname = &self.call.env.ifname;
        for _ in 0..VETH_NAME_ATTEMPTS {
            let host_name = node::random_veth_name();
            let spec = VethSpec {
                name: &host_name,
                peer: ifname,
                peer_ns_fd: self.ns.raw_fd(),
                mtu: self.conf.mtu,
                peer_mac: self.conf.mac,
            };
            match self.node.add_veth(&spec) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {
                    if self.cont.link_by_name(ifname).map_err(kernel)?.is_some() {
                        return Err(Error::invalid_env(format!(
                            "CNI_IFNAME={ifname}: the container already has an interface of that name"
                        )));
                    }
                    continue;
                }
                Err(e) => return Err(kernel(e)),
            }
            let host = self.node.link_by_name(&host_name).map_err(kernel)?;
            let host =
                host.ok_or_else(|| Error::internal(format!("host veth {host_name} vanished")))?;
            self.undo.push(Undo::Link {
                index: host.index,
                name: host.name.clone(),
            });
            let cont = self.cont.link_by_name(ifname).map_err(kernel)?;
            let cont = cont
                .ok_or_else(|| Error::internal(format!("container interface {ifname} vanished")))?;
            return Ok((host, cont));
        }
        Err(Error::try_again_later(format!(
            "no free host veth name after {VETH_NAME_ATTEMPTS} attempts"
        )))
    }

    /// Host end: into the bridge, tagged with its owner, up; port options and VLANs.
    fn attach_port(&mut self, bridge: &Link, host: &Link) -> Result<(), Error> {
        let conf = self.conf;
        let change = LinkChange {
            up: Some(true),
            master: Some(bridge.index),
            alias: Some(node::owner_alias(
                &conf.network,
                &self.call.env.container_id,
                &self.call.env.ifname,
            )),
            ..Default::default()
        };
        self.node
            .set_link(host.index, &host.name, &change)
            .map_err(kernel)?;
        if conf.hairpin || conf.port_isolation {
            self.node
                .set_bridge_port(host, conf.hairpin, conf.port_isolation)
                .map_err(kernel)?;
        }
        configure_port_vlans(
            &self.node,
            host,
            conf.vlan,
            &conf.trunk,
            conf.preserve_default_vlan,
        )
    }

    fn set_up(&self, nl: &Netlink, link: &Link) -> Result<(), Error> {
        nl.set_link(
            link.index,
            &link.name,
            &LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )
        .map_err(kernel)
    }

    /// Announces the container's IPv4 addresses now that its port is up (reference #756: the
    /// kernel's own announcement at link-up is lost). Best effort: a neighbour that misses it
    /// learns the MAC when its entry goes stale.
    fn announce(&self, cont: &Link, result: &CniResult) {
        let v4: Vec<std::net::Ipv4Addr> = result
            .ips
            .iter()
            .filter_map(|ip| match ip.address.ip() {
                std::net::IpAddr::V4(a) => Some(a),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        let Some(mac) = cont.mac.filter(|_| !v4.is_empty()) else {
            return;
        };
        let sent = self
            .ns
            .run(|| crate::announce::announce(cont.index, mac.0, &v4))
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = sent {
            cni::log_warn!("gratuitous ARP from {}: {e}", cont.name);
        }
    }

    /// Container end: DAD and ARP sysctls, addresses, up, routes.
    fn configure_container(&self, cont: &Link, result: &CniResult) -> Result<(), Error> {
        let ifname = &cont.name;
        let has_v6 = result.ips.iter().any(|ip| ip.address.is_ipv6());
        let enable_dad = self.conf.enable_dad;
        self.ns
            .run(|| {
                // Best effort, as the reference: a namespace without IPv6 has no such keys.
                if has_v6 {
                    let _ = netlink::sysctl::ensure(
                        &format!("net/ipv6/conf/{ifname}/disable_ipv6"),
                        "0",
                    );
                    // The addresses and routes are IPAM's: a router advertisement on the wire
                    // would add an address and a default route that no DEL releases. In L2 mode
                    // (no IPAM) the container follows advertisements, as any host on the wire.
                    let _ =
                        netlink::sysctl::write(&format!("net/ipv6/conf/{ifname}/accept_ra"), "0");
                }
                if enable_dad {
                    let _ = netlink::sysctl::write(
                        &format!("net/ipv6/conf/{ifname}/enhanced_dad"),
                        "1",
                    );
                    let _ =
                        netlink::sysctl::write(&format!("net/ipv6/conf/{ifname}/accept_dad"), "1");
                } else {
                    // No DAD: the address is usable at once (reference #680: ~2 s otherwise).
                    let _ =
                        netlink::sysctl::write(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0");
                }
                let _ = netlink::sysctl::write(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
            })
            .map_err(|e| Error::internal(e.to_string()))?;
        for ip in &result.ips {
            self.cont
                .add_address(cont.index, ifname, ip.address)
                .map_err(kernel)?;
        }
        self.set_up(&self.cont, cont)?;
        let gw4 = result
            .ips
            .iter()
            .filter(|ip| ip.address.is_ipv4())
            .find_map(|ip| ip.gateway);
        let gw6 = result
            .ips
            .iter()
            .filter(|ip| ip.address.is_ipv6())
            .find_map(|ip| ip.gateway);
        for r in &result.routes {
            let gw = r.gw.or(if r.dst.is_ipv4() { gw4 } else { gw6 });
            let mut route = Route::new(r.dst, gw, cont.index);
            route.priority = r.priority;
            route.mtu = r.mtu;
            route.advmss = r.advmss;
            if let Some(t) = r.table {
                route.table = t;
            }
            if let Some(s) = r.scope {
                route.scope = s;
            }
            self.cont.add_route(&route).map_err(|e| {
                let via = gw.map(|g| format!(" via {g}")).unwrap_or_default();
                kernel(e.with_op(format!(
                    "add route {}{via} dev {ifname} in the container",
                    r.dst
                )))
            })?;
        }
        Ok(())
    }

    /// Gateway addresses on the bridge (or on `<bridge>.<vlan>`), forwarding on.
    fn configure_gateway(&mut self, bridge: &Link, result: &mut CniResult) -> Result<(), Error> {
        let target = if self.conf.vlan != 0 {
            let gw_if = self.ensure_vlan_gateway(bridge)?;
            result.interfaces.push(Interface {
                name: gw_if.name.clone(),
                mac: gw_if.mac.map(|m| m.to_string()),
                ..Default::default()
            });
            gw_if
        } else {
            bridge.clone()
        };
        let mut families = [false, false];
        let mut added = false;
        for ip in &result.ips {
            let Some(gw) = ip.gateway else { continue };
            let net = IpNetwork::new(gw, ip.address.prefix()).expect("prefix of a valid network");
            if let Some(replaced) =
                ensure_address(&self.node, &target, net, self.conf.force_address)?
            {
                added = true;
                self.undo.push(Undo::Shared(SharedUndo::Address {
                    index: target.index,
                    name: target.name.clone(),
                    net,
                    replaced,
                }));
            }
            families[usize::from(gw.is_ipv6())] = true;
        }
        // Pin the MAC when the gateway arrives: otherwise the bridge takes the lowest port MAC
        // and changes with churn. Once set it stays set, so later ADDs skip it (a MAC change
        // walks every port of the bridge: the reference repeats it on every ADD). Read it now: a
        // bridge without ports has no MAC yet (all zeros) on recent kernels.
        if !added {
            return self.enable_forwarding(families);
        }
        let target = self
            .node
            .link_by_index(target.index)
            .map_err(kernel)?
            .unwrap_or(target);
        if let Some(mac) = target.mac.filter(|m| !m.is_zero()) {
            let change = LinkChange {
                mac: Some(mac),
                ..Default::default()
            };
            self.node
                .set_link(target.index, &target.name, &change)
                .map_err(kernel)?;
        }
        self.enable_forwarding(families)
    }

    /// Forwarding on for the families that have a gateway; the value it had is the undo.
    fn enable_forwarding(&mut self, families: [bool; 2]) -> Result<(), Error> {
        let keys = ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"];
        for (key, wanted) in keys.into_iter().zip(families) {
            if !wanted {
                continue;
            }
            let before = netlink::sysctl::read(key).map_err(|e| Error::internal(e.to_string()))?;
            if before == "1" {
                continue;
            }
            self.undo
                .push(Undo::Shared(SharedUndo::Sysctl { key, before }));
            netlink::sysctl::write(key, "1").map_err(|e| Error::internal(e.to_string()))?;
        }
        Ok(())
    }

    /// The reference's VLAN gateway: a veth whose end `<bridge>.<vlan>` stays on the node and
    /// whose other end is an access port of the VLAN. Shared by every attachment of the VLAN.
    fn ensure_vlan_gateway(&mut self, bridge: &Link) -> Result<Link, Error> {
        let name = format!("{}.{}", self.conf.bridge, self.conf.vlan);
        if let Some(l) = self.node.link_by_name(&name).map_err(kernel)? {
            return Ok(l);
        }
        let node_ns = NetNs::current().map_err(|e| Error::internal(e.to_string()))?;
        for _ in 0..VETH_NAME_ATTEMPTS {
            let port_name = node::random_veth_name();
            let spec = VethSpec {
                name: &port_name,
                peer: &name,
                peer_ns_fd: node_ns.raw_fd(),
                mtu: Some(bridge.mtu),
                peer_mac: None,
            };
            match self.node.add_veth(&spec) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {
                    if let Some(l) = self.node.link_by_name(&name).map_err(kernel)? {
                        return Ok(l); // created by a concurrent ADD
                    }
                    continue;
                }
                Err(e) => return Err(kernel(e)),
            }
            let port = self.node.link_by_name(&port_name).map_err(kernel)?;
            let port = port.ok_or_else(|| Error::internal(format!("{port_name} vanished")))?;
            self.undo.push(Undo::Shared(SharedUndo::GatewayPair {
                index: port.index,
                name: port.name.clone(),
            }));
            let change = LinkChange {
                up: Some(true),
                master: Some(bridge.index),
                ..Default::default()
            };
            self.node
                .set_link(port.index, &port.name, &change)
                .map_err(kernel)?;
            configure_port_vlans(
                &self.node,
                &port,
                self.conf.vlan,
                &[],
                self.conf.preserve_default_vlan,
            )?;
            let gw = self.node.link_by_name(&name).map_err(kernel)?;
            let gw = gw.ok_or_else(|| Error::internal(format!("{name} vanished")))?;
            self.set_up(&self.node, &gw)?;
            return Ok(gw);
        }
        Err(Error::try_again_later(format!(
            "no free veth name for the VLAN gateway {name}"
        )))
    }
}

/// Whether attachments of this suite other than `own` (host veths tagged with their owner) are
/// on the bridge, and anywhere on the node: what decides if shared state may be taken back.
fn others_attached(links: &[Link], own: Option<u32>, bridge: Option<u32>) -> (bool, bool) {
    let others: Vec<&Link> = links
        .iter()
        .filter(|l| Some(l.index) != own)
        .filter(|l| l.alias.as_deref().and_then(node::parse_owner).is_some())
        .collect();
    let on_bridge = others
        .iter()
        .any(|l| l.master.is_some() && l.master == bridge);
    (on_bridge, !others.is_empty())
}

/// Gateways and the default route the configuration asks for; every IP is on interface 2.
/// isGateway without a gateway from IPAM takes the network's first host, as the reference does,
/// except where that is the very address IPAM just gave the container: two hosts would answer
/// for it (the reference does this), so that is refused and names `ipam.gateway`.
fn complete_l3(conf: &BridgeConf, result: &mut CniResult) -> Result<(), Error> {
    let mut default_for = [false, false];
    let held: Vec<IpAddr> = result.ips.iter().map(|ip| ip.address.ip()).collect();
    for ip in &mut result.ips {
        ip.interface = Some(2);
        if ip.gateway.is_none() && conf.is_gateway {
            let gw = first_host(ip.address);
            if held.contains(&gw) {
                return Err(Error::invalid_config(format!(
                    "isGateway: IPAM gave no gateway for {}, and the one the bridge would take, \
                     {gw} (the network's first host), is an address IPAM hands to containers: set \
                     ipam.gateway (whereabouts and host-local then keep it out of their ranges), \
                     or start the range after {gw}",
                    ip.address
                )));
            }
            ip.gateway = Some(gw);
        }
        if !conf.is_default_gateway {
            continue;
        }
        let fam = usize::from(ip.address.is_ipv6());
        if default_for[fam] {
            continue;
        }
        let has_default = result.routes.iter().any(|r| {
            r.gw.is_some() && r.dst.prefix() == 0 && r.dst.is_ipv6() == ip.address.is_ipv6()
        });
        if !has_default {
            let dst = if ip.address.is_ipv6() {
                "::/0"
            } else {
                "0.0.0.0/0"
            };
            result
                .routes
                .push(CniRoute::new(dst.parse().expect("constant"), ip.gateway));
        }
        default_for[fam] = true;
    }
    Ok(())
}

/// Access (PVID, untagged) and trunk (tagged) VLANs of a port; both together make `vlan` the
/// trunk's native VLAN (upstream since v1.8.0). VLAN 1 removed unless preserved. The trunk goes
/// first: adding a range that holds the PVID without the PVID flag would clear it.
fn configure_port_vlans(
    nl: &Netlink,
    port: &Link,
    vlan: u16,
    trunk: &[(u16, u16)],
    preserve_default: bool,
) -> Result<(), Error> {
    if vlan == 0 && trunk.is_empty() {
        return Ok(());
    }
    if !preserve_default {
        for (vid, _, _) in nl.bridge_vlans(port).map_err(kernel)? {
            nl.bridge_vlan_del(port, vid, vid).map_err(kernel)?;
        }
    }
    for &(first, last) in trunk {
        nl.bridge_vlan_add(port, first, last, false, false)
            .map_err(kernel)?;
    }
    if vlan != 0 {
        nl.bridge_vlan_add(port, vlan, vlan, true, true)
            .map_err(kernel)?;
    }
    Ok(())
}

/// Puts `net` on `link`. A different IPv4 address, or an overlapping IPv6 one, is an error
/// unless forceAddress, which replaces it (the reference's rule).
/// Returns `None` when the address was already there, else the addresses it replaced.
fn ensure_address(
    nl: &Netlink,
    link: &Link,
    net: IpNetwork,
    force: bool,
) -> Result<Option<Vec<IpNetwork>>, Error> {
    // An IPv6 gateway gets optimistic DAD: containers reach it at once (a tentative address
    // answers nothing for about 2 s), and a duplicate of it on the wire still fails DAD.
    if net.is_ipv6() {
        for key in ["optimistic_dad", "use_optimistic"] {
            let _ = netlink::sysctl::write(&format!("net/ipv6/conf/{}/{key}", link.name), "1");
        }
    }
    // The steady state (every ADD after the first on this bridge) is "already there": one
    // request, no dump of every address of the node (which grows with its interfaces).
    if !nl
        .add_address_optimistic(link.index, &link.name, net)
        .map_err(kernel)?
    {
        return Ok(None);
    }
    let mut replaced = Vec::new();
    for a in nl.addresses(link.index).map_err(kernel)? {
        if a.net.is_ipv4() != net.is_ipv4() || a.net == net {
            continue;
        }
        let conflicts = net.is_ipv4() || a.net.contains(net.ip()) || net.contains(a.net.ip());
        if !conflicts {
            continue;
        }
        if !force {
            // Take back what was just added: the bridge keeps the address it had.
            nl.del_address(link.index, &link.name, net)
                .map_err(kernel)?;
            return Err(Error::invalid_config(format!(
                "bridge {:?} already has address {} where the gateway {net} should go: set forceAddress to replace it",
                link.name, a.net
            )));
        }
        nl.del_address(link.index, &link.name, a.net)
            .map_err(kernel)?;
        replaced.push(a.net);
    }
    if !replaced.is_empty() {
        // The kernel drops the secondaries of a primary IPv4 address with it: `net`, added
        // beside an address of its subnet, was one of them. Put it back.
        nl.add_address_optimistic(link.index, &link.name, net)
            .map_err(kernel)?;
    }
    Ok(Some(replaced))
}

/// The first host of the network of `addr` (the reference's default gateway).
fn first_host(addr: IpNetwork) -> IpAddr {
    match addr {
        IpNetwork::V4(n) => IpAddr::V4((u32::from(n.network()) + 1).into()),
        IpNetwork::V6(n) => IpAddr::V6((u128::from(n.network()) + 1).into()),
    }
}

fn vlan_unsupported(conf: &BridgeConf) -> Error {
    let key = if conf.vlan != 0 {
        format!("vlan {}", conf.vlan)
    } else {
        "vlanTrunk".to_string()
    };
    Error::new(
        code::UNSUPPORTED_FIELD,
        format!(
            "{key} needs bridge VLAN filtering, which this kernel does not provide (CONFIG_BRIDGE_VLAN_FILTERING): nothing was changed"
        ),
    )
}

fn vlan_error(e: netlink::Error, conf: &BridgeConf) -> Error {
    if e.is_not_supported() && conf.wants_vlans() {
        vlan_unsupported(conf)
    } else {
        kernel(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge_conf(extra: serde_json::Value) -> BridgeConf {
        let mut c = serde_json::json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let call = Call {
            env: cni::env::Env {
                command: Command::Add,
                container_id: "c1".into(),
                netns: None,
                ifname: "net1".into(),
                args: cni::args::CniArgs::parse("").unwrap(),
                path: vec![],
            },
            conf: cni::NetConf::parse(c.to_string().as_bytes()).unwrap(),
        };
        BridgeConf::from_call(&call).unwrap()
    }

    fn result(ips: &[(&str, Option<&str>)]) -> CniResult {
        CniResult {
            ips: ips
                .iter()
                .map(|(a, gw)| cni::IpConfig {
                    interface: None,
                    address: a.parse().unwrap(),
                    gateway: gw.map(|g| g.parse().unwrap()),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn is_gateway_refuses_a_computed_gateway_ipam_gave_the_container() {
        let conf = bridge_conf(serde_json::json!({"isGateway": true}));
        for addr in ["10.1.0.1/24", "fd00:1::1/64"] {
            let e = complete_l3(&conf, &mut result(&[(addr, None)])).unwrap_err();
            assert_eq!(e.code, code::INVALID_NETWORK_CONFIG);
            assert!(e.msg.contains("ipam.gateway"), "{}", e.msg);
        }
        let mut r = result(&[("10.1.0.2/24", None), ("fd00:1::2/64", None)]);
        complete_l3(&conf, &mut r).unwrap();
        let gws: Vec<String> = r
            .ips
            .iter()
            .map(|i| i.gateway.unwrap().to_string())
            .collect();
        assert_eq!(gws, ["10.1.0.1", "fd00:1::1"]);
        assert!(r.ips.iter().all(|i| i.interface == Some(2)));
        // IPAM's own gateway is kept, even where it is network+1 of another address.
        let mut r = result(&[("10.1.0.1/24", Some("10.1.0.254"))]);
        complete_l3(&conf, &mut r).unwrap();
        assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.1.0.254");
        // Without isGateway nothing is computed, so nothing collides.
        let mut r = result(&[("10.1.0.1/24", None)]);
        complete_l3(&bridge_conf(serde_json::json!({})), &mut r).unwrap();
        assert!(r.ips[0].gateway.is_none() && r.routes.is_empty());
    }

    #[test]
    fn is_default_gateway_adds_one_default_route_per_family_unless_ipam_gave_one() {
        let conf = bridge_conf(serde_json::json!({"isDefaultGateway": true}));
        let mut r = result(&[
            ("10.1.0.2/24", None),
            ("10.2.0.2/24", None),
            ("fd00::2/64", None),
        ]);
        complete_l3(&conf, &mut r).unwrap();
        let routes: Vec<String> = r
            .routes
            .iter()
            .map(|r| format!("{} via {}", r.dst, r.gw.unwrap()))
            .collect();
        assert_eq!(routes, ["0.0.0.0/0 via 10.1.0.1", "::/0 via fd00::1"]);
    }

    fn link(index: u32, master: Option<u32>, alias: Option<&str>) -> Link {
        Link {
            index,
            name: format!("l{index}"),
            master,
            alias: alias.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn shared_state_is_kept_while_another_attachment_of_the_suite_may_use_it() {
        let mine = node::owner_alias("n", "c1", "net1");
        let other = node::owner_alias("m", "c2", "net1");
        let (bridge, own) = (Some(1), Some(10));
        // Only this ADD's veth, the uplink and the VLAN gateway port (no owner alias).
        let alone = [
            link(1, None, None),
            link(10, Some(1), Some(&mine)),
            link(11, Some(1), None),
            link(12, Some(1), Some("uplink")),
        ];
        assert_eq!(others_attached(&alone, own, bridge), (false, false));
        // Another attachment on the bridge: both kept.
        let mut shared = alone.to_vec();
        shared.push(link(20, Some(1), Some(&other)));
        assert_eq!(others_attached(&shared, own, bridge), (true, true));
        // Another attachment on another bridge: the forwarding sysctls are kept.
        let mut elsewhere = alone.to_vec();
        elsewhere.push(link(30, Some(2), Some(&other)));
        assert_eq!(others_attached(&elsewhere, own, bridge), (false, true));
    }

    #[test]
    fn the_default_gateway_is_the_first_host_of_the_network() {
        assert_eq!(
            first_host("10.1.2.77/24".parse().unwrap()).to_string(),
            "10.1.2.1"
        );
        assert_eq!(
            first_host("fd00:1::99/64".parse().unwrap()).to_string(),
            "fd00:1::1"
        );
    }
}
