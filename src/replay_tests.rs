//! Property tests across modules: a state rebuilt from the WAL (and from a
//! snapshot plus the WAL after it) after reopening equals the live state.

use proptest::prelude::*;

use crate::command::Entry;
use crate::record::Record;
use crate::state::MetadataState;
use crate::storage::Snapshot;
use crate::wal::{Wal, WalOptions};

/// Keep only entries a leader would have appended (valid at their point),
/// renumbered densely from 1.
fn leader_log(entries: Vec<Entry>) -> Vec<Entry> {
    let mut live = MetadataState::new();
    let mut out: Vec<Entry> = Vec::new();
    for e in entries {
        if live.validate(&e.command).is_err() {
            continue;
        }
        let entry = Entry {
            offset: out.len() as u64 + 1,
            epoch: e.epoch,
            command: e.command,
        };
        live.apply(&entry).expect("validated entry applies");
        out.push(entry);
    }
    out
}

fn replay(wal: &Wal, mut state: MetadataState) -> MetadataState {
    let mut next = state.applied_offset() + 1;
    while next <= wal.last_offset() {
        let records = wal.read(next, 7, 1024).expect("read");
        for r in records {
            let entry = r.entry().expect("decodes");
            state.apply(&entry).expect("replayed entry applies");
            next = entry.offset + 1;
        }
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn state_rebuilt_from_wal_equals_live(
        entries in crate::state::tests::arb_entries(),
        batch in 1usize..20,
        cut in any::<prop::sample::Index>(),
    ) {
        let entries = leader_log(entries);
        let dir = tempfile::tempdir().expect("temp dir");
        let options = WalOptions { segment_bytes: 4096, preallocate: true };
        let mut live = MetadataState::new();
        let mut snapshot = None;
        let cut_at = if entries.is_empty() { 0 } else { cut.index(entries.len()) as u64 + 1 };
        {
            let (mut wal, _) = Wal::open(dir.path(), options).expect("open");
            for chunk in entries.chunks(batch) {
                let records: Vec<Record> =
                    chunk.iter().map(|e| Record::encode(e).expect("encode")).collect();
                wal.append(&records).expect("append");
                wal.sync().expect("sync");
                for e in chunk {
                    live.apply(e).expect("apply");
                    if e.offset == cut_at {
                        snapshot = Some(Snapshot { offset: e.offset, epoch: e.epoch, state: live.clone() });
                    }
                }
            }
            if let Some(s) = &snapshot {
                s.store(&dir.path().join("snap")).expect("snapshot");
                wal.truncate_prefix(s.offset, s.epoch).expect("truncate prefix");
            }
        }
        let (wal, report) = Wal::open(dir.path(), options).expect("reopen");
        prop_assert!(report.torn_tail.is_none());
        prop_assert_eq!(wal.last_offset(), entries.len() as u64);
        let base = match Snapshot::load_latest(&dir.path().join("snap")).expect("load") {
            Some(s) => {
                prop_assert!(wal.first_offset() <= s.offset + 1);
                s.state
            }
            None => MetadataState::new(),
        };
        // From the snapshot (if any) plus the WAL after it ...
        let from_snapshot = replay(&wal, base);
        prop_assert_eq!(&from_snapshot, &live);
        prop_assert_eq!(from_snapshot.digest(), live.digest());
        // ... and the whole WAL when nothing was truncated.
        if wal.first_offset() == 1 {
            let full = replay(&wal, MetadataState::new());
            prop_assert_eq!(full.digest(), live.digest());
        }
    }
}
