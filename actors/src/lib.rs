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

#![deny(missing_docs)]

// What a broker uses is re-exported below; the modules themselves are
// crate-private, so the public API is exactly this list (plus `http` and
// `tls`, which a process that serves the API or loads certificates needs).
mod changes;
mod config;
mod conn;
// The disk threads: crate-private, public only to the tests (feature
// `fault-injection`), which drive them directly. (Its docs are the
// module's own: an outer doc here would make rustdoc resolve the module
// doc's links from the crate root.)
#[cfg(feature = "fault-injection")]
pub mod disk;
#[cfg(not(feature = "fault-injection"))]
pub(crate) mod disk;
mod disk_api;
mod disk_files;
mod disk_request;
mod election;
mod error;
mod follower;
pub mod http;
mod leader;
mod leadership;
mod members;
mod metrics;
mod node;
mod peer_connection;
mod peer_table;
mod progress;
mod proposal;
mod recover;
mod shared;
mod status;
mod store;
pub mod tls;
mod view;

pub use metawal::engine::election::ElectionRole;
pub use metawal::state::ValidationError;
pub use metawal::{Command, Entry, MetadataState, NodeId, ReplicationConfig};

pub use changes::{ChangeStream, ChangesError};
pub use config::{BoundListener, NodeConfig};
pub use error::{
    Appended, ConfigProblem, DiskError, LogStartError, MemberError, MetricsError, NodeError,
    Overload, ProposeError, ReadError, RoleError, StateError, StatusError, SubscribeError,
};
pub use leadership::{LeadershipChanges, LeadershipError};
pub use members::{MemberStatus, Members, DEFAULT_PROMOTE_WAIT, MAX_PROMOTE_WAIT};
pub use metrics::NodeMetrics;
pub use node::Node;
pub use recover::{recover_voters, RecoverError, RecoverReport};
pub use status::{
    FollowerStatus, HandshakeRefusal, Leadership, NodeStatus, PeerChannel, PeerConnection,
    PeerStatus, Role, Unreachable, PEER_STATE_TTL, PEER_WARN_INTERVAL,
};
pub use store::{Acks, Applied, Proposed};
pub use view::{MetadataChanged, MetadataView, TopicView};

/// Compiles the README's code blocks (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
