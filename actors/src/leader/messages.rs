//! What a `FollowerLink` tells the `Replicator`, and the leader's log they
//! share.
//!
//! They live apart from both actors so that neither file imports the
//! other's: the Replicator starts and supervises the links (it imports
//! `link`), and a link reaches the Replicator only through a
//! `Recipient<LinkEvent>`.

use actix::prelude::*;
use metawal::epochs::EpochIndex;
use metawal::replication::TailCache;
use metawal::NodeId;

/// The leader's log as links read it: epoch boundaries and recent records.
#[derive(Debug)]
pub struct LeaderLog {
    /// Epoch boundaries of the whole log (for the start-point decision).
    pub epochs: EpochIndex,
    /// The newest records, bounded in bytes.
    pub tail: TailCache,
}

/// What a link reports.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) enum LinkEvent {
    /// Handshake done; the follower's log matches up to `matched`.
    Connected { peer: NodeId, matched: u64 },
    /// Cumulative ack.
    Acked { peer: NodeId, offset: u64 },
    /// The connection dropped.
    Disconnected { peer: NodeId },
    /// The follower's handshake proved its data directory id.
    Identified {
        peer: NodeId,
        directory_id: metawal::membership::DirectoryId,
    },
    /// The follower knows a higher epoch.
    Fenced {
        peer: NodeId,
        epoch: u64,
        leader: Option<NodeId>,
        /// The refusal carried a valid proof.
        proven: bool,
    },
}
