//! `Node`: start a metawal node inside a running actix system, and the handle
//! a broker keeps.
//!
//! [`Node::start`] validates the config, starts the disk thread and recovers
//! the data directory on it (WAL with torn-tail repair, newest snapshot, the
//! `meta` file), picks the role — a node whose `meta` names itself leader
//! comes back as leader of the next epoch; otherwise it follows the leader it
//! knows, or the config's first leader on a new cluster — binds the
//! replication listener and starts the actors on the current arbiter:
//! `MetadataStore` and `ReplicaListener` on every node, and `Replicator` (with
//! its `FollowerLink`s) on the leader. A node that starts as a follower then
//! opens one TCP connection to its leader's replication address and drops it:
//! a wake-up that makes the leader's disconnected links retry now instead of
//! waiting out their backoff.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use metawal::epochs::EpochIndex;
use metawal::handshake::HandshakeKeys;
use metawal::record::decode_record;
use metawal::storage::{NodeMeta, Snapshot};
use metawal::wal::WalOptions;
use metawal::{Command, MetadataState, NodeId};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::disk::{Disk, DiskHandle};
use crate::error::{DiskError, NodeError, ProposeError, RoleError};
use crate::follower::listener::{
    GetPosition, ListenerInit, ReleaseLog, ReplicaListener, ResumeFollowing, SetWake, StopListener,
};
use crate::leader::replicator::{GetReplicationStatus, Replicator, ReplicatorInit, StopReplicator};
use crate::progress::LogProgress;
use crate::shared::{NodeShared, Role};
use crate::status::NodeStatus;
use crate::store::{
    Acks, Applied, DropLeadership, EntriesInFlight, GetApplied, MetadataStore, Propose, Proposed,
    StopStore, StoreInit, Subscribe, TakeLeadership,
};
use crate::view::{MetadataChanged, MetadataView};
use metawal::engine::epoch::EpochRefused;

/// What recovery found in the data directory.
struct Recovered {
    meta: Option<NodeMeta>,
    /// State up to the known commit.
    state: MetadataState,
    /// State with every entry in the WAL.
    appended: MetadataState,
    epochs: EpochIndex,
    commit: u64,
}

fn recover(d: &mut Disk, node: NodeId) -> Result<Recovered, DiskError> {
    let meta = NodeMeta::load(&d.data_dir)?;
    let snapshot = Snapshot::load_latest(&d.snapshot_dir())?;
    let (mut state, snap_offset) = match snapshot {
        Some(s) => {
            if d.wal.last_offset() < s.offset {
                // The snapshot was installed but the WAL not yet reset.
                d.wal.truncate_prefix(s.offset, s.epoch)?;
            }
            (s.state, s.offset)
        }
        None => (MetadataState::new(), 0),
    };
    let first = d.wal.first_offset();
    if first > snap_offset + 1 {
        return Err(DiskError::Inconsistent {
            dir: d.data_dir.display().to_string(),
            reason: format!(
                "the WAL starts at offset {first} but the newest snapshot covers only up to {snap_offset}; entries in between are missing. Restore the snapshots directory, or empty this data dir to resync from the leader"
            ),
        });
    }
    let commit = meta
        .as_ref()
        .map_or(0, |m| m.commit_hint)
        .max(snap_offset)
        .min(d.wal.last_offset());
    let mut appended: Option<MetadataState> = None;
    let mut next = snap_offset + 1;
    let last = d.wal.last_offset();
    while next <= last {
        let records = d.wal.read(next, 4096, 8 * 1024 * 1024)?;
        if records.is_empty() {
            break;
        }
        for r in records {
            let (entry, _) = decode_record(&r.bytes).map_err(|e| DiskError::Inconsistent {
                dir: d.data_dir.display().to_string(),
                reason: format!("record {} does not decode: {e}", r.offset),
            })?;
            if entry.offset <= commit {
                if let Err(e) = state.apply(&entry) {
                    tracing::warn!(node, offset = entry.offset, error = %e, "replayed entry does not apply");
                }
            } else {
                let a = appended.get_or_insert_with(|| state.clone());
                if let Err(e) = a.apply(&entry) {
                    tracing::warn!(node, offset = entry.offset, error = %e, "replayed entry does not apply");
                }
            }
            next = entry.offset + 1;
        }
    }
    let appended = appended.unwrap_or_else(|| state.clone());
    Ok(Recovered {
        meta,
        state,
        appended,
        epochs: d.wal.epochs().clone(),
        commit,
    })
}

