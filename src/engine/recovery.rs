//! Recovery after a restart: which part of the log a node may apply before
//! it hears from a leader, and what replaying it means.
//!
//! A restarted node knows three things: the commit hint in its `meta` (the
//! commit point it last recorded: at start, when it took a leadership, when
//! it shut down cleanly), the offset of its newest snapshot (applied, so
//! committed), and its WAL. Everything up to the larger of the first two —
//! but never past the log end — was committed and is applied again now;
//! the rest of the log is only *appended*: it may be a diverged tail an old
//! leader never committed, so it waits for a leader to commit (or truncate)
//! it. Applying one entry past the hint could apply an entry that is later
//! truncated: the node's state would then hold a write the cluster never
//! made. (The simulation plants exactly that and catches it.)
//!
//! Every entry in the log was validated by its leader against the state of
//! the log before it, so it applies; one that does not is a bug or a
//! corruption the record checksums did not catch, and the node fail-stops
//! with the offset and the reason ([`ReplayError`]) instead of starting
//! with a state no other node has. A committed entry that does not apply
//! while the node runs is the same fail-stop (`engine::store`).

use crate::command::{Command, Entry};
use crate::epochs::EpochIndex;
use crate::membership::{Membership, MembershipLog, MembershipLogError};
use crate::record::{decode_record, Record};
use crate::state::MetadataState;
use crate::storage::{NodeMeta, StorageError};
use crate::wal::WalError;

/// Most records one read of a replay asks the log for.
pub const REPLAY_READ_ENTRIES: usize = 4096;

/// Most bytes one read of a replay asks the log for.
pub const REPLAY_READ_BYTES: usize = 8 * 1024 * 1024;

/// The commit point a restarted node recovers: its `meta`'s commit hint or
/// its newest snapshot's offset, whichever is higher, never past its log's
/// last offset.
pub fn commit_point(commit_hint: u64, snapshot_offset: u64, last_offset: u64) -> u64 {
    commit_hint.max(snapshot_offset).min(last_offset)
}

/// The planted bug of the simulation: one past the hint.
#[cfg(feature = "sim")]
pub fn commit_point_past_hint(commit_hint: u64, snapshot_offset: u64, last_offset: u64) -> u64 {
    (commit_hint + 1).max(snapshot_offset).min(last_offset)
}

/// An entry of the log did not apply on replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {offset} of the log does not apply to the state before it ({reason}): the log or a snapshot is corrupt, or a bug let an invalid entry in; the node does not start with a state no other node has. Move this data dir aside to resync it from the leader")]
pub struct ReplayError {
    /// The entry's offset.
    pub offset: u64,
    /// Why it did not apply.
    pub reason: String,
}

/// Replays a log from a snapshot's state: entries up to the commit point
/// are applied to the state; the rest to a copy, the *appended* state a
/// leader validates new proposals against.
#[derive(Debug)]
pub struct Replay {
    state: MetadataState,
    appended: Option<MetadataState>,
    commit: u64,
}

impl Replay {
    /// Start from `state` (the snapshot's, or empty) with the recovered
    /// `commit` point.
    pub fn new(state: MetadataState, commit: u64) -> Replay {
        Replay {
            state,
            appended: None,
            commit,
        }
    }

    /// The next entry of the log, in order.
    pub fn entry(&mut self, entry: &Entry) -> Result<(), ReplayError> {
        let target = if entry.offset <= self.commit {
            &mut self.state
        } else {
            self.appended.get_or_insert_with(|| self.state.clone())
        };
        target.apply(entry).map_err(|e| ReplayError {
            offset: entry.offset,
            reason: e.to_string(),
        })
    }

    /// The applied state (up to the commit point) and the appended state
    /// (the whole log).
    pub fn finish(self) -> (MetadataState, MetadataState) {
        let appended = self.appended.unwrap_or_else(|| self.state.clone());
        (self.state, appended)
    }
}

