//! Which epoch wrote which offsets: the leader-epoch index of a log.
//!
//! A log is a run of epochs, each starting at some offset. The index keeps one
//! `(epoch, first offset)` pair per epoch plus the point just before the log's
//! first entry (the snapshot it starts from, or `(0, 0)`). The WAL maintains it
//! on open, append and truncation; the leader uses it to find where a
//! follower's log diverges (see [`crate::replication::decide_start`]).

/// The epoch boundaries of a log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EpochIndex {
    /// `(epoch, first offset)` of each epoch present, both strictly increasing.
    starts: Vec<(u64, u64)>,
    /// Offset just before the first entry (a snapshot's offset, or 0).
    base_offset: u64,
    /// Epoch of the entry at `base_offset` (0 for an empty history).
    base_epoch: u64,
    /// Last offset in the log (`base_offset` when the log is empty).
    last_offset: u64,
}

/// An append that would break the index's order.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EpochError {
    /// The offset is not the next one.
    #[error("offset {got} is not the next offset {expected}")]
    NotContiguous {
        /// The next offset the log expects.
        expected: u64,
        /// The offset offered.
        got: u64,
    },
    /// The epoch goes backwards.
    #[error("epoch {got} at offset {offset} is lower than the log's last epoch {last}")]
    EpochRegressed {
        /// The offset offered.
        offset: u64,
        /// Its epoch.
        got: u64,
        /// The log's last epoch.
        last: u64,
    },
}

impl EpochIndex {
    /// An empty log that follows the entry `base_offset` written in `base_epoch`
    /// (use `(0, 0)` for a log that starts at offset 1).
    pub fn new(base_offset: u64, base_epoch: u64) -> EpochIndex {
        EpochIndex {
            starts: Vec::new(),
            base_offset,
            base_epoch,
            last_offset: base_offset,
        }
    }

    /// Offset before the first entry.
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// Epoch of the entry at [`Self::base_offset`].
    pub fn base_epoch(&self) -> u64 {
        self.base_epoch
    }

    /// First offset held in the log (`last_offset + 1` when empty).
    pub fn first_offset(&self) -> u64 {
        self.base_offset + 1
    }

    /// Last offset in the log, or the base offset when it is empty.
    pub fn last_offset(&self) -> u64 {
        self.last_offset
    }

    /// Epoch of the last entry (the base epoch when empty).
    pub fn last_epoch(&self) -> u64 {
        self.starts.last().map_or(self.base_epoch, |&(e, _)| e)
    }

    /// Check that `(offset, epoch)` may be appended, without appending it.
    pub fn check_append(&self, offset: u64, epoch: u64) -> Result<(), EpochError> {
        if offset != self.last_offset + 1 {
            return Err(EpochError::NotContiguous {
                expected: self.last_offset + 1,
                got: offset,
            });
        }
        let last = self.last_epoch();
        if epoch < last {
            return Err(EpochError::EpochRegressed {
                offset,
                got: epoch,
                last,
            });
        }
        Ok(())
    }

    /// Record that `offset` was appended in `epoch`.
    pub fn append(&mut self, offset: u64, epoch: u64) -> Result<(), EpochError> {
        self.check_append(offset, epoch)?;
        if self.starts.last().map(|&(e, _)| e) != Some(epoch) {
            self.starts.push((epoch, offset));
        }
        self.last_offset = offset;
        Ok(())
    }

    /// Epoch of the entry at `offset`, if the log knows it: offsets from the
    /// base offset (epoch of the snapshot point; 0 for offset 0) to the last offset.
    pub fn epoch_at(&self, offset: u64) -> Option<u64> {
        if offset < self.base_offset || offset > self.last_offset {
            return None;
        }
        if offset == self.base_offset {
            return Some(self.base_epoch);
        }
        // Last start at or before `offset`.
        let idx = self.starts.partition_point(|&(_, start)| start <= offset);
        idx.checked_sub(1).map(|i| self.starts[i].0)
    }