/// A running node: the handle a broker keeps. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    node_id: NodeId,
    store: Addr<MetadataStore>,
    /// The Replicator while this node leads.
    replicator: Arc<std::sync::Mutex<Option<Addr<Replicator>>>>,
    listener: Addr<ReplicaListener>,
    view: MetadataView,
    shared: Arc<NodeShared>,
    disk: DiskHandle,
    replication_addr: SocketAddr,
    config: Arc<NodeConfig>,
    keys: HandshakeKeys,
    progress_tx: watch::Sender<LogProgress>,
    progress_rx: watch::Receiver<LogProgress>,
    /// The arbiter the node's actors run on.
    arbiter: actix::ArbiterHandle,
    /// Serializes role changes.
    role_change: Arc<tokio::sync::Mutex<()>>,
}

/// Everything needed to start a Replicator for `epoch`.
fn replicator_init(node: &Node, epoch: u64, epochs: EpochIndex, commit: u64) -> ReplicatorInit {
    ReplicatorInit {
        node: node.node_id,
        epoch,
        config: node.config.replication.clone(),
        shared: node.shared.clone(),
        disk: node.disk.clone(),
        keys: node.keys.clone(),
        peers: node.config.peers.clone(),
        epochs,
        commit,
        progress_tx: node.progress_tx.clone(),
        progress_rx: node.progress_rx.clone(),
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.node_id)
            .field("role", &self.shared.role())
            .field("replication_addr", &self.replication_addr)
            .finish()
    }
}

impl Node {
    /// Start a node on the current arbiter of a running actix system.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.validate()?;
        let node = config.node_id;
        let (disk, report) = DiskHandle::start(
            node,
            config.data_dir.clone(),
            WalOptions {
                segment_bytes: config.replication.segment_bytes,
                preallocate: true,
            },
        )
        .await?;
        if let Some(t) = &report.torn_tail {
            tracing::warn!(node, file = %t.file.display(), byte = t.byte, removed = t.removed, "WAL torn tail removed at start");
        }
        let rec = disk.run(move |d| recover(d, node)).await??;

