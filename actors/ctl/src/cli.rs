//! The command line (clap): global options, subcommands and their flags.
//!
//! Why a module of its own: the flags are metawalctl's interface, parsed
//! and checked here before anything is sent (a bad flag is exit 2 with
//! nothing sent); the subcommand modules only see parsed values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use metawal::NodeId;

use crate::exit::EXIT_CODES_HELP;

/// Command-line client for a metawal cluster's HTTP API.
#[derive(Debug, Parser)]
#[command(
    name = "metawalctl",
    version,
    about = "Command-line client of a metawal cluster's HTTP API (docs/api.md)",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Nodes to talk to, in order: host:port, http://host:port or
    /// https://host:port, comma separated. host:port means https:// with
    /// --cacert, http:// without.
    #[arg(
        long,
        env = "METAWAL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:8081",
        value_parser = metawal_client::parse_endpoint,
        global = true
    )]
    pub endpoints: Vec<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Timeout of one request in milliseconds (connecting is capped at 2 s).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub timeout_ms: u64,
    /// HTTPS: trust the CA certificate(s) in this PEM file (the CA that
    /// signed the nodes' certificates; a bundle may hold several). With it,
    /// host:port endpoints use https://.
    #[arg(long, env = "METAWAL_CACERT", value_name = "PEM", global = true)]
    pub cacert: Option<PathBuf>,
    /// HTTPS: present this client certificate (PEM, leaf first) to nodes run
    /// with --http-client-ca. Needs --key and --cacert.
    #[arg(
        long,
        env = "METAWAL_CERT",
        value_name = "PEM",
        requires = "key",
        requires = "cacert",
        global = true
    )]
    pub cert: Option<PathBuf>,
    /// HTTPS: the private key of --cert (PEM). Needs --cert.
    #[arg(
        long,
        env = "METAWAL_KEY",
        value_name = "PEM",
        requires = "cert",
        global = true
    )]
    pub key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create, delete, list and describe topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Change one partition's replicas, leader or ISR.
    #[command(subcommand)]
    Partition(PartitionCmd),
    /// Show a node's status (or every endpoint's with --all).
    Status {
        /// Ask every endpoint, one table row each.
        #[arg(long)]
        all: bool,
    },
    /// Print committed entries as they arrive (GET /v1/watch).
    Watch(WatchArgs),
    /// Metadata leadership.
    #[command(subcommand)]
    Leader(LeaderCmd),
    /// The cluster's members: list, add a learner, promote, remove.
    #[command(subcommand)]
    Member(MemberCmd),
}

impl Cmd {
    /// Whether the command may change the log (for the advice on failure).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Cmd::Topic(TopicCmd::Create { .. } | TopicCmd::Delete { .. })
                | Cmd::Partition(_)
                | Cmd::Leader(_)
                | Cmd::Member(
                    MemberCmd::Add { .. } | MemberCmd::Promote { .. } | MemberCmd::Remove { .. }
                )
        )
    }
}

/// `watch …`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// First offset to print (default: only entries after the node's applied offset).
    #[arg(long)]
    pub from: Option<u64>,
    /// Stop after this many entries.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds in all. Without --count that is a normal
    /// end (exit 0); with --count, fewer entries than asked is exit 6.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
}

