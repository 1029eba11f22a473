//! `bridge`. Everything lives in the `bridge` crate.

fn main() {
    cni::run(&bridge::Bridge)
}
