//! `MetadataStore`: the actor a broker talks to, on every node.
//!
//! - On the leader it accepts typed proposals: it checks the role and, for
//!   `acks=all`, the ISR size; validates the command against the *appended*
//!   state (committed entries plus those appended but not yet committed, so
//!   two proposals in a row are checked against each other); gives the entry
//!   the next offset, encodes it once into a [`Record`] and hands it to the
//!   Replicator. An invalid proposal gets its specific error and nothing is
//!   appended.
//! - On every node it applies committed entries in offset order to its
//!   [`MetadataState`], updates the [`MetadataView`] and notifies subscribers
//!   with [`MetadataChanged`]. Entries come from a bounded in-memory queue
//!   (the leader's own proposals, or what the follower received); whatever
//!   is not there is read back from the WAL on the disk thread. Progress
//!   (commit, local durability) arrives through the node's watch channel.
//! - Every `snapshot_every` applied entries it writes a snapshot and lets the
//!   WAL drop old segments.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use metawal::engine::store::{ReadRetry, ReadVerdict, SnapshotPolicy, MAX_READ_FAILURES};
use metawal::record::{decode_record, Record};
use metawal::storage::Snapshot;
use metawal::{Command, Entry, MetadataState, NodeId, ReplicationConfig};
use tokio::sync::{oneshot, watch};

use crate::disk::DiskHandle;
use crate::error::ProposeError;
use crate::leader::replicator::{AppendEntry, LogStartMoved, Replicator};
use crate::progress::LogProgress;
use crate::shared::{NodeShared, Role};
use crate::view::{MetadataChanged, MetadataView};

/// Most decoded entries held in memory waiting for their commit; the rest
/// are read back from the WAL when they commit.
const MAX_PENDING: usize = 16 * 1024;
/// Most entries read from the WAL at once when applying.
const READ_BATCH: usize = 4096;
/// Most appended-but-uncommitted entries before proposals are refused. With
/// records of at most 64 KiB (in practice < 2 KiB) this bounds the leader's
/// write queue and waiters.
const MAX_UNCOMMITTED: u64 = 250_000;
/// Most subscribers.
const MAX_SUBSCRIBERS: usize = 1024;

/// How much acknowledgement a proposal waits for (decided by the leader
/// engine, [`metawal::engine::LeaderEngine`]).
pub use metawal::engine::Acks;

/// A proposal's success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposed {
    /// Offset of the entry.
    pub offset: u64,
    /// Epoch of the entry.
    pub epoch: u64,
}

/// Propose a metadata change (send to the leader's store).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Proposed, ProposeError>")]
pub struct Propose {
    /// The change.
    pub command: Command,
    /// Acknowledgement wanted.
    pub acks: Acks,
}

/// Register for [`MetadataChanged`] notifications. A subscriber whose mailbox
/// is full when a notification is due is dropped (with a warning): give it a
/// mailbox that fits bursts, and re-read the view after re-subscribing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<MetadataChanged>);

/// Entries the follower has received (durable or about to be); applied once
/// committed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct FollowerEntries(pub Vec<Entry>);

/// Decoded entries on their way from the ReplicaListener to the store, counted
/// so that the store's mailbox holds at most [`MAX_PENDING`] of them: beyond
/// that the listener drops them and the store reads them back from the WAL.
#[derive(Debug, Clone, Default)]
pub(crate) struct EntriesInFlight(Arc<std::sync::atomic::AtomicUsize>);

impl EntriesInFlight {
    /// Reserve room for `n` entries; false when the budget is spent.
    pub(crate) fn reserve(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur + n <= MAX_PENDING).then_some(cur + n)
            })
            .is_ok()
    }

    /// Give back room for `n` entries.
    pub(crate) fn release(&self, n: usize) {
        self.0.fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The follower's log was truncated after `to`: forget queued entries past it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Truncated {
    pub to: u64,
}

/// The follower installed a snapshot: replace the state.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct InstallSnapshot(pub Box<Snapshot>);

/// What the store has applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Last applied offset.
    pub offset: u64,
    /// Its epoch.
    pub epoch: u64,
    /// Digest of the state.
    pub digest: metawal::state::Digest,
}

