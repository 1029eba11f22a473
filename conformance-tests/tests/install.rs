//! The installer (deploy/install-cni.sh, what the DaemonSet and `make install` run) on a node's
//! CNI bin directory: an empty one gets every executable and the OVN names; one where
//! OVN-Kubernetes' own `ovn-k8s-cni-overlay` is installed keeps it, and the log says so.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use conformance_tests::plugin::workspace_root;
use conformance_tests::{ours, TempDir};

const EXECUTABLES: [&str; 5] = ["bridge", "static", "whereabouts", "dhcp", "ovn-overlay"];

/// A source directory as the image has it: our five executables.
fn source() -> TempDir {
    let src = TempDir::new("install-src");
    for f in EXECUTABLES {
        std::fs::copy(ours(f), src.join(f)).unwrap();
    }
    src
}

/// Runs the installer; its log (stdout).
fn install(src: &Path, dest: &Path) -> String {
    let script = workspace_root().join("deploy/install-cni.sh");
    let out = Command::new("sh")
        .arg(script)
        .arg(src)
        .arg(dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn link(p: &Path) -> Option<String> {
    std::fs::read_link(p).ok().map(|t| t.display().to_string())
}

/// What the executable at `p` answers to VERSION.
fn version(p: &Path) -> String {
    let out = Command::new(p)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_empty_bin_dir_gets_every_executable_and_the_ovn_names() {
    let (src, dest) = (source(), TempDir::new("install-dest"));
    let log = install(src.path(), dest.path());
    for f in EXECUTABLES {
        let installed = dest.join(f);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(src.join(f)).unwrap(),
            "{f}"
        );
        assert_eq!(
            std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
    for n in ["localnet", "ovn-k8s-cni-overlay"] {
        assert_eq!(link(&dest.join(n)).as_deref(), Some("ovn-overlay"), "{n}");
        assert!(log.contains(&format!(
            "installed {} -> ovn-overlay",
            dest.join(n).display()
        )));
        assert!(version(&dest.join(n)).contains("supportedVersions"));
    }
    // No temporary file is left; a second run (an upgrade) replaces what is ours.
    let names: Vec<String> = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    let again = install(src.path(), dest.path());
    assert!(
        again.contains("ovn-k8s-cni-overlay -> ovn-overlay"),
        "{again}"
    );
}

#[test]
fn a_foreign_ovn_k8s_cni_overlay_is_left_in_place_and_the_log_says_so() {
    let (src, dest) = (source(), TempDir::new("install-foreign"));
    // OVN-Kubernetes' shim, as its DaemonSet installs it.
    let shim = dest.join("ovn-k8s-cni-overlay");
    std::fs::write(&shim, "#!/bin/sh\necho ovn-kubernetes shim\n").unwrap();
    std::fs::set_permissions(&shim, PermissionsExt::from_mode(0o755)).unwrap();
    let log = install(src.path(), dest.path());
    assert_eq!(
        std::fs::read_to_string(&shim).unwrap(),
        "#!/bin/sh\necho ovn-kubernetes shim\n"
    );
    assert_eq!(link(&shim), None);
    assert!(
        log.contains(&format!("left {} in place", shim.display()))
            && log.contains("ovn-overlay or localnet"),
        "{log}"
    );
    // Ours are installed all the same.
    assert_eq!(link(&dest.join("localnet")).as_deref(), Some("ovn-overlay"));
    assert!(version(&dest.join("ovn-overlay")).contains("supportedVersions"));
    // An older install of ours by copy is ours: replaced by the link.
    let (src2, dest2) = (source(), TempDir::new("install-copy"));
    std::fs::copy(src2.join("ovn-overlay"), dest2.join("ovn-k8s-cni-overlay")).unwrap();
    std::fs::copy(src2.join("ovn-overlay"), dest2.join("ovn-overlay")).unwrap();
    install(src2.path(), dest2.path());
    assert_eq!(
        link(&dest2.join("ovn-k8s-cni-overlay")).as_deref(),
        Some("ovn-overlay")
    );
}

#[test]
fn the_daemonset_and_the_image_run_this_installer() {
    let root = workspace_root();
    let ds = std::fs::read_to_string(root.join("deploy/daemonset.yaml")).unwrap();
    assert!(ds.contains("/usr/lib/multihome/install-cni.sh /usr/lib/multihome /host/opt/cni/bin"));
    let image = std::fs::read_to_string(root.join("deploy/Containerfile")).unwrap();
    assert!(image.contains("deploy/install-cni.sh"));
    let make = std::fs::read_to_string(root.join("Makefile")).unwrap();
    assert!(make.contains("deploy/install-cni.sh"));
}
