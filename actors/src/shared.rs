//! Node-wide facts several actors read without a message: the leadership
//! snapshot (role, epoch, leader: one value, written whole), the ISR size the MetadataStore checks before accepting an
//! `acks=all` proposal, and the liveness signals the NodeDriver reads — when
//! this node last heard its leader (set by the ReplicaListener) or each
//! follower (set by the FollowerLinks) — so that no message is sent per
//! heartbeat.

use crate::metrics::NodeMetrics;
use crate::tls::PeerTransport;
use dashmap::DashMap;
use metawal::membership::Membership;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metawal::engine::election::ElectionRole;
use metawal::NodeId;
use tokio::sync::{broadcast, watch};

pub(crate) use crate::status::{Leadership, Role};
use metawal::engine::node::Published;

/// Changes of leadership a [`crate::Node::leadership_changes`] reader may
/// fall behind by before it is told it lagged.
pub(crate) const LEADERSHIP_LOG: usize = 64;

/// Shared, lock-free node facts.
#[derive(Debug)]
pub(crate) struct NodeShared {
    /// Role, epoch and leader, written together (under the watch's lock).
    leadership: watch::Sender<Leadership>,
    /// Every change of `leadership`, in order, for streaming readers.
    leadership_log: broadcast::Sender<Leadership>,
    isr_len: AtomicUsize,
    /// `min_insync_replicas` as configured, and capped at the voters in
    /// force (moved with the membership).
    min_insync_configured: usize,
    min_insync: AtomicUsize,
    /// The membership in force on this node and the offset of its entry if
    /// that entry is not committed yet (written by the NodeDriver, the one
    /// owner, at each change; read by the Replicator's start, the HTTP API,
    /// the read index).
    membership: std::sync::RwLock<(Arc<Membership>, Option<u64>)>,
    /// The zero of the `*_ns` clocks below.
    base: Instant,
    /// When the active leader session last delivered anything (ns since
    /// `base`; 0: never).
    leader_contact_ns: AtomicU64,
    /// Leader: the latest send time of a frame each follower answered
    /// (ns since `base`; see `LinkReport::Heard`).
    /// Only members are kept (see [`NodeShared::set_membership`]).
    followers_heard_ns: DashMap<NodeId, AtomicU64>,
    /// Woken when a follower answered, while `heard_waiters > 0`.
    heard_changed: tokio::sync::Notify,
    /// Reads waiting for followers' answers (see [`HeardWaiter`]): the
    /// link skips the wake-up when none waits.
    heard_waiters: AtomicUsize,
    /// The follower's log end `(epoch, offset)`, as its log owner last saw it.
    last_log_epoch: AtomicU64,
    last_log_offset: AtomicU64,
    /// The election engine's view, published for `status()`.
    election_role: AtomicU8,
    voted_for: AtomicU64,
    elections: AtomicU64,
    pre_votes: AtomicU64,
    /// A leader transfer is under way: proposals are refused.
    transferring: AtomicBool,
    /// The last leader the log owner accepted a session from:
    /// `(epoch, leader)`, `(0, 0)` for none. Written at each attach (rare),
    /// read by the node engine's pump.
    attached: std::sync::Mutex<(u64, NodeId)>,
    /// The highest epoch a follower proved to this leader (0: none).
    higher_epoch: AtomicU64,
    /// The node's metrics.
    pub metrics: NodeMetrics,
    /// How peer connections are carried (TLS or plain), set at start.
    pub(crate) transport: PeerTransport,
}

impl NodeShared {
    /// Facts of a node starting in `role` at `epoch` under `leader`, with
    /// `membership` in force.
    pub fn new(
        role: Role,
        epoch: u64,
        leader: Option<NodeId>,
        min_insync: usize,
        membership: Membership,
    ) -> NodeShared {
        let start = Leadership {
            role,
            epoch,
            leader,
            seq: 0,
        };
        NodeShared {
            leadership: watch::Sender::new(start),
            leadership_log: broadcast::Sender::new(LEADERSHIP_LOG),
            isr_len: AtomicUsize::new(1),
            min_insync_configured: min_insync,
            min_insync: AtomicUsize::new(min_insync.min(membership.voter_count())),
            base: Instant::now(),
            leader_contact_ns: AtomicU64::new(0),
            followers_heard_ns: membership
                .members()
                .map(|(m, _)| (m.node_id, AtomicU64::new(0)))
                .collect(),
            membership: std::sync::RwLock::new((Arc::new(membership), None)),
            heard_changed: tokio::sync::Notify::new(),
            heard_waiters: AtomicUsize::new(0),
            last_log_epoch: AtomicU64::new(0),
            last_log_offset: AtomicU64::new(0),
            election_role: AtomicU8::new(0),
            voted_for: AtomicU64::new(0),
            elections: AtomicU64::new(0),
            pre_votes: AtomicU64::new(0),
            transferring: AtomicBool::new(false),
            attached: std::sync::Mutex::new((0, 0)),
            higher_epoch: AtomicU64::new(0),
            metrics: NodeMetrics::new(),
            transport: PeerTransport::Plain,
        }
    }

