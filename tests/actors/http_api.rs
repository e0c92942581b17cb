//! The HTTP API (docs/api.md) on an in-process cluster: writes and
//! batches, redirects from followers, every refusal with its status and
//! nothing appended (garbage, unknown fields, oversized bodies, an invalid
//! command in a batch, too few replicas), read-your-writes and
//! linearizable reads, the watch stream (from any offset, 410 below the log
//! start, a reader that never reads is cut off while the node keeps
//! serving, the watcher limit), status, health, leader transfer, metrics,
//! and the `X-Metawal-*` headers on every answer.
//!
//! The client is blocking (ureq) and runs on `spawn_blocking` threads, so
//! it never blocks the test's actix runtime.

use metawal_testkit as common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{create_topic, fast_config, reserve, wait_until, ReservedPort, TestCluster};
use metawal_actors::http::{serve, HttpConfig, HttpServer};
use metawal_actors::{Acks, Command, NodeId, ReplicationConfig};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(10);

/// One HTTP answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }
}

/// `method url` with `body`, redirects not followed.
async fn call(method: &'static str, url: String, body: Option<Vec<u8>>) -> Resp {
    tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(15))
            .build();
        let req = agent.request(method, &url);
        let res = match body {
            Some(b) => req.send_bytes(&b),
            None => req.call(),
        };
        let res = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let status = res.status();
        let headers = res
            .headers_names()
            .into_iter()
            .filter_map(|n| Some((n.clone(), res.header(&n)?.to_string())))
            .collect();
        let body = res.into_string().unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    })
    .await
    .expect("client thread")
}

async fn get(url: String) -> Resp {
    call("GET", url, None).await
}

async fn post(url: String, body: &str) -> Resp {
    call("POST", url, Some(body.as_bytes().to_vec())).await
}

/// A cluster with the HTTP API on every node.
struct ApiCluster {
    c: TestCluster,
    http: BTreeMap<NodeId, HttpServer>,
}

impl ApiCluster {
    async fn start(
        n: u64,
        replication: ReplicationConfig,
        f: impl Fn(&mut HttpConfig),
    ) -> ApiCluster {
        let c = TestCluster::start(n, &[], replication).await;
        let ports: BTreeMap<NodeId, ReservedPort> = (1..=n).map(|id| (id, reserve())).collect();
        let addrs: BTreeMap<NodeId, SocketAddr> =
            ports.iter().map(|(&id, p)| (id, p.addr())).collect();
        let mut http = BTreeMap::new();
        for id in 1..=n {
            let mut cfg = HttpConfig::new(addrs[&id]);
            cfg.listener = Some(ports[&id].bound().expect("listen on a reserved port"));
            cfg.peer_http = addrs
                .iter()
                .filter(|(p, _)| **p != id)
                .map(|(p, a)| (*p, a.to_string()))
                .collect();
            f(&mut cfg);
            let server = serve(c.node(id).clone(), cfg).await.expect("HTTP serves");
            http.insert(id, server);
        }
        ApiCluster { c, http }
    }

    fn url(&self, id: NodeId, path: &str) -> String {
        format!("http://{}{path}", self.http[&id].addr())
    }

    async fn log_end(&self) -> u64 {
        self.c.node(1).status().await.unwrap().log_end
    }

    async fn stop(self) {
        for (_, h) in self.http {
            h.stop().await;
        }
        self.c.shutdown().await;
    }
}

const CREATE: &str =
    r#"{"CreateTopic":{"name":"orders","partition_count":3,"replication_factor":3}}"#;

