//! Node-wide facts several actors read without a message: role, epoch,
//! leader, and the ISR size the MetadataStore checks before accepting an
//! `acks=all` proposal.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use metawal::NodeId;

/// What a node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Appends proposals and replicates them.
    Leader,
    /// Receives the leader's log.
    Follower,
    /// Was leader, but its storage failed: no longer appends (restart it).
    Failed,
    /// Shut down.
    Stopped,
}

impl Role {
    fn to_u8(self) -> u8 {
        match self {
            Role::Leader => 0,
            Role::Follower => 1,
            Role::Failed => 2,
            Role::Stopped => 3,
        }
    }

    fn from_u8(v: u8) -> Role {
        match v {
            0 => Role::Leader,
            1 => Role::Follower,
            2 => Role::Failed,
            _ => Role::Stopped,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Failed => "failed",
            Role::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shared, lock-free node facts.
#[derive(Debug)]
pub struct NodeShared {
    /// This node's id.
    pub node_id: NodeId,
    role: AtomicU8,
    epoch: AtomicU64,
    leader: AtomicU64,
    isr_len: AtomicUsize,
    min_insync: usize,
}

impl NodeShared {
    /// Facts of a node starting in `role` at `epoch` under `leader`.
    pub fn new(
        node_id: NodeId,
        role: Role,
        epoch: u64,
        leader: Option<NodeId>,
        min_insync: usize,
    ) -> NodeShared {
        NodeShared {
            node_id,
            role: AtomicU8::new(role.to_u8()),
            epoch: AtomicU64::new(epoch),
            leader: AtomicU64::new(leader.unwrap_or(0)),
            isr_len: AtomicUsize::new(1),
            min_insync,
        }
    }

    /// Current role.
    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Acquire))
    }

    /// Change role.
    pub fn set_role(&self, role: Role) {
        self.role.store(role.to_u8(), Ordering::Release);
    }

    /// Highest epoch this node acts in.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The leader this node knows (node ids start at 1; 0 means none).
    pub fn leader(&self) -> Option<NodeId> {
        match self.leader.load(Ordering::Acquire) {
            0 => None,
            l => Some(l),
        }
    }

    /// Record a new epoch and leader.
    pub fn set_epoch_leader(&self, epoch: u64, leader: Option<NodeId>) {
        self.epoch.store(epoch, Ordering::Release);
        self.leader.store(leader.unwrap_or(0), Ordering::Release);
    }

    /// ISR size (leader included) as the Replicator last computed it.
    pub fn isr_len(&self) -> usize {
        self.isr_len.load(Ordering::Acquire)
    }

    /// Publish the ISR size.
    pub fn set_isr_len(&self, n: usize) {
        self.isr_len.store(n, Ordering::Release);
    }

    /// `min_insync_replicas`, capped at the cluster size.
    pub fn min_insync(&self) -> usize {
        self.min_insync
    }
}
