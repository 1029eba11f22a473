//! Running one child process, optionally inside a network namespace, and
//! collecting what it did.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// How long a child may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished child process did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit status; `128 + signal` when killed by a signal.
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr, lossily decoded.
    pub stderr: String,
}

impl Outcome {
    /// True when the process exited with status 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// Stdout as (lossy) text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stdout parsed as JSON, or `None` when it is not JSON.
    pub fn try_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.stdout).ok()
    }

    /// Stdout parsed as JSON; panics, showing the whole outcome, if it is not.
    pub fn json(&self) -> Value {
        self.try_json()
            .unwrap_or_else(|| panic!("stdout is not JSON: {self}"))
    }

    /// The `code` of a CNI error object on stdout, if there is one.
    pub fn error_code(&self) -> Option<u64> {
        self.try_json()?.get("code")?.as_u64()
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}, stdout {:?}, stderr {:?}",
            self.code,
            self.stdout_text(),
            self.stderr
        )
    }
}

/// Makes `cmd` enter the network namespace at `netns` between fork and exec.
///
/// The namespace file is opened now; if `setns(2)` fails in the child the
/// spawn fails with that error, so the program never runs in the caller's
/// namespace.
pub fn enter_netns(cmd: &mut Command, netns: &Path) -> io::Result<()> {
    let fd = OwnedFd::from(File::open(netns)?);
    let hook = move || setns(&fd, CloneFlags::CLONE_NEWNET).map_err(io::Error::from);
    // SAFETY: the hook runs between fork and exec; it only calls setns(2),
    // which is async-signal-safe, and builds an io::Error from an errno
    // without allocating. The fd it uses is owned by the closure and
    // outlives every spawn of `cmd`.
    unsafe {
        cmd.pre_exec(hook);
    }
    Ok(())
}

/// Makes `cmd` run in a mount namespace of its own (nothing it mounts propagates back) in which
/// `source` is bound over `target`.
pub fn private_bind(cmd: &mut Command, source: &Path, target: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c =
        |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("a path without NUL");
    let (source, target, root) = (c(source), c(target), c(Path::new("/")));
    let hook = move || {
        // SAFETY: unshare(2) and mount(2) with NUL-terminated strings made before the fork;
        // both are plain system calls, safe between fork and exec.
        let ok = unsafe {
            nix::libc::unshare(nix::libc::CLONE_NEWNS) == 0
                && nix::libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    nix::libc::MS_REC | nix::libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && nix::libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    nix::libc::MS_BIND,
                    std::ptr::null(),
                ) == 0
        };
        if ok {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: see the hook: system calls only, on data owned by the closure.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Runs `cmd` with `stdin` (or an empty stdin), capturing stdout and stderr.
///
/// A child still running after `timeout` is killed and reported with its
/// signal status and a note appended to stderr. Errors only when the spawn
/// itself fails.
pub fn collect(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> io::Result<Outcome> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let writer = child
        .stdin
        .take()
        .map(|pipe| feed(pipe, stdin.unwrap_or_default()));
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let (status, timed_out) = wait_for(&mut child, timeout)?;
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let mut outcome = Outcome {
        code: exit_code(status),
        stdout: joined(stdout),
        stderr: String::from_utf8_lossy(&joined(stderr)).into_owned(),
    };
    if timed_out {
        outcome.stderr += &format!("\n[harness: killed after {timeout:?}]");
    }
    Ok(outcome)
}

/// Writes `data` to the child's stdin on a thread, then closes it.
fn feed(mut pipe: impl Write + Send + 'static, data: &[u8]) -> JoinHandle<()> {
    let data = data.to_vec();
    thread::spawn(move || {
        let _ = pipe.write_all(&data);
    })
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

fn joined(reader: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    reader.and_then(|r| r.join().ok()).unwrap_or_default()
}

/// Waits for `child` with a blocking wait (no polling, so whole-process timings are exact),
/// while a watchdog kills it once `timeout` has passed; returns its status and whether it had to
/// be killed.
fn wait_for(child: &mut Child, timeout: Duration) -> io::Result<(ExitStatus, bool)> {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || match finished.recv_timeout(timeout) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = kill(pid, Signal::SIGKILL);
            true
        }
        _ => false,
    });
    let status = child.wait();
    let _ = done.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    Ok((status?, timed_out))
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A long-running child whose stdout lines are collected as they come (a reader thread), for a
/// caller that waits for some of its output before it goes on: a `ping` through a migration, a
/// packet capture. Killed when dropped.
#[derive(Debug)]
pub struct Streaming {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Streaming {
    /// Spawns `cmd` with its stdout piped (stderr goes to the caller's, as a test's output).
    pub fn spawn(cmd: &mut Command) -> io::Result<Streaming> {
        use std::io::BufRead;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("a piped stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = thread::spawn(move || {
            for line in io::BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Ok(Streaming {
            child,
            lines,
            reader: Some(reader),
        })
    }

    /// How many lines so far satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().filter(|l| pred(l)).count()
    }

    /// Waits for the child to exit by itself; returns every line it wrote.
    pub fn wait(mut self) -> Vec<String> {
        let _ = self.child.wait();
        self.collected()
    }

    /// Ends the child (SIGTERM) and returns every line it wrote.
    pub fn stop(mut self) -> Vec<String> {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = kill(pid, Signal::SIGTERM);
        let _ = self.child.wait();
        self.collected()
    }

    fn collected(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
