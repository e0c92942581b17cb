//! The Kafka front's flags (`--kafka`, `--kafka-advertised`,
//! `--peer-kafka`) and the front's configuration built from them.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args as ClapArgs;
use metawal_actors::tls::{http_client_config, http_server_config};
use metawal_actors::NodeId;
use metawal_kafka::KafkaConfig;

/// The Kafka front's flags (flattened into `metawal-node`'s).
#[derive(ClapArgs, Debug, Default)]
pub(crate) struct KafkaArgs {
    /// Serve the Kafka admin protocol (CreateTopics, Metadata,
    /// DescribeQuorum, …) on this address, for Kafka tools (kafka-topics,
    /// kcat, kafka-python). TLS with the node's certificate, unless the
    /// node runs with --insecure-plaintext.
    #[arg(long, env = "METAWAL_KAFKA", value_name = "ADDR")]
    pub(crate) kafka: Option<SocketAddr>,

    /// Serve the Kafka front on this inherited listening socket (bound to
    /// --kafka's address) instead of binding --kafka, as --listen-fd does.
    #[arg(long, env = "METAWAL_KAFKA_FD", value_name = "FD", requires = "kafka")]
    pub(crate) kafka_fd: Option<i32>,

    /// The HOST:PORT Kafka clients reach this node's front at (what
    /// Metadata lists) [default: --kafka's address].
    #[arg(
        long,
        env = "METAWAL_KAFKA_ADVERTISED",
        value_name = "HOST:PORT",
        requires = "kafka"
    )]
    pub(crate) kafka_advertised: Option<String>,

    /// Another node's Kafka front, e.g. 2=10.0.0.2:9092 (repeat for each
    /// peer): listed to clients as a broker.
    #[arg(long = "peer-kafka", env = "METAWAL_PEER_KAFKA", hide_env_values = true, value_name = "ID=HOST:PORT", value_parser = crate::config::parse_peer_http, value_delimiter = ',', requires = "kafka")]
    pub(crate) peer_kafka: Vec<(NodeId, String)>,
}

/// The address clients reach this node's front at, if `--kafka` is given:
/// `--kafka-advertised`, or `--kafka`'s address unless it is unspecified.
/// It goes into the bootstrap membership (`NodeConfig::kafka_addr`) as
/// well as into the front's own list.
pub(crate) fn own_advertised(args: &KafkaArgs) -> Result<Option<String>, String> {
    let Some(listen) = args.kafka else {
        return Ok(None);
    };
    match &args.kafka_advertised {
        Some(a) => Ok(Some(a.clone())),
        None if listen.ip().is_unspecified() => Err(format!(
            "--kafka {listen} listens on every address: give --kafka-advertised HOST:PORT, the address clients reach this node at"
        )),
        None => Ok(Some(listen.to_string())),
    }
}

/// The other nodes' fronts from `--peer-kafka` (one list can serve every
/// node: each skips its own entry).
pub(crate) fn peer_kafka(node: NodeId, args: &KafkaArgs) -> Vec<(NodeId, String)> {
    args.peer_kafka
        .iter()
        .filter(|(id, _)| *id != node)
        .cloned()
        .collect()
}

/// The front's configuration, if `--kafka` is given. `tls`: the node's
/// certificate files, or `None` with --insecure-plaintext.
pub(crate) fn kafka_config(
    node: NodeId,
    args: &KafkaArgs,
    tls: Option<&metawal_actors::tls::TlsFiles>,
) -> Result<Option<KafkaConfig>, String> {
    let Some(listen) = args.kafka else {
        return Ok(None);
    };
    let mut c = KafkaConfig::new(listen);
    if let Some(fd) = args.kafka_fd {
        c.listener = Some(crate::config::inherited_listener(fd, "--kafka-fd", listen)?);
    }
    if let Some(own) = own_advertised(args)? {
        c.advertise(node, &own).map_err(|e| e.to_string())?;
    }
    for (id, addr) in peer_kafka(node, args) {
        c.advertise(id, &addr).map_err(|e| e.to_string())?;
    }
    if let Some(files) = tls {
        let tls = http_server_config(files, None).map_err(|e| e.to_string())?;
        c.tls = Some(Arc::new(tls));
        // A follower forwards DescribeQuorum to the leader's front, whose
        // certificate chains to the same CA as every node's.
        let client = http_client_config(&files.ca, None).map_err(|e| e.to_string())?;
        c.forward_tls = Some(Arc::new(client));
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(Some(c))
}
