//! The follower role: the log owner of a node that follows.
//!
//! A node has many inbound replication connections (each driven by a
//! [`crate::engine::SessionEngine`]) but one log. [`FollowerEngine`] is the
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
//! The shape is the other engines': [`FollowerEngine::handle`] takes one
//! [`FollowerInput`], [`FollowerEngine::append`] answers an append at once,
//! and [`FollowerEngine::poll_action`] returns what to do, in order. Requests
//! that are answered later (attach, truncate, install, release) carry a
//! [`RequestId`] the shell chose; the answer action carries it back.
//!
//! The pure rules the engine applies — how a snapshot is installed over the
//! log and how far a truncation may go — are the free functions at the end,
//! also used by the tests on their own.

use std::collections::{BTreeSet, VecDeque};

use crate::command::{Entry, NodeId};
use crate::engine::epoch::{maybe_advance_epoch, EpochRefused, EpochStep};
use crate::engine::LogProgress;
use crate::epochs::EpochIndex;
use crate::record::Record;
use crate::replication::check_append;
use crate::storage::{NodeMeta, Snapshot};

pub use super::follower_io::*;

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
pub struct FollowerEngine {
    node: NodeId,
    mode: Mode,
    meta: NodeMeta,
    epochs: EpochIndex,
    durable: u64,
    commit: u64,
    live: BTreeSet<SessionId>,
    active: Option<SessionId>,
    write_queue: Vec<Record>,
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

impl FollowerEngine {
    /// A follower whose log (all durable) is `epochs`, with `meta` persisted
    /// and `commit` known committed.
    pub fn new(node: NodeId, epochs: EpochIndex, meta: NodeMeta, commit: u64) -> FollowerEngine {
        FollowerEngine {
            node,
            mode: Mode::Following,
            meta,
            durable: epochs.last_offset(),
            epochs,
            commit,
            live: BTreeSet::new(),
            active: None,
            write_queue: Vec::new(),
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
    ) -> FollowerEngine {
        let mut e = FollowerEngine::new(node, epochs, meta, commit);
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
    /// now, give it back with [`FollowerEngine::store_busy`].
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
        if !entries.is_empty() {
            self.actions.push_back(FollowerAction::Entries(entries));
        }
        self.flush_writes();
        Ok(())
    }

    fn is_active(&self, session: SessionId) -> bool {
        self.active == Some(session) && self.mode == Mode::Following
    }

    fn consider_attach(&mut self, a: HeldAttach) {
        if self.mode != Mode::Following {
            self.answer_attach(a.req, Err(self.not_following()));
            return;
        }
        if self.persisting.is_some() {
            if self.held.len() >= MAX_HELD_ATTACHES {
                self.answer_attach(
                    a.req,
                    Err(AttachRefused::Storage(
                        "too many attaches waiting for an epoch write".into(),
                    )),
                );
            } else {
                self.held.push_back(a);
            }
            return;
        }
        match maybe_advance_epoch(self.meta.current_epoch, self.meta.leader, a.epoch, a.leader) {
            Err(EpochRefused::Stale {
                current, leader, ..
            }) => self.answer_attach(a.req, Err(AttachRefused::StaleEpoch { current, leader })),
            Err(EpochRefused::Conflict { .. } | EpochRefused::Voted { .. }) => {
                self.answer_attach(a.req, Err(AttachRefused::EpochConflict))
            }
            Ok(EpochStep::Same) => self.defer(Deferred::Attach {
                req: a.req,
                session: a.session,
                leader: a.leader,
                epoch: a.epoch,
            }),
            Ok(EpochStep::Advance) => {
                // Persist the new epoch and leader before acting on them.
                let mut meta = self.meta.clone();
                if a.epoch > meta.current_epoch {
                    meta.voted_for = None;
                }
                meta.current_epoch = a.epoch;
                meta.leader = Some(a.leader);
                meta.commit_hint = meta.commit_hint.max(self.commit.min(self.durable));
                self.actions
                    .push_back(FollowerAction::PersistMeta(meta.clone()));
                self.persisting = Some((a, meta));
            }
        }
    }

    fn on_meta_written(&mut self, result: Result<(), MetaWriteError>) {
        let Some((a, meta)) = self.persisting.take() else {
            return;
        };
        match result {
            Ok(()) => {
                tracing::info!(
                    node = self.node,
                    epoch = meta.current_epoch,
                    leader = a.leader,
                    "new epoch persisted"
                );
                self.actions.push_back(FollowerAction::EpochChanged {
                    epoch: meta.current_epoch,
                    leader: meta.leader,
                });
                self.meta = meta;
                self.defer(Deferred::Attach {
                    req: a.req,
                    session: a.session,
                    leader: a.leader,
                    epoch: a.epoch,
                });
            }
            Err(MetaWriteError::Fenced(refused)) => {
                // Another writer persisted a newer epoch meanwhile.
                tracing::warn!(node = self.node, epoch = a.epoch, leader = a.leader, %refused, "handshake refused: a newer epoch is on disk");
                let refused = match refused {
                    EpochRefused::Stale {
                        current, leader, ..
                    } => AttachRefused::StaleEpoch { current, leader },
                    EpochRefused::Conflict { .. } | EpochRefused::Voted { .. } => {
                        AttachRefused::EpochConflict
                    }
                };
                self.answer_attach(a.req, Err(refused));
            }
            Err(MetaWriteError::Storage(e)) => {
                // Refused, and the node goes on with the epoch it had; the
                // leader retries after its backoff (a disk that cannot write
                // meta fails its next WAL write too, which fail-stops).
                self.answer_attach(a.req, Err(AttachRefused::Storage(e)));
            }
        }
        // Attaches that arrived meanwhile are judged against the new epoch.
        for a in std::mem::take(&mut self.held) {
            self.consider_attach(a);
        }
    }

    fn answer_attach(&mut self, req: RequestId, result: Result<LogEnd, AttachRefused>) {
        self.actions
            .push_back(FollowerAction::Attached { req, result });
    }

    fn not_following(&self) -> AttachRefused {
        match &self.mode {
            Mode::Failed(reason) => AttachRefused::Storage(reason.clone()),
            _ => AttachRefused::NotFollower,
        }
    }

    fn defer_reset(&mut self, session: SessionId, req: RequestId, job: Deferred) {
        if self.is_active(session) {
            self.defer(job);
        } else {
            self.actions.push_back(FollowerAction::LogReset {
                req,
                result: Err("session is not the active one".into()),
            });
        }
    }

    fn defer(&mut self, job: Deferred) {
        if self.deferred.len() >= MAX_DEFERRED {
            // Sessions wait for one answer at a time and are bounded by the
            // shell, so this is a broken bound: refuse rather than grow.
            self.answer_deferred(job, "too many requests waiting for the disk".into());
            return;
        }
        self.deferred.push_back(job);
        self.run_deferred();
    }

    fn answer_deferred(&mut self, job: Deferred, reason: String) {
        let action = match job {
            Deferred::Attach { req, .. } => FollowerAction::Attached {
                req,
                result: Err(AttachRefused::Storage(reason)),
            },
            Deferred::Truncate { req, .. } | Deferred::Snapshot { req, .. } => {
                FollowerAction::LogReset {
                    req,
                    result: Err(reason),
                }
            }
            Deferred::Release { req } => FollowerAction::Released {
                req,
                result: Err(reason),
            },
        };
        self.actions.push_back(action);
    }

    fn flush_writes(&mut self) {
        if self.writing.is_some() || self.write_queue.is_empty() || self.has_failed() {
            return;
        }
        let records = std::mem::take(&mut self.write_queue);
        self.writing = records.last().map(|r| r.offset);
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

    /// Forget queued records: the log is what is durable.
    fn reset_to_durable(&mut self) {
        self.write_queue.clear();
        if self.epochs.last_offset() > self.durable {
            self.epochs.truncate_suffix(self.durable);
            self.tell_store(StoreEvent::Truncated(self.durable));
        }
    }

    /// Tell the store of a reset, in order, never lost. Resets start only
    /// while the outbox has room, one at a time; past the bound it was
    /// broken, and the node fail-stops rather than grow it.
    fn tell_store(&mut self, event: StoreEvent) {
        if self.store_outbox.len() >= MAX_STORE_OUTBOX {
            self.fail_stop(format!(
                "bug: the store outbox is over its bound of {MAX_STORE_OUTBOX}"
            ));
            return;
        }
        self.store_outbox.push_back(event);
    }

    fn run_deferred(&mut self) {
        while self.writing.is_none() && self.busy.is_none() {
            let Some(job) = self.deferred.pop_front() else {
                return;
            };
            self.reset_to_durable();
            if let Mode::Failed(reason) = &self.mode {
                let reason = reason.clone();
                self.answer_deferred(job, reason);
                continue;
            }
            match job {
                Deferred::Attach {
                    req,
                    session,
                    leader,
                    epoch,
                } => {
                    if self.mode != Mode::Following || !self.live.contains(&session) {
                        // This node leads now, or the session ended while
                        // waiting.
                        self.answer_attach(req, Err(AttachRefused::NotFollower));
                        continue;
                    }
                    if let Some(old) = self.active.replace(session) {
                        if old != session {
                            self.actions.push_back(FollowerAction::StopSession(old));
                        }
                    }
                    tracing::info!(
                        node = self.node,
                        leader,
                        epoch,
                        offset = self.epochs.last_offset(),
                        "following leader"
                    );
                    self.answer_attach(req, Ok(self.log_end()));
                }
                Deferred::Release { req } => {
                    self.actions.push_back(FollowerAction::Released {
                        req,
                        result: Ok((self.epochs.clone(), self.commit)),
                    });
                }
                Deferred::Truncate { req, to } => {
                    if self.store_outbox.len() >= MAX_STORE_OUTBOX {
                        self.refuse_reset_store_behind(req);
                        continue;
                    }
                    if let Err(e) = maybe_truncate(to, self.commit, self.durable) {
                        self.actions.push_back(FollowerAction::LogReset {
                            req,
                            result: Err(e.to_string()),
                        });
                        continue;
                    }
                    self.busy = Some(Busy::Truncate { req, to });
                    self.actions.push_back(FollowerAction::TruncateWal { to });
                }
                Deferred::Snapshot {
                    req,
                    offset,
                    epoch,
                    bytes,
                } => {
                    if self.store_outbox.len() >= MAX_STORE_OUTBOX {
                        self.refuse_reset_store_behind(req);
                        continue;
                    }
                    let replace_log = plan_snapshot_install(&self.epochs, offset, epoch)
                        == SnapshotInstall::ReplaceLog;
                    self.busy = Some(Busy::Snapshot { req });
                    self.actions.push_back(FollowerAction::InstallSnapshot {
                        offset,
                        epoch,
                        bytes,
                        replace_log,
                    });
                }
            }
        }
    }

    /// Back-pressure: a busy store refuses a reset before it touches the
    /// log; the session closes and the leader retries after its backoff.
    fn refuse_reset_store_behind(&mut self, req: RequestId) {
        self.actions.push_back(FollowerAction::LogReset {
            req,
            result: Err(format!(
                "the metadata store has not taken the last {MAX_STORE_OUTBOX} truncations/snapshots; \
                 refused for now (the leader retries)"
            )),
        });
    }

    fn on_truncated(&mut self, result: Result<EpochIndex, ResetError>) {
        let Some(Busy::Truncate { req, to }) = self.busy else {
            return;
        };
        self.busy = None;
        let result = match result {
            Ok(epochs) => {
                tracing::info!(
                    node = self.node,
                    offset = to,
                    "log truncated at the leader's request"
                );
                self.tell_store(StoreEvent::Truncated(to));
                Ok(self.adopt_log(epochs))
            }
            Err(e) => Err(self.reset_failed(e)),
        };
        self.actions
            .push_back(FollowerAction::LogReset { req, result });
        self.run_deferred();
    }

    fn on_snapshot_installed(&mut self, result: Result<(EpochIndex, Box<Snapshot>), ResetError>) {
        let Some(Busy::Snapshot { req }) = self.busy else {
            return;
        };
        self.busy = None;
        let result = match result {
            Ok((epochs, snap)) => {
                tracing::info!(
                    node = self.node,
                    offset = snap.offset,
                    epoch = snap.epoch,
                    "snapshot installed"
                );
                self.commit = self.commit.max(snap.offset);
                self.tell_store(StoreEvent::Snapshot(snap));
                Ok(self.adopt_log(epochs))
            }
            Err(e) => Err(self.reset_failed(e)),
        };
        self.actions
            .push_back(FollowerAction::LogReset { req, result });
        self.run_deferred();
    }

    /// A reset failed: bad data from the leader is refused (nothing
    /// changed); a disk failure fail-stops.
    fn reset_failed(&mut self, e: ResetError) -> String {
        match e {
            ResetError::Invalid(e) => e,
            ResetError::Storage(e) => {
                let reason = format!("resetting the log failed: {e}");
                self.fail_stop(reason.clone());
                reason
            }
        }
    }

    fn on_release(&mut self, req: RequestId) {
        if self.mode == Mode::Following {
            self.mode = Mode::Leading;
            for &s in &self.live {
                self.actions.push_back(FollowerAction::StopSession(s));
            }
            self.active = None;
        }
        self.defer(Deferred::Release { req });
    }

    /// The disk reset the log (truncation, snapshot): take its epoch index;
    /// everything in it is durable. Returns the new log end.
    fn adopt_log(&mut self, epochs: EpochIndex) -> LogEnd {
        self.epochs = epochs;
        self.durable = self.epochs.last_offset();
        self.log_end()
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