    fn since_base_ns(&self, at: Instant) -> u64 {
        // 1 ns at least: 0 means "never".
        (at.saturating_duration_since(self.base).as_nanos() as u64).max(1)
    }

    fn at(&self, ns: u64) -> Option<Instant> {
        (ns != 0).then(|| self.base + Duration::from_nanos(ns))
    }

    /// The active leader session delivered something now.
    pub(crate) fn note_leader_contact(&self) {
        let ns = self.since_base_ns(Instant::now());
        self.leader_contact_ns.fetch_max(ns, Ordering::AcqRel);
    }

    /// The log owner accepted `leader`'s session in `epoch` (persisted).
    pub(crate) fn note_leader_attached(&self, epoch: u64, leader: NodeId) {
        let mut a = match self.attached.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        if epoch >= a.0 {
            *a = (epoch, leader);
        }
    }

    /// The last leader the log owner attached to, `(epoch, leader)`.
    pub(crate) fn leader_attached(&self) -> Option<(u64, NodeId)> {
        let a = match self.attached.lock() {
            Ok(a) => *a,
            Err(p) => *p.into_inner(),
        };
        (a.1 != 0).then_some(a)
    }

    /// When the leader was last heard from, if ever.
    pub fn leader_contact(&self) -> Option<Instant> {
        self.at(self.leader_contact_ns.load(Ordering::Acquire))
    }

    /// Leader of `epoch`: `peer` answered something this node sent at
    /// `since`. Ignored unless this node leads `epoch` (a link of an older
    /// leadership that still runs).
    pub(crate) fn note_follower_heard(&self, peer: NodeId, epoch: u64, since: Instant) {
        let l = self.leadership();
        if l.role != Role::Leader || l.epoch != epoch {
            return;
        }
        if let Some(t) = self.followers_heard_ns.get(&peer) {
            t.fetch_max(self.since_base_ns(since), Ordering::SeqCst);
            // SeqCst with `HeardWaiter::new`: either this load sees the
            // waiter, or the waiter's check sees the store above.
            if self.heard_waiters.load(Ordering::SeqCst) > 0 {
                self.heard_changed.notify_waiters();
            }
        }
    }

