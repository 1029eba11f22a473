//! What a network configuration asks of the dhcp IPAM: the reference's keys (`daemonSocketPath`,
//! `request`, `provide`, `priority`), their option names, and ours (`broadcast`), turned into
//! the [`Identity`] a lease is requested with. Pure: the same bytes give the same answer.

use serde::Deserialize;
use serde_json::Value;

use crate::client::Identity;
use crate::message::{code, reference_client_id};

/// The daemon's socket when the configuration names none (the reference's).
pub const DEFAULT_SOCKET: &str = "/run/cni/dhcp.sock";

/// The options asked for when the configuration does not say `skipDefault`: the reference's
/// (subnet mask, routers), and what the result is made of besides (DNS servers, domain name,
/// search list, MTU, static and classless routes).
pub const DEFAULT_REQUEST: [u8; 8] = [
    code::SUBNET_MASK,
    code::ROUTER,
    code::DNS_SERVERS,
    code::DOMAIN_NAME,
    code::INTERFACE_MTU,
    code::STATIC_ROUTES,
    code::DOMAIN_SEARCH,
    code::CLASSLESS_ROUTES,
];

/// The reference's option names (plugins/ipam/dhcp/options.go); anything else is a decimal code.
pub const OPTION_NAMES: [(&str, u8); 6] = [
    ("dhcp-client-identifier", code::CLIENT_ID),
    ("subnet-mask", code::SUBNET_MASK),
    ("routers", code::ROUTER),
    ("host-name", code::HOST_NAME),
    ("user-class", code::USER_CLASS),
    ("vendor-class-identifier", code::VENDOR_CLASS),
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(default)]
    daemon_socket_path: Option<String>,
    #[serde(default)]
    request: Vec<RawRequest>,
    #[serde(default)]
    provide: Vec<RawProvide>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    broadcast: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest {
    option: Value,
    #[serde(default)]
    skip_default: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProvide {
    option: Value,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    from_arg: Option<String>,
}

/// One attachment's settings, from its configuration and CNI_ARGS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The network's `name`.
    pub network: String,
    /// `ipam.daemonSocketPath`, as written.
    pub socket: Option<String>,
    /// `ipam.priority`: the metric of the routes in the result.
    pub priority: Option<u32>,
    /// `ipam.broadcast`, when the configuration says.
    pub broadcast: Option<bool>,
    /// What the lease is requested with (broadcast from the configuration, else false).
    pub identity: Identity,
    /// The node's bridge the sandbox is plugged into: `bridge` of a bridge network.
    pub uplink: Option<String>,
}