    /// The last offset whose epoch is at most `epoch` (where a follower whose
    /// log ends in `epoch` must truncate to). `None` when the log holds no such
    /// offset at or after its base (the follower needs a snapshot).
    pub fn end_offset_for_epoch(&self, epoch: u64) -> Option<u64> {
        // First epoch start greater than `epoch`.
        let idx = self.starts.partition_point(|&(e, _)| e <= epoch);
        match self.starts.get(idx) {
            None => Some(self.last_offset),
            Some(&(_, start)) => {
                let end = start - 1;
                if end < self.base_offset || (end == self.base_offset && self.base_epoch > epoch) {
                    None
                } else {
                    Some(end)
                }
            }
        }
    }

    /// Forget every entry after `after` (keep `..=after`).
    pub fn truncate_suffix(&mut self, after: u64) {
        if after >= self.last_offset {
            return;
        }
        let after = after.max(self.base_offset);
        self.starts.retain(|&(_, start)| start <= after);
        self.last_offset = after;
    }

    /// Forget every entry up to `new_base`, which had epoch `new_base_epoch`.
    /// When `new_base` is beyond the last offset the log becomes empty and
    /// continues after `new_base`.
    pub fn truncate_prefix(&mut self, new_base: u64, new_base_epoch: u64) {
        if new_base <= self.base_offset {
            return;
        }
        if new_base >= self.last_offset {
            *self = EpochIndex::new(new_base, new_base_epoch);
            return;
        }
        let keep_from = self.starts.partition_point(|&(_, start)| start <= new_base);
        // The epoch covering new_base + 1 starts at new_base + 1 now.
        let mut starts = Vec::with_capacity(self.starts.len() - keep_from + 1);
        let covering = keep_from.checked_sub(1).map(|i| self.starts[i].0);
        if let Some(e) = covering {
            let next_start = self.starts.get(keep_from).map(|&(_, s)| s);
            if next_start != Some(new_base + 1) {
                starts.push((e, new_base + 1));
            }
        }
        starts.extend_from_slice(&self.starts[keep_from..]);
        self.starts = starts;
        self.base_offset = new_base;
        self.base_epoch = new_base_epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(epochs: &[u64]) -> EpochIndex {
        let mut idx = EpochIndex::new(0, 0);
        for (i, &e) in epochs.iter().enumerate() {
            idx.append(i as u64 + 1, e).unwrap();
        }
        idx
    }

    #[test]
    fn epoch_at_and_end_offsets() {
        let idx = log(&[1, 1, 1, 3, 3, 5]);
        assert_eq!(idx.epoch_at(0), Some(0));
        assert_eq!(idx.epoch_at(3), Some(1));
        assert_eq!(idx.epoch_at(4), Some(3));
        assert_eq!(idx.epoch_at(6), Some(5));
        assert_eq!(idx.epoch_at(7), None);
        assert_eq!(idx.end_offset_for_epoch(1), Some(3));
        assert_eq!(idx.end_offset_for_epoch(2), Some(3));
        assert_eq!(idx.end_offset_for_epoch(4), Some(5));
        assert_eq!(idx.end_offset_for_epoch(9), Some(6));
        assert_eq!(idx.end_offset_for_epoch(0), Some(0));
        assert_eq!(idx.last_epoch(), 5);
    }

    #[test]
    fn append_refuses_gaps_and_regressions() {
        let mut idx = log(&[2, 2]);
        assert_eq!(
            idx.append(4, 2),
            Err(EpochError::NotContiguous {
                expected: 3,
                got: 4
            })
        );
        assert_eq!(
            idx.append(3, 1),
            Err(EpochError::EpochRegressed {
                offset: 3,
                got: 1,
                last: 2
            })
        );
        assert_eq!(idx.last_offset(), 2);
    }

    #[test]
    fn truncations() {
        let mut idx = log(&[1, 1, 2, 2, 3]);
        idx.truncate_suffix(3);
        assert_eq!(idx.last_offset(), 3);
        assert_eq!(idx.last_epoch(), 2);
        idx.append(4, 4).unwrap();
        idx.truncate_prefix(3, 2);
        assert_eq!(idx.first_offset(), 4);
        assert_eq!(idx.epoch_at(3), Some(2));
        assert_eq!(idx.epoch_at(2), None);
        assert_eq!(idx.end_offset_for_epoch(1), None);
        assert_eq!(idx.end_offset_for_epoch(2), Some(3));
        idx.truncate_prefix(10, 7);
        assert_eq!(idx.first_offset(), 11);
        assert_eq!(idx.last_offset(), 10);
        assert_eq!(idx.last_epoch(), 7);
    }
}
