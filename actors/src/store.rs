//! `MetadataStore`: the actor a broker talks to, on every node, and the
//! shell of the store engine ([`MetadataStoreEngine`]).
//!
//! - On the leader it takes typed proposals. The engine decides admission
//!   (the role, the ISR size for `acks=all`, the command against the
//!   *appended* state, the bound on uncommitted entries) and gives the entry
//!   its offset and record; this actor hands the record, with the
//!   proposer's reply channel, to the Replicator, which answers once the
//!   entry has the acknowledgement asked for (or its request timeout
//!   passed). An invalid proposal gets its specific error from here and
//!   nothing is appended.
//! - On every node the engine applies committed entries in offset order;
//!   this actor updates the [`MetadataView`] and notifies subscribers with
//!   [`MetadataChanged`] as each one is applied. Entries come from a bounded
//!   in-memory queue (the leader's own proposals, or what the follower
//!   received); whatever is not there is read back from the WAL on the disk
//!   reader thread. Progress (commit, local durability) arrives through the
//!   node's watch channel.
//! - Every `snapshot_every` applied entries the engine asks for a snapshot;
//!   this actor writes it and lets the WAL drop old segments.

use std::sync::Arc;

use actix::prelude::*;
use metawal::engine::node::Published;
use metawal::engine::store::{
    Admission, AdmitRefused, ApplySink, MetadataStoreEngine, StoreAction, StoreInput,
};
use metawal::storage::Snapshot;
use metawal::{Command, Entry, MetadataState, NodeId, ReplicationConfig};
use tokio::sync::{oneshot, watch};

use crate::disk::DiskHandle;
use crate::error::{Overload, ProposeError};
use crate::leader::replicator::{AppendEntry, LogStartMoved, Replicator};
use crate::progress::LogProgress;
use crate::shared::NodeShared;
use crate::view::{MetadataChanged, MetadataView};

/// Most bytes of committed records read back from the WAL at once.
const READ_BYTES: usize = 8 * 1024 * 1024;
/// Most subscribers.
const MAX_SUBSCRIBERS: usize = 1024;

/// How much acknowledgement a proposal waits for (decided by the leader
/// engine, [`metawal::engine::ReplicatorEngine`]).
pub use metawal::engine::Acks;

#[path = "store_leadership.rs"]
mod leadership;
pub(crate) use leadership::{
    AppendMembership, CloseLeadership, DropLeadership, ProbeFollowers, TakeLeadership, ToReplicator,
};

// The messages the store takes and answers, in a file of their own (the
// actor's file was over 600 lines).
#[path = "store_messages.rs"]
mod messages;
pub use messages::{Applied, GetApplied, GetState, Propose, Proposed, Subscribe};
pub(crate) use messages::{
    EntriesInFlight, FollowerEntries, InstallSnapshot, ProposeWith, Reply, StopStore, Truncated,
};

/// A proposal the store did not hand to the Replicator, and the reply
/// channel it came with (to answer with `error`).
struct Refused {
    error: ProposeError,
    reply: Option<Reply>,
}

/// Everything the store needs at start.
pub(crate) struct StoreInit {
    pub node: NodeId,
    pub shared: Arc<NodeShared>,
    pub config: ReplicationConfig,
    pub state: MetadataState,
    pub view: MetadataView,
    pub disk: DiskHandle,
    pub progress: watch::Receiver<LogProgress>,
    pub in_flight: EntriesInFlight,
    /// Leader only: the appended state, its next offset, epoch and Replicator.
    pub leader: Option<(MetadataState, u64, u64, Addr<Replicator>)>,
}

/// The metadata store actor (see the module docs).
pub struct MetadataStore {
    node: NodeId,
    shared: Arc<NodeShared>,
    config: ReplicationConfig,
    engine: MetadataStoreEngine,
    view: MetadataView,
    disk: DiskHandle,
    /// The Replicator proposals go to, while leading.
    replicator: Option<Addr<Replicator>>,
    /// At start on the leader: the epoch to lead and its appended state.
    lead_at_start: Option<(MetadataState, u64, u64)>,
    progress_rx: Option<watch::Receiver<LogProgress>>,
    in_flight: EntriesInFlight,
    subscribers: Vec<Recipient<MetadataChanged>>,
    /// A new log start the Replicator has not taken yet.
    log_start_moved: Option<(u64, u64)>,
    /// The node is closing: a leadership taken from now on is refused
    /// (see [`CloseLeadership`]).
    closed: bool,
}

