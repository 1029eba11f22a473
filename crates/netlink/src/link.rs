//! Links: read them, create bridges, veth pairs and 802.1Q devices, change their attributes,
//! bridge port options and bridge VLANs, delete them.

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::link::{
    AfSpecBridge, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort, InfoData,
    InfoKind, InfoPortData, InfoPortKind, InfoVeth, InfoVlan, LinkAttribute, LinkExtentMask,
    LinkFlags, LinkInfo, LinkMessage, State,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::{Error, Mac, Netlink};

/// What the kernel reports about one link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`: "bridge", "veth", "vlan", ...; `None` for physical devices and loopback.
    pub kind: Option<String>,
    pub mac: Option<Mac>,
    pub mtu: u32,
    /// The bridge (or other controller) this link is a port of.
    pub master: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// `IFF_PROMISC` as requested by the administrator.
    pub promisc: bool,
    /// Operational state is UP (carrier and, for bridge ports, the port left "disabled").
    pub oper_up: bool,
    /// `IFLA_LINK`: for a veth, the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// `IFLA_LINK_NETNSID`: set when the peer lives in another namespace.
    pub peer_netnsid: Option<i32>,
    pub alias: Option<String>,
    /// Bridge port options, when this link is a bridge port.
    pub port: Option<BridgePort>,
    /// For bridges: `IFLA_BR_VLAN_FILTERING`, `None` when the kernel does not report it
    /// (built without bridge VLAN filtering).
    pub vlan_filtering: Option<bool>,
    /// For 802.1Q devices: the VLAN id.
    pub vlan_id: Option<u16>,
}

/// Options of a bridge port (`IFLA_INFO_SLAVE_DATA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgePort {
    pub hairpin: bool,
    pub isolated: bool,
    /// STP state: 0 disabled, 1 listening, 2 learning, 3 forwarding, 4 blocking.
    pub state: u8,
}

/// A veth pair to create from this socket's namespace: `name` stays here, `peer` is created
/// directly in `peer_ns` (no move afterwards, so no window where it sits in the wrong place).
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    pub name: &'a str,
    pub peer: &'a str,
    pub peer_ns_fd: std::os::fd::RawFd,
    pub mtu: Option<u32>,
    pub peer_mac: Option<Mac>,
}

/// Attribute changes for [`Netlink::set_link`]; `None` leaves an attribute alone.
#[derive(Debug, Clone, Default)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub promisc: Option<bool>,
    /// `Some(0)` removes the link from its bridge.
    pub master: Option<u32>,
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    pub alias: Option<String>,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: 0,
            master: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            promisc: msg.header.flags.contains(LinkFlags::Promisc),
            oper_up: false,
            peer_index: None,
            peer_netnsid: None,
            alias: None,
            port: None,
            vlan_filtering: None,
            vlan_id: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Address(a) => link.mac = Mac::from_bytes(a),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::Controller(m) if *m != 0 => link.master = Some(*m),
                LinkAttribute::OperState(s) => link.oper_up = *s == State::Up,
                LinkAttribute::Link(i) => link.peer_index = Some(*i),
                LinkAttribute::LinkNetNsId(id) => link.peer_netnsid = Some(*id),
                LinkAttribute::IfAlias(a) => link.alias = Some(a.clone()),
                LinkAttribute::LinkInfo(infos) => link.read_info(infos),
                _ => {}
            }
        }
        link
    }

    fn read_info(&mut self, infos: &[LinkInfo]) {
        for info in infos {
            match info {
                LinkInfo::Kind(k) => self.kind = Some(k.to_string()),
                LinkInfo::Data(InfoData::Bridge(opts)) => {
                    for o in opts {
                        if let InfoBridge::VlanFiltering(v) = o {
                            self.vlan_filtering = Some(*v);
                        }
                    }
                }
                LinkInfo::Data(InfoData::Vlan(opts)) => {
                    for o in opts {
                        if let InfoVlan::Id(id) = o {
                            self.vlan_id = Some(*id);
                        }
                    }
                }
                LinkInfo::PortData(InfoPortData::BridgePort(opts)) => {
                    let mut port = BridgePort::default();
                    for o in opts {
                        match o {
                            InfoBridgePort::HairpinMode(v) => port.hairpin = *v,
                            InfoBridgePort::Isolated(v) => port.isolated = *v,
                            InfoBridgePort::State(s) => port.state = u8::from(*s),
                            _ => {}
                        }
                    }
                    self.port = Some(port);
                }
                _ => {}
            }
        }
    }

    /// True for a bridge.
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }

    /// True for a veth.
    pub fn is_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth")
    }
}

