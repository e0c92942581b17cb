//! A simulated disk: a node's log of records, of which a prefix is durable,
//! and its meta `(epoch, leader, voted_for)`, written durably at once (tmp + fsync +
//! rename in the real storage).
//!
//! Appends land in an unsynced tail; an fsync makes everything appended
//! before it durable after some latency (group commit). A crash keeps the
//! durable prefix, a random part of the unsynced tail (the OS may have
//! written some of it), and possibly a torn piece of the next record — which
//! the real record decoder cuts on restart, as the WAL does.
//!
//! Every other storage operation is a typed [`DiskRequest`], carried out by
//! [`DiskExecutor::execute`] with the rules the disk threads apply (the
//! meta merge of [`crate::engine::epoch`], the replays of
//! [`crate::engine::recovery`]); a meta write can be made to fail
//! ([`SimDisk::fail_next_meta_write`]). Snapshots are not modelled: the
//! simulated log is never compacted, and the two snapshot requests are
//! refused with an error saying so (no simulated node emits them).

use crate::command::NodeId;
use crate::engine::disk_io::{DiskCompletion, DiskExecutor, DiskRequest};
use crate::engine::epoch::{merge_meta, vote_meta};
use crate::engine::follower_io::ResetError;
use crate::engine::recovery::{self, Recovered};
use crate::epochs::EpochIndex;
use crate::record::{decode_record, Record};
use crate::state::MetadataState;
use crate::storage::{NodeMeta, StorageError};
use crate::wal::WalError;

use super::rng::SimRng;

/// The durable meta of a node: the epoch it acts in and the leader it
/// accepted (or voted for) in that epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Highest epoch the node has seen and persisted.
    pub epoch: u64,
    /// The leader of that epoch, if known (persisted when it attached).
    pub leader: Option<NodeId>,
    /// The vote cast in that epoch (persisted before the vote is sent).
    pub voted_for: Option<NodeId>,
}

/// What a crash did to the unsynced tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CrashLoss {
    /// Unsynced records that survived whole.
    pub kept: usize,
    /// Unsynced records lost.
    pub lost: usize,
    /// Whether a torn record was found and cut on restart.
    pub torn: bool,
}

/// One node's disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    /// The node whose disk this is (written in its meta).
    node: NodeId,
    records: Vec<Record>,
    durable: u64,
    meta: Meta,
    /// The commit hint kept in meta (written with it, durably).
    commit_hint: u64,
    sync: Option<(u64, u64)>,
    generation: u64,
    /// Meta writes still to fail (the nemesis's fault).
    fail_meta_writes: u32,
    /// The planted bug: recovery takes the commit point one past the hint.
    recover_past_hint: bool,
    /// Times this disk was wiped.
    wipes: u8,
}

impl SimDisk {
    /// An empty disk of node `node`.
    pub fn new(node: NodeId) -> SimDisk {
        SimDisk {
            node,
            ..SimDisk::default()
        }
    }

    /// The disk is replaced by an empty one (an operator wiped the data
    /// directory, or the disk died and the node came back on a new one):
    /// log, meta and commit hint are gone. Call on a crashed node.
    pub fn wipe(&mut self) {
        *self = SimDisk {
            node: self.node,
            generation: self.generation + 1,
            wipes: self.wipes.wrapping_add(1),
            ..SimDisk::default()
        };
    }

    /// Times this disk was wiped.
    pub fn wipes(&self) -> u8 {
        self.wipes
    }

    /// The records on the disk (durable or not), offsets 1, 2, ...
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Last offset written (durable or not).
    pub fn last_offset(&self) -> u64 {
        self.records.len() as u64
    }

    /// Last durable offset.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// The persisted meta.
    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// The commit hint in meta.
    pub fn commit_hint(&self) -> u64 {
        self.commit_hint
    }

    /// The next meta write fails as an I/O error would (nothing written).
    pub fn fail_next_meta_write(&mut self) {
        self.fail_meta_writes += 1;
    }

    /// Plant the bug: [`DiskRequest::Recover`] takes the commit point one
    /// past the hint.
    pub fn plant_recover_past_hint(&mut self) {
        self.recover_past_hint = true;
    }

    /// The log's epochs as the records say.
    fn epochs(&self) -> EpochIndex {
        let mut index = EpochIndex::new(0, 0);
        for r in &self.records {
            let Ok(entry) = r.entry() else { break };
            if index.append(entry.offset, entry.epoch).is_err() {
                break;
            }
        }
        index
    }

