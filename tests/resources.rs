//! A loop releases what it owns: dropping or closing it closes its own descriptors
//! (and only those) and frees every pending closure.
//!
//! One test in this file on purpose: it counts the process's open descriptors, which
//! other tests running concurrently in the same process would disturb.

mod util;

use std::os::fd::AsRawFd;
use std::time::Duration;

use evloop::Loop;
use util::{Drops, socketpair};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn loops_release_their_descriptors_and_closures() {
    let (a, b) = socketpair();
    let drops = Drops::new();
    let before = open_fds();
    for i in 0..20 {
        let lp = Loop::new().unwrap();
        let t = drops.token();
        lp.call_soon(move |_| t.hold());
        let t = drops.token();
        lp.call_later(Duration::from_secs(60), move |_| t.hold());
        let t = drops.token();
        lp.add_reader(a.as_raw_fd(), move |_| t.hold()).unwrap();
        let t = drops.token();
        lp.add_writer(b.as_raw_fd(), move |_| t.hold()).unwrap();
        let remote = lp.remote();
        let t = drops.token();
        std::thread::scope(|s| {
            s.spawn(|| remote.call_soon_threadsafe(move |_| t.hold()).unwrap());
        });
        lp.run_once(Some(Duration::ZERO)).unwrap();
        if i % 2 == 0 {
            lp.close().unwrap();
        }
        drop(remote);
        drop(lp);
    }
    assert_eq!(drops.alive(), 0, "pending closures leaked");
    assert_eq!(open_fds(), before, "descriptors leaked");
    assert!(util::fd_is_open(a.as_raw_fd()) && util::fd_is_open(b.as_raw_fd()));
}
