//! The bench's clusters: the kit's in-process [`TestCluster`] (three nodes
//! on their own Arbiters, reserved loopback ports, data under the bench's
//! data dir), node 1 the leader, with the benchmark topic created.

use std::path::Path;
use std::time::Duration;

use metawal_actors::{Acks, Command};
use metawal_testkit::support::wait_for;
use metawal_testkit::{ClusterSpec, Subscribers, TestCluster};

pub const TOPIC: &str = "bench";
pub const PARTITIONS: u64 = 16;
pub const CLUSTER_ID: &str = "bench-cluster";
pub const SECRET: &[u8] = b"bench-secret";
/// Changes a follower's subscriber keeps (more than any phase writes).
const NOTES_KEEP: usize = 1 << 22;

/// Three nodes with their data in a new `metawal-bench-*` directory under
/// `parent`, plaintext, default tunables; the phases add what they need.
pub fn spec(parent: &Path) -> ClusterSpec {
    TestCluster::builder(3)
        .temp_dir_in(parent, "metawal-bench-")
        .cluster_id(CLUSTER_ID, SECRET)
}

/// Subscribers on both followers (nodes 2 and 3), each on its node's
/// Arbiter, with room in their mailboxes for any burst the bench makes
/// (the store drops a subscriber whose mailbox is full).
pub fn followers_subscribed(spec: ClusterSpec) -> ClusterSpec {
    spec.subscribe(Subscribers {
        nodes: vec![2, 3],
        keep: NOTES_KEEP,
        mailbox: 1 << 20,
    })
}

/// Start `spec`'s nodes with node 1 the leader (the phases measure node 1
/// as leader; node 3 is the one behind the proxy) and the full ISR, and
/// create the benchmark topic.
pub async fn start(spec: ClusterSpec) -> Result<TestCluster, String> {
    let c = spec.start().await?;
    match create_topic(&c).await {
        Ok(()) => Ok(c),
        Err(e) => {
            c.shutdown().await;
            Err(e)
        }
    }
}

/// The topic every write touches: [`PARTITIONS`] partitions on all three
/// nodes. Waits until the followers (and their subscribers, which then
/// forget it) have seen it.
async fn create_topic(c: &TestCluster) -> Result<(), String> {
    let leader = c.try_node(1)?.clone();
    let setup = |cmd: Command| {
        let leader = leader.clone();
        async move {
            leader
                .propose(cmd, Acks::All)
                .await
                .map_err(|e| format!("setup write: {e}"))
        }
    };
    setup(Command::CreateTopic {
        name: TOPIC.into(),
        partition_count: PARTITIONS as u32,
        replication_factor: 3,
    })
    .await?;
    let mut last = 0;
    for p in 0..PARTITIONS {
        let r = |k: u64| (p + k) % 3 + 1;
        last = setup(Command::AssignPartition {
            topic: TOPIC.into(),
            partition: p as i32,
            replicas: vec![r(0), r(1), r(2)],
        })
        .await?
        .offset;
    }
    for id in [2, 3] {
        let n = c.try_node(id)?;
        wait_for(
            &format!("node {id} to apply the setup"),
            Duration::from_secs(10),
            || async { n.view().applied_offset() >= last },
        )
        .await?;
        if let Ok(notes) = c.try_recording(id) {
            wait_for(
                &format!("node {id}'s subscriber to see the setup"),
                Duration::from_secs(10),
                || async { notes.last_offset() >= last },
            )
            .await?;
            notes.clear();
        }
    }
    Ok(())
}

/// A valid write that changes something: partition `seq` mod
/// [`PARTITIONS`] gets a leader cycling through the replicas.
pub fn set_leader(seq: u64) -> Command {
    Command::SetPartitionLeader {
        topic: TOPIC.into(),
        partition: (seq % PARTITIONS) as i32,
        leader: 1 + (seq / PARTITIONS) % 3,
    }
}
