//! `tracing` on evloop: a task instrumented with `tracing::Instrument` is inside its
//! span at every step (the span is entered around each poll), and only then: a task
//! that runs between its steps is not.

use std::cell::RefCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Instrument, Metadata, Subscriber};

/// A minimal subscriber: numbered spans with their names, a per-thread stack of
/// entered spans, and each event recorded with the span it happened in.
#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    names: Mutex<Vec<&'static str>>,
    events: Mutex<Vec<(String, Option<&'static str>)>>,
}

thread_local! {
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        self.names.lock().unwrap().push(attrs.metadata().name());
        Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let span = STACK.with(|s| s.borrow().last().copied());
        let name = span.map(|id| self.names.lock().unwrap()[id as usize - 1]);
        self.events.lock().unwrap().push((msg.0, name));
    }
    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, span: &Id) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            assert_eq!(s.pop(), Some(span.into_u64()), "spans exit in order");
        });
    }
}

#[test]
fn an_instrumented_task_keeps_its_span_across_steps_and_lends_it_to_no_other() {
    let recorder = std::sync::Arc::new(Recorder::default());
    let dispatch = tracing::Dispatch::from(recorder.clone());
    tracing::dispatcher::with_default(&dispatch, || {
        evloop::run(async {
            let job = evloop::spawn(
                async {
                    tracing::info!("step 1");
                    evloop::sleep(Duration::from_millis(2)).await;
                    tracing::info!("step 2");
                    evloop::yield_now().await;
                    tracing::info!("step 3");
                }
                .instrument(tracing::info_span!("job")),
            );
            let other = evloop::spawn(async {
                for _ in 0..3 {
                    tracing::info!("other");
                    evloop::sleep(Duration::from_millis(1)).await;
                }
            });
            job.await.unwrap();
            other.await.unwrap();
        })
        .unwrap();
    });
    let events = recorder.events.lock().unwrap().clone();
    for step in ["step 1", "step 2", "step 3"] {
        assert!(
            events.contains(&(step.to_string(), Some("job"))),
            "{step} outside its span: {events:?}"
        );
    }
    let others: Vec<_> = events.iter().filter(|(m, _)| m == "other").collect();
    assert_eq!(others.len(), 3);
    assert!(
        others.iter().all(|(_, span)| span.is_none()),
        "another task ran inside the span: {events:?}"
    );
}
