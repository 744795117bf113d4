//! Helpers for the stress and soak tests (`tests/stress_*.rs`): the short form runs in
//! CI through `cargo test`; the long form runs with `EVLOOP_SOAK=1` (see `.ci/stress`).
//! Memory figures come from `/proc/self/statm`, fd counts from `/proc/self/fd`,
//! CPU time from `getrusage`.
//!
//! Include it as `#[path = "util/stress.rs"] mod stress;`.
#![allow(dead_code)]

use std::time::Duration;

/// Whether the long form was asked for (`EVLOOP_SOAK=1`).
pub fn soak() -> bool {
    std::env::var("EVLOOP_SOAK").is_ok_and(|v| v == "1")
}

/// `short` in CI, `long` under `EVLOOP_SOAK=1`.
pub fn scale<T>(short: T, long: T) -> T {
    if soak() { long } else { short }
}

/// Whether this process runs under valgrind (`.ci/valgrind` says so), which makes
/// everything ~50 times slower: the stress tests then do a token amount of work.
pub fn under_valgrind() -> bool {
    std::env::var_os("EVLOOP_UNDER_VALGRIND").is_some()
}

/// The resident set size of this process, in bytes.
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm's second field");
    // SAFETY: sysconf has no memory preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    pages * page
}

/// Asks glibc to give its free memory back to the OS, so that RSS shows what the
/// program still holds rather than what the allocator keeps cached.
pub fn malloc_trim() {
    // SAFETY: malloc_trim only walks glibc's own free lists.
    unsafe { libc::malloc_trim(0) };
}

/// Mebibytes, for messages.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPU time (user + system) used so far by the calling thread.
pub fn thread_cpu() -> Duration {
    cpu(libc::RUSAGE_THREAD)
}

/// CPU time (user + system) used so far by the whole process.
pub fn process_cpu() -> Duration {
    cpu(libc::RUSAGE_SELF)
}

fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the whole call.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The soft and hard `RLIMIT_NOFILE`.
pub fn nofile() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    (r.rlim_cur, r.rlim_max)
}

/// Raises the soft `RLIMIT_NOFILE` to at least `want` if the hard limit allows;
/// returns the soft limit in force afterwards.
pub fn raise_nofile(want: u64) -> u64 {
    let (cur, max) = nofile();
    if cur >= want {
        return cur;
    }
    let r = libc::rlimit {
        rlim_cur: want.min(max),
        rlim_max: max,
    };
    // SAFETY: `r` is a valid rlimit; raising the soft limit up to the hard one needs
    // no privilege.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    nofile().0
}
