//! Unit tests of snapshots and the meta file on disk: round trips, old formats, corrupt bytes, the merge rules.

use super::*;

fn meta() -> NodeMeta {
    NodeMeta {
        node_id: 3,
        cluster_id: "cluster-a".into(),
        directory_id: crate::membership::DirectoryId::UNKNOWN,
        current_epoch: 7,
        leader: Some(1),
        voted_for: Some(2),
        commit_hint: 12345,
    }
}

/// A meta file from before elections (no `voted_for`) still loads, as
/// no vote.
#[test]
fn a_meta_file_without_a_vote_loads_as_no_vote() {
    #[derive(Serialize)]
    struct OldBody {
        node_id: NodeId,
        cluster_id: String,
        current_epoch: u64,
        leader: Option<NodeId>,
        commit_hint: u64,
    }
    let dir = tempfile::tempdir().unwrap();
    let body = rmp_serde::to_vec_named(&OldBody {
        node_id: 3,
        cluster_id: "cluster-a".into(),
        current_epoch: 7,
        leader: Some(1),
        commit_hint: 12345,
    })
    .unwrap();
    atomic_write(&dir.path().join(META_FILE_NAME), &seal(META_MAGIC, &body)).unwrap();
    let loaded = NodeMeta::load(dir.path()).unwrap().unwrap();
    assert_eq!(
        loaded,
        NodeMeta {
            voted_for: None,
            ..meta()
        }
    );
}

/// A data directory's id survives a store and load, and a meta write
/// that does not know it (`UNKNOWN`) keeps the one on disk.
#[test]
fn the_directory_id_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let id = DirectoryId([7; 16]);
    let with_id = NodeMeta {
        directory_id: id,
        ..meta()
    };
    with_id.store(dir.path()).unwrap();
    assert_eq!(NodeMeta::load(dir.path()).unwrap(), Some(with_id.clone()));
    let unaware = NodeMeta {
        current_epoch: 9,
        ..meta()
    };
    let merged = crate::engine::epoch::merge_meta(Some(&with_id), &unaware).unwrap();
    assert_eq!((merged.directory_id, merged.current_epoch), (id, 9));
    let other = NodeMeta {
        directory_id: DirectoryId([8; 16]),
        ..unaware
    };
    let merged = crate::engine::epoch::merge_meta(Some(&with_id), &other).unwrap();
    assert_eq!(merged.directory_id, id, "an identity is never rewritten");
}

/// A snapshot written before membership entries existed (no
/// `membership` in its state) still loads, with no membership.
#[test]
fn a_snapshot_from_before_membership_loads() {
    #[derive(Serialize)]
    struct OldState {
        topics: std::collections::BTreeMap<String, ()>,
        applied_offset: u64,
        applied_epoch: u64,
        leader: Option<NodeId>,
    }
    let old = OldState {
        topics: Default::default(),
        applied_offset: 0,
        applied_epoch: 0,
        leader: Some(2),
    };
    let body = rmp_serde::to_vec_named(&(0u64, 0u64, &old)).unwrap();
    let (_, _, state): (u64, u64, MetadataState) = rmp_serde::from_slice(&body).unwrap();
    assert_eq!(state.leader(), Some(2));
    assert_eq!(state.membership(), None);
}

fn snap(offset: u64) -> Snapshot {
    Snapshot {
        offset,
        epoch: 4,
        state: MetadataState::new(),
    }
}

fn flip(path: &Path, pos: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[pos] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

#[test]
fn meta_round_trip_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(NodeMeta::load(dir.path()).unwrap(), None);
    meta().store(dir.path()).unwrap();
    assert_eq!(NodeMeta::load(dir.path()).unwrap(), Some(meta()));
    let mut m = meta();
    m.leader = None;
    m.current_epoch = 8;
    m.store(dir.path()).unwrap();
    assert_eq!(NodeMeta::load(dir.path()).unwrap(), Some(m));
    assert!(!dir.path().join("meta.tmp").exists());
    // Into a dir that does not exist yet.
    let sub = dir.path().join("a/b");
    meta().store(&sub).unwrap();
    assert_eq!(NodeMeta::load(&sub).unwrap(), Some(meta()));
}