/// Where the engine's applied entries go: the view, then the subscribers,
/// in order, as each one is applied.
struct ViewSink<'a> {
    node: NodeId,
    view: &'a MetadataView,
    subscribers: &'a mut Vec<Recipient<MetadataChanged>>,
}

impl ApplySink for ViewSink<'_> {
    fn applied(&mut self, state: &MetadataState, entry: Entry) {
        self.view.update(state, &entry.command);
        self.view.set_applied(entry.offset, entry.epoch);
        if self.subscribers.is_empty() {
            return;
        }
        let (node, offset) = (self.node, entry.offset);
        let change = MetadataChanged {
            offset: entry.offset,
            epoch: entry.epoch,
            command: entry.command,
        };
        self.subscribers
            .retain(|s| match s.try_send(change.clone()) {
                Ok(()) => true,
                Err(SendError::Full(_)) => {
                    tracing::warn!(node, offset, "subscriber's mailbox is full; unsubscribed (re-subscribe and re-read the view)");
                    false
                }
                Err(SendError::Closed(_)) => false,
            });
    }

    fn reset(&mut self, state: &MetadataState) {
        self.view.reset(state);
    }
}

impl MetadataStore {
    pub(crate) fn new(init: StoreInit) -> MetadataStore {
        init.view.reset(&init.state);
        let progress = *init.progress.borrow();
        let (lead_at_start, replicator) = match init.leader {
            Some((state, next_offset, epoch, replicator)) => {
                (Some((state, next_offset, epoch)), Some(replicator))
            }
            None => (None, None),
        };
        MetadataStore {
            node: init.node,
            shared: init.shared,
            engine: MetadataStoreEngine::new(
                init.node,
                init.state,
                init.config.snapshot_every,
                progress,
            ),
            config: init.config,
            view: init.view,
            disk: init.disk,
            replicator,
            lead_at_start,
            progress_rx: Some(init.progress),
            in_flight: init.in_flight,
            subscribers: Vec::new(),
            log_start_moved: None,
            closed: false,
        }
    }

    /// Feed one input to the engine and carry out what it asks.
    fn input(&mut self, input: StoreInput, ctx: &mut Context<Self>) {
        let mut sink = ViewSink {
            node: self.node,
            view: &self.view,
            subscribers: &mut self.subscribers,
        };
        self.engine.handle(input, &mut sink);
        // Once per input, after every entry it applied.
        self.view.publish_applied();
        self.run_actions(ctx);
    }

    fn run_actions(&mut self, ctx: &mut Context<Self>) {
        self.report_log_start();
        while let Some(action) = self.engine.poll_action() {
            match action {
                StoreAction::ReadWal { from, count, upto } => {
                    // On the reader thread: it never waits behind (or
                    // delays) the group commits.
                    let read = self.disk.read_wal(from, count, READ_BYTES);
                    ctx.spawn(read.into_actor(self).map(move |res, act, ctx| {
                        let result = res.map_err(|e| e.to_string());
                        act.input(StoreInput::WalRead { from, upto, result }, ctx);
                    }));
                }
                StoreAction::RetryReadLater => {
                    ctx.run_later(self.config.heartbeat_interval, |act, ctx| {
                        act.input(StoreInput::RetryRead, ctx)
                    });
                }
                StoreAction::TakeSnapshot {
                    snapshot,
                    keep_from,
                } => self.take_snapshot(snapshot, keep_from, ctx),
                StoreAction::FailStop(_reason) => {
                    // The engine logged why; the node takes no proposals
                    // and no replication from now on. Restart it. On a
                    // leader the Replicator and its links stop too, so the
                    // followers stop hearing it and elect another leader.
                    self.shared.fail_stop();
                    if let Some(r) = self.replicator.take() {
                        ctx.spawn(
                            async move {
                                let _ = r
                                    .send(crate::leader::replicator::StopReplicator {
                                        step_down: false,
                                    })
                                    .await;
                            }
                            .into_actor(self),
                        );
                    }
                }
            }
        }
    }

    /// What admission needs from the node.
    fn admission(&self) -> Admission {
        // The node engine's rule, on what it published.
        let l = self.shared.leadership();
        let published = Published {
            role: l.role,
            epoch: l.epoch,
            leader: l.leader,
            transferring: self.shared.transferring(),
        };
        Admission {
            role: published.admission(),
            isr_len: self.shared.isr_len(),
            min_insync: self.shared.min_insync(),
        }
    }

