//! The disk thread: one per node, owning the WAL and the node's files.
//!
//! fsync must never run on an actix arbiter (it stalls every timer there), so
//! every file operation runs on this dedicated thread and answers through a
//! oneshot channel. Consecutive appends waiting in the queue are written
//! together and made durable with a single `fdatasync` (group commit); every
//! other job runs in queue order, so an append queued before a truncation is
//! written before it. The queue is bounded: callers keep at most one append in
//! flight each, plus occasional reads.
//!
//! After a failed write or sync the thread refuses further appends: the page
//! cache can no longer be trusted, and the node must be restarted.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use metawal::record::Record;
use metawal::wal::{OpenReport, Wal, WalOptions};
use metawal::NodeId;
use tokio::sync::oneshot;

use crate::error::DiskError;
use metawal::engine::epoch::{maybe_advance_epoch, EpochRefused};
use metawal::storage::{NodeMeta, StorageError};

/// Most jobs waiting for the disk thread.
const QUEUE: usize = 1024;

/// What the disk thread owns; jobs get `&mut` access to it.
#[derive(Debug)]
pub struct Disk {
    /// The node's write-ahead log.
    pub wal: Wal,
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// Test hook (feature `fault-injection`): the next WAL append fails as
    /// an I/O error would.
    #[cfg(feature = "fault-injection")]
    pub inject_write_failure: bool,
}

impl Disk {
    /// Persist `meta` unless the meta on disk holds a higher epoch, or this
    /// epoch under another leader ([`maybe_advance_epoch`]). Every meta
    /// write goes through here, on this thread, so two writers racing can
    /// never lower the persisted epoch.
    pub fn store_meta_fenced(
        &self,
        meta: &NodeMeta,
    ) -> Result<Result<(), EpochRefused>, StorageError> {
        if let (Some(cur), Some(leader)) = (NodeMeta::load(&self.data_dir)?, meta.leader) {
            if let Err(refused) =
                maybe_advance_epoch(cur.current_epoch, cur.leader, meta.current_epoch, leader)
            {
                return Ok(Err(refused));
            }
        }
        meta.store(&self.data_dir)?;
        Ok(Ok(()))
    }

    /// Where snapshots live.
    pub fn snapshot_dir(&self) -> PathBuf {
        snapshot_dir(&self.data_dir)
    }
}

/// `data_dir/snapshots`.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// `data_dir/wal`.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

type AppendReply = oneshot::Sender<Result<u64, String>>;
type JobFn = Box<dyn FnOnce(&mut Disk) + Send>;

enum Job {
    Append {
        records: Vec<Record>,
        reply: AppendReply,
    },
    Run(JobFn),
    Stop(oneshot::Sender<()>),
}

/// A cheap, cloneable handle to a node's disk thread.
#[derive(Clone, Debug)]
pub struct DiskHandle {
    tx: SyncSender<Job>,
    node: NodeId,
}

impl DiskHandle {
    /// Start the disk thread for `data_dir` and open (recover) the WAL there.
    pub async fn start(
        node: NodeId,
        data_dir: PathBuf,
        options: WalOptions,
    ) -> Result<(DiskHandle, OpenReport), DiskError> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (opened_tx, opened_rx) = oneshot::channel();
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
                        if opened_tx.send(Ok(report)).is_ok() {
                            run(
                                node,
                                Disk {
                                    wal,
                                    data_dir,
                                    #[cfg(feature = "fault-injection")]
                                    inject_write_failure: false,
                                },
                                rx,
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
        let report = opened_rx.await.map_err(|_| DiskError::Stopped(node))??;
        Ok((DiskHandle { tx, node }, report))
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

    /// Run `f` on the disk thread, after every job queued before it.
    pub fn run<R, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<R, DiskError>> + 'static
    where
        R: Send + 'static,
        F: FnOnce(&mut Disk) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let submitted = self.submit(Job::Run(Box::new(move |disk| {
            let _ = tx.send(f(disk));
        })));
        let node = self.node;
        async move {
            submitted?;
            rx.await.map_err(|_| DiskError::Stopped(node))
        }
    }

    /// Finish queued jobs and stop the thread (the WAL files are closed).
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        let mut job = Job::Stop(tx);
        // Never block the arbiter on a full queue: wait for room instead.
        loop {
            match self.tx.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(j)) => {
                    job = j;
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        let _ = rx.await;
    }
}

fn run(node: NodeId, mut disk: Disk, rx: Receiver<Job>) {
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
                write_batch(node, &mut disk, batch, &mut failed);
            }
            Job::Run(f) => f(&mut disk),
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
