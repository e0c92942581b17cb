//! The Kafka front under bad input (issue 21): bytes that are not a
//! request, a frame over the limit, a frame that never completes, a client
//! that says nothing, keys and versions it does not serve. Each closes the
//! connection (or gets the protocol's answer: `ApiVersions` above its
//! range), nothing panics, nothing changes, and the front still serves the
//! next client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, MetadataRequest, MetadataResponse, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use metawal_actors::Acks;
use metawal_actors::Node;
use metawal_kafka::{serve, KafkaConfig, KafkaServer};
use metawal_testkit::{create_topic, fast_config, wait_until, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_millis(500);
const MAX_FRAME: usize = 4096;

async fn front(node: &Node) -> KafkaServer {
    let mut config = KafkaConfig::new("127.0.0.1:0".parse().unwrap());
    config.max_frame_bytes = MAX_FRAME;
    config.idle_timeout = IDLE;
    config.advertise(node.id(), "127.0.0.1:9").unwrap();
    serve(node.clone(), config).await.unwrap()
}

/// A request frame, length prefix included.
fn request(key: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
    let mut msg = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(11)
        .with_client_id(Some(StrBytes::from_static_str("bad-input-test")))
        .encode(&mut msg, key.request_header_version(version))
        .unwrap();
    body.encode(&mut msg, version).unwrap();
    let mut out = (msg.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&msg);
    out
}

/// Read one answer frame (its body after the length), within `LIMIT`.
async fn answer(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0; 4];
    tokio::time::timeout(LIMIT, s.read_exact(&mut len))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.expect("the answer's body");
    body
}

