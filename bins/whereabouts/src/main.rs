//! `whereabouts` IPAM. Everything lives in `ipam::whereabouts`.

fn main() {
    cni::run(&ipam::whereabouts::Whereabouts)
}
