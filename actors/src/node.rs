//! `Node`: start a metawal node inside a running actix system, and the handle
//! a broker keeps.
//!
//! [`Node::start`] validates the config, starts the disk thread and recovers
//! the data directory on it (WAL with torn-tail repair, newest snapshot, the
//! `meta` file), binds the replication listener and starts the actors on
//! the current arbiter: `MetadataStore`, `ReplicaListener` and the
//! `NodeDriver`. Every node starts as a follower; leadership is decided by
//! election (the NodeDriver pumps the node engine and has the node carry out
//! each step of a role change),
//! and moved on purpose only with [`Node::transfer_leadership`]. A node that
//! knows a leader from its `meta` opens one TCP connection to it and drops
//! it: a wake-up that makes the leader's disconnected link retry now instead
//! of waiting out its backoff.

use metawal::membership::DirectoryId;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use metawal::epochs::EpochIndex;
use metawal::handshake::HandshakeKeys;
use metawal::storage::NodeMeta;
use metawal::{Command, NodeId};

use tokio::sync::watch;

use crate::changes::ChangeStream;
use crate::config::NodeConfig;
use crate::disk::DiskHandle;
use crate::election::{NodeDriver, NodeDriverInit, StopNodeDriver, TransferTo};
use crate::error::{LogStartError, NodeError, ProposeError, RoleError, SubscribeError};
use crate::follower::listener::{ListenerInit, ReplicaListener, StopListener};
use crate::follower::messages::DriverSlot;
use crate::leader::replicator::ReplicatorInit;
use crate::leadership::LeadershipChanges;
use crate::metrics::NodeMetrics;
use crate::progress::LogProgress;
use crate::shared::{NodeShared, Role};
use crate::status::Leadership;
use crate::store::CloseLeadership;
#[cfg(feature = "fault-injection")]
use crate::store::ToReplicator;
use crate::store::{
    Acks, EntriesInFlight, MetadataStore, ProposeWith, Proposed, StopStore, StoreInit, Subscribe,
};
use crate::view::{MetadataChanged, MetadataView};
use metawal::engine::node::TransferFailed;

// The steps of `Node::start` before the actors start.
#[path = "node_start.rs"]
mod starting;

// Reading the node (state, read index, status): a child module, so it sees
// the node's private handles.
#[path = "node_reads.rs"]
mod reads;

// Changing and listing the members.
#[path = "node_members.rs"]
mod members;

