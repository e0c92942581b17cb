//! Integration tests that assert on what a node logged: TLS refusals
//! (`tls`), a newcomer's refused or unreachable peers (`newcomer`), clean
//! closes that log no warning (`quiet_close`).
//!
//! Why one binary, run one test at a time: the log capture is the
//! process's one `tracing` subscriber, so every test of a binary writes to
//! the same buffer. Each test here takes [`serial`] first: it runs alone
//! and reads a log that holds only its own lines, which is what an
//! assertion like "no WARN about a closed connection" needs. One binary
//! instead of three saves two builds of the same generic code (see
//! `tests/actors/main.rs`); the tests take seconds, so running them one at
//! a time costs little.

use std::sync::{Arc, Mutex};

mod newcomer;
mod quiet_close;
mod tls;

/// Run alone, from an empty log: hold the guard for the whole test.
async fn serial() -> (tokio::sync::MutexGuard<'static, ()>, Arc<Mutex<Vec<u8>>>) {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = SERIAL.lock().await;
    let logs = metawal_testkit::rawpeer::captured_logs();
    logs.lock().unwrap_or_else(|p| p.into_inner()).clear();
    (guard, logs)
}
