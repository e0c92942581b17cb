//! The disk threads: two per node. The writer owns the WAL and the node's
//! files; the reader serves read-only jobs (followers' catch-up reads,
//! snapshot loads) next to it.
//!
//! fsync must never run on an actix arbiter (it stalls every timer there), so
//! every file operation runs on these dedicated threads and answers through a
//! oneshot channel.
//!
//! What the node asks of them is typed: appends ([`DiskHandle::append`]),
//! and otherwise a `DiskRequest` for the writer or a `ReadRequest` for the
//! reader (`disk_request.rs`: the requests, their completions and the one
//! function that carries each out; `disk_api.rs`: a typed method per
//! request). Closures (`run`, `read`) remain only as test hooks behind
//! feature `fault-injection`.
//!
//! **Writer** (`metawal-disk-<id>`): consecutive appends waiting in its
//! queue are written together and made durable with a single `fdatasync`
//! (group commit); every other request runs in queue order, so an append
//! queued before a truncation is written before it.
//! After a failed write or sync it refuses further appends: the page cache
//! can no longer be trusted, and the node must be restarted.
//!
//! **Reader** (`metawal-disk-read-<id>`, [`DiskHandle::read_wal`]): a lagging follower's catch-up reads and the
//! load + encode of a snapshot for a follower behind the log start can take
//! long (megabytes of `pread`, CRC checks, MessagePack). On the writer's
//! queue they delayed every group commit behind them, so one lagging
//! follower slowed every `acks=leader`/`acks=all` write. They run here
//! instead, never sharing a thread or a queue with appends. The reader does
//! not touch the [`Wal`]: it reads through a [`metawal::wal::WalReader`], the writer's
//! published index of *durable* records (updated after each `fdatasync` and
//! before each truncation changes a file), opening the segment files
//! read-only and checking every record again; a read that a concurrent
//! truncation overtook fails ([`metawal::wal::WalError::Raced`], or `OutOfRange` below the
//! new start) rather than return bytes that are no longer the log's, and the
//! caller retries. Snapshots are written atomically (tmp + rename), so the
//! reader loads them without coordination.
//!
//! Why a separate thread and not two queues on one thread (drain appends
//! first, split reads into chunks): with one thread, a read chunk that has
//! started still delays the next fsync by its length, and chunking only
//! bounds, never removes, that delay; with a thread of its own the reader
//! costs the writer nothing but a short write lock per sync to publish the
//! new record positions.
//!
//! Both queues are bounded ([`QUEUE`], [`READ_QUEUE`]); a full one is
//! [`DiskError::QueueFull`]. Callers keep at most one append and one read in
//! flight each.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use metawal::record::Record;
use metawal::wal::{OpenReport, Wal, WalOptions};
use metawal::NodeId;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{oneshot, watch};

use crate::error::DiskError;
use metawal::engine::disk_io::{
    DiskCompletion, DiskExecutor, DiskRequest, ReadCompletion, ReadExecutor, ReadRequest,
};

/// Most jobs waiting for the writer thread.
pub const QUEUE: usize = 1024;

/// Most jobs waiting for the reader thread: one read in flight per follower
/// link, plus the odd snapshot load.
pub const READ_QUEUE: usize = 64;

pub use crate::disk_files::{snapshot_dir, wal_dir, Disk, DiskReader};

type AppendReply = oneshot::Sender<Result<u64, String>>;
#[cfg(feature = "fault-injection")]
type JobFn = Box<dyn FnOnce(&mut Disk) + Send>;

#[cfg(feature = "fault-injection")]
type ReadJobFn = Box<dyn FnOnce(&DiskReader) + Send>;

enum ReadJob {
    /// A typed read (`disk_request`).
    Request(ReadRequest, oneshot::Sender<ReadCompletion>),
    /// A closure: test hooks only (`fault-injection`).
    #[cfg(feature = "fault-injection")]
    Run(ReadJobFn),
    Stop(oneshot::Sender<()>),
}

