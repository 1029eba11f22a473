use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;

/// A fresh directory under /tmp (root's, 0700), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("mh-nodefs-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
        Scratch(p)
    }
    fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

use std::os::unix::fs::DirBuilderExt;

const NOBODY: u32 = 65534;

fn refused(r: Result<impl std::fmt::Debug, FileError>) -> String {
    match r {
        Err(FileError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn running_as_root() -> bool {
    euid() == 0
}

#[test]
fn a_link_planted_by_another_user_on_the_way_is_refused_and_roots_link_is_followed() {
    if !running_as_root() {
        panic!("nodefs tests need root (they chown to nobody): run them as make test does");
    }
    let s = Scratch::new("links");
    std::fs::create_dir(s.join("real")).unwrap();
    std::fs::write(s.join("real/settings.json"), "{}").unwrap();
    symlink(s.join("real"), s.join("roots-link")).unwrap();
    assert_eq!(
        read(&s.join("roots-link/settings.json"), false).unwrap(),
        b"{}"
    );
    symlink(s.join("real"), s.join("planted")).unwrap();
    std::os::unix::fs::lchown(s.join("planted"), Some(NOBODY), None).unwrap();
    let why = refused(read(&s.join("planted/settings.json"), false));
    assert!(why.contains("planted") && why.contains("not root"), "{why}");
}

#[test]
fn a_directory_others_can_write_is_refused_unless_sticky() {
    let s = Scratch::new("modes");
    std::fs::create_dir(s.join("open")).unwrap();
    std::fs::set_permissions(s.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(s.join("open/f"), "x").unwrap();
    let why = refused(read(&s.join("open/f"), false));
    assert!(why.contains("can be written by others"), "{why}");
    std::fs::set_permissions(s.join("open"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert_eq!(read(&s.join("open/f"), false).unwrap(), b"x");
    // ... but a file another user put in a sticky directory is not root's.
    std::os::unix::fs::lchown(s.join("open/f"), Some(NOBODY), None).unwrap();
    assert!(refused(read(&s.join("open/f"), true)).contains("not root"));
}

#[test]
fn only_a_bounded_regular_file_is_read_and_a_link_in_last_place_is_not_followed() {
    let s = Scratch::new("kinds");
    let fifo = s.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    assert!(refused(read(&fifo, false)).contains("not a regular file"));
    assert!(refused(read(Path::new("/dev/zero"), false)).contains("not a regular file"));
    std::fs::write(s.join("big"), vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
    assert!(refused(read(&s.join("big"), false)).contains("larger than"));
    std::fs::write(s.join("target"), "secret").unwrap();
    symlink(s.join("target"), s.join("last")).unwrap();
    assert!(refused(read(&s.join("last"), false)).contains("symbolic link"));
    assert_eq!(read(&s.join("absent"), false), Err(FileError::NotFound));
}

#[test]
fn strict_settings_must_not_be_writable_by_others() {
    let s = Scratch::new("strict");
    std::fs::write(s.join("node.json"), "{}").unwrap();
    std::fs::set_permissions(s.join("node.json"), std::fs::Permissions::from_mode(0o664)).unwrap();
    assert!(refused(read(&s.join("node.json"), true)).contains("mode 0664"));
    assert!(read(&s.join("node.json"), false).is_ok());
    std::fs::set_permissions(s.join("node.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(read(&s.join("node.json"), true).is_ok());
}

#[test]
fn a_log_file_is_made_private_and_a_hard_link_or_a_fifo_is_not_appended_to() {
    let s = Scratch::new("append");
    let roots = [s.0.clone()];
    let log = s.join("logs/cni.log");
    let mut f = append(&log, &roots).unwrap();
    std::io::Write::write_all(&mut f, b"line\n").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(s.join("logs")).unwrap().mode() & 0o777,
        0o700
    );
    std::fs::write(s.join("victim"), "keep").unwrap();
    std::fs::hard_link(s.join("victim"), s.join("logs/linked.log")).unwrap();
    assert!(refused(append(&s.join("logs/linked.log"), &roots)).contains("2 links"));
    let fifo = s.join("logs/fifo.log");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    assert!(refused(append(&fifo, &roots)).contains("not a regular file"));
    assert_eq!(std::fs::read(s.join("victim")).unwrap(), b"keep");
    let outside = refused(append(Path::new("/root/.ssh/authorized_keys"), &roots));
    assert!(outside.contains("is not below"), "{outside}");
}

#[test]
fn a_private_dir_is_made_0700_and_one_others_can_write_is_refused() {
    let s = Scratch::new("private");
    let roots = [s.0.clone()];
    let dir = private_dir(&s.join("a/b"), &roots).unwrap();
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    std::fs::create_dir(s.join("shared")).unwrap();
    std::fs::set_permissions(s.join("shared"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert!(refused(private_dir(&s.join("shared"), &roots)).contains("root's alone"));
    // A root-owned link below the roots that leads out of them is refused too.
    symlink("/etc", s.join("out")).unwrap();
    assert!(refused(private_dir(&s.join("out/x"), &roots)).contains("leads to /etc/x"));
}

#[test]
fn below_is_component_wise_and_refuses_dot_dot() {
    let roots = [PathBuf::from("/tmp")];
    assert!(below(Path::new("/tmp/a/b"), &roots));
    assert!(below(Path::new("/tmp"), &roots));
    assert!(!below(Path::new("/tmpx/a"), &roots));
    assert!(!below(Path::new("/tmp/../etc/shadow"), &roots));
    assert!(!below(Path::new("tmp/a"), &roots));
}
