//! Tests of the disk threads (`metawal_actors::disk`): reads for lagging
//! followers and snapshot loads run on the reader thread, so they neither
//! wait behind nor delay the writer's group commits.
//!
//! The assertions are on the order of completion, never on durations: a slow
//! job is held at a gate that the test opens only once the job that must not
//! wait for it has finished (the gate also opens by itself after [`GATE`], so
//! a regression fails the order assertion instead of hanging the test).

use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metawal::storage::Snapshot;
use metawal::wal::WalOptions;
use metawal::MetadataState;
use metawal::Record;
use metawal_actors::disk::DiskHandle;
use metawal_actors::{Command, Entry};

/// Longest a gated job waits for its gate (a liveness bound, not a timing
/// assertion: passing tests open the gate long before).
const GATE: Duration = Duration::from_secs(20);

const OPTIONS: WalOptions = WalOptions {
    segment_bytes: 256 * 1024,
    preallocate: false,
};

fn rec(offset: u64) -> Record {
    Record::encode(&Entry {
        offset,
        epoch: 1,
        command: Command::CreateTopic {
            name: format!("topic-{offset}-{}", "x".repeat(200)),
            partition_count: 3,
            replication_factor: 3,
        },
    })
    .unwrap()
}

/// What finished, in order.
#[derive(Clone, Default)]
struct Finished(Arc<Mutex<Vec<String>>>);

impl Finished {
    fn push(&self, what: impl Into<String>) {
        self.0.lock().unwrap().push(what.into());
    }

    fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Slow catch-up reads queued before an append (one held at a gate, many
/// large ones behind it) do not hold the append back: its durable offset
/// arrives while every read is still pending, and the reads then return the
/// right records.
#[actix::test]
async fn append_is_not_delayed_by_slow_reads_queued_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, _) = DiskHandle::start(1, dir.path().to_path_buf(), OPTIONS)
        .await
        .unwrap();
    let log: Vec<Record> = (1..=2000).map(rec).collect();
    let durable = disk.append(log.clone()).unwrap().await.unwrap().unwrap();
    assert_eq!(durable, 2000);

    let finished = Finished::default();
    let (gate_tx, gate_rx) = sync_channel::<()>(1);
    let mut reads = Vec::new();
    // The first read blocks the reader until the gate opens.
    let slow = disk.read(move |r| {
        let _ = gate_rx.recv_timeout(GATE);
        r.wal.read(1, 2000, usize::MAX)
    });
    reads.push(actix::spawn({
        let finished = finished.clone();
        async move {
            let records = slow.await.unwrap().unwrap();
            finished.push("read");
            records
        }
    }));
    // Many large reads (the whole log, ~0.5 MB each) behind it.
    for _ in 0..32 {
        let read = disk.read_wal(1, 2000, usize::MAX);
        let finished = finished.clone();
        reads.push(actix::spawn(async move {
            let records = read.await.unwrap();
            finished.push("read");
            records
        }));
    }
    // Then a group-commit append.
    let appended = disk.append(vec![rec(2001)]).unwrap();
    let append = actix::spawn({
        let finished = finished.clone();
        async move {
            let durable = appended.await.unwrap().unwrap();
            finished.push("append");
            // Only now let the reads go.
            let _ = gate_tx.send(());
            durable
        }
    });
    assert_eq!(append.await.unwrap(), 2001);
    for read in reads {
        // (Not assert_eq!: a failure would print megabytes.)
        assert!(read.await.unwrap() == log, "a read returned other records");
    }
    let order = finished.list();
    assert_eq!(order.len(), 34);
    assert_eq!(
        order[0], "append",
        "the append waited for reads queued before it: {order:?}"
    );
    // The reader sees the new record once it is durable.
    assert_eq!(
        disk.read_wal(2001, 10, usize::MAX).await.unwrap(),
        vec![rec(2001)]
    );
    disk.stop().await;
}

/// The other way round: a catch-up read and a snapshot load do not wait
/// behind a slow writer job (a long fsync, a truncation) queued before them.
#[actix::test]
async fn reads_and_snapshot_loads_do_not_wait_for_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, _) = DiskHandle::start(2, dir.path().to_path_buf(), OPTIONS)
        .await
        .unwrap();
    let log: Vec<Record> = (1..=300).map(rec).collect();
    disk.append(log.clone()).unwrap().await.unwrap().unwrap();
    let snapshot = Snapshot {
        offset: 300,
        epoch: 1,
        state: MetadataState::new(),
    };
    let stored = snapshot.clone();
    disk.run(move |d| stored.store(&d.snapshot_dir()).map(|_| ()))
        .await
        .unwrap()
        .unwrap();

    let finished = Finished::default();
    let (gate_tx, gate_rx) = sync_channel::<()>(1);
    // Hold the writer, then queue an append behind it.
    let held = disk.run(move |_| {
        let _ = gate_rx.recv_timeout(GATE);
    });
    let writer = actix::spawn({
        let finished = finished.clone();
        async move {
            held.await.unwrap();
            finished.push("writer");
        }
    });
    let appended = disk.append(vec![rec(301)]).unwrap();
    // Reads queued after both.
    let read = disk.read_wal(100, 200, usize::MAX).await.unwrap();
    finished.push("read");
    let loaded = disk
        .read(|r| r.load_latest_snapshot())
        .await
        .unwrap()
        .unwrap();
    finished.push("snapshot");
    let _ = gate_tx.send(());
    writer.await.unwrap();
    assert_eq!(appended.await.unwrap().unwrap(), 301);

    assert_eq!(
        read.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (100..=299).collect::<Vec<_>>()
    );
    assert!(
        read == log[99..299],
        "the records read are the ones written"
    );
    assert_eq!(loaded, Some(snapshot));
    assert_eq!(finished.list(), ["read", "snapshot", "writer"]);
    disk.stop().await;
    // Stopped: both threads refuse new jobs.
    assert!(disk.read_wal(1, 1, 1).await.is_err());
    assert!(disk.run(|_| ()).await.is_err());
}
