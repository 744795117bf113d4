//! An exception handler that records the panic messages it is handed, for tests of
//! panics caught by the loop (included with `#[path = "util/panics.rs"] mod panics;`).

use std::cell::RefCell;
use std::rc::Rc;

use evloop::{ErrorContext, Loop};

/// Installs a handler that records every panic message it is handed.
pub fn record_panics(lp: &Loop) -> Rc<RefCell<Vec<String>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(move |_, ctx: &ErrorContext| {
        s.borrow_mut().push(
            ctx.panic_message()
                .unwrap_or("<no panic message>")
                .to_owned(),
        );
    });
    seen
}

/// The recorded messages, sorted.
pub fn sorted(v: &RefCell<Vec<String>>) -> Vec<String> {
    let mut v = v.borrow().clone();
    v.sort();
    v
}
