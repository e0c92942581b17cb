//! The follower role: the log owner of a node that follows.
//!
//! A node has many inbound replication connections (each driven by a
//! [`crate::engine::ReplicaSessionEngine`]) but one log. [`ReplicaListenerEngine`] is the
//! single owner of everything that must be single on a follower:
//! - which session is the active one (a newer authenticated session
//!   replaces the older one; only the active one writes);
//! - the current epoch and leader, persisted before they are acted on, one
//!   write at a time: an attach that arrives while that write runs is held
//!   and then judged against the persisted epoch, so of two leaders racing,
//!   the lower epoch gets `StaleEpoch` and a second leader of the same epoch
//!   gets `EpochConflict`;
//! - the log position (the epoch index, records queued for the disk
//!   included), the durable offset and the commit point learned from the
//!   leader;
//! - the group-commit queue: records from the active session are checked
//!   ([`check_append`]), queued, and written one batch at a time; after each
//!   batch the active session is told the durable offset;
//! - truncations and snapshot installs, which wait for the write in flight,
//!   drop what is not durable, and are checked ([`maybe_truncate`],
//!   [`plan_snapshot_install`]) before they touch the log;
//! - what the metadata store must hear of a truncation or an install, in a
//!   bounded outbox, before anything lets it apply past them;
//! - a fail-stop when the disk fails.
//!
//! The shape is the other engines': [`ReplicaListenerEngine::handle`] takes one
//! [`FollowerInput`], [`ReplicaListenerEngine::append`] answers an append at once,
//! and [`ReplicaListenerEngine::poll_action`] returns what to do, in order. Requests
//! that are answered later (attach, truncate, install, release) carry a
//! [`RequestId`] the shell chose; the answer action carries it back.
//!
//! The pure rules the engine applies — how a snapshot is installed over the
//! log and how far a truncation may go — are the free functions at the end,
//! also used by the tests on their own.

use std::collections::{BTreeSet, VecDeque};

use crate::command::{Command, Entry, NodeId};
use crate::engine::LogProgress;
use crate::epochs::EpochIndex;
use crate::record::Record;
use crate::replication::check_append;
use crate::storage::NodeMeta;

pub use super::follower_io::*;

// The attach path (an epoch persisted before it is acted on) and the log
// resets waiting for the disk: child modules, so they see the engine's
// private state.
#[path = "follower_attach.rs"]
mod attach;
#[path = "follower_reset.rs"]
mod reset;

/// A request waiting for the write in flight (a log reset may not start
/// while records are being written).
#[derive(Debug, Clone)]
enum Deferred {
    Attach {
        req: RequestId,
        session: SessionId,
        leader: NodeId,
        epoch: u64,
    },
    Truncate {
        req: RequestId,
        to: u64,
    },
    Snapshot {
        req: RequestId,
        offset: u64,
        epoch: u64,
        bytes: bytes::Bytes,
    },
    Release {
        req: RequestId,
    },
}

/// What this node does with its log.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// It follows: sessions may attach and write.
    Following,
    /// It leads (or is about to): no session touches the log.
    Leading,
    /// Its disk failed.
    Failed(String),
}

/// A disk job that resets the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    Truncate { req: RequestId, to: u64 },
    Snapshot { req: RequestId },
}

/// An attach held while a new epoch is persisted.
#[derive(Debug, Clone)]
struct HeldAttach {
    req: RequestId,
    session: SessionId,
    leader: NodeId,
    epoch: u64,
}

/// The follower's log owner (see the module docs).
#[derive(Debug, Clone)]
pub struct ReplicaListenerEngine {
    node: NodeId,
    mode: Mode,
    meta: NodeMeta,
    epochs: EpochIndex,
    durable: u64,
    commit: u64,
    live: BTreeSet<SessionId>,
    active: Option<SessionId>,
    write_queue: Vec<Record>,
    /// The membership entries among `write_queue`: reported
    /// ([`FollowerAction::MembershipAppended`]) when their records go to
    /// the disk, dropped with the queue.
    queued_members: Vec<(u64, crate::membership::Membership)>,
    /// The last offset of the write in flight.
    writing: Option<u64>,
    busy: Option<Busy>,
    deferred: VecDeque<Deferred>,
    /// The attach whose new epoch is being written.
    persisting: Option<(HeldAttach, NodeMeta)>,
    held: VecDeque<HeldAttach>,
    store_outbox: VecDeque<StoreEvent>,
    actions: VecDeque<FollowerAction>,
}