/// What recovery found in a data directory (the disk's answer to
/// [`DiskRequest::Recover`](crate::engine::disk_io::DiskRequest::Recover)).
#[derive(Debug)]
pub struct Recovered {
    /// The persisted meta, if the node has run here before.
    pub meta: Option<NodeMeta>,
    /// State up to the recovered commit point.
    pub state: MetadataState,
    /// State with every entry of the log.
    pub appended: MetadataState,
    /// The log's epochs.
    pub epochs: EpochIndex,
    /// The recovered commit point ([`commit_point`]).
    pub commit: u64,
    /// The memberships the snapshot and the log hold.
    pub memberships: RecoveredMemberships,
}

/// The memberships a data directory holds: the snapshot's, and the log's
/// membership entries after it (the last committed one, and each one past
/// the commit point: bounded by the log's uncommitted entries, not by its
/// length).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveredMemberships {
    /// The snapshot's offset and its membership (if it has one: a
    /// snapshot taken before any membership was logged has none).
    pub snapshot: Option<(u64, Membership)>,
    /// The last membership entry at or before the commit point.
    pub committed: Option<(u64, Membership)>,
    /// Each membership entry past the commit point, in log order.
    pub uncommitted: Vec<(u64, Membership)>,
}

impl RecoveredMemberships {
    /// One more membership entry of the log, at `offset`.
    pub fn entry(&mut self, offset: u64, membership: &Membership, commit: u64) {
        if offset <= commit {
            self.committed = Some((offset, membership.clone()));
        } else {
            self.uncommitted.push((offset, membership.clone()));
        }
    }

    /// Whether the snapshot or the log holds any membership: if not, the
    /// cluster's voter set is still the one of its bootstrap flags, never
    /// logged.
    pub fn logged(&self) -> bool {
        self.snapshot.is_some() || self.committed.is_some() || !self.uncommitted.is_empty()
    }

    /// The membership log the node starts with: the last committed
    /// membership (the log's, else the snapshot's, else `bootstrap` at 0)
    /// as the base, and every uncommitted entry after it.
    pub fn into_log(self, bootstrap: Membership) -> Result<MembershipLog, MembershipLogError> {
        let (offset, base) = self.committed.or(self.snapshot).unwrap_or((0, bootstrap));
        let mut log = MembershipLog::new(offset, base);
        for (o, m) in self.uncommitted {
            log.append(o, m)?;
        }
        Ok(log)
    }
}

/// Why a data directory could not be recovered: the node does not start.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The log could not be read.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// Snapshot or meta storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The data directory is inconsistent.
    #[error("data directory {dir} is inconsistent: {reason}")]
    Inconsistent {
        /// The data directory.
        dir: String,
        /// What does not fit.
        reason: String,
    },
}

/// Replay the log records `from..=last` — fetched in chunks by `read(next)`
/// — over `state` (the snapshot's, or empty) with the recovered `commit`
/// point ([`Replay`]): the applied and the appended state. A record that
/// does not decode or an entry that does not apply is a fail-stop
/// ([`RecoverError::Inconsistent`] naming `dir`). The one replay both the
/// disk threads and the simulation's disk run.
pub fn replay_log(
    dir: &str,
    state: MetadataState,
    commit: u64,
    from: u64,
    last: u64,
    mut read: impl FnMut(u64) -> Result<Vec<Record>, WalError>,
    memberships: &mut RecoveredMemberships,
) -> Result<(MetadataState, MetadataState), RecoverError> {
    let inconsistent = |reason: String| RecoverError::Inconsistent {
        dir: dir.to_string(),
        reason,
    };
    let mut replay = Replay::new(state, commit);
    let mut next = from;
    while next <= last {
        let records = read(next)?;
        if records.is_empty() {
            break;
        }
        for r in records {
            let (entry, _) = decode_record(&r.bytes)
                .map_err(|e| inconsistent(format!("record {} does not decode: {e}", r.offset)))?;
            // Fail-stop: the node does not start with a state no other
            // node has.
            replay
                .entry(&entry)
                .map_err(|e| inconsistent(e.to_string()))?;
            if let Command::Membership(m) = &entry.command {
                memberships.entry(entry.offset, m, commit);
            }
            next = entry.offset + 1;
        }
    }
    Ok(replay.finish())
}

