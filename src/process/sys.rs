//! The system calls of child processes that std does not wrap: pidfds, a wait that
//! leaves the zombie in place, and a pipe write that cannot raise SIGPIPE.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Whether children are watched through pidfds (Linux 5.3+). `EVLOOP_NO_PIDFD=1` in
/// the environment forces the thread fallback (for testing it on new kernels).
pub(super) fn pidfd_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        if std::env::var_os("EVLOOP_NO_PIDFD").is_some_and(|v| v != "0") {
            return false;
        }
        // SAFETY: getpid cannot fail.
        let me = unsafe { libc::getpid() } as u32;
        // ENOSYS (an old kernel) or EPERM (a seccomp filter) means no pidfds here.
        pidfd_open(me).is_ok()
    })
}

/// A pidfd for child `pid` (close-on-exec, as pidfd_open always makes it).
pub(super) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative result is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signum` to the process `pidfd` names: never to a recycled pid.
pub(super) fn pidfd_send_signal(pidfd: RawFd, signum: i32) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed (the kernel fills one in as kill(2) would).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            signum,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// kill(2). The caller guarantees `pid` is an unreaped child (a zombie at worst), so
/// that the number cannot have been recycled.
pub(super) fn kill(pid: u32, signum: i32) -> io::Result<()> {
    // SAFETY: kill takes no pointers.
    if unsafe { libc::kill(pid as libc::pid_t, signum) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks until child `pid` has exited, *without* reaping it (`WNOWAIT`): the zombie
/// keeps the pid reserved until the loop reaps it. Returns early only on an error
/// (ECHILD: someone else reaped it).
pub(super) fn wait_exited(pid: u32) {
    loop {
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: `info` is valid for writes for the whole call.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Reaps child `pid` if it has exited (`WNOHANG`): for an exit notice that could not
/// reach its loop.
pub(super) fn reap_exited(pid: u32) {
    let mut status = 0;
    // SAFETY: `status` is valid for writes; WNOHANG never blocks.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
}

/// write(2) to a pipe that raises no SIGPIPE when the reader is gone: `EPIPE`
/// (`ErrorKind::BrokenPipe`) instead, whatever the process's SIGPIPE disposition.
///
/// Rust binaries ignore SIGPIPE by default, but a library cannot count on it (a C
/// host, or a program that restored the default, dies of it), and `MSG_NOSIGNAL`
/// exists only for sockets. So SIGPIPE is blocked in this thread around the write,
/// and the one the write raised (thread-directed, pending while blocked) is taken off
/// with a zero-timeout `sigtimedwait` before the old mask comes back; a SIGPIPE that
/// was already pending because the thread blocked it before is left alone. Three
/// cheap syscalls per write, none on the loop's hot path.
pub(super) fn write_no_sigpipe(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let pipe = sigset_of(libc::SIGPIPE);
    let mut old = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: both sets are valid; the mask change is undone below on every path.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, old.as_mut_ptr()) };
    // SAFETY: zeroed, then filled by pthread_sigmask.
    let old = unsafe { old.assume_init() };
    // SAFETY: `old` is a valid set.
    let was_blocked = unsafe { libc::sigismember(&old, libc::SIGPIPE) } == 1;
    let pending_before = was_blocked && is_pending(libc::SIGPIPE);
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    let result = if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    };
    if let Err(e) = &result
        && e.raw_os_error() == Some(libc::EPIPE)
        && !pending_before
    {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid set and timeout; a null info pointer is allowed. EAGAIN (none
        // pending) is fine.
        while unsafe { libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero) } < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
    if !was_blocked {
        // SAFETY: restores the mask read above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    result
}

fn sigset_of(signum: i32) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `set` is valid for writes; sigemptyset initialises it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), signum);
        set.assume_init()
    }
}

fn is_pending(signum: i32) -> bool {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `set` is valid for writes, and filled by sigpending before it is read.
    unsafe {
        libc::sigpending(set.as_mut_ptr());
        libc::sigismember(set.as_ptr(), signum) == 1
    }
}