/// The connection ends (EOF or reset) within `LIMIT`, without an answer.
async fn closed(s: &mut TcpStream, what: &str) {
    let mut buf = [0; 64];
    let t0 = Instant::now();
    match tokio::time::timeout(LIMIT, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("{what}: answered {n} bytes instead of closing"),
        Err(_) => panic!("{what}: still open after {:?}", t0.elapsed()),
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// A Metadata request still gets its answer: the front serves on.
async fn still_serves(addr: SocketAddr) -> MetadataResponse {
    let mut s = connect(addr).await;
    // `topics: null`: every topic.
    let all = MetadataRequest::default().with_topics(None);
    s.write_all(&request(ApiKey::Metadata, 12, &all))
        .await
        .unwrap();
    let body = answer(&mut s).await;
    let mut b = bytes::Bytes::from(body);
    let _header = kafka_protocol::messages::ResponseHeader::decode(&mut b, 1).unwrap();
    MetadataResponse::decode(&mut b, 12).unwrap()
}

#[actix::test]
async fn bad_input_closes_the_connection_and_changes_nothing() {
    let mut c = TestCluster::new(1, &[], fast_config()).await;
    c.start_node(1).await;
    c.make_leader(1).await;
    let node = c.node(1).clone();
    let server = front(&node).await;
    let addr = server.local_addr();
    // A committed write first: the offset everything after must leave.
    let before = node
        .propose(create_topic("before", 1, 1), Acks::All)
        .await
        .unwrap();
    let view = node.view();
    wait_until("the write applied", LIMIT, || {
        let ok = view.applied_offset() >= before.offset;
        async move { ok }
    })
    .await;
    let applied = view.applied_offset();

    // Garbage: a length, then bytes that are no request header.
    let mut s = connect(addr).await;
    s.write_all(&[0, 0, 0, 6, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa])
        .await
        .unwrap();
    closed(&mut s, "garbage").await;

    // A well-formed request over the frame limit: closed, not answered.
    let topics = (0..200)
        .map(|i| {
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(
                Some(kafka_protocol::messages::TopicName(StrBytes::from_string(
                    format!("a-long-topic-name-to-fill-the-frame-{i}"),
                ))),
            )
        })
        .collect();
    let big = request(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(topics)),
    );
    assert!(big.len() > MAX_FRAME + 4);
    let mut s = connect(addr).await;
    s.write_all(&big).await.unwrap();
    closed(&mut s, "oversized frame").await;
    // A negative length is a huge one.
    let mut s = connect(addr).await;
    s.write_all(&(-1i32).to_be_bytes()).await.unwrap();
    closed(&mut s, "negative length").await;

    // A frame that never completes, and a client that sends nothing: the
    // idle timeout.
    let mut s = connect(addr).await;
    s.write_all(&[0, 0, 0, 100, 0, 3]).await.unwrap();
    closed(&mut s, "truncated frame").await;
    let mut s = connect(addr).await;
    closed(&mut s, "silent client").await;

    // An unknown key, a key not served, a version out of range.
    let mut unknown = BytesMut::new();
    unknown.put_u32(8);
    unknown.put_i16(31_000);
    unknown.put_i16(0);
    unknown.put_i32(1);
    let mut s = connect(addr).await;
    s.write_all(&unknown).await.unwrap();
    closed(&mut s, "unknown key").await;
    let mut s = connect(addr).await;
    s.write_all(&request(
        ApiKey::Produce,
        9,
        &kafka_protocol::messages::ProduceRequest::default(),
    ))
    .await
    .unwrap();
    closed(&mut s, "Produce").await;
    let mut old = BytesMut::new();
    old.put_u32(10);
    old.put_i16(ApiKey::CreateTopics as i16);
    old.put_i16(1);
    old.put_i32(1);
    old.put_i16(-1);
    let mut s = connect(addr).await;
    s.write_all(&old).await.unwrap();
    closed(&mut s, "CreateTopics v1").await;

    // ApiVersions above its range: the v0 answer with UNSUPPORTED_VERSION
    // (35), the connection open for the retry.
    let mut v99 = BytesMut::new();
    v99.put_u32(10);
    v99.put_i16(ApiKey::ApiVersions as i16);
    v99.put_i16(99);
    v99.put_i32(5);
    v99.put_i16(-1);
    let mut s = connect(addr).await;
    s.write_all(&v99).await.unwrap();
    let body = answer(&mut s).await;
    assert_eq!(&body[..4], &5i32.to_be_bytes(), "its correlation id");
    assert_eq!(&body[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    s.write_all(&request(
        ApiKey::ApiVersions,
        3,
        &kafka_protocol::messages::ApiVersionsRequest::default(),
    ))
    .await
    .unwrap();
    let body = answer(&mut s).await;
    assert_eq!(&body[4..6], &0i16.to_be_bytes(), "the retry at v3 succeeds");

    // A CreateTopics whose body is cut short changes nothing.
    let mut cut = request(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default().with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(kafka_protocol::messages::TopicName(
                    StrBytes::from_static_str("never"),
                ))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]),
    );
    let body_len = cut.len() - 4 - 6;
    cut.truncate(4 + body_len);
    cut[..4].copy_from_slice(&(body_len as u32).to_be_bytes());
    let mut s = connect(addr).await;
    s.write_all(&cut).await.unwrap();
    closed(&mut s, "cut CreateTopics").await;

    let meta = still_serves(addr).await;
    let names: Vec<String> = meta
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    assert_eq!(names, ["before"], "nothing was created");
    assert_eq!(meta.controller_id.0, 1);
    assert_eq!(node.view().applied_offset(), applied, "nothing was applied");
    server.stop();
    c.shutdown().await;
}

/// (id, host, port) of each broker a Metadata answer lists.
fn listed(meta: &MetadataResponse) -> Vec<(i32, String, i32)> {
    let mut out: Vec<_> = meta
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.to_string(), b.port))
        .collect();
    out.sort();
    out
}

fn kafka_addr(id: u64) -> String {
    format!("kafka-{id}.test:{}", 9090 + id)
}