/// `topic …`
#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic (with --assign: also place its partitions, in one atomic batch).
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: u32,
        /// Replicas per partition.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        replication_factor: u32,
        /// Also assign replicas round-robin over the brokers, set each partition's
        /// leader (first replica) and ISR (all replicas), in the same log entry.
        #[arg(long)]
        assign: bool,
        /// Broker ids for --assign (default: the cluster's node ids from GET /v1/status).
        #[arg(long, value_delimiter = ',', requires = "assign", value_parser = parse_node_id)]
        brokers: Vec<NodeId>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// List topics.
    List {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Show one topic's partitions.
    Describe {
        /// Topic name.
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// `partition …`
#[derive(Debug, Subcommand)]
pub enum PartitionCmd {
    /// Set a partition's replica list.
    Assign {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Broker ids, comma separated.
        #[arg(long, value_delimiter = ',', required = true, value_parser = parse_node_id)]
        replicas: Vec<NodeId>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Set a partition's leader (one of its replicas).
    Leader {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The new leader's broker id.
        #[arg(long, value_parser = parse_node_id)]
        leader: NodeId,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Set a partition's in-sync replicas.
    Isr {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Broker ids, comma separated.
        #[arg(long, value_delimiter = ',', required = true, value_parser = parse_node_id)]
        isr: Vec<NodeId>,
        #[command(flatten)]
        write: WriteArgs,
    },
}

/// `leader …`
#[derive(Debug, Subcommand)]
pub enum LeaderCmd {
    /// Hand metadata leadership to another node.
    Transfer {
        /// The node that should lead.
        #[arg(long, value_parser = parse_node_id)]
        to: NodeId,
    },
}

/// `member …`
#[derive(Debug, Subcommand)]
pub enum MemberCmd {
    /// List the voters and learners (GET /v1/members).
    List,
    /// Add a learner: an empty node started with --join (POST /v1/members).
    Add {
        /// The new node's id (never one a member had: ids are not reused).
        #[arg(long, value_parser = parse_node_id)]
        id: NodeId,
        /// Where the new node's replication listener is (IP:PORT).
        #[arg(long, value_name = "IP:PORT")]
        replication_addr: String,
        /// Where the new node's HTTP API is (HOST:PORT), for redirects.
        #[arg(long, value_name = "HOST:PORT", default_value = "")]
        http_addr: String,
        /// Where Kafka clients reach the new node's Kafka front
        /// (HOST:PORT, its --kafka-advertised): every node's front lists
        /// it as a broker.
        #[arg(long, value_name = "HOST:PORT", default_value = "")]
        kafka_addr: String,
        /// The new node's directory id (32 hex digits; its status shows
        /// it); checked from then on.
        #[arg(long, value_name = "HEX")]
        directory_id: Option<String>,
    },
    /// Make a learner a voter once it is caught up.
    Promote {
        /// The learner.
        #[arg(value_parser = parse_node_id)]
        id: NodeId,
        /// How long to wait for it to catch up, in ms.
        #[arg(long, default_value_t = 10_000)]
        wait_ms: u64,
    },
    /// Remove a learner or a voter (not the leader: transfer first).
    Remove {
        /// The member.
        #[arg(value_parser = parse_node_id)]
        id: NodeId,
    },
}

/// Options of every write.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// When the server answers: all (committed and on disk on every ISR member),
    /// leader (on the leader's disk), none (appended).
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub acks: AcksArg,
}

/// `acks=` of a write, as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    /// Committed, and on disk on every in-sync replica.
    All,
    /// On the leader's disk.
    Leader,
    /// Appended on the leader.
    None,
}

impl From<AcksArg> for metawal_client::Acks {
    fn from(a: AcksArg) -> Self {
        match a {
            AcksArg::All => metawal_client::Acks::All,
            AcksArg::Leader => metawal_client::Acks::Leader,
            AcksArg::None => metawal_client::Acks::None,
        }
    }
}

/// Options of the topic reads.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Wait until the node has applied this offset (pass a write's offset to
    /// read your own write on a follower).
    #[arg(long)]
    pub min_offset: Option<u64>,
    /// Ask the leader to confirm its leadership with a quorum first.
    #[arg(long)]
    pub linearizable: bool,
}

/// Parses a broker / node id (≥ 1).
pub fn parse_node_id(s: &str) -> Result<NodeId, String> {
    match s.trim().parse::<NodeId>() {
        Ok(id) if id >= 1 => Ok(id),
        _ => Err(format!("{s:?} is not a node id (an integer >= 1)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn node_ids_are_positive() {
        assert_eq!(parse_node_id("3").unwrap(), 3);
        assert!(parse_node_id("0").is_err());
        assert!(parse_node_id("-1").is_err());
        assert!(parse_node_id("x").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "metawalctl",
            "--endpoints",
            "127.0.0.1:8081,http://127.0.0.1:8082",
            "topic",
            "create",
            "t",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
            "--assign",
            "--brokers",
            "1,2,3",
            "--acks",
            "leader",
        ])
        .unwrap();
        // The scheme of host:port is decided in `run` (https with --cacert).
        assert_eq!(
            cli.endpoints,
            vec!["127.0.0.1:8081", "http://127.0.0.1:8082"]
        );
        assert!(Cli::try_parse_from([
            "metawalctl",
            "topic",
            "create",
            "t",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
            "--brokers",
            "1"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["metawalctl", "--endpoints", "ftp://x:1", "status"]).is_err());
    }

    #[test]
    fn watch_takes_a_timeout() {
        let cli = Cli::try_parse_from([
            "metawalctl",
            "watch",
            "--from",
            "1",
            "--count",
            "10",
            "--timeout",
            "5",
        ])
        .unwrap();
        let Cmd::Watch(w) = cli.command else {
            panic!("not watch")
        };
        assert_eq!((w.from, w.count, w.timeout), (Some(1), Some(10), Some(5)));
        assert!(Cli::try_parse_from(["metawalctl", "watch", "--timeout", "0"]).is_err());
    }

    #[test]
    fn tls_flags_parse_and_go_together() {
        let cli = Cli::try_parse_from([
            "metawalctl",
            "--endpoints",
            "n1:8081,https://n2:8082",
            "--cacert",
            "ca.pem",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "status",
        ])
        .unwrap();
        assert_eq!(cli.cacert.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(cli.cert.as_deref(), Some(Path::new("c.pem")));
        assert_eq!(cli.key.as_deref(), Some(Path::new("k.pem")));
        assert_eq!(cli.endpoints, vec!["n1:8081", "https://n2:8082"]);
        // Global: after the subcommand too.
        let cli = Cli::try_parse_from(["metawalctl", "status", "--cacert", "ca.pem"]).unwrap();
        assert_eq!(cli.cacert.as_deref(), Some(Path::new("ca.pem")));
        // --cert without --key, --key without --cert, either without --cacert:
        // clap's usage error (exit code 2).
        for args in [
            &["--cacert", "ca.pem", "--cert", "c.pem"][..],
            &["--cacert", "ca.pem", "--key", "k.pem"][..],
            &["--cert", "c.pem", "--key", "k.pem"][..],
        ] {
            let err = Cli::try_parse_from(
                std::iter::once("metawalctl")
                    .chain(args.iter().copied())
                    .chain(["status"]),
            )
            .unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
            assert!(
                err.to_string().contains("--key")
                    || err.to_string().contains("--cert")
                    || err.to_string().contains("--cacert"),
                "{args:?}: {err}"
            );
        }
    }
}
