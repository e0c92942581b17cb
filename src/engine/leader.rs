//! The leader engine: its own WAL writes, the ISR, the commit point and the
//! proposals waiting for them.
//!
//! Everything the leader decides after an entry was admitted lives here: when
//! to hand appended entries to the disk (one group-commit write in flight at
//! a time), what a full disk queue means (retry, bounded by the request
//! timeout, then fail-stop), what a failed write means (fail-stop: every
//! waiter gets [`LeaderError::Storage`], nothing more is taken), which link
//! event moves the ISR and the commit point ([`ReplicaSetTracker`]), and
//! which proposal resolves when, with which result — including the request
//! timeout: a proposal not acknowledged by then gets
//! [`LeaderError::TimedOut`] on the first [`LeaderInput::Tick`] after its
//! deadline, so the shell needs no timer per proposal.
//!
//! The shape is quinn-proto's `Connection`: [`ReplicatorEngine::handle`] takes
//! one [`LeaderInput`] at a time `now`, [`ReplicatorEngine::poll_action`] returns
//! what the shell must do, in order. The engine holds no records, sockets,
//! files or channels: a proposal is a [`ProposalId`] the shell maps to its
//! reply channel, and a WAL write is "everything appended up to offset N".

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::command::NodeId;
use crate::replication::{IsrChange, ReplicaSetTracker};

/// The shell's handle for a proposal waiting for an acknowledgement.
pub type ProposalId = u64;

/// When a proposal is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acks {
    /// Once the entry has an offset (not yet durable anywhere).
    None,
    /// Once the entry is durable on the leader.
    Leader,
    /// Once the entry is committed (durable on a majority of the voters) and
    /// durable on every ISR member, and the ISR has at least
    /// `min_insync_replicas` members.
    All,
}

/// Why the leader answers a proposal with an error after appending it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaderError {
    /// Committed at `offset`, but the ISR had shrunk below
    /// `min_insync_replicas` by then: not an `acks=all` acknowledgement.
    #[error("entry {offset} was appended but the ISR shrank to {isr}, below the {required} that acks=all requires")]
    NotEnoughReplicasAfterAppend {
        /// Offset of the entry.
        offset: u64,
        /// ISR size when it was covered.
        isr: usize,
        /// `min_insync_replicas` in force.
        required: usize,
    },
    /// The leader's storage failed; it takes no more writes.
    #[error("leader storage failed: {0}")]
    Storage(String),
    /// The leader is stopping.
    #[error("the leader is stopping")]
    ShuttingDown,
    /// The leader stepped down (it lost an election, its quorum, or handed
    /// leadership over) before the entry was acknowledged: it is in this
    /// node's log and may or may not be committed by the next leader.
    #[error("the leader stepped down before the entry was acknowledged")]
    SteppedDown,
    /// Not acknowledged within the request timeout: the entry is in the
    /// leader's log and may still commit.
    #[error("not acknowledged within {timeout:?}; the entry may still commit")]
    TimedOut {
        /// The request timeout.
        timeout: Duration,
    },
}

/// An event for the leader engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderInput {
    /// An admitted entry was appended to the in-memory log at `offset`;
    /// `proposal` waits for `acks`.
    Append {
        /// The entry's offset (the next one).
        offset: u64,
        /// The acknowledgement the proposer waits for.
        acks: Acks,
        /// The waiting proposal, if anyone waits.
        proposal: Option<ProposalId>,
    },
    /// The write asked for by [`LeaderAction::WriteWal`] is durable.
    WalDurable {
        /// Durable up to here.
        up_to: u64,
    },
    /// The disk's queue was full: the write was not taken. Transient.
    WalBusy,
    /// A write, or the log's order, failed. Fatal.
    StorageFailed {
        /// What failed.
        reason: String,
    },
    /// A link's handshake matched the follower's log up to `matched`.
    Connected {
        /// The follower.
        peer: NodeId,
        /// Last offset both logs hold.
        matched: u64,
    },
    /// A cumulative ack: `peer` has everything up to `offset` on disk.
    Acked {
        /// The follower.
        peer: NodeId,
        /// Durable up to here.
        offset: u64,
    },
    /// A link dropped (or the follower reported a higher epoch, which a
    /// `Reject` cannot prove, so it is treated as a drop).
    Disconnected {
        /// The follower.
        peer: NodeId,
    },
    /// The membership in force changed: count `voters` (this leader among
    /// them) from now on, track `learners` without counting them.
    SetMembers {
        /// The voters.
        voters: Vec<NodeId>,
        /// The learners.
        learners: Vec<NodeId>,
    },
    /// Time passed: ISR lag check, WAL retry, proposals past their
    /// deadline.
    Tick,
    /// The leader stops: every waiter gets [`LeaderError::ShuttingDown`].
    Stop,
    /// The leader steps down: every waiter gets
    /// [`LeaderError::SteppedDown`].
    StepDown,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderAction {
    /// Hand every appended entry up to `up_to` to the disk (append + fsync)
    /// and report [`LeaderInput::WalDurable`], [`LeaderInput::WalBusy`] or
    /// [`LeaderInput::StorageFailed`].
    WriteWal {
        /// Last offset to write.
        up_to: u64,
    },
    /// Answer a proposal.
    Resolve {
        /// The proposal.
        proposal: ProposalId,
        /// Its offset.
        offset: u64,
        /// Ok, or why not.
        result: Result<(), LeaderError>,
    },
    /// The ISR changed.
    IsrChanged {
        /// Followers that joined.
        joined: Vec<NodeId>,
        /// Followers that left.
        left: Vec<NodeId>,
        /// ISR size now, leader included.
        isr_len: usize,
    },
    /// The commit point moved: publish it (links carry it to followers, the
    /// store applies up to it).
    Commit {
        /// The new commit point.
        offset: u64,
    },
    /// Storage failed: stop taking writes (role Failed). Emitted once.
    Failed {
        /// What failed.
        reason: String,
    },
}