#[actix::test]
async fn every_front_lists_the_kafka_addresses_the_membership_carries() {
    // Only node 1 is told any Kafka address (its own and its peers', as
    // `--kafka-advertised` and `--peer-kafka`); nodes 2 and 3 serve fronts
    // configured with none. What they list comes from the log.
    let mut c = TestCluster::new(3, &[], fast_config()).await;
    c.start_node_with(1, |cfg| {
        cfg.kafka_addr = Some(kafka_addr(1));
        cfg.peer_kafka = [2, 3].into_iter().map(|p| (p, kafka_addr(p))).collect();
        // Its first membership entry (the pin of the voters' directory
        // ids, which metawal-node always makes) logs its bootstrap.
        cfg.pin_directories = true;
    })
    .await;
    for id in [2, 3] {
        c.start_node(id).await;
    }
    c.make_leader(1).await;
    let leader = c.node(1).clone();
    let mut servers = Vec::new();
    for id in [2, 3] {
        let config = KafkaConfig::new("127.0.0.1:0".parse().unwrap());
        servers.push(serve(c.node(id).clone(), config).await.unwrap());
    }
    let expect = |ids: &[u64]| -> Vec<(i32, String, i32)> {
        ids.iter()
            .map(|&id| (id as i32, format!("kafka-{id}.test"), 9090 + id as i32))
            .collect()
    };
    let wait_listed = |addr: SocketAddr, want: Vec<(i32, String, i32)>| async move {
        let t0 = Instant::now();
        loop {
            let got = listed(&still_serves(addr).await);
            if got == want {
                return;
            }
            assert!(t0.elapsed() < LIMIT, "{addr} lists {got:?}, not {want:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // The bootstrap membership the leader logged carries node 1's flags.
    for s in &servers {
        wait_listed(s.local_addr(), expect(&[1, 2, 3])).await;
    }

    // A bad Kafka address is refused and changes nothing.
    let port4 = metawal_testkit::reserve();
    let member = |kafka: &str| metawal::membership::Member {
        node_id: 4,
        directory_id: metawal::membership::DirectoryId::UNKNOWN,
        replication_addr: port4.addr().to_string(),
        http_addr: String::new(),
        kafka_addr: kafka.to_string(),
    };
    let before = leader.members_in_force();
    let e = leader.add_learner(member("no-port")).await.unwrap_err();
    assert!(e.to_string().contains("Kafka address"), "{e}");
    assert_eq!(leader.members_in_force(), before);

    // A learner added with its address: every front lists it, with no
    // flag naming it anywhere.
    leader.add_learner(member(&kafka_addr(4))).await.unwrap();
    for s in &servers {
        wait_listed(s.local_addr(), expect(&[1, 2, 3, 4])).await;
    }
    for s in servers {
        s.stop();
    }
    c.shutdown().await;
}

/// `DescribeQuorum` v2 for `__cluster_metadata`-0, sent with `client_id`.
async fn describe_quorum(
    addr: SocketAddr,
    client_id: &'static str,
) -> kafka_protocol::messages::DescribeQuorumResponse {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
    let body = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let key = ApiKey::DescribeQuorum;
    let mut msg = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(2)
        .with_correlation_id(5)
        .with_client_id(Some(StrBytes::from_static_str(client_id)))
        .encode(&mut msg, key.request_header_version(2))
        .unwrap();
    body.encode(&mut msg, 2).unwrap();
    let mut s = connect(addr).await;
    let mut frame = BytesMut::with_capacity(4 + msg.len());
    frame.put_u32(msg.len() as u32);
    frame.extend_from_slice(&msg);
    s.write_all(&frame).await.unwrap();
    let mut b = bytes::Bytes::from(answer(&mut s).await);
    let header =
        kafka_protocol::messages::ResponseHeader::decode(&mut b, key.response_header_version(2))
            .unwrap();
    assert_eq!(header.correlation_id, 5);
    DescribeQuorumResponse::decode(&mut b, 2).unwrap()
}

/// Each voter's log end in a `DescribeQuorum` answer, by id.
fn log_ends(r: &kafka_protocol::messages::DescribeQuorumResponse) -> Vec<(i32, i64)> {
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.current_voters
        .iter()
        .map(|v| (v.replica_id.0, v.log_end_offset))
        .collect()
}

type Fronts = (
    std::collections::BTreeMap<u64, SocketAddr>,
    std::collections::BTreeMap<u64, KafkaServer>,
);

/// A front on each of nodes 1–3, each knowing every front's address (as
/// `--peer-kafka` tells).
async fn fronts(c: &TestCluster) -> Fronts {
    let mut listeners = std::collections::BTreeMap::new();
    for id in [1u64, 2, 3] {
        listeners.insert(id, std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    }
    let addrs: std::collections::BTreeMap<u64, SocketAddr> = listeners
        .iter()
        .map(|(&id, l)| (id, l.local_addr().unwrap()))
        .collect();
    let mut servers = std::collections::BTreeMap::new();
    for (id, listener) in listeners {
        let mut config = KafkaConfig::new(addrs[&id]);
        for (&other, a) in &addrs {
            config.advertise(other, &a.to_string()).unwrap();
        }
        listener.set_nonblocking(true).unwrap();
        config.listener = Some(metawal_actors::BoundListener::new(listener));
        servers.insert(id, serve(c.node(id).clone(), config).await.unwrap());
    }
    (addrs, servers)
}

/// The broker ids a front's Metadata lists, asked until they are `want`.
async fn wait_broker_ids(addr: SocketAddr, want: &[i32]) {
    let t0 = Instant::now();
    loop {
        let got: Vec<i32> = listed(&still_serves(addr).await)
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        if got == want {
            return;
        }
        assert!(t0.elapsed() < LIMIT, "{addr} lists {got:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix::test]
async fn a_follower_lists_the_brokers_the_leader_lists() {
    let mut c = TestCluster::new(3, &[], fast_config()).await;
    for id in [1, 2, 3] {
        c.start_node(id).await;
    }
    c.make_leader(1).await;
    let (addrs, servers) = fronts(&c).await;
    for id in [1, 2, 3] {
        wait_broker_ids(addrs[&id], &[1, 2, 3]).await;
    }
    // Node 3 dies: the leader's links find it unreachable and its front
    // leaves it out; so does node 2's, which cannot tell by itself.
    c.crash_node(3).await;
    wait_broker_ids(addrs[&1], &[1, 2]).await;
    wait_broker_ids(addrs[&2], &[1, 2]).await;
    for (_, s) in servers {
        s.stop();
    }
    c.shutdown().await;
}

#[actix::test]
async fn a_followers_describe_quorum_is_the_leaders_answer() {
    let mut c = TestCluster::new(3, &[], fast_config()).await;
    for id in [1, 2, 3] {
        c.start_node(id).await;
    }
    c.make_leader(1).await;
    c.node(1)
        .propose(create_topic("t", 1, 3), Acks::All)
        .await
        .unwrap();
    let (addrs, mut servers) = fronts(&c).await;

    // The leader's answer: every voter's acknowledged log end.
    let leader_view = log_ends(&describe_quorum(addrs[&1], "test").await);
    assert_eq!(leader_view.len(), 3);
    assert!(
        leader_view.iter().all(|&(_, end)| end >= 1),
        "{leader_view:?}"
    );
    // A follower's: the same, asked of the leader.
    let t0 = Instant::now();
    loop {
        let via_follower = log_ends(&describe_quorum(addrs[&2], "test").await);
        if via_follower.iter().all(|&(_, end)| end >= 1) {
            break;
        }
        assert!(t0.elapsed() < LIMIT, "node 2 answers {via_follower:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A request another front forwarded is answered where it lands, never
    // forwarded again: a follower's own view (log ends unknown).
    let own = log_ends(&describe_quorum(addrs[&3], metawal_kafka::FORWARDED_CLIENT_ID).await);
    assert!(own.iter().all(|&(_, end)| end == -1), "{own:?}");
    // The leader's front gone: the follower answers from its own view, in
    // bounded time.
    servers.remove(&1).unwrap().stop();
    let t0 = Instant::now();
    let fallback = log_ends(&describe_quorum(addrs[&2], "test").await);
    assert!(fallback.iter().all(|&(_, end)| end == -1), "{fallback:?}");
    assert!(t0.elapsed() <= metawal_kafka::FORWARD_TIMEOUT + LIMIT);
    for (_, s) in servers {
        s.stop();
    }
    c.shutdown().await;
}