enum Job {
    Append {
        records: Vec<Record>,
        reply: AppendReply,
    },
    /// A typed storage operation (`disk_request`).
    Request(DiskRequest, oneshot::Sender<DiskCompletion>),
    /// A closure: test hooks only (`fault-injection`).
    #[cfg(feature = "fault-injection")]
    Run(JobFn),
    Stop(oneshot::Sender<()>),
}

/// A cheap, cloneable handle to a node's disk threads.
#[derive(Clone, Debug)]
pub struct DiskHandle {
    tx: SyncSender<Job>,
    read_tx: SyncSender<ReadJob>,
    node: NodeId,
    /// Bumped by the writer after each group commit and each request that
    /// may move the readable log (a truncation, a snapshot install): what
    /// a reader that found an entry not yet durable waits on.
    published: watch::Receiver<u64>,
}

impl DiskHandle {
    /// Start the disk threads for `data_dir` and open (recover) the WAL there.
    #[cfg(feature = "fault-injection")]
    pub async fn start(
        node: NodeId,
        data_dir: PathBuf,
        options: WalOptions,
    ) -> Result<(DiskHandle, OpenReport), DiskError> {
        DiskHandle::start_timed(node, data_dir, options, None).await
    }

    /// [`DiskHandle::start`], recording each WAL `fdatasync`'s duration in
    /// `fsync_seconds`.
    pub async fn start_timed(
        node: NodeId,
        data_dir: PathBuf,
        options: WalOptions,
        fsync_seconds: Option<Histogram>,
    ) -> Result<(DiskHandle, OpenReport), DiskError> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (published_tx, published) = watch::channel(0u64);
        let (opened_tx, opened_rx) = oneshot::channel();
        let data_dir_for_reader = data_dir.clone();
        std::thread::Builder::new()
            .name(format!("metawal-disk-{node}"))
            .spawn(move || {
                let opened = std::fs::create_dir_all(wal_dir(&data_dir))
                    .and_then(|()| std::fs::create_dir_all(snapshot_dir(&data_dir)))
                    .map_err(|source| {
                        DiskError::Wal(metawal::wal::WalError::Io {
                            path: data_dir.clone(),
                            source,
                        })
                    })
                    .and_then(|()| {
                        Wal::open(&wal_dir(&data_dir), options).map_err(DiskError::from)
                    });
                match opened {
                    Ok((wal, report)) => {
                        let reader = wal.reader();
                        if opened_tx.send(Ok((report, reader))).is_ok() {
                            run(
                                node,
                                Disk {
                                    wal,
                                    data_dir,
                                    #[cfg(feature = "fault-injection")]
                                    inject_write_failure: false,
                                    #[cfg(feature = "fault-injection")]
                                    inject_meta_failure: std::cell::Cell::new(None),
                                },
                                rx,
                                fsync_seconds,
                                published_tx,
                            );
                        }
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| DiskError::Inconsistent {
                dir: String::new(),
                reason: format!("cannot start the disk thread: {e}"),
            })?;
        let (report, wal_reader) = opened_rx.await.map_err(|_| DiskError::Stopped(node))??;
        let (read_tx, read_rx) = mpsc::sync_channel::<ReadJob>(READ_QUEUE);
        let reader = DiskReader {
            node,
            wal: wal_reader,
            data_dir: data_dir_for_reader,
        };
        let handle = DiskHandle {
            tx,
            read_tx,
            node,
            published,
        };
        if let Err(e) = std::thread::Builder::new()
            .name(format!("metawal-disk-read-{node}"))
            .spawn(move || run_reader(reader, read_rx))
        {
            handle.stop().await;
            return Err(DiskError::Inconsistent {
                dir: String::new(),
                reason: format!("cannot start the disk reader thread: {e}"),
            });
        }
        Ok((handle, report))
    }

    /// The node whose disk this is.
    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    /// A watch the writer bumps each time what the disk reader can read
    /// may have changed (a group commit made records durable, or a request
    /// truncated or replaced the log). Mark it seen before a read; a read
    /// that found its entries not durable yet waits for the next change.
    pub(crate) fn wal_published(&self) -> watch::Receiver<u64> {
        self.published.clone()
    }

    fn submit_read(&self, job: ReadJob) -> Result<(), DiskError> {
        self.read_tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => DiskError::QueueFull(self.node),
            TrySendError::Disconnected(_) => DiskError::Stopped(self.node),
        })
    }