/// A running node: the handle a broker keeps. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    node_id: NodeId,
    /// The store, which also owns the leader's Replicator (reached with
    /// `ToReplicator`).
    store: Addr<MetadataStore>,
    listener: Addr<ReplicaListener>,
    /// The NodeDriver (set once at start; it holds a clone of this handle).
    driver: Arc<std::sync::OnceLock<Addr<NodeDriver>>>,
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
    /// Its data directory's id (kept in `meta`).
    directory_id: DirectoryId,
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
        membership: node.shared.membership().0,
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
    /// Start a node on a new [`Arbiter`] of its own (its actors then run on
    /// that thread, not on the caller's) and return its handle with the
    /// Arbiter, which keeps running what the node started: stop the node
    /// ([`Node::shutdown`]) before stopping the Arbiter. Call it inside a
    /// running actix system.
    pub async fn start_on_arbiter(config: NodeConfig) -> Result<(Node, Arbiter), NodeError> {
        let arbiter = Arbiter::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !arbiter.spawn(async move {
            // The receiver only goes away if the caller stopped waiting.
            let _ = tx.send(Node::start(config).await);
        }) {
            return Err(NodeError::Stopped);
        }
        match rx.await {
            Ok(Ok(node)) => Ok((node, arbiter)),
            Ok(Err(e)) => {
                arbiter.stop();
                Err(e)
            }
            Err(_) => Err(NodeError::Stopped),
        }
    }

    /// Start a node on the current arbiter of a running actix system.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.validate()?;
        let node = config.node_id;
        // TLS material first: a bad certificate is a start-up error.
        let transport = starting::load_tls(&config).await?;
        let metrics = NodeMetrics::new();
        let (disk, mut rec) = starting::open_data_dir(&config, &metrics).await?;
        // Every node starts as a follower; leadership comes from an
        // election. A node that led before it stopped does not know whether
        // it still does: it follows until it hears a leader or wins again.
        let role = Role::Follower;
        let meta = starting::meta_at_start(&config, &rec, DirectoryId(rand::random()));
        let (epoch, leader, voted_for) = (meta.current_epoch, meta.leader, meta.voted_for);
        let meta_directory_id = meta.directory_id;
        let (listener, replication_addr) = starting::bind(&config).await?;
        starting::record_meta(&disk, &rec, &meta).await?;
        tracing::info!(node, directory_id = %meta.directory_id, role = %role, epoch, leader = ?leader, offset = rec.epochs.last_offset(), commit = rec.commit, "node recovered");

        // The membership in force: the snapshot's and the log's, or the
        // bootstrap of the flags if they hold none.
        let bootstrap = crate::members::bootstrap(&config, replication_addr, meta.directory_id)?;
        let memberships = std::mem::take(&mut rec.memberships);
        let logged = memberships.logged();
        let membership = memberships.into_log(bootstrap.clone()).map_err(|e| {
            NodeError::Disk(crate::error::DiskError::Inconsistent {
                dir: config.data_dir.display().to_string(),
                reason: format!("its membership entries are out of order: {e}"),
            })
        })?;
        tracing::info!(node, logged, voters = ?membership.latest().voter_ids().collect::<Vec<_>>(), "membership at start");
        // No leader is named before it is heard (the node engine's rule).
        let mut shared = NodeShared::new(
            role,
            epoch,
            None,
            config
                .replication
                .effective_min_insync(membership.latest().voter_count()),
            membership.latest().clone(),
        );
        shared.metrics = metrics;
        shared.transport = transport;
        let shared = Arc::new(shared);
        shared.set_last_log(rec.epochs.last_epoch(), rec.epochs.last_offset());
        let keys = HandshakeKeys::new(node, config.cluster_id.clone(), config.secret.clone())
            .map_err(NodeError::Keys)?
            .with_directory(meta.directory_id);
        let last = rec.epochs.last_offset();
        let (progress_tx, progress_rx) = watch::channel(LogProgress {
            log_end: last,
            durable: last,
            commit: rec.commit,
        });
        let view = MetadataView::new();
        let in_flight = EntriesInFlight::default();

        let store = MetadataStore::new(StoreInit {
            node,
            shared: shared.clone(),
            config: config.replication.clone(),
            state: rec.state,
            view: view.clone(),
            disk: disk.clone(),
            progress: progress_rx.clone(),
            in_flight: in_flight.clone(),
            leader: None,
        })
        .start();
        drop(rec.appended);
        let driver_slot: DriverSlot = Arc::default();
        let (log_events, log_events_rx) =
            tokio::sync::mpsc::channel(crate::members::MAX_LOG_EVENTS);
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
            wake: None,
            driver: driver_slot.clone(),
            log_events,
        })
        .start();
        if let Some(addr) = leader.and_then(|l| config.peers.get(&l)).copied() {
            starting::wake_leader(node, addr, config.replication.session_timeout);
        }
        let config = Arc::new(config);
        let handle = Node {
            node_id: node,
            store,
            listener: listener.clone(),
            driver: Arc::new(std::sync::OnceLock::new()),
            view,
            shared: shared.clone(),
            disk: disk.clone(),
            replication_addr,
            config: config.clone(),
            keys: keys.clone(),
            progress_tx,
            progress_rx: progress_rx.clone(),
            arbiter: actix::Arbiter::current(),
            directory_id: meta_directory_id,
        };
        let driver = NodeDriver::new(NodeDriverInit {
            node,
            shared,
            config: config.replication.clone(),
            keys,
            membership,
            bootstrap,
            log_events: log_events_rx,
            directory_id: meta_directory_id,
            pin_directories: config.pin_directories,
            disk,
            listener,
            progress: progress_rx,
            epoch,
            voted_for,
            leader,
            roles: Box::new(handle.clone()),
        })
        .start();
        let _ = driver_slot.set(driver.clone().recipient());
        let _ = handle.driver.set(driver);
        tracing::info!(node, addr = %replication_addr, epoch, leader = ?leader, "node started");
        Ok(handle)
    }

    fn driver(&self) -> Option<&Addr<NodeDriver>> {
        self.driver.get()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.node_id
    }

    /// This node's data directory id: drawn at the directory's first start
    /// and kept in its `meta`; a member is added with it
    /// (`POST /v1/members`).
    pub fn directory_id(&self) -> DirectoryId {
        self.directory_id
    }

    /// The address the replication listener is bound to.
    pub fn replication_addr(&self) -> SocketAddr {
        self.replication_addr
    }

    /// The committed metadata, readable from any thread.
    pub fn view(&self) -> MetadataView {
        self.view.clone()
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        self.shared.role()
    }

    /// This node's epoch now.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch()
    }

    /// This node's leadership now: role, epoch and the leader it knows,
    /// as one snapshot (never the epoch of one change with the leader of
    /// another).
    pub fn leadership(&self) -> Leadership {
        self.shared.leadership()
    }

    /// Every change of [`Node::leadership`] from now on, in order: a
    /// broker starts its controller work on a change to `Role::Leader` and
    /// stops it on any change away from it (or to a new epoch). Bounded:
    /// see [`LeadershipChanges`].
    pub fn leadership_changes(&self) -> LeadershipChanges {
        LeadershipChanges::new(self.shared.leadership_log(), self.shared.watch_leadership())
    }

    /// The leader this node knows now (itself if it leads).
    pub fn leader(&self) -> Option<NodeId> {
        if self.shared.role() == Role::Leader {
            Some(self.node_id)
        } else {
            self.shared.leader()
        }
    }

    /// Propose a change (only the leader accepts). Returns once the entry
    /// has the acknowledgement `acks` asks for, with its offset; a proposal
    /// not acknowledged within the configured `request_timeout` gets
    /// [`ProposeError::Timeout`] (answered on the leader's next tick).
    pub async fn propose(&self, command: Command, acks: Acks) -> Result<Proposed, ProposeError> {
        let started = std::time::Instant::now();
        let (reply, rx) = tokio::sync::oneshot::channel();
        let msg = ProposeWith {
            command,
            acks,
            reply,
        };
        // A full mailbox waits for room (`send`), as `Propose` does; the
        // usual path is one envelope and this one channel. The request
        // timeout is the leader engine's: the answer always comes, or the
        // node stopped.
        let sent = match self.store.try_send(msg) {
            Ok(()) => Ok(()),
            Err(SendError::Full(msg)) => self.store.send(msg).await.map_err(|_| ()),
            Err(SendError::Closed(_)) => Err(()),
        };
        let result = match sent {
            Ok(()) => rx.await.unwrap_or(Err(ProposeError::ShuttingDown)),
            Err(()) => Err(ProposeError::ShuttingDown),
        };
        self.shared
            .metrics
            .proposal(acks, &result, started.elapsed());
        result
    }

    /// This node's metrics (`GET /metrics` encodes them).
    pub fn metrics(&self) -> &NodeMetrics {
        &self.shared.metrics
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The first offset this node's WAL holds (entries before it were
    /// compacted into a snapshot), read on the disk reader thread.
    pub async fn log_start(&self) -> Result<u64, LogStartError> {
        self.disk
            .log_start()
            .await
            .map_err(|e| LogStartError::Disk {
                node: self.node_id,
                reason: e.to_string(),
            })
    }

    /// Propose several commands as one log entry, applied all or none
    /// ([`Command::Batch`]): if any command is refused the whole batch is,
    /// with [`ProposeError::Invalid`] naming it, and nothing is appended.
    pub async fn propose_batch(
        &self,
        commands: Vec<Command>,
        acks: Acks,
    ) -> Result<Proposed, ProposeError> {
        self.propose(Command::Batch { commands }, acks).await
    }

    /// The committed entries of this node's log from `offset` on, in order,
    /// read back from the WAL and then followed as they are applied
    /// (bounded: see [`ChangeStream`]). Works on every node.
    pub fn changes_from(&self, offset: u64) -> ChangeStream {
        ChangeStream::new(self.disk.clone(), &self.view, offset)
    }

    /// Notify `recipient` of every committed change, in order, from now on.
    /// `Overloaded` if the store's mailbox is full (retry), `ShuttingDown`
    /// if the node stopped.
    pub fn subscribe(&self, recipient: Recipient<MetadataChanged>) -> Result<(), SubscribeError> {
        let node = self.node_id;
        self.store
            .try_send(Subscribe(recipient))
            .map_err(|e| match e {
                SendError::Full(_) => SubscribeError::Overloaded { node },
                SendError::Closed(_) => SubscribeError::Stopped { node },
            })
    }

    /// Test hook (feature `fault-injection`): the log progress (log end,
    /// durable, commit) this node's actors read from its progress channel.
    #[cfg(feature = "fault-injection")]
    pub fn log_progress(&self) -> crate::progress::LogProgress {
        *self.progress_rx.borrow()
    }

    /// Test hook (feature `fault-injection`): after `skip` more `meta`
    /// writes succeed, the next one fails as an I/O error would.
    #[cfg(feature = "fault-injection")]
    pub async fn inject_meta_failure(&self, skip: u32) {
        // The disk stopping is what the caller then sees.
        let _ = self
            .disk
            .run(move |d| d.inject_meta_failure.set(Some(skip)))
            .await;
    }

    /// Test hook (feature `fault-injection`): whether an injected `meta`
    /// failure has not happened yet.
    #[cfg(feature = "fault-injection")]
    pub async fn meta_failure_pending(&self) -> bool {
        self.disk
            .run(|d| {
                let pending = d.inject_meta_failure.take();
                d.inject_meta_failure.set(pending);
                pending.is_some()
            })
            .await
            .unwrap_or(false)
    }

    /// Test hook (feature `fault-injection`): this node's next WAL append
    /// fails as an I/O error would (which poisons the WAL).
    #[cfg(feature = "fault-injection")]
    pub async fn inject_wal_failure(&self) {
        // The disk stopping is what the caller then sees.
        let _ = self.disk.run(|d| d.inject_write_failure = true).await;
    }

    /// Test hook (feature `fault-injection`): panic the leader's link to
    /// `peer`. Returns whether there was such a link.
    #[cfg(feature = "fault-injection")]
    pub async fn inject_link_panic(&self, peer: NodeId) -> bool {
        let panic = ToReplicator(crate::leader::replicator::PanicLink(peer));
        self.store.send(panic).await.ok().flatten().unwrap_or(false)
    }

    /// Hand leadership to `to`, for a broker that wants its controller to
    /// also lead the metadata log. This node stops taking proposals
    /// (`NotLeader`), waits until `to` has everything it has, tells it to
    /// stand for election at once, and returns once `to` leads. Catching up
    /// may take the election timeout `T`, the election `2T`; past either it
    /// takes proposals again (if it still leads) and returns
    /// [`RoleError::TransferTimedOut`]. The node engine decides each step
    /// (`metawal::engine::node`); this call waits for its answer.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<(), RoleError> {
        let node = self.node_id;
        if to == node || !self.shared.membership().0.is_voter(to) {
            return Err(RoleError::UnknownPeer { node: to });
        }
        let Some(driver) = self.driver() else {
            return Err(RoleError::ShuttingDown);
        };
        let (done, ended) = tokio::sync::oneshot::channel();
        driver
            .send(TransferTo { to, done })
            .await
            .map_err(|_| RoleError::ShuttingDown)?;
        match ended.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(TransferFailed::TimedOut { step, waited })) => {
                Err(RoleError::TransferTimedOut { to, step, waited })
            }
            Ok(Err(TransferFailed::UnknownPeer { to })) => Err(RoleError::UnknownPeer { node: to }),
            Ok(Err(TransferFailed::InProgress { to })) => Err(RoleError::TransferInProgress { to }),
            Ok(Err(TransferFailed::NotLeader)) => Err(RoleError::NotLeader {
                node,
                leader: self.shared.leader(),
            }),
            Ok(Err(TransferFailed::Stopping)) | Err(_) => Err(RoleError::ShuttingDown),
        }
    }

    /// Test hook (feature `fault-injection`): stop the node as a crash
    /// would look to its peers — no resignation, no last `meta` write —
    /// while still releasing its sockets and files so it can be restarted
    /// in the same process.
    #[cfg(feature = "fault-injection")]
    pub async fn crash(self) {
        let node = self.node_id;
        let _ = self.store.send(CloseLeadership).await;
        if let Some(driver) = self.driver() {
            let _ = driver.send(StopNodeDriver { resign: false }).await;
        }
        let _ = self.listener.send(StopListener).await;
        let _ = self.store.send(StopStore).await;
        self.disk.stop().await;
        tracing::info!(node, "node crashed (test hook)");
    }

    /// Stop the node: a leader resigns first (its followers elect at once
    /// instead of after the election timeout), then it closes its
    /// connections, stops its actors, syncs and closes the WAL, and records
    /// how far it had applied.
    pub async fn shutdown(self) {
        let node = self.node_id;
        // No heartbeat may follow the resignation (the node engine's
        // shutdown, which a leader answers with `Resign` to every voter);
        // a leadership taken from now on is refused by the store.
        let _ = self.store.send(CloseLeadership).await;
        if let Some(driver) = self.driver() {
            let _ = driver.send(StopNodeDriver { resign: true }).await;
        }
        let _ = self.listener.send(StopListener).await;
        let _ = self.store.send(StopStore).await;
        let meta = NodeMeta {
            node_id: node,
            cluster_id: self.config.cluster_id.clone(),
            directory_id: metawal::membership::DirectoryId::UNKNOWN,
            current_epoch: self.shared.epoch(),
            leader: None,
            voted_for: None,
            commit_hint: self.view.applied_offset(),
        };
        // Merged with the meta on disk: never a lower epoch, the vote and
        // leader of the epoch kept.
        match self.disk.persist_meta(meta).await {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => {
                tracing::debug!(node, %refused, "commit hint not recorded: a newer epoch is on disk")
            }
            Err(e) => tracing::warn!(node, error = %e, "could not record the commit hint"),
        }
        self.disk.stop().await;
        tracing::info!(node, "node stopped");
    }
}

// The steps of a role change (`RoleChanges`), carried out for the node
// engine: a child module, so it sees the node's private handles.
#[path = "node_roles.rs"]
mod roles;
