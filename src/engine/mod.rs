//! The protocol as pure state machines, one per actor role.
//!
//! An engine holds a role's protocol state and makes every decision of that
//! role; the actor around it (in `metawal-actors`) owns the sockets, files,
//! timers and reply channels, feeds events in and carries the returned
//! actions out. Engines take time as an argument and do no I/O, so unit
//! tests assert the exact actions an input produces, and the simulation
//! runs the same engines the actors run.
//!
//! Each engine is named after the actor that pumps it, so the pairs read
//! as one: `MetadataStore` ⇄ [`store::MetadataStoreEngine`], `Replicator`
//! ⇄ [`leader::ReplicatorEngine`], `FollowerLink` ⇄
//! [`link::FollowerLinkEngine`], `ReplicaListener` ⇄
//! [`follower::ReplicaListenerEngine`], `ReplicaSession` ⇄
//! [`session::ReplicaSessionEngine`], and `NodeDriver` ⇄
//! [`node::NodeEngine`] (which composes [`election::ElectionEngine`]).
//!
//! - [`leader`]: the leader's own WAL writes (group commit, a full disk
//!   queue, a failed disk), the ISR and the commit point, and the proposals
//!   waiting for them.
//! - [`link`]: the leader's link to one follower: connecting and backoff,
//!   the authenticated handshake, the start point, what to send next
//!   (tail, WAL read or snapshot) within the window, heartbeats, and the
//!   session timeout.
//! - [`session`]: one inbound replication connection on a follower: the
//!   handshake it answers, the checks on every frame, snapshot reassembly,
//!   acks, and the session timeout.
//! - [`disk_io`]: what a node asks of its storage, as typed requests and
//!   completions, carried out by the disk threads and the simulated disk.
//! - [`election`]: leader election (pre-vote, vote, check-quorum, resign,
//!   transfer).
//! - [`read_index`]: when a leader may answer a linearizable read.
//! - [`epoch`]: epoch fencing, one rule for every path that persists an
//!   epoch.
//! - [`follower`]: the follower's log owner: the active session, the
//!   epoch persisted before it is acted on, the group-commit queue, the
//!   commit point learned, truncations and snapshot installs (and what they
//!   may do to the log), what the store must hear of them, and the
//!   fail-stop on a disk failure.
//! - [`store`]: when to snapshot, and what failed snapshots and failed reads
//!   of committed entries mean.

/// A uniform number in [0, 1) from a seeded xorshift64* generator whose
/// state is `rng` (never 0). The engines' one source of jitter, so a seed
/// replays exactly.
pub(crate) fn unit_jitter(rng: &mut u64) -> f64 {
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    let x = rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

pub mod disk_io;
pub mod election;
pub mod epoch;
pub mod follower;
pub mod follower_io;
pub mod leader;
pub mod link;
pub mod link_io;
pub mod node;
pub mod node_io;
pub mod read_index;
pub mod recovery;
pub mod session;
pub mod store;
pub mod store_io;
pub mod store_policy;

pub use follower::{
    AttachRefused, FenceRefused, FollowerAction, FollowerInput, ReplicaListenerEngine, StoreEvent,
};
pub use leader::{Acks, LeaderAction, LeaderError, LeaderInput, ProposalId, ReplicatorEngine};
pub use link::{
    FollowerLinkEngine, LinkAction, LinkInput, LinkReport, LinkSetup, LogProgress, LogView,
    ReadFailure, SnapshotBytes,
};
pub use session::{Local, ReplicaSessionEngine, SessionAction, SessionInput};
