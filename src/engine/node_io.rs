//! The node engine's vocabulary: the role it publishes, its inputs and
//! actions, and why a transfer fails (see [`super::node`], which decides).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::election::{ElectionInput, ElectionMsg};
use super::store::NodeRole;
use crate::command::NodeId;

/// What a node is doing: the one role type (status, metrics, the HTTP
/// API and the leadership stream show it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Appends proposals and replicates them.
    Leader,
    /// Receives the leader's log (also while standing for election or
    /// changing role).
    Follower,
    /// Its storage failed: it no longer appends or votes (restart it).
    Failed,
    /// Shut down (or shutting down).
    Stopped,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Failed => "failed",
            Role::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The steps of taking the leadership, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StepUpStep {
    /// The log owner releasing the follower's log.
    #[error("releasing the follower's log")]
    ReleaseLog,
    /// Persisting the new epoch.
    #[error("persisting the epoch")]
    PersistEpoch,
    /// The Replicator starting and the store taking the leadership
    /// (appending `LeaderChange`).
    #[error("the store taking the leadership")]
    TakeLeadership,
}

/// The leadership facts readers see, published whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The role.
    pub role: Role,
    /// The highest epoch the node acts in.
    pub epoch: u64,
    /// The leader it names: itself when it leads; a follower's leader only
    /// while heard from within the election timeout.
    pub leader: Option<NodeId>,
    /// A leader transfer is under way: proposals are refused.
    pub transferring: bool,
}

impl Published {
    /// What a proposal is told, from the published facts alone (the rule
    /// the node's `MetadataStore` applies): only a leader that is not
    /// transferring admits; a follower names the leader it publishes.
    pub fn admission(&self) -> NodeRole {
        match self.role {
            Role::Leader if !self.transferring => NodeRole::Leader,
            // A leader handing over takes no proposals.
            Role::Leader => NodeRole::Follower { leader: None },
            Role::Follower => NodeRole::Follower {
                leader: self.leader,
            },
            Role::Failed => NodeRole::Failed,
            Role::Stopped => NodeRole::Stopped,
        }
    }
}

/// Why a transfer ended without the target leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferFailed {
    /// This node does not lead (any more).
    #[error("this node does not lead")]
    NotLeader,
    /// Another transfer is under way.
    #[error("another transfer (to node {to}) is under way")]
    InProgress {
        /// Its target.
        to: NodeId,
    },
    /// The target is not a voter (or is this node).
    #[error("node {to} is not another voter")]
    UnknownPeer {
        /// The target asked for.
        to: NodeId,
    },
    /// A step took longer than its limit.
    #[error("timed out {step} after {waited:?}")]
    TimedOut {
        /// "catching up" or "electing".
        step: &'static str,
        /// How long it waited.
        waited: Duration,
    },
    /// The node is shutting down or failed.
    #[error("the node is stopping")]
    Stopping,
}

