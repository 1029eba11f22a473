//! `whereabouts` IPAM. Everything lives in the `whereabouts` crate.

fn main() {
    cni::run(&whereabouts::Whereabouts)
}
