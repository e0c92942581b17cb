//! Replication logic as pure state machines: no I/O, no clock, no runtime.
//!
//! The actors in `metawal-actors` own sockets, files and timers; they feed
//! events (a connection came up, an ack arrived, it is now `t`) into these
//! types and carry out what they return. Everything here can therefore be
//! driven by a test with a fake clock.
//!
//! - [`link`]: one follower's link as the leader sees it — named states
//!   (Connecting, Handshaking, Probing, Streaming, Snapshotting), the window
//!   of unacked data, cumulative acks.
//! - [`isr`]: the in-sync replica set, the commit point (durable on a
//!   majority of the voters, the leader among them), the ISR watermark over
//!   the whole ISR that `acks=all` waits for, and whether `acks=all` may be
//!   served.
//! - [`start`]: where the leader starts sending to a follower after the
//!   handshake (match, truncate, snapshot), and the follower's checks of an
//!   incoming batch.
//! - [`backoff`]: reconnect delays with exponential growth and jitter.
//! - [`tail`]: the leader's bounded in-memory cache of recent records.

pub mod backoff;
pub mod isr;
pub mod link;
pub mod start;
pub mod tail;

pub use backoff::Backoff;
pub use isr::{IsrChange, ReplicaSetTracker};
pub use link::{AckOutcome, LinkProgress, LinkState};
pub use start::{check_append, decide_start, AppendError, StartPoint};
pub use tail::TailCache;
