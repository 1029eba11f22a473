use super::*;

fn tcp(host: &str, port: u16) -> Endpoint {
    Endpoint::Tcp {
        host: host.into(),
        port,
    }
}

fn what(s: &str) -> String {
    match parse(s) {
        Err(Error::Endpoint { what, .. }) => what,
        other => panic!("{s:?} parsed as {other:?}"),
    }
}

#[test]
fn parses_unix_tcp_and_bracketed_ipv6() {
    assert_eq!(
        parse("unix:/run/ovn/ovnnb_db.sock").unwrap(),
        Endpoint::Unix("/run/ovn/ovnnb_db.sock".into())
    );
    assert_eq!(parse("tcp:192.0.2.1:6641").unwrap(), tcp("192.0.2.1", 6641));
    assert_eq!(parse("tcp:[fd00::1]:6641").unwrap(), tcp("fd00::1", 6641));
    assert_eq!(parse("tcp:ovn-nb:6641").unwrap(), tcp("ovn-nb", 6641));
    assert_eq!(
        parse("ssl:192.0.2.1:6641").unwrap(),
        Endpoint::Ssl {
            host: "192.0.2.1".into(),
            port: 6641
        }
    );
}

#[test]
fn rejects_unusable_endpoints_with_the_reason() {
    assert!(what("pssl:192.0.2.1:6641").contains("unsupported scheme \"pssl\""));
    assert_eq!(what("ssl:192.0.2.1"), "no :PORT");
    assert_eq!(what("/run/nb.sock"), "no scheme");
    assert_eq!(what("unix:"), "empty socket path");
    assert_eq!(what("tcp:192.0.2.1"), "no :PORT");
    assert!(what("tcp:192.0.2.1:66410").contains("port"));
    assert!(what("tcp:192.0.2.1:0").contains("port"));
    assert!(what("tcp:fd00::1:6641").contains("brackets"));
    assert!(what("tcp:[fd00::1:6641").contains("unterminated"));
    assert!(what("tcp:[fd00::1]6641").contains("no :PORT"));
    assert_eq!(what("tcp::6641"), "empty host");
}

#[test]
fn splits_a_list_and_fails_it_whole_on_one_bad_entry() {
    let list = parse_list(" unix:/a , tcp:127.0.0.1:1,").unwrap();
    assert_eq!(
        list,
        vec![
            ("unix:/a".to_string(), Endpoint::Unix("/a".into())),
            ("tcp:127.0.0.1:1".to_string(), tcp("127.0.0.1", 1)),
        ]
    );
    assert!(matches!(
        parse_list("unix:/a,pssl:127.0.0.1:1"),
        Err(Error::Endpoint { endpoint, .. }) if endpoint == "pssl:127.0.0.1:1"
    ));
    assert!(matches!(parse_list(" , "), Err(Error::Endpoint { .. })));
}
