//! A blocking client of the HTTP API (docs/api.md), for the process tests.
//!
//! Every request has short timeouts. Writes are sent on a fresh connection
//! each (no pool), so that a connection error can be placed exactly: a
//! failed *connect* means nothing was sent (safe to retry elsewhere), any
//! later error means the request may have reached the node (the write's
//! outcome is unknown). Redirects are not followed by the library: a `307`
//! is returned to the caller, who follows it.
//!
//! HTTPS: the nodes of a TLS [`Cluster`](super::Cluster) serve HTTPS; the
//! cluster registers each node's HTTP address here with the TLS client
//! config to use for it ([`set_tls`]). Every function below looks the
//! address up: a registered one is spoken to over `https://` with that
//! config, any other over plain `http://`. So the free functions keep
//! working for several clusters at once, TLS or not, and a test can change
//! what the client trusts in the middle of a run (certificate rotation).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How the harness talks to one node's HTTP address.
#[derive(Clone)]
struct Route {
    tls: Option<Arc<rustls::ClientConfig>>,
    /// For status probes: a stopped or dead node must not hold anyone up.
    probe: ureq::Agent,
    /// For writes: the read timeout is above the nodes'
    /// `--request-timeout-ms` plus the longest SIGSTOP, so a write times
    /// out on the client only when the node really does not answer.
    write: ureq::Agent,
}

impl Route {
    fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Route {
        Route {
            probe: agent_with(
                tls.clone(),
                Duration::from_millis(500),
                Duration::from_millis(1500),
            ),
            write: agent_with(tls.clone(), Duration::from_secs(1), Duration::from_secs(12)),
            tls,
        }
    }
}

fn routes() -> &'static Mutex<HashMap<SocketAddr, Route>> {
    static R: OnceLock<Mutex<HashMap<SocketAddr, Route>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

fn plain_route() -> &'static Route {
    static P: OnceLock<Route> = OnceLock::new();
    P.get_or_init(|| Route::new(None))
}

fn route(addr: SocketAddr) -> Route {
    let map = routes().lock().unwrap_or_else(|e| e.into_inner());
    map.get(&addr)
        .cloned()
        .unwrap_or_else(|| plain_route().clone())
}

/// Speak to `addr` over HTTPS with `tls` (or plain HTTP with `None`).
pub fn set_tls(addr: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>) {
    let mut map = routes().lock().unwrap_or_else(|e| e.into_inner());
    match tls {
        Some(_) => {
            map.insert(addr, Route::new(tls));
        }
        None => {
            map.remove(&addr);
        }
    }
}

