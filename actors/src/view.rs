//! `MetadataView`: the committed metadata of one node, for a broker to read.
//!
//! The MetadataStore updates it after applying each committed entry; readers on
//! any thread get it through a cheap clone (an `Arc`) and read it without
//! going through an actor. It is backed by a `DashMap` (sharded locks, so
//! readers never wait for the store except on the one shard being written).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::Message;
use dashmap::DashMap;
use metawal::state::{MetadataState, PartitionState};
use metawal::Command;
use tokio::sync::watch;

/// One topic as the view holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    /// Replication factor requested at creation.
    pub replication_factor: u32,
    /// Partitions by index.
    pub partitions: Vec<PartitionState>,
}

#[derive(Debug)]
struct Inner {
    topics: DashMap<String, TopicView>,
    applied_offset: AtomicU64,
    applied_epoch: AtomicU64,
    /// The applied offset again, for readers that wait for it to pass a
    /// point (change streams, `min_offset` reads) instead of polling.
    applied_tx: watch::Sender<u64>,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            topics: DashMap::new(),
            applied_offset: AtomicU64::new(0),
            applied_epoch: AtomicU64::new(0),
            applied_tx: watch::channel(0).0,
        }
    }
}

/// Read-only, cheap-to-clone view of a node's committed metadata.
#[derive(Debug, Clone, Default)]
pub struct MetadataView {
    inner: Arc<Inner>,
}

impl MetadataView {
    /// A view of an empty state.
    pub fn new() -> MetadataView {
        MetadataView::default()
    }

    /// A topic, if it exists.
    pub fn topic(&self, name: &str) -> Option<TopicView> {
        self.inner.topics.get(name).map(|t| t.clone())
    }

    /// One partition of a topic, if both exist.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionState> {
        let t = self.inner.topics.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p).cloned())
    }

    /// Names of all topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.topics.iter().map(|e| e.key().clone()).collect();
        names.sort();
        names
    }

    /// Offset of the last applied (committed) entry.
    pub fn applied_offset(&self) -> u64 {
        self.inner.applied_offset.load(Ordering::Acquire)
    }

    /// A receiver of the applied offset: `changed()` wakes when an entry is
    /// applied (or a snapshot installed).
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.inner.applied_tx.subscribe()
    }

    /// Wait until this node has applied `offset`, for at most `timeout`.
    /// Returns the applied offset (at least `offset`), or `None` on time-out.
    pub async fn wait_applied(&self, offset: u64, timeout: std::time::Duration) -> Option<u64> {
        // The watch is sent once per applied batch (`publish_applied`), so
        // it can trail the offset a reader sees in `applied_offset` or a
        // `MetadataChanged` by the rest of a batch: what is applied already
        // answers at once.
        let applied = self.applied_offset();
        if applied >= offset {
            return Some(applied);
        }
        let mut rx = self.applied_watch();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|a| *a >= offset)).await;
        match reached {
            Ok(Ok(a)) => Some(*a),
            // The sender lives as long as the view: never closed while
            // `self` is held.
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Epoch of the last applied entry.
    pub fn applied_epoch(&self) -> u64 {
        self.inner.applied_epoch.load(Ordering::Acquire)
    }

    /// Replace the whole view with `state` (at start-up and after a snapshot).
    pub(crate) fn reset(&self, state: &MetadataState) {
        self.inner.topics.clear();
        for (name, t) in state.topics() {
            self.inner.topics.insert(
                name.clone(),
                TopicView {
                    replication_factor: t.replication_factor,
                    partitions: t.partitions.clone(),
                },
            );
        }
        self.set_applied(state.applied_offset(), state.applied_epoch());
        self.publish_applied();
    }

    /// Copy what `command` changed from `state` (which has just applied it).
    pub(crate) fn update(&self, state: &MetadataState, command: &Command) {
        match command {
            // A grown topic is copied whole, as a created one: its
            // partition list changed length.
            Command::CreateTopic { name, .. } | Command::CreatePartitions { topic: name, .. } => {
                if let Some(t) = state.topic(name) {
                    self.inner.topics.insert(
                        name.clone(),
                        TopicView {
                            replication_factor: t.replication_factor,
                            partitions: t.partitions.clone(),
                        },
                    );
                }
            }
            Command::DeleteTopic { name } => {
                self.inner.topics.remove(name);
            }
            Command::AssignPartition {
                topic, partition, ..
            }
            | Command::SetPartitionLeader {
                topic, partition, ..
            }
            | Command::UpdateIsr {
                topic, partition, ..
            } => {
                let (Some(new), Some(mut t), Ok(p)) = (
                    state.partition(topic, *partition),
                    self.inner.topics.get_mut(topic.as_str()),
                    usize::try_from(*partition),
                ) else {
                    return;
                };
                if let Some(slot) = t.partitions.get_mut(p) {
                    slot.clone_from(new);
                }
            }
            Command::Batch { commands } => {
                // A later command of the batch may have undone an earlier
                // one's topic (delete, re-create): copying each from the
                // final state in order ends with the final state.
                for c in commands {
                    self.update(state, c);
                }
            }
            // Control entries: no topic changes.
            Command::LeaderChange { .. } | Command::Membership(_) => {}
        }
    }

    /// Record the applied offset and epoch for readers of
    /// [`Self::applied_offset`]; waiters on [`Self::applied_watch`] hear of
    /// it at the next [`Self::publish_applied`].
    pub(crate) fn set_applied(&self, offset: u64, epoch: u64) {
        self.inner.applied_epoch.store(epoch, Ordering::Release);
        self.inner.applied_offset.store(offset, Ordering::Release);
    }

    /// Wake the waiters on [`Self::applied_watch`] if the applied offset
    /// moved since the last call. The store calls it once per batch of
    /// applied entries, not per entry: every send locks all of the watch's
    /// notification shards, waiters or not.
    pub(crate) fn publish_applied(&self) {
        let offset = self.applied_offset();
        self.inner.applied_tx.send_if_modified(|cur| {
            let moved = *cur != offset;
            *cur = offset;
            moved
        });
    }
}

