//! Phase 2k (with phase 2): `CreateTopics` latency through the Kafka front
//! of the leader, one client, sequential, each topic one partition on the
//! three nodes; beside the same commands proposed through the library API
//! (`Node::propose_batch`), so that the difference is the front's cost (a
//! client's TCP round trip, decoding, encoding), not consensus.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use metawal_actors::{Acks, Command};
use metawal_kafka::{serve, KafkaConfig};
use metawal_testkit::TestCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::{Counts, Out};
use crate::report::Results;
use crate::stats::{new_hist, ns, us};

const VERSION: i16 = 7;

fn create_request(name: &str, correlation: i32) -> Result<Bytes, String> {
    let mut msg = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::CreateTopics as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("bench")))
        .encode(
            &mut msg,
            ApiKey::CreateTopics.request_header_version(VERSION),
        )
        .map_err(|e| e.to_string())?;
    CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(1)
            .with_replication_factor(3)])
        .encode(&mut msg, VERSION)
        .map_err(|e| e.to_string())?;
    let mut out = BytesMut::with_capacity(msg.len() + 4);
    out.put_u32(msg.len() as u32);
    out.put_slice(&msg);
    Ok(out.freeze())
}

async fn create(s: &mut TcpStream, name: &str, i: i32) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    s.write_all(&create_request(name, i)?).await.map_err(e)?;
    let mut len = [0; 4];
    s.read_exact(&mut len).await.map_err(e)?;
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.map_err(e)?;
    let mut b = Bytes::from(body);
    ResponseHeader::decode(
        &mut b,
        ApiKey::CreateTopics.response_header_version(VERSION),
    )
    .map_err(|e| e.to_string())?;
    let r = CreateTopicsResponse::decode(&mut b, VERSION).map_err(|e| e.to_string())?;
    match r.topics.first() {
        Some(t) if t.error_code == 0 => Ok(()),
        other => Err(format!("CreateTopics {name}: {other:?}")),
    }
}

/// The commands the front proposes for a one-partition topic on 1, 2, 3.
fn commands(name: &str) -> Vec<Command> {
    vec![
        Command::CreateTopic {
            name: name.into(),
            partition_count: 1,
            replication_factor: 3,
        },
        Command::AssignPartition {
            topic: name.into(),
            partition: 0,
            replicas: vec![1, 2, 3],
        },
        Command::SetPartitionLeader {
            topic: name.into(),
            partition: 0,
            leader: 1,
        },
        Command::UpdateIsr {
            topic: name.into(),
            partition: 0,
            isr: vec![1, 2, 3],
        },
    ]
}

pub async fn run(out: Out, c: &TestCluster, counts: Counts, r: &mut Results) -> Result<(), String> {
    let n = (counts.latency_writes / 10).max(20);
    out.progress(&format!(
        "[2k] CreateTopics: {n} through the Kafka front, {n} through propose_batch"
    ));
    let leader = c.try_node(1)?;
    let mut config = KafkaConfig::new("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?);
    for id in 1..=3 {
        config
            .advertise(id, &format!("127.0.0.1:{}", 9000 + id))
            .map_err(|e| e.to_string())?;
    }
    let server = serve(leader.clone(), config)
        .await
        .map_err(|e| e.to_string())?;
    let mut s = TcpStream::connect(server.local_addr())
        .await
        .map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let (mut front, mut api) = (new_hist(), new_hist());
    // Alternating, so both see the same machine.
    for i in 0..n {
        let t0 = Instant::now();
        create(&mut s, &format!("kafka-bench-{i}"), i as i32).await?;
        front.record(ns(t0.elapsed())).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        leader
            .propose_batch(commands(&format!("api-bench-{i}")), Acks::All)
            .await
            .map_err(|e| e.to_string())?;
        api.record(ns(t0.elapsed())).map_err(|e| e.to_string())?;
    }
    server.stop();
    r.kafka_create_topic_p50_us = us(&front, 0.5);
    r.kafka_create_topic_p99_us = us(&front, 0.99);
    r.api_create_topic_p50_us = us(&api, 0.5);
    r.api_create_topic_p99_us = us(&api, 0.99);
    out.progress(&format!(
        "      Kafka front p50 {:.0} us, p99 {:.0} us; propose_batch p50 {:.0} us, p99 {:.0} us",
        r.kafka_create_topic_p50_us,
        r.kafka_create_topic_p99_us,
        r.api_create_topic_p50_us,
        r.api_create_topic_p99_us
    ));
    Ok(())
}
