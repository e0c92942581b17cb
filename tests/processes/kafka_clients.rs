//! Kafka clients nobody here wrote against three `metawal-node` processes'
//! Kafka fronts, over TLS (issue 21): kafka-python's `KafkaAdminClient`
//! (pinned, in a virtual environment) and kcat (Debian's), both installed
//! by `tests/kafka/setup.sh` on first use.
//!
//! kafka-python, pointed at a follower, creates topics (by count and with
//! explicit assignments), lists, describes, grows and deletes them,
//! describes the cluster and the quorum (a follower's `DescribeQuorum` is
//! the leader's answer, forwarded over TLS), and gets a Kafka controller's
//! error code for each refusal; every node then holds every topic it
//! created; kcat, pointed at each node, lists the same brokers, topics and
//! partitions; after a kill -9 of the leader, the client's next
//! `CreateTopics` succeeds through the new controller.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metawal_testkit::procs::http::get_json;
use metawal_testkit::procs::{Cluster, ClusterOpts};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

/// The virtual environment with kafka-python, made (and kcat installed)
/// once per test run.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kafka-venv");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .expect("run tests/kafka/setup.sh");
        assert!(
            out.status.success(),
            "tests/kafka/setup.sh failed (it installs kafka-python from PyPI and kcat from Debian):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// Each voter's log end in the answer to a `DescribeQuorum` v2 sent to
/// `node` over TLS (trusting `ca`), as a Kafka client sends it. kafka-python
/// sends it to whichever broker it likes; this asks one node for sure.
fn quorum_log_ends(node: SocketAddr, ca: &Path) -> Vec<(i32, i64)> {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{
        ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, RequestHeader, ResponseHeader,
        TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use std::io::{Read, Write};

    let key = ApiKey::DescribeQuorum;
    let mut msg = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(2)
        .with_correlation_id(9)
        .with_client_id(Some(StrBytes::from_static_str("quorum-test")))
        .encode(&mut msg, key.request_header_version(2))
        .unwrap();
    DescribeQuorumRequest::default()
        .with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![
                PartitionData::default().with_partition_index(0)
            ])])
        .encode(&mut msg, 2)
        .unwrap();
    let mut frame = BytesMut::new();
    frame.put_u32(msg.len() as u32);
    frame.extend_from_slice(&msg);

    let config = metawal_actors::tls::http_client_config(ca, None).expect("a TLS client config");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(node).expect("connect to the Kafka front");
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    tcp.set_write_timeout(Some(LIMIT)).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(&frame).expect("send DescribeQuorum");
    let mut len = [0; 4];
    s.read_exact(&mut len).expect("an answer");
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("the answer's body");
    let mut b = bytes::Bytes::from(body);
    let header = ResponseHeader::decode(&mut b, key.response_header_version(2)).unwrap();
    assert_eq!(header.correlation_id, 9);
    let r = DescribeQuorumResponse::decode(&mut b, 2).unwrap();
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "{r:?}");
    p.current_voters
        .iter()
        .map(|v| (v.replica_id.0, v.log_end_offset))
        .collect()
}

/// Run one step of `tests/kafka/admin_client.py` against `bootstrap`;
/// its JSON answer.
fn kafka_python(step: &str, bootstrap: SocketAddr, ca: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/admin_client.py");
    let out = Command::new(venv().join("bin/python"))
        .arg(script)
        .arg(step)
        .arg(bootstrap.to_string())
        .arg(ca)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kafka-python step {step} against {bootstrap} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("step {step}: {e}: {stdout}"))
}

/// `kcat -L` against `node` over TLS: brokers, and each topic's partition
/// count.
fn kcat_list(node: SocketAddr, ca: &Path) -> (Vec<String>, BTreeMap<String, usize>) {
    let out = Command::new("kcat")
        .args(["-L", "-b", &node.to_string(), "-m", "15"])
        .args(["-X", "security.protocol=ssl"])
        .arg("-X")
        .arg(format!("ssl.ca.location={}", ca.display()))
        .args(["-X", "ssl.endpoint.identification.algorithm=none"])
        .output()
        .expect("run kcat");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kcat -L against {node} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let brokers = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("broker "))
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    let topics = text
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("topic \"")?;
            let (name, rest) = rest.split_once('"')?;
            let n = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((name.to_string(), n))
        })
        .collect();
    (brokers, topics)
}

