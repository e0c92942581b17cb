//! `MembershipLog`: the membership in force at each offset of one log.
//!
//! Why it exists: a membership entry takes effect when it is appended, so
//! a node's voter set follows its *log*, not its applied state, and must
//! move back when a new leader truncates that log's tail. The log keeps
//! the membership at its base (from the snapshot the log starts at, or
//! the bootstrap) and one `(offset, membership)` per membership entry
//! after it, in offset order — as [`crate::epochs::EpochIndex`] keeps
//! epoch starts.

use crate::membership::Membership;

/// Most membership entries a log keeps past its base before
/// [`MembershipLog::compact`] must fold them in. One change at a time and
/// each committed before the next keeps the live tail at one uncommitted
/// entry; the bound only catches a caller that never compacts.
pub const MAX_PENDING_CHANGES: usize = 1024;

/// An append the log cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipLogError {
    /// The offset is not after the last membership entry (or the base).
    #[error("membership entry at offset {offset} is not after the last one at {last}")]
    NotAfter {
        /// The offset offered.
        offset: u64,
        /// The last membership entry's offset (or the base).
        last: u64,
    },
    /// More than [`MAX_PENDING_CHANGES`] entries past the base.
    #[error("more than {max} membership entries past the log's base: compact it")]
    TooMany {
        /// The limit.
        max: usize,
    },
}

/// The membership in force at each offset of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipLog {
    base_offset: u64,
    base: Membership,
    /// `(offset, membership)` of each membership entry past the base,
    /// offsets strictly increasing.
    changes: Vec<(u64, Membership)>,
}

impl MembershipLog {
    /// A log whose entries up to `base_offset` left `base` in force (the
    /// snapshot it starts from, or the bootstrap membership at 0).
    pub fn new(base_offset: u64, base: Membership) -> MembershipLog {
        MembershipLog {
            base_offset,
            base,
            changes: Vec::new(),
        }
    }

    /// The membership in force now: the last one appended.
    pub fn latest(&self) -> &Membership {
        self.changes.last().map_or(&self.base, |(_, m)| m)
    }

    /// The offset of the entry that put [`Self::latest`] in force (the
    /// base offset if no entry past the base did).
    pub fn latest_offset(&self) -> u64 {
        self.changes.last().map_or(self.base_offset, |(o, _)| *o)
    }

    /// The membership in force at `offset`: the last one appended at or
    /// before it (the base's for offsets at or below the base).
    pub fn at(&self, offset: u64) -> &Membership {
        self.changes
            .iter()
            .rev()
            .find(|(o, _)| *o <= offset)
            .map_or(&self.base, |(_, m)| m)
    }

    /// The membership entry past `commit`, if any: a change appended and not
    /// committed yet (one at most while [`super::admit_change`] admits).
    pub fn uncommitted(&self, commit: u64) -> Option<(u64, &Membership)> {
        self.changes
            .iter()
            .rev()
            .find(|(o, _)| *o > commit)
            .map(|(o, m)| (*o, m))
    }

    /// How many membership entries past `commit` the log holds.
    pub fn uncommitted_count(&self, commit: u64) -> usize {
        self.changes.iter().filter(|(o, _)| *o > commit).count()
    }

    /// A membership entry was appended at `offset`: it is in force from now.
    pub fn append(
        &mut self,
        offset: u64,
        membership: Membership,
    ) -> Result<(), MembershipLogError> {
        let last = self.latest_offset();
        if offset <= last {
            return Err(MembershipLogError::NotAfter { offset, last });
        }
        if self.changes.len() >= MAX_PENDING_CHANGES {
            return Err(MembershipLogError::TooMany {
                max: MAX_PENDING_CHANGES,
            });
        }
        self.changes.push((offset, membership));
        Ok(())
    }

    /// The log lost every entry after `after`: the memberships they put in
    /// force revert. Returns whether the membership in force changed.
    pub fn truncate_suffix(&mut self, after: u64) -> bool {
        let before = self.changes.len();
        self.changes.retain(|(o, _)| *o <= after);
        self.changes.len() != before
    }

    /// Fold the entries up to `upto` into the base (they are committed, or
    /// a snapshot covers them): the log then starts there.
    pub fn compact(&mut self, upto: u64) {
        if upto <= self.base_offset {
            return;
        }
        let keep = self.changes.partition_point(|(o, _)| *o <= upto);
        if let Some((_, m)) = self.changes.drain(..keep).next_back() {
            self.base = m;
        }
        self.base_offset = upto;
    }

    /// The log now starts after a snapshot at `offset` whose membership is
    /// `membership`: everything before is replaced.
    pub fn reset(&mut self, offset: u64, membership: Membership) {
        self.base_offset = offset;
        self.base = membership;
        self.changes.clear();
    }
}