fn links_of(msgs: Vec<RouteNetlinkMessage>) -> Vec<Link> {
    msgs.iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
            _ => None,
        })
        .collect()
}

fn with_info(mut msg: LinkMessage, kind: InfoKind, data: Option<InfoData>) -> LinkMessage {
    let mut info = vec![LinkInfo::Kind(kind)];
    info.extend(data.map(LinkInfo::Data));
    msg.attributes.push(LinkAttribute::LinkInfo(info));
    msg
}

impl Netlink {
    /// Every link of the namespace.
    pub fn links(&self) -> Result<Vec<Link>, Error> {
        let msgs = self.dump(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(links_of(msgs))
    }

    /// The link called `name`, `None` when there is none.
    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>, Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_one(&format!("look up link {name}"), msg)
    }

    /// The link with `index`, `None` when there is none.
    pub fn link_by_index(&self, index: u32) -> Result<Option<Link>, Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_one(&format!("look up link #{index}"), msg)
    }

    fn get_one(&self, op: &str, msg: LinkMessage) -> Result<Option<Link>, Error> {
        match self.request(op, RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(msgs) => Ok(links_of(msgs).into_iter().next()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge; `Ok(false)` when a link of that name already exists (whatever it is:
    /// the caller checks). With `vlan_filtering`, a kernel without bridge VLAN filtering refuses
    /// the whole creation, so nothing is left behind.
    pub fn add_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        vlan_filtering: bool,
    ) -> Result<bool, Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(m) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        let data = vlan_filtering.then(|| InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)]));
        let msg = with_info(msg, InfoKind::Bridge, data);
        let op = format!("create bridge {name}");
        match self.change(
            &op,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.is_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Switches VLAN filtering of an existing bridge on or off.
    pub fn set_vlan_filtering(&self, bridge: &Link, on: bool) -> Result<(), Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = bridge.index;
        let msg = with_info(
            msg,
            InfoKind::Bridge,
            Some(InfoData::Bridge(vec![InfoBridge::VlanFiltering(on)])),
        );
        let op = format!(
            "switch VLAN filtering of bridge {} {}",
            bridge.name,
            if on { "on" } else { "off" }
        );
        self.change(&op, RouteNetlinkMessage::NewLink(msg), 0)
    }

    /// Creates a veth pair (see [`VethSpec`]).
    pub fn add_veth(&self, spec: &VethSpec) -> Result<(), Error> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(spec.peer.to_string()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(spec.peer_ns_fd));
        if let Some(m) = spec.mtu {
            peer.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(mac) = spec.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(spec.name.to_string()));
        if let Some(m) = spec.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        let msg = with_info(
            msg,
            InfoKind::Veth,
            Some(InfoData::Veth(InfoVeth::Peer(peer))),
        );
        let op = format!("create veth pair {} / {}", spec.name, spec.peer);
        self.change(
            &op,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Applies `change` to the link `index` in one request.
    pub fn set_link(&self, index: u32, name: &str, change: &LinkChange) -> Result<(), Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if let Some(up) = change.up {
            msg.header.change_mask |= LinkFlags::Up;
            if up {
                msg.header.flags |= LinkFlags::Up;
            }
        }
        if let Some(p) = change.promisc {
            msg.header.change_mask |= LinkFlags::Promisc;
            if p {
                msg.header.flags |= LinkFlags::Promisc;
            }
        }
        if let Some(m) = change.master {
            msg.attributes.push(LinkAttribute::Controller(m));
        }
        if let Some(m) = change.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(mac) = change.mac {
            msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(a) = &change.alias {
            msg.attributes.push(LinkAttribute::IfAlias(a.clone()));
        }
        self.change(
            &format!("configure link {name}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Sets the bridge port options of `port` (it must already be a port of a bridge).
    pub fn set_bridge_port(&self, port: &Link, hairpin: bool, isolated: bool) -> Result<(), Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = port.index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::HairpinMode(hairpin),
                InfoBridgePort::Isolated(isolated),
            ])),
        ]));
        let op = format!(
            "set hairpin={hairpin} isolated={isolated} on bridge port {}",
            port.name
        );
        self.change(&op, RouteNetlinkMessage::NewLink(msg), 0)
    }

    /// Adds VLANs `first..=last` to a bridge port (`pvid` and `untagged` for an access port).
    pub fn bridge_vlan_add(
        &self,
        port: &Link,
        first: u16,
        last: u16,
        pvid: bool,
        untagged: bool,
    ) -> Result<(), Error> {
        let mut flags = BridgeVlanInfoFlags::empty();
        if pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        let msg = bridge_vlan_message(port.index, first, last, flags);
        let op = format!(
            "add VLAN {} to bridge port {}",
            vlan_span(first, last),
            port.name
        );
        self.change(&op, RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Removes VLANs `first..=last` from a bridge port.
    pub fn bridge_vlan_del(&self, port: &Link, first: u16, last: u16) -> Result<(), Error> {
        let msg = bridge_vlan_message(port.index, first, last, BridgeVlanInfoFlags::empty());
        let op = format!(
            "remove VLAN {} from bridge port {}",
            vlan_span(first, last),
            port.name
        );
        self.change(&op, RouteNetlinkMessage::DelLink(msg), 0)
    }

    /// The VLANs of a bridge port: (vid, pvid, untagged).
    pub fn bridge_vlans(&self, port: &Link) -> Result<Vec<(u16, bool, bool)>, Error> {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        let msgs = self.dump("list bridge VLANs", RouteNetlinkMessage::GetLink(msg))?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewLink(l) = m else {
                continue;
            };
            if l.header.index != port.index {
                continue;
            }
            for attr in &l.attributes {
                let LinkAttribute::AfSpecBridge(specs) = attr else {
                    continue;
                };
                for s in specs {
                    if let AfSpecBridge::VlanInfo(v) = s {
                        out.push((
                            v.vid,
                            v.flags.contains(BridgeVlanInfoFlags::Pvid),
                            v.flags.contains(BridgeVlanInfoFlags::Untagged),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Deletes the link `index`; `Ok(false)` when it was already gone.
    pub fn del_link(&self, index: u32, name: &str) -> Result<bool, Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.change(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn vlan_span(first: u16, last: u16) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

fn bridge_vlan_message(
    index: u32,
    first: u16,
    last: u16,
    flags: BridgeVlanInfoFlags,
) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Bridge;
    msg.header.index = index;
    let specs = if first == last {
        vec![AfSpecBridge::VlanInfo(BridgeVlanInfo { vid: first, flags })]
    } else {
        vec![
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                vid: first,
                flags: flags | BridgeVlanInfoFlags::RangeBegin,
            }),
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                vid: last,
                flags: flags | BridgeVlanInfoFlags::RangeEnd,
            }),
        ]
    };
    msg.attributes.push(LinkAttribute::AfSpecBridge(specs));
    msg
}

/// Why [`del_container_veth`] failed.
#[derive(Debug)]
pub enum ContainerLinkError {
    /// The path exists but is not a usable namespace.
    Netns(netns::Error),
    /// The kernel refused the lookup or the deletion.
    Kernel(Error),
}

/// DEL of a veth attachment's container end: deletes `ifname` in the namespace at `path` when
/// both still exist (its host peer goes with it). A namespace or interface already gone is
/// success (so is a path that is no namespace any more); an interface that is not a veth is left alone (it is not an attachment's).
pub fn del_container_veth(path: &std::path::Path, ifname: &str) -> Result<(), ContainerLinkError> {
    let ns = match netns::NetNs::open(path) {
        Ok(ns) => ns,
        // An ordinary file where the namespace was (a runtime restarted and left its mount
        // point behind) is a namespace that is gone, too.
        Err(netns::Error::NotFound { .. } | netns::Error::NotANamespace { .. }) => return Ok(()),
        Err(e) => return Err(ContainerLinkError::Netns(e)),
    };
    let nl = Netlink::connect_in(&ns).map_err(ContainerLinkError::Kernel)?;
    match nl
        .link_by_name(ifname)
        .map_err(ContainerLinkError::Kernel)?
    {
        Some(link) if link.is_veth() => nl
            .del_link(link.index, &link.name)
            .map(|_| ())
            .map_err(ContainerLinkError::Kernel),
        _ => Ok(()),
    }
}
