use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use gobwire::{StreamDecoder, StreamEncoder};

use crate::rpc::*;

// Bytes Debian's reference plugin (1.1.1) sent and its daemon answered, captured on the socket.
const REF_REQUEST: &[u8] = include_bytes!("fixtures/allocate.request");
const REF_ALLOCATE_REPLY: &[u8] = include_bytes!("fixtures/allocate.reply");
const REF_RELEASE_REPLY: &[u8] = include_bytes!("fixtures/release.reply");

fn after_head(b: &[u8]) -> (&str, &[u8]) {
    let i = b.windows(2).position(|w| w == b"\n\n").unwrap();
    (std::str::from_utf8(&b[..i]).unwrap(), &b[i + 2..])
}

#[test]
fn the_reference_clients_call_decodes_and_ours_is_byte_identical() {
    let (head, body) = after_head(REF_REQUEST);
    assert_eq!(head, format!("CONNECT {RPC_PATH} HTTP/1.0"));
    let mut d = StreamDecoder::new(body);
    let req: Request = d.decode().unwrap().unwrap();
    let args: CmdArgs = d.decode().unwrap().unwrap();
    assert_eq!(req.service_method, "DHCP.Allocate");
    assert_eq!(args.container_id, "ctr1");
    assert_eq!(args.netns, "/var/run/netns/gcap-ctr");
    assert_eq!(args.if_name, "c0");
    assert!(String::from_utf8_lossy(&args.stdin_data).contains("\"type\":\"dhcp\""));
    let mut ours = Vec::new();
    {
        let mut e = StreamEncoder::new(&mut ours);
        e.encode(&req).unwrap();
        e.encode(&args).unwrap();
    }
    assert_eq!(ours, body);
}

#[test]
fn the_reference_daemons_replies_decode_to_the_result_it_printed() {
    let (head, body) = after_head(REF_ALLOCATE_REPLY);
    assert_eq!(head, CONNECTED);
    let mut d = StreamDecoder::new(body);
    let resp: Response = d.decode().unwrap().unwrap();
    assert_eq!(
        (resp.service_method.as_str(), resp.error.as_str()),
        ("DHCP.Allocate", "")
    );
    let r = d
        .decode::<GoResult>()
        .unwrap()
        .unwrap()
        .to_result()
        .unwrap();
    assert_eq!(r.ips[0].address.to_string(), "192.0.2.50/24");
    assert_eq!(
        r.ips[0].gateway,
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
    );
    assert_eq!(r.routes.len(), 1);
    assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
    assert_eq!(
        r.routes[0].gw,
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
    );
    assert!(r.dns.is_empty());
    let (_, body) = after_head(REF_RELEASE_REPLY);
    let mut d = StreamDecoder::new(body);
    let resp: Response = d.decode().unwrap().unwrap();
    assert_eq!(resp.service_method, "DHCP.Release");
    assert_eq!(d.decode::<Empty>().unwrap(), Some(Empty {}));
}

#[test]
fn a_result_with_dns_priority_and_scope_survives_the_go_form() {
    let mut r = cni::result::CniResult::default();
    r.ips.push(cni::result::IpConfig {
        interface: None,
        address: "192.0.2.7/25".parse().unwrap(),
        gateway: Some("192.0.2.1".parse().unwrap()),
    });
    let mut link = cni::result::Route::new("203.0.113.0/24".parse().unwrap(), None);
    link.scope = Some(253);
    link.priority = Some(50);
    r.routes.push(link);
    r.dns.nameservers = vec!["192.0.2.53".into()];
    r.dns.domain = Some("corp.example".into());
    r.dns.search = vec!["corp.example".into()];
    let mut bytes = Vec::new();
    StreamEncoder::new(&mut bytes)
        .encode(&GoResult::from_result(&r))
        .unwrap();
    let back: GoResult = StreamDecoder::new(&bytes[..]).decode().unwrap().unwrap();
    assert_eq!(back.to_result().unwrap(), r);
    // Go's 16-byte form of an IPv4 address and mask reads the same
    let go16 = GoIpConfig {
        interface: None,
        address: GoIpNet {
            ip: [&[0u8; 10][..], &[0xff, 0xff, 192, 0, 2, 7]].concat(),
            mask: [&[0xffu8; 12][..], &[255, 255, 255, 128]].concat(),
        },
        gateway: Vec::new(),
    };
    let res = GoResult {
        ips: vec![go16],
        ..GoResult::default()
    };
    assert_eq!(
        res.to_result().unwrap().ips[0].address.to_string(),
        "192.0.2.7/25"
    );
}

#[test]
fn call_and_serve_speak_to_each_other_and_say_who_failed() {
    let dir = std::env::temp_dir().join(format!("mh-rpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("dhcp.sock");
    let _ = std::fs::remove_file(&sock);
    let l = UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..3 {
            let (s, _) = l.accept().unwrap();
            serve(&s, Duration::from_secs(5), |method, args| match method {
                "DHCP.Allocate" if args.if_name == "net1" => {
                    let mut r = cni::result::CniResult::default();
                    r.ips.push(cni::result::IpConfig {
                        interface: None,
                        address: "192.0.2.9/24".parse().unwrap(),
                        gateway: None,
                    });
                    Ok(Reply::Result(GoResult::from_result(&r)))
                }
                "DHCP.Release" => Ok(Reply::Empty),
                m => Err(format!("rpc: can't find method {m}")),
            })
            .unwrap();
        }
    });
    let args = CmdArgs {
        container_id: "c".into(),
        netns: "/proc/self/ns/net".into(),
        if_name: "net1".into(),
        ..CmdArgs::default()
    };
    let t = Duration::from_secs(5);
    let r: GoResult = call(&sock, "DHCP.Allocate", &args, t).unwrap();
    assert_eq!(
        r.to_result().unwrap().ips[0].address.to_string(),
        "192.0.2.9/24"
    );
    let _: Empty = call(&sock, "DHCP.Release", &args, t).unwrap();
    match call::<Empty>(&sock, "DHCP.Check", &args, t) {
        Err(CallError::Remote(e)) => assert_eq!(e, "rpc: can't find method DHCP.Check"),
        other => panic!("{other:?}"),
    }
    server.join().unwrap();
    std::fs::remove_file(&sock).unwrap();
    match call::<Empty>(&sock, "DHCP.Release", &args, t) {
        Err(CallError::NoDaemon(_)) => {}
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
