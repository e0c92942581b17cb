//! The steps of a role change, as the node engine asks for them: each does
//! one thing on the node's actors or disk and reports how it went.

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use metawal::engine::epoch::EpochRefused;
use metawal::epochs::EpochIndex;
use metawal::storage::NodeMeta;
use metawal::NodeId;

use super::{replicator_init, Node};
use crate::election::{RoleChanges, StepError};
use crate::error::ProposeError;
use crate::follower::listener::{ReleaseLog, ResumeFollowing, SetWake};
use crate::leader::replicator::{
    ChangeFacts, GetChangeFacts, Replicator, StopReplicator, WatchCatchUp,
};
use crate::store::{AppendMembership, DropLeadership, TakeLeadership, ToReplicator};
use metawal::membership::Membership;

/// The steps of a role change, as the node engine asks for them (see
/// `metawal::engine::node`): each does one thing on the node's actors or
/// disk and reports how it went; none decides.
impl RoleChanges for Node {
    fn release_log(&self) -> LocalBoxFuture<'static, Result<(EpochIndex, u64), StepError>> {
        let listener = self.listener.clone();
        Box::pin(async move {
            // Sessions closed, writes settled: this is the log to lead with.
            listener
                .send(ReleaseLog)
                .await
                .map_err(|_| StepError::Failed("the listener stopped".into()))?
                .map_err(StepError::Failed)
        })
    }

    fn persist_epoch(
        &self,
        epoch: u64,
        commit_hint: u64,
    ) -> LocalBoxFuture<'static, Result<(), StepError>> {
        let meta = NodeMeta {
            node_id: self.node_id,
            cluster_id: self.config.cluster_id.clone(),
            directory_id: metawal::membership::DirectoryId::UNKNOWN,
            current_epoch: epoch,
            leader: Some(self.node_id),
            // Kept from disk in the same epoch (the node's own vote).
            voted_for: None,
            commit_hint,
        };
        let disk = self.disk.clone();
        Box::pin(async move {
            // Checked against the meta on disk, on the disk thread that
            // writes every meta: an attach that persisted a higher epoch
            // since is never overwritten with a lower one.
            let written = disk
                .persist_meta(meta)
                .await
                .map_err(|e| StepError::Failed(e.to_string()))?;
            match written {
                Ok(()) => Ok(()),
                Err(EpochRefused::Stale { current, .. }) => Err(StepError::Stale { current }),
                Err(refused) => Err(StepError::Failed(refused.to_string())),
            }
        })
    }

    fn start_leading(
        &self,
        epoch: u64,
        epochs: EpochIndex,
        commit: u64,
    ) -> LocalBoxFuture<'static, Result<(), StepError>> {
        let node = self.clone();
        Box::pin(async move {
            let init = replicator_init(&node, epoch, epochs, commit);
            let replicator =
                Replicator::start_in_arbiter(&node.arbiter, move |_| Replicator::new(init));
            let stopped = || StepError::Failed("the node is shutting down".into());
            if let Err(e) = node
                .listener
                .send(SetWake(replicator.clone().recipient()))
                .await
            {
                let _ = replicator.send(StopReplicator { step_down: false }).await;
                return Err(StepError::Failed(format!("the listener stopped: {e}")));
            }
            // The store owns the Replicator from here; it refuses (and
            // stops it) if the node began closing, even while this step ran.
            let take = TakeLeadership {
                epoch,
                replicator: replicator.clone(),
            };
            match node.store.send(take).await {
                Ok(taken) => taken.map_err(StepError::Failed),
                Err(_) => {
                    // The store is gone: nobody else will stop it.
                    let _ = replicator.send(StopReplicator { step_down: false }).await;
                    Err(stopped())
                }
            }
        })
    }

    fn stop_leading(&self) -> LocalBoxFuture<'static, ()> {
        let store = self.store.clone();
        Box::pin(async move {
            // Stops the Replicator (waiting proposals get
            // `LeadershipLost`), then the store's leadership. A stopped
            // store has neither.
            let _ = store.send(DropLeadership).await;
        })
    }

    fn resume_following(
        &self,
        keep_commit: bool,
    ) -> LocalBoxFuture<'static, Result<(u64, Option<NodeId>), String>> {
        let node = self.clone();
        Box::pin(async move {
            // After every write queued before this call.
            let on_disk = node.disk.read_back().await;
            let (epochs, meta) = match on_disk {
                Ok((epochs, Ok(Some(meta)))) => (epochs, meta),
                Ok((_, Ok(None))) => return Err("the meta file is missing".to_string()),
                Ok((_, Err(e))) => return Err(format!("cannot read meta back: {e}")),
                Err(e) => return Err(format!("cannot read the log back: {e}")),
            };
            let commit = if keep_commit {
                node.progress_rx.borrow().commit
            } else {
                0
            };
            let found = (meta.current_epoch, meta.leader);
            node.listener
                .send(ResumeFollowing {
                    epochs,
                    meta,
                    commit,
                })
                .await
                .map_err(|_| "the listener stopped".to_string())?;
            Ok(found)
        })
    }

    fn change_facts(&self) -> LocalBoxFuture<'static, Option<ChangeFacts>> {
        let store = self.store.clone();
        Box::pin(async move {
            store
                .send(ToReplicator(GetChangeFacts))
                .await
                .ok()
                .flatten()
        })
    }

    fn append_membership(
        &self,
        membership: Membership,
    ) -> LocalBoxFuture<'static, Result<u64, ProposeError>> {
        let store = self.store.clone();
        Box::pin(async move {
            store
                .send(AppendMembership(membership))
                .await
                .map_err(|_| ProposeError::ShuttingDown)?
                .map(|p| p.offset)
        })
    }

    fn caught_up(&self, to: NodeId) -> LocalBoxFuture<'static, bool> {
        let store = self.store.clone();
        Box::pin(async move {
            match store.send(ToReplicator(WatchCatchUp { to })).await {
                Ok(Some(rx)) => rx.await.is_ok(),
                Ok(None) | Err(_) => false,
            }
        })
    }
}
