//! The CNI side of the dhcp IPAM: each verb is one call to the daemon over the reference's
//! protocol, so this executable works with our daemon and with the reference's.
//!
//! - ADD: `DHCP.Allocate`, bounded by [`ADD_DEADLINE`] (the daemon's own `-timeout` is 10 s).
//! - DEL: `DHCP.Release`; when no daemon answers, the lease is released from its file in the
//!   node's `dhcp_state_dir`, from the leased address, and DEL succeeds (the reference fails,
//!   containernetworking/plugins #78, stranding the pod).
//! - CHECK: `DHCP.Check` (the reference's CHECK calls Allocate and takes a new lease); a
//!   reference daemon has no such method, and CHECK then asks nothing of it.
//! - STATUS: the daemon answers. GC: `DHCP.GC` with the valid attachments.
//!
//! `daemonSocketPath` is a path a NAD author names for a root process to connect to: it must
//! lie below the node's `dhcp_socket_dirs` (default /run/cni), as [`cni::nodefs`] rules.

use std::path::PathBuf;
use std::time::Duration;

use cni::node::NodePaths;
use cni::{Call, CniResult, Error, Plugin};

use crate::conf::{Settings, DEFAULT_SOCKET};
use crate::rpc::{self, CallError, CmdArgs, Empty, GoResult};
use crate::store::Store;

/// The longest an ADD waits for the daemon.
pub const ADD_DEADLINE: Duration = Duration::from_secs(30);
/// The longest the other verbs wait.
pub const OTHER_DEADLINE: Duration = Duration::from_secs(10);

/// The plugin.
#[derive(Debug, Default)]
pub struct DhcpIpam;

fn cmd_args(call: &Call) -> CmdArgs {
    CmdArgs {
        container_id: call.env.container_id.clone(),
        netns: call
            .env
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        if_name: call.env.ifname.clone(),
        args: call
            .env
            .args
            .pairs()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";"),
        path: call
            .env
            .path
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
        stdin_data: call.conf.bytes.clone(),
    }
}

fn settings(call: &Call) -> Result<Settings, Error> {
    let args = cmd_args(call);
    Settings::parse(
        &args.stdin_data,
        &args.args,
        &args.container_id,
        &args.if_name,
    )
}

/// The daemon's socket: the configuration's, if the node allows it, else the default.
fn socket(s: &Settings) -> Result<PathBuf, Error> {
    let Some(named) = &s.socket else {
        return Ok(PathBuf::from(DEFAULT_SOCKET));
    };
    let paths = NodePaths::load()?;
    let key = "ipam.daemonSocketPath";
    let p = cni::node::named_path(
        key,
        named,
        &paths.dhcp_socket_dirs,
        "dhcp_socket_dirs",
        &paths,
    )?;
    cni::nodefs::allowed(&p, &paths.dhcp_socket_dirs).map_err(|e| {
        Error::invalid_config(format!(
            "{key} {}: {e}",
            cni::error::quote_value(&serde_json::Value::String(named.clone()))
        ))
    })?;
    Ok(p)
}

fn call_error(e: CallError, socket: &std::path::Path) -> Error {
    match e {
        CallError::NoDaemon(io) => Error::try_again_later(format!(
            "no dhcp daemon listens on {} ({io}): start `dhcp daemon`",
            socket.display()
        )),
        CallError::Transport(_) => Error::try_again_later(e.to_string()),
        CallError::Remote(ref m) if m.contains("no DHCP server answered") => {
            Error::try_again_later(e.to_string())
        }
        e => Error::internal(e.to_string()),
    }
}

fn unknown_method(e: &CallError) -> bool {
    matches!(e, CallError::Remote(m) if m.starts_with("rpc: can't find method"))
}

