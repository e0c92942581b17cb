//! Which members a front leaves out of its broker lists (`Metadata`,
//! `DescribeCluster`).
//!
//! A Kafka controller fences a broker whose heartbeats stopped, and every
//! broker then leaves it out of its `Metadata`, so clients do not pick a
//! dead node to ask. metawal's leader knows which members its links find
//! unreachable; a follower keeps no connection to the other followers and
//! cannot tell. So the leader leaves out what its links find unreachable,
//! and a follower lists what the leader lists: it asks the leader's front
//! for `DescribeCluster` (`forward.rs`) at most once per [`FENCE_REFRESH`]
//! and keeps the answer. Every node then lists the same brokers, up to one
//! refresh behind the leader.
//!
//! When the leader cannot be asked (none known, its front unreachable, a
//! bad answer), the follower lists every member for the next
//! [`FENCE_REFRESH`] and says why in an INFO line (once per refresh): a
//! fuller list, never a shorter one, so a client can still reach the
//! cluster. A request another front forwarded is answered from the node's
//! own knowledge only, never by asking again (two nodes that each believe
//! the other leads must not ask each other in a loop).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeClusterResponse};
use metawal::NodeId;
use metawal_actors::{PeerConnection, Role};

use crate::front::Front;

/// How long a follower keeps the leader's broker list.
pub const FENCE_REFRESH: Duration = Duration::from_secs(1);

/// Longest a follower waits for the leader's broker list (a `Metadata`
/// request waits on it at most once per [`FENCE_REFRESH`]).
pub const FENCE_ASK_TIMEOUT: Duration = Duration::from_millis(500);

/// The `DescribeCluster` version a follower asks with.
const ASK_VERSION: i16 = 0;

/// What a follower last learned from the leader.
#[derive(Debug, Default)]
pub(crate) struct FenceCache {
    last: Mutex<Option<Learned>>,
}

#[derive(Debug, Clone)]
struct Learned {
    at: Instant,
    leader: NodeId,
    /// The brokers the leader lists; `None`: asking failed.
    listed: Option<BTreeSet<NodeId>>,
}

impl FenceCache {
    fn fresh(&self, leader: NodeId) -> Option<Learned> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|l| l.leader == leader && l.at.elapsed() < FENCE_REFRESH)
            .cloned()
    }

    fn store(&self, learned: Learned) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(learned);
    }
}

impl Front {
    /// The members this request's broker list leaves out.
    /// `may_ask_leader`: false for a request another front forwarded.
    pub(crate) async fn fenced(&self, may_ask_leader: bool) -> Fenced {
        if self.node().role() == Role::Leader {
            let unreachable = self
                .node()
                .metrics()
                .peer_connections()
                .into_iter()
                .filter(|p| matches!(p.connection, PeerConnection::Unreachable { .. }))
                .map(|p| p.peer)
                .collect();
            return Fenced::Except(unreachable);
        }
        let leader = match self.node().leader() {
            Some(l) if l != self.node_id() && may_ask_leader => l,
            _ => return Fenced::Except(BTreeSet::new()),
        };
        let learned = match self.fence_cache().fresh(leader) {
            Some(l) => l,
            None => {
                let listed = self
                    .ask_leader::<_, DescribeClusterResponse>(
                        ApiKey::DescribeCluster,
                        &DescribeClusterRequest::default(),
                        ASK_VERSION,
                        FENCE_ASK_TIMEOUT,
                    )
                    .await
                    .map(|r| r.brokers.iter().filter_map(|b| u64::try_from(b.broker_id.0).ok()).collect())
                    .map_err(|e| tracing::info!(node = self.node_id(), leader, error = %e, "Kafka front: the leader's broker list not known; listing every member for now"))
                    .ok();
                let learned = Learned {
                    at: Instant::now(),
                    leader,
                    listed,
                };
                self.fence_cache().store(learned.clone());
                learned
            }
        };
        match learned.listed {
            Some(listed) => Fenced::Only(listed),
            None => Fenced::Except(BTreeSet::new()),
        }
    }
}

/// Which members a broker list leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fenced {
    /// Every member but these.
    Except(BTreeSet<NodeId>),
    /// Only these (the leader's list).
    Only(BTreeSet<NodeId>),
}

impl Fenced {
    /// Whether member `id` is listed.
    pub(crate) fn lists(&self, id: NodeId) -> bool {
        match self {
            Fenced::Except(out) => !out.contains(&id),
            Fenced::Only(listed) => listed.contains(&id),
        }
    }
}
