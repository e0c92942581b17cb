//! `metawal-node`: run one metawal node as a process.
//!
//! ```text
//! METAWAL_SECRET=s3cret metawal-node --node-id 1 --cluster-id prod \
//!     --data-dir /var/lib/metawal --listen 0.0.0.0:7101 \
//!     --peer 2=10.0.0.2:7101 --peer 3=10.0.0.3:7101
//! ```
//!
//! `metawal-node recover …` is the offline command that rewrites a stopped
//! node's voter set after a lost quorum (`recover_cmd.rs`).
//!
//! It starts an actix System, starts the [`Node`] on it, logs with
//! `tracing-subscriber` (`RUST_LOG`, default `info`), logs the node's status
//! every `--status-secs`, and shuts the node down gracefully on Ctrl-C or
//! SIGTERM. See `docs/operations.md`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use metawal_actors::http::{serve, HttpConfig};
use metawal_actors::{Node, NodeConfig, NodeStatus};
use tracing_subscriber::EnvFilter;

mod config;
mod join;
mod kafka_args;
mod recover_cmd;

use config::{http_config, node_config, Args};

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

async fn run(
    config: NodeConfig,
    http: Option<HttpConfig>,
    kafka: Option<metawal_kafka::KafkaConfig>,
    status_every: Option<Duration>,
) -> Result<(), String> {
    let node = Node::start(config)
        .await
        .map_err(|e| format!("cannot start the node: {e}"))?;
    if http.as_ref().is_some_and(|c| c.tls.is_none()) {
        tracing::warn!(
            node = node.id(),
            "the HTTP API is plaintext (--insecure-plaintext): requests and answers can be read \
             and altered on the network path"
        );
    }
    let http = match http {
        Some(c) => match serve(node.clone(), c).await {
            Ok(h) => Some(h),
            Err(e) => {
                // Fail-stop: a node asked to serve clients that cannot is
                // misconfigured; it leaves the cluster cleanly and says why.
                node.shutdown().await;
                return Err(e.to_string());
            }
        },
        None => None,
    };
    let kafka = match kafka {
        Some(c) => {
            if c.tls.is_none() {
                tracing::warn!(
                    node = node.id(),
                    "the Kafka front is plaintext (--insecure-plaintext)"
                );
            }
            match metawal_kafka::serve(node.clone(), c).await {
                Ok(k) => Some(k),
                Err(e) => {
                    // Fail-stop, as for the HTTP API.
                    node.shutdown().await;
                    return Err(e.to_string());
                }
            }
        }
        None => None,
    };
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
    // Resign first (in-flight writes get their answers), then stop HTTP.
    if let Some(k) = kafka {
        k.stop();
    }
    node.shutdown().await;
    if let Some(h) = http {
        h.stop().await;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    if std::env::args_os().nth(1).is_some_and(|a| a == "recover") {
        // The offline command: program name and `recover` skipped.
        let _ = argv.next();
        let _ = argv.next();
        return recover_cmd::main(argv);
    }
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
    let http = match http_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("metawal-node: error: {e}");
            return ExitCode::from(2);
        }
    };
    let tls = match config::tls_files(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("metawal-node: error: {e}");
            return ExitCode::from(2);
        }
    };
    let kafka = match kafka_args::kafka_config(args.node_id, &args.kafka, tls.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("metawal-node: error: {e}");
            return ExitCode::from(2);
        }
    };
    let status_every = (args.status_secs > 0).then(|| Duration::from_secs(args.status_secs));
    let system = actix::System::new();
    match system.block_on(run(config, http, kafka, status_every)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("metawal-node: error: {e}");
            ExitCode::FAILURE
        }
    }
}
