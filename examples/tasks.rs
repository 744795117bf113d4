//! One pipeline written three ways: nested callbacks, promises, an `async fn` task.
//!
//! ```text
//! cargo run --release --example tasks
//! ```
//!
//! `verify_user` is the pipeline of the asyncio talks: fetch the user's record, check
//! the password against its hash, load the user's permissions. Each step waits a few
//! milliseconds on the loop, standing in for a database or network round trip. The
//! three versions print the same results, failures included:
//!
//! - **(a) nested callbacks**: each step takes the callback that runs the next one,
//!   as asyncio code did with `loop.call_later` before futures.
//! - **(b) promises**: each step returns a `Promise` (asyncio's `Future`, made by
//!   `loop.create_future()`) completed by a timer; the steps are chained with
//!   done-callbacks (`fut.add_done_callback`).
//! - **(c) an `async fn`**: `await` each step in turn; `lp.create_task` and
//!   `lp.run_until_complete` run it, as `loop.create_task(verify_user(...))` does.
//!
//! A failed step ends the pipeline with an `Err` in every style: there are no
//! exceptions to raise, so each step returns a `Result`.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use evloop::{Loop, Promise};

/// How long each step waits on the loop.
const STEP: Duration = Duration::from_millis(3);

/// The attempts each style makes: a good password, a wrong one, an unknown user.
const ATTEMPTS: [(&str, &str); 3] = [
    ("alice", "wonderland"),
    ("alice", "looking-glass"),
    ("mallory", "hunter2"),
];

// ----- The data the steps work on (no loop here) -----

/// The user table: names and password hashes.
const USERS: [(&str, u64); 2] = [("alice", fnv1a("wonderland")), ("bob", fnv1a("builder"))];

/// A user's record, as step 1 fetches it.
#[derive(Debug, Clone)]
struct User {
    name: String,
    password_hash: u64,
}

/// What a successful `verify_user` returns.
#[derive(Debug, Clone, PartialEq)]
struct Verified {
    name: String,
    permissions: Vec<&'static str>,
}

/// Why `verify_user` failed.
#[derive(Debug, Clone, PartialEq)]
enum AuthError {
    UnknownUser(String),
    WrongPassword(String),
}

type Outcome = Result<Verified, AuthError>;

/// FNV-1a: a stand-in for a real password hash.
const fn fnv1a(s: &str) -> u64 {
    let bytes = s.as_bytes();
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

fn lookup(name: &str) -> Result<User, AuthError> {
    USERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(n, password_hash)| User {
            name: n.to_owned(),
            password_hash,
        })
        .ok_or_else(|| AuthError::UnknownUser(name.to_owned()))
}

fn check(user: User, password: &str) -> Result<User, AuthError> {
    if fnv1a(password) == user.password_hash {
        Ok(user)
    } else {
        Err(AuthError::WrongPassword(user.name))
    }
}

fn permissions(user: User) -> Verified {
    let permissions = match user.name.as_str() {
        "alice" => vec!["read", "write", "admin"],
        _ => vec!["read"],
    };
    Verified {
        name: user.name,
        permissions,
    }
}

// ----- (a) Nested callbacks: each step calls the next one's callback -----

fn fetch_user_cb(
    lp: &Loop,
    name: String,
    next: impl FnOnce(&Loop, Result<User, AuthError>) + 'static,
) {
    lp.call_later(STEP, move |lp| next(lp, lookup(&name)));
}

fn check_password_cb(
    lp: &Loop,
    user: User,
    password: String,
    next: impl FnOnce(&Loop, Result<User, AuthError>) + 'static,
) {
    lp.call_later(STEP, move |lp| next(lp, check(user, &password)));
}

fn load_permissions_cb(lp: &Loop, user: User, next: impl FnOnce(&Loop, Verified) + 'static) {
    lp.call_later(STEP, move |lp| next(lp, permissions(user)));
}

/// The pipeline as callbacks: every step nests one level deeper, and every error
/// must be handed to `done` by hand.
fn verify_user_cb(
    lp: &Loop,
    name: &str,
    password: &str,
    done: impl FnOnce(&Loop, Outcome) + 'static,
) {
    let password = password.to_owned();
    fetch_user_cb(lp, name.to_owned(), move |lp, user| match user {
        Err(e) => done(lp, Err(e)),
        Ok(user) => check_password_cb(lp, user, password, move |lp, checked| match checked {
            Err(e) => done(lp, Err(e)),
            Ok(user) => load_permissions_cb(lp, user, move |lp, verified| done(lp, Ok(verified))),
        }),
    });
}

