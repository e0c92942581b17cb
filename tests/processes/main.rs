//! Integration tests with real `metawal-node` processes (the process
//! harness, `metawal_testkit::procs`): crashes and freezes under load,
//! clients that misbehave at the socket level, and TLS as an operator runs
//! it. One binary for the same reason as `tests/actors/main.rs`: each test
//! file is a crate that compiles its own copy of the generic code it uses.
//!
//! Run one concern with a filter, e.g.
//! `cargo test --release --test processes process_crash -- --nocapture`.

mod http_bad_input;
mod kafka_clients;
mod membership;
mod process_crash;
mod tls_processes;
