//! The voter's side of the election engine: answering a vote request, and
//! the vote write that must be on disk before anything that depends on it
//! (a grant, a candidate's requests) is sent.
//!
//! Why a file of its own: this is where Raft's safety lives (one vote per
//! epoch, persisted first; the up-to-date rule, decided again against the
//! log as fenced; a grant counted only from the directory the membership
//! names), apart from the timers and roles of `election.rs`.

use std::time::Instant;

use crate::command::NodeId;
use crate::engine::election::{ElectionAction, ElectionEngine, ElectionMsg, ElectionRole, LastLog};
use crate::membership::DirectoryId;

/// `(epoch, voted_for)` as persisted.
pub(super) type Vote = (u64, Option<NodeId>);

/// What waits for a vote write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AfterPersist {
    /// Answer `to`'s vote request for `epoch`: granted if its log `theirs`
    /// is at least this node's log as fenced.
    Grant {
        to: NodeId,
        epoch: u64,
        theirs: LastLog,
    },
    /// Ask every other voter for its vote in `epoch`, with this node's log
    /// as fenced.
    RequestVotes { epoch: u64, transfer: bool },
}

/// Most messages waiting for a vote write: one answer per voter and one
/// round of requests.
pub(super) const MAX_AFTER_PERSIST: usize = 256;

impl ElectionEngine {
    /// Persist `(epoch, voted_for)`; `then` happens once it is on disk.
    pub(super) fn persist(&mut self, then: Vec<AfterPersist>) {
        let key = (self.epoch, self.voted_for);
        self.actions.push_back(ElectionAction::PersistVote {
            epoch: key.0,
            voted_for: key.1,
        });
        if self.persisting.len() >= MAX_AFTER_PERSIST {
            // Writes are answered in order and each round adds one; a
            // backlog this long means the disk is stuck: drop the oldest
            // waiting messages (elections retry) rather than grow.
            self.persisting.pop_front();
        }
        self.persisting.push_back((key, then));
    }

    pub(super) fn on_persisted(&mut self, epoch: u64, voted_for: Option<NodeId>, log: LastLog) {
        // An answer to no write of ours releases nothing.
        if !self
            .persisting
            .iter()
            .any(|(k, _)| *k == (epoch, voted_for))
        {
            return;
        }
        // Writes complete in order: everything up to this one is on disk.
        while let Some((key, then)) = self.persisting.pop_front() {
            for after in then {
                self.release(after, log);
            }
            if key == (epoch, voted_for) {
                break;
            }
        }
    }

    /// Carry out what waited for a vote write, with the log as fenced.
    fn release(&mut self, after: AfterPersist, log: LastLog) {
        match after {
            AfterPersist::Grant { to, epoch, theirs } => {
                // Decided again against the fenced log: entries appended
                // between the request and the fence count.
                let granted = epoch == self.epoch
                    && self.voted_for == Some(to)
                    && self.up_to_date(theirs, log);
                if !granted {
                    tracing::debug!(
                        node = self.node,
                        peer = to,
                        epoch,
                        "vote withheld: the log grew before the fence"
                    );
                }
                let msg = ElectionMsg::VoteReply {
                    epoch,
                    current: self.epoch,
                    granted,
                    directory: self.directory,
                };
                self.actions.push_back(ElectionAction::Send { to, msg });
            }
            AfterPersist::RequestVotes { epoch, transfer } => {
                if self.role != ElectionRole::Candidate || self.epoch != epoch {
                    return;
                }
                let request = ElectionMsg::Vote {
                    epoch,
                    last_epoch: log.0,
                    last_offset: log.1,
                    transfer,
                };
                self.broadcast(request);
            }
        }
    }

    pub(super) fn on_persist_failed(
        &mut self,
        now: Instant,
        epoch: u64,
        voted_for: Option<NodeId>,
        current: Option<u64>,
    ) {
        let before = self.persisting.len();
        self.persisting.retain(|(k, _)| *k != (epoch, voted_for));
        if self.persisting.len() != before {
            tracing::warn!(node = self.node, epoch, voted_for = ?voted_for, "vote not persisted: nothing that waited for it is sent");
        }
        match current {
            Some(c) if c > self.epoch => self.move_to_epoch(now, c),
            _ => {
                // Our own candidacy cannot go on without its vote on disk.
                if self.role == ElectionRole::Candidate && self.epoch == epoch {
                    self.become_follower(now, None);
                }
            }
        }
    }

    /// Whether `directory` is the one the membership names for `id` (or
    /// the membership does not know it yet).
    pub(super) fn same_directory(&self, id: NodeId, directory: DirectoryId) -> bool {
        #[cfg(feature = "sim")]
        if self.ignore_directory {
            return true;
        }
        self.directories.get(&id).is_none_or(|d| *d == directory)
    }

    /// Count `from`'s grant in this round, unless it comes from another
    /// directory than the membership names: a wiped disk under that id
    /// lost the log and the votes the old one promised. Returns whether
    /// the grants are now a majority.
    pub(super) fn count_grant(&mut self, from: NodeId, directory: DirectoryId) -> bool {
        if !self.same_directory(from, directory) {
            tracing::warn!(
                node = self.node,
                peer = from,
                epoch = self.epoch,
                directory = %directory,
                "grant from a directory the membership does not name (a wiped disk under a member's id?): not counted; remove the member and add it again"
            );
            return false;
        }
        self.granted.insert(from);
        self.granted_quorum()
    }

    pub(super) fn on_vote_request(
        &mut self,
        now: Instant,
        from: NodeId,
        epoch: u64,
        theirs: LastLog,
        transfer: bool,
        log: LastLog,
    ) {
        let refuse = |e: &mut ElectionEngine| {
            let reply = ElectionMsg::VoteReply {
                epoch,
                current: e.epoch,
                granted: false,
                directory: e.directory,
            };
            e.actions.push_back(ElectionAction::Send {
                to: from,
                msg: reply,
            });
        };
        if epoch < self.epoch {
            refuse(self);
            return;
        }
        // Leader stickiness: while this node hears a live leader (or is
        // one), a vote that is not a transfer is ignored, so a node that
        // was cut off cannot unseat a healthy leader.
        if !transfer && self.hears_live_leader(now) && self.leader != Some(from) {
            refuse(self);
            return;
        }
        if epoch > self.epoch {
            self.move_to_epoch(now, epoch);
        }
        let free = self.voted_for.is_none() || self.voted_for == Some(from);
        if !free || !self.up_to_date(theirs, log) {
            refuse(self);
            return;
        }
        self.voted_for = Some(from);
        // Granting resets the timer: the candidate is about to lead.
        self.reset_timeout(now);
        self.persist(vec![AfterPersist::Grant {
            to: from,
            epoch,
            theirs,
        }]);
    }
}
