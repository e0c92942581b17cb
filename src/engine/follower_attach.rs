//! The follower's attach path: an attach from a session is judged against
//! the persisted epoch, a new epoch (and its leader) is persisted before it
//! is acted on, one write at a time, and attaches arriving meanwhile are
//! held and judged after it.
//!
//! A child module of `follower.rs` (it sees the engine's private state),
//! separate because the epoch rules are one concern of their own.

use crate::engine::epoch::{maybe_advance_epoch, EpochRefused, EpochStep};

use super::{
    AttachRefused, Deferred, FollowerAction, HeldAttach, LogEnd, MetaWriteError, Mode,
    ReplicaListenerEngine, RequestId, MAX_HELD_ATTACHES,
};

impl ReplicaListenerEngine {
    pub(super) fn consider_attach(&mut self, a: HeldAttach) {
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

    pub(super) fn on_meta_written(&mut self, result: Result<(), MetaWriteError>) {
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

    pub(super) fn answer_attach(&mut self, req: RequestId, result: Result<LogEnd, AttachRefused>) {
        self.actions
            .push_back(FollowerAction::Attached { req, result });
    }

    fn not_following(&self) -> AttachRefused {
        match &self.mode {
            Mode::Failed(reason) => AttachRefused::Storage(reason.clone()),
            _ => AttachRefused::NotFollower,
        }
    }
}
