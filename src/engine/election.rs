//! Leader election: Raft's (Ongaro §3.4, §9.6 pre-vote, §6.2 check-quorum),
//! as KRaft does it for its metadata log (KIP-595, KIP-996).
//!
//! Why in its own engine: who may lead, and when, is the one decision every
//! other role depends on, and it is exactly the kind of decision that must
//! be tested deterministically. The shell (an actor on a real node, the
//! simulation's node otherwise) carries its messages, persists its votes and
//! starts or stops the leader role when told to.
//!
//! The rules, one per input:
//! - **Timeout.** A follower that has heard nothing from a leader for a
//!   randomized election timeout in `[T, 2T)` starts a *pre-vote*: it asks
//!   every voter whether it would vote for it in `epoch + 1`, without
//!   changing its epoch. A voter grants a pre-vote only if it does not hear a
//!   live leader itself (nor leads) and the asker's log is at least as
//!   up to date as its own. So a node that was partitioned away, or
//!   restarted with a stale epoch, can never disrupt a healthy leader.
//! - **Vote.** With a majority of pre-votes the node persists `(epoch + 1,
//!   voted_for = itself)` and only then asks for votes. A voter in a lower
//!   epoch moves up to the asker's epoch; it grants if it has not voted for
//!   another node in that epoch and the asker's `(last_epoch, last_offset)`
//!   is at least its own, and it answers only once `(epoch, voted_for)` is
//!   on disk. While it hears a live leader it refuses (unless the vote is a
//!   leader transfer).
//! - **Win.** A majority of votes (its own counted) makes the candidate
//!   leader: [`ElectionAction::BecomeLeader`]. The shell appends the
//!   epoch's `LeaderChange`; the leader engine commits nothing before it.
//! - **Split vote.** A round that does not finish within `[T, 2T)` starts
//!   again with a pre-vote, after a new random timeout (the jitter breaks
//!   ties).
//! - **Check-quorum.** A leader that has not heard from a majority (itself
//!   counted) within `T` steps down ([`ElectionAction::StepDown`]): its
//!   waiting proposals fail at once (their outcome is open: the next leader
//!   may or may not have them) and new ones get `NotLeader`, instead of
//!   hanging.
//! - **Resign.** A leader that shuts down cleanly tells the others, which
//!   forget it and elect within a short random delay instead of `T`.
//! - **Transfer.** [`ElectionInput::TransferTo`] sends `ElectNow` to the
//!   target, which skips the pre-vote and asks for votes marked as a
//!   transfer, which voters grant even while they hear the old leader.
//! - **Higher epochs.** Any message or leader contact from a higher epoch
//!   moves this node to it (persisted, not voted) and makes it a follower.
//!
//! The shape is the other engines': [`ElectionEngine::handle`] takes one
//! input at `now` with this node's log end, [`ElectionEngine::poll_action`]
//! returns what to do, [`ElectionEngine::poll_timeout`] when to call back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::command::NodeId;
use crate::membership::DirectoryId;

// The voter's side: answering vote requests, and the vote write that
// must be on disk before anything that depends on it is sent.
#[path = "election_vote.rs"]
mod vote;
// The transitions between roles: the timer, the rounds, stepping down.
#[path = "election_roles.rs"]
mod roles;
use vote::{AfterPersist, Vote};

/// A log end: `(last_epoch, last_offset)`, compared in that order (Raft's
/// up-to-date rule).
pub type LastLog = (u64, u64);

/// This node's part in elections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionRole {
    /// Follows the leader it knows, if any.
    Follower,
    /// Asking for pre-votes (epoch unchanged).
    PreCandidate,
    /// Asking for votes in its new epoch.
    Candidate,
    /// Leads its epoch.
    Leader,
}

// The messages travel in frames: the wire format owns them, the engine
// decides on them.
pub use crate::frame::ElectionMsg;

