//! Admitting a membership change: the one copy of the rules.
//!
//! A leader appends a change only when
//! 1. it has committed an entry of its own epoch (its `LeaderChange`): two
//!    single-server changes appended by leaders of different epochs could
//!    otherwise both commit on majorities that do not intersect (Ongaro's
//!    2015 fix for the single-server change bug);
//! 2. no other membership entry is uncommitted: one change at a time, so
//!    the old and the new voter sets always differ by one voter and any
//!    majority of one intersects any majority of the other;
//! 3. the change makes sense against the membership in force: a learner is
//!    added under a new id, promoted only when caught up, and the last
//!    voter, or the leader itself, is never removed (transfer first).
//!
//! Anything else is a typed [`ChangeRefused`] that says why and what to do;
//! a change is never turned into a silent no-op.

use crate::id::NodeId;
use crate::membership::{
    DirectoryId, Member, MemberRole, Membership, MembershipError, MembershipLog,
};

/// A membership change asked of the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Start replicating to a new, non-voting member.
    AddLearner(Member),
    /// Make a caught-up learner a voter.
    Promote(NodeId),
    /// Remove a learner or a voter (not the leader: transfer first).
    Remove(NodeId),
    /// Change no member, only write down the directory ids the membership
    /// does not know yet and the members' handshakes have proved (the
    /// leader asks it of itself after an election, so that a cluster
    /// bootstrapped from flags pins its voters' directories without an
    /// operator's change).
    PinDirectories,
}

impl MemberChange {
    /// The node the change is about (none for
    /// [`MemberChange::PinDirectories`]).
    pub fn node_id(&self) -> Option<NodeId> {
        match self {
            MemberChange::AddLearner(m) => Some(m.node_id),
            MemberChange::Promote(id) | MemberChange::Remove(id) => Some(*id),
            MemberChange::PinDirectories => None,
        }
    }
}

/// How far a member is (what promoting a learner is decided on), and
/// which data directory answered, as the leader's link to it last saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerProgress {
    /// The highest offset it acknowledged as durable.
    pub acked: u64,
    /// Whether it answered within the election timeout.
    pub heard_recently: bool,
    /// The directory id its last handshake proved
    /// ([`DirectoryId::UNKNOWN`] if none yet).
    pub directory_id: DirectoryId,
}

/// What the leader knows when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeContext {
    /// The leader deciding.
    pub leader: NodeId,
    /// Its data directory id.
    pub leader_directory: DirectoryId,
    /// Its commit point.
    pub commit: u64,
    /// The offset of its own epoch's first entry (its `LeaderChange`).
    pub epoch_start: u64,
    /// Its log's last offset.
    pub last_offset: u64,
    /// How many entries behind the leader's last offset a learner may be
    /// and still count as caught up.
    pub max_lag_entries: u64,
}

/// Why a membership change was refused. Nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    /// The leader has not committed an entry of its own epoch yet.
    #[error("the leader has not committed an entry of its epoch yet (its first entry is at offset {epoch_start}, commit is {commit}); retry in a moment")]
    LeaderNotReady {
        /// The leader's first entry of its epoch.
        epoch_start: u64,
        /// Its commit point.
        commit: u64,
    },
    /// Another membership change is appended and not committed.
    #[error("another membership change (offset {offset}) is not committed yet; retry when it is")]
    ChangeInProgress {
        /// Its offset.
        offset: u64,
    },
    /// The node named is not a member.
    #[error("node {node_id} is not a member; list the members to see who is")]
    UnknownNode {
        /// The id.
        node_id: NodeId,
    },
    /// The id is already taken (ids are never reused: remove the old member
    /// first, and give a wiped disk a new id or re-add it after removal).
    #[error("node {node_id} is already a {role}; remove it first to re-add it")]
    AlreadyMember {
        /// The id.
        node_id: NodeId,
        /// What it is.
        role: MemberRole,
    },
    /// Only a learner can be promoted.
    #[error("node {node_id} is already a voter")]
    AlreadyVoter {
        /// The id.
        node_id: NodeId,
    },
    /// The learner is not caught up (or not heard from recently).
    #[error("learner {node_id} is not caught up: it has {acked} of the leader's {last_offset} entries (at most {max_lag} behind allowed){}", if *.heard_recently { "" } else { ", and was not heard within the election timeout" })]
    NotCaughtUp {
        /// The learner.
        node_id: NodeId,
        /// What it acknowledged.
        acked: u64,
        /// The leader's last offset.
        last_offset: u64,
        /// The allowed lag.
        max_lag: u64,
        /// Whether it was heard within the election timeout.
        heard_recently: bool,
    },
    /// Removing the last voter would leave nobody to commit.
    #[error("node {node_id} is the last voter; add and promote another first")]
    WouldLeaveNoVoters {
        /// The id.
        node_id: NodeId,
    },
    /// The leader cannot remove itself: transfer the leadership first.
    #[error(
        "node {node_id} leads; transfer the leadership to another voter first, then remove it"
    )]
    RemoveLeader {
        /// The id.
        node_id: NodeId,
    },
    /// This node does not lead (or is transferring its leadership): ask the
    /// leader.
    #[error("this node is not the leader{}", match .leader { Some(l) => format!("; node {l} is"), None => String::new() })]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// The node runs with a fixed voter set (no membership log).
    #[error("this node runs with a fixed voter set; membership changes are not enabled")]
    FixedMembership,
    /// [`MemberChange::PinDirectories`]: every directory id is known, or
    /// none of the unknown ones has been proved by a handshake yet.
    #[error("no directory id to pin: each is known, or its member has not connected yet")]
    NothingToPin,
    /// The membership that would result is not well formed.
    #[error("the change is invalid: {0}")]
    Invalid(#[from] MembershipError),
}

