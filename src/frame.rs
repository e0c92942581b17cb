//! The frames of the replication protocol (see `docs/protocol.md`).
//!
//! On the wire each frame is a u32 big-endian length followed by the
//! MessagePack encoding of a [`Frame`]; [`crate::codec::FrameCodec`] does the
//! framing. One TCP connection per follower; the follower speaks first.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::command::NodeId;
use crate::membership::DirectoryId;

/// Version of this protocol; both sides must agree (2: election frames; 3:
/// heartbeats carry a sequence number that acks echo; 4: vote replies and
/// `Welcome` carry the sender's directory id).
pub const PROTOCOL_VERSION: u32 = 4;

/// Length of the random nonces exchanged in the handshake.
pub const NONCE_LEN: usize = 16;

/// Why a follower refuses a leader's `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// Different protocol version.
    ProtocolMismatch,
    /// Different cluster id.
    ClusterMismatch,
    /// The proof does not verify: the secret differs.
    BadProof,
    /// The leader's epoch is lower than one this node has seen.
    StaleEpoch,
    /// Another leader is already known for the leader's epoch: two nodes
    /// claim the same epoch (a misconfiguration; stepping down alone does not
    /// fix it, an operator must).
    EpochConflict,
    /// The node is not a follower (it leads, or is shutting down).
    NotFollower,
    /// The frame was not expected at this point of the handshake.
    Unexpected,
    /// The node id claimed in the handshake is not one the peer's TLS
    /// certificate was issued for (a certificate for node 2 used to act as
    /// node 3).
    NotCertified,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Follower → leader, first frame on a connection.
    Challenge {
        /// [`PROTOCOL_VERSION`] of the follower.
        protocol: u32,
        /// The follower's cluster id.
        cluster_id: String,
        /// The follower's node id.
        node_id: NodeId,
        /// Random bytes the leader must sign.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
    },
    /// Leader → follower: who leads which epoch, and proof of the secret.
    Hello {
        /// [`PROTOCOL_VERSION`] of the leader.
        protocol: u32,
        /// The leader's cluster id.
        cluster_id: String,
        /// The leader's node id.
        leader_id: NodeId,
        /// The leader's epoch.
        epoch: u64,
        /// Random bytes the follower must sign.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        /// HMAC-SHA256 over the follower's nonce and these fields.
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// Follower → leader: accepted; where my log ends.
    Welcome {
        /// The follower's node id.
        node_id: NodeId,
        /// Last offset in the follower's log (0 if empty).
        last_offset: u64,
        /// Epoch of that entry (0 if empty).
        last_epoch: u64,
        /// The follower's data directory id: the leader pins it in the
        /// membership where it is not known yet.
        directory_id: DirectoryId,
        /// HMAC-SHA256 over the leader's nonce and these fields.
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// Follower → leader: refused; the connection closes after it.
    Reject {
        /// Why.
        reason: RejectReason,
        /// The highest epoch the follower knows.
        epoch: u64,
        /// The leader the follower knows for that epoch, if any.
        leader: Option<NodeId>,
        /// HMAC-SHA256 over the leader's nonce and these fields, when the
        /// follower verified the leader's `Hello` before refusing (a stale
        /// or conflicting epoch); empty otherwise. A proven higher epoch
        /// makes the leader step down.
        #[serde(default, with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// Leader → follower: drop every entry after `to`, then report `Position`.
    Truncate {
        /// Last offset to keep.
        to: u64,
    },
    /// Follower → leader: the end of its log after a `Truncate` or snapshot.
    Position {
        /// Last offset in the follower's log.
        last_offset: u64,
        /// Its epoch.
        last_epoch: u64,
    },
    /// Leader → follower: WAL records, byte for byte, starting at `first_offset`.
    Append {
        /// Offset of the first record in `records`.
        first_offset: u64,
        /// Concatenated WAL records (see [`crate::record`]).
        records: Bytes,
        /// The leader's commit point.
        commit: u64,
    },
    /// Follower → leader: every offset up to `offset` is durable here.
    Ack {
        /// Cumulative durable offset.
        offset: u64,
        /// The highest `Heartbeat::seq` the follower had received on this
        /// connection when it sent this ack (0: none yet). The ack was
        /// written after that heartbeat was read, so the leader knows the
        /// follower still followed it at some time after it sent the
        /// heartbeat: what read index and check-quorum need.
        seq: u64,
    },
    /// Leader → follower: the commit point, and a probe of the follower
    /// (on an idle link, and at least every heartbeat interval under load).
    /// The follower answers a new `seq` with an `Ack` echoing it.
    Heartbeat {
        /// The leader's commit point.
        commit: u64,
        /// The leader's probe number on this connection (from 1, rising).
        seq: u64,
    },
    /// Leader → follower: part of a snapshot, for a follower behind the log start.
    SnapshotChunk {
        /// Offset the snapshot covers up to.
        offset: u64,
        /// Epoch of the entry at `offset`.
        epoch: u64,
        /// Total length of the encoded snapshot.
        total_len: u64,
        /// Byte position of `data` in the encoded snapshot.
        position: u64,
        /// Chunk bytes.
        data: Bytes,
    },
    /// Voter → node, instead of `Hello` on an election connection: who
    /// this voter is, and proof of the secret.
    VoterHello {
        /// [`PROTOCOL_VERSION`] of the voter.
        protocol: u32,
        /// The voter's cluster id.
        cluster_id: String,
        /// The voter's node id.
        node_id: NodeId,
        /// Random bytes the accepting node must sign.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        /// HMAC-SHA256 over the accepting node's nonce and these fields.
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// Node → voter: accepted; proof of the secret.
    VoterWelcome {
        /// The accepting node's id.
        node_id: NodeId,
        /// HMAC-SHA256 over the voter's nonce and the node id.
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// Voter → node on an authenticated election connection: one election
    /// message (pre-vote, vote, their replies, resign, elect-now).
    Election {
        /// The message.
        msg: ElectionMsg,
    },
}

impl Frame {
    /// A short name of the frame kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Challenge { .. } => "Challenge",
            Frame::Hello { .. } => "Hello",
            Frame::Welcome { .. } => "Welcome",
            Frame::Reject { .. } => "Reject",
            Frame::Truncate { .. } => "Truncate",
            Frame::Position { .. } => "Position",
            Frame::Append { .. } => "Append",
            Frame::Ack { .. } => "Ack",
            Frame::Heartbeat { .. } => "Heartbeat",
            Frame::SnapshotChunk { .. } => "SnapshotChunk",
            Frame::VoterHello { .. } => "VoterHello",
            Frame::VoterWelcome { .. } => "VoterWelcome",
            Frame::Election { .. } => "Election",
        }
    }
}

/// An election message between voters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ElectionMsg {
    /// Would you vote for me in `epoch`? (Changes nothing at the voter.)
    PreVote {
        /// The epoch the asker would stand in (its own + 1).
        epoch: u64,
        /// The asker's last log epoch.
        last_epoch: u64,
        /// The asker's last offset.
        last_offset: u64,
    },
    /// The answer to a `PreVote`.
    PreVoteReply {
        /// The epoch asked about.
        epoch: u64,
        /// The voter's own epoch.
        current: u64,
        /// Granted.
        granted: bool,
        /// The voter's data directory id: a grant from a directory other
        /// than the one the membership names (a wiped disk under the old
        /// id) counts for nothing.
        directory: DirectoryId,
    },
    /// Vote for me in `epoch`.
    Vote {
        /// The asker's new epoch.
        epoch: u64,
        /// The asker's last log epoch.
        last_epoch: u64,
        /// The asker's last offset.
        last_offset: u64,
        /// Asked for by the leader (a transfer): granted even while the
        /// voter hears that leader.
        transfer: bool,
    },
    /// The answer to a `Vote`.
    VoteReply {
        /// The epoch asked about.
        epoch: u64,
        /// The voter's own epoch.
        current: u64,
        /// Granted.
        granted: bool,
        /// The voter's data directory id: a grant from a directory other
        /// than the one the membership names (a wiped disk under the old
        /// id) counts for nothing.
        directory: DirectoryId,
    },
    /// The leader of `epoch` shuts down: elect now.
    Resign {
        /// Its epoch.
        epoch: u64,
    },
    /// The leader of `epoch` hands leadership to the receiver: stand now.
    ElectNow {
        /// Its epoch.
        epoch: u64,
    },
}

impl ElectionMsg {
    /// The epoch a message is about.
    pub fn epoch(&self) -> u64 {
        match *self {
            ElectionMsg::PreVote { epoch, .. }
            | ElectionMsg::PreVoteReply { epoch, .. }
            | ElectionMsg::Vote { epoch, .. }
            | ElectionMsg::VoteReply { epoch, .. }
            | ElectionMsg::Resign { epoch }
            | ElectionMsg::ElectNow { epoch } => epoch,
        }
    }
}
