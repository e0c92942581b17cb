//! The Kafka admin front of a metawal node.
//!
//! Kafka operators' tools (the Java AdminClient, librdkafka and kcat,
//! kafka-python, `kafka-topics`, `kafka-metadata-quorum`) speak the Kafka
//! wire protocol. This crate serves the admin part of it from a
//! [`metawal_actors::Node`]: `ApiVersions`, `Metadata`, `CreateTopics`,
//! `DeleteTopics`, `CreatePartitions`, `DescribeCluster`, `DescribeQuorum`
//! (and `DescribeAcls`, empty: metawal has no ACLs). A broker that embeds
//! metawal mounts it on its own listener with [`serve_connection`], or lets
//! [`serve`] listen; `metawal-node --kafka ADDR` does the latter.
//!
//! What each request does to the cluster is the node's: a topic is created
//! with one atomic `propose_batch` (the topic, each partition's replicas,
//! leader and ISR) at `acks=all`; a follower answers `NOT_CONTROLLER` and
//! the client finds the leader through `Metadata.controller_id`; a
//! follower's `DescribeQuorum` is the leader's answer, forwarded. Which keys,
//! versions and error codes: `docs/kafka.md`.
//!
//! Module map: [`wire`] (bytes ⇄ typed requests, pure), `server` (sockets,
//! limits, timeouts), `front` (one request → one answer), `topics` and
//! `cluster` (the APIs), `assign` (replica placement and its checks),
//! `codes` (metawal's errors as Kafka's), `forward` (a follower's
//! `DescribeQuorum` asked of the leader).

#![deny(missing_docs)]

mod assign;
mod cluster;
mod codes;
mod config;
mod fence;
mod forward;
mod front;
mod server;
mod topics;
pub mod wire;

pub use config::{
    ConfigError, KafkaConfig, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_FRAME_BYTES, IO_TIMEOUT, MAX_REQUEST_TIMEOUT,
};
pub use fence::{FENCE_ASK_TIMEOUT, FENCE_REFRESH};
pub use forward::{FORWARDED_CLIENT_ID, FORWARD_TIMEOUT};
pub use server::{serve, serve_connection, KafkaServer, ServeError};
