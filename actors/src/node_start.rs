//! The steps of [`Node::start`](super::Node::start) before the actors
//! start: TLS material, the data dir (disk threads, recovery, whose it is),
//! the listener, the `meta` the node starts with.

use metawal::membership::DirectoryId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metawal::storage::NodeMeta;
use metawal::wal::WalOptions;
use metawal::NodeId;
use tokio::net::TcpListener;

use crate::config::NodeConfig;
use crate::disk::DiskHandle;
use crate::error::NodeError;
use crate::metrics::NodeMetrics;
use crate::tls::{PeerTls, PeerTransport};
use metawal::engine::recovery::Recovered;

/// Read and check the TLS material (on a blocking thread, not on the
/// arbiter), or warn that TLS is off.
pub(super) async fn load_tls(config: &NodeConfig) -> Result<PeerTransport, NodeError> {
    let node = config.node_id;
    match &config.tls {
        Some(files) => {
            let (files, cluster) = (files.clone(), config.cluster_id.clone());
            let voters: Vec<NodeId> = config.peers.keys().copied().collect();
            let tls =
                tokio::task::spawn_blocking(move || PeerTls::load(&files, node, &cluster, voters))
                    .await
                    .map_err(NodeError::TlsLoadAborted)??;
            Ok(PeerTransport::Tls(Arc::new(tls)))
        }
        None => {
            tracing::warn!(
                node,
                "TLS is off (insecure_plaintext): replication and election traffic can be read, \
                 and frames injected, by anyone on the network path"
            );
            Ok(PeerTransport::Plain)
        }
    }
}

/// Start the disk threads and recover the data dir on them; refuse a data
/// dir of another node or cluster.
pub(super) async fn open_data_dir(
    config: &NodeConfig,
    metrics: &NodeMetrics,
) -> Result<(DiskHandle, Recovered), NodeError> {
    let node = config.node_id;
    let (disk, report) = DiskHandle::start_timed(
        node,
        config.data_dir.clone(),
        WalOptions {
            segment_bytes: config.replication.segment_bytes,
            preallocate: true,
        },
        Some(metrics.fsync_histogram()),
    )
    .await?;
    if let Some(t) = &report.torn_tail {
        tracing::warn!(node, file = %t.file.display(), byte = t.byte, removed = t.removed, "WAL torn tail removed at start");
    }
    let rec = disk.recover().await?;
    if let Some(m) = &rec.meta {
        if m.node_id != node || m.cluster_id != config.cluster_id {
            return Err(NodeError::ForeignDataDir {
                dir: config.data_dir.clone(),
                found_node: m.node_id,
                found_cluster: m.cluster_id.clone(),
                node,
                cluster: config.cluster_id.clone(),
            });
        }
    }
    Ok((disk, rec))
}

/// The `meta` the node starts with: its epoch, vote and the leader it
/// knew (never itself), the recovered commit point as the hint, and its
/// data directory's id: the one on disk, or `fresh` (drawn by the caller)
/// at the directory's first start, or for a meta written before directory
/// ids existed.
pub(super) fn meta_at_start(config: &NodeConfig, rec: &Recovered, fresh: DirectoryId) -> NodeMeta {
    let node = config.node_id;
    let directory_id = rec
        .meta
        .as_ref()
        .map(|m| m.directory_id)
        .filter(|d| !d.is_unknown())
        .unwrap_or(fresh);
    let (epoch, leader, voted_for) = match &rec.meta {
        Some(m) => (
            m.current_epoch,
            m.leader.filter(|&l| l != node),
            m.voted_for,
        ),
        None => (0, None, None),
    };
    NodeMeta {
        node_id: node,
        cluster_id: config.cluster_id.clone(),
        directory_id,
        current_epoch: epoch,
        leader,
        voted_for,
        commit_hint: rec.commit,
    }
}

/// The replication listener: the one the config hands over, or bound now.
pub(super) async fn bind(config: &NodeConfig) -> Result<(TcpListener, SocketAddr), NodeError> {
    let listen_err = |source| NodeError::Listen {
        addr: config.listen_addr,
        source,
    };
    let listener = match &config.listener {
        Some(bound) => match bound.take().map_err(listen_err)? {
            Some(l) => TcpListener::from_std(l).map_err(listen_err)?,
            None => return Err(NodeError::ListenerTaken),
        },
        None => TcpListener::bind(config.listen_addr)
            .await
            .map_err(listen_err)?,
    };
    let addr = listener.local_addr().map_err(|source| NodeError::Listen {
        addr: config.listen_addr,
        source,
    })?;
    Ok((listener, addr))
}

/// Write `meta` if it differs from the one on disk, through the merge like
/// every meta write (a former leader's record of leading its last epoch
/// stays on disk).
pub(super) async fn record_meta(
    disk: &DiskHandle,
    rec: &Recovered,
    meta: &NodeMeta,
) -> Result<(), NodeError> {
    if rec.meta.as_ref() != Some(meta) {
        disk.persist_meta(meta.clone())
            .await?
            .map_err(NodeError::MetaRefused)?;
    }
    Ok(())
}

/// Tell the leader this node is (back) up, so its link does not wait out
/// its reconnect backoff: connecting is the whole message.
pub(super) fn wake_leader(node: NodeId, addr: SocketAddr, timeout: Duration) {
    actix::spawn(async move {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => tracing::debug!(node, %addr, "woke the leader"),
            _ => tracing::debug!(node, %addr, "leader not reachable to wake"),
        }
    });
}
