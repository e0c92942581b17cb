//! Unit tests of WAL recovery: torn tails, corrupt records, the segment layouts a crash can leave.

use super::*;

use std::fs::OpenOptions;

use crate::command::Command;
use crate::record::{test_record as record, Record};

/// The bound for a failure right after records `1..=last` of epoch 1.
fn after(last: u64) -> Successor {
    let mut epochs = EpochIndex::new(0, 0);
    for o in 1..=last {
        epochs.append(o, 1).unwrap();
    }
    Successor::after(&epochs)
}

fn entry_record(offset: u64, epoch: u64) -> Record {
    Record::encode(&Entry {
        offset,
        epoch,
        command: Command::DeleteTopic {
            name: format!("t{offset}"),
        },
    })
    .unwrap()
}

#[test]
fn wal_find_valid_record_after_a_failure() {
    let (a, b) = (record(1), record(2));
    let mut buf = a.bytes.to_vec();
    buf.extend_from_slice(&b.bytes);
    buf.extend_from_slice(&[0u8; 300]);
    // From inside the first record: the second one is found.
    assert_eq!(
        find_valid_record(&buf, 1, after(0), usize::MAX),
        FollowSearch::Found {
            byte: a.len(),
            offset: 2,
            epoch: 1,
        }
    );
    // Past the start of the last record: only a partial record and zeros.
    assert_eq!(
        find_valid_record(&buf, a.len() + 1, after(0), usize::MAX),
        FollowSearch::Nothing
    );
    // Nothing but zeros (preallocated space).
    assert_eq!(
        find_valid_record(&[0u8; 1000], 0, after(0), usize::MAX),
        FollowSearch::Nothing
    );
    // A record cut short is not valid.
    let cut = &buf[..a.len() + b.len() - 1];
    assert_eq!(
        find_valid_record(cut, a.len(), after(0), usize::MAX),
        FollowSearch::Nothing
    );
    // The checksum work is bounded: with no budget it gives up at the
    // first candidate instead of answering "nothing follows".
    assert!(matches!(
        find_valid_record(&buf, 1, after(0), 0),
        FollowSearch::GaveUp { .. }
    ));
}

/// Only a record that could follow the failed one in this log counts:
/// a record at or below the failed record's offset, or from an older
/// epoch, is skipped and the search goes on to a genuine later record.
#[test]
fn wal_find_valid_record_skips_records_that_cannot_follow() {
    // The failed record should hold offset 3, the last good one is in
    // epoch 1. Bytes after the failure: an earlier record (1), one with
    // the failed offset itself (3), a later offset from an older epoch,
    // then the genuine next record (4).
    let stale = [entry_record(1, 1), entry_record(3, 1), entry_record(9, 0)];
    let genuine = entry_record(4, 1);
    let mut buf = vec![0xa5u8; 5];
    for r in &stale {
        buf.extend_from_slice(&r.bytes);
    }
    let genuine_at = buf.len();
    buf.extend_from_slice(&genuine.bytes);
    assert_eq!(
        find_valid_record(&buf, 1, after(2), usize::MAX),
        FollowSearch::Found {
            byte: genuine_at,
            offset: 4,
            epoch: 1,
        }
    );
    // Without the genuine record nothing can follow.
    assert_eq!(
        find_valid_record(&buf[..genuine_at], 1, after(2), usize::MAX),
        FollowSearch::Nothing
    );
    // The epoch bound is the last good record's epoch: a later offset
    // in that epoch or a newer one counts.
    for epoch in [1, 2] {
        let r = entry_record(5, epoch);
        assert_eq!(
            find_valid_record(&r.bytes, 0, after(2), usize::MAX),
            FollowSearch::Found {
                byte: 0,
                offset: 5,
                epoch,
            }
        );
    }
}

