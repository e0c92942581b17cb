//! The process tests' view of the HTTP API (docs/api.md), on
//! `metawal-client`: only what is specific to the harness lives here.
//!
//! * **Per-address TLS routing.** The nodes of a TLS
//!   [`Cluster`](super::Cluster) serve HTTPS; the cluster registers each
//!   node's HTTP address with the TLS client config to use for it
//!   ([`set_tls`]). Every function below looks the address up: a registered
//!   one is spoken to over `https://` with that config, any other over plain
//!   `http://`. So the free functions keep working for several clusters at
//!   once, TLS or not, and a test can change what the client trusts in the
//!   middle of a run (certificate rotation).
//! * **The [`Writer`]** that sends each write attempt once
//!   ([`metawal_client::Node`], a fresh connection per request) and records
//!   what its answer promises, for the history checker ([`super::check`]):
//!   a failed *connect* (or a TLS handshake the node refused: it never read
//!   the request) means nothing was sent and the write may go elsewhere;
//!   any later failure means the write may have been applied. A `307` is
//!   returned to the caller, who follows it.
//! * [`read_log`]: a node's committed log through the change stream
//!   ([`metawal_client::ChangeStream`]), resumed until it is read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metawal_client::{
    Answer, Client, ClientConfig, Error as ClientError, NodeError, StreamError, WatchEvent,
};
use serde_json::Value;

/// What [`node`] takes and returns, for callers without a `metawal-client`
/// dependency of their own (the root package's bench).
pub use metawal_client::{Method, Node, Reuse};

/// How the harness talks to one node's HTTP address.
#[derive(Clone)]
struct Route {
    tls: Option<Arc<ClientConfig>>,
    /// For status probes: a stopped or dead node must not hold anyone up.
    probe: Node,
    /// For writes: the timeout is above the nodes' `--request-timeout-ms`
    /// plus the longest SIGSTOP, so a write times out on the client only
    /// when the node really does not answer.
    write: Node,
}

/// Timeout of a status probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Timeout of a write attempt.
const WRITE_TIMEOUT: Duration = Duration::from_secs(12);

impl Route {
    fn new(addr: SocketAddr, tls: Option<Arc<ClientConfig>>) -> Route {
        let url = url_for(addr, tls.is_some());
        let node = |timeout| Node::new(&url, timeout, tls.clone(), Reuse::Fresh);
        Route {
            probe: node(PROBE_TIMEOUT),
            write: node(WRITE_TIMEOUT),
            tls,
        }
    }
}

fn url_for(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

fn routes() -> &'static Mutex<HashMap<SocketAddr, Route>> {
    static R: OnceLock<Mutex<HashMap<SocketAddr, Route>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `addr`'s route: its registered TLS config, or plain HTTP (kept, so that
/// its nodes are built once).
fn route(addr: SocketAddr) -> Route {
    let mut map = routes().lock().unwrap_or_else(|e| e.into_inner());
    map.entry(addr)
        .or_insert_with(|| Route::new(addr, None))
        .clone()
}

/// Speak to `addr` over HTTPS with `tls` (or plain HTTP with `None`).
pub fn set_tls(addr: SocketAddr, tls: Option<Arc<ClientConfig>>) {
    let mut map = routes().lock().unwrap_or_else(|e| e.into_inner());
    match tls {
        Some(_) => {
            map.insert(addr, Route::new(addr, tls));
        }
        None => {
            map.remove(&addr);
        }
    }
}

/// `addr`'s TLS client config, if it is registered for HTTPS.
pub fn tls_config(addr: SocketAddr) -> Option<Arc<ClientConfig>> {
    route(addr).tls
}

/// `https://addr` for a registered TLS address, else `http://addr`.
pub fn base_url(addr: SocketAddr) -> String {
    url_for(addr, route(addr).tls.is_some())
}

/// A [`Node`] for `addr` (with its TLS config, if registered): each
/// request sent once and timing out after `timeout`, over one keep-alive
/// connection with [`Reuse::KeepAlive`].
pub fn node(addr: SocketAddr, timeout: Duration, reuse: Reuse) -> Node {
    let r = route(addr);
    Node::new(&url_for(addr, r.tls.is_some()), timeout, r.tls, reuse)
}

/// `GET /livez` answered 200.
pub fn livez(addr: SocketAddr) -> bool {
    let answer = route(addr).probe.send_once(Method::Get, "/livez", None);
    matches!(answer, Ok(a) if a.status == 200)
}

/// `GET /v1/status`, or `None` if the node does not answer 200 in time.
pub fn status(addr: SocketAddr) -> Option<Value> {
    let answer = route(addr)
        .probe
        .send_once(Method::Get, "/v1/status", None)
        .ok()?;
    if answer.status != 200 {
        return None;
    }
    serde_json::from_str(&answer.body).ok()
}

/// `GET path` with a timeout; the status and the JSON body (if any).
pub fn get_json(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, Value), String> {
    let answer = node(addr, timeout, Reuse::Fresh)
        .send_once(Method::Get, path, None)
        .map_err(|e| format!("GET {path} on {addr}: {e}"))?;
    let body: Value = serde_json::from_str(&answer.body)
        .map_err(|e| format!("GET {path} on {addr}: body: {e}"))?;
    Ok((answer.status, body))
}

/// What one `POST /v1/commands` attempt says about the write.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// 200: appended at `offset` and acknowledged as asked.
    Ok { offset: u64, epoch: u64 },
    /// 307: a follower; nothing appended; the same request on the leader.
    Redirect(String),
    /// 503: nothing appended, safe to retry (`leader` from `X-Metawal-Leader`).
    Retry { code: String, leader: Option<u64> },
    /// 400 / 413: refused, nothing appended, retrying will not help.
    Refused { status: u16, code: String },
    /// The connect failed (TCP, or a TLS handshake the node refused: the
    /// node never read the request as HTTP): nothing was sent.
    ConnectFailed(String),
    /// 504, any error after the connect, or a status the API does not list
    /// for writes: the entry may or may not be in the log.
    Unknown(String),
}

