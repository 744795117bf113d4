//! Panicking callbacks: caught, reported to the exception handler with where the
//! callback was scheduled, and the loop goes on.

mod util;

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use evloop::{ErrorContext, Loop};
use util::{Events, LogCapture, Watchdog, send, socketpair};

const ZERO: Option<Duration> = Some(Duration::ZERO);

/// What a handler saw: message, panic message, "file:line" of the location.
type Seen = (String, Option<String>, Option<String>);

fn capturing_handler(lp: &Loop) -> Rc<RefCell<Vec<Seen>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(move |_, ctx: &ErrorContext| {
        s.borrow_mut().push((
            ctx.message().to_owned(),
            ctx.panic_message().map(str::to_owned),
            ctx.location().map(|l| format!("{}:{}", l.file(), l.line())),
        ));
    });
    seen
}

fn here(line: u32) -> Option<String> {
    Some(format!("{}:{}", file!(), line))
}

#[test]
fn a_panicking_callback_does_not_stop_the_loop() {
    let lp = Loop::new().unwrap();
    let _seen = capturing_handler(&lp);
    let order = Events::new();
    lp.call_soon(|_| panic!("boom"));
    let o = order.clone();
    lp.call_soon(move |_| o.push("next"));
    let o = order.clone();
    lp.call_soon(move |lp| {
        lp.call_soon(|_| panic!("boom again"));
        let o2 = o.clone();
        lp.call_soon(move |lp| {
            o2.push("later");
            lp.stop();
        });
    });
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(order.get(), ["next", "later"]);
    assert!(!lp.is_running());
    // And it runs again afterwards.
    let o = order.clone();
    lp.call_soon(move |_| o.push("again"));
    lp.run_once(ZERO).unwrap();
    assert_eq!(order.get(), ["next", "later", "again"]);
}

#[test]
fn handler_gets_the_panic_message_and_where_call_soon_was_called() {
    let lp = Loop::new().unwrap();
    let seen = capturing_handler(&lp);
    let line = line!() + 1;
    lp.call_soon(|_| panic!("boom {}", 42));
    lp.run_once(ZERO).unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    let (message, panic_message, location) = &seen[0];
    assert!(!message.is_empty());
    assert_eq!(panic_message.as_deref(), Some("boom 42"));
    assert_eq!(*location, here(line));
}

#[test]
fn str_and_string_payloads_and_others() {
    let lp = Loop::new().unwrap();
    let seen = capturing_handler(&lp);
    lp.call_soon(|_| panic!("a str"));
    lp.call_soon(|_| std::panic::panic_any(String::from("a String")));
    lp.call_soon(|_| std::panic::panic_any(17u8));
    lp.run_once(ZERO).unwrap();
    let got: Vec<_> = seen.borrow().iter().map(|s| s.1.clone()).collect();
    assert_eq!(got, [Some("a str".into()), Some("a String".into()), None]);
}

#[test]
fn timer_thread_call_and_reader_panics_carry_their_scheduling_location() {
    let lp = Loop::new().unwrap();
    let seen = capturing_handler(&lp);

    let timer_line = line!() + 1;
    lp.call_later(Duration::ZERO, |_| panic!("timer"));
    let remote = lp.remote();
    let remote_line = line!() + 1;
    remote.call_soon_threadsafe(|_| panic!("remote")).unwrap();
    let (a, b) = socketpair();
    send(&a, b"x");
    let fd = b.as_raw_fd();
    let reader_line = line!() + 1;
    lp.add_reader(fd, |_| panic!("reader")).unwrap();

    lp.run_once(Some(Duration::from_secs(1))).unwrap();
    lp.remove_reader(fd);
    let mut seen: Vec<_> = seen
        .borrow()
        .iter()
        .map(|s| (s.1.clone(), s.2.clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (Some("reader".into()), here(reader_line)),
            (Some("remote".into()), here(remote_line)),
            (Some("timer".into()), here(timer_line)),
        ]
    );
    drop(b);
}

/// A panicking reader stays registered (level-triggered: called again while its fd is
/// readable), as asyncio keeps a reader whose callback raised.
#[test]
fn a_panicking_reader_stays_registered() {
    let lp = Loop::new().unwrap();
    let seen = capturing_handler(&lp);
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    lp.add_reader(fd, move |lp| {
        *c.borrow_mut() += 1;
        if *c.borrow() == 1 {
            panic!("first call");
        }
        util::recv(&b, 64).unwrap();
        lp.remove_reader(fd);
    })
    .unwrap();
    send(&a, b"x");
    lp.run_once(ZERO).unwrap();
    lp.run_once(ZERO).unwrap();
    assert_eq!(*calls.borrow(), 2);
    assert_eq!(seen.borrow().len(), 1);
    assert!(
        !lp.remove_reader(fd),
        "the reader removed itself on its second call"
    );
}

#[test]
fn a_panicking_exception_handler_does_not_take_the_loop_down() {
    let lp = Loop::new().unwrap();
    let logs = LogCapture::start();
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    lp.set_exception_handler(move |_, _| {
        *c.borrow_mut() += 1;
        panic!("handler broke");
    });
    let order = Events::new();
    lp.call_soon(|_| panic!("first"));
    let o = order.clone();
    lp.call_soon(move |_| o.push("next"));
    lp.call_soon(|_| panic!("second"));
    let o = order.clone();
    lp.call_soon(move |_| o.push("last"));
    lp.run_once(ZERO).unwrap();
    assert_eq!(order.get(), ["next", "last"]);
    assert_eq!(
        *calls.borrow(),
        2,
        "the handler stays installed after panicking"
    );
    let errors = logs.at(log::Level::Error);
    assert!(
        errors.iter().any(|m| m.contains("handler broke")),
        "the handler's own panic is logged: {errors:?}"
    );
    assert!(
        errors.iter().any(|m| m.contains("first")),
        "the original error is not lost: {errors:?}"
    );
}

#[test]
fn the_default_handler_logs_at_error_level() {
    let lp = Loop::new().unwrap();
    let logs = LogCapture::start();
    let line = line!() + 1;
    lp.call_soon(|_| panic!("default handler sees this"));
    lp.run_once(ZERO).unwrap();
    let errors = logs.at(log::Level::Error);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("default handler sees this"),
        "{errors:?}"
    );
    assert!(
        errors[0].contains(&format!("{}:{}", file!(), line)),
        "the log names where the callback was scheduled: {errors:?}"
    );
}

#[test]
fn the_handler_may_use_the_loop_and_replace_itself() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let o = order.clone();
    lp.set_exception_handler(move |lp, _| {
        o.push("first handler");
        let o2 = o.clone();
        lp.call_soon(move |_| o2.push("scheduled by the handler"));
        let o3 = o.clone();
        lp.set_exception_handler(move |_, _| o3.push("second handler"));
    });
    lp.call_soon(|_| panic!("one"));
    lp.run_once(ZERO).unwrap();
    lp.call_soon(|_| panic!("two"));
    lp.run_once(ZERO).unwrap();
    assert_eq!(
        order.get(),
        [
            "first handler",
            "scheduled by the handler",
            "second handler"
        ]
    );
}

#[test]
fn call_exception_handler_with_a_custom_context() {
    let lp = Loop::new().unwrap();
    let seen = capturing_handler(&lp);
    lp.call_exception_handler(ErrorContext::new("the backend went away"));
    assert_eq!(
        *seen.borrow(),
        [("the backend went away".to_owned(), None, None)]
    );
}