/// An event for the election engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionInput {
    /// The timer: election timeout, check-quorum.
    Tick,
    /// A message from another voter.
    Received {
        /// The sender.
        from: NodeId,
        /// The message.
        msg: ElectionMsg,
    },
    /// The answer to [`ElectionAction::PersistVote`]: on disk. The `log`
    /// passed to [`ElectionEngine::handle`] with it must be the log end as
    /// of the fence the shell set before writing (see
    /// [`ElectionAction::PersistVote`]): vote grants and vote requests that
    /// waited for this write are decided and built with it.
    Persisted {
        /// The epoch written.
        epoch: u64,
        /// The vote written.
        voted_for: Option<NodeId>,
    },
    /// Replication from `leader` in `epoch` (it attached, appended, or sent
    /// a heartbeat): a live leader.
    LeaderHeard {
        /// The leader.
        leader: NodeId,
        /// Its epoch.
        epoch: u64,
    },
    /// Replication saw a higher epoch (a follower refused this leader as
    /// stale): move to it and follow.
    HigherEpoch {
        /// The epoch seen.
        epoch: u64,
    },
    /// The answer to [`ElectionAction::PersistVote`] when the write was
    /// refused or failed: what waited for it is dropped, never sent (the
    /// election retries). `current` is the epoch found on disk, if higher.
    PersistFailed {
        /// The epoch of the write.
        epoch: u64,
        /// The vote of the write.
        voted_for: Option<NodeId>,
        /// A higher epoch found on disk, to move to.
        current: Option<u64>,
    },
    /// Leader only: `peer` answered in this epoch (an ack or a handshake)
    /// and so still followed this leader at `since` (the send time of
    /// what it answered, see `LinkReport::Heard`).
    FollowerHeard {
        /// The follower.
        peer: NodeId,
        /// When the answered frame was sent (not when the answer came).
        since: Instant,
    },
    /// Leader only: hand leadership to `to` now (it has caught up).
    TransferTo {
        /// The target.
        to: NodeId,
    },
    /// Leader only: this node shuts down cleanly.
    Resign,
    /// The voter set in force changed (a membership entry was appended, or
    /// a truncation reverted one). From now on majorities are counted over
    /// `voters`; a node outside it never stands, and answers from outside
    /// it count for nothing. Each voter's directory id, where known
    /// (not [`DirectoryId::UNKNOWN`]), must be the one its grants carry,
    /// and this node stands only if its own matches.
    VotersChanged {
        /// The voters now (this node may or may not be one), with their
        /// directory ids.
        voters: BTreeMap<NodeId, DirectoryId>,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionAction {
    /// Send `msg` to `to` (best effort: lost messages are retried by the
    /// next round).
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        msg: ElectionMsg,
    },
    /// Fence the log at `epoch` (from now on no entry of a lower epoch is
    /// accepted or acknowledged), then write `(epoch, voted_for)` durably;
    /// answer [`ElectionInput::Persisted`] with the log end as of the fence
    /// (or [`ElectionInput::PersistFailed`]). Writes are answered in order.
    ///
    /// Why the fence: a vote is granted against this node's log end. If the
    /// old leader could still append (and be acknowledged) after that, it
    /// could commit an entry the new leader does not have.
    PersistVote {
        /// The epoch.
        epoch: u64,
        /// The vote (`None`: moved to the epoch without voting).
        voted_for: Option<NodeId>,
    },
    /// This node won `epoch`: start leading (append its `LeaderChange`).
    BecomeLeader {
        /// The epoch won.
        epoch: u64,
    },
    /// This node stops leading (or standing) and follows, in `epoch`, the
    /// `leader` if known.
    StepDown {
        /// The epoch it is in now.
        epoch: u64,
        /// The leader, if known.
        leader: Option<NodeId>,
    },
}

/// Election settings.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// `T`: the election timeout is drawn from `[T, 2T)`; a leader not heard
    /// from for `T` is dead to its followers; a leader that has not heard a
    /// majority for `T` steps down.
    pub election_timeout: Duration,
}

/// The election engine of one voter (see the module docs).
#[derive(Debug, Clone)]
pub struct ElectionEngine {
    node: NodeId,
    /// This node's data directory id (sent with every reply).
    directory: DirectoryId,
    voters: BTreeSet<NodeId>,
    /// The voters' directory ids the membership names (unknown ones left
    /// out): a grant is counted only from that directory.
    directories: BTreeMap<NodeId, DirectoryId>,
    config: ElectionConfig,
    rng: u64,
    role: ElectionRole,
    /// The epoch this node is in (maybe not on disk yet).
    epoch: u64,
    /// Its vote in `epoch` (maybe not on disk yet).
    voted_for: Option<NodeId>,
    /// The leader of `epoch`, if known.
    leader: Option<NodeId>,
    /// When a leader was last heard from (followers).
    leader_contact: Option<Instant>,
    /// When the current wait (election timeout) ends.
    deadline: Instant,
    /// Pre-votes or votes granted in the current round (self included).
    granted: BTreeSet<NodeId>,
    /// Leader: when each follower was last heard from.
    heard: BTreeMap<NodeId, Instant>,
    /// Vote writes not answered yet, in order, with what waits for each.
    persisting: VecDeque<(Vote, Vec<AfterPersist>)>,
    /// Elections this node started (pre-vote rounds that became votes).
    elections: u64,
    /// Pre-vote rounds this node started.
    pre_votes: u64,
    actions: VecDeque<ElectionAction>,
    /// The simulation's planted bug: grant (pre-)votes without Raft's
    /// up-to-date rule. Compiled only with the `sim` feature; never set
    /// outside the simulation.
    #[cfg(feature = "sim")]
    skip_up_to_date: bool,
    /// The simulation's planted bug: count grants whatever directory they
    /// come from. Compiled only with the `sim` feature.
    #[cfg(feature = "sim")]
    ignore_directory: bool,
}