/// Parses an option as the reference does: one of [`OPTION_NAMES`], or its decimal code.
pub fn option_code(key: &str, v: &Value) -> Result<u8, String> {
    let bad = || {
        format!(
            "{key} {}: not a DHCP option (a code 1-254 or one of {})",
            cni::error::quote_value(v),
            OPTION_NAMES.map(|(n, _)| n).join(", ")
        )
    };
    let n = match v {
        Value::String(s) => match OPTION_NAMES.iter().find(|(n, _)| n == s) {
            Some((_, c)) => return Ok(*c),
            None => s.trim().parse::<u64>().map_err(|_| bad())?,
        },
        Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    match n {
        1..=254 => Ok(n as u8),
        _ => Err(bad()),
    }
}

impl Settings {
    /// The settings of one call: `stdin` is the network configuration, `args` CNI_ARGS.
    pub fn parse(
        stdin: &[u8],
        args: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Settings, cni::Error> {
        let conf: Value = cni::config::parse_json(stdin)?;
        let network = conf
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let uplink = match conf.get("type").and_then(Value::as_str) {
            Some("bridge") => conf
                .get("bridge")
                .and_then(Value::as_str)
                .filter(|b| !b.is_empty())
                .map(str::to_string)
                .or_else(|| Some("cni0".to_string())),
            _ => None,
        };
        let ipam = conf
            .get("ipam")
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let raw: RawIpam = cni::config::typed(&ipam, "ipam")?;
        let cni_args = cni::CniArgs::parse(args).unwrap_or_default();
        let mut request = Vec::new();
        let skip_default = raw.request.iter().any(|r| r.skip_default);
        if !skip_default {
            request.extend(DEFAULT_REQUEST);
        }
        for (i, r) in raw.request.iter().enumerate() {
            let c = option_code(&format!("ipam.request[{i}].option"), &r.option)
                .map_err(cni::Error::invalid_config)?;
            if !request.contains(&c) {
                request.push(c);
            }
        }
        let mut client_id = None;
        let mut provide = Vec::new();
        for (i, p) in raw.provide.iter().enumerate() {
            let key = format!("ipam.provide[{i}]");
            let c = option_code(&format!("{key}.option"), &p.option)
                .map_err(cni::Error::invalid_config)?;
            let value = match (&p.value, &p.from_arg) {
                (Some(v), _) if !v.is_empty() => v.clone(),
                (_, Some(arg)) if !arg.is_empty() => match cni_args.get(arg) {
                    Some(v) => v.to_string(),
                    // The reference sends nothing for an argument the runtime did not pass.
                    None => continue,
                },
                _ => {
                    return Err(cni::Error::invalid_config(format!(
                        "{key}: neither value nor fromArg is set"
                    )))
                }
            };
            if value.len() > 255 {
                return Err(cni::Error::invalid_config(format!(
                    "{key}: the value is {} bytes, an option holds at most 255",
                    value.len()
                )));
            }
            if c == code::CLIENT_ID {
                client_id = Some(value.into_bytes());
            } else {
                provide.push((c, value.into_bytes()));
            }
        }
        let client_id =
            client_id.unwrap_or_else(|| reference_client_id(container_id, &network, ifname));
        Ok(Settings {
            network,
            socket: raw.daemon_socket_path.filter(|s| !s.is_empty()),
            priority: raw.priority,
            broadcast: raw.broadcast,
            identity: Identity {
                client_id,
                broadcast: raw.broadcast.unwrap_or(false),
                request,
                provide,
            },
            uplink,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(ipam: Value, args: &str) -> Result<Settings, cni::Error> {
        let conf = json!({"cniVersion": "1.0.0", "name": "corp", "type": "bridge", "ipam": ipam});
        Settings::parse(conf.to_string().as_bytes(), args, "c1", "net1")
    }

    #[test]
    fn defaults_are_the_reference_client_id_and_the_options_the_result_needs() {
        let s = parse(json!({"type": "dhcp"}), "").unwrap();
        assert_eq!(s.network, "corp");
        assert_eq!(
            s.identity.client_id,
            reference_client_id("c1", "corp", "net1")
        );
        assert_eq!(s.identity.request, DEFAULT_REQUEST);
        assert!(!s.identity.broadcast);
        assert_eq!(s.socket, None);
    }

    #[test]
    fn request_and_provide_take_the_reference_names_codes_and_args() {
        let s = parse(
            json!({"type": "dhcp", "priority": 50, "broadcast": true,
                "daemonSocketPath": "/run/cni/other.sock",
                "request": [{"option": "121", "skipDefault": true}, {"option": "routers"}],
                "provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"},
                    {"option": "dhcp-client-identifier", "value": "vm-7"},
                    {"option": 77, "fromArg": "ABSENT"}]}),
            "IgnoreUnknown=1;K8S_POD_NAME=web-0",
        )
        .unwrap();
        assert_eq!(s.identity.request, [121, 3]);
        assert_eq!(s.identity.provide, [(12, b"web-0".to_vec())]);
        assert_eq!(s.identity.client_id, b"vm-7");
        assert!(s.identity.broadcast);
        assert_eq!(s.priority, Some(50));
        assert_eq!(s.socket.as_deref(), Some("/run/cni/other.sock"));
    }

    #[test]
    fn a_bad_option_is_refused_naming_the_key_and_value() {
        for (ipam, key) in [
            (
                json!({"request": [{"option": "colour"}]}),
                "ipam.request[0].option",
            ),
            (
                json!({"provide": [{"option": 300, "value": "x"}]}),
                "ipam.provide[0].option",
            ),
            (
                json!({"provide": [{"option": "host-name"}]}),
                "ipam.provide[0]",
            ),
        ] {
            let e = parse(ipam, "").unwrap_err();
            assert_eq!(e.code, 7);
            assert!(e.msg.contains(key), "{}", e.msg);
        }
        let e = parse(json!({"priority": "high"}), "").unwrap_err();
        assert!(e.msg.contains("priority"), "{}", e.msg);
    }
}