fn with_callbacks(lp: &Loop) -> Result<Vec<Outcome>, Box<dyn StdError>> {
    println!("(a) nested callbacks: call_later(delay, next_step)");
    let mut outcomes = Vec::new();
    for (name, password) in ATTEMPTS {
        let slot = Rc::new(RefCell::new(None));
        let s = slot.clone();
        verify_user_cb(lp, name, password, move |lp, outcome| {
            *s.borrow_mut() = Some(outcome);
            lp.stop(); // the last callback ends the run, as loop.stop() would
        });
        lp.run_forever()?;
        let outcome = slot.take().expect("the final callback ran");
        report(name, password, &outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

// ----- (b) Promises: each step returns a Promise; done-callbacks chain them -----

/// A promise that a timer completes with `f()` after one step's delay
/// (`fut = loop.create_future(); loop.call_later(delay, fut.set_result, value)`).
fn after_step<T: 'static>(lp: &Loop, f: impl FnOnce() -> T + 'static) -> Promise<T> {
    let promise = lp.create_promise();
    let setter = promise.clone();
    lp.call_later(STEP, move |_| {
        setter
            .set_result(f())
            .expect("only this timer completes it");
    });
    promise
}

fn fetch_user_p(lp: &Loop, name: String) -> Promise<Result<User, AuthError>> {
    after_step(lp, move || lookup(&name))
}

fn check_password_p(lp: &Loop, user: User, password: String) -> Promise<Result<User, AuthError>> {
    after_step(lp, move || check(user, &password))
}

fn load_permissions_p(lp: &Loop, user: User) -> Promise<Result<Verified, AuthError>> {
    after_step(lp, move || Ok(permissions(user)))
}

/// Runs `next` with `first`'s value once `first` succeeds; the promise it returns
/// completes with `next`'s result, or at once with `first`'s error. This is the
/// glue asyncio's `Task` supplies for a coroutine: each `await` adds a done-callback
/// to the awaited future that resumes the next step.
fn then<T, U>(
    lp: &Loop,
    first: &Promise<Result<T, AuthError>>,
    next: impl FnOnce(&Loop, T) -> Promise<Result<U, AuthError>> + 'static,
) -> Promise<Result<U, AuthError>>
where
    T: Clone + 'static,
    U: Clone + 'static,
{
    let chained = lp.create_promise();
    let out = chained.clone();
    first.add_done_callback(move |lp, result| match result {
        Ok(Ok(value)) => {
            next(lp, value.clone()).add_done_callback(move |_, result| match result {
                Ok(r) => out.set_result(r.clone()).expect("completed once"),
                Err(_cancelled) => {
                    out.cancel();
                }
            });
        }
        Ok(Err(e)) => out.set_result(Err(e.clone())).expect("completed once"),
        Err(_cancelled) => {
            out.cancel();
        }
    });
    chained
}

/// The pipeline as promises: flat again, and each stage is a value to pass around.
fn verify_user_p(lp: &Loop, name: &str, password: &str) -> Promise<Outcome> {
    let password = password.to_owned();
    let user = fetch_user_p(lp, name.to_owned());
    let checked = then(lp, &user, move |lp, user| {
        check_password_p(lp, user, password)
    });
    then(lp, &checked, load_permissions_p)
}

fn with_promises(lp: &Loop) -> Result<Vec<Outcome>, Box<dyn StdError>> {
    println!("(b) promises: create_promise, set_result, add_done_callback");
    let mut outcomes = Vec::new();
    for (name, password) in ATTEMPTS {
        let verified = verify_user_p(lp, name, password);
        verified.add_done_callback(|lp, _| lp.stop());
        lp.run_forever()?;
        // Done: its result is there to read (asyncio's `fut.result()`).
        let outcome = verified
            .result()
            .expect("the promise is done")
            .clone()
            .expect("nothing cancels it");
        report(name, password, &outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

// ----- (c) An async fn: await each step in turn -----

async fn fetch_user(name: &str) -> Result<User, AuthError> {
    evloop::sleep(STEP).await; // asyncio.sleep: the task yields to the loop meanwhile
    lookup(name)
}

async fn check_password(user: User, password: &str) -> Result<User, AuthError> {
    evloop::sleep(STEP).await;
    check(user, password)
}

async fn load_permissions(user: User) -> Verified {
    evloop::sleep(STEP).await;
    permissions(user)
}

/// The pipeline as the talks write it: straight-line code, `?` for the error path.
async fn verify_user(name: String, password: String) -> Outcome {
    let user = fetch_user(&name).await?;
    let user = check_password(user, &password).await?;
    Ok(load_permissions(user).await)
}

fn with_async(lp: &Loop) -> Result<Vec<Outcome>, Box<dyn StdError>> {
    println!("(c) async fn: create_task(verify_user(..)), run_until_complete(task)");
    let mut outcomes = Vec::new();
    for (name, password) in ATTEMPTS {
        let task = lp.create_task(verify_user(name.to_owned(), password.to_owned()));
        let outcome = lp.run_until_complete(task)??;
        report(name, password, &outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

// ----- Output -----

fn report(name: &str, password: &str, outcome: &Outcome) {
    let attempt = format!("verify_user({name:?}, {password:?})");
    match outcome {
        Ok(v) => println!("  {attempt:<38} -> Ok: {v}"),
        Err(e) => println!("  {attempt:<38} -> Err: {e}"),
    }
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} may {}", self.name, self.permissions.join(", "))
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::UnknownUser(name) => write!(f, "unknown user {name:?}"),
            AuthError::WrongPassword(name) => write!(f, "wrong password for {name:?}"),
        }
    }
}

fn main() -> Result<(), Box<dyn StdError>> {
    let lp = Loop::new()?;
    let a = with_callbacks(&lp)?;
    let b = with_promises(&lp)?;
    let c = with_async(&lp)?;
    assert!(a == b && b == c, "the three styles disagree");
    println!("the three styles agree on all {} attempts", a.len());
    Ok(())
}