/// Node `addr`'s topics and partition counts, from `/v1/topics`.
fn node_topics(addr: SocketAddr) -> Option<BTreeMap<String, u64>> {
    let (status, body) = get_json(addr, "/v1/topics", Duration::from_secs(5)).ok()?;
    (status == 200).then_some(())?;
    body["topics"]
        .as_array()?
        .iter()
        .map(|t| {
            Some((
                t["name"].as_str()?.to_string(),
                t["partition_count"].as_u64()?,
            ))
        })
        .collect()
}

/// Wait until every node in `nodes` holds exactly `want`.
fn wait_topics(c: &Cluster, nodes: &[u64], want: &BTreeMap<String, u64>) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let seen: Vec<_> = nodes
            .iter()
            .map(|&id| node_topics(c.node(id).http))
            .collect();
        if seen.iter().all(|s| s.as_ref() == Some(want)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes {nodes:?} do not all hold {want:?}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kafka_python_and_kcat_see_one_cluster_and_create_through_any_node() {
    venv();
    let mut c = Cluster::start(ClusterOpts {
        kafka: true,
        ..ClusterOpts::fast(3)
    });
    let ca = c.tls.as_ref().expect("a TLS cluster").ca.ca_path();
    let leader = c.wait_leader(LIMIT);
    let follower = (1..=3).find(|&i| i != leader).expect("a follower");

    // Through a follower: it answers NOT_CONTROLLER to writes, and the
    // client finds the leader through Metadata.controller_id.
    let out = kafka_python("admin", c.node(follower).kafka, &ca);
    assert_eq!(out["topics"], serde_json::json!(["orders", "payments"]));
    assert_eq!(out["controller"], serde_json::json!(leader));
    let want: BTreeMap<String, u64> = [("orders".to_string(), 5), ("payments".to_string(), 3)]
        .into_iter()
        .collect();
    wait_topics(&c, &[1, 2, 3], &want);

    // DescribeQuorum asked of a follower over TLS: the leader's figures
    // (the follower forwards it), every voter's log end known.
    let ends = quorum_log_ends(c.node(follower).kafka, &ca);
    let ids: Vec<i32> = ends.iter().map(|&(id, _)| id).collect();
    assert_eq!(ids, [1, 2, 3], "{ends:?}");
    assert!(ends.iter().all(|&(_, end)| end >= 1), "{ends:?}");

    // kcat against each node: the same brokers, topics and partitions.
    let views: Vec<_> = (1..=3).map(|id| kcat_list(c.node(id).kafka, &ca)).collect();
    let brokers: Vec<String> = (1..=3)
        .map(|id| format!("{id} at {}", c.node(id).kafka))
        .collect();
    for (i, (b, topics)) in views.iter().enumerate() {
        assert_eq!(b, &brokers, "node {}'s brokers", i + 1);
        let counts: BTreeMap<String, u64> =
            topics.iter().map(|(k, v)| (k.clone(), *v as u64)).collect();
        assert_eq!(counts, want, "node {}'s topics", i + 1);
    }

    // The leader dies; a client's next CreateTopics reaches the new
    // controller. Every survivor soon lists the same two brokers: the new
    // leader leaves out the node its links cannot reach, the other
    // survivor lists what the leader lists (as Kafka's brokers leave out a
    // broker the controller fenced).
    c.kill(leader);
    let survivor = c.wait_leader(LIMIT);
    let alive: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let want_brokers: Vec<String> = alive
        .iter()
        .map(|&id| format!("{id} at {}", c.node(id).kafka))
        .collect();
    for &id in &alive {
        let t0 = Instant::now();
        loop {
            let (brokers, _) = kcat_list(c.node(id).kafka, &ca);
            if brokers == want_brokers {
                break;
            }
            assert!(
                t0.elapsed() < LIMIT,
                "node {id} lists {brokers:?}, not {want_brokers:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let out = kafka_python("after-failover", c.node(survivor).kafka, &ca);
    let new_controller = out["controller"].as_u64().expect("a controller");
    assert_ne!(new_controller, leader);
    let mut want = want;
    want.insert("after-failover".into(), 2);
    wait_topics(&c, &alive, &want);
    assert!(
        c.node_failures().is_empty(),
        "a node died: {:?}",
        c.node_failures()
    );
}
