//! Kernel networking of one network namespace over rtnetlink: links, veth pairs, bridges and
//! their ports and VLANs, addresses, routes; plus the /proc/sys knobs that have no netlink
//! attribute (`sysctl`).
//!
//! A [`Netlink`] is a socket bound to the namespace it was opened in (sockets keep their
//! namespace), driven synchronously on a current-thread tokio runtime: a plugin opens one for
//! the node and one for the container and never has to switch namespaces for netlink work.
//!
//! This crate reports what the kernel says; it decides nothing. Callers own the plan, the order
//! of operations and the undo.

mod addr;
mod error;
mod link;
mod mac;
mod route;
pub mod sysctl;

use std::future::Future;

use futures::StreamExt;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use rtnetlink::packet_route::RouteNetlinkMessage;

pub use addr::Address;
pub use error::Error;
pub use link::{del_container_veth, BridgePort, ContainerLinkError, Link, LinkChange, VethSpec};
pub use mac::Mac;
pub use route::Route;

/// A route netlink socket in one network namespace.
#[derive(Debug)]
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn connect() -> Result<Netlink, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::io("create the netlink runtime", e))?;
        let (conn, handle, _) = {
            let _enter = rt.enter();
            rtnetlink::new_connection().map_err(|e| Error::io("open a netlink socket", e))?
        };
        rt.spawn(conn);
        Ok(Netlink { rt, handle })
    }

    /// Opens a socket in `ns`; the calling thread returns to its own namespace afterwards.
    pub fn connect_in(ns: &netns::NetNs) -> Result<Netlink, Error> {
        ns.run(Netlink::connect)
            .map_err(|e| Error::other("enter the network namespace", e.to_string()))?
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Sends one request and collects the messages of the answer; a netlink error becomes
    /// [`Error`] with its errno and `op` as the description of what was attempted.
    fn request(
        &self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Error> {
        let mut req = NetlinkMessage::from(message);
        req.header.flags = NLM_F_REQUEST | flags;
        let mut handle = self.handle.clone();
        self.block_on(async move {
            let mut answer = handle
                .request(req)
                .map_err(|e| Error::other(op, e.to_string()))?;
            let mut out = Vec::new();
            while let Some(msg) = answer.next().await {
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        if let Some(code) = e.code {
                            return Err(Error::errno(op, -code.get()));
                        }
                    }
                    _ => {}
                }
            }
            Ok(out)
        })
    }

    /// A request that changes something and expects only an acknowledgement.
    fn change(&self, op: &str, message: RouteNetlinkMessage, flags: u16) -> Result<(), Error> {
        self.request(op, message, flags | NLM_F_ACK).map(|_| ())
    }

    /// A dump request.
    fn dump(
        &self,
        op: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, Error> {
        self.request(op, message, NLM_F_DUMP)
    }
}
