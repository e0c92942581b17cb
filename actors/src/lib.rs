//! # metawal-actors — the actix runtime of metawal
//!
//! The actors own sockets, files, timers and mailboxes; every replication
//! decision is made by the pure state machines of the core crate
//! ([`metawal`], re-exported here), fed with events and the current time.
//!
//! ```text
//! broker ──Propose──▶ MetadataStore ──AppendEntry──▶ Replicator ──▶ disk thread (group commit)
//!                         ▲   (leader)                  │ progress watch (log end, commit)
//!                         │                             ├──▶ FollowerLink(peer 2) ──TCP──▶ ReplicaSession ─▶ ReplicaListener ─▶ disk thread
//!                         │                             └──▶ FollowerLink(peer 3) ──TCP──▶ ReplicaSession ─▶ ReplicaListener ─▶ disk thread
//!                         └── committed entries applied in order → MetadataView + MetadataChanged, on every node
//! ```
//!
//! Start a node with [`Node::start`] inside a running actix `System`; keep the
//! returned [`Node`] handle to propose, read the [`MetadataView`], subscribe,
//! ask for [`NodeStatus`] and shut down.

#![warn(missing_docs)]

pub mod changes;
pub mod config;
mod conn;
/// The disk thread: crate-private, public only to the tests (feature
/// `fault-injection`), which drive it directly.
#[cfg(feature = "fault-injection")]
pub mod disk;
#[cfg(not(feature = "fault-injection"))]
pub(crate) mod disk;
pub(crate) mod election;
pub mod error;
pub(crate) mod follower;
pub mod http;
pub(crate) mod leader;
pub mod metrics;
pub mod node;
pub(crate) mod progress;
pub mod shared;
pub mod status;
pub mod store;
pub mod tls;
pub mod view;

pub use metawal;
pub use metawal::engine::election::ElectionRole;
pub use metawal::{Command, Entry, NodeId, ReplicationConfig};

pub use changes::{ChangeStream, ChangesError};
pub use config::{BoundListener, NodeConfig};
pub use error::{DiskError, NodeError, ProposeError, ReadError, RoleError};
pub use metrics::NodeMetrics;
pub use node::Node;
pub use shared::Role;
pub use status::{FollowerStatus, NodeStatus};
pub use store::{Acks, Applied, MetadataStore, Propose, Proposed, Subscribe};
pub use view::{MetadataChanged, MetadataView, TopicView};

/// Compiles the README's code blocks (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