/// A proposal waiting for its acknowledgement.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    offset: u64,
    proposal: ProposalId,
    /// When it gets [`LeaderError::TimedOut`].
    deadline: Instant,
}

/// The leader engine (see the module docs).
#[derive(Debug, Clone)]
pub struct ReplicatorEngine {
    node: NodeId,
    epoch: u64,
    tracker: ReplicaSetTracker,
    /// How long a full disk queue is retried before the leader fails.
    wal_busy_limit: Duration,
    /// Highest offset handed to the disk (in flight or durable).
    written_to: u64,
    /// A write is in flight.
    writing: bool,
    /// Since when the disk's queue has been full (a retry is due).
    busy_since: Option<Instant>,
    /// How long a proposal waits for its acknowledgement.
    request_timeout: Duration,
    /// Waiting proposals, in offset order (and so in deadline order: one
    /// timeout for all, and `now` never goes back).
    leader_waiters: VecDeque<Waiting>,
    all_waiters: VecDeque<Waiting>,
    failed: Option<String>,
    actions: VecDeque<LeaderAction>,
}

impl ReplicatorEngine {
    /// An engine for `node` leading `epoch`, with the ISR and commit tracker
    /// built by the shell, how long a full disk queue is retried, and how
    /// long a proposal waits for its acknowledgement.
    pub fn new(
        node: NodeId,
        epoch: u64,
        tracker: ReplicaSetTracker,
        wal_busy_limit: Duration,
        request_timeout: Duration,
    ) -> ReplicatorEngine {
        let written_to = tracker.local_durable();
        ReplicatorEngine {
            node,
            epoch,
            tracker,
            wal_busy_limit,
            written_to,
            writing: false,
            busy_since: None,
            request_timeout,
            leader_waiters: VecDeque::new(),
            all_waiters: VecDeque::new(),
            failed: None,
            actions: VecDeque::new(),
        }
    }

    /// The ISR and commit tracker (read-only).
    pub fn tracker(&self) -> &ReplicaSetTracker {
        &self.tracker
    }