/// The appended state a step-up leads with: `appended` (the applied
/// state) with every record after it up to `last` applied, fetched by
/// `read(next)`. An entry that does not apply was validated by its leader
/// against the state before it: a bug or a corruption, and this node does
/// not lead with it (the step fails; the store fail-stops when it reaches
/// it as committed).
pub fn replay_appended(
    mut appended: MetadataState,
    last: u64,
    mut read: impl FnMut(u64) -> Result<Vec<Record>, WalError>,
) -> Result<(MetadataState, u64), String> {
    let mut next = appended.applied_offset() + 1;
    while next <= last {
        let records = read(next).map_err(|e| e.to_string())?;
        if records.is_empty() {
            break;
        }
        for r in records {
            let (entry, _) = decode_record(&r.bytes).map_err(|e| e.to_string())?;
            appended
                .apply(&entry)
                .map_err(|e| format!("entry {} of the log does not apply: {e}", entry.offset))?;
            next = entry.offset + 1;
        }
    }
    Ok((appended, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn create(offset: u64, name: &str) -> Entry {
        Entry {
            offset,
            epoch: 1,
            command: Command::CreateTopic {
                name: name.into(),
                partition_count: 1,
                replication_factor: 1,
            },
        }
    }

    fn voters(ids: &[u64]) -> Membership {
        Membership::new(
            ids.iter().map(|&id| crate::membership::Member {
                node_id: id,
                directory_id: crate::membership::DirectoryId([id as u8; 16]),
                replication_addr: format!("127.0.0.1:{}", 7000 + id),
                http_addr: String::new(),
                kafka_addr: String::new(),
            }),
            [],
        )
        .unwrap()
    }

    #[test]
    fn the_membership_log_starts_from_the_last_committed_membership() {
        let boot = voters(&[1, 2, 3]);
        // Nothing logged: the bootstrap, at 0.
        let none = RecoveredMemberships::default();
        assert!(!none.logged());
        let log = none.into_log(boot.clone()).unwrap();
        assert_eq!((log.latest_offset(), log.latest()), (0, &boot));
        // A snapshot's membership, then entries: the last at or before the
        // commit point is the base, the ones past it stay one by one.
        let mut r = RecoveredMemberships {
            snapshot: Some((10, voters(&[1, 2]))),
            ..Default::default()
        };
        r.entry(12, &voters(&[1, 2, 3]), 20);
        r.entry(15, &voters(&[1, 2, 3, 4]), 20);
        r.entry(25, &voters(&[2, 3, 4]), 20);
        assert!(r.logged());
        let log = r.into_log(boot.clone()).unwrap();
        assert_eq!(log.at(16), &voters(&[1, 2, 3, 4]));
        assert_eq!(log.latest(), &voters(&[2, 3, 4]));
        assert_eq!(log.uncommitted(20).map(|(o, _)| o), Some(25));
        // Only a snapshot: its membership at its offset.
        let snap = RecoveredMemberships {
            snapshot: Some((10, voters(&[1, 2]))),
            ..Default::default()
        };
        let log = snap.into_log(boot).unwrap();
        assert_eq!((log.latest_offset(), log.latest()), (10, &voters(&[1, 2])));
    }

    #[test]
    fn the_commit_point_is_the_hint_or_the_snapshot_never_past_the_log() {
        assert_eq!(commit_point(5, 0, 9), 5);
        assert_eq!(commit_point(5, 7, 9), 7);
        assert_eq!(commit_point(12, 7, 9), 9);
        assert_eq!(commit_point(0, 0, 0), 0);
    }

    #[test]
    fn entries_past_the_commit_point_are_only_appended() {
        let mut r = Replay::new(MetadataState::new(), 1);
        r.entry(&create(1, "a")).expect("applies");
        r.entry(&create(2, "b")).expect("applies");
        let (state, appended) = r.finish();
        assert_eq!(state.applied_offset(), 1);
        assert_eq!(appended.applied_offset(), 2);
        assert!(state.topic("b").is_none());
        assert!(appended.topic("b").is_some());
    }

    #[test]
    fn an_entry_that_does_not_apply_stops_the_replay_with_its_offset() {
        let mut r = Replay::new(MetadataState::new(), 2);
        r.entry(&create(1, "a")).expect("applies");
        let err = r.entry(&create(2, "a")).expect_err("a exists");
        assert_eq!(err.offset, 2);
        assert!(err.to_string().contains("entry 2"), "{err}");
    }
}