    /// Register a waiter for followers' answers (woken by each one while
    /// it lives).
    pub(crate) fn heard_waiter(&self) -> HeardWaiter<'_> {
        self.heard_waiters.fetch_add(1, Ordering::SeqCst);
        HeardWaiter { shared: self }
    }

    /// Leader: when each member (voter or learner) last answered.
    pub fn followers_heard(&self) -> Vec<(NodeId, Instant)> {
        self.followers_heard_ns
            .iter()
            .filter_map(|e| Some((*e.key(), self.at(e.value().load(Ordering::SeqCst))?)))
            .collect()
    }

    /// The membership in force, and the offset of its entry while that
    /// entry is not committed.
    pub fn membership(&self) -> (Arc<Membership>, Option<u64>) {
        let m = match self.membership.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        (m.0.clone(), m.1)
    }

    /// Publish the membership in force (the NodeDriver, its one writer):
    /// answers from members only are noted from now on, and
    /// `min_insync_replicas` is capped at its voters.
    pub(crate) fn set_membership(&self, membership: Membership, pending: Option<u64>) {
        self.followers_heard_ns
            .retain(|id, _| membership.member(*id).is_some());
        for (m, _) in membership.members() {
            self.followers_heard_ns
                .entry(m.node_id)
                .or_insert_with(|| AtomicU64::new(0));
        }
        self.min_insync.store(
            self.min_insync_configured.min(membership.voter_count()),
            Ordering::Release,
        );
        let mut cell = match self.membership.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        *cell = (Arc::new(membership), pending);
    }

    /// The follower's log end `(last epoch, last offset)` as its log owner
    /// last published it.
    pub fn last_log(&self) -> (u64, u64) {
        (
            self.last_log_epoch.load(Ordering::Acquire),
            self.last_log_offset.load(Ordering::Acquire),
        )
    }

    /// Publish the follower's log end.
    pub(crate) fn set_last_log(&self, epoch: u64, offset: u64) {
        self.last_log_epoch.store(epoch, Ordering::Release);
        self.last_log_offset.store(offset, Ordering::Release);
    }

    /// Publish the election engine's view.
    pub(crate) fn set_election(
        &self,
        role: ElectionRole,
        voted_for: Option<NodeId>,
        elections: u64,
        pre_votes: u64,
    ) {
        self.pre_votes.store(pre_votes, Ordering::Release);
        let r = match role {
            ElectionRole::Follower => 0,
            ElectionRole::PreCandidate => 1,
            ElectionRole::Candidate => 2,
            ElectionRole::Leader => 3,
        };
        self.election_role.store(r, Ordering::Release);
        self.voted_for
            .store(voted_for.unwrap_or(0), Ordering::Release);
        self.elections.store(elections, Ordering::Release);
    }

    /// Pre-vote rounds this node started.
    pub fn pre_votes(&self) -> u64 {
        self.pre_votes.load(Ordering::Acquire)
    }

    /// The election engine's role, vote and election count.
    pub fn election(&self) -> (ElectionRole, Option<NodeId>, u64) {
        let role = match self.election_role.load(Ordering::Acquire) {
            1 => ElectionRole::PreCandidate,
            2 => ElectionRole::Candidate,
            3 => ElectionRole::Leader,
            _ => ElectionRole::Follower,
        };
        let voted = match self.voted_for.load(Ordering::Acquire) {
            0 => None,
            v => Some(v),
        };
        (role, voted, self.elections.load(Ordering::Acquire))
    }

    /// Leader: a follower proved it knows `epoch`.
    pub(crate) fn note_higher_epoch(&self, epoch: u64) {
        self.higher_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The highest epoch a follower proved to this leader (0: none).
    pub fn higher_epoch(&self) -> u64 {
        self.higher_epoch.load(Ordering::Acquire)
    }

    /// Whether a leader transfer is under way (proposals are refused).
    pub fn transferring(&self) -> bool {
        self.transferring.load(Ordering::Acquire)
    }

    /// Change the leadership snapshot with `change` (which says whether
    /// it changed anything); a change is published whole, numbered, and
    /// logged for streaming readers, all under one lock. Whether it changed.
    fn update(&self, change: impl FnOnce(&mut Leadership) -> bool) -> bool {
        self.leadership.send_if_modified(|l| {
            if !change(l) {
                return false;
            }
            l.seq += 1;
            // No receiver is not an error: nobody streams the changes.
            let _ = self.leadership_log.send(*l);
            true
        })
    }

    /// The leadership now: one snapshot, never torn.
    pub fn leadership(&self) -> Leadership {
        *self.leadership.borrow()
    }

    /// The latest snapshot, watched (changes coalesce).
    pub fn watch_leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.subscribe()
    }

    /// Every change from now on, in order (at most [`LEADERSHIP_LOG`]
    /// behind).
    pub fn leadership_log(&self) -> broadcast::Receiver<Leadership> {
        self.leadership_log.subscribe()
    }

    /// Publish what the node engine decided: role, epoch, leader and
    /// whether a transfer runs, in one snapshot. The node engine's pump is
    /// the only caller. A node that fail-stopped ([`Self::fail_stop`])
    /// stays `Failed`.
    pub(crate) fn publish(&self, p: Published) {
        self.transferring.store(p.transferring, Ordering::Release);
        self.update(|l| {
            let role = if l.role == Role::Failed {
                Role::Failed
            } else {
                p.role
            };
            let changed = (l.role, l.epoch, l.leader) != (role, p.epoch, p.leader);
            l.role = role;
            l.epoch = p.epoch;
            l.leader = p.leader;
            changed
        });
    }

    /// A part of the node (the store, the log owner, the Replicator)
    /// fail-stopped on a storage failure: `Failed` is published at once
    /// (proposals are refused from this instant) and latched; the node
    /// engine hears of it at its next input.
    pub(crate) fn fail_stop(&self) {
        self.update(|l| {
            let changed = l.role != Role::Failed;
            l.role = Role::Failed;
            changed
        });
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.leadership.borrow().role
    }

    /// Highest epoch this node acts in.
    pub fn epoch(&self) -> u64 {
        self.leadership.borrow().epoch
    }

    /// The leader this node knows.
    pub fn leader(&self) -> Option<NodeId> {
        self.leadership.borrow().leader
    }

    /// ISR size (leader included) as the Replicator last computed it.
    pub fn isr_len(&self) -> usize {
        self.isr_len.load(Ordering::Acquire)
    }

    /// Publish the ISR size.
    pub(crate) fn set_isr_len(&self, n: usize) {
        self.isr_len.store(n, Ordering::Release);
    }

    /// `min_insync_replicas`, capped at the voters in force.
    pub fn min_insync(&self) -> usize {
        self.min_insync.load(Ordering::Acquire)
    }
}

/// A read waiting for followers' answers (see
/// [`NodeShared::heard_waiter`]). Create the `notified()` future and
/// `enable` it *before* checking `followers_heard`, then await it: an
/// answer noted after the check wakes it.
pub(crate) struct HeardWaiter<'a> {
    shared: &'a NodeShared,
}

impl HeardWaiter<'_> {
    /// Resolves at the next answer noted after it was enabled.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.heard_changed.notified()
    }
}

impl Drop for HeardWaiter<'_> {
    fn drop(&mut self) {
        self.shared.heard_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}
