//! The listener's handlers of its sessions' requests: attach a leader,
//! append, learn the commit point, truncate, install a snapshot, and a
//! session's end. Each becomes one [`FollowerInput`] for the engine; the
//! ones that wait for its answer (attach, truncate, snapshot) get it
//! through a [`Reply`].
//!
//! A child module of `listener.rs` (it sees the listener's private state),
//! separate so that `listener.rs` holds the acceptor, the engine's actions
//! and the node's requests (release, fence, resume), and this file what the
//! sessions ask of it.

use actix::prelude::*;
use metawal::engine::{AttachRefused, FollowerInput};
use tokio::sync::oneshot;

use super::{ReplicaListener, Reply};
use crate::follower::messages::{
    Attach, LogEnd, SessionAppend, SessionCommit, SessionGone, SessionSnapshot, SessionTruncate,
};

impl Handler<Attach> for ReplicaListener {
    type Result = ResponseFuture<Result<LogEnd, AttachRefused>>;

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.sessions.insert(msg.session, msg.addr);
        let req = self.request(Reply::Attach(tx));
        self.input(
            FollowerInput::Attach {
                req,
                session: msg.session,
                leader: msg.leader,
                epoch: msg.epoch,
            },
            ctx,
        );
        Box::pin(async move {
            rx.await
                .unwrap_or(Err(AttachRefused::Storage("listener stopped".into())))
        })
    }
}

impl Handler<SessionAppend> for ReplicaListener {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: SessionAppend, ctx: &mut Context<Self>) -> Result<(), String> {
        // The store must have every truncation before the append is judged.
        self.flush_store();
        let result = self
            .engine
            .append(msg.session, msg.records, msg.entries, msg.commit)
            .map_err(|e| e.to_string());
        if result.is_ok() {
            self.shared.note_leader_contact();
        }
        self.run_actions(ctx);
        result
    }
}

impl Handler<SessionCommit> for ReplicaListener {
    type Result = ();

    fn handle(&mut self, msg: SessionCommit, ctx: &mut Context<Self>) {
        if self.engine.active() == Some(msg.session) {
            self.shared.note_leader_contact();
        }
        self.input(
            FollowerInput::Commit {
                session: msg.session,
                commit: msg.commit,
            },
            ctx,
        );
    }
}

impl Handler<SessionTruncate> for ReplicaListener {
    type Result = ResponseFuture<Result<LogEnd, String>>;

    fn handle(&mut self, msg: SessionTruncate, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let req = self.request(Reply::Reset(tx));
        self.input(
            FollowerInput::Truncate {
                req,
                session: msg.session,
                to: msg.to,
            },
            ctx,
        );
        Box::pin(async move { rx.await.unwrap_or(Err("listener stopped".into())) })
    }
}

impl Handler<SessionSnapshot> for ReplicaListener {
    type Result = ResponseFuture<Result<LogEnd, String>>;

    fn handle(&mut self, msg: SessionSnapshot, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let req = self.request(Reply::Reset(tx));
        self.input(
            FollowerInput::Snapshot {
                req,
                session: msg.session,
                offset: msg.offset,
                epoch: msg.epoch,
                bytes: msg.bytes,
            },
            ctx,
        );
        Box::pin(async move { rx.await.unwrap_or(Err("listener stopped".into())) })
    }
}

impl Handler<SessionGone> for ReplicaListener {
    type Result = ();

    fn handle(&mut self, msg: SessionGone, ctx: &mut Context<Self>) {
        self.sessions.remove(&msg.session);
        self.input(FollowerInput::SessionGone(msg.session), ctx);
    }
}
