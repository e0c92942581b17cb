//! # metawal-client — the HTTP API client of a metawal cluster
//!
//! A blocking client of exactly the API in `docs/api.md`, used by
//! `metawalctl` and by anything else that talks to a cluster (test
//! harnesses, benchmarks):
//!
//! * [`Client`] over a list of endpoints: finds the leader (following
//!   `307`s itself), moves on past dead or leaderless nodes, waits out an
//!   election — and never re-sends a write that may have been applied.
//!   [`Client::propose`], [`Client::get`], [`Client::status`],
//!   [`Client::watch`].
//! * [`Error`] says what failed, typed: the server's answer
//!   ([`ServerError`], [`ErrorCode`]), why no node took the request
//!   ([`Unavailable`], [`Attempt`]), and whether a write may be in the log
//!   ([`Error::appended`]).
//! * [`Node`]: one request to one node, sent once, optionally over one
//!   keep-alive connection ([`Reuse::KeepAlive`]), with an error that says
//!   whether anything was sent ([`NodeError`]).
//! * [`tls::client_config`]: the HTTPS configuration from PEM files, and
//!   [`diagnose`]: why TLS failed, in words a person can act on (also: "this
//!   is a replication port, not the HTTP API").
//! * [`ChangeStream`]: the change stream as an iterator of [`WatchEvent`]s.
//!
//! ```no_run
//! use std::time::Duration;
//! use metawal::Command;
//! use metawal_client::{Acks, Appended, Client};
//!
//! let endpoints = vec!["http://127.0.0.1:8081".to_string()];
//! let client = Client::new(&endpoints, Duration::from_secs(10), None);
//! match client.propose(&[Command::DeleteTopic { name: "t".into() }], Acks::All) {
//!     Ok(p) => println!("at offset {}", p.offset),
//!     Err(e) if e.appended() == Appended::Maybe => eprintln!("maybe applied: {e}"),
//!     Err(e) => eprintln!("not applied: {e}"),
//! }
//! ```

#![deny(missing_docs)]

use std::time::Duration;

mod client;
pub mod diagnose;
pub mod endpoint;
pub mod error;
mod node;
pub mod sse;
pub mod tls;
mod types;
pub mod watch;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use client::{Client, WATCH_READ_TIMEOUT};
pub use diagnose::Diagnosis;
pub use endpoint::{parse_endpoint, with_scheme, EndpointError};
pub use error::{
    disposition, Appended, Attempt, Disposition, Error, ErrorCode, Failure, Kind, ServerError,
    Unavailable,
};
pub use node::{Answer, Method, Node, NodeError, Reuse};
/// The TLS client configuration type [`Client::new`] and [`Node::new`] take
/// (rustls 0.23), so callers need no rustls dependency of their own.
pub use rustls::ClientConfig;
pub use types::{Acks, FollowerStatus, NodeStatus, Proposed, Reply, Transferred};
pub use watch::{ChangeEntry, ChangeStream, StreamEnd, StreamError, WatchEvent};

/// Most `307` hops followed for one request.
pub const MAX_HOPS: usize = 5;

/// Most passes over the endpoint list for one request (also bounded by the
/// request timeout): enough to wait out an election after a leader crash.
pub const MAX_ROUNDS: usize = 12;

/// TCP connect timeout of every request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
