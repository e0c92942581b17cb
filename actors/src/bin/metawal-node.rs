//! `metawal-node`: run one metawal node as a process.
//!
//! ```text
//! METAWAL_SECRET=s3cret metawal-node --node-id 1 --cluster-id prod \
//!     --data-dir /var/lib/metawal --listen 0.0.0.0:7101 \
//!     --peer 2=10.0.0.2:7101 --peer 3=10.0.0.3:7101
//! ```
//!
//! It starts an actix System, starts the [`Node`] on it, logs with
//! `tracing-subscriber` (`RUST_LOG`, default `info`), logs the node's status
//! every `--status-secs`, and shuts the node down gracefully on Ctrl-C or
//! SIGTERM. See `docs/operations.md`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use metawal_actors::{Node, NodeConfig, NodeId, NodeStatus, ReplicationConfig};
use tracing_subscriber::EnvFilter;

/// Environment variable holding the shared secret when `--secret-file` is not given.
const SECRET_ENV: &str = "METAWAL_SECRET";

#[derive(Parser, Debug)]
#[command(
    name = "metawal-node",
    version,
    about = "Run one metawal node: replicated cluster metadata through a write-ahead log",
    after_help = "The shared secret comes from --secret-file, or else from the METAWAL_SECRET \
                  environment variable; it must not be empty. Logging: RUST_LOG (default info)."
)]
struct Args {
    /// This node's id (>= 1).
    #[arg(long, value_name = "ID")]
    node_id: NodeId,

    /// The cluster id; every node of the cluster must use the same one.
    #[arg(long, value_name = "ID")]
    cluster_id: String,

    /// File holding the shared secret (one trailing newline is ignored).
    /// Without it, the secret is read from METAWAL_SECRET.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,

    /// Directory for the WAL, snapshots and the `meta` file (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,

    /// Address the replication listener binds, e.g. 0.0.0.0:7101.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,

    /// Another node of the cluster and its replication address, e.g.
    /// 2=10.0.0.2:7101 (repeat for each peer; host names are resolved once at start).
    #[arg(long = "peer", value_name = "ID=ADDR", value_parser = parse_peer)]
    peers: Vec<(NodeId, SocketAddr)>,

    /// acks=all needs at least this many in-sync replicas, leader included
    /// (capped at the cluster size) [default: 2].
    #[arg(long, value_name = "N")]
    min_insync_replicas: Option<usize>,

    /// Heartbeat interval on an idle link, in ms [default: 100].
    #[arg(long, value_name = "MS")]
    heartbeat_ms: Option<u64>,

    /// Election timeout T, in ms: a follower that has not heard its leader
    /// for a random time in [T, 2T) stands for election; a leader that has
    /// not heard a majority for T steps down [default: 1000].
    #[arg(long, value_name = "MS")]
    election_timeout_ms: Option<u64>,

    /// A peer silent this long is dropped and reconnected, in ms [default: 2000].
    #[arg(long, value_name = "MS")]
    session_timeout_ms: Option<u64>,

    /// A follower lagging this long leaves the ISR, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    replica_lag_ms: Option<u64>,

    /// A proposal not resolved in this time fails with a timeout, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    request_timeout_ms: Option<u64>,

    /// Take a snapshot every this many applied entries [default: 100000].
    #[arg(long, value_name = "N")]
    snapshot_every: Option<u64>,

    /// Log the node's status every this many seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    status_secs: u64,
}

/// Parse `ID=ADDR`; ADDR is `ip:port` or `host:port`.
fn parse_peer(s: &str) -> Result<(NodeId, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=ADDR (e.g. 2=10.0.0.2:7101), got {s:?}"))?;
    let id: NodeId = id
        .trim()
        .parse()
        .map_err(|_| format!("peer id {id:?} is not a number"))?;
    let addr = addr.trim();
    let resolved = addr
        .to_socket_addrs()
        .map_err(|e| format!("peer address {addr:?} is invalid: {e}"))?
        .next()
        .ok_or_else(|| format!("peer address {addr:?} resolves to nothing"))?;
    Ok((id, resolved))
}