/// The `error` code of an error answer (`?` if it has none).
fn error_code(answer: &Answer) -> String {
    serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// One `POST path` of `body` to `addr`, sent once; classified by
/// docs/api.md's table.
pub fn post_once(addr: SocketAddr, path: &str, body: &str) -> Attempt {
    let answer = match route(addr).write.send_once(Method::Post, path, Some(body)) {
        Ok(answer) => answer,
        // Nothing sent: refused, or the node never read it as HTTP.
        Err(e @ (NodeError::NotSent { .. } | NodeError::Diagnosed { .. })) => {
            return Attempt::ConnectFailed(e.to_string())
        }
        // Sent (or maybe): the answer, if any, is lost.
        Err(NodeError::BodyUnreadable { source, .. }) => {
            return Attempt::Unknown(format!("answer unreadable: {source}"))
        }
        Err(e) => return Attempt::Unknown(format!("transport: {e}")),
    };
    match answer.status {
        200 => match serde_json::from_str::<Value>(&answer.body) {
            Ok(v) => match (v["offset"].as_u64(), v["epoch"].as_u64()) {
                (Some(offset), Some(epoch)) => Attempt::Ok { offset, epoch },
                _ => Attempt::Unknown(format!("200 without offset/epoch: {v}")),
            },
            // Acked, but the offset is lost with the body.
            Err(e) => Attempt::Unknown(format!("200, body unreadable: {e}")),
        },
        307 => match answer.location {
            Some(loc) => Attempt::Redirect(loc),
            None => Attempt::Unknown("307 without Location".into()),
        },
        503 => Attempt::Retry {
            code: error_code(&answer),
            leader: answer.leader,
        },
        s @ (400 | 413) => Attempt::Refused {
            status: s,
            code: error_code(&answer),
        },
        s if s >= 400 => Attempt::Unknown(format!("{s} {}", error_code(&answer))),
        s => Attempt::Unknown(format!("unexpected status {s}")),
    }
}

/// The outcome of one logical write (possibly several attempts).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Appended and acknowledged at `offset`.
    Acked { offset: u64 },
    /// Definitely not appended: every attempt said so.
    Failed { why: String },
    /// Maybe appended: an attempt's answer was lost or was a 504.
    Unknown { why: String },
}

/// One logical write and what became of it.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    pub client: usize,
    pub name: String,
    pub outcome: Outcome,
    pub sent: Instant,
    pub done: Instant,
    pub attempts: u32,
}