impl ReplicaListenerEngine {
    /// A follower whose log (all durable) is `epochs`, with `meta` persisted
    /// and `commit` known committed.
    pub fn new(
        node: NodeId,
        epochs: EpochIndex,
        meta: NodeMeta,
        commit: u64,
    ) -> ReplicaListenerEngine {
        ReplicaListenerEngine {
            node,
            mode: Mode::Following,
            meta,
            durable: epochs.last_offset(),
            epochs,
            commit,
            live: BTreeSet::new(),
            active: None,
            write_queue: Vec::new(),
            queued_members: Vec::new(),
            writing: None,
            busy: None,
            deferred: VecDeque::new(),
            persisting: None,
            held: VecDeque::new(),
            store_outbox: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    /// A node that starts as the leader of `meta`'s epoch: no session may
    /// touch the log until [`FollowerInput::Follow`].
    pub fn leading(
        node: NodeId,
        epochs: EpochIndex,
        meta: NodeMeta,
        commit: u64,
    ) -> ReplicaListenerEngine {
        let mut e = ReplicaListenerEngine::new(node, epochs, meta, commit);
        e.mode = Mode::Leading;
        e
    }

    /// The log end, the durable offset and the commit point.
    pub fn progress(&self) -> LogProgress {
        LogProgress {
            log_end: self.epochs.last_offset(),
            durable: self.durable,
            commit: self.commit,
        }
    }

    /// The persisted meta this engine knows.
    pub fn meta(&self) -> &NodeMeta {
        &self.meta
    }

    /// The log (records queued for the disk included).
    pub fn epochs(&self) -> &EpochIndex {
        &self.epochs
    }

    /// The active session.
    pub fn active(&self) -> Option<SessionId> {
        self.active
    }

    /// Whether the node leads (inbound connections are follower wake-ups).
    pub fn is_leading(&self) -> bool {
        self.mode == Mode::Leading
    }

    /// A vote is about to be persisted in `epoch`: from now on nothing of
    /// a lower epoch is accepted (a lower-epoch leader's session ends),
    /// and the log end `(last epoch, last offset)` as of this fence is
    /// returned — what the vote is decided against. Refused while the node
    /// leads (the log is released: there is no follower log to vote with)
    /// or after a fail-stop. The one copy of this rule: the listener and
    /// the simulation both call it before they write a vote.
    pub fn fence(&mut self, epoch: u64) -> Result<(u64, u64), FenceRefused> {
        if self.is_leading() {
            return Err(FenceRefused::Leading);
        }
        if self.has_failed() {
            return Err(FenceRefused::Failed);
        }
        if epoch > self.meta.current_epoch {
            let mut fenced = self.meta.clone();
            fenced.current_epoch = epoch;
            fenced.leader = None;
            fenced.voted_for = None;
            self.handle(FollowerInput::MetaChanged(fenced));
        }
        let log = self.epochs();
        Ok((log.last_epoch(), log.last_offset()))
    }

    /// Whether the node fail-stopped.
    pub fn has_failed(&self) -> bool {
        matches!(self.mode, Mode::Failed(_))
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<FollowerAction> {
        self.actions.pop_front()
    }

    /// The next event for the metadata store. If the store cannot take it
    /// now, give it back with [`ReplicaListenerEngine::store_busy`].
    pub fn poll_store_event(&mut self) -> Option<StoreEvent> {
        self.store_outbox.pop_front()
    }

    /// The store could not take `event`: it stays first in line.
    pub fn store_busy(&mut self, event: StoreEvent) {
        self.store_outbox.push_front(event);
    }

    /// Whether an event waits for the store.
    pub fn store_behind(&self) -> bool {
        !self.store_outbox.is_empty()
    }

    /// Take one input.
    pub fn handle(&mut self, input: FollowerInput) {
        match input {
            FollowerInput::SessionOpened(id) => {
                self.live.insert(id);
            }
            FollowerInput::SessionGone(id) => {
                self.live.remove(&id);
                if self.active == Some(id) {
                    self.active = None;
                }
            }
            FollowerInput::Attach {
                req,
                session,
                leader,
                epoch,
            } => self.consider_attach(HeldAttach {
                req,
                session,
                leader,
                epoch,
            }),
            FollowerInput::MetaWritten(result) => self.on_meta_written(result),
            FollowerInput::Commit { session, commit } => {
                if self.is_active(session) && commit > self.commit {
                    self.commit = commit;
                }
            }
            FollowerInput::Written(result) => self.on_written(result),
            FollowerInput::Truncate { req, session, to } => {
                self.defer_reset(session, req, Deferred::Truncate { req, to })
            }
            FollowerInput::Truncated(result) => self.on_truncated(result),
            FollowerInput::Snapshot {
                req,
                session,
                offset,
                epoch,
                bytes,
            } => self.defer_reset(
                session,
                req,
                Deferred::Snapshot {
                    req,
                    offset,
                    epoch,
                    bytes,
                },
            ),
            FollowerInput::SnapshotInstalled(result) => self.on_snapshot_installed(result),
            FollowerInput::Release { req } => self.on_release(req),
            FollowerInput::MetaChanged(meta) => {
                if meta.current_epoch > self.meta.current_epoch {
                    if let Some(old) = self.active.take() {
                        self.actions.push_back(FollowerAction::StopSession(old));
                    }
                    self.meta = meta;
                }
            }
            FollowerInput::Follow {
                epochs,
                meta,
                commit,
            } => {
                if self.has_failed() {
                    return;
                }
                // Everything in `epochs` is on disk: no write or reset of
                // the follower's own is still running.
                self.mode = Mode::Following;
                self.write_queue.clear();
                self.queued_members.clear();
                self.writing = None;
                self.busy = None;
                self.commit = self.commit.max(commit);
                self.meta = meta;
                self.adopt_log(epochs);
                self.run_deferred();
            }
        }
    }

    /// Records from `session`, decoded and checked by it, with the leader's
    /// commit point. Checked against the log, queued for the disk; the
    /// entries go to the store.
    pub fn append(
        &mut self,
        session: SessionId,
        records: Vec<Record>,
        entries: Vec<Entry>,
        commit: u64,
    ) -> Result<(), AppendRefused> {
        if !self.is_active(session) || !self.deferred.is_empty() || self.busy.is_some() {
            return Err(AppendRefused::NotActive);
        }
        if self.store_behind() {
            return Err(AppendRefused::StoreBehind);
        }
        check_append(&self.epochs, self.meta.current_epoch, &records)
            .map_err(|e| AppendRefused::Invalid(e.to_string()))?;
        let end = self.epochs.last_offset();
        for r in &records {
            if let Err(e) = self.epochs.append(r.offset, r.epoch) {
                // check_append vouched for every record, so this is a bug in
                // it: refuse the whole batch rather than keep half of it.
                self.epochs.truncate_suffix(end);
                return Err(AppendRefused::Invalid(e.to_string()));
            }
        }
        self.write_queue.extend(records);
        self.commit = self.commit.max(commit);
        // In force from their append to the log: reported when their
        // records go to the disk (see `flush_writes`), whatever happens to
        // the entries sent to the store.
        for e in &entries {
            if let Command::Membership(m) = &e.command {
                self.queued_members.push((e.offset, m.clone()));
            }
        }
        if !entries.is_empty() {
            self.actions.push_back(FollowerAction::Entries(entries));
        }
        self.flush_writes();
        Ok(())
    }

    fn is_active(&self, session: SessionId) -> bool {
        self.active == Some(session) && self.mode == Mode::Following
    }

    fn flush_writes(&mut self) {
        if self.writing.is_some() || self.write_queue.is_empty() || self.has_failed() {
            return;
        }
        let records = std::mem::take(&mut self.write_queue);
        self.writing = records.last().map(|r| r.offset);
        for (offset, membership) in self.queued_members.drain(..) {
            self.actions
                .push_back(FollowerAction::MembershipAppended { offset, membership });
        }
        self.actions.push_back(FollowerAction::Write(records));
    }

    fn on_written(&mut self, result: Result<u64, WriteError>) {
        let Some(last) = self.writing.take() else {
            return;
        };
        match result {
            Ok(durable) => {
                let durable = durable.min(last);
                tracing::trace!(
                    stage = "follower-durable",
                    node = self.node,
                    offset = durable
                );
                self.durable = self.durable.max(durable);
                if let Some(session) = self.active.filter(|_| self.mode == Mode::Following) {
                    self.actions.push_back(FollowerAction::Durable {
                        session,
                        offset: self.durable,
                    });
                }
            }
            Err(WriteError::QueueFull) => {
                // Transient: drop the unwritten tail; the session's next
                // batch no longer follows the log end, so it is refused, the
                // session closes and the leader resends from the acked
                // offset on a new one.
                tracing::warn!(
                    node = self.node,
                    offset = last,
                    "disk queue full; dropping the unwritten tail for the leader to resend"
                );
                self.reset_to_durable();
            }
            Err(WriteError::Failed(e)) => {
                self.fail_stop(format!("WAL write up to offset {last} failed: {e}"));
                return;
            }
        }
        if self.deferred.is_empty() {
            self.flush_writes();
        } else {
            self.run_deferred();
        }
    }

    fn log_end(&self) -> LogEnd {
        (self.epochs.last_offset(), self.epochs.last_epoch())
    }

    /// The follower's WAL failed: fail-stop. No session writes or acks
    /// anything more, every attach is refused, the sessions end. What is
    /// durable stays; restart the node.
    fn fail_stop(&mut self, reason: String) {
        if self.has_failed() {
            return;
        }
        tracing::error!(node = self.node, %reason, "follower storage failed; no longer replicating: restart the node");
        self.mode = Mode::Failed(reason.clone());
        self.write_queue.clear();
        self.queued_members.clear();
        self.active = None;
        for &s in &self.live {
            self.actions.push_back(FollowerAction::StopSession(s));
        }
        // Nothing queued behind the failure may still touch the log.
        for job in std::mem::take(&mut self.deferred) {
            self.answer_deferred(job, reason.clone());
        }
        for a in std::mem::take(&mut self.held) {
            self.answer_attach(a.req, Err(AttachRefused::Storage(reason.clone())));
        }
        self.actions.push_back(FollowerAction::FailStop(reason));
    }
}

// ---- The rules, pure ----

#[cfg(test)]
#[path = "follower_tests.rs"]
mod tests;