/// The secret from `--secret-file` or `METAWAL_SECRET`; never empty.
fn read_secret(file: Option<&PathBuf>) -> Result<Vec<u8>, String> {
    let mut secret = match file {
        Some(path) => std::fs::read(path)
            .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?,
        None => match std::env::var_os(SECRET_ENV) {
            Some(v) => v.into_encoded_bytes(),
            None => {
                return Err(format!(
                    "no secret: pass --secret-file PATH or set {SECRET_ENV}"
                ))
            }
        },
    };
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    if secret.is_empty() {
        let from = file.map_or_else(|| SECRET_ENV.to_string(), |p| p.display().to_string());
        return Err(format!(
            "the secret from {from} is empty: replication connections are authenticated with it"
        ));
    }
    Ok(secret)
}

/// Build the node's configuration from the arguments.
fn node_config(args: &Args) -> Result<NodeConfig, String> {
    let secret = read_secret(args.secret_file.as_ref())?;
    let mut peers = BTreeMap::new();
    for &(id, addr) in &args.peers {
        if peers.insert(id, addr).is_some() {
            return Err(format!("--peer {id} is given more than once"));
        }
    }
    let mut replication = ReplicationConfig::default();
    if let Some(n) = args.min_insync_replicas {
        replication.min_insync_replicas = n;
    }
    let ms = Duration::from_millis;
    if let Some(v) = args.heartbeat_ms {
        replication.heartbeat_interval = ms(v);
    }
    if let Some(v) = args.election_timeout_ms {
        replication.election_timeout = ms(v);
    }
    if let Some(v) = args.session_timeout_ms {
        replication.session_timeout = ms(v);
    }
    if let Some(v) = args.replica_lag_ms {
        replication.replica_lag_time_max = ms(v);
    }
    if let Some(v) = args.request_timeout_ms {
        replication.request_timeout = ms(v);
    }
    if let Some(v) = args.snapshot_every {
        replication.snapshot_every = v;
    }
    let mut config = NodeConfig::new(
        args.node_id,
        args.cluster_id.clone(),
        secret,
        args.data_dir.clone(),
        args.listen,
    );
    config.peers = peers;
    config.replication = replication;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn log_status(s: &NodeStatus) {
    tracing::info!(
        node = s.node_id,
        role = %s.role,
        election = ?s.election_role,
        epoch = s.epoch,
        leader = ?s.leader,
        voted_for = ?s.voted_for,
        since_leader_ms = ?s.since_leader_contact.map(|d| d.as_millis()),
        elections = s.elections,
        pre_votes = s.pre_votes,
        log_end = s.log_end,
        durable = s.durable,
        commit = s.commit,
        applied = s.applied_offset,
        isr = s.isr_len,
        "status"
    );
    for f in &s.followers {
        tracing::info!(
            node = s.node_id,
            peer = f.peer,
            connected = f.connected,
            state = %f.state,
            acked = f.acked_offset,
            lag = f.lag,
            in_isr = f.in_isr,
            inflight_bytes = f.inflight_bytes,
            reconnects = f.reconnects,
            snapshots_sent = f.snapshots_sent,
            link_restarts = f.link_restarts,
            "follower"
        );
    }
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(config: NodeConfig, status_every: Option<Duration>) -> Result<(), String> {
    let node = Node::start(config)
        .await
        .map_err(|e| format!("cannot start the node: {e}"))?;
    tracing::info!(
        node = node.id(),
        addr = %node.replication_addr(),
        role = %node.role(),
        "metawal-node running; Ctrl-C to stop"
    );
    let status_loop = {
        let node = node.clone();
        async move {
            let Some(every) = status_every else {
                return std::future::pending::<()>().await;
            };
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match node.status().await {
                    Ok(s) => log_status(&s),
                    Err(e) => tracing::warn!(node = node.id(), error = %e, "no status"),
                }
            }
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = status_loop => {}
    }
    tracing::info!(node = node.id(), "shutting down");
    node.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = match node_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("metawal-node: error: {e}");
            return ExitCode::from(2);
        }
    };
    let status_every = (args.status_secs > 0).then(|| Duration::from_secs(args.status_secs));
    let system = actix::System::new();
    match system.block_on(run(config, status_every)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("metawal-node: error: {e}");
            ExitCode::FAILURE
        }
    }
}
