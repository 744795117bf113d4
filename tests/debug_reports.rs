//! Debug mode's reports: slow task steps, tasks pending at close, promises dropped
//! while awaited. Checked through a capturing logger.

mod util;

use std::thread;
use std::time::Duration;

use evloop::Loop;
use util::LogCapture;

fn debug_loop() -> Loop {
    Loop::builder()
        .debug(true)
        .slow_callback_duration(Duration::from_millis(10))
        .build()
        .unwrap()
}

#[test]
fn a_slow_task_step_names_where_the_task_was_spawned() {
    let log = LogCapture::start();
    let lp = debug_loop();
    let line = line!() + 1;
    let task = lp.create_task(async {
        thread::sleep(Duration::from_millis(20));
    });
    lp.run_until_complete(task).unwrap().unwrap();
    let warnings = log.at(log::Level::Warn);
    let needle = format!("debug_reports.rs:{line}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("task step") && w.contains(&needle)),
        "{warnings:?}"
    );
}

#[test]
fn tasks_pending_at_close_are_listed_with_their_spawn_location() {
    let log = LogCapture::start();
    let lp = debug_loop();
    let line = line!() + 1;
    let _task = lp.create_task(std::future::pending::<()>());
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.close().unwrap();
    let warnings = log.at(log::Level::Warn);
    let needle = format!("debug_reports.rs:{line}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("pending") && w.contains(&needle)),
        "{warnings:?}"
    );
}

#[test]
fn no_pending_task_report_without_debug_mode() {
    let log = LogCapture::start();
    let lp = Loop::new().unwrap();
    let _task = lp.create_task(std::future::pending::<()>());
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.close().unwrap();
    assert!(log.problems().is_empty(), "{:?}", log.problems());
}

#[test]
fn a_promise_dropped_unresolved_while_awaited_is_reported() {
    let log = LogCapture::start();
    let lp = debug_loop();
    let line = line!() + 1;
    let promise = lp.create_promise::<u32>();
    let awaited = promise.clone();
    let task = lp.create_task(awaited);
    lp.run_once(Some(Duration::ZERO)).unwrap(); // the task now waits on it
    drop(promise); // nobody can resolve it any more
    let warnings = log.at(log::Level::Warn);
    let needle = format!("debug_reports.rs:{line}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("dropped unresolved") && w.contains(&needle)),
        "{warnings:?}"
    );
    assert!(task.cancel());
}

#[test]
fn a_resolved_promise_is_not_reported() {
    let log = LogCapture::start();
    let lp = debug_loop();
    let promise = lp.create_promise::<u32>();
    let awaited = promise.clone();
    let task = lp.create_task(awaited);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    promise.set_result(3).unwrap();
    drop(promise);
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), Ok(3));
    // Only the report this test is about: a slow-step warning (a step over the 10 ms
    // threshold, as happens under valgrind or on a loaded machine) is not one.
    let problems: Vec<_> = log
        .problems()
        .into_iter()
        .filter(|r| !(r.message.starts_with("Executing ") && r.message.contains(" took ")))
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
}
