//! Debug mode: a callback running longer than `slow_callback_duration` is logged at
//! warning level with the source location where it was scheduled.
//!
//! Records are captured by the test logger of `util` and filtered by thread: the
//! loop's callbacks run on the test's own thread.

mod util;

use std::os::fd::AsRawFd;
use std::thread::sleep;
use std::time::Duration;

use evloop::Loop;
use util::{LogCapture, send, socketpair};

const ZERO: Option<Duration> = Some(Duration::ZERO);

fn debug_loop(threshold: Duration) -> Loop {
    Loop::builder()
        .debug(true)
        .slow_callback_duration(threshold)
        .build()
        .unwrap()
}

fn warnings_naming(logs: &LogCapture, line: u32) -> Vec<String> {
    let at = format!("{}:{}", file!(), line);
    logs.at(log::Level::Warn)
        .into_iter()
        .filter(|m| m.contains(&at))
        .collect()
}

#[test]
fn slow_callback_is_logged_with_where_it_was_scheduled() {
    let lp = debug_loop(Duration::from_millis(20));
    let logs = LogCapture::start();
    let line = line!() + 1;
    lp.call_soon(|_| sleep(Duration::from_millis(60)));
    lp.run_once(ZERO).unwrap();
    let warnings = logs.at(log::Level::Warn);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings_naming(&logs, line).len(), 1, "{warnings:?}");
}

#[test]
fn slow_timer_reader_and_threadsafe_call_are_logged_with_their_locations() {
    let lp = debug_loop(Duration::from_millis(20));
    let logs = LogCapture::start();
    let slow = |_: &Loop| sleep(Duration::from_millis(40));

    let timer_line = line!() + 1;
    lp.call_later(Duration::ZERO, slow);
    let remote = lp.remote();
    let remote_line = line!() + 1;
    remote.call_soon_threadsafe(slow).unwrap();
    let (a, b) = socketpair();
    send(&a, b"x");
    let fd = b.as_raw_fd();
    let reader_line = line!() + 1;
    lp.add_reader(fd, move |lp| {
        sleep(Duration::from_millis(40));
        lp.remove_reader(fd);
    })
    .unwrap();

    lp.run_once(Some(Duration::from_secs(1))).unwrap();
    for (what, line) in [
        ("timer", timer_line),
        ("threadsafe call", remote_line),
        ("reader", reader_line),
    ] {
        assert_eq!(
            warnings_naming(&logs, line).len(),
            1,
            "{what}: {:?}",
            logs.records()
        );
    }
    drop(b);
}

#[test]
fn fast_callbacks_are_not_logged() {
    let lp = debug_loop(Duration::from_secs(2));
    let logs = LogCapture::start();
    for _ in 0..10 {
        lp.call_soon(|_| {});
    }
    lp.run_once(ZERO).unwrap();
    assert!(logs.at(log::Level::Warn).is_empty(), "{:?}", logs.records());
}

#[test]
fn without_debug_mode_slow_callbacks_are_not_logged() {
    let lp = Loop::builder()
        .slow_callback_duration(Duration::from_millis(10))
        .build()
        .unwrap();
    let logs = LogCapture::start();
    lp.call_soon(|_| sleep(Duration::from_millis(40)));
    lp.run_once(ZERO).unwrap();
    assert!(logs.at(log::Level::Warn).is_empty(), "{:?}", logs.records());
}

#[test]
fn default_threshold_is_100ms() {
    let lp = Loop::builder().debug(true).build().unwrap();
    let logs = LogCapture::start();
    let line = line!() + 1;
    lp.call_soon(|_| sleep(Duration::from_millis(150)));
    lp.run_once(ZERO).unwrap();
    assert_eq!(
        warnings_naming(&logs, line).len(),
        1,
        "{:?}",
        logs.records()
    );
}
