//! `dhcp`: the dhcp IPAM's CNI executable, and with `daemon` as first argument the daemon that
//! holds the node's leases (the reference's one-executable layout). Everything lives in the
//! `dhcp` crate.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("daemon") {
        if let Err(e) = dhcp::daemon::main(&args[1..]) {
            eprintln!("dhcp daemon: {e}");
            std::process::exit(1);
        }
        return;
    }
    cni::run(&dhcp::plugin::DhcpIpam)
}