/// Releases the attachment's lease from its file, without a daemon: RELEASE from the leased
/// address, then the file is removed. Nothing to release is fine.
fn release_locally(call: &Call, s: &Settings) {
    let Ok(paths) = NodePaths::load() else {
        return;
    };
    let store = Store::new(&paths.dhcp_state_dir);
    let key = &s.identity.client_id;
    if !store.holds(key) {
        return;
    }
    let r = store.locked(|| {
        let Some(record) = store.load(key) else {
            return;
        };
        if let Some(ack) = record.ack() {
            let netns = PathBuf::from(&record.netns);
            let uplink = record.uplink.as_deref();
            if let Err(e) = crate::client::release_anywhere(
                &netns,
                &record.ifname,
                uplink,
                &record.identity,
                &ack,
            ) {
                cni::log_warn!("no RELEASE of {}: {e}", ack.message.yiaddr);
            }
        }
        if let Err(e) = store.remove(key) {
            cni::log_warn!("removing the lease file: {e}");
        }
        let _ = call;
    });
    if let Err(e) = r {
        cni::log_warn!("the lease store {}: {e}", store.dir().display());
    }
}

impl Plugin for DhcpIpam {
    fn about(&self) -> &str {
        "multihome dhcp IPAM: addresses from a DHCP server, held by `dhcp daemon`"
    }

    fn known_args(&self) -> &[&str] {
        &[
            "K8S_POD_NAME",
            "K8S_POD_NAMESPACE",
            "K8S_POD_INFRA_CONTAINER_ID",
            "K8S_POD_UID",
        ]
    }

    fn is_ipam(&self) -> bool {
        true
    }

    fn add(&self, call: &Call) -> Result<CniResult, Error> {
        let s = settings(call)?;
        let sock = socket(&s)?;
        if call.env.netns.is_none() {
            return Err(Error::invalid_env("CNI_NETNS is required for ADD"));
        }
        let r: GoResult = rpc::call(&sock, "DHCP.Allocate", &cmd_args(call), ADD_DEADLINE)
            .map_err(|e| call_error(e, &sock))?;
        r.to_result()
            .map_err(|e| Error::internal(format!("the dhcp daemon's result: {e}")))
    }

    fn del(&self, call: &Call) -> Result<(), Error> {
        let s = match settings(call) {
            Ok(s) => s,
            Err(e) => {
                cni::log_warn!("{} (nothing released)", e.msg);
                return Ok(());
            }
        };
        let answered = match socket(&s) {
            Ok(sock) => {
                match rpc::call::<Empty>(&sock, "DHCP.Release", &cmd_args(call), OTHER_DEADLINE) {
                    Ok(_) => true,
                    Err(e) => {
                        cni::log_warn!("DHCP.Release: {e}; releasing from the lease file");
                        false
                    }
                }
            }
            Err(e) => {
                cni::log_warn!("{}", e.msg);
                false
            }
        };
        if !answered {
            release_locally(call, &s);
        }
        Ok(())
    }

    fn check(&self, call: &Call) -> Result<(), Error> {
        let s = settings(call)?;
        let sock = socket(&s)?;
        match rpc::call::<Empty>(&sock, "DHCP.Check", &cmd_args(call), OTHER_DEADLINE) {
            Ok(_) => Ok(()),
            // The reference daemon: it can only take a new lease, which CHECK must not do.
            Err(e) if unknown_method(&e) => Ok(()),
            Err(CallError::Remote(m)) => Err(Error::internal(m)),
            Err(e) => Err(call_error(e, &sock)),
        }
    }

    fn status(&self, call: &Call) -> Result<(), Error> {
        let s = settings(call)?;
        let sock = socket(&s)?;
        match rpc::call::<Empty>(&sock, "DHCP.Status", &cmd_args(call), OTHER_DEADLINE) {
            Ok(_) => Ok(()),
            Err(e) if unknown_method(&e) => Ok(()),
            Err(e) => Err(Error::not_available(format!(
                "{e} ({}): ADD cannot get leases",
                sock.display()
            ))),
        }
    }

    fn gc(&self, call: &Call) -> Result<(), Error> {
        let Ok(s) = settings(call) else {
            return Ok(());
        };
        let Ok(sock) = socket(&s) else {
            return Ok(());
        };
        match rpc::call::<Empty>(&sock, "DHCP.GC", &cmd_args(call), OTHER_DEADLINE) {
            Err(e) if !unknown_method(&e) => cni::log_warn!("DHCP.GC: {e}"),
            _ => {}
        }
        Ok(())
    }
}
