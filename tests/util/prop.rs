//! What the property tests share: how many cases a run tries.

use proptest::test_runner::Config;

/// A runner configuration of `PROPTEST_CASES` cases if set, else `default` (a
/// twentieth of it under valgrind, which is ~50 times slower); failures are not
/// persisted to files (the failing case is printed).
pub fn config(default: u32) -> Config {
    let default = if std::env::var_os("EVLOOP_UNDER_VALGRIND").is_some() {
        default / 20
    } else {
        default
    };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}