    /// Admit a command (the engine decides), hand its record to the
    /// Replicator, with `reply` for the Replicator to answer once the entry
    /// has the acknowledgement asked for (none for `acks=none`: the caller
    /// answers). Returns the offset, or the refusal with `reply` back.
    fn append(
        &mut self,
        command: Command,
        acks: Acks,
        control: bool,
        reply: Option<Reply>,
        ctx: &mut Context<Self>,
    ) -> Result<Proposed, Refused> {
        let admitted =
            match self
                .engine
                .admit(command, acks == Acks::All, control, self.admission())
            {
                Ok(a) => a,
                Err(e) => {
                    let error = self.refused(e);
                    return Err(Refused { error, reply });
                }
            };
        let Some(replicator) = &self.replicator else {
            let error = self.refused(AdmitRefused::NotLeader { leader: None });
            return Err(Refused { error, reply });
        };
        let entry = AppendEntry {
            record: admitted.record,
            acks,
            reply,
        };
        if let Err(e) = replicator.try_send(entry) {
            let (error, entry) = match e {
                SendError::Full(m) => (ProposeError::Overloaded(Overload::ReplicatorMailbox), m),
                SendError::Closed(m) => (ProposeError::ShuttingDown, m),
            };
            let reply = entry.reply;
            return Err(Refused { error, reply });
        }
        // Accepted: from here on the entry is in the log's order.
        let proposed = Proposed {
            offset: admitted.entry.offset,
            epoch: admitted.entry.epoch,
        };
        self.engine.appended(admitted.entry);
        self.run_actions(ctx);
        Ok(proposed)
    }

    /// [`Self::append`] for a proposer waiting on `reply`: a refusal, and
    /// `acks=none`'s offset, are answered here; an acknowledgement by the
    /// Replicator.
    fn propose(&mut self, command: Command, acks: Acks, reply: Reply, ctx: &mut Context<Self>) {
        // The proposer may have gone: then there is nothing to tell.
        if acks == Acks::None {
            let result = self.append(command, acks, false, None, ctx);
            let _ = reply.send(result.map_err(|r| r.error));
            return;
        }
        if let Err(Refused {
            error,
            reply: Some(reply),
        }) = self.append(command, acks, false, Some(reply), ctx)
        {
            let _ = reply.send(Err(error));
        }
    }

    fn refused(&self, e: AdmitRefused) -> ProposeError {
        match e {
            AdmitRefused::NotLeader { leader } => ProposeError::NotLeader {
                node: self.node,
                leader,
            },
            AdmitRefused::Failed => ProposeError::StorageFailed,
            AdmitRefused::Stopped => ProposeError::ShuttingDown,
            AdmitRefused::NotEnoughReplicas { isr, required } => {
                ProposeError::NotEnoughReplicas { isr, required }
            }
            AdmitRefused::Invalid(e) => ProposeError::Invalid(e),
            AdmitRefused::Uncommitted { entries, max } => {
                ProposeError::Overloaded(Overload::Uncommitted { entries, max })
            }
            AdmitRefused::TooLarge { bytes, max } => ProposeError::TooLarge { bytes, max },
            AdmitRefused::Encode(e) => ProposeError::Encode(e),
        }
    }

    /// Append the leader's `LeaderChange`, the first entry of its epoch: its
    /// commit commits every entry before it. Without it the leader could
    /// commit nothing of its epoch, so a failure is returned (and the
    /// caller fails the role change or the node), never only logged.
    fn announce_leadership(&mut self, ctx: &mut Context<Self>) -> Result<(), ProposeError> {
        let Some(epoch) = self.engine.leading() else {
            return Ok(());
        };
        let command = Command::LeaderChange {
            leader: self.node,
            epoch,
        };
        let p = self
            .append(command, Acks::None, true, None, ctx)
            .map_err(|r| r.error)?;
        tracing::info!(
            node = self.node,
            offset = p.offset,
            epoch = p.epoch,
            "leader appended LeaderChange"
        );
        Ok(())
    }

    /// Tell the Replicator (if leading) where the log starts now.
    fn report_log_start(&mut self) {
        let (Some((base_offset, base_epoch)), Some(replicator)) =
            (self.log_start_moved, &self.replicator)
        else {
            self.log_start_moved = None;
            return;
        };
        let moved = LogStartMoved {
            base_offset,
            base_epoch,
        };
        // Latest wins; retried on the next input if its mailbox is full.
        if !matches!(replicator.try_send(moved), Err(SendError::Full(_))) {
            self.log_start_moved = None;
        }
    }