impl ElectionEngine {
    /// A voter among `voters` (itself included) that starts as a follower
    /// with `(epoch, voted_for)` as persisted. `seed` seeds the timeouts.
    pub fn new(
        node: NodeId,
        voters: impl IntoIterator<Item = NodeId>,
        config: ElectionConfig,
        epoch: u64,
        voted_for: Option<NodeId>,
        now: Instant,
        seed: u64,
    ) -> ElectionEngine {
        let mut voters: BTreeSet<NodeId> = voters.into_iter().collect();
        voters.insert(node);
        let mut e = ElectionEngine {
            node,
            directory: DirectoryId::UNKNOWN,
            voters,
            directories: BTreeMap::new(),
            config,
            rng: seed | 1,
            role: ElectionRole::Follower,
            epoch,
            voted_for,
            leader: None,
            leader_contact: None,
            deadline: now,
            granted: BTreeSet::new(),
            heard: BTreeMap::new(),
            persisting: VecDeque::new(),
            elections: 0,
            pre_votes: 0,
            actions: VecDeque::new(),
            #[cfg(feature = "sim")]
            skip_up_to_date: false,
            #[cfg(feature = "sim")]
            ignore_directory: false,
        };
        e.reset_timeout(now);
        e
    }

    /// This node's data directory id is `directory` (sent with its vote
    /// replies; it stands only while the membership names it).
    pub fn with_directory(mut self, directory: DirectoryId) -> ElectionEngine {
        self.directory = directory;
        self
    }