/// An event for the node engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeInput {
    /// An input for the election: a tick, a message from a voter, a
    /// leader or follower heard, a higher epoch seen.
    Election(ElectionInput),
    /// A vote write ([`NodeAction::PersistVote`]) is on disk; `log` (the
    /// `log` passed with this input) is the log end as of its fence.
    VotePersisted {
        /// The epoch written.
        epoch: u64,
        /// The vote written.
        voted_for: Option<NodeId>,
    },
    /// A vote write failed or was refused; `current` is a higher epoch on
    /// disk, if that was why.
    VoteFailed {
        /// The epoch of the write.
        epoch: u64,
        /// The vote of the write.
        voted_for: Option<NodeId>,
        /// A higher epoch found on disk.
        current: Option<u64>,
    },
    /// [`NodeAction::ReleaseLog`] done: the log's commit point.
    LogReleased {
        /// The commit point the follower knew.
        commit: u64,
    },
    /// [`NodeAction::PersistEpoch`] done.
    EpochPersisted,
    /// [`NodeAction::StartLeading`] done: the node leads.
    LeadingStarted,
    /// A step-up step failed; `current` is a higher epoch found on disk,
    /// if that was why.
    StepFailed {
        /// The step.
        step: StepUpStep,
        /// A higher epoch on disk.
        current: Option<u64>,
    },
    /// [`NodeAction::StopLeading`] done.
    LeadingStopped,
    /// [`NodeAction::ResumeFollowing`] done: the node follows; `epoch` and
    /// `leader` are its meta as read back.
    Resumed {
        /// The epoch on disk.
        epoch: u64,
        /// The leader on disk.
        leader: Option<NodeId>,
    },
    /// The log or meta could not be read back: the node fail-stops.
    ReadBackFailed,
    /// The log owner accepted `leader`'s session in `epoch` (persisted).
    LeaderAttached {
        /// The epoch.
        epoch: u64,
        /// The leader.
        leader: NodeId,
    },
    /// Hand the leadership to `to`.
    Transfer {
        /// The target.
        to: NodeId,
    },
    /// [`NodeAction::WatchCatchUp`]: `to` has the whole log.
    CaughtUp {
        /// The target.
        to: NodeId,
    },
    /// The node is shutting down.
    Shutdown,
    /// A part of the node (store, log owner, Replicator) fail-stopped on a
    /// storage failure.
    StorageFailed,
    /// The log owner appended a `Membership` entry at `offset` (leader or
    /// follower): it is in force from now.
    MembershipAppended {
        /// Its offset.
        offset: u64,
        /// The membership it holds.
        membership: crate::membership::Membership,
    },
    /// The log lost every entry after `after` (a new leader's truncation):
    /// memberships appended there revert.
    LogTruncated {
        /// The last offset kept.
        after: u64,
    },
    /// Everything up to `offset` is committed: the membership entries there
    /// are settled (and no longer kept one by one).
    Committed {
        /// The commit point.
        offset: u64,
    },
    /// The log now starts after a snapshot at `offset` (a follower
    /// installed one from its leader): `membership` is the one the snapshot
    /// holds, and every membership this log knew is replaced.
    MembershipReset {
        /// The snapshot's offset.
        offset: u64,
        /// The membership in force at it.
        membership: crate::membership::Membership,
    },
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// The membership in force changed (appended, or reverted by a
    /// truncation): replicate to its members (links for new ones, none for
    /// removed ones) and count its voters from now on.
    MembershipChanged(crate::membership::Membership),
    /// Publish the leadership facts (one value, replacing the last).
    Publish(Published),
    /// Send an election message (best effort).
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        msg: ElectionMsg,
    },
    /// Fence the log at `epoch`, write the vote; answer
    /// [`NodeInput::VotePersisted`] or [`NodeInput::VoteFailed`].
    PersistVote {
        /// The epoch.
        epoch: u64,
        /// The vote.
        voted_for: Option<NodeId>,
    },
    /// Step-up 1: the log owner ends its sessions and lets its in-flight
    /// write finish; answer [`NodeInput::LogReleased`].
    ReleaseLog {
        /// The epoch won.
        epoch: u64,
    },
    /// Step-up 2: write meta (`epoch`, leader = this node, `commit_hint`),
    /// fenced against the meta on disk; answer [`NodeInput::EpochPersisted`].
    PersistEpoch {
        /// The epoch won.
        epoch: u64,
        /// The commit point the log was released with.
        commit_hint: u64,
    },
    /// Step-up 3: start the Replicator (links to every peer) on the log
    /// released, and the store's leadership (it appends `LeaderChange`);
    /// answer [`NodeInput::LeadingStarted`].
    StartLeading {
        /// The epoch.
        epoch: u64,
        /// The commit point the log was released with.
        commit: u64,
    },
    /// Stop the Replicator if one runs (waiting proposals fail), drop the
    /// store's leadership; answer [`NodeInput::LeadingStopped`].
    StopLeading,
    /// Follow again with the log and meta as on disk once every queued
    /// write is done; answer [`NodeInput::Resumed`] or
    /// [`NodeInput::ReadBackFailed`].
    ResumeFollowing {
        /// Keep the commit point the node knew (a step-down), or start from
        /// what the log owner learns (a rollback: nothing was led).
        keep_commit: bool,
    },
    /// Answer [`NodeInput::CaughtUp`] once `to` has acknowledged the
    /// leader's whole log (no polling: on its acknowledgements).
    WatchCatchUp {
        /// The transfer's target.
        to: NodeId,
    },
    /// A transfer ended: the waiting caller gets this.
    TransferEnded {
        /// The target.
        to: NodeId,
        /// Whether `to` leads.
        outcome: Result<(), TransferFailed>,
    },
}

/// A bug planted on purpose, for the simulation to catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePlant {
    /// A failed step-up goes back to following without stopping what it
    /// started or resuming the log owner.
    SkipRollback,
    /// Proposals are admitted while a transfer is under way.
    AdmitWhileTransferring,
}