    fn take_snapshot(&mut self, snapshot: Snapshot, keep_from: u64, ctx: &mut Context<Self>) {
        let offset = snapshot.offset;
        let node = self.node;
        let job = self.disk.write_snapshot(snapshot, keep_from);
        ctx.spawn(job.into_actor(self).map(move |res, act, ctx| {
            let input = match res {
                Ok((base_offset, base_epoch)) => {
                    tracing::info!(
                        node,
                        offset,
                        log_start = base_offset + 1,
                        "snapshot written"
                    );
                    // Links must not look for records before the new log
                    // start: tell the Replicator.
                    act.log_start_moved = Some((base_offset, base_epoch));
                    StoreInput::SnapshotWritten { offset }
                }
                Err(error) => StoreInput::SnapshotFailed { offset, error },
            };
            act.input(input, ctx);
        }));
    }
}

impl Actor for MetadataStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        if let Some(rx) = self.progress_rx.take() {
            ctx.add_stream(crate::progress::updates(rx));
        }
        if let Some((appended, next_offset, epoch)) = self.lead_at_start.take() {
            self.input(
                StoreInput::Lead {
                    epoch,
                    appended,
                    next_offset,
                },
                ctx,
            );
            if let Err(e) = self.announce_leadership(ctx) {
                tracing::error!(node = self.node, epoch, error = %e, "cannot append the LeaderChange of this epoch; node fail-stops");
                self.shared.fail_stop();
            }
        }
        let progress = self.engine.progress();
        self.input(StoreInput::Progress(progress), ctx);
    }
}

impl StreamHandler<LogProgress> for MetadataStore {
    fn handle(&mut self, progress: LogProgress, ctx: &mut Context<Self>) {
        self.input(StoreInput::Progress(progress), ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The progress channel closes when the node stops; keep serving reads.
    }
}

impl Handler<Propose> for MetadataStore {
    type Result = ResponseFuture<Result<Proposed, ProposeError>>;

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, rx) = oneshot::channel();
        self.propose(msg.command, msg.acks, reply, ctx);
        // The reply is dropped unanswered only if the node stops.
        Box::pin(async move { rx.await.unwrap_or(Err(ProposeError::ShuttingDown)) })
    }
}

impl Handler<ProposeWith> for MetadataStore {
    type Result = ();

    fn handle(&mut self, msg: ProposeWith, ctx: &mut Context<Self>) {
        self.propose(msg.command, msg.acks, msg.reply, ctx);
    }
}

impl Handler<Subscribe> for MetadataStore {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) {
        self.subscribers.retain(|s| s.connected());
        if self.subscribers.len() >= MAX_SUBSCRIBERS {
            tracing::warn!(
                node = self.node,
                "too many subscribers; subscription refused"
            );
            return;
        }
        self.subscribers.push(msg.0);
    }
}

impl Handler<FollowerEntries> for MetadataStore {
    type Result = ();

    fn handle(&mut self, msg: FollowerEntries, ctx: &mut Context<Self>) {
        self.in_flight.release(msg.0.len());
        self.input(StoreInput::Entries(msg.0), ctx);
    }
}

impl Handler<Truncated> for MetadataStore {
    type Result = ();

    fn handle(&mut self, msg: Truncated, ctx: &mut Context<Self>) {
        self.input(StoreInput::Truncated { to: msg.to }, ctx);
    }
}

impl Handler<InstallSnapshot> for MetadataStore {
    type Result = ();

    fn handle(&mut self, msg: InstallSnapshot, ctx: &mut Context<Self>) {
        self.input(StoreInput::SnapshotInstalled(msg.0), ctx);
    }
}

impl Handler<GetApplied> for MetadataStore {
    type Result = MessageResult<GetApplied>;

    fn handle(&mut self, _msg: GetApplied, _ctx: &mut Context<Self>) -> Self::Result {
        let state = self.engine.state();
        MessageResult(Applied {
            offset: state.applied_offset(),
            epoch: state.applied_epoch(),
            digest: state.digest(),
        })
    }
}

impl Handler<GetState> for MetadataStore {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _msg: GetState, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(Box::new(self.engine.state().clone()))
    }
}

impl Handler<StopStore> for MetadataStore {
    type Result = ();

    fn handle(&mut self, _msg: StopStore, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