/// `CreateTopic{name}` as the JSON body of a write.
pub fn create_topic_body(name: &str) -> String {
    serde_json::json!({"CreateTopic": {"name": name, "partition_count": 1, "replication_factor": 1}})
        .to_string()
}

/// The path of every write.
const WRITE_PATH: &str = "/v1/commands?acks=all";

/// A writer that knows every node and remembers which one led last.
pub struct Writer {
    pub nodes: Vec<SocketAddr>,
    /// Index into `nodes` of the node to try first.
    pub target: usize,
    /// Give a write up (as `Failed`, nothing appended) after this long.
    pub give_up: Duration,
}

impl Writer {
    pub fn new(nodes: Vec<SocketAddr>, first: usize) -> Writer {
        let target = first % nodes.len();
        Writer {
            nodes,
            target,
            give_up: Duration::from_secs(20),
        }
    }

    /// The write on the node to try first: (index into `nodes`, path).
    fn first(&self) -> (usize, String) {
        (self.target, WRITE_PATH.to_string())
    }

    /// The node (index into `nodes`) and path a `Location` names, if it is
    /// one of this writer's nodes (the node's route decides the scheme).
    fn locate(&self, url: &str) -> Option<(usize, String)> {
        let rest = &url[url.find("://")? + 3..];
        let end = rest.find('/')?;
        let addr: SocketAddr = rest[..end].parse().ok()?;
        let i = self.nodes.iter().position(|a| *a == addr)?;
        Some((i, rest[end..].to_string()))
    }

    /// Write `body` with `acks=all`: follow 307s, move on to another node
    /// on a connect failure or a 503 (nothing was appended), stop at the
    /// first answer that leaves the outcome unknown. Bounded by
    /// `self.give_up` and 1000 attempts.
    pub fn write(&mut self, body: &str, stop: impl Fn() -> bool) -> (Outcome, u32) {
        let deadline = Instant::now() + self.give_up;
        let mut at = self.first();
        let mut hops = 0;
        let mut last = String::from("no attempt");
        for attempt in 1..=1000u32 {
            if Instant::now() > deadline || (attempt > 1 && stop()) {
                return (
                    Outcome::Failed {
                        why: format!("gave up; last: {last}"),
                    },
                    attempt - 1,
                );
            }
            match post_once(self.nodes[at.0], &at.1, body) {
                Attempt::Ok { offset, .. } => {
                    self.target = at.0;
                    return (Outcome::Acked { offset }, attempt);
                }
                Attempt::Redirect(loc) => {
                    hops += 1;
                    last = format!("307 to {loc}");
                    if hops <= 3 {
                        if let Some(next) = self.locate(&loc) {
                            at = next;
                            continue;
                        }
                    }
                    // A redirect loop while leadership moves: back off.
                    hops = 0;
                    self.target = (self.target + 1) % self.nodes.len();
                    at = self.first();
                    std::thread::sleep(Duration::from_millis(50));
                }
                Attempt::Retry { code, leader } => {
                    last = format!("503 {code}");
                    hops = 0;
                    self.target = match leader {
                        Some(l)
                            if l >= 1
                                && (l as usize) <= self.nodes.len()
                                && l as usize - 1 != self.target =>
                        {
                            l as usize - 1
                        }
                        _ => (self.target + 1) % self.nodes.len(),
                    };
                    at = self.first();
                    std::thread::sleep(Duration::from_millis(50));
                }
                Attempt::ConnectFailed(e) => {
                    last = format!("connect failed: {e}");
                    hops = 0;
                    self.target = (self.target + 1) % self.nodes.len();
                    at = self.first();
                    std::thread::sleep(Duration::from_millis(20));
                }
                Attempt::Refused { status, code } => {
                    return (
                        Outcome::Failed {
                            why: format!("{status} {code}"),
                        },
                        attempt,
                    )
                }
                Attempt::Unknown(why) => {
                    // The next write may as well start elsewhere.
                    self.target = (self.target + 1) % self.nodes.len();
                    return (Outcome::Unknown { why }, attempt);
                }
            }
        }
        (
            Outcome::Failed {
                why: format!("1000 attempts; last: {last}"),
            },
            1000,
        )
    }
}

/// One entry of a node's log as the watch stream shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub offset: u64,
    pub epoch: u64,
    pub command: Value,
}