/// Sent to subscribers after each committed entry is applied, in offset
/// order, on every node.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct MetadataChanged {
    /// The entry's offset.
    pub offset: u64,
    /// The entry's epoch.
    pub epoch: u64,
    /// The command applied.
    pub command: Command,
}

#[cfg(test)]
mod tests {
    use super::*;
    use metawal::Entry;

    /// Apply `command` to `state` as its next entry, then update `view`
    /// from it, as the store does.
    fn apply(state: &mut MetadataState, view: &MetadataView, command: Command) {
        let entry = Entry {
            offset: state.applied_offset() + 1,
            epoch: 1,
            command,
        };
        state.apply(&entry).expect("valid command");
        view.update(state, &entry.command);
    }

    #[test]
    fn a_grown_topic_shows_its_new_partitions() {
        let (mut state, view) = (MetadataState::new(), MetadataView::new());
        apply(
            &mut state,
            &view,
            Command::CreateTopic {
                name: "t".into(),
                partition_count: 3,
                replication_factor: 1,
            },
        );
        let grow_and_assign = Command::Batch {
            commands: vec![
                Command::CreatePartitions {
                    topic: "t".into(),
                    partition_count: 5,
                },
                Command::AssignPartition {
                    topic: "t".into(),
                    partition: 4,
                    replicas: vec![2],
                },
            ],
        };
        apply(&mut state, &view, grow_and_assign);
        let t = view.topic("t").expect("topic");
        assert_eq!(t.partitions.len(), 5);
        assert_eq!(Some(&t.partitions), state.topic("t").map(|t| &t.partitions));
        assert_eq!(view.partition("t", 4).map(|p| p.replicas), Some(vec![2]));
    }

    /// Mid-batch, the applied offset (and each `MetadataChanged` sent) is
    /// ahead of the watch, which is sent once the batch ends: a wait for
    /// what is already applied must not time out meanwhile.
    #[actix::test]
    async fn a_wait_for_an_applied_offset_answers_before_the_batch_ends() {
        let view = MetadataView::new();
        view.set_applied(5, 1);
        assert_eq!(
            view.wait_applied(5, std::time::Duration::ZERO).await,
            Some(5)
        );
        assert_eq!(view.wait_applied(6, std::time::Duration::ZERO).await, None);
        view.publish_applied();
        assert_eq!(*view.applied_watch().borrow(), 5);
    }
}
