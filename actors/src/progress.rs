//! The node-wide progress of the log, published through a `watch` channel.
//!
//! The Replicator (leader) or the ReplicaListener (follower) is the single
//! writer; the FollowerLinks and the MetadataStore read it. A watch channel
//! coalesces updates, so a burst of appends wakes each reader once: this is
//! how the leader tells every link "log end is now N, commit is C" without a
//! message per entry.

use futures::Stream;
use tokio::sync::watch;

pub use metawal::engine::LogProgress;

/// Publish `p`, waking readers only if it changed.
pub(crate) fn publish(tx: &watch::Sender<LogProgress>, p: LogProgress) {
    tx.send_if_modified(|cur| {
        let changed = *cur != p;
        *cur = p;
        changed
    });
}

/// The values of a progress channel as a stream, for `ctx.add_stream`.
/// Updates that arrive while the reader is busy coalesce into the latest.
pub(crate) fn updates(rx: watch::Receiver<LogProgress>) -> impl Stream<Item = LogProgress> {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let p = *rx.borrow_and_update();
        Some((p, rx))
    })
}
