//! The node-wide progress of the log, published through a `watch` channel.
//!
//! The Replicator (leader) or the ReplicaListener (follower) is the single
//! writer; the FollowerLinks and the MetadataStore read it. A watch channel
//! coalesces updates, so a burst of appends wakes each reader once: this is
//! how the leader tells every link "log end is now N, commit is C" without a
//! message per entry.

/// Where the log stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogProgress {
    /// Last offset appended (maybe not yet durable).
    pub log_end: u64,
    /// Last offset durable in this node's WAL.
    pub durable: u64,
    /// Highest committed offset known (the leader's high watermark).
    pub commit: u64,
}

impl LogProgress {
    /// Entries up to here may be applied: committed and durable locally.
    pub fn applicable(&self) -> u64 {
        self.commit.min(self.durable)
    }
}
