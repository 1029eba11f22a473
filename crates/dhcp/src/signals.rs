//! SIGTERM and SIGINT for the daemon: blocked in every thread (the mask is inherited, so it is
//! set before the first thread starts) and taken synchronously by the main thread, which then
//! removes the socket and pidfile as the reference does.

use nix::libc;

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for the calls below.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    set
}

/// Blocks SIGTERM and SIGINT in the calling thread and the threads it starts afterwards.
pub fn block_termination() {
    let set = termination_set();
    // SAFETY: a valid set; the old mask is not asked for.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for SIGTERM or SIGINT (blocked by [`block_termination`]) and returns its number.
pub fn wait_termination() -> i32 {
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: a valid set and a valid place for the signal number.
    while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
    sig
}
