//! Linearizable reads on the leader (Raft's *read index*): when may a
//! leader answer a read from its applied state and be sure no newer leader
//! has committed anything it does not have?
//!
//! Why it is its own engine: a leader cut off by a partition keeps its
//! state until check-quorum removes it (up to one election timeout); a
//! read served from it in that time can miss writes a new leader already
//! acknowledged. The rule here closes that window:
//!
//! 1. The leader must have applied an entry of its own epoch (its
//!    `LeaderChange`): before that its commit point can lag what earlier
//!    leaders committed.
//! 2. At `started` it records its commit point, the *read index*.
//! 3. It waits until a majority of voters (itself included) were heard
//!    from *in its epoch* after `started`. Any newer leader needs votes
//!    from a majority, and a voter that voted in a higher epoch never
//!    answers the old leader again; the two majorities share a voter, so no
//!    newer leader existed at `started`, and the read index covers every
//!    write acknowledged before the read began.
//! 4. It answers once it has applied the read index.
//!
//! The engine decides; the caller (the node) gathers the inputs.

/// Where a read-index check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadIndexState {
    /// Not yet: wait for more acknowledgements or applies.
    Waiting,
    /// Safe to answer from a state that has applied at least this offset.
    Ready(u64),
    /// Leadership of the epoch was lost (or never held): answer elsewhere.
    Lost,
}

/// One linearizable read on the leader of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadIndex<T> {
    epoch: u64,
    started: T,
    read_index: u64,
    voters: usize,
}

/// What the leader knows when the read is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderView {
    /// Whether this node still leads.
    pub leading: bool,
    /// Its current epoch.
    pub epoch: u64,
    /// Offset of the last entry its state applied.
    pub applied_offset: u64,
    /// Epoch of that entry.
    pub applied_epoch: u64,
}

impl<T: Copy + PartialOrd> ReadIndex<T> {
    /// Start a read at `now`, on a leader whose commit point is `commit`.
    /// `None` if the leader has not applied an entry of its own epoch yet
    /// (try again shortly) or does not lead.
    pub fn maybe_start(
        now: T,
        view: LeaderView,
        commit: u64,
        voters: usize,
    ) -> Option<ReadIndex<T>> {
        if !view.leading || view.applied_epoch != view.epoch {
            return None;
        }
        Some(ReadIndex {
            epoch: view.epoch,
            started: now,
            read_index: commit.max(view.applied_offset),
            voters,
        })
    }

    /// The commit point recorded at the start.
    pub fn read_index(&self) -> u64 {
        self.read_index
    }

    /// Check the read against the leader now: `heard` are the times each
    /// follower was last heard from in this epoch.
    pub fn check(&self, view: LeaderView, heard: impl IntoIterator<Item = T>) -> ReadIndexState {
        if !view.leading || view.epoch != self.epoch {
            return ReadIndexState::Lost;
        }
        let majority = self.voters / 2 + 1;
        let fresh = 1 + heard.into_iter().filter(|t| *t > self.started).count();
        if fresh >= majority && view.applied_offset >= self.read_index {
            ReadIndexState::Ready(self.read_index)
        } else {
            ReadIndexState::Waiting
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading(epoch: u64, applied_offset: u64, applied_epoch: u64) -> LeaderView {
        LeaderView {
            leading: true,
            epoch,
            applied_offset,
            applied_epoch,
        }
    }

    #[test]
    fn a_read_waits_for_the_leaders_own_entry_to_apply() {
        assert_eq!(
            ReadIndex::maybe_start(10u64, leading(3, 40, 2), 41, 3),
            None
        );
        let r = ReadIndex::maybe_start(10u64, leading(3, 42, 3), 41, 3).unwrap();
        assert_eq!(r.read_index(), 42);
        let not_leading = LeaderView {
            leading: false,
            ..leading(3, 42, 3)
        };
        assert_eq!(ReadIndex::maybe_start(10u64, not_leading, 41, 3), None);
    }

    #[test]
    fn a_read_is_ready_only_after_a_majority_is_heard_after_its_start() {
        let r = ReadIndex::maybe_start(10u64, leading(3, 42, 3), 45, 5).unwrap();
        // Heard at or before the start: those prove nothing about now.
        assert_eq!(
            r.check(leading(3, 45, 3), [10, 9, 11, 3]),
            ReadIndexState::Waiting
        );
        // Two followers after the start + the leader = 3 of 5.
        assert_eq!(
            r.check(leading(3, 45, 3), [12, 9, 11, 3]),
            ReadIndexState::Ready(45)
        );
        // A quorum, but the read index is not applied yet.
        assert_eq!(
            r.check(leading(3, 44, 3), [12, 13, 11, 14]),
            ReadIndexState::Waiting
        );
    }

    #[test]
    fn a_lost_or_changed_epoch_ends_the_read() {
        let r = ReadIndex::maybe_start(10u64, leading(3, 42, 3), 42, 3).unwrap();
        let gone = LeaderView {
            leading: false,
            ..leading(3, 42, 3)
        };
        assert_eq!(r.check(gone, [20, 20]), ReadIndexState::Lost);
        assert_eq!(r.check(leading(4, 50, 4), [20, 20]), ReadIndexState::Lost);
    }

    #[test]
    fn a_single_voter_reads_at_once() {
        let r = ReadIndex::maybe_start(10u64, leading(1, 7, 1), 7, 1).unwrap();
        assert_eq!(
            r.check(leading(1, 7, 1), std::iter::empty()),
            ReadIndexState::Ready(7)
        );
    }
}