#[test]
fn every_flipped_meta_byte_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    meta().store(dir.path()).unwrap();
    let path = dir.path().join("meta");
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    for pos in 0..len {
        // The reserved field is not checked.
        if (6..8).contains(&pos) {
            continue;
        }
        flip(&path, pos);
        match NodeMeta::load(dir.path()) {
            Err(e @ StorageError::Corrupt { .. }) => {
                assert!(e.to_string().contains(&path.display().to_string()));
            }
            other => panic!("byte {pos}: expected corrupt, got {other:?}"),
        }
        flip(&path, pos);
    }
    assert_eq!(NodeMeta::load(dir.path()).unwrap(), Some(meta()));
    // Truncated.
    let bytes = std::fs::read(&path).unwrap();
    for cut in 0..bytes.len() {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(matches!(
            NodeMeta::load(dir.path()),
            Err(StorageError::Corrupt { .. })
        ));
    }
}

#[test]
fn snapshot_round_trip_and_latest() {
    let dir = tempfile::tempdir().unwrap();
    let sdir = dir.path().join("snapshots");
    assert_eq!(Snapshot::load_latest(&sdir).unwrap(), None);
    let p1 = snap(100).store(&sdir).unwrap();
    assert_eq!(p1, sdir.join("snapshot-00000000000000000100.snap"));
    assert_eq!(Snapshot::load_latest(&sdir).unwrap(), Some(snap(100)));
    let p2 = snap(250).store(&sdir).unwrap();
    assert!(!p1.exists(), "older snapshot removed");
    assert_eq!(Snapshot::load_latest(&sdir).unwrap(), Some(snap(250)));
    // A stray temp file is ignored.
    std::fs::write(sdir.join("snapshot-00000000000000000999.snap.tmp"), b"junk").unwrap();
    assert_eq!(Snapshot::load_latest(&sdir).unwrap(), Some(snap(250)));
    // Encode/decode directly.
    let bytes = snap(7).encode().unwrap();
    assert_eq!(&bytes[0..4], b"MWSN");
    assert_eq!(
        Snapshot::decode(&bytes, Path::new("peer 2")).unwrap(),
        snap(7)
    );
    assert!(p2.exists());
}

#[test]
fn corrupt_newest_snapshot_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    snap(100).store(dir.path()).unwrap();
    // An older one put back by hand must not be used instead.
    std::fs::write(
        dir.path().join(snapshot_file_name(50)),
        snap(50).encode().unwrap(),
    )
    .unwrap();
    let newest = dir.path().join(snapshot_file_name(100));
    let len = std::fs::metadata(&newest).unwrap().len() as usize;
    for pos in [0, 4, 9, 17, ENVELOPE_HEADER_LEN, len - 1] {
        flip(&newest, pos);
        match Snapshot::load_latest(dir.path()) {
            Err(e @ StorageError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&newest.display().to_string()), "{msg}");
                assert!(msg.contains("move this file away"), "{msg}");
            }
            other => panic!("byte {pos}: expected corrupt, got {other:?}"),
        }
        flip(&newest, pos);
    }
    assert_eq!(Snapshot::load_latest(dir.path()).unwrap(), Some(snap(100)));
    // A snapshot whose content disagrees with its name.
    std::fs::write(&newest, snap(99).encode().unwrap()).unwrap();
    assert!(matches!(
        Snapshot::load_latest(dir.path()),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn decode_of_garbage_never_panics() {
    let origin = Path::new("peer");
    let good = snap(5).encode().unwrap();
    for cut in 0..good.len() {
        assert!(Snapshot::decode(&good[..cut], origin).is_err());
    }
    let mut seed = 0x1234_5678u32;
    for n in 0..200usize {
        let mut b = good.clone();
        for _ in 0..(n % 5 + 1) {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let i = seed as usize % b.len();
            b[i] = (seed >> 24) as u8;
        }
        let _ = Snapshot::decode(&b, origin);
    }
}

#[test]
fn atomic_write_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    atomic_write(&p, b"one").unwrap();
    atomic_write(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert!(!dir.path().join("f.tmp").exists());
    fsync_dir(dir.path()).unwrap();
    assert!(matches!(
        fsync_dir(&dir.path().join("missing")),
        Err(StorageError::Io { path, .. }) if path.ends_with("missing")
    ));
}