    /// Plant a bug for the simulation to find: (pre-)votes are granted
    /// without Raft's up-to-date rule, so a candidate with a shorter log
    /// can win and lose committed entries.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn plant_skip_up_to_date(&mut self) {
        self.skip_up_to_date = true;
    }

    /// Plant a bug for the simulation to find: a grant counts whichever
    /// directory it comes from, so a wiped disk under a voter's id (which
    /// lost the log it acknowledged) can elect a leader without it.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn plant_ignore_directory(&mut self) {
        self.ignore_directory = true;
    }

    /// Raft's up-to-date rule: a candidate whose log end `theirs` is at
    /// least this node's `log` may get its (pre-)vote.
    fn up_to_date(&self, theirs: LastLog, log: LastLog) -> bool {
        #[cfg(feature = "sim")]
        if self.skip_up_to_date {
            return true;
        }
        theirs >= log
    }

    /// The role.
    pub fn role(&self) -> ElectionRole {
        self.role
    }

    /// The epoch this node is in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Its vote in that epoch.
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }

    /// The leader of that epoch, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// When the leader was last heard from.
    pub fn leader_contact(&self) -> Option<Instant> {
        self.leader_contact
    }

    /// Leader: for each follower heard from in this epoch, the latest time
    /// it is known to have followed this leader (see
    /// [`ElectionInput::FollowerHeard`]): what a read index counts.
    pub fn followers_heard(&self) -> impl Iterator<Item = Instant> + '_ {
        self.heard.values().copied()
    }

    /// Elections this node has stood in.
    pub fn elections(&self) -> u64 {
        self.elections
    }

    /// Pre-vote rounds this node has started.
    pub fn pre_votes(&self) -> u64 {
        self.pre_votes
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<ElectionAction> {
        self.actions.pop_front()
    }

    /// When to [`ElectionInput::Tick`] next.
    pub fn poll_timeout(&self) -> Instant {
        self.deadline
    }

    fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether the grants of this round (its own counted) are a majority of
    /// the voters in force: a grant from a node that is no longer a voter
    /// counts for nothing.
    fn granted_quorum(&self) -> bool {
        let votes = self
            .granted
            .iter()
            .filter(|id| self.voters.contains(id))
            .count();
        votes >= self.majority()
    }

    /// Whether this node is a voter (only a voter stands for election): one
    /// of the voters in force, with the directory the membership names.
    pub fn is_voter(&self) -> bool {
        self.voters.contains(&self.node) && self.same_directory(self.node, self.directory)
    }

    /// A uniform number in [0, 1) (xorshift64*).
    fn jitter(&mut self) -> f64 {
        super::unit_jitter(&mut self.rng)
    }

    /// A new election timeout in `[T, 2T)` from `now`.
    fn reset_timeout(&mut self, now: Instant) {
        let t = self.config.election_timeout;
        self.deadline = now + t + t.mul_f64(self.jitter());
    }

    /// Whether a leader was heard from within `T` (or this node leads).
    fn hears_live_leader(&self, now: Instant) -> bool {
        self.role == ElectionRole::Leader
            || self
                .leader_contact
                .is_some_and(|t| now.saturating_duration_since(t) < self.config.election_timeout)
    }

    /// Take one input at `now`; `log` is this node's log end.
    pub fn handle(&mut self, now: Instant, input: ElectionInput, log: LastLog) {
        match input {
            ElectionInput::Tick => self.on_tick(now, log),
            ElectionInput::Received { from, msg } => {
                // A (pre-)vote request is answered whoever asks (KRaft's
                // rule: a newly added voter whose membership entry this node
                // has not seen yet is not locked out; the up-to-date rule
                // still decides). Anything else counts only from a voter.
                let request = matches!(msg, ElectionMsg::PreVote { .. } | ElectionMsg::Vote { .. });
                if from != self.node && (request || self.voters.contains(&from)) {
                    self.on_message(now, from, msg, log);
                }
            }
            ElectionInput::Persisted { epoch, voted_for } => {
                self.on_persisted(epoch, voted_for, log)
            }
            ElectionInput::PersistFailed {
                epoch,
                voted_for,
                current,
            } => self.on_persist_failed(now, epoch, voted_for, current),
            ElectionInput::LeaderHeard { leader, epoch } => {
                if epoch < self.epoch || leader == self.node {
                    return;
                }
                if epoch > self.epoch {
                    self.move_to_epoch(now, epoch);
                }
                if self.role != ElectionRole::Follower {
                    // Another node leads this epoch (a candidate lost).
                    self.become_follower(now, Some(leader));
                }
                self.leader = Some(leader);
                self.leader_contact = Some(now);
                self.reset_timeout(now);
            }
            ElectionInput::HigherEpoch { epoch } => {
                if epoch > self.epoch {
                    self.move_to_epoch(now, epoch);
                }
            }
            ElectionInput::FollowerHeard { peer, since } => {
                if self.role == ElectionRole::Leader && self.voters.contains(&peer) {
                    // Never earlier than what is known (the win's grace,
                    // or a later answer), never later than now.
                    let since = since.min(now);
                    let at = self.heard.entry(peer).or_insert(since);
                    *at = (*at).max(since);
                }
            }
            ElectionInput::TransferTo { to } => {
                if self.role == ElectionRole::Leader && to != self.node && self.voters.contains(&to)
                {
                    let msg = ElectionMsg::ElectNow { epoch: self.epoch };
                    self.actions.push_back(ElectionAction::Send { to, msg });
                }
            }
            ElectionInput::VotersChanged { voters } => self.set_voters(now, voters),
            ElectionInput::Resign => {
                if self.role == ElectionRole::Leader {
                    let msg = ElectionMsg::Resign { epoch: self.epoch };
                    self.broadcast(msg);
                    self.become_follower(now, None);
                }
            }
        }
    }

    fn on_message(&mut self, now: Instant, from: NodeId, msg: ElectionMsg, log: LastLog) {
        match msg {
            ElectionMsg::PreVote {
                epoch,
                last_epoch,
                last_offset,
            } => {
                let granted = epoch > self.epoch
                    && !self.hears_live_leader(now)
                    && self.up_to_date((last_epoch, last_offset), log);
                let reply = ElectionMsg::PreVoteReply {
                    epoch,
                    current: self.epoch,
                    granted,
                    directory: self.directory,
                };
                self.actions.push_back(ElectionAction::Send {
                    to: from,
                    msg: reply,
                });
            }
            ElectionMsg::PreVoteReply {
                epoch,
                current,
                granted,
                directory,
            } => {
                if current > self.epoch {
                    self.move_to_epoch(now, current);
                    return;
                }
                if self.role == ElectionRole::PreCandidate
                    && epoch == self.epoch + 1
                    && granted
                    && self.count_grant(from, directory)
                {
                    self.start_vote(now, false);
                }
            }
            ElectionMsg::Vote {
                epoch,
                last_epoch,
                last_offset,
                transfer,
            } => self.on_vote_request(now, from, epoch, (last_epoch, last_offset), transfer, log),
            ElectionMsg::VoteReply {
                epoch,
                current,
                granted,
                directory,
            } => {
                if current > self.epoch {
                    self.move_to_epoch(now, current);
                    return;
                }
                if self.role == ElectionRole::Candidate
                    && epoch == self.epoch
                    && granted
                    && self.count_grant(from, directory)
                {
                    self.win(now);
                }
            }
            ElectionMsg::Resign { epoch } => {
                if epoch == self.epoch && self.leader == Some(from) {
                    // Elect soon, not after T: within a short random delay
                    // (so the followers do not all stand at once).
                    self.leader = None;
                    self.leader_contact = None;
                    let t = self.config.election_timeout;
                    self.deadline = now + (t / 4).mul_f64(self.jitter());
                }
            }
            ElectionMsg::ElectNow { epoch } => {
                if epoch == self.epoch
                    && self.leader == Some(from)
                    && self.role != ElectionRole::Leader
                {
                    self.start_vote(now, true);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
