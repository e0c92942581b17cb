//! The follower's decisions about its own log: what a truncation or a
//! snapshot install from the leader may do to it.
//!
//! raft-rs style `maybe_*` functions over the follower's [`EpochIndex`] and
//! commit point: pure, so the listener actor and the simulation take the
//! same decisions and unit tests pin them down. (The rest of the follower
//! role — fencing, appends, acks — still sits in the listener and session
//! actors on top of [`crate::handshake`] and
//! [`crate::replication::check_append`]; moving it here is issue 7's next
//! step.)

use crate::epochs::EpochIndex;

/// What a follower does with its log when it installs a snapshot taken at
/// `(offset, epoch)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotInstall {
    /// The local log ends at or before the snapshot, or holds the same
    /// entry at the snapshot's offset (same epoch, so by log matching the
    /// same prefix): drop everything up to the snapshot and keep the rest.
    KeepSuffix,
    /// The local entry at the snapshot's offset was written in another
    /// epoch: the suffix diverged from the leader's log. Drop the whole log;
    /// the leader sends everything after the snapshot. (Keeping it would
    /// report a diverged log end after the install, and the leader would
    /// send the snapshot again, forever.)
    ReplaceLog,
}

/// Decide how to install a snapshot at `(offset, epoch)` over `log`.
pub fn plan_snapshot_install(log: &EpochIndex, offset: u64, epoch: u64) -> SnapshotInstall {
    if log.last_offset() <= offset || log.epoch_at(offset) == Some(epoch) {
        SnapshotInstall::KeepSuffix
    } else {
        SnapshotInstall::ReplaceLog
    }
}

/// Why a truncation asked for by the leader is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TruncateRefused {
    /// It would remove entries this node knows are committed.
    #[error("refusing to truncate to {to}: entries up to {floor} are committed here")]
    Committed {
        /// The asked-for last offset to keep.
        to: u64,
        /// Committed (and durable) up to here.
        floor: u64,
    },
}

/// May the follower drop every entry after `to`? Not below what it knows is
/// committed and has on disk (`min(commit, durable)`): a committed entry is
/// in every later leader's log, so a leader asking for that is broken.
pub fn maybe_truncate(to: u64, commit: u64, durable: u64) -> Result<(), TruncateRefused> {
    let floor = commit.min(durable);
    if to < floor {
        return Err(TruncateRefused::Committed { to, floor });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of epoch 1 at 1..=10, epoch 3 at 11..=20.
    fn log() -> EpochIndex {
        let mut e = EpochIndex::new(0, 0);
        for o in 1..=20 {
            e.append(o, if o <= 10 { 1 } else { 3 }).unwrap();
        }
        e
    }

    #[test]
    fn snapshot_past_the_log_end_keeps_nothing_to_keep() {
        assert_eq!(
            plan_snapshot_install(&log(), 25, 4),
            SnapshotInstall::KeepSuffix
        );
        assert_eq!(
            plan_snapshot_install(&log(), 20, 5),
            SnapshotInstall::KeepSuffix,
            "the log ends at the snapshot: nothing after it to keep or drop"
        );
    }

    #[test]
    fn matching_entry_at_the_snapshot_keeps_the_suffix() {
        assert_eq!(
            plan_snapshot_install(&log(), 15, 3),
            SnapshotInstall::KeepSuffix
        );
        assert_eq!(
            plan_snapshot_install(&log(), 5, 1),
            SnapshotInstall::KeepSuffix
        );
    }

    #[test]
    fn diverged_entry_at_the_snapshot_replaces_the_log() {
        // The leader's snapshot at 15 was taken in epoch 2: our 11..=20 of
        // epoch 3 is not the leader's log there.
        assert_eq!(
            plan_snapshot_install(&log(), 15, 2),
            SnapshotInstall::ReplaceLog
        );
        assert_eq!(
            plan_snapshot_install(&log(), 5, 2),
            SnapshotInstall::ReplaceLog
        );
    }

    #[test]
    fn truncation_stops_at_the_durable_commit() {
        assert_eq!(maybe_truncate(10, 10, 20), Ok(()));
        assert_eq!(maybe_truncate(12, 10, 20), Ok(()));
        assert_eq!(
            maybe_truncate(9, 10, 20),
            Err(TruncateRefused::Committed { to: 9, floor: 10 })
        );
        assert_eq!(
            maybe_truncate(9, 30, 9),
            Ok(()),
            "commit known beyond the disk: only what is on disk is protected"
        );
    }
}
