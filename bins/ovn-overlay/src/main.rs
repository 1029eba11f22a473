//! `ovn-overlay`; installed also as `localnet` and `ovn-k8s-cni-overlay` (the name selects the
//! default topology). Everything lives in the `ovn` crate.

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    cni::run(&ovn::for_executable(&argv0))
}