#[actix::test]
async fn writes_batches_and_redirects_with_the_headers_on_every_answer() {
    let a = ApiCluster::start(3, fast_config(), |_| {}).await;
    let r = post(a.url(1, "/v1/commands?acks=all"), CREATE).await;
    assert_eq!(r.status, 200, "{r:?}");
    let offset = r.json()["offset"].as_u64().unwrap();
    assert_eq!(r.json()["epoch"].as_u64(), Some(a.c.node(1).epoch()));
    assert_eq!(r.headers["x-metawal-leader"], "1");
    assert_eq!(
        r.headers["x-metawal-epoch"],
        a.c.node(1).epoch().to_string()
    );
    // The applied offset at answer time: an acks=all write is committed
    // and durable on the ISR when it returns, not necessarily applied here
    // yet (docs/api.md: read with min_offset for that).
    let applied: u64 = r.headers["x-metawal-applied"].parse().unwrap();
    assert!(
        applied <= offset,
        "applied {applied} past the log end {offset}"
    );
    let r = get(a.url(
        1,
        &format!("/v1/topics/orders?min_offset={offset}&timeout_ms=5000"),
    ))
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.headers["x-metawal-applied"].parse::<u64>().unwrap() >= offset);

    // A batch: one entry, every command applied.
    let batch = r#"[{"CreateTopic":{"name":"pay","partition_count":2,"replication_factor":2}},
        {"AssignPartition":{"topic":"pay","partition":0,"replicas":[1,2]}},
        {"SetPartitionLeader":{"topic":"pay","partition":0,"leader":2}}]"#;
    let r = post(a.url(1, "/v1/commands?acks=leader"), batch).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["offset"].as_u64(), Some(offset + 1));

    // A follower redirects to the leader's same URL, query included.
    let r = post(a.url(3, "/v1/commands?acks=all"), CREATE).await;
    assert_eq!(r.status, 307, "{r:?}");
    assert_eq!(r.headers["location"], a.url(1, "/v1/commands?acks=all"));
    assert_eq!(r.headers["x-metawal-leader"], "1");

    // Read your write on a follower, then the topic's partitions.
    let r = get(a.url(
        3,
        &format!("/v1/topics/pay?min_offset={}&timeout_ms=5000", offset + 1),
    ))
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json()["partitions"][0],
        json!({"partition": 0, "replicas": [1, 2], "leader": 2, "isr": [2]})
    );
    let r = get(a.url(2, "/v1/topics?min_offset=0")).await;
    let topics = r.json();
    let names: Vec<&str> = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["orders", "pay"]);
    // Unknown routes and topics answer in the error shape, with headers.
    let r = get(a.url(2, "/v1/topics/nope")).await;
    assert_eq!((r.status, r.code().as_str()), (404, "unknown_topic"));
    assert!(r.headers.contains_key("x-metawal-applied"));
    let r = get(a.url(2, "/v2/nothing")).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    a.stop().await;
}

#[actix::test]
async fn bad_writes_are_refused_with_their_status_and_append_nothing() {
    let a = ApiCluster::start(3, fast_config(), |c| c.body_limit_bytes = 4096).await;
    assert_eq!(post(a.url(1, "/v1/commands"), CREATE).await.status, 200);
    let end = a.log_end().await;
    let big = format!(
        "[{}]",
        vec![r#"{"DeleteTopic":{"name":"orders"}}"#; 200].join(",")
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("garbage", "\u{1}{{not json".into(), 400, "invalid_json"),
        ("empty body", String::new(), 400, "invalid_json"),
        (
            "unknown field",
            r#"{"DeleteTopic":{"name":"orders","force":true}}"#.into(),
            400,
            "invalid_json",
        ),
        (
            "control entry",
            r#"{"LeaderChange":{"leader":3,"epoch":99}}"#.into(),
            400,
            "invalid_json",
        ),
        (
            "invalid command in a batch",
            r#"[{"DeleteTopic":{"name":"orders"}},{"UpdateIsr":{"topic":"orders","partition":0,"isr":[]}}]"#.into(),
            400,
            "invalid_command",
        ),
        ("empty batch", "[]".into(), 400, "invalid_command"),
        ("over the body limit", big, 413, "body_too_large"),
    ];
    for (what, body, status, code) in cases {
        let r = post(a.url(1, "/v1/commands"), &body).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{what}: {r:?}"
        );
        assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = post(a.url(1, "/v1/commands?acks=most"), CREATE).await;
    assert_eq!((r.status, r.code().as_str()), (400, "bad_parameter"));
    assert_eq!(a.log_end().await, end, "nothing was appended");
    assert!(a.c.node(1).view().topic("orders").is_some());
    a.stop().await;
}

#[actix::test]
async fn an_entry_above_the_record_limit_is_413_and_too_few_replicas_is_503() {
    let mut cfg = fast_config();
    cfg.min_insync_replicas = 3;
    let a = ApiCluster::start(3, cfg, |c| c.body_limit_bytes = 4 * 1024 * 1024).await;
    let create = r#"{"CreateTopic":{"name":"wide","partition_count":3000,"replication_factor":3}}"#;
    assert_eq!(post(a.url(1, "/v1/commands"), create).await.status, 200);
    let end = a.log_end().await;
    let assign: Vec<String> = (0..3000)
        .map(|p| {
            format!(
                r#"{{"AssignPartition":{{"topic":"wide","partition":{p},"replicas":[1,2,3]}}}}"#
            )
        })
        .collect();
    let r = post(a.url(1, "/v1/commands"), &format!("[{}]", assign.join(","))).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (413, "entry_too_large"),
        "{r:?}"
    );
    assert_eq!(a.log_end().await, end);

    // One follower down: the ISR shrinks below 3 and acks=all is refused
    // with 503 and Retry-After, nothing appended; acks=leader still works.
    let mut a = a;
    a.c.crash_node(3).await;
    a.c.wait_isr_of(1, 2, LIMIT).await;
    let r = post(a.url(1, "/v1/commands?acks=all"), CREATE).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "not_enough_replicas"),
        "{r:?}"
    );
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(a.log_end().await, end);
    assert_eq!(
        post(a.url(1, "/v1/commands?acks=leader"), CREATE)
            .await
            .status,
        200
    );
    a.stop().await;
}

