//! The store's side of leadership: the `MetadataStore` owns the leader's
//! `Replicator` (the design's MetadataStore → Replicator edge). It takes it
//! when this node starts leading, stops it when the node stops leading or
//! closes, and is the only way the rest of the node reaches it
//! ([`ToReplicator`]).
//!
//! Why here and not behind a lock in `Node`: every change goes through the
//! store's mailbox, one at a time, so "closing" and "taking a leadership"
//! are ordered. A leadership taken after the node began closing is refused
//! and its Replicator stopped; one taken before is stopped by the close.

use actix::prelude::*;
use metawal::engine::store::StoreInput;

use super::MetadataStore;
use crate::leader::replicator::{ProbeLinks, Replicator, StopReplicator};

/// This node now leads `epoch` through `replicator`: build the appended
/// state (the applied state plus every entry in the WAL after it) and
/// append the `LeaderChange`. Refused (and `replicator` stopped) once the
/// node is closing.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub(crate) struct TakeLeadership {
    pub epoch: u64,
    pub replicator: Addr<Replicator>,
}

/// This node no longer leads: stop the Replicator (proposals waiting for
/// acks get `LeadershipLost`), then forget the appended state and queued
/// entries (committed ones are read back from the WAL).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DropLeadership;

/// The node is closing (shutdown or crash): stop the Replicator, without a
/// step-down, and refuse every leadership taken from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseLeadership;

/// A read index waits for the followers' answers: have the Replicator's
/// links probe them now (see `ProbeLinks`). Nothing while not leading.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ProbeFollowers;

/// Send `M` to the leader's Replicator and return its answer: `None` if
/// this node does not lead (or the Replicator stopped).
pub(crate) struct ToReplicator<M>(pub M);

impl<M> Message for ToReplicator<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    type Result = Option<M::Result>;
}

/// Stop `replicator` in the background of the store (it answers once its
/// links have stopped).
fn stop(store: &MetadataStore, replicator: Addr<Replicator>, ctx: &mut Context<MetadataStore>) {
    let job = async move {
        let _ = replicator.send(StopReplicator { step_down: false }).await;
    };
    ctx.spawn(job.into_actor(store));
}

impl Handler<TakeLeadership> for MetadataStore {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, msg: TakeLeadership, ctx: &mut Context<Self>) -> Self::Result {
        const CLOSING: &str = "the node is shutting down";
        if self.closed {
            stop(self, msg.replicator, ctx);
            return Box::pin(fut::ready(Err(CLOSING.to_string())));
        }
        // The listener released the log: every record in it is durable and
        // nothing is written until the Replicator starts. Rare (a role
        // change), so it runs on the writer thread, after any write queued
        // before it.
        let job = self.disk.replay_log(self.engine.state().clone());
        Box::pin(job.into_actor(self).map(move |res, act, ctx| {
            // Closed while the log was replayed: the close did not see
            // this Replicator, so it is stopped here.
            if act.closed {
                stop(act, msg.replicator, ctx);
                return Err(CLOSING.to_string());
            }
            let (state, last) = match res {
                Ok(replayed) => replayed,
                Err(e) => {
                    stop(act, msg.replicator, ctx);
                    return Err(e);
                }
            };
            act.replicator = Some(msg.replicator);
            act.input(
                StoreInput::Lead {
                    epoch: msg.epoch,
                    appended: state,
                    next_offset: last + 1,
                },
                ctx,
            );
            act.announce_leadership(ctx)
                .map_err(|e| format!("cannot append the LeaderChange of epoch {}: {e}", msg.epoch))
        }))
    }
}

impl Handler<DropLeadership> for MetadataStore {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: DropLeadership, _ctx: &mut Context<Self>) -> Self::Result {
        let replicator = self.replicator.take();
        let job = async move {
            if let Some(r) = replicator {
                let _ = r.send(StopReplicator { step_down: true }).await;
            }
        };
        Box::pin(
            job.into_actor(self)
                .map(|(), act, ctx| act.input(StoreInput::StepDown, ctx)),
        )
    }
}

impl Handler<CloseLeadership> for MetadataStore {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: CloseLeadership, _ctx: &mut Context<Self>) -> Self::Result {
        self.closed = true;
        let replicator = self.replicator.take();
        Box::pin(async move {
            if let Some(r) = replicator {
                let _ = r.send(StopReplicator { step_down: false }).await;
            }
        })
    }
}

impl Handler<ProbeFollowers> for MetadataStore {
    type Result = ();

    fn handle(&mut self, _msg: ProbeFollowers, _ctx: &mut Context<Self>) {
        if let Some(r) = &self.replicator {
            // Best effort: the links probe every heartbeat interval anyway.
            let _ = r.try_send(ProbeLinks);
        }
    }
}

impl<M> Handler<ToReplicator<M>> for MetadataStore
where
    Replicator: Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    type Result = ResponseFuture<Option<M::Result>>;

    fn handle(&mut self, msg: ToReplicator<M>, _ctx: &mut Context<Self>) -> Self::Result {
        let replicator = self.replicator.clone();
        Box::pin(async move { replicator?.send(msg.0).await.ok() })
    }
}

/// Leader: append a `Membership` entry (a change the node engine admitted,
/// or the bootstrap membership the log does not hold yet). The Replicator
/// is told the new membership first, in its mailbox's order, so it counts
/// the entry by the voters it puts in force. Answers the entry's offset
/// once it is in the log (not yet durable or committed).
#[derive(Message)]
#[rtype(result = "Result<crate::store::Proposed, crate::error::ProposeError>")]
pub(crate) struct AppendMembership(pub metawal::membership::Membership);

impl Handler<AppendMembership> for MetadataStore {
    type Result = Result<crate::store::Proposed, crate::error::ProposeError>;

    fn handle(&mut self, msg: AppendMembership, ctx: &mut Context<Self>) -> Self::Result {
        use crate::error::{Overload, ProposeError};
        let Some(replicator) = &self.replicator else {
            return Err(ProposeError::NotLeader {
                node: self.node,
                leader: self.shared.leader(),
            });
        };
        let members = std::sync::Arc::new(msg.0.clone());
        replicator
            .try_send(crate::leader::replicator::SetMembers(members))
            .map_err(|e| match e {
                SendError::Full(_) => ProposeError::Overloaded(Overload::ReplicatorMailbox),
                SendError::Closed(_) => ProposeError::ShuttingDown,
            })?;
        let command = metawal::Command::Membership(msg.0);
        match self.append(command, crate::store::Acks::None, true, None, ctx) {
            Ok(proposed) => Ok(proposed),
            Err(super::Refused { error: e, .. }) => {
                // Nothing was appended: the Replicator goes back to the
                // membership in force (the NodeDriver, which asked, has not
                // moved it). Right behind the first, so it fits or the
                // Replicator is gone.
                if let Some(r) = &self.replicator {
                    let back = crate::leader::replicator::SetMembers(self.shared.membership().0);
                    if let Err(SendError::Full(_)) = r.try_send(back) {
                        // It would count voters the log does not have.
                        tracing::error!(node = self.node, "cannot move the Replicator back to the membership in force; node fail-stops");
                        self.shared.fail_stop();
                    }
                }
                Err(e)
            }
        }
    }
}