    /// This leader's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Why storage failed, if it did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Proposals waiting (acks=leader, acks=all).
    pub fn waiting(&self) -> (usize, usize) {
        (self.leader_waiters.len(), self.all_waiters.len())
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<LeaderAction> {
        self.actions.pop_front()
    }

    /// Take one input at `now`.
    pub fn handle(&mut self, now: Instant, input: LeaderInput) {
        match input {
            LeaderInput::Append {
                offset,
                acks,
                proposal,
            } => self.on_append(now, offset, acks, proposal),
            LeaderInput::WalDurable { up_to } => {
                self.writing = false;
                self.busy_since = None;
                let change = self.tracker.on_local_durable(up_to.min(self.written_to));
                self.resolve_leader_waiters();
                self.apply_change(change);
                self.maybe_write();
            }
            LeaderInput::WalBusy => {
                // Retry on the next tick, for at most `wal_busy_limit`.
                self.writing = false;
                self.written_to = self.tracker.local_durable();
                let since = *self.busy_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.wal_busy_limit {
                    self.fail(format!(
                        "the disk queue stayed full for {:?}",
                        self.wal_busy_limit
                    ));
                }
            }
            LeaderInput::StorageFailed { reason } => self.fail(reason),
            LeaderInput::Connected { peer, matched } => {
                let change = self.tracker.on_connected(peer, matched, now);
                self.apply_change(change);
            }
            LeaderInput::Acked { peer, offset } => {
                let change = self.tracker.on_ack(peer, offset, now);
                self.apply_change(change);
            }
            LeaderInput::Disconnected { peer } => {
                let change = self.tracker.on_disconnected(peer);
                self.apply_change(change);
            }
            LeaderInput::SetMembers { voters, learners } => {
                let change = self.tracker.set_members(voters, learners, now);
                self.apply_change(change);
            }
            LeaderInput::Tick => {
                let change = self.tracker.tick(now);
                self.apply_change(change);
                if self.busy_since.is_some() {
                    self.maybe_write();
                }
                self.expire_waiters(now);
            }
            LeaderInput::Stop | LeaderInput::StepDown => {
                let why = if matches!(input, LeaderInput::Stop) {
                    LeaderError::ShuttingDown
                } else {
                    LeaderError::SteppedDown
                };
                for (offset, proposal) in self.drain_waiters() {
                    self.actions.push_back(LeaderAction::Resolve {
                        proposal,
                        offset,
                        result: Err(why.clone()),
                    });
                }
            }
        }
    }

    fn on_append(&mut self, now: Instant, offset: u64, acks: Acks, proposal: Option<ProposalId>) {
        if let Some(why) = &self.failed {
            if let Some(proposal) = proposal {
                self.actions.push_back(LeaderAction::Resolve {
                    proposal,
                    offset,
                    result: Err(LeaderError::Storage(why.clone())),
                });
            }
            return;
        }
        // Register the waiter before the entry can be written or sent.
        if let Some(proposal) = proposal {
            let waiting = Waiting {
                offset,
                proposal,
                deadline: now + self.request_timeout,
            };
            match acks {
                Acks::All => self.all_waiters.push_back(waiting),
                Acks::Leader => self.leader_waiters.push_back(waiting),
                Acks::None => self.actions.push_back(LeaderAction::Resolve {
                    proposal,
                    offset,
                    result: Ok(()),
                }),
            }
        }
        self.tracker.on_append(offset);
        if self.busy_since.is_none() {
            self.maybe_write();
        }
    }

    /// One write in flight at a time: everything appended since the last one
    /// goes in the next (group commit).
    fn maybe_write(&mut self) {
        let end = self.tracker.log_end();
        if self.writing || self.failed.is_some() || end <= self.written_to {
            return;
        }
        self.writing = true;
        self.written_to = end;
        self.actions
            .push_back(LeaderAction::WriteWal { up_to: end });
    }

    fn fail(&mut self, reason: String) {
        if self.failed.is_some() {
            return;
        }
        tracing::error!(node = self.node, epoch = self.epoch, %reason, "leader storage failed; no longer accepting writes");
        // `Failed` first: the shell marks the node failed before any
        // proposer hears of the failure, so a caller that got the error
        // sees the `Failed` role too.
        self.actions.push_back(LeaderAction::Failed {
            reason: reason.clone(),
        });
        for (offset, proposal) in self.drain_waiters() {
            self.actions.push_back(LeaderAction::Resolve {
                proposal,
                offset,
                result: Err(LeaderError::Storage(reason.clone())),
            });
        }
        self.failed = Some(reason);
    }

    fn drain_waiters(&mut self) -> Vec<(u64, ProposalId)> {
        let mut all: Vec<(u64, ProposalId)> = self
            .leader_waiters
            .drain(..)
            .chain(self.all_waiters.drain(..))
            .map(|w| (w.offset, w.proposal))
            .collect();
        all.sort_unstable();
        all
    }

    /// Answer the proposals whose deadline has passed: `TimedOut`, in
    /// offset order. Each queue is in deadline order, so only its front is
    /// looked at.
    fn expire_waiters(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for queue in [&mut self.leader_waiters, &mut self.all_waiters] {
            while queue.front().is_some_and(|w| w.deadline <= now) {
                if let Some(w) = queue.pop_front() {
                    expired.push((w.offset, w.proposal));
                }
            }
        }
        expired.sort_unstable();
        let timeout = self.request_timeout;
        for (offset, proposal) in expired {
            self.actions.push_back(LeaderAction::Resolve {
                proposal,
                offset,
                result: Err(LeaderError::TimedOut { timeout }),
            });
        }
    }

    fn resolve_leader_waiters(&mut self) {
        let durable = self.tracker.local_durable();
        while let Some(&Waiting {
            offset, proposal, ..
        }) = self.leader_waiters.front()
        {
            if offset > durable {
                break;
            }
            self.leader_waiters.pop_front();
            self.actions.push_back(LeaderAction::Resolve {
                proposal,
                offset,
                result: Ok(()),
            });
        }
    }

    fn apply_change(&mut self, change: IsrChange) {
        if change.is_empty() {
            return;
        }
        if !change.joined.is_empty() || !change.left.is_empty() {
            self.actions.push_back(LeaderAction::IsrChanged {
                joined: change.joined,
                left: change.left,
                isr_len: self.tracker.isr_len(),
            });
        }
        if let Some(offset) = change.commit_advanced {
            self.actions.push_back(LeaderAction::Commit { offset });
        }
        // acks=all: committed and durable on every ISR member.
        let Some(covered) = change.isr_durable_advanced else {
            return;
        };
        let isr = self.tracker.isr_len();
        let required = self.tracker.min_insync();
        while let Some(&Waiting {
            offset, proposal, ..
        }) = self.all_waiters.front()
        {
            if offset > covered {
                break;
            }
            self.all_waiters.pop_front();
            let result = if isr >= required {
                Ok(())
            } else {
                Err(LeaderError::NotEnoughReplicasAfterAppend {
                    offset,
                    isr,
                    required,
                })
            };
            self.actions.push_back(LeaderAction::Resolve {
                proposal,
                offset,
                result,
            });
        }
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