#[actix::test]
async fn reads_wait_for_an_offset_or_a_quorum_and_say_when_they_cannot() {
    let a = ApiCluster::start(3, fast_config(), |_| {}).await;
    let r = get(a.url(2, "/v1/topics?min_offset=1000000&timeout_ms=100")).await;
    assert_eq!((r.status, r.code().as_str()), (504, "not_applied"), "{r:?}");
    let r = get(a.url(2, "/v1/topics?linearizable=true")).await;
    assert_eq!(r.status, 307);
    assert_eq!(
        r.headers["location"],
        a.url(1, "/v1/topics?linearizable=true")
    );
    let w = post(a.url(1, "/v1/commands"), CREATE).await;
    assert_eq!(w.status, 200);
    let r = get(a.url(1, "/v1/topics/orders?linearizable=true")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["applied_offset"].as_u64() >= w.json()["offset"].as_u64());
    let r = get(a.url(1, "/v1/topics?min_offset=abc")).await;
    assert_eq!((r.status, r.code().as_str()), (400, "bad_parameter"));
    a.stop().await;
}

/// The `data:` payloads of the `entry` events in an SSE text.
fn entry_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|ev| ev.contains("event: entry"))
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// Read an SSE stream until `done(text)`, for at most `limit`.
fn read_sse(addr: SocketAddr, path: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let deadline = Instant::now() + limit;
    let mut text = String::new();
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline && !done(&text) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    text
}