    /// The meta as the real storage holds it, for `id`.
    fn node_meta(&self, id: NodeId) -> NodeMeta {
        NodeMeta {
            node_id: id,
            cluster_id: "sim".into(),
            directory_id: crate::membership::DirectoryId([id as u8; 16]),
            current_epoch: self.meta.epoch,
            leader: self.meta.leader,
            voted_for: self.meta.voted_for,
            commit_hint: self.commit_hint,
        }
    }

    fn store_node_meta(&mut self, m: &NodeMeta) {
        self.meta = Meta {
            epoch: m.current_epoch,
            leader: m.leader,
            voted_for: m.voted_for,
        };
        self.commit_hint = m.commit_hint;
    }

    /// A meta write: fails if the nemesis armed a failure.
    fn meta_write(&mut self) -> Result<(), StorageError> {
        if self.fail_meta_writes > 0 {
            self.fail_meta_writes -= 1;
            return Err(StorageError::Io {
                path: "<simulated disk>/meta".into(),
                source: std::io::Error::other("injected meta write failure"),
            });
        }
        Ok(())
    }

    /// Read up to `max` records from `from` (any written, as the writer
    /// thread reads its own WAL).
    fn read(&self, from: u64, max: usize) -> Vec<Record> {
        self.records
            .iter()
            .skip(from.saturating_sub(1) as usize)
            .take(max)
            .cloned()
            .collect()
    }

    /// Write `records` after the last one (unsynced).
    pub fn append(&mut self, records: impl IntoIterator<Item = Record>) {
        self.records.extend(records);
    }

    /// Drop every record after `to`; the truncation itself is durable. An
    /// fsync in flight is abandoned (its target may name offsets that are
    /// about to be rewritten).
    pub fn truncate(&mut self, to: u64) {
        let to = to.min(self.last_offset());
        self.records.truncate(to as usize);
        self.durable = self.durable.min(to);
        self.sync = None;
        self.generation += 1;
    }

    /// Start an fsync of everything written so far, unless one is running
    /// or nothing is unsynced. Returns `(target, generation)` to complete it.
    pub fn start_sync(&mut self) -> Option<(u64, u64)> {
        if self.sync.is_some() || self.durable >= self.last_offset() {
            return None;
        }
        self.generation += 1;
        let s = (self.last_offset(), self.generation);
        self.sync = Some(s);
        Some(s)
    }

    /// Make everything written durable now (an fsync that took no time);
    /// an fsync in flight is abandoned.
    pub fn sync_all(&mut self) {
        self.durable = self.last_offset();
        self.sync = None;
        self.generation += 1;
    }

    /// Whether an fsync is running.
    pub fn syncing(&self) -> bool {
        self.sync.is_some()
    }

    /// The fsync of `generation` finished: returns the new durable offset,
    /// or `None` if that fsync was abandoned.
    pub fn complete_sync(&mut self, generation: u64) -> Option<u64> {
        match self.sync {
            Some((target, g)) if g == generation => {
                self.sync = None;
                self.durable = self.durable.max(target.min(self.last_offset()));
                Some(self.durable)
            }
            _ => None,
        }
    }

    /// The machine crashed: keep the durable prefix, a random whole part of
    /// the unsynced tail and maybe a torn piece of the next record; then
    /// "restart": decode the surviving unsynced bytes with the real record
    /// decoder and cut at the first record that does not decode.
    pub fn crash(&mut self, rng: &mut SimRng) -> CrashLoss {
        self.sync = None;
        self.generation += 1;
        let durable = self.durable as usize;
        let unsynced = self.records.len() - durable;
        let keep = rng.below(unsynced as u64 + 1) as usize;
        // The bytes that reached the platter after the durable prefix.
        let mut bytes = Vec::new();
        for r in &self.records[durable..durable + keep] {
            bytes.extend_from_slice(&r.bytes);
        }
        if let Some(next) = self.records.get(durable + keep) {
            if rng.chance(500) && next.len() > 1 {
                let cut = rng.range(1, next.len() as u64 - 1) as usize;
                bytes.extend_from_slice(&next.bytes[..cut]);
            }
        }
        // Restart: decode what survived.
        let mut survivors = 0;
        let mut pos = 0;
        let mut torn = false;
        while pos < bytes.len() {
            match decode_record(&bytes[pos..]) {
                Ok((_, used)) => {
                    pos += used;
                    survivors += 1;
                }
                Err(_) => {
                    torn = true;
                    break;
                }
            }
        }
        let survivors = survivors.min(keep);
        self.records.truncate(durable + survivors);
        self.durable = self.records.len() as u64;
        CrashLoss {
            kept: survivors,
            lost: unsynced - survivors,
            torn,
        }
    }
}

