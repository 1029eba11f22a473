//! `static` IPAM: fixed addresses from the configuration, CNI_ARGS, `args.cni.ips` or
//! `runtimeConfig.ips`. Everything lives in `ipam::fixed`.

fn main() {
    cni::run(&ipam::fixed::StaticIpam)
}