#[actix::test]
async fn watch_streams_the_log_from_any_offset_and_410_below_its_start() {
    let mut cfg = fast_config();
    cfg.snapshot_every = 20;
    cfg.segment_bytes = 4096;
    let a = ApiCluster::start(3, cfg, |_| {}).await;
    for i in 0..5 {
        let r = post(
            a.url(1, "/v1/commands"),
            &format!(
                r#"{{"CreateTopic":{{"name":"w{i}","partition_count":1,"replication_factor":1}}}}"#
            ),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let end = a.log_end().await;
    common::wait_converged(&a.c, &[1, 2, 3], LIMIT).await;
    // From offset 2 on a follower: every entry in order, ids = offsets.
    let addr = a.http[&2].addr();
    let want = end - 1;
    let text = tokio::task::spawn_blocking(move || {
        read_sse(addr, "/v1/watch?from=2", LIMIT, |t| {
            entry_events(t).len() as u64 >= want
        })
    })
    .await
    .unwrap();
    let events = entry_events(&text);
    let offsets: Vec<u64> = events.iter().filter_map(|e| e["offset"].as_u64()).collect();
    assert_eq!(offsets, (2..=end).collect::<Vec<_>>(), "{text}");
    assert!(text.contains(&format!("id: {end}\n")));

    // Enough entries to compact the log: from=1 is gone.
    for i in 0..300 {
        let name = format!("compact-me-{i}");
        a.c.node(1)
            .propose(create_topic(&name, 1, 1), Acks::Leader)
            .await
            .unwrap();
    }
    let url = a.url(1, "/v1/watch?from=1");
    let deadline = Instant::now() + LIMIT;
    let mut last = get(url.clone()).await;
    while last.status != 410 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = get(url.clone()).await;
    }
    assert_eq!(last.status, 410, "{last:?}");
    let r = last;
    assert_eq!(r.code(), "compacted");
    let log_start = r.json()["detail"]["log_start"].as_u64().unwrap();
    assert!(log_start > 1);
    // The snapshot is the base to resume from.
    let snap = get(a.url(1, "/v1/snapshot")).await.json();
    assert!(snap["offset"].as_u64().unwrap() + 1 >= log_start);
    assert!(snap["topics"].as_array().unwrap().len() >= 300);
    a.stop().await;
}

#[actix::test]
async fn a_watch_reader_that_never_reads_is_cut_off_and_the_node_keeps_serving() {
    let a = ApiCluster::start(3, fast_config(), |c| {
        c.watch_stall = Duration::from_millis(300);
        c.max_watchers = 2;
    })
    .await;
    let long = "x".repeat(200);
    let create = format!(
        r#"{{"CreateTopic":{{"name":"{long}","partition_count":1000,"replication_factor":1}}}}"#
    );
    assert_eq!(post(a.url(1, "/v1/commands"), &create).await.status, 200);
    let from = a.log_end().await + 1;

    // A client that asks for the stream with a tiny receive buffer and
    // never reads it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(a.http[&1].addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stuck,
        format!("GET /v1/watch?from={from} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    wait_until("the stuck watcher to be counted", LIMIT, || async {
        metric(&a, "metawal_watchers").await >= 1.0
    })
    .await;

    // About 8 MB of events (each ~70 KB of JSON), far more than the socket
    // buffers hold. Every write is answered promptly all along.
    let mut slowest = Duration::ZERO;
    for b in 0..110 {
        let commands: Vec<Command> = (0..250)
            .map(|p| Command::AssignPartition {
                topic: long.clone(),
                partition: (b * 7 + p) % 1000,
                replicas: vec![1 + (p as u64 % 3)],
            })
            .collect();
        let t = Instant::now();
        a.c.node(1)
            .propose_batch(commands, Acks::All)
            .await
            .unwrap();
        slowest = slowest.max(t.elapsed());
    }
    assert!(slowest < Duration::from_secs(2), "a write took {slowest:?}");
    wait_until("the stuck watcher to be cut off", LIMIT, || async {
        metric(&a, "metawal_watch_cutoffs_total").await >= 1.0
    })
    .await;
    // The slot is free again: two new watchers fit under max_watchers = 2.
    drop(stuck);
    wait_until("the cut-off watcher to release its slot", LIMIT, || async {
        metric(&a, "metawal_watchers").await == 0.0
    })
    .await;
    let addr = a.http[&1].addr();
    let from2 = from + 100;
    let text = tokio::task::spawn_blocking(move || {
        read_sse(addr, &format!("/v1/watch?from={from2}"), LIMIT, |t| {
            !entry_events(t).is_empty()
        })
    })
    .await
    .unwrap();
    assert_eq!(entry_events(&text)[0]["offset"].as_u64(), Some(from2));
    a.stop().await;
}