impl DiskExecutor for SimDisk {
    fn execute(&mut self, request: DiskRequest) -> DiskCompletion {
        let id = self.node;
        match request {
            DiskRequest::Recover => {
                let hint = self.commit_hint;
                let last = self.last_offset();
                let commit = if self.recover_past_hint {
                    recovery::commit_point_past_hint(hint, 0, last)
                } else {
                    recovery::commit_point(hint, 0, last)
                };
                let read = |next: u64| -> Result<Vec<Record>, WalError> {
                    Ok(self.read(next, recovery::REPLAY_READ_ENTRIES))
                };
                let mut memberships = recovery::RecoveredMemberships::default();
                let replayed = recovery::replay_log(
                    "<simulated disk>",
                    MetadataState::new(),
                    commit,
                    1,
                    last,
                    read,
                    &mut memberships,
                );
                let recovered = replayed.map(|(state, appended)| Recovered {
                    meta: Some(self.node_meta(id)),
                    state,
                    appended,
                    epochs: self.epochs(),
                    commit,
                    memberships,
                });
                DiskCompletion::Recovered(Box::new(recovered))
            }
            DiskRequest::PersistMeta(new) => {
                if let Err(e) = self.meta_write() {
                    return DiskCompletion::MetaPersisted(Err(e));
                }
                let merged = merge_meta(Some(&self.node_meta(id)), &new);
                DiskCompletion::MetaPersisted(Ok(merged.map(|m| self.store_node_meta(&m))))
            }
            DiskRequest::PersistVote { epoch, voted_for } => {
                if let Err(e) = self.meta_write() {
                    return DiskCompletion::VotePersisted(Err(e));
                }
                let merged = vote_meta(&self.node_meta(id), epoch, voted_for);
                if let Ok(m) = &merged {
                    self.store_node_meta(m);
                }
                DiskCompletion::VotePersisted(Ok(merged))
            }
            DiskRequest::ReadBack => DiskCompletion::ReadBack {
                epochs: self.epochs(),
                meta: Ok(Some(self.node_meta(id))),
            },
            DiskRequest::TruncateSuffix { to } => {
                self.truncate(to);
                DiskCompletion::Truncated(Ok(self.epochs()))
            }
            DiskRequest::ReplayLog { state } => {
                let last = self.last_offset();
                let read = |next: u64| -> Result<Vec<Record>, WalError> {
                    Ok(self.read(next, recovery::REPLAY_READ_ENTRIES))
                };
                DiskCompletion::LogReplayed(
                    recovery::replay_appended(*state, last, read).map(|(s, l)| (Box::new(s), l)),
                )
            }
            DiskRequest::InstallSnapshot { .. } => {
                DiskCompletion::SnapshotInstalled(Err(ResetError::Storage(NO_SNAPSHOTS.into())))
            }
            DiskRequest::WriteSnapshot { .. } => {
                DiskCompletion::SnapshotWritten(Err(NO_SNAPSHOTS.into()))
            }
        }
    }
}

/// Why the simulated disk refuses the snapshot requests.
const NO_SNAPSHOTS: &str =
    "the simulated disk keeps no snapshots (the simulation does not model log compaction)";

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_record as rec;

    #[test]
    fn crash_keeps_durable_and_cuts_torn_tail() {
        let mut torn_seen = false;
        for seed in 0..64 {
            let mut rng = SimRng::new(seed);
            let mut d = SimDisk::new(1);
            d.append((1..=3).map(rec));
            let (target, g) = d.start_sync().unwrap();
            assert_eq!(target, 3);
            d.append((4..=8).map(rec));
            assert_eq!(d.complete_sync(g), Some(3));
            let loss = d.crash(&mut rng);
            torn_seen |= loss.torn;
            assert!(d.last_offset() >= 3);
            assert_eq!(d.durable(), d.last_offset());
            assert_eq!(loss.kept + loss.lost, 5);
            for (i, r) in d.records().iter().enumerate() {
                assert_eq!(r.offset, i as u64 + 1);
            }
        }
        assert!(torn_seen);
    }

    #[test]
    fn truncate_abandons_sync() {
        let mut d = SimDisk::new(1);
        d.append((1..=4).map(rec));
        let (_, g) = d.start_sync().unwrap();
        d.truncate(2);
        d.append((3..=5).map(rec));
        assert_eq!(d.complete_sync(g), None);
        assert_eq!(d.durable(), 0);
    }
}