    fn submit(&self, job: Job) -> Result<(), DiskError> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => DiskError::QueueFull(self.node),
            TrySendError::Disconnected(_) => DiskError::Stopped(self.node),
        })
    }

    /// Queue `records` for writing; the receiver yields the durable offset
    /// once they (and everything before them) are on disk.
    pub fn append(
        &self,
        records: Vec<Record>,
    ) -> Result<oneshot::Receiver<Result<u64, String>>, DiskError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Append { records, reply })?;
        Ok(rx)
    }

    /// Carry out `request` on the writer thread, after every job queued
    /// before it (see `disk_request`, which has a typed method per request).
    pub(crate) fn request(
        &self,
        request: DiskRequest,
    ) -> impl std::future::Future<Output = Result<DiskCompletion, DiskError>> + 'static {
        let (tx, rx) = oneshot::channel();
        answer(self.node, self.submit(Job::Request(request, tx)), rx)
    }

    /// Test hook (feature `fault-injection`): run `f` on the writer thread,
    /// after every job queued before it. The node itself asks only typed
    /// requests (`DiskHandle::request`, see `disk_request`).
    #[cfg(feature = "fault-injection")]
    pub fn run<R, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<R, DiskError>> + 'static
    where
        R: Send + 'static,
        F: FnOnce(&mut Disk) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Job::Run(Box::new(move |disk| {
            let _ = tx.send(f(disk));
        }));
        answer(self.node, self.submit(job), rx)
    }

    /// Carry out the read `request` on the reader thread, after the reads
    /// queued before it; never behind (or delaying) an append.
    pub(crate) fn read_request(
        &self,
        request: ReadRequest,
    ) -> impl std::future::Future<Output = Result<ReadCompletion, DiskError>> + 'static {
        let (tx, rx) = oneshot::channel();
        answer(
            self.node,
            self.submit_read(ReadJob::Request(request, tx)),
            rx,
        )
    }

    /// Test hook (feature `fault-injection`): run the read-only job `f` on
    /// the reader thread, after the read jobs
    /// queued before it. It never waits for (or delays) appends: it sees the
    /// WAL's durable records through [`DiskReader::wal`].
    #[cfg(feature = "fault-injection")]
    pub fn read<R, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<R, DiskError>> + 'static
    where
        R: Send + 'static,
        F: FnOnce(&DiskReader) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = ReadJob::Run(Box::new(move |reader| {
            let _ = tx.send(f(reader));
        }));
        answer(self.node, self.submit_read(job), rx)
    }

    /// Finish queued jobs and stop both threads (the WAL files are closed).
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if send_waiting(&self.tx, Job::Stop(tx)).await {
            let _ = rx.await;
        }
        let (tx, rx) = oneshot::channel();
        if send_waiting(&self.read_tx, ReadJob::Stop(tx)).await {
            let _ = rx.await;
        }
    }
}

/// Queue `job`, waiting for room without blocking the arbiter (the
/// blocking send runs on a blocking-pool thread, woken when the disk
/// thread takes a job: no polling); false if the thread is gone.
async fn send_waiting<T: Send + 'static>(tx: &SyncSender<T>, job: T) -> bool {
    let tx = tx.clone();
    match tx.try_send(job) {
        Ok(()) => true,
        Err(TrySendError::Full(job)) => tokio::task::spawn_blocking(move || tx.send(job).is_ok())
            .await
            .unwrap_or(false),
        Err(TrySendError::Disconnected(_)) => false,
    }
}

/// The answer to a job just queued (or refused: `submitted`).
async fn answer<T>(
    node: NodeId,
    submitted: Result<(), DiskError>,
    rx: oneshot::Receiver<T>,
) -> Result<T, DiskError> {
    submitted?;
    rx.await.map_err(|_| DiskError::Stopped(node))
}

