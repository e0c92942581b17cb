//! The follower's log resets: requests that must wait for the write in
//! flight (attach, truncate, snapshot install, release) are deferred and run
//! one at a time; a truncation or an install is checked, carried out by the
//! disk, and told to the metadata store through the bounded outbox.
//!
//! A child module of `follower.rs` (it sees the engine's private state),
//! separate because the reset rules are one concern of their own.

use crate::epochs::EpochIndex;
use crate::storage::Snapshot;

use super::{
    maybe_truncate, plan_snapshot_install, AttachRefused, Busy, Deferred, FollowerAction, LogEnd,
    Mode, ReplicaListenerEngine, RequestId, ResetError, SessionId, SnapshotInstall, StoreEvent,
    MAX_DEFERRED, MAX_STORE_OUTBOX,
};

impl ReplicaListenerEngine {
    pub(super) fn defer_reset(&mut self, session: SessionId, req: RequestId, job: Deferred) {
        if self.is_active(session) {
            self.defer(job);
        } else {
            self.actions.push_back(FollowerAction::LogReset {
                req,
                result: Err("session is not the active one".into()),
            });
        }
    }

    pub(super) fn defer(&mut self, job: Deferred) {
        if self.deferred.len() >= MAX_DEFERRED {
            // Sessions wait for one answer at a time and are bounded by the
            // shell, so this is a broken bound: refuse rather than grow.
            self.answer_deferred(job, "too many requests waiting for the disk".into());
            return;
        }
        self.deferred.push_back(job);
        self.run_deferred();
    }

    pub(super) fn answer_deferred(&mut self, job: Deferred, reason: String) {
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

    /// Forget queued records: the log is what is durable.
    pub(super) fn reset_to_durable(&mut self) {
        self.write_queue.clear();
        self.queued_members.clear();
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

    pub(super) fn run_deferred(&mut self) {
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

    pub(super) fn on_truncated(&mut self, result: Result<EpochIndex, ResetError>) {
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

    pub(super) fn on_snapshot_installed(
        &mut self,
        result: Result<(EpochIndex, Box<Snapshot>), ResetError>,
    ) {
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

    pub(super) fn on_release(&mut self, req: RequestId) {
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
    pub(super) fn adopt_log(&mut self, epochs: EpochIndex) -> LogEnd {
        self.epochs = epochs;
        self.durable = self.epochs.last_offset();
        self.log_end()
    }
}