#[test]
fn wal_tail_verdict_names_the_following_record() {
    let (a, b) = (record(1), record(2));
    let mut buf = a.bytes.to_vec();
    buf.extend_from_slice(&b.bytes);
    // A length bit flip that runs the first record past the end.
    buf[1] ^= 0x40;
    let err = decode_record(&buf).unwrap_err();
    let reason = tail_verdict(&buf, 0, &err, &EpochIndex::new(0, 0)).unwrap_err();
    assert!(
        reason.contains(&format!(
            "(offset 2, epoch 1; this record should hold offset 1) starts after it at byte {}",
            a.len()
        )) && reason.contains("not a torn tail"),
        "{reason}"
    );
    // The second record cut short is a torn tail.
    let cut = &buf[..a.len() + b.len() - 3];
    let err = decode_record(&cut[a.len()..]).unwrap_err();
    let mut epochs = EpochIndex::new(0, 0);
    epochs.append(1, 1).unwrap();
    assert_eq!(tail_verdict(cut, a.len(), &err, &epochs), Ok(()));
}

const OPTS: WalOptions = WalOptions {
    segment_bytes: 1 << 20,
    preallocate: false,
};

/// A WAL in a new directory holding records `1..=last` (epoch 1),
/// synced and closed; returns the directory and its one segment.
fn closed_wal(last: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), OPTS).unwrap();
    let records: Vec<Record> = (1..=last).map(record).collect();
    wal.append(&records).unwrap();
    wal.sync().unwrap();
    let paths = wal.segment_paths();
    assert_eq!(paths.len(), 1);
    let path = paths[0].clone();
    (dir, path)
}

/// A torn last record whose payload happens to hold a complete,
/// checksum-good record that cannot follow it in this log (a copy of an
/// earlier record, one holding the torn record's own offset, or a later
/// offset from an older epoch) is still a torn tail: open cuts it and
/// keeps every record before it.
#[test]
fn wal_torn_tail_embedding_a_record_that_cannot_follow_is_cut() {
    let embedded = [
        ("a copy of an earlier record", record(2)),
        ("a record with the torn record's offset", entry_record(4, 1)),
        ("a later offset from an older epoch", entry_record(6, 0)),
    ];
    for (what, inner) in embedded {
        let (dir, path) = closed_wal(3);
        let good_len = std::fs::metadata(&path).unwrap().len();
        // The torn write of record 4: a header declaring more payload
        // than made it to disk; the payload that did holds `inner`.
        let mut torn = Vec::new();
        let declared = (inner.len() + 64) as u32;
        torn.extend_from_slice(&declared.to_be_bytes());
        torn.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
        torn.extend_from_slice(&[0x92, 0x04, 0x01]);
        torn.extend_from_slice(&inner.bytes);
        torn.extend_from_slice(&[0x7f; 10]);
        {
            let file = OpenOptions::new().append(true).open(&path).unwrap();
            use std::io::Write;
            (&file).write_all(&torn).unwrap();
        }
        let (mut wal, report) = Wal::open(dir.path(), OPTS)
            .unwrap_or_else(|e| panic!("{what}: a torn tail must open, got {e}"));
        assert_eq!(
            report.torn_tail,
            Some(TornTail {
                file: path.clone(),
                byte: good_len,
                removed: torn.len() as u64,
            }),
            "{what}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len, "{what}");
        assert_eq!(wal.last_offset(), 3, "{what}");
        let held = wal.read(1, usize::MAX, usize::MAX).unwrap();
        assert_eq!(held, (1..=3).map(record).collect::<Vec<_>>(), "{what}");
        // Appends continue where the torn record was.
        wal.append(&[record(4)]).unwrap();
        wal.sync().unwrap();
    }
}

/// A length bit flip mid-segment still refuses the open: the genuine
/// records after the damaged one hold higher offsets. Nothing is cut.
#[test]
fn wal_length_bit_flip_mid_last_segment_still_refuses() {
    let (dir, path) = closed_wal(4);
    let before = std::fs::read(&path).unwrap();
    // Record 2 starts right after record 1; flip a length bit so it runs
    // past the end of the file.
    let at = record(1).len();
    let mut bytes = before.clone();
    bytes[at + 1] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    match Wal::open(dir.path(), OPTS) {
        Err(WalError::Corrupt { file, byte, reason }) => {
            assert_eq!((file, byte), (path.clone(), at as u64));
            let third = at + record(2).len();
            assert!(
                reason.contains(&format!(
                    "(offset 3, epoch 1; this record should hold offset 2) \
                     starts after it at byte {third}"
                )),
                "{reason}"
            );
        }
        other => panic!("expected corrupt, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "file changed");
}