/// Whether the leader may append `change` now, given the membership log
/// of its log, and if so the membership to append. `progress` says how far
/// a learner is (None: no link to it has reported yet).
pub fn admit_change(
    log: &MembershipLog,
    ctx: &ChangeContext,
    change: &MemberChange,
    progress: impl Fn(NodeId) -> Option<LearnerProgress>,
) -> Result<Membership, ChangeRefused> {
    if ctx.commit < ctx.epoch_start {
        return Err(ChangeRefused::LeaderNotReady {
            epoch_start: ctx.epoch_start,
            commit: ctx.commit,
        });
    }
    if let Some((offset, _)) = log.uncommitted(ctx.commit) {
        return Err(ChangeRefused::ChangeInProgress { offset });
    }
    let current = log.latest();
    // A member whose directory id the membership does not know yet (a
    // bootstrap voter, a learner added without one) gets the one its
    // handshake proved: from this change on, a wiped disk under its id
    // is told apart (its votes do not count; see `ElectionEngine`).
    let pin = |mut m: Member| {
        if m.directory_id.is_unknown() {
            m.directory_id = if m.node_id == ctx.leader {
                ctx.leader_directory
            } else {
                progress(m.node_id).map_or(DirectoryId::UNKNOWN, |p| p.directory_id)
            };
        }
        m
    };
    let voters = || current.voters().cloned().map(pin);
    let learners = || current.learners().cloned().map(pin);
    match change {
        MemberChange::AddLearner(member) => {
            if let Some((_, role)) = current.member(member.node_id) {
                return Err(ChangeRefused::AlreadyMember {
                    node_id: member.node_id,
                    role,
                });
            }
            Ok(Membership::new(
                voters(),
                learners().chain(std::iter::once(member.clone())),
            )?)
        }
        &MemberChange::Promote(node_id) => {
            let learner = match current.member(node_id) {
                None => return Err(ChangeRefused::UnknownNode { node_id }),
                Some((_, MemberRole::Voter)) => {
                    return Err(ChangeRefused::AlreadyVoter { node_id })
                }
                Some((m, MemberRole::Learner)) => pin(m.clone()),
            };
            let p = progress(node_id).unwrap_or(LearnerProgress {
                acked: 0,
                heard_recently: false,
                directory_id: DirectoryId::UNKNOWN,
            });
            let caught_up =
                p.heard_recently && p.acked.saturating_add(ctx.max_lag_entries) >= ctx.last_offset;
            if !caught_up {
                return Err(ChangeRefused::NotCaughtUp {
                    node_id,
                    acked: p.acked,
                    last_offset: ctx.last_offset,
                    max_lag: ctx.max_lag_entries,
                    heard_recently: p.heard_recently,
                });
            }
            Ok(Membership::new(
                voters().chain(std::iter::once(learner)),
                learners().filter(|l| l.node_id != node_id),
            )?)
        }
        MemberChange::PinDirectories => {
            let pinned = Membership::new(voters(), learners())?;
            if pinned == *current {
                return Err(ChangeRefused::NothingToPin);
            }
            Ok(pinned)
        }
        &MemberChange::Remove(node_id) => match current.member(node_id) {
            None => Err(ChangeRefused::UnknownNode { node_id }),
            Some((_, MemberRole::Learner)) => Ok(Membership::new(
                voters(),
                learners().filter(|l| l.node_id != node_id),
            )?),
            Some((_, MemberRole::Voter)) => {
                if node_id == ctx.leader {
                    return Err(ChangeRefused::RemoveLeader { node_id });
                }
                if current.voter_count() == 1 {
                    return Err(ChangeRefused::WouldLeaveNoVoters { node_id });
                }
                Ok(Membership::new(
                    voters().filter(|v| v.node_id != node_id),
                    learners(),
                )?)
            }
        },
    }
}
