//! A simulated disk: a node's log of records, of which a prefix is durable,
//! and its meta `(epoch, leader, voted_for)`, written durably at once (tmp + fsync +
//! rename in the real storage).
//!
//! Appends land in an unsynced tail; an fsync makes everything appended
//! before it durable after some latency (group commit). A crash keeps the
//! durable prefix, a random part of the unsynced tail (the OS may have
//! written some of it), and possibly a torn piece of the next record — which
//! the real record decoder cuts on restart, as the WAL does.

use crate::command::NodeId;
use crate::record::{decode_record, Record};

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
    records: Vec<Record>,
    durable: u64,
    meta: Meta,
    /// The commit hint kept in meta (written with it, durably).
    commit_hint: u64,
    sync: Option<(u64, u64)>,
    generation: u64,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
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

    /// Persist `meta` durably (atomic replace).
    pub fn persist_meta(&mut self, meta: Meta) {
        self.meta = meta;
    }

    /// Record a commit hint in meta (merged as the real `meta` merge does:
    /// never lowered).
    pub fn record_commit_hint(&mut self, commit: u64) {
        self.commit_hint = self.commit_hint.max(commit);
    }

    /// The commit hint in meta.
    pub fn commit_hint(&self) -> u64 {
        self.commit_hint
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::test_record as rec;

    #[test]
    fn crash_keeps_durable_and_cuts_torn_tail() {
        let mut torn_seen = false;
        for seed in 0..64 {
            let mut rng = SimRng::new(seed);
            let mut d = SimDisk::new();
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
        let mut d = SimDisk::new();
        d.append((1..=4).map(rec));
        let (_, g) = d.start_sync().unwrap();
        d.truncate(2);
        d.append((3..=5).map(rec));
        assert_eq!(d.complete_sync(g), None);
        assert_eq!(d.durable(), 0);
    }
}