fn run_reader(reader: DiskReader, rx: Receiver<ReadJob>) {
    while let Ok(job) = rx.recv() {
        match job {
            ReadJob::Request(request, reply) => {
                // The asker may have gone: nothing to tell.
                let _ = reply.send(reader.execute_read(request));
            }
            #[cfg(feature = "fault-injection")]
            ReadJob::Run(f) => f(&reader),
            ReadJob::Stop(done) => {
                let _ = done.send(());
                break;
            }
        }
    }
    tracing::debug!(node = reader.node, "disk reader thread stopped");
}

fn run(
    node: NodeId,
    mut disk: Disk,
    rx: Receiver<Job>,
    fsync_seconds: Option<Histogram>,
    published: watch::Sender<u64>,
) {
    let mut failed: Option<String> = None;
    let mut next: Option<Job> = None;
    loop {
        let job = match next.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            },
        };
        match job {
            Job::Append { records, reply } => {
                // Group commit: take every append already waiting.
                let mut batch = vec![(records, reply)];
                loop {
                    match rx.try_recv() {
                        Ok(Job::Append { records, reply }) => batch.push((records, reply)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                write_batch(node, &mut disk, batch, &mut failed, fsync_seconds.as_ref());
                published.send_modify(|n| *n = n.wrapping_add(1));
            }
            Job::Request(request, reply) => {
                // The asker may have gone: nothing to tell.
                let _ = reply.send(disk.execute(request));
                published.send_modify(|n| *n = n.wrapping_add(1));
            }
            #[cfg(feature = "fault-injection")]
            Job::Run(f) => {
                f(&mut disk);
                published.send_modify(|n| *n = n.wrapping_add(1));
            }
            Job::Stop(done) => {
                if failed.is_none() {
                    if let Err(e) = disk.wal.sync() {
                        tracing::error!(node, error = %e, "final WAL sync failed");
                    }
                }
                let _ = done.send(());
                break;
            }
        }
    }
    tracing::debug!(node, "disk thread stopped");
}

fn write_batch(
    node: NodeId,
    disk: &mut Disk,
    batch: Vec<(Vec<Record>, AppendReply)>,
    failed: &mut Option<String>,
    fsync_seconds: Option<&Histogram>,
) {
    let started = std::time::Instant::now();
    let mut written = Vec::with_capacity(batch.len());
    let mut entries = 0usize;
    for (records, reply) in batch {
        if let Some(why) = failed.as_ref() {
            let _ = reply.send(Err(format!(
                "the WAL failed earlier ({why}); restart the node"
            )));
            continue;
        }
        #[cfg(feature = "fault-injection")]
        if std::mem::take(&mut disk.inject_write_failure) {
            let why = "injected WAL write failure".to_string();
            tracing::error!(node, error = %why, "WAL append failed");
            *failed = Some(why.clone());
            let _ = reply.send(Err(why));
            continue;
        }
        match disk.wal.append(&records) {
            Ok(()) => {
                entries += records.len();
                written.push(reply);
            }
            Err(e) => {
                tracing::error!(node, error = %e, "WAL append failed");
                // An out-of-order append is the caller's bug and leaves the
                // log unchanged; an I/O error poisons the WAL.
                if !matches!(e, metawal::wal::WalError::Order(_)) {
                    *failed = Some(e.to_string());
                }
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
    if written.is_empty() {
        return;
    }
    let write_done = std::time::Instant::now();
    let synced = disk.wal.sync();
    let fsync = write_done.elapsed();
    if let Some(h) = fsync_seconds {
        h.observe(fsync.as_secs_f64());
    }
    match synced {
        Ok(()) => {
            let durable = disk.wal.last_offset();
            tracing::trace!(
                stage = "fsync",
                node,
                offset = durable,
                entries,
                write_us = (write_done - started).as_micros() as u64,
                fsync_us = fsync.as_micros() as u64,
                "wal group commit"
            );
            for reply in written {
                let _ = reply.send(Ok(durable));
            }
        }
        Err(e) => {
            tracing::error!(node, error = %e, "WAL fdatasync failed; refusing further writes");
            *failed = Some(e.to_string());
            for reply in written {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
}