#[actix::test]
async fn a_cut_off_reader_gets_a_final_event_saying_where_to_resume() {
    let a = ApiCluster::start(1, fast_config(), |c| {
        c.watch_stall = Duration::from_millis(200)
    })
    .await;
    let long = "y".repeat(200);
    let create = format!(
        r#"{{"CreateTopic":{{"name":"{long}","partition_count":1000,"replication_factor":1}}}}"#
    );
    assert_eq!(post(a.url(1, "/v1/commands"), &create).await.status, 200);
    for b in 0..110 {
        let commands: Vec<Command> = (0..250)
            .map(|p| Command::AssignPartition {
                topic: long.clone(),
                partition: (b + p) % 1000,
                replicas: vec![1],
            })
            .collect();
        a.c.node(1)
            .propose_batch(commands, Acks::All)
            .await
            .unwrap();
    }
    let addr = a.http[&1].addr();
    let text = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET /v1/watch?from=1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        // Stall long enough to be cut off, then read everything.
        std::thread::sleep(Duration::from_millis(1500));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    })
    .await
    .unwrap();
    let cutoff = text
        .split("\n\n")
        .find(|e| e.contains("event: cutoff"))
        .unwrap_or_else(|| panic!("no cutoff event in {} bytes", text.len()));
    let data: Value = serde_json::from_str(
        cutoff
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    let resume = data["resume_from"].as_u64().unwrap();
    let got: Vec<u64> = entry_events(&text)
        .iter()
        .filter_map(|e| e["offset"].as_u64())
        .collect();
    assert_eq!(
        got,
        (1..resume).collect::<Vec<_>>(),
        "every event before resume_from, in order"
    );
    a.stop().await;
}

/// One sample of `name` (no labels) from node 1's /metrics.
async fn metric(a: &ApiCluster, name: &str) -> f64 {
    let text = get(a.url(1, "/metrics")).await.body;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

#[actix::test]
async fn status_health_transfer_and_metrics() {
    let a = ApiCluster::start(3, fast_config(), |_| {}).await;
    assert_eq!(post(a.url(1, "/v1/commands"), CREATE).await.status, 200);
    let end = common::wait_converged(&a.c, &[1, 2, 3], LIMIT).await;
    let s = get(a.url(1, "/v1/status")).await.json();
    assert_eq!(
        (s["role"].as_str(), s["leader"].as_u64()),
        (Some("leader"), Some(1))
    );
    assert_eq!(s["followers"].as_array().unwrap().len(), 2);
    let mut digests = Vec::new();
    for id in 1..=3 {
        let s = get(a.url(id, "/v1/status")).await.json();
        digests.push(json!([s["applied_offset"], s["digest"]]));
    }
    assert_eq!(digests[0], json!([end, digests[0][1]]));
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    assert_eq!(get(a.url(2, "/livez")).await.status, 200);
    assert_eq!(get(a.url(2, "/readyz")).await.status, 200);

    let m = get(a.url(1, "/metrics")).await.body;
    for needle in [
        "metawal_proposals_total{result=\"ok\"} 1",
        "metawal_commit_latency_seconds_count{acks=\"all\"} 1",
        "metawal_follower_lag_entries{peer=\"2\"}",
        "metawal_follower_state{peer=\"3\",state=\"streaming\"} 1",
        "metawal_role{role=\"leader\"} 1",
        "metawal_fsync_latency_seconds_count",
        "metawal_bytes_sent_total",
    ] {
        assert!(m.contains(needle), "missing {needle}");
    }
    // The same text for an embedder that serves its own endpoint.
    let m = a.c.node(1).metrics_text().await.unwrap();
    for needle in [
        "metawal_proposals_total{result=\"ok\"} 1",
        "metawal_role{role=\"leader\"} 1",
        "metawal_members{role=\"voter\"} 3",
    ] {
        assert!(
            m.contains(needle),
            "missing {needle} from Node::metrics_text"
        );
    }

    let r = post(a.url(3, "/v1/leader/transfer?to=2"), "").await;
    assert_eq!(r.status, 307);
    let r = post(a.url(1, "/v1/leader/transfer?to=9"), "").await;
    assert_eq!((r.status, r.code().as_str()), (400, "unknown_peer"));
    let r = post(a.url(1, "/v1/leader/transfer?to=1"), "").await;
    assert_eq!(
        (r.status, r.json()["leader"].as_u64()),
        (200, Some(1)),
        "already leads"
    );
    let r = post(a.url(1, "/v1/leader/transfer?to=2"), "").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["leader"].as_u64(), Some(2));
    let r = post(a.url(1, "/v1/commands"), CREATE).await;
    assert_eq!(r.status, 307);
    assert_eq!(r.headers["location"], a.url(2, "/v1/commands"));
    a.stop().await;
}
