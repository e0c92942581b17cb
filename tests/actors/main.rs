//! Actor-level integration tests: in-process clusters of real nodes over
//! loopback TCP, driven through the library API (`metawal_actors::Node`)
//! and the HTTP API.
//!
//! Why one binary: every integration test file is its own crate, and each
//! crate compiles its own copies of the generic actix, tokio and HTTP code
//! it uses. Eight files meant eight copies, most of CI's build time; one
//! binary with a module per concern compiles them once. The tests that
//! assert on everything the process logged are in `tests/logged/`, where
//! they run one at a time, so no other test's log lines reach their
//! assertions.

mod cluster;
mod disk;
mod election;
mod faults;
mod http_api;
mod kafka_front;
mod members;
mod reads;
mod snapshot;
mod tls_errors;
