//! `metawal-node recover`: rewrite a stopped node's voter set when a
//! majority of the voters is permanently gone (docs/operations.md, "A lost
//! quorum"). Unsafe: it can lose acknowledged writes; it refuses to run
//! without `--accept-data-loss`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use metawal_actors::{recover_voters, NodeId};

/// Rewrite the voter set of this (stopped) node's data directory.
#[derive(Debug, Parser)]
#[command(
    name = "metawal-node recover",
    about = "Rewrite a stopped node's voter set after a majority of the voters is permanently lost. \
             UNSAFE: writes only the lost nodes held are gone. Run it on ONE surviving node (the one \
             with the longest log), then start it; start the other survivors as they are."
)]
pub(crate) struct RecoverArgs {
    /// This node's id (checked against the data directory).
    #[arg(long)]
    node_id: NodeId,
    /// The cluster id (checked against the data directory).
    #[arg(long)]
    cluster_id: String,
    /// The data directory of this node (the node must be stopped).
    #[arg(long)]
    data_dir: PathBuf,
    /// The new voters, this node among them, e.g. 1,3.
    #[arg(long, value_delimiter = ',', required = true)]
    voters: Vec<NodeId>,
    /// The replication address of a new voter the log does not list
    /// (needed if the cluster never logged its membership), e.g. 3=10.0.0.3:7101.
    #[arg(long = "peer", value_name = "ID=ADDR", value_parser = parse_peer, value_delimiter = ',')]
    peers: Vec<(NodeId, SocketAddr)>,
    /// Say that you checked the list in docs/operations.md and accept that
    /// writes only the lost nodes held are gone.
    #[arg(long)]
    accept_data_loss: bool,
}

fn parse_peer(s: &str) -> Result<(NodeId, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=IP:PORT"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| format!("peer id {id:?} is not a number"))?;
    let addr = addr
        .trim()
        .parse()
        .map_err(|_| format!("peer address {addr:?} is not IP:PORT"))?;
    Ok((id, addr))
}

/// Run `metawal-node recover ARGS…` (`argv` without the program name and
/// the word `recover`).
pub(crate) fn main(argv: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = RecoverArgs::parse_from(std::iter::once("metawal-node recover".into()).chain(argv));
    if !args.accept_data_loss {
        eprintln!(
            "metawal-node recover: refusing without --accept-data-loss. This makes node {} lead \
             voters {:?} without the majority that committed its log: any write only the lost \
             nodes held is gone, and a lost node that comes back must be wiped and re-added. Read \
             docs/operations.md (\"A lost quorum\") first.",
            args.node_id, args.voters
        );
        return ExitCode::from(2);
    }
    let peers: BTreeMap<NodeId, SocketAddr> = args.peers.iter().copied().collect();
    match recover_voters(
        &args.data_dir,
        args.node_id,
        &args.cluster_id,
        &args.voters,
        &peers,
    ) {
        Ok(r) => {
            println!(
                "node {}: voters {} -> {:?} (membership entry at offset {}, epoch {}); \
                 entries after offset {} were never known committed here. Start this node, \
                 then the other survivors.",
                args.node_id,
                r.old_voters
                    .map_or("(the flags')".to_string(), |v| format!("{v:?}")),
                r.new_voters,
                r.offset,
                r.epoch,
                r.commit
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("metawal-node recover: error: {e}");
            ExitCode::FAILURE
        }
    }
}
