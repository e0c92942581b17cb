//! The steps of a role change and of a membership change that the node
//! carries out when the NodeDriver asks ([`RoleChanges`]), and how a step
//! fails ([`StepError`]). A child module of `driver.rs`.

use futures::future::LocalBoxFuture;
use metawal::epochs::EpochIndex;
use metawal::membership::Membership;
use metawal::NodeId;

use crate::leader::replicator::ChangeFacts;

/// Why a role-change step failed: a higher epoch on disk, or another
/// reason (logged).
#[derive(Debug)]
pub(crate) enum StepError {
    /// The disk holds a higher epoch.
    Stale { current: u64 },
    /// Anything else: the part that failed and what it said.
    Failed(String),
}

/// The steps of a role change, which the node carries out when the engine
/// asks (`Node` implements this in `node.rs`). None of them decides
/// anything: each does one thing and reports how it went. A trait, so that
/// the driver does not import the node that starts it.
pub(crate) trait RoleChanges: Send + 'static {
    /// End the follower's sessions, let its in-flight write finish: the
    /// log to lead with and its commit point.
    fn release_log(&self) -> LocalBoxFuture<'static, Result<(EpochIndex, u64), StepError>>;
    /// Write meta: `epoch` led by this node, fenced against the disk.
    fn persist_epoch(
        &self,
        epoch: u64,
        commit_hint: u64,
    ) -> LocalBoxFuture<'static, Result<(), StepError>>;
    /// Start the Replicator on `epochs` and the store's leadership (it
    /// appends `LeaderChange`).
    fn start_leading(
        &self,
        epoch: u64,
        epochs: EpochIndex,
        commit: u64,
    ) -> LocalBoxFuture<'static, Result<(), StepError>>;
    /// Stop the Replicator if one runs and drop the store's leadership.
    fn stop_leading(&self) -> LocalBoxFuture<'static, ()>;
    /// Follow again with the log and meta as on disk: the meta's epoch and
    /// leader, or why they could not be read back.
    fn resume_following(
        &self,
        keep_commit: bool,
    ) -> LocalBoxFuture<'static, Result<(u64, Option<NodeId>), String>>;
    /// Resolves once `to` has acknowledged the leader's whole log (never,
    /// if the leadership ends first).
    fn caught_up(&self, to: NodeId) -> LocalBoxFuture<'static, bool>;
    /// Leader: what a membership change is admitted on (`None`: not
    /// leading).
    fn change_facts(&self) -> LocalBoxFuture<'static, Option<ChangeFacts>>;
    /// Leader: append a `Membership` entry; its offset once in the log.
    fn append_membership(
        &self,
        membership: Membership,
    ) -> LocalBoxFuture<'static, Result<u64, crate::error::ProposeError>>;
}