/// Ask for [`Applied`].
#[derive(Debug, Message)]
#[rtype(result = "Applied")]
pub struct GetApplied;

/// This node now leads `epoch` through `replicator`: build the appended
/// state (the applied state plus every entry in the WAL after it) and
/// append the `LeaderChange`.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub(crate) struct TakeLeadership {
    pub epoch: u64,
    pub replicator: Addr<Replicator>,
}

/// This node no longer leads: forget the appended state and queued entries
/// (committed ones are read back from the WAL).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DropLeadership;

/// Stop the store.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct StopStore;

/// Resolves when the proposal reached the acknowledgement it asked for.
type AckWait = oneshot::Receiver<Result<(), ProposeError>>;

/// Leader-only: the state with every appended entry, and the next offset.
struct AppendedLog {
    state: MetadataState,
    next_offset: u64,
    epoch: u64,
    replicator: Addr<Replicator>,
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
    state: MetadataState,
    view: MetadataView,
    disk: DiskHandle,
    appended: Option<AppendedLog>,
    pending: VecDeque<Entry>,
    progress: LogProgress,
    progress_rx: Option<watch::Receiver<LogProgress>>,
    in_flight: EntriesInFlight,
    reading: bool,
    subscribers: Vec<Recipient<MetadataChanged>>,
    snapshots: SnapshotPolicy,
    read_retry: ReadRetry,
    /// Fail-stopped: applies nothing more.
    failed: bool,
    /// A new log start the Replicator has not taken yet.
    log_start_moved: Option<(u64, u64)>,
}

impl MetadataStore {
    pub(crate) fn new(init: StoreInit) -> MetadataStore {
        init.view.reset(&init.state);
        let snapshots =
            SnapshotPolicy::new(init.config.snapshot_every, init.state.applied_offset());
        let progress = *init.progress.borrow();
        MetadataStore {
            node: init.node,
            shared: init.shared,
            config: init.config,
            view: init.view,
            disk: init.disk,
            appended: init
                .leader
                .map(|(state, next_offset, epoch, replicator)| AppendedLog {
                    state,
                    next_offset,
                    epoch,
                    replicator,
                }),
            state: init.state,
            pending: VecDeque::new(),
            progress,
            progress_rx: Some(init.progress),
            in_flight: init.in_flight,
            reading: false,
            subscribers: Vec::new(),
            snapshots,
            read_retry: ReadRetry::default(),
            failed: false,
            log_start_moved: None,
        }
    }

    /// Check, number, encode and hand a command to the Replicator. Returns the
    /// offset and the acknowledgement to wait for.
    fn append(
        &mut self,
        command: Command,
        acks: Acks,
        control: bool,
    ) -> Result<(Proposed, Option<AckWait>), ProposeError> {
        let role = self.shared.role();
        let Some(log) = self.appended.as_mut().filter(|_| role == Role::Leader) else {
            return Err(match role {
                Role::Stopped => ProposeError::ShuttingDown,
                Role::Failed => ProposeError::Storage(
                    "this leader's storage failed and it stopped accepting writes; restart the node".into(),
                ),
                _ => ProposeError::NotLeader {
                    node: self.node,
                    leader: self.shared.leader().filter(|&l| l != self.node),
                },
            });
        };
        if acks == Acks::All {
            let (isr, required) = (self.shared.isr_len(), self.shared.min_insync());
            if isr < required {
                return Err(ProposeError::NotEnoughReplicas { isr, required });
            }
        }
        if !control {
            log.state.validate(&command)?;
        }
        let uncommitted = log.next_offset.saturating_sub(1 + self.progress.commit);
        if uncommitted >= MAX_UNCOMMITTED {
            return Err(ProposeError::Overloaded(format!(
                "{uncommitted} entries appended but not committed"
            )));
        }
        let entry = Entry {
            offset: log.next_offset,
            epoch: log.epoch,
            command,
        };
        let encode_started = std::time::Instant::now();
        let record = Record::encode(&entry)
            .map_err(|e| ProposeError::Storage(format!("cannot encode entry: {e}")))?;
        tracing::trace!(
            stage = "encode",
            node = self.node,
            offset = entry.offset,
            bytes = record.len(),
            us = encode_started.elapsed().as_micros() as u64
        );
        let (reply, rx) = match acks {
            Acks::None => (None, None),
            _ => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
        };
        log.replicator
            .try_send(AppendEntry {
                record,
                acks,
                reply,
            })
            .map_err(|e| match e {
                SendError::Full(_) => {
                    ProposeError::Overloaded("the Replicator's mailbox is full".into())
                }
                SendError::Closed(_) => ProposeError::ShuttingDown,
            })?;
        // Accepted: from here on the entry is in the log's order.
        if let Err(e) = log.state.apply(&entry) {
            // Control entries and validated commands apply; anything else is a bug.
            tracing::error!(node = self.node, offset = entry.offset, error = %e, "appended state refused a validated entry");
        }
        log.next_offset += 1;
        let proposed = Proposed {
            offset: entry.offset,
            epoch: entry.epoch,
        };
        self.push_pending(entry);
        Ok((proposed, rx))
    }