        if let Some(m) = &rec.meta {
            if m.node_id != node || m.cluster_id != config.cluster_id {
                return Err(NodeError::Config(format!(
                    "data dir {} belongs to node {} of cluster {:?}, not node {} of cluster {:?}",
                    config.data_dir.display(),
                    m.node_id,
                    m.cluster_id,
                    node,
                    config.cluster_id
                )));
            }
        }
        // Role and epoch.
        let (role, epoch, leader) = match &rec.meta {
            Some(m) if m.leader == Some(node) && !config.resume_leadership => {
                (Role::Follower, m.current_epoch, None)
            }
            Some(m) if m.leader == Some(node) => (
                Role::Leader,
                m.current_epoch.max(rec.epochs.last_epoch()) + 1,
                Some(node),
            ),
            Some(m) => (Role::Follower, m.current_epoch, m.leader),
            None if config.first_leader == node => (
                Role::Leader,
                config.first_epoch.max(rec.epochs.last_epoch() + 1),
                Some(node),
            ),
            None => (
                Role::Follower,
                config.first_epoch,
                Some(config.first_leader),
            ),
        };
        let meta = NodeMeta {
            node_id: node,
            cluster_id: config.cluster_id.clone(),
            current_epoch: epoch,
            leader,
            commit_hint: rec.commit,
        };
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| NodeError::Listen {
                addr: config.listen_addr,
                source,
            })?;
        let replication_addr = listener.local_addr().map_err(|source| NodeError::Listen {
            addr: config.listen_addr,
            source,
        })?;
        if rec.meta.as_ref() != Some(&meta) {
            let m = meta.clone();
            disk.run(move |d| m.store(&d.data_dir))
                .await?
                .map_err(DiskError::from)?;
        }
        tracing::info!(node, role = %role, epoch, leader = ?leader, offset = rec.epochs.last_offset(), commit = rec.commit, "node recovered");

        let cluster_size = config.peers.len() + 1;
        let shared = Arc::new(NodeShared::new(
            node,
            role,
            epoch,
            leader,
            config.replication.effective_min_insync(cluster_size),
        ));
        let keys = HandshakeKeys::new(node, config.cluster_id.clone(), config.secret.clone())
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let last = rec.epochs.last_offset();
        let (progress_tx, progress_rx) = watch::channel(LogProgress {
            log_end: last,
            durable: last,
            commit: rec.commit,
        });
        let view = MetadataView::new();
        let in_flight = EntriesInFlight::default();

        let replicator = (role == Role::Leader).then(|| {
            Replicator::new(ReplicatorInit {
                node,
                epoch,
                config: config.replication.clone(),
                shared: shared.clone(),
                disk: disk.clone(),
                keys: keys.clone(),
                peers: config.peers.clone(),
                epochs: rec.epochs.clone(),
                commit: rec.commit,
                progress_tx: progress_tx.clone(),
                progress_rx: progress_rx.clone(),
            })
            .start()
        });
        let store = MetadataStore::new(StoreInit {
            node,
            shared: shared.clone(),
            config: config.replication.clone(),
            state: rec.state,
            view: view.clone(),
            disk: disk.clone(),
            progress: progress_rx.clone(),
            in_flight: in_flight.clone(),
            leader: replicator
                .clone()
                .map(|r| (rec.appended, last + 1, epoch, r)),
        })
        .start();
        let listener = ReplicaListener::new(ListenerInit {
            node,
            shared: shared.clone(),
            config: config.replication.clone(),
            keys: keys.clone(),
            disk: disk.clone(),
            store: store.clone(),
            store_in_flight: in_flight,
            listener,
            epochs: rec.epochs,
            commit: rec.commit,
            meta,
            progress_tx: progress_tx.clone(),
            wake: replicator.clone().map(|r| r.recipient()),
        })
        .start();
        if role == Role::Follower {
            if let Some(addr) = leader.and_then(|l| config.peers.get(&l)).copied() {
                // Tell the leader we are (back) up, so its link does not wait
                // out its reconnect backoff: connecting is the whole message.
                let timeout = config.replication.session_timeout;
                actix::spawn(async move {
                    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await
                    {
                        Ok(Ok(_)) => tracing::debug!(node, %addr, "woke the leader"),
                        _ => tracing::debug!(node, %addr, "leader not reachable to wake"),
                    }
                });
            }
        }
        tracing::info!(node, addr = %replication_addr, role = %role, epoch, "node started");
        Ok(Node {
            node_id: node,
            store,
            replicator: Arc::new(std::sync::Mutex::new(replicator)),
            listener,
            view,
            shared,
            disk,
            replication_addr,
            config: Arc::new(config),
            keys,
            progress_tx,
            progress_rx,
            arbiter: actix::Arbiter::current(),
            role_change: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    fn replicator(&self) -> Option<Addr<Replicator>> {
        match self.replicator.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_replicator(&self, r: Option<Addr<Replicator>>) -> Option<Addr<Replicator>> {
        match self.replicator.lock() {
            Ok(mut g) => std::mem::replace(&mut *g, r),
            Err(p) => std::mem::replace(&mut *p.into_inner(), r),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.node_id
    }

    /// The address the replication listener is bound to.
    pub fn replication_addr(&self) -> SocketAddr {
        self.replication_addr
    }

    /// The MetadataStore actor, for a broker's actors to send [`Propose`] to.
    pub fn store(&self) -> Addr<MetadataStore> {
        self.store.clone()
    }

    /// The committed metadata, readable from any thread.
    pub fn view(&self) -> MetadataView {
        self.view.clone()
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        self.shared.role()
    }

    /// Propose a change (only the leader accepts).
    pub async fn propose(&self, command: Command, acks: Acks) -> Result<Proposed, ProposeError> {
        self.store
            .send(Propose { command, acks })
            .await
            .map_err(|_| ProposeError::ShuttingDown)?
    }

    /// Notify `recipient` of every committed change, in order, from now on.
    /// `Overloaded` if the store's mailbox is full (retry), `ShuttingDown`
    /// if the node stopped.
    pub fn subscribe(&self, recipient: Recipient<MetadataChanged>) -> Result<(), ProposeError> {
        self.store
            .try_send(Subscribe(recipient))
            .map_err(|e| match e {
                SendError::Full(_) => {
                    ProposeError::Overloaded("the store's mailbox is full".into())
                }
                SendError::Closed(_) => ProposeError::ShuttingDown,
            })
    }

    /// What the store has applied, with the state's digest.
    pub async fn applied(&self) -> Result<Applied, ProposeError> {
        self.store
            .send(GetApplied)
            .await
            .map_err(|_| ProposeError::ShuttingDown)
    }

    /// The node's status (and its followers', on the leader).
    pub async fn status(&self) -> Result<NodeStatus, ProposeError> {
        let mut status = NodeStatus {
            node_id: self.node_id,
            role: self.shared.role(),
            epoch: self.shared.epoch(),
            leader: self.shared.leader(),
            log_end: 0,
            durable: 0,
            commit: 0,
            applied_offset: self.view.applied_offset(),
            isr_len: 0,
            followers: Vec::new(),
        };
        match &self.replicator() {
            Some(r) => {
                let s = r
                    .send(GetReplicationStatus)
                    .await
                    .map_err(|_| ProposeError::ShuttingDown)?;
                status.log_end = s.log_end;
                status.durable = s.durable;
                status.commit = s.commit;
                status.isr_len = self.shared.isr_len();
                status.followers = s.followers;
            }
            None => {
                let p = self
                    .listener
                    .send(GetPosition)
                    .await
                    .map_err(|_| ProposeError::ShuttingDown)?;
                status.log_end = p.log_end;
                status.durable = p.durable;
                status.commit = p.commit;
            }
        }
        Ok(status)
    }

    /// Test hook (feature `fault-injection`): the log progress (log end,
    /// durable, commit) this node's actors read from its progress channel.
    #[cfg(feature = "fault-injection")]
    pub fn log_progress(&self) -> crate::progress::LogProgress {
        *self.progress_rx.borrow()
    }

    /// Test hook (feature `fault-injection`): this node's next `meta` write
    /// fails as an I/O error would.
    #[cfg(feature = "fault-injection")]
    pub async fn inject_meta_failure(&self) {
        let _ = self.disk.run(|d| d.inject_meta_failure.set(true)).await;
    }

    /// Test hook (feature `fault-injection`): this node's next WAL append
    /// fails as an I/O error would (which poisons the WAL).
    #[cfg(feature = "fault-injection")]
    pub async fn inject_wal_failure(&self) {
        let _ = self.disk.run(|d| d.inject_write_failure = true).await;
    }

    /// Test hook (feature `fault-injection`): panic the leader's link to
    /// `peer`. Returns whether there was such a link.
    #[cfg(feature = "fault-injection")]
    pub async fn inject_link_panic(&self, peer: NodeId) -> bool {
        match &self.replicator() {
            Some(r) => r
                .send(crate::leader::replicator::PanicLink(peer))
                .await
                .unwrap_or(false),
            None => false,
        }
    }

    /// Make this follower the metadata leader of `epoch`, which must be above
    /// every epoch it has seen (the broker's controller picks it; promote the
    /// live node with the highest `(last epoch, log end)`, see `status()`).
    ///
    /// The node closes its replication sessions, lets its in-flight write
    /// finish, persists the epoch, starts a Replicator with a link to every
    /// peer and appends its `LeaderChange`. Followers accept it when its links
    /// connect (they fence any older leader from then on). Proposals get
    /// `NotLeader` until this returns.
    pub async fn become_leader(&self, epoch: u64) -> Result<(), RoleError> {
        let _serial = self.role_change.lock().await;
        let node = self.node_id;
        let role = self.shared.role();
        if role != Role::Follower {
            return Err(RoleError::WrongRole {
                node,
                role,
                expected: Role::Follower,
            });
        }
        let current = self.shared.epoch();
        if epoch <= current {
            return Err(RoleError::StaleEpoch { epoch, current });
        }
        // From here on the listener refuses sessions.
        self.shared.set_role(Role::Leader);
        let result = self.take_leadership(epoch).await;
        if let Err(e) = &result {
            tracing::error!(node, epoch, error = %e, "could not become leader; following again");
            self.roll_back_leadership(epoch).await;
        }
        result
    }

    /// Undo a failed [`Node::become_leader`]: stop the Replicator it may
    /// have started, drop the store's leadership, and follow again with the
    /// log and `meta` as they are on disk. The epoch is never lowered: if
    /// the new one was persisted, the node follows in it (a leader must
    /// come in a higher one). A node that fail-stopped meanwhile stays
    /// `Failed`; one whose log or meta cannot be read back fail-stops.
    async fn roll_back_leadership(&self, epoch: u64) {
        let node = self.node_id;
        if let Some(r) = self.set_replicator(None) {
            let _ = r.send(StopReplicator).await;
        }
        let _ = self.store.send(DropLeadership).await;
        let on_disk = self
            .disk
            .run(|d| (d.wal.epochs().clone(), NodeMeta::load(&d.data_dir)))
            .await;
        let (epochs, meta) = match on_disk {
            Ok((epochs, Ok(Some(meta)))) => (epochs, meta),
            Ok((epochs, Ok(None))) => (
                epochs,
                NodeMeta {
                    node_id: node,
                    cluster_id: self.config.cluster_id.clone(),
                    current_epoch: self.shared.epoch(),
                    leader: self.shared.leader(),
                    commit_hint: 0,
                },
            ),
            Ok((_, Err(e))) => {
                tracing::error!(node, epoch, error = %e, "cannot read meta back after a failed role change; node stopped: restart it");
                self.shared.set_role(Role::Failed);
                return;
            }
            Err(e) => {
                tracing::error!(node, epoch, error = %e, "cannot read the log back after a failed role change; node stopped: restart it");
                self.shared.set_role(Role::Failed);
                return;
            }
        };
        if self.shared.role() == Role::Failed {
            return;
        }
        self.shared
            .set_epoch_leader(meta.current_epoch.max(self.shared.epoch()), meta.leader);
        let resumed = self
            .listener
            .send(ResumeFollowing {
                epochs,
                meta,
                commit: 0,
            })
            .await;
        if resumed.is_err() {
            // The listener stopped: the node is shutting down.
            return;
        }
        if self.shared.role() == Role::Leader {
            self.shared.set_role(Role::Follower);
        }
    }

    async fn take_leadership(&self, epoch: u64) -> Result<(), RoleError> {
        let node = self.node_id;
        let failed = |e: String| RoleError::Failed(e);
        // Sessions closed, writes settled: this is the log to lead with.
        let (epochs, commit) = self
            .listener
            .send(ReleaseLog)
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(failed)?;
        self.persist_epoch(epoch, node, commit).await?;
        let init = replicator_init(self, epoch, epochs, commit);
        let replicator =
            Replicator::start_in_arbiter(&self.arbiter, move |_| Replicator::new(init));
        self.listener
            .send(SetWake(replicator.clone().recipient()))
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.set_replicator(Some(replicator.clone()));
        self.store
            .send(TakeLeadership { epoch, replicator })
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(failed)?;
        tracing::info!(node, epoch, "became leader");
        Ok(())
    }

    /// Write `meta` for `epoch` under `leader` (before acting on it), then
    /// publish the epoch and leader to the node's actors.
    async fn persist_epoch(
        &self,
        epoch: u64,
        leader: NodeId,
        commit_hint: u64,
    ) -> Result<NodeMeta, RoleError> {
        let meta = NodeMeta {
            node_id: self.node_id,
            cluster_id: self.config.cluster_id.clone(),
            current_epoch: epoch,
            leader: Some(leader),
            commit_hint,
        };
        let m = meta.clone();
        // Checked against the meta on disk, on the disk thread that writes
        // every meta: an attach that persisted a higher epoch since this
        // call's own check is never overwritten with a lower one.
        let written = self
            .disk
            .run(move |d| d.store_meta_fenced(&m))
            .await
            .map_err(|e| RoleError::Failed(e.to_string()))?
            .map_err(|e| RoleError::Failed(format!("cannot persist epoch {epoch}: {e}")))?;
        match written {
            Ok(()) => {}
            Err(EpochRefused::Stale { current, .. }) => {
                return Err(RoleError::StaleEpoch { epoch, current })
            }
            Err(EpochRefused::Conflict { .. }) => {
                return Err(RoleError::StaleEpoch {
                    epoch,
                    current: epoch,
                })
            }
        }
        self.shared.set_epoch_leader(epoch, Some(leader));
        Ok(meta)
    }

    /// Make this leader follow `leader` in `epoch` (above its own). It stops
    /// its Replicator (waiting proposals fail), persists the epoch, and
    /// takes its log as it is on disk; the new leader truncates whatever it
    /// does not have. Proposals get `NotLeader` from the start of the call.
    /// On a node that already follows this is a no-op (it learns new
    /// leaders from their handshakes).
    pub async fn become_follower(&self, leader: NodeId, epoch: u64) -> Result<(), RoleError> {
        let _serial = self.role_change.lock().await;
        let node = self.node_id;
        let role = self.shared.role();
        let current = self.shared.epoch();
        if role == Role::Follower {
            return if epoch >= current {
                Ok(())
            } else {
                Err(RoleError::StaleEpoch { epoch, current })
            };
        }
        if role != Role::Leader {
            return Err(RoleError::WrongRole {
                node,
                role,
                expected: Role::Leader,
            });
        }
        if epoch <= current || leader == node {
            return Err(RoleError::StaleEpoch { epoch, current });
        }
        self.shared.set_role(Role::Follower);
        if let Some(r) = self.set_replicator(None) {
            let _ = r.send(StopReplicator).await;
        }
        let failed = |e: String| RoleError::Failed(e);
        // After every write queued before it.
        let epochs = self
            .disk
            .run(|d| d.wal.epochs().clone())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let commit = self.progress_rx.borrow().commit;
        let meta = self
            .persist_epoch(epoch, leader, self.view.applied_offset())
            .await?;
        let _ = self.store.send(DropLeadership).await;
        self.listener
            .send(ResumeFollowing {
                epochs,
                meta,
                commit,
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
        tracing::info!(node, leader, epoch, "became follower");
        Ok(())
    }

    /// Stop the node: close its connections, stop its actors, sync and close
    /// the WAL, and record how far it had applied.
    pub async fn shutdown(self) {
        let node = self.node_id;
        self.shared.set_role(Role::Stopped);
        if let Some(r) = self.set_replicator(None) {
            let _ = r.send(StopReplicator).await;
        }
        let _ = self.listener.send(StopListener).await;
        let _ = self.store.send(StopStore).await;
        let meta = NodeMeta {
            node_id: node,
            cluster_id: self.config.cluster_id.clone(),
            current_epoch: self.shared.epoch(),
            leader: self.shared.leader(),
            commit_hint: self.view.applied_offset(),
        };
        match self.disk.run(move |d| meta.store(&d.data_dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(node, error = %e, "could not record the commit hint"),
            Err(e) => tracing::warn!(node, error = %e, "could not record the commit hint"),
        }
        self.disk.stop().await;
        tracing::info!(node, "node stopped");
    }
}

/// Peers map helper: `[(id, addr)]` → map.
pub fn peers(list: impl IntoIterator<Item = (NodeId, SocketAddr)>) -> BTreeMap<NodeId, SocketAddr> {
    list.into_iter().collect()
}