/// Why a watch could not be read to the end.
#[derive(Debug)]
pub enum WatchError {
    /// 410: entries below `log_start` were compacted into a snapshot.
    Compacted(Value),
    Other(String),
}

/// Read node `addr`'s committed log from offset `from` up to `upto`
/// through `GET /v1/watch?from=` (server-sent events). Resumes after a
/// `cutoff` or `error` event or a broken stream (at most 20 times); the
/// whole read is bounded by `limit`.
pub fn read_log(
    addr: SocketAddr,
    from: u64,
    upto: u64,
    limit: Duration,
) -> Result<Vec<LogEntry>, WatchError> {
    let deadline = Instant::now() + limit;
    let mut out: Vec<LogEntry> = Vec::new();
    let mut next = from;
    let mut resumes = 0;
    // Opening a stream (the client waits out a busy node) within 20 s.
    let open = limit.min(Duration::from_secs(20));
    let client = Client::new(&[base_url(addr)], open, tls_config(addr));
    while next <= upto {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || resumes > 20 {
            return Err(WatchError::Other(format!(
                "watch on {addr}: reached {} of {upto} within {limit:?} and {resumes} resumes",
                next - 1
            )));
        }
        // The stream ends at the deadline at the latest.
        let stream = match client.watch_at(Some(next), 0, Some(left)) {
            Ok(s) => s,
            Err(ClientError::Server(e)) if e.status == 410 => {
                let body = e.body.as_deref().unwrap_or("null");
                return Err(WatchError::Compacted(
                    serde_json::from_str(body).unwrap_or(Value::Null),
                ));
            }
            Err(e) => {
                resumes += 1;
                eprintln!("watch on {addr} from {next}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        for event in stream {
            match event {
                Ok(WatchEvent::Entry(e)) => {
                    if e.offset != next {
                        return Err(WatchError::Other(format!(
                            "watch on {addr}: expected offset {next}, got {}",
                            e.offset
                        )));
                    }
                    out.push(LogEntry {
                        offset: e.offset,
                        epoch: e.epoch,
                        command: e.command,
                    });
                    next += 1;
                    if next > upto {
                        return Ok(out);
                    }
                }
                Ok(WatchEvent::Cutoff(end)) => {
                    eprintln!("watch on {addr}: cutoff {}; resuming from {next}", end.data);
                }
                Ok(WatchEvent::Error(end)) => {
                    eprintln!("watch on {addr}: error {}; resuming from {next}", end.data);
                }
                Ok(_) | Err(StreamError::Ended { .. }) => {}
                Err(e @ StreamError::Failed { .. }) => {
                    eprintln!("watch on {addr} at {next}: {e}; resuming");
                }
                // A line too long, an entry without offset/epoch/command.
                Err(e) => return Err(WatchError::Other(format!("watch on {addr}: {e}"))),
            }
        }
        resumes += 1;
    }
    Ok(out)
}

/// When each new entry reached node `addr`'s change stream: opens
/// `GET /v1/watch` (new entries only), calls `opened` once the stream
/// is open, then records `(offset, arrival)` for each entry event until
/// one at or past `until` arrives (the caller lowers `until` from
/// `u64::MAX` once it knows its last offset, then writes once more so an
/// event follows); the stream, and so the whole call, ends after `limit`
/// at the latest. For the bench's `--http` propagation figure.
pub fn watch_arrivals(
    addr: SocketAddr,
    until: &std::sync::atomic::AtomicU64,
    limit: Duration,
    opened: impl FnOnce(),
) -> Result<Vec<(u64, Instant)>, String> {
    let client = Client::new(&[base_url(addr)], limit, tls_config(addr));
    let stream = client
        .watch_at(None, 0, Some(limit))
        .map_err(|e| format!("watch on {addr}: {e}"))?;
    opened();
    let mut out = Vec::new();
    for event in stream {
        match event {
            Ok(WatchEvent::Entry(e)) => {
                out.push((e.offset, Instant::now()));
                if e.offset >= until.load(std::sync::atomic::Ordering::Acquire) {
                    return Ok(out);
                }
            }
            Ok(_) => {}
            Err(e) => return Err(format!("watch on {addr} after {} entries: {e}", out.len())),
        }
    }
    Err(format!(
        "watch on {addr}: the stream ended after {} entries, before the last write's",
        out.len()
    ))
}