    fn push_pending(&mut self, entry: Entry) {
        if entry.offset <= self.state.applied_offset() {
            return;
        }
        if let Some(back) = self.pending.back() {
            if entry.offset != back.offset + 1 {
                if self.pending.len() >= MAX_PENDING {
                    return;
                }
                // A gap: start a new run; the gap is read from the WAL.
                self.pending.clear();
            }
        }
        if self.pending.len() < MAX_PENDING {
            self.pending.push_back(entry);
        }
    }

    /// Apply everything committed and durable here, from the queue or the WAL.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        self.report_log_start();
        let target = self.progress.applicable();
        while self.state.applied_offset() < target {
            let next = self.state.applied_offset() + 1;
            while self.pending.front().is_some_and(|e| e.offset < next) {
                self.pending.pop_front();
            }
            match self.pending.front() {
                Some(e) if e.offset == next => {
                    if let Some(e) = self.pending.pop_front() {
                        self.apply_entry(e);
                    }
                }
                front => {
                    let upto = front.map_or(target, |e| (e.offset - 1).min(target));
                    self.read_from_wal(ctx, next, upto);
                    break;
                }
            }
        }
        self.maybe_snapshot(ctx);
    }

    fn read_from_wal(&mut self, ctx: &mut Context<Self>, from: u64, upto: u64) {
        if self.reading {
            return;
        }
        self.reading = true;
        let count = (upto - from + 1).min(READ_BATCH as u64) as usize;
        let read = self
            .disk
            .run(move |d| d.wal.read(from, count, 8 * 1024 * 1024));
        ctx.spawn(read.into_actor(self).map(move |res, act, ctx| {
            act.reading = false;
            let records = match res {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    act.read_failed(from, e.to_string(), ctx);
                    return;
                }
                Err(e) => {
                    act.read_failed(from, e.to_string(), ctx);
                    return;
                }
            };
            act.read_retry.on_ok();
            for r in records {
                if r.offset != act.state.applied_offset() + 1 || r.offset > upto {
                    break;
                }
                match decode_record(&r.bytes) {
                    Ok((entry, _)) => act.apply_entry(entry),
                    Err(e) => {
                        act.fail_stop(format!(
                            "committed record {} read back from the WAL is corrupt: {e}",
                            r.offset
                        ));
                        return;
                    }
                }
            }
            act.drive(ctx);
        }));
    }

    /// Append the leader's `LeaderChange`, the first entry of its epoch: its
    /// commit commits every entry before it. Without it the leader could
    /// commit nothing of its epoch, so a failure is returned (and the
    /// caller fails the role change or the node), never only logged.
    fn announce_leadership(&mut self) -> Result<(), ProposeError> {
        let Some(log) = &self.appended else {
            return Ok(());
        };
        let command = Command::LeaderChange {
            leader: self.node,
            epoch: log.epoch,
        };
        let (p, _) = self.append(command, Acks::None, true)?;
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
        let (Some((base_offset, base_epoch)), Some(log)) = (self.log_start_moved, &self.appended)
        else {
            self.log_start_moved = None;
            return;
        };
        let moved = LogStartMoved {
            base_offset,
            base_epoch,
        };
        if !matches!(log.replicator.try_send(moved), Err(SendError::Full(_))) {
            self.log_start_moved = None;
        }
    }

    /// A read of committed entries failed: retry (bounded), then fail-stop.
    fn read_failed(&mut self, from: u64, error: String, ctx: &mut Context<Self>) {
        match self.read_retry.on_failed() {
            ReadVerdict::Retry => {
                tracing::warn!(node = self.node, offset = from, %error, "cannot read committed entries from the WAL; retrying");
                self.retry_drive_later(ctx);
            }
            ReadVerdict::FailStop => self.fail_stop(format!(
                "cannot read committed entries from offset {from} after {MAX_READ_FAILURES} tries: {error}"
            )),
        }
    }

    /// This node cannot apply its committed log: fail-stop. It applies
    /// nothing more, takes no proposals and no replication (role `Failed`);
    /// restart it once the disk is fixed.
    fn fail_stop(&mut self, reason: String) {
        tracing::error!(node = self.node, offset = self.state.applied_offset(), %reason, "cannot apply the committed log; node stopped applying: restart it");
        self.failed = true;
        self.shared.set_role(Role::Failed);
    }

    fn retry_drive_later(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(self.config.heartbeat_interval, |act, ctx| act.drive(ctx));
    }

    fn apply_entry(&mut self, entry: Entry) {
        tracing::trace!(
            stage = "apply",
            node = self.node,
            offset = entry.offset,
            epoch = entry.epoch
        );
        match self.state.apply(&entry) {
            Ok(()) => self.view.update(&self.state, &entry.command),
            Err(e) if e.is_out_of_order() => {
                tracing::error!(node = self.node, offset = entry.offset, error = %e, "entry out of order; not applied");
                return;
            }
            Err(e) => {
                tracing::warn!(node = self.node, offset = entry.offset, error = %e, "committed entry does not apply; skipped on every node alike");
            }
        }
        self.view.set_applied(entry.offset, entry.epoch);
        if self.subscribers.is_empty() {
            return;
        }
        let node = self.node;
        let offset = entry.offset;
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

    fn maybe_snapshot(&mut self, ctx: &mut Context<Self>) {
        let applied = self.state.applied_offset();
        if self.failed || !self.snapshots.maybe_start(applied) {
            return;
        }
        let snapshot = Snapshot {
            offset: applied,
            epoch: self.state.applied_epoch(),
            state: self.state.clone(),
        };
        // Keep one interval of log behind the snapshot for followers that lag.
        let keep_from = applied.saturating_sub(self.config.snapshot_every);
        let node = self.node;
        let job = self.disk.run(move |d| -> Result<(u64, u64), String> {
            snapshot
                .store(&d.snapshot_dir())
                .map_err(|e| e.to_string())?;
            if let Some(epoch) = d.wal.epochs().epoch_at(keep_from) {
                if keep_from >= d.wal.first_offset() {
                    d.wal
                        .truncate_prefix(keep_from, epoch)
                        .map_err(|e| e.to_string())?;
                }
            }
            let e = d.wal.epochs();
            Ok((e.base_offset(), e.base_epoch()))
        });
        ctx.spawn(job.into_actor(self).map(move |res, act, _| {
            match res {
                Ok(Ok((base_offset, base_epoch))) => {
                    act.snapshots.on_written(applied);
                    tracing::info!(
                        node,
                        offset = applied,
                        log_start = base_offset + 1,
                        "snapshot written"
                    );
                    // Links must not look for records before the new log
                    // start: tell the Replicator (latest wins; retried on
                    // the next apply pass if its mailbox is full).
                    act.log_start_moved = Some((base_offset, base_epoch));
                    act.report_log_start();
                }
                // Retried after another snapshot_every entries (the WAL
                // keeps everything meanwhile); not on every apply pass.
                Ok(Err(e)) => {
                    act.snapshots.on_failed(applied);
                    tracing::error!(node, offset = applied, error = %e, "snapshot failed; retrying after another snapshot_every entries")
                }
                Err(e) => {
                    act.snapshots.on_failed(applied);
                    tracing::error!(node, offset = applied, error = %e, "snapshot failed; retrying after another snapshot_every entries")
                }
            }
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
        if let Err(e) = self.announce_leadership() {
            self.fail_stop(format!("cannot append the LeaderChange of this epoch: {e}"));
        }
        self.drive(ctx);
    }
}

impl StreamHandler<LogProgress> for MetadataStore {
    fn handle(&mut self, progress: LogProgress, ctx: &mut Context<Self>) {
        self.progress = progress;
        self.drive(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The progress channel closes when the node stops; keep serving reads.
    }
}

impl Handler<Propose> for MetadataStore {
    type Result = ResponseFuture<Result<Proposed, ProposeError>>;

    fn handle(&mut self, msg: Propose, _ctx: &mut Context<Self>) -> Self::Result {
        let timeout = self.config.request_timeout;
        let result = self.append(msg.command, msg.acks, false);
        Box::pin(async move {
            let (proposed, rx) = result?;
            let Some(rx) = rx else {
                return Ok(proposed);
            };
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(Ok(()))) => Ok(proposed),
                Ok(Ok(Err(e))) => Err(e),
                Ok(Err(_)) => Err(ProposeError::ShuttingDown),
                Err(_) => Err(ProposeError::Timeout {
                    offset: proposed.offset,
                    timeout,
                }),
            }
        })
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
        for e in msg.0 {
            self.push_pending(e);
        }
        self.drive(ctx);
    }
}

impl Handler<Truncated> for MetadataStore {
    type Result = ();

    fn handle(&mut self, msg: Truncated, _ctx: &mut Context<Self>) {
        self.pending.retain(|e| e.offset <= msg.to);
    }
}

impl Handler<InstallSnapshot> for MetadataStore {
    type Result = ();

    fn handle(&mut self, msg: InstallSnapshot, ctx: &mut Context<Self>) {
        let snap = *msg.0;
        if snap.offset <= self.state.applied_offset() {
            return;
        }
        tracing::info!(
            node = self.node,
            offset = snap.offset,
            epoch = snap.epoch,
            "state replaced by snapshot"
        );
        self.state = snap.state;
        self.view.reset(&self.state);
        self.pending.retain(|e| e.offset > snap.offset);
        self.snapshots.on_installed(snap.offset);
        self.drive(ctx);
    }
}

impl Handler<GetApplied> for MetadataStore {
    type Result = MessageResult<GetApplied>;

    fn handle(&mut self, _msg: GetApplied, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(Applied {
            offset: self.state.applied_offset(),
            epoch: self.state.applied_epoch(),
            digest: self.state.digest(),
        })
    }
}

impl Handler<TakeLeadership> for MetadataStore {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, msg: TakeLeadership, _ctx: &mut Context<Self>) -> Self::Result {
        let mut appended = self.state.clone();
        let node = self.node;
        let job = self.disk.run(move |d| -> Result<(MetadataState, u64), String> {
            let last = d.wal.last_offset();
            let mut next = appended.applied_offset() + 1;
            while next <= last {
                let records = d
                    .wal
                    .read(next, 4096, 8 * 1024 * 1024)
                    .map_err(|e| e.to_string())?;
                if records.is_empty() {
                    break;
                }
                for r in records {
                    let (entry, _) = decode_record(&r.bytes).map_err(|e| e.to_string())?;
                    if let Err(e) = appended.apply(&entry) {
                        tracing::warn!(node, offset = entry.offset, error = %e, "entry does not apply");
                    }
                    next = entry.offset + 1;
                }
            }
            Ok((appended, last))
        });
        Box::pin(job.into_actor(self).map(move |res, act, _ctx| {
            let (state, last) = res.map_err(|e| e.to_string())??;
            act.appended = Some(AppendedLog {
                state,
                next_offset: last + 1,
                epoch: msg.epoch,
                replicator: msg.replicator,
            });
            act.pending.clear();
            act.announce_leadership()
                .map_err(|e| format!("cannot append the LeaderChange of epoch {}: {e}", msg.epoch))
        }))
    }
}

impl Handler<DropLeadership> for MetadataStore {
    type Result = ();

    fn handle(&mut self, _msg: DropLeadership, _ctx: &mut Context<Self>) {
        self.appended = None;
        self.pending.clear();
    }
}

impl Handler<StopStore> for MetadataStore {
    type Result = ();

    fn handle(&mut self, _msg: StopStore, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