/// `https://addr` for a registered TLS address, else `http://addr`.
pub fn base_url(addr: SocketAddr) -> String {
    let scheme = if route(addr).tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

/// An agent builder for `addr`: with its TLS config if it has one.
pub fn agent_builder(addr: SocketAddr) -> ureq::AgentBuilder {
    let b = ureq::AgentBuilder::new();
    match route(addr).tls {
        Some(tls) => b.tls_config(tls),
        None => b,
    }
}

/// The address in a `scheme://host:port/...` URL.
fn addr_of(url: &str) -> Option<SocketAddr> {
    let rest = &url[url.find("://")? + 3..];
    let end = rest.find('/').unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn agent_with(
    tls: Option<Arc<rustls::ClientConfig>>,
    connect: Duration,
    read: Duration,
) -> ureq::Agent {
    let b = ureq::AgentBuilder::new()
        .timeout_connect(connect)
        .timeout_read(read)
        .timeout_write(Duration::from_secs(2))
        .redirects(0)
        .max_idle_connections(0);
    match tls {
        Some(tls) => b.tls_config(tls),
        None => b,
    }
    .build()
}

fn agent(addr: SocketAddr, connect: Duration, read: Duration) -> ureq::Agent {
    agent_with(route(addr).tls, connect, read)
}

/// `GET /livez` answered 200.
pub fn livez(addr: SocketAddr) -> bool {
    let r = route(addr);
    matches!(r.probe.get(&format!("{}/livez", base_url(addr))).call(), Ok(r) if r.status() == 200)
}

/// `GET /v1/status`, or `None` if the node does not answer 200 in time.
pub fn status(addr: SocketAddr) -> Option<Value> {
    let r = route(addr)
        .probe
        .get(&format!("{}/v1/status", base_url(addr)))
        .call()
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.into_json().ok()
}

/// `GET path` with a timeout; the status and the JSON body (if any).
pub fn get_json(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, Value), String> {
    let a = agent(addr, Duration::from_secs(1), timeout);
    let r = match a
        .get(&format!("{}{path}", base_url(addr)))
        .timeout(timeout)
        .call()
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(format!("GET {path} on {addr}: {e}")),
    };
    let status = r.status();
    let body: Value = r
        .into_json()
        .map_err(|e| format!("GET {path} on {addr}: body: {e}"))?;
    Ok((status, body))
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
    /// The connect failed: nothing was sent.
    ConnectFailed(String),
    /// 504, any error after the connect, or a status the API does not list
    /// for writes: the entry may or may not be in the log.
    Unknown(String),
}

fn error_code(r: ureq::Response) -> String {
    r.into_json::<Value>()
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// One `POST {url}` of `body`; classified by docs/api.md's table.
pub fn post_once(url: &str, body: &str) -> Attempt {
    let write = match addr_of(url) {
        Some(a) => route(a).write,
        None => plain_route().write.clone(),
    };
    let r = write
        .post(url)
        .set("Content-Type", "application/json")
        .send_string(body);
    match r {
        Ok(r) if r.status() == 200 => {
            let status = r.status();
            match r.into_json::<Value>() {
                Ok(v) => match (v["offset"].as_u64(), v["epoch"].as_u64()) {
                    (Some(offset), Some(epoch)) => Attempt::Ok { offset, epoch },
                    _ => Attempt::Unknown(format!("{status} without offset/epoch: {v}")),
                },
                // Acked, but the offset is lost with the body.
                Err(e) => Attempt::Unknown(format!("200, body unreadable: {e}")),
            }
        }
        Ok(r) if r.status() == 307 => match r.header("Location") {
            Some(loc) => Attempt::Redirect(loc.to_string()),
            None => Attempt::Unknown("307 without Location".into()),
        },
        Ok(r) => Attempt::Unknown(format!("unexpected status {}", r.status())),
        Err(ureq::Error::Status(503, r)) => {
            let leader = r
                .header("X-Metawal-Leader")
                .and_then(|l| l.parse::<u64>().ok());
            Attempt::Retry {
                code: error_code(r),
                leader,
            }
        }
        Err(ureq::Error::Status(s @ (400 | 413), r)) => Attempt::Refused {
            status: s,
            code: error_code(r),
        },
        Err(ureq::Error::Status(s, r)) => Attempt::Unknown(format!("{s} {}", error_code(r))),
        Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::ConnectionFailed => {
            Attempt::ConnectFailed(t.to_string())
        }
        Err(ureq::Error::Transport(t)) => Attempt::Unknown(format!("transport: {t}")),
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

    fn url(&self, i: usize) -> String {
        format!("{}/v1/commands?acks=all", base_url(self.nodes[i]))
    }

    fn index_of(&self, url: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|a| url.contains(&format!("//{a}/")))
    }

    /// Write `body` with `acks=all`: follow 307s, move on to another node
    /// on a connect failure or a 503 (nothing was appended), stop at the
    /// first answer that leaves the outcome unknown. Bounded by
    /// `self.give_up` and 1000 attempts.
    pub fn write(&mut self, body: &str, stop: impl Fn() -> bool) -> (Outcome, u32) {
        let deadline = Instant::now() + self.give_up;
        let mut url = self.url(self.target);
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
            match post_once(&url, body) {
                Attempt::Ok { offset, .. } => {
                    if let Some(i) = self.index_of(&url) {
                        self.target = i;
                    }
                    return (Outcome::Acked { offset }, attempt);
                }
                Attempt::Redirect(loc) => {
                    hops += 1;
                    last = format!("307 to {loc}");
                    if hops <= 3 && self.index_of(&loc).is_some() {
                        url = loc;
                        continue;
                    }
                    // A redirect loop while leadership moves: back off.
                    hops = 0;
                    self.target = (self.target + 1) % self.nodes.len();
                    url = self.url(self.target);
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
                    url = self.url(self.target);
                    std::thread::sleep(Duration::from_millis(50));
                }
                Attempt::ConnectFailed(e) => {
                    last = format!("connect failed: {e}");
                    hops = 0;
                    self.target = (self.target + 1) % self.nodes.len();
                    url = self.url(self.target);
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
    let a = agent(addr, Duration::from_secs(1), Duration::from_secs(20));
    while next <= upto {
        if Instant::now() > deadline || resumes > 20 {
            return Err(WatchError::Other(format!(
                "watch on {addr}: reached {} of {upto} within {limit:?} and {resumes} resumes",
                next - 1
            )));
        }
        let resp = match a
            .get(&format!("{}/v1/watch?from={next}", base_url(addr)))
            .call()
        {
            Ok(r) => r,
            Err(ureq::Error::Status(410, r)) => {
                return Err(WatchError::Compacted(r.into_json().unwrap_or(Value::Null)))
            }
            Err(e) => {
                resumes += 1;
                eprintln!("watch on {addr} from {next}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let mut reader = BufReader::new(resp.into_reader());
        let (mut id, mut event, mut data) = (None::<u64>, String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("watch on {addr} at {next}: {e}; resuming");
                    break;
                }
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                // Dispatch the event.
                let ev = if event.is_empty() {
                    "message"
                } else {
                    event.as_str()
                };
                match ev {
                    "entry" => {
                        let v: Value = serde_json::from_str(&data).map_err(|e| {
                            WatchError::Other(format!("bad event data {data:?}: {e}"))
                        })?;
                        let offset = v["offset"].as_u64().or(id).ok_or_else(|| {
                            WatchError::Other(format!("entry without offset: {data}"))
                        })?;
                        if offset != next {
                            return Err(WatchError::Other(format!(
                                "watch on {addr}: expected offset {next}, got {offset}"
                            )));
                        }
                        out.push(LogEntry {
                            offset,
                            epoch: v["epoch"].as_u64().unwrap_or(0),
                            command: v["command"].clone(),
                        });
                        next += 1;
                        if next > upto {
                            return Ok(out);
                        }
                    }
                    "cutoff" | "error" => {
                        eprintln!("watch on {addr}: {ev} {data}; resuming from {next}");
                        break;
                    }
                    _ => {}
                }
                id = None;
                event.clear();
                data.clear();
            } else if l.starts_with(':') {
                // keep-alive comment
            } else if let Some(v) = l.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = l.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = l.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
            if Instant::now() > deadline {
                break;
            }
        }
        resumes += 1;
    }
    Ok(out)
}
