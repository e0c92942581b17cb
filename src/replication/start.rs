//! Where replication to a follower starts, and the follower's check of each
//! batch it receives.
//!
//! After the handshake the follower reports the end of its log
//! `(last_offset, last_epoch)`. The leader compares that with its own
//! [`EpochIndex`]:
//!
//! - the leader has the same epoch at that offset → the logs match there:
//!   send from `last_offset + 1`;
//! - the follower is behind the leader's log start → snapshot first;
//! - otherwise the follower's tail diverged → `Truncate { to }` at the end of
//!   the follower's last epoch in the leader's log; the follower reports its
//!   new end and the leader decides again.

use crate::epochs::EpochIndex;
use crate::record::Record;

/// The leader's decision after a follower reported the end of its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPoint {
    /// Logs match up to `matched`: send from `matched + 1`.
    Matched {
        /// Last offset both logs hold identically.
        matched: u64,
    },
    /// The follower must drop everything after `to`, then report again.
    Truncate {
        /// Last offset to keep.
        to: u64,
    },
    /// The follower is behind the leader's log start: send a snapshot.
    Snapshot,
}

/// Decide where to start for a follower whose log ends at
/// `(follower_last_offset, follower_last_epoch)`.
pub fn decide_start(
    leader: &EpochIndex,
    follower_last_offset: u64,
    follower_last_epoch: u64,
) -> StartPoint {
    if leader.epoch_at(follower_last_offset) == Some(follower_last_epoch) {
        return StartPoint::Matched {
            matched: follower_last_offset,
        };
    }
    if follower_last_offset < leader.base_offset() {
        return StartPoint::Snapshot;
    }
    let to = match leader.end_offset_for_epoch(follower_last_epoch) {
        Some(end) => end.min(follower_last_offset),
        None => return StartPoint::Snapshot,
    };
    // The follower's entry at `to` has an epoch the leader does not have at
    // that offset: step back one entry (rare; converges).
    let to = if to >= follower_last_offset {
        follower_last_offset.saturating_sub(1)
    } else {
        to
    };
    if to < leader.base_offset() {
        return StartPoint::Snapshot;
    }
    StartPoint::Truncate { to }
}

/// Why a follower refuses a batch.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AppendError {
    /// The batch does not start right after the follower's log end.
    #[error("batch starts at offset {got}, expected {expected}")]
    Gap {
        /// The follower's next offset.
        expected: u64,
        /// The batch's first offset.
        got: u64,
    },
    /// A record's offset or epoch breaks the order of the log.
    #[error("record at offset {offset} out of order: {reason}")]
    Order {
        /// The record's offset.
        offset: u64,
        /// The order problem.
        reason: String,
    },
    /// A record carries an epoch newer than the leader that sent it.
    #[error(
        "record at offset {offset} has epoch {epoch}, above the leader's epoch {leader_epoch}"
    )]
    FutureEpoch {
        /// The record's offset.
        offset: u64,
        /// Its epoch.
        epoch: u64,
        /// The sending leader's epoch.
        leader_epoch: u64,
    },
}

/// Check that `records` (already CRC-checked and decoded) continue the
/// follower's log `index` and were written in epochs not above the leader's
/// `leader_epoch`. Nothing is changed.
pub fn check_append(
    index: &EpochIndex,
    leader_epoch: u64,
    records: &[Record],
) -> Result<(), AppendError> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    if first.offset != index.last_offset() + 1 {
        return Err(AppendError::Gap {
            expected: index.last_offset() + 1,
            got: first.offset,
        });
    }
    let mut prev = (index.last_offset(), index.last_epoch());
    for r in records {
        if r.epoch > leader_epoch {
            return Err(AppendError::FutureEpoch {
                offset: r.offset,
                epoch: r.epoch,
                leader_epoch,
            });
        }
        if r.offset != prev.0 + 1 {
            return Err(AppendError::Order {
                offset: r.offset,
                reason: format!("follows offset {}", prev.0),
            });
        }
        if r.epoch < prev.1 {
            return Err(AppendError::Order {
                offset: r.offset,
                reason: format!("epoch {} after epoch {}", r.epoch, prev.1),
            });
        }
        prev = (r.offset, r.epoch);
    }
    Ok(())
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
    fn matching_logs() {
        let l = log(&[1, 1, 2, 2]);
        assert_eq!(decide_start(&l, 0, 0), StartPoint::Matched { matched: 0 });
        assert_eq!(decide_start(&l, 2, 1), StartPoint::Matched { matched: 2 });
        assert_eq!(decide_start(&l, 4, 2), StartPoint::Matched { matched: 4 });
    }

    #[test]
    fn diverged_tail_truncates_to_end_of_epoch() {
        // Leader: 1 1 1 3 3; follower wrote 4,5 in epoch 2 under an old leader.
        let l = log(&[1, 1, 1, 3, 3]);
        assert_eq!(decide_start(&l, 5, 2), StartPoint::Truncate { to: 3 });
        assert_eq!(decide_start(&l, 3, 1), StartPoint::Matched { matched: 3 });
        // Follower is longer than the leader in the leader's own epoch.
        assert_eq!(decide_start(&l, 9, 3), StartPoint::Truncate { to: 5 });
        // Follower longer, older epoch.
        assert_eq!(decide_start(&l, 9, 1), StartPoint::Truncate { to: 3 });
    }

    #[test]
    fn unknown_epoch_at_offset_steps_back() {
        // Leader 1 1 1 (no later epoch); follower's offset 3 is in epoch 2.
        let l = log(&[1, 1, 1]);
        assert_eq!(decide_start(&l, 3, 2), StartPoint::Truncate { to: 2 });
    }

    #[test]
    fn behind_log_start_needs_snapshot() {
        let mut l = log(&[1, 1, 1, 1, 2, 2]);
        l.truncate_prefix(4, 1);
        assert_eq!(decide_start(&l, 2, 1), StartPoint::Snapshot);
        assert_eq!(decide_start(&l, 4, 1), StartPoint::Matched { matched: 4 });
        assert_eq!(decide_start(&l, 0, 0), StartPoint::Snapshot);
    }

    #[test]
    fn append_checks() {
        use crate::command::{Command, Entry};
        let rec = |offset, epoch| {
            Record::encode(&Entry {
                offset,
                epoch,
                command: Command::DeleteTopic { name: "t".into() },
            })
            .unwrap()
        };
        let l = log(&[1, 1]);
        assert_eq!(check_append(&l, 2, &[rec(3, 1), rec(4, 2)]), Ok(()));
        assert_eq!(
            check_append(&l, 2, &[rec(4, 1)]),
            Err(AppendError::Gap {
                expected: 3,
                got: 4
            })
        );
        assert!(matches!(
            check_append(&l, 2, &[rec(3, 2), rec(5, 2)]),
            Err(AppendError::Order { offset: 5, .. })
        ));
        assert!(matches!(
            check_append(&l, 2, &[rec(3, 2), rec(4, 1)]),
            Err(AppendError::Order { offset: 4, .. })
        ));
        assert_eq!(
            check_append(&l, 2, &[rec(3, 3)]),
            Err(AppendError::FutureEpoch {
                offset: 3,
                epoch: 3,
                leader_epoch: 2
            })
        );
    }
}
