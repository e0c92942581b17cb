//! `metawalctl`: the command-line client of the metawal HTTP API
//! (`docs/api.md`).
//!
//! # Why
//!
//! Operators need to create topics, move partitions and look at the cluster
//! without writing JSON by hand or knowing which node leads. This binary is a
//! thin, blocking client of exactly the documented API: every subcommand is
//! one request (or one SSE stream for `watch`), and everything it knows about
//! the outcome comes from the HTTP status and the error code.
//!
//! # How
//!
//! * **Endpoints.** `--endpoints a,b,c` (or `METAWAL_ENDPOINTS`) lists nodes
//!   as `host:port`, `http://host:port` or `https://host:port`. A request goes to the first one; a
//!   follower answers writes (and linearizable reads) with `307` and the
//!   leader's URL in `Location`, which this client follows itself (at most
//!   [`MAX_HOPS`] hops) because ureq does not re-send a POST body on a
//!   redirect. A refused connection or a `503` moves on to the next endpoint;
//!   when every endpoint has been tried and at least one node answered (an
//!   election is probably running), the whole list is tried again after the
//!   server's `Retry-After`, for at most [`MAX_ROUNDS`] rounds and the
//!   `--timeout-ms` budget. The `X-Metawal-Leader` header is used to say
//!   which node is the leader when no endpoint can reach it.
//! * **Writes are never retried after they may have been received.** Only a
//!   failure to connect (nothing was sent) or a `503` (the server promises
//!   nothing was appended) lets a write go to another endpoint. A `504` such
//!   as `timeout` or `leadership_lost`, or a connection that drops after the
//!   request was sent, ends with exit code 5: the entry may be in the log.
//!   Connections are not pooled, so a stale keep-alive connection can never
//!   make a write look lost.
//! * **HTTPS.** `--cacert PEM` is the CA (bundle) that signed the nodes'
//!   certificates; with it, `host:port` endpoints mean `https://`.
//!   `--cert`/`--key` present a client certificate (nodes run with
//!   `--http-client-ca`). Without `--cacert`, `https://` endpoints are
//!   checked against the public web roots built in (Mozilla's). A TLS
//!   failure (a certificate from an unknown CA, for another name, expired;
//!   a client certificate refused or missing; plain HTTP to an HTTPS port)
//!   moves on to the next endpoint but is not waited out and retried; with
//!   no endpoint left it ends with exit code 4 and a message naming the
//!   problem (the server never saw the request).
//! * **Output.** Aligned plain-text tables by default; `--json` prints the
//!   server's JSON body unchanged (on an error, the server's error body goes
//!   to stdout too, the explanation to stderr).
//! * **Watch.** `GET /v1/watch` is read line by line as server-sent events.
//!   A `cutoff` or `error` event, or a dropped stream, reconnects from the
//!   next offset (`resume_from`), with backoff, at most
//!   [`MAX_WATCH_RECONNECTS`] times in a row without progress.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 2 | usage error (bad flags or arguments; nothing was sent) |
//! | 3 | refused by the cluster (400/404/409/410/413): the request is wrong; nothing was done |
//! | 4 | unavailable: no endpoint reachable, 503 from every endpoint, no leader, or TLS failed |
//! | 5 | outcome unknown: a write got 504 or the connection dropped after it was sent; it may be in the log, read before retrying |
//! | 6 | a read timed out (504 `not_applied` / `not_confirmed`) |

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use metawal::{Command, NodeId};
use serde_json::Value;

/// The exit codes, as printed in `--help`.
const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  2  usage error (bad flags or arguments; nothing was sent)
  3  refused by the cluster (HTTP 400/404/409/410/413): the request is wrong; nothing was done
  4  unavailable: no endpoint reachable, 503 from every endpoint, no leader,
     or TLS failed (certificates; http:// against an HTTPS port): nothing was sent
  5  outcome unknown: a write got 504 or the connection dropped after it was sent;
     it may be in the log: read it back (topic describe, watch) before retrying
  6  a read timed out (504 not_applied / not_confirmed)

Endpoints are tried in order; followers redirect writes to the leader (307).
HTTPS: --cacert ca.pem (host:port endpoints then use https://); a node run with
--http-client-ca also needs --cert client.pem --key client-key.pem.";

/// Most `307` hops followed for one request.
const MAX_HOPS: usize = 5;
/// Most passes over the endpoint list for one request (also bounded by
/// `--timeout-ms`): enough to wait out an election after a leader crash.
const MAX_ROUNDS: usize = 12;
/// Most consecutive watch reconnects without receiving an entry.
const MAX_WATCH_RECONNECTS: u32 = 10;
/// TCP connect timeout for every request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A watch stream silent this long is reconnected (the server sends a
/// keep-alive comment every 15 s).
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(45);
/// Longest SSE line accepted (entries are at most 64 KiB records; their JSON
/// is larger but far below this).
const MAX_SSE_LINE: u64 = 16 << 20;
/// Largest batch the server accepts (`MAX_BATCH_COMMANDS`).
const MAX_BATCH_COMMANDS: usize = 10_000;

/// Like `eprintln!`, but a closed stderr is ignored instead of panicking.
macro_rules! note {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// Command-line client for a metawal cluster's HTTP API.
#[derive(Debug, Parser)]
#[command(
    name = "metawalctl",
    version,
    about = "Command-line client of a metawal cluster's HTTP API (docs/api.md)",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    /// Nodes to talk to, in order: host:port, http://host:port or
    /// https://host:port, comma separated. host:port means https:// with
    /// --cacert, http:// without.
    #[arg(
        long,
        env = "METAWAL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:8081",
        value_parser = parse_endpoint,
        global = true
    )]
    endpoints: Vec<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Timeout of one request in milliseconds (connecting is capped at 2 s).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    timeout_ms: u64,
    /// HTTPS: trust the CA certificate(s) in this PEM file (the CA that
    /// signed the nodes' certificates; a bundle may hold several). With it,
    /// host:port endpoints use https://.
    #[arg(long, env = "METAWAL_CACERT", value_name = "PEM", global = true)]
    cacert: Option<PathBuf>,
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
    cert: Option<PathBuf>,
    /// HTTPS: the private key of --cert (PEM). Needs --cert.
    #[arg(
        long,
        env = "METAWAL_KEY",
        value_name = "PEM",
        requires = "cert",
        global = true
    )]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Cmd {
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
    Watch {
        /// First offset to print (default: only entries after the node's applied offset).
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this many entries.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Metadata leadership.
    #[command(subcommand)]
    Leader(LeaderCmd),
}

/// `topic …`
#[derive(Debug, Subcommand)]
enum TopicCmd {
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
enum PartitionCmd {
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
enum LeaderCmd {
    /// Hand metadata leadership to another node.
    Transfer {
        /// The node that should lead.
        #[arg(long, value_parser = parse_node_id)]
        to: NodeId,
    },
}

/// Options of every write.
#[derive(Debug, Args)]
struct WriteArgs {
    /// When the server answers: all (committed and on disk on every ISR member),
    /// leader (on the leader's disk), none (appended).
    #[arg(long, value_enum, default_value_t = Acks::All)]
    acks: Acks,
}

/// `acks=` of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Acks {
    /// Committed, and on disk on every in-sync replica.
    All,
    /// On the leader's disk.
    Leader,
    /// Appended on the leader.
    None,
}

impl Acks {
    /// The query value.
    fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "leader",
            Acks::None => "none",
        }
    }
}

/// Options of the topic reads.
#[derive(Debug, Args)]
struct ReadArgs {
    /// Wait until the node has applied this offset (pass a write's offset to
    /// read your own write on a follower).
    #[arg(long)]
    min_offset: Option<u64>,
    /// Ask the leader to confirm its leadership with a quorum first.
    #[arg(long)]
    linearizable: bool,
}

/// Parses one endpoint into `http://host:port`, `https://host:port` or,
/// without a scheme, `host:port` (no trailing slash); [`with_scheme`] gives
/// the last its scheme once the TLS flags are known.
///
/// Accepts `host:port`, `http(s)://host:port` and `http(s)://host:port/`;
/// `[v6addr]:port` too. Anything else (another scheme, a path, no port) is
/// refused with a message saying what is expected.
fn parse_endpoint(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("empty endpoint: give host:port, http://host:port or https://host:port".into());
    }
    let (scheme, rest) = match s.find("://") {
        Some(i) if s[..i].eq_ignore_ascii_case("http") => (Some("http"), &s[i + 3..]),
        Some(i) if s[..i].eq_ignore_ascii_case("https") => (Some("https"), &s[i + 3..]),
        Some(_) => {
            return Err(format!(
                "{s}: only http:// and https:// endpoints are supported (give host:port, \
                 http://host:port or https://host:port)"
            ))
        }
        None => (None, s),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{s}: an endpoint is host:port or http(s)://host:port, without path or user"
        ));
    }
    let (host, port) = if rest.starts_with('[') {
        let Some(end) = rest.find(']') else {
            return Err(format!("{s}: unclosed '[' in an IPv6 address"));
        };
        let port = rest[end + 1..].strip_prefix(':');
        (&rest[..=end], port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => {
                return Err(format!(
                    "{s}: write an IPv6 address in brackets, e.g. [::1]:8081"
                ))
            }
            None => (rest, None),
        }
    };
    let valid_host = host.len() > 2 && host.starts_with('[')
        || !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    if !valid_host {
        return Err(format!("{s}: not a host name or address"));
    }
    let Some(port) = port else {
        return Err(format!("{s}: missing port (e.g. {host}:8081)"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(match scheme {
            Some(scheme) => format!("{scheme}://{host}:{p}"),
            None => format!("{host}:{p}"),
        }),
        _ => Err(format!("{s}: port must be 1-65535")),
    }
}

/// A parsed endpoint with its scheme: `host:port` becomes `https://` when
/// a CA was given (`--cacert`), `http://` otherwise.
fn with_scheme(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

/// The HTTPS client config from `--cacert`/`--cert`/`--key`; `None`
/// without `--cacert` (https:// endpoints then use the built-in web roots).
/// An unreadable or bad file is a usage error: nothing was sent.
fn tls_config(
    cacert: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, CtlError> {
    let Some(ca) = cacert else {
        if cert.is_some() || key.is_some() {
            return Err(CtlError::new(
                Failure::Usage,
                "--cert and --key need --cacert (the CA that signed the nodes' certificates)",
            ));
        }
        return Ok(None);
    };
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(CtlError::new(
                Failure::Usage,
                "--cert and --key go together: give both (or neither)",
            ))
        }
    };
    metawal_actors::tls::http_client_config(ca, client)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| CtlError::new(Failure::Usage, e.to_string()))
}

/// Parses a broker / node id (≥ 1).
fn parse_node_id(s: &str) -> Result<NodeId, String> {
    match s.trim().parse::<NodeId>() {
        Ok(id) if id >= 1 => Ok(id),
        _ => Err(format!("{s:?} is not a node id (an integer >= 1)")),
    }
}

// ---------------------------------------------------------------------------
// Failures and exit codes
// ---------------------------------------------------------------------------

/// How a command failed; each maps to one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Bad arguments found after parsing (exit 2).
    Usage,
    /// The cluster refused the request; nothing was done (exit 3).
    Refused,
    /// No node could take the request (exit 4).
    Unavailable,
    /// A write may or may not be in the log (exit 5).
    OutcomeUnknown,
    /// A read did not get its answer in time (exit 6).
    ReadTimeout,
}

impl Failure {
    /// The process exit code.
    fn exit_code(self) -> u8 {
        match self {
            Failure::Usage => 2,
            Failure::Refused => 3,
            Failure::Unavailable => 4,
            Failure::OutcomeUnknown => 5,
            Failure::ReadTimeout => 6,
        }
    }

    /// The word that starts the error line.
    fn label(self) -> &'static str {
        match self {
            Failure::Usage => "usage error",
            Failure::Refused => "refused",
            Failure::Unavailable => "unavailable",
            Failure::OutcomeUnknown => "outcome unknown",
            Failure::ReadTimeout => "timed out",
        }
    }
}

/// A failed command: what kind, what to tell the user, and the server's error
/// body if there was one.
#[derive(Debug)]
struct CtlError {
    failure: Failure,
    message: String,
    /// The server's `error` code, if it answered with one.
    code: Option<String>,
    /// The server's `detail`, if any.
    detail: Option<Value>,
    /// The server's raw error body (printed on stdout with `--json`).
    body: Option<String>,
}

impl CtlError {
    /// An error without a server body.
    fn new(failure: Failure, message: impl Into<String>) -> Self {
        CtlError {
            failure,
            message: message.into(),
            code: None,
            detail: None,
            body: None,
        }
    }
}

/// Whether a request may have changed the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// GET: safe to send anywhere, any number of times.
    Read,
    /// POST: once the request may have been received, never re-sent.
    Write,
}

/// What to do with an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// 2xx: done.
    Success,
    /// 307/308: follow `Location`.
    Redirect,
    /// Not this node, or not now (503; 5xx on a read): try the next endpoint.
    TryElsewhere,
    /// The request itself is wrong.
    Fail(Failure),
}

/// Maps an HTTP status and error code to what the client does
/// (the table in docs/api.md).
fn disposition(status: u16, code: &str, kind: Kind) -> Disposition {
    match status {
        200..=299 => Disposition::Success,
        307 | 308 => Disposition::Redirect,
        400..=499 => Disposition::Fail(Failure::Refused),
        503 => Disposition::TryElsewhere,
        504 => match code {
            "not_applied" | "not_confirmed" => Disposition::Fail(Failure::ReadTimeout),
            "transfer_timed_out" => Disposition::Fail(Failure::Unavailable),
            _ if kind == Kind::Write => Disposition::Fail(Failure::OutcomeUnknown),
            _ => Disposition::Fail(Failure::ReadTimeout),
        },
        500..=599 if kind == Kind::Write => Disposition::Fail(Failure::OutcomeUnknown),
        500..=599 => Disposition::TryElsewhere,
        // 1xx, other 3xx: not something this API sends.
        _ => Disposition::Fail(Failure::Unavailable),
    }
}

/// What the user should do next, per failure.
fn advice(failure: Failure, kind: Kind) -> &'static str {
    match failure {
        Failure::Usage => "see --help",
        Failure::Refused => "nothing was changed; fix the request",
        Failure::Unavailable => {
            "nothing was changed; check the nodes (metawalctl status --all) and retry"
        }
        Failure::OutcomeUnknown if kind == Kind::Write => {
            "the write may be in the log and may still commit: read it back \
             (metawalctl topic describe / watch) before retrying"
        }
        Failure::OutcomeUnknown => "check with metawalctl status before retrying",
        Failure::ReadTimeout => {
            "the node did not get there in time; retry, raise --timeout-ms, or ask another node"
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------

/// A successful answer with its body read.
#[derive(Debug)]
struct Reply {
    /// The URL that answered (after redirects).
    url: String,
    /// The raw body.
    body: String,
    /// The body as JSON (`Null` if it was not JSON).
    json: Value,
}

/// A successful answer whose body is not read yet (for the watch stream).
struct Routed {
    response: ureq::Response,
    /// The endpoint index that the request started from.
    endpoint: usize,
}

/// Why one endpoint could not take a request.
struct Skip {
    /// One line for the final message.
    note: String,
    /// The server's Retry-After, if any.
    retry_after: Option<Duration>,
    /// Whether a node answered at all (false: connection refused, DNS…).
    answered: bool,
    /// The server's answer, kept for the final message if every node gives it.
    error: Option<Box<CtlError>>,
    /// The node names a leader it cannot redirect to (no `--peer-http` for
    /// it): waiting will not change that.
    misconfigured: bool,
    /// TLS failed (certificates, or HTTP against HTTPS): retrying will not
    /// help, and the node never saw the request.
    tls: bool,
}

/// One step of following a request through one endpoint.
enum Step {
    /// Give up with this error.
    Fatal(Box<CtlError>),
    /// Try the next endpoint.
    Next(Skip),
}

/// The blocking HTTP client over the endpoint list.
struct Client {
    endpoints: Vec<String>,
    /// For ordinary requests: overall timeout `--timeout-ms`.
    agent: ureq::Agent,
    /// For the watch stream: no overall timeout, a read timeout instead.
    stream_agent: ureq::Agent,
    timeout: Duration,
    /// `--cacert`'s client config, for [`tls_preflight`].
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The `https://` origins whose preflight passed.
    preflighted: std::sync::Mutex<BTreeSet<String>>,
}

impl Client {
    /// A client over `endpoints` (already parsed and given their scheme,
    /// deduplicated here), trusting `tls` for https:// (`None`: ureq's
    /// built-in web roots).
    fn new(
        endpoints: &[String],
        timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let mut seen = BTreeSet::new();
        let endpoints: Vec<String> = endpoints
            .iter()
            .filter(|e| seen.insert(e.to_string()))
            .cloned()
            .collect();
        let base = || {
            let b = ureq::AgentBuilder::new()
                .timeout_connect(CONNECT_TIMEOUT)
                .redirects(0)
                // A fresh connection per request: a pooled connection that the
                // server closed could fail a write after it "was sent".
                .max_idle_connections(0)
                .user_agent(concat!("metawalctl/", env!("CARGO_PKG_VERSION")));
            match &tls {
                Some(tls) => b.tls_config(tls.clone()),
                None => b,
            }
        };
        Client {
            endpoints,
            agent: base().timeout(timeout).build(),
            stream_agent: base().timeout_read(WATCH_READ_TIMEOUT).build(),
            timeout,
            tls,
            preflighted: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    /// The endpoints as one string, for messages.
    fn endpoint_list(&self) -> String {
        self.endpoints.join(", ")
    }

    /// Sends a request and reads its JSON answer: follows the leader, moves
    /// on to the next endpoint as the module doc says.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        kind: Kind,
    ) -> Result<Reply, CtlError> {
        let routed = self.route(&self.agent, method, path, body, kind, 0)?;
        let url = routed.response.get_url().to_string();
        let text = match routed.response.into_string() {
            Ok(t) => t,
            Err(e) => {
                let failure = if kind == Kind::Write {
                    Failure::OutcomeUnknown
                } else {
                    Failure::Unavailable
                };
                return Err(CtlError::new(
                    failure,
                    format!("{url} answered but its body could not be read: {e}"),
                ));
            }
        };
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            url,
            body: text,
            json,
        })
    }

    /// Finds a node that answers `method path` with a 2xx, starting at
    /// endpoint `start`, and returns the unread answer.
    fn route(
        &self,
        agent: &ureq::Agent,
        method: &str,
        path: &str,
        body: Option<&str>,
        kind: Kind,
        start: usize,
    ) -> Result<Routed, CtlError> {
        let n = self.endpoints.len().max(1);
        let deadline = Instant::now() + self.timeout;
        let mut order: Vec<usize> = (0..self.endpoints.len()).map(|i| (start + i) % n).collect();
        let mut last_skips: Vec<Skip> = Vec::new();
        for round in 0..MAX_ROUNDS {
            let mut skips = Vec::new();
            let mut down = Vec::new();
            for &i in &order {
                let url = format!("{}{}", self.endpoints[i], path);
                match self.follow(agent, method, &url, body, kind) {
                    Ok(response) => {
                        return Ok(Routed {
                            response,
                            endpoint: i,
                        })
                    }
                    Err(Step::Fatal(e)) => return Err(*e),
                    Err(Step::Next(skip)) => {
                        if !skip.answered {
                            down.push(i);
                        }
                        let busy = skip.error.as_ref().and_then(|e| e.code.as_deref())
                            != Some("not_leader")
                            && skip.answered
                            && skip.error.is_some();
                        skips.push(skip);
                        // overloaded, not_enough_replicas, …: the leader
                        // itself answered; the others would send us back to it.
                        if busy {
                            break;
                        }
                    }
                }
            }
            let any_answered = skips.iter().any(|s| s.answered);
            let all_misconfigured = skips.iter().filter(|s| s.answered).all(|s| s.misconfigured);
            let wait = skips
                .iter()
                .filter_map(|s| s.retry_after)
                .max()
                .unwrap_or(Duration::from_millis(500))
                .clamp(Duration::from_millis(200), Duration::from_secs(2));
            last_skips = skips;
            // Nobody answered at all: the cluster is down or the list is
            // wrong; waiting would not help.
            // Every node that answered names a leader it has no HTTP
            // address for: a configuration problem, not an election.
            if !any_answered
                || all_misconfigured
                || round + 1 == MAX_ROUNDS
                || Instant::now() + wait >= deadline
            {
                break;
            }
            sleep(wait);
            // Next round: nodes that answered first, unreachable ones last.
            // (A stable sort keeps the given order otherwise.)
            order.sort_by_key(|i| down.contains(i));
        }
        Err(self.unavailable(last_skips))
    }

    /// [`tls_preflight`] once per `https://` origin (with `--cacert`).
    fn preflight(&self, url: &str) -> Result<(), String> {
        let Some(config) = &self.tls else {
            return Ok(());
        };
        if !url
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        {
            return Ok(());
        }
        let origin = origin(url);
        let mut done = self.preflighted.lock().unwrap_or_else(|e| e.into_inner());
        if done.contains(&origin) {
            return Ok(());
        }
        tls_preflight(config, url)?;
        done.insert(origin);
        Ok(())
    }

    /// The final error when no endpoint took a request.
    fn unavailable(&self, skips: Vec<Skip>) -> CtlError {
        if !skips.is_empty()
            && skips.iter().all(|s| s.tls || !s.answered)
            && skips.iter().any(|s| s.tls)
        {
            return CtlError::new(
                Failure::Unavailable,
                format!(
                    "TLS failed, no node took the request: {}",
                    skips
                        .iter()
                        .map(|s| s.note.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            );
        }
        if !skips.iter().any(|s| s.answered) {
            return CtlError::new(
                Failure::Unavailable,
                format!(
                    "no node answered at {}: start the nodes or pass --endpoints ({})",
                    self.endpoint_list(),
                    skips
                        .iter()
                        .map(|s| s.note.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            );
        }
        let notes = skips
            .iter()
            .map(|s| s.note.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        // Keep the last server error body for --json.
        let last = skips.into_iter().rev().find_map(|s| s.error);
        let mut err = CtlError::new(
            Failure::Unavailable,
            format!("no node could take the request: {notes}"),
        );
        if let Some(last) = last {
            err.code = last.code;
            err.detail = last.detail;
            err.body = last.body;
        }
        err
    }

    /// Sends the request to `url` and follows `307`s from there.
    fn follow(
        &self,
        agent: &ureq::Agent,
        method: &str,
        url: &str,
        body: Option<&str>,
        kind: Kind,
    ) -> Result<ureq::Response, Step> {
        let mut url = url.to_string();
        for hop in 0..=MAX_HOPS {
            if let Err(problem) = self.preflight(&url) {
                return Err(Step::Next(Skip {
                    note: format!("{url}: {problem}"),
                    retry_after: None,
                    answered: false,
                    error: None,
                    misconfigured: false,
                    tls: true,
                }));
            }
            let request = agent
                .request(method, &url)
                .set("Accept", "application/json");
            let result = match body {
                Some(b) => request
                    .set("Content-Type", "application/json")
                    .send_string(b),
                None => request.call(),
            };
            let response = match result {
                Ok(r) => r,
                Err(ureq::Error::Status(_, r)) => r,
                Err(ureq::Error::Transport(t)) => {
                    let mut step = transport_step(&url, &t, kind);
                    if let (Step::Next(skip), true) = (&mut step, hop > 0) {
                        // The first node answered with a redirect to a
                        // leader that is gone: an election is coming, so
                        // this round counts as "a node answered".
                        skip.answered = true;
                        skip.note = format!("redirected to the leader, unreachable: {}", skip.note);
                    }
                    return Err(step);
                }
            };
            let status = response.status();
            let leader = response
                .header("X-Metawal-Leader")
                .map(str::to_string)
                .filter(|l| l != "none");
            let retry_after = response
                .header("Retry-After")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            if (200..300).contains(&status) {
                return Ok(response);
            }
            if status == 307 || status == 308 {
                match response.header("Location") {
                    Some(loc) => {
                        url = resolve_location(&url, loc);
                        continue;
                    }
                    None => {
                        return Err(Step::Next(Skip {
                            note: format!("{url}: {status} without Location"),
                            retry_after: None,
                            answered: true,
                            error: None,
                            misconfigured: false,
                            tls: false,
                        }))
                    }
                }
            }
            let text = response.into_string().unwrap_or_default();
            let err = server_error(status, &url, &text, kind, leader.as_deref());
            return match disposition(status, err.code.as_deref().unwrap_or(""), kind) {
                Disposition::Fail(_) => Err(Step::Fatal(Box::new(err))),
                _ => Err(Step::Next(Skip {
                    note: err.message.clone(),
                    retry_after,
                    answered: true,
                    misconfigured: err.code.as_deref() == Some("not_leader") && leader.is_some(),
                    error: Some(Box::new(err)),
                    tls: false,
                })),
            };
        }
        Err(Step::Next(Skip {
            note: format!("more than {MAX_HOPS} redirects, last to {url}"),
            retry_after: None,
            answered: true,
            error: None,
            misconfigured: false,
            tls: false,
        }))
    }
}

/// A TLS failure that happened before the server could read the request:
/// what went wrong, for a person. `None` if `t` is not one.
///
/// rustls' error sits inside `std::io::Error`s (whose `source()` skips
/// their payload), so the chain is walked through `get_ref()` too. Plain
/// HTTP sent to an HTTPS port is recognised by the TLS alert record the
/// server answers with (ureq reports it as an unparsable status line of
/// bytes `[21, 3, …]`: content type 21 = alert, version 3.x).
fn tls_failure(url: &str, t: &ureq::Transport) -> Option<String> {
    use rustls::Error as E;
    let https = url
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"));
    if !https {
        let text = t.to_string();
        return (text.contains("[21, 3,") || text.contains("[22, 3,")).then(|| {
            "the node speaks HTTPS (it answered plain HTTP with a TLS alert): use https:// \
             endpoints, or give --cacert so that host:port endpoints use https://"
                .to_string()
        });
    }
    let mut stack: Vec<&(dyn std::error::Error + 'static)> = vec![t];
    let mut found = None;
    for _ in 0..16 {
        let Some(e) = stack.pop() else { break };
        if let Some(r) = e.downcast_ref::<E>() {
            found = Some(r);
            break;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            stack.push(inner);
        }
        if let Some(next) = e.source() {
            stack.push(next);
        }
    }
    found.map(describe_rustls)
}

/// What a rustls error means, for a person.
fn describe_rustls(found: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match found {
        E::InvalidCertificate(C::UnknownIssuer) => format!(
            "TLS: the node's certificate is not signed by a trusted CA (unknown issuer): pass \
             --cacert with the CA that signed the nodes' certificates ({found})"
        ),
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "TLS: the node's certificate is not valid for the host name in the endpoint: use a \
             name or IP address the certificate lists ({found})"
        ),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!("TLS: the node's certificate has expired ({found})")
        }
        E::InvalidCertificate(_) => format!("TLS: the node's certificate was refused: {found}"),
        E::AlertReceived(A::CertificateRequired) => {
            format!("TLS: the node requires a client certificate: pass --cert and --key ({found})")
        }
        E::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::AccessDenied,
        ) => format!(
            "TLS: the node refused the client certificate (--cert must be signed by the CA the \
             node was given with --http-client-ca, and valid now) ({found})"
        ),
        E::InvalidMessage(_) => format!(
            "TLS: the node did not answer with TLS: does it serve plain HTTP (no --http-tls)? \
             then use an http:// endpoint ({found})"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// How long [`tls_preflight`] waits for the node's verdict on the client
/// certificate after the handshake.
const PREFLIGHT_VERDICT: Duration = Duration::from_millis(1500);

/// Checks, before any request is sent to the node at `url` (`https://`),
/// that TLS with `config` works there, including the node's verdict on our
/// client certificate.
///
/// Why: in TLS 1.3 the client's side of the handshake ends when it has
/// sent its certificate; a node that refuses it (none given, or from
/// another CA) says so with an alert that can arrive after the request is
/// written, so ureq may report only "broken pipe" — for a write that would
/// look like exit 5 (outcome unknown) although the server never read it.
/// Here nothing but the handshake is sent: the node then either sends its
/// session tickets (accepted), an alert or a close (refused), or nothing
/// within [`PREFLIGHT_VERDICT`] (taken as accepted). `Err` is the TLS
/// problem; anything else (cannot connect, …) is left to the real request.
fn tls_preflight(config: &Arc<rustls::ClientConfig>, url: &str) -> Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let Some(rest) = url.get(8..) else {
        return Ok(());
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => authority,
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_string()) else {
        return Ok(());
    };
    let Some(addr) = authority.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return Ok(());
    };
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
        return Ok(());
    };
    let Ok(mut conn) = rustls::ClientConnection::new(config.clone(), name) else {
        return Ok(());
    };
    let rustls_error = |e: &std::io::Error| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(describe_rustls)
    };
    let closed = "TLS: the node closed the connection right after the handshake: it refuses \
                  this client (a node run with --http-client-ca needs --cert and --key signed \
                  by that CA)";
    if tcp.set_read_timeout(Some(CONNECT_TIMEOUT)).is_err() {
        return Ok(());
    }
    let mut rounds = 0;
    while conn.is_handshaking() && rounds < 100 {
        rounds += 1;
        if let Err(e) = conn.complete_io(&mut tcp) {
            return match rustls_error(&e) {
                Some(problem) => Err(problem),
                None => Ok(()),
            };
        }
    }
    if tcp.set_read_timeout(Some(PREFLIGHT_VERDICT)).is_err() {
        return Ok(());
    }
    match conn.read_tls(&mut tcp) {
        Ok(0) => Err(closed.into()),
        Ok(_) => match conn.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => Err(describe_rustls(&e)),
        },
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(_) => Err(closed.into()),
    }
}

/// After a plain `http://` request to `url` broke: does the port speak
/// TLS? One raw `GET /livez` in a single write (the server reads all of it,
/// so its answer cannot be lost to a reset) and a look at the first bytes
/// back, within a second: a TLS alert record (`21, 3, …`) says yes.
fn speaks_tls(url: &str) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    if !url
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
    {
        return false;
    }
    let authority = url[7..].split('/').next().unwrap_or("");
    let Some(addr) = authority.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let limit = Some(Duration::from_secs(1));
    if tcp.set_read_timeout(limit).is_err() || tcp.set_write_timeout(limit).is_err() {
        return false;
    }
    let probe = format!("GET /livez HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(probe.as_bytes()).is_err() {
        return false;
    }
    let mut b = [0u8; 2];
    tcp.read_exact(&mut b).is_ok() && b == [21, 3]
}

/// A transport error as one line: the URL, ureq's message, and what TLS
/// said if TLS failed.
fn transport_message(url: &str, t: &ureq::Transport) -> String {
    // ureq's message usually starts with the URL already.
    let what = t.to_string();
    let what = if what.contains(url) {
        what
    } else {
        format!("{url}: {what}")
    };
    match tls_failure(url, t) {
        Some(tls) => format!("{url}: {tls}"),
        None => what,
    }
}

/// An error from a direct `agent.get(..)` as one line (see
/// [`transport_message`]).
fn error_message(url: &str, e: &ureq::Error) -> String {
    match e {
        ureq::Error::Transport(t) => transport_message(url, t),
        other => other.to_string(),
    }
}

/// What a transport error means for the request.
fn transport_step(url: &str, t: &ureq::Transport, kind: Kind) -> Step {
    use ureq::ErrorKind as K;
    if tls_failure(url, t).is_some() {
        // The handshake failed or the node spoke TLS to a plain request:
        // the HTTP server never read it (nothing done, also for a write),
        // and trying again will not change certificates.
        return Step::Next(Skip {
            note: transport_message(url, t),
            retry_after: None,
            answered: false,
            error: None,
            misconfigured: false,
            tls: true,
        });
    }
    let what = transport_message(url, t);
    let not_sent = matches!(
        t.kind(),
        K::ConnectionFailed | K::Dns | K::InvalidUrl | K::UnknownScheme
    );
    if !not_sent && speaks_tls(url) {
        // An HTTPS port that reset a plain request before its TLS alert
        // could be read (it closed with the request body unread): it never
        // read the request as HTTP either.
        return Step::Next(Skip {
            note: format!(
                "{url}: the node speaks HTTPS (it dropped a plain HTTP request, and answers a \
                 probe with a TLS alert): use https:// endpoints, or give --cacert so that \
                 host:port endpoints use https://"
            ),
            retry_after: None,
            answered: false,
            error: None,
            misconfigured: false,
            tls: true,
        });
    }
    if not_sent || kind == Kind::Read {
        Step::Next(Skip {
            note: what,
            retry_after: None,
            // A read that timed out or dropped still means a node is there.
            answered: !not_sent,
            error: None,
            misconfigured: false,
            tls: false,
        })
    } else {
        Step::Fatal(Box::new(CtlError::new(
            Failure::OutcomeUnknown,
            format!("the request failed after it was sent ({what})"),
        )))
    }
}

/// Turns an error answer into a [`CtlError`] with the server's message.
fn server_error(status: u16, url: &str, text: &str, kind: Kind, leader: Option<&str>) -> CtlError {
    let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let code = json
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = json
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let t = text.trim();
            if t.is_empty() {
                "no message".to_string()
            } else {
                t.chars().take(300).collect()
            }
        });
    let failure = match disposition(status, code.as_deref().unwrap_or(""), kind) {
        Disposition::Fail(f) => f,
        _ => Failure::Unavailable,
    };
    let mut line = format!(
        "{message} [{} HTTP {status} from {url}]",
        code.as_deref().unwrap_or("-")
    );
    // (With no leader known, the server's message already says an election
    // may be running.)
    if let (Some("not_leader"), Some(id)) = (code.as_deref(), leader) {
        let _ = write!(
            line,
            " (it names node {id} as the leader: add node {id}'s HTTP address to \
             --endpoints, or give the nodes --peer-http)"
        );
    }
    CtlError {
        failure,
        message: line,
        code,
        detail: json.get("detail").cloned().filter(|d| !d.is_null()),
        body: (!json.is_null()).then(|| text.trim().to_string()),
    }
}

/// Resolves a `Location` header against the URL that sent it.
fn resolve_location(current: &str, location: &str) -> String {
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return location.to_string();
    }
    let origin_end = current
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| current[start..].find('/').map(|j| start + j))
        .unwrap_or(current.len());
    let origin = &current[..origin_end];
    if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        format!("{origin}/{location}")
    }
}

/// The `scheme://host:port` part of a URL.
fn origin(url: &str) -> String {
    resolve_location(url, "/").trim_end_matches('/').to_string()
}

/// `1 partition`, `3 partitions`.
fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Percent-encodes one URL path segment or query value (everything but
/// RFC 3986 unreserved characters).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Pure helpers: assignment, tables, SSE
// ---------------------------------------------------------------------------

/// The atomic batch of `topic create --assign`: `CreateTopic`, then for each
/// partition `p` an `AssignPartition` with `rf` replicas taken round-robin
/// from `brokers` starting at `brokers[p % n]`, a `SetPartitionLeader` (the
/// first replica) and an `UpdateIsr` (all replicas).
fn assignment_batch(
    name: &str,
    partitions: u32,
    rf: u32,
    brokers: &[NodeId],
) -> Result<Vec<Command>, String> {
    let mut unique = BTreeSet::new();
    if let Some(dup) = brokers.iter().find(|b| !unique.insert(**b)) {
        return Err(format!("broker {dup} is listed twice in --brokers"));
    }
    let n = brokers.len();
    if n == 0 {
        return Err("no brokers to assign to: pass --brokers".into());
    }
    if rf == 0 || partitions == 0 {
        return Err("--partitions and --replication-factor must be at least 1".into());
    }
    if rf as usize > n {
        return Err(format!(
            "--replication-factor {rf} is more than the {n} brokers ({}): lower it or pass more --brokers",
            join_ids(brokers)
        ));
    }
    let commands = 1 + 3 * partitions as usize;
    if commands > MAX_BATCH_COMMANDS || partitions > i32::MAX as u32 {
        return Err(format!(
            "--assign with {partitions} partitions needs {commands} commands in one batch; \
             the server takes at most {MAX_BATCH_COMMANDS}: create without --assign and \
             assign partitions separately"
        ));
    }
    let mut out = Vec::with_capacity(commands);
    out.push(Command::CreateTopic {
        name: name.to_string(),
        partition_count: partitions,
        replication_factor: rf,
    });
    for p in 0..partitions as usize {
        let replicas: Vec<NodeId> = (0..rf as usize).map(|i| brokers[(p + i) % n]).collect();
        let partition = p as i32;
        let leader = replicas[0];
        out.push(Command::AssignPartition {
            topic: name.to_string(),
            partition,
            replicas: replicas.clone(),
        });
        out.push(Command::SetPartitionLeader {
            topic: name.to_string(),
            partition,
            leader,
        });
        out.push(Command::UpdateIsr {
            topic: name.to_string(),
            partition,
            isr: replicas,
        });
    }
    Ok(out)
}

/// `1,2,3`.
fn join_ids(ids: &[NodeId]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Formats rows as left-aligned columns separated by two spaces, with the
/// header first; no trailing spaces.
fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate().take(cols) {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            l.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A JSON value as a table cell: strings bare, numbers as is, arrays of
/// numbers as `1,2,3`, null/missing as `-`.
/// One table row per element of the array `json[key]`: the cells of
/// `fields`, in order (no rows if `key` is missing or not an array).
fn rows_of(json: &Value, key: &str, fields: &[&str]) -> Vec<Vec<String>> {
    json.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|x| fields.iter().map(|f| cell(x.get(*f))).collect())
        .collect()
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "-".into(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.into(),
        Some(other) => other.to_string(),
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SseEvent {
    /// `event:` (default `message`).
    event: String,
    /// `data:` lines joined by `\n`.
    data: String,
    /// `id:`, if given.
    id: Option<String>,
}

/// Incremental server-sent-event parser (the WHATWG rules this API uses:
/// `field: value` lines, `:` comments, a blank line ends an event).
#[derive(Debug, Default)]
struct SseParser {
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl SseParser {
    /// Feeds one line (with or without its line ending); returns an event
    /// when the line ends one.
    fn feed(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            let had = std::mem::replace(&mut self.has_data, false);
            if !had && event.is_empty() {
                return None;
            }
            return Some(SseEvent {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
                id: self.id.clone(),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

/// One watch line in table mode: `offset epoch command-json`.
fn watch_line(entry: &Value) -> Option<String> {
    let offset = entry.get("offset")?.as_u64()?;
    let epoch = entry.get("epoch")?.as_u64()?;
    let command = entry.get("command")?;
    Some(format!("{offset} {epoch} {command}"))
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// Writes to stdout; a closed pipe (`| head`) ends the program quietly.
fn emit(text: &str) -> Result<(), CtlError> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let result = lock.write_all(text.as_bytes()).and_then(|()| {
        if text.ends_with('\n') {
            Ok(())
        } else {
            lock.write_all(b"\n")
        }
    });
    match result.and_then(|()| lock.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(CtlError::new(
            Failure::Unavailable,
            format!("cannot write to stdout: {e}"),
        )),
    }
}

/// Prints a write's result.
fn print_write(json: bool, reply: &Reply, what: &str) -> Result<(), CtlError> {
    if json {
        return emit(&reply.body);
    }
    let offset = cell(reply.json.get("offset"));
    let epoch = cell(reply.json.get("epoch"));
    emit(&format!("{what} at offset {offset} (epoch {epoch})"))
}

// ---------------------------------------------------------------------------
// Subcommands
// ---------------------------------------------------------------------------

/// Runs the parsed command line.
fn run(cli: &Cli) -> Result<(), CtlError> {
    let tls = tls_config(
        cli.cacert.as_deref(),
        cli.cert.as_deref(),
        cli.key.as_deref(),
    )?;
    let endpoints: Vec<String> = cli
        .endpoints
        .iter()
        .map(|e| with_scheme(e, cli.cacert.is_some()))
        .collect();
    let client = Client::new(&endpoints, Duration::from_millis(cli.timeout_ms), tls);
    match &cli.command {
        Cmd::Topic(t) => topic(cli, &client, t),
        Cmd::Partition(p) => partition(cli, &client, p),
        Cmd::Status { all } => status(cli, &client, *all),
        Cmd::Watch { from, count } => watch(cli, &client, *from, *count),
        Cmd::Leader(LeaderCmd::Transfer { to }) => {
            let reply = match client.request(
                "POST",
                &format!("/v1/leader/transfer?to={to}"),
                None,
                Kind::Write,
            ) {
                Ok(r) => r,
                // The server refuses a transfer to the node that already
                // leads (`unknown_peer`, "or is this node"); for the user
                // that is done, not wrong.
                Err(e) if e.code.as_deref() == Some("unknown_peer") => {
                    match already_leads(&client, *to) {
                        Some(reply) => reply,
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            if cli.json {
                return emit(&reply.body);
            }
            emit(&format!(
                "node {} leads epoch {}",
                cell(reply.json.get("leader")),
                cell(reply.json.get("epoch"))
            ))
        }
    }
}

/// `Some` (a status reply shaped like a transfer's `{"leader","epoch"}`) if
/// node `to` is the leader an endpoint reports.
fn already_leads(client: &Client, to: NodeId) -> Option<Reply> {
    let status = client.request("GET", "/v1/status", None, Kind::Read).ok()?;
    let leader = status.json.get("leader").and_then(Value::as_u64)?;
    if leader != to {
        return None;
    }
    let body = serde_json::json!({"leader": leader, "epoch": status.json.get("epoch")});
    Some(Reply {
        url: status.url,
        body: body.to_string(),
        json: body,
    })
}

/// Sends one command or a batch (a JSON array) to `/v1/commands`.
fn propose(client: &Client, commands: &[Command], acks: Acks) -> Result<Reply, CtlError> {
    let body = match commands {
        [one] => serde_json::to_string(one),
        many => serde_json::to_string(many),
    }
    .map_err(|e| CtlError::new(Failure::Usage, format!("cannot encode the command: {e}")))?;
    client.request(
        "POST",
        &format!("/v1/commands?acks={}", acks.as_str()),
        Some(&body),
        Kind::Write,
    )
}

/// The query string of a topic read.
fn read_query(read: &ReadArgs, timeout_ms: u64) -> String {
    let mut q = Vec::new();
    if let Some(m) = read.min_offset {
        q.push(format!("min_offset={m}"));
    }
    if read.linearizable {
        q.push("linearizable=true".to_string());
    }
    if !q.is_empty() {
        // Let the server give up (504, exit 6) before this client does.
        let server = if timeout_ms > 2000 {
            timeout_ms - 1000
        } else {
            timeout_ms / 2
        };
        q.push(format!("timeout_ms={}", server.clamp(1, 60_000)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Refuses names that cannot be a URL path segment (`.` and `..`).
fn topic_path(name: &str) -> Result<String, CtlError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(CtlError::new(
            Failure::Usage,
            format!("{name:?} is not a valid topic name"),
        ));
    }
    Ok(format!("/v1/topics/{}", encode_component(name)))
}

/// `topic …`
fn topic(cli: &Cli, client: &Client, cmd: &TopicCmd) -> Result<(), CtlError> {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            replication_factor,
            assign,
            brokers,
            write,
        } => {
            if !assign {
                let c = Command::CreateTopic {
                    name: name.clone(),
                    partition_count: *partitions,
                    replication_factor: *replication_factor,
                };
                let reply = propose(client, &[c], write.acks)?;
                return print_write(
                    cli.json,
                    &reply,
                    &format!(
                        "created topic {name} ({}, replication factor {replication_factor})",
                        plural(*partitions, "partition")
                    ),
                );
            }
            let brokers = if brokers.is_empty() {
                cluster_node_ids(client)?
            } else {
                brokers.clone()
            };
            let batch = assignment_batch(name, *partitions, *replication_factor, &brokers)
                .map_err(|m| CtlError::new(Failure::Usage, m))?;
            let reply = propose(client, &batch, write.acks).map_err(|mut e| {
                if e.code.as_deref() == Some("entry_too_large") {
                    e.message.push_str(
                        "; with --assign the topic and all its assignments are one entry: \
                         use fewer partitions, or create the topic without --assign and \
                         assign its partitions with `metawalctl partition assign/leader/isr`",
                    );
                }
                e
            })?;
            print_write(
                cli.json,
                &reply,
                &format!(
                    "created topic {name} ({}, replication factor \
                     {replication_factor}, assigned over brokers {})",
                    plural(*partitions, "partition"),
                    join_ids(&brokers)
                ),
            )
        }
        TopicCmd::Delete { name, write } => {
            let reply = propose(
                client,
                &[Command::DeleteTopic { name: name.clone() }],
                write.acks,
            )?;
            print_write(cli.json, &reply, &format!("deleted topic {name}"))
        }
        TopicCmd::List { read } => {
            let path = format!("/v1/topics{}", read_query(read, cli.timeout_ms));
            let reply = client.request("GET", &path, None, Kind::Read)?;
            if cli.json {
                return emit(&reply.body);
            }
            let rows = rows_of(
                &reply.json,
                "topics",
                &["name", "partition_count", "replication_factor"],
            );
            let mut out = render_table(&["TOPIC", "PARTITIONS", "RF"], &rows);
            let _ = write!(
                out,
                "({}, applied offset {} at {})",
                plural(u32::try_from(rows.len()).unwrap_or(u32::MAX), "topic"),
                cell(reply.json.get("applied_offset")),
                origin(&reply.url)
            );
            emit(&out)
        }
        TopicCmd::Describe { name, read } => {
            let path = format!("{}{}", topic_path(name)?, read_query(read, cli.timeout_ms));
            let reply = client.request("GET", &path, None, Kind::Read)?;
            if cli.json {
                return emit(&reply.body);
            }
            let j = &reply.json;
            let rows = rows_of(j, "partitions", &["partition", "replicas", "leader", "isr"]);
            let mut out = format!(
                "topic {}  partitions {}  replication factor {}  (applied offset {} at {})\n",
                cell(j.get("name")),
                rows.len(),
                cell(j.get("replication_factor")),
                cell(j.get("applied_offset")),
                origin(&reply.url)
            );
            out.push_str(&render_table(
                &["PARTITION", "REPLICAS", "LEADER", "ISR"],
                &rows,
            ));
            emit(&out)
        }
    }
}

/// The cluster's node ids, for `--assign` without `--brokers`: the leader's
/// own id and its followers' ids, from the first endpoint that is the leader.
fn cluster_node_ids(client: &Client) -> Result<Vec<NodeId>, CtlError> {
    let mut notes = Vec::new();
    for endpoint in &client.endpoints {
        let url = format!("{endpoint}/v1/status");
        if let Err(p) = client.preflight(&url) {
            notes.push(format!("{url}: {p}"));
            continue;
        }
        match client.agent.get(&url).call() {
            Ok(r) => {
                let s: Value = r
                    .into_string()
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or(Value::Null);
                if s.get("role").and_then(Value::as_str) != Some("leader") {
                    notes.push(format!(
                        "{endpoint} is {} (leader: node {})",
                        cell(s.get("role")),
                        cell(s.get("leader"))
                    ));
                    continue;
                }
                let mut ids = BTreeSet::new();
                if let Some(id) = s.get("node_id").and_then(Value::as_u64) {
                    ids.insert(id);
                }
                for f in s
                    .get("followers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = f.get("peer").and_then(Value::as_u64) {
                        ids.insert(id);
                    }
                }
                return Ok(ids.into_iter().collect());
            }
            Err(e) => notes.push(error_message(&url, &e)),
        }
    }
    Err(CtlError::new(
        Failure::Unavailable,
        format!(
            "--assign needs the broker ids, and no endpoint is the leader to tell them ({}): \
             pass --brokers 1,2,3 or add the leader to --endpoints",
            notes.join("; ")
        ),
    ))
}

/// `partition …`
fn partition(cli: &Cli, client: &Client, cmd: &PartitionCmd) -> Result<(), CtlError> {
    let (command, acks, what) = match cmd {
        PartitionCmd::Assign {
            topic,
            partition,
            replicas,
            write,
        } => (
            Command::AssignPartition {
                topic: topic.clone(),
                partition: *partition,
                replicas: replicas.clone(),
            },
            write.acks,
            format!(
                "assigned {topic}/{partition} to replicas {}",
                join_ids(replicas)
            ),
        ),
        PartitionCmd::Leader {
            topic,
            partition,
            leader,
            write,
        } => (
            Command::SetPartitionLeader {
                topic: topic.clone(),
                partition: *partition,
                leader: *leader,
            },
            write.acks,
            format!("set the leader of {topic}/{partition} to {leader}"),
        ),
        PartitionCmd::Isr {
            topic,
            partition,
            isr,
            write,
        } => (
            Command::UpdateIsr {
                topic: topic.clone(),
                partition: *partition,
                isr: isr.clone(),
            },
            write.acks,
            format!("set the ISR of {topic}/{partition} to {}", join_ids(isr)),
        ),
    };
    let reply = propose(client, &[command], acks)?;
    print_write(cli.json, &reply, &what)
}

/// A status table row for one node.
fn status_row(endpoint: &str, s: &Value) -> Vec<String> {
    let digest = cell(s.get("digest"));
    vec![
        cell(s.get("node_id")),
        endpoint.to_string(),
        cell(s.get("role")),
        cell(s.get("epoch")),
        cell(s.get("leader")),
        cell(s.get("log_end")),
        cell(s.get("commit")),
        cell(s.get("applied_offset")),
        digest.chars().take(12).collect(),
    ]
}

/// The status table's columns.
const STATUS_HEADERS: [&str; 9] = [
    "NODE", "ENDPOINT", "ROLE", "EPOCH", "LEADER", "LOG_END", "COMMIT", "APPLIED", "DIGEST",
];

/// The followers table of a leader's status (empty string if none).
fn followers_table(s: &Value) -> String {
    let rows = rows_of(
        s,
        "followers",
        &[
            "peer",
            "connected",
            "state",
            "acked_offset",
            "lag",
            "in_isr",
            "reconnects",
        ],
    );
    if rows.is_empty() {
        return String::new();
    }
    render_table(
        &[
            "PEER",
            "CONNECTED",
            "STATE",
            "ACKED",
            "LAG",
            "IN_ISR",
            "RECONNECTS",
        ],
        &rows,
    )
}

/// `status [--all]`
fn status(cli: &Cli, client: &Client, all: bool) -> Result<(), CtlError> {
    if !all {
        let reply = client.request("GET", "/v1/status", None, Kind::Read)?;
        if cli.json {
            return emit(&reply.body);
        }
        let mut out = render_table(
            &STATUS_HEADERS,
            &[status_row(&origin(&reply.url), &reply.json)],
        );
        let followers = followers_table(&reply.json);
        if !followers.is_empty() {
            out.push('\n');
            out.push_str(&followers);
        }
        return emit(&out);
    }
    let mut rows = Vec::new();
    let mut bodies = Vec::new();
    let mut leaders = Vec::new();
    let mut answered = 0;
    for endpoint in &client.endpoints {
        let url = format!("{endpoint}/v1/status");
        let result = client
            .preflight(&url)
            .map_err(|p| format!("{url}: {p}"))
            .and_then(|()| {
                client
                    .agent
                    .get(&url)
                    .call()
                    .map_err(|e| error_message(&url, &e))
            })
            .and_then(|r| r.into_string().map_err(|e| e.to_string()))
            .and_then(|t| {
                serde_json::from_str::<Value>(&t)
                    .map(|v| (t, v))
                    .map_err(|e| format!("not JSON: {e}"))
            });
        match result {
            Ok((text, s)) => {
                answered += 1;
                rows.push(status_row(endpoint, &s));
                if s.get("role").and_then(Value::as_str) == Some("leader") {
                    leaders.push((cell(s.get("node_id")), followers_table(&s)));
                }
                bodies.push(text.trim().to_string());
            }
            Err(e) => {
                let mut row = vec!["-".to_string(); STATUS_HEADERS.len()];
                row[1] = endpoint.clone();
                row[2] = "unreachable".into();
                rows.push(row);
                bodies.push(
                    serde_json::json!({"endpoint": endpoint, "error": "unreachable", "message": e})
                        .to_string(),
                );
            }
        }
    }
    if cli.json {
        emit(&format!("[{}]", bodies.join(",")))?;
    } else {
        let mut out = render_table(&STATUS_HEADERS, &rows);
        for (id, table) in leaders {
            if !table.is_empty() {
                let _ = write!(out, "\nfollowers of leader {id}:\n{table}");
            }
        }
        emit(&out)?;
    }
    if answered == 0 {
        return Err(CtlError::new(
            Failure::Unavailable,
            format!(
                "no node answered at {}: start the nodes or pass --endpoints",
                client.endpoint_list()
            ),
        ));
    }
    Ok(())
}

/// `watch [--from N] [--count N]`
fn watch(
    cli: &Cli,
    client: &Client,
    from: Option<u64>,
    count: Option<u64>,
) -> Result<(), CtlError> {
    // Without --from: new entries only. Pin the start to an explicit offset
    // (the answering node's applied offset + 1) so that a reconnect before
    // the first entry cannot skip any; the stream's own `X-Metawal-Applied`
    // is read after the server chose its start, so it is only a fallback.
    let mut next = match from {
        Some(f) => Some(f),
        None => client
            .request("GET", "/v1/status", None, Kind::Read)
            .ok()
            .and_then(|r| r.json.get("applied_offset").and_then(Value::as_u64))
            .map(|a| a + 1),
    };
    let mut printed: u64 = 0;
    let mut failures: u32 = 0;
    let mut start = 0;
    if count == Some(0) {
        return Ok(());
    }
    loop {
        let path = match next {
            Some(n) => format!("/v1/watch?from={n}"),
            None => "/v1/watch".to_string(),
        };
        let routed = match client.route(&client.stream_agent, "GET", &path, None, Kind::Read, start)
        {
            Ok(r) => r,
            Err(e) if e.code.as_deref() == Some("compacted") => return Err(compacted(e, client)),
            Err(e) if e.failure == Failure::Unavailable && failures > 0 => {
                failures += 1;
                if failures > MAX_WATCH_RECONNECTS {
                    return Err(e);
                }
                note!("metawalctl: watch: {} (retrying)", e.message);
                sleep(backoff(failures));
                continue;
            }
            Err(e) => return Err(e),
        };
        start = routed.endpoint;
        let response = routed.response;
        if next.is_none() {
            // The status above failed: the stream started after the node's
            // applied offset, at most this one.
            next = response
                .header("X-Metawal-Applied")
                .and_then(|a| a.trim().parse::<u64>().ok())
                .map(|a| a + 1);
        }
        let url = response.get_url().to_string();
        let mut reader = BufReader::new(response.into_reader());
        let mut parser = SseParser::default();
        let mut line = String::new();
        let end = loop {
            line.clear();
            match (&mut reader).take(MAX_SSE_LINE).read_line(&mut line) {
                Ok(0) => break format!("the stream from {url} ended"),
                Ok(_) => {}
                Err(e) => break format!("the stream from {url} failed: {e}"),
            }
            let Some(ev) = parser.feed(&line) else {
                continue;
            };
            let data: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
            match ev.event.as_str() {
                "entry" => {
                    let Some(text) = (if cli.json {
                        Some(ev.data.clone())
                    } else {
                        watch_line(&data)
                    }) else {
                        break format!("{url} sent an entry this client cannot read: {}", ev.data);
                    };
                    emit(&text)?;
                    if let Some(o) = data.get("offset").and_then(Value::as_u64) {
                        next = Some(o + 1);
                    }
                    failures = 0;
                    printed += 1;
                    if Some(printed) == count {
                        return Ok(());
                    }
                }
                "cutoff" | "error" => {
                    if let Some(r) = data.get("resume_from").and_then(Value::as_u64) {
                        next = Some(r);
                    }
                    let why = data
                        .get("message")
                        .or_else(|| data.get("reason"))
                        .map(|m| cell(Some(m)))
                        .unwrap_or_else(|| ev.data.clone());
                    break format!("{url} ended the stream with {}: {why}", ev.event);
                }
                _ => {}
            }
        };
        failures += 1;
        if failures > MAX_WATCH_RECONNECTS {
            return Err(CtlError::new(
                Failure::Unavailable,
                format!("{end}; gave up after {MAX_WATCH_RECONNECTS} reconnects without progress"),
            ));
        }
        note!(
            "metawalctl: watch: {end}; reconnecting from offset {}",
            next.map(|n| n.to_string())
                .unwrap_or_else(|| "(new)".into())
        );
        sleep(backoff(failures));
    }
}

/// Reconnect delay after `n` failures in a row: 200 ms doubling, at most 5 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis((200u64 << n.saturating_sub(1).min(5)).min(5000))
}

/// The 410 `compacted` answer, with what to do.
///
/// The snapshot served by `GET /v1/snapshot` is the node's applied state
/// *now*, which may be past `detail.snapshot_offset`: the watch must resume
/// after the offset of the snapshot actually loaded, so the advice names that
/// offset rather than a number from this answer.
fn compacted(mut e: CtlError, client: &Client) -> CtlError {
    let endpoint = client.endpoints.first().cloned().unwrap_or_default();
    let _ = write!(
        e.message,
        "; to catch up: `curl -s {endpoint}/v1/snapshot` (the whole state at its \
         `offset`), then `metawalctl watch --from <that offset + 1>`"
    );
    e.failure = Failure::Refused;
    e
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                if let Some(body) = &e.body {
                    let _ = writeln!(std::io::stdout(), "{body}");
                }
            }
            let kind = match &cli.command {
                Cmd::Topic(TopicCmd::Create { .. } | TopicCmd::Delete { .. })
                | Cmd::Partition(_)
                | Cmd::Leader(_) => Kind::Write,
                _ => Kind::Read,
            };
            note!(
                "metawalctl: {}: {}\n  -> {}",
                e.failure.label(),
                e.message,
                advice(e.failure, kind)
            );
            ExitCode::from(e.failure.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_host_port_and_urls() {
        assert_eq!(parse_endpoint("127.0.0.1:8081").unwrap(), "127.0.0.1:8081");
        assert_eq!(
            with_scheme(&parse_endpoint("127.0.0.1:8081").unwrap(), false),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            with_scheme(&parse_endpoint("127.0.0.1:8081").unwrap(), true),
            "https://127.0.0.1:8081"
        );
        assert_eq!(
            parse_endpoint("HTTPS://node-1.example:8443/").unwrap(),
            "https://node-1.example:8443"
        );
        // An explicit scheme wins over --cacert either way.
        assert_eq!(with_scheme("http://n1:1", true), "http://n1:1");
        assert_eq!(with_scheme("https://n1:1", false), "https://n1:1");
        assert_eq!(
            parse_endpoint("http://node-2:8082").unwrap(),
            "http://node-2:8082"
        );
        assert_eq!(
            parse_endpoint(" HTTP://n3:8083/ ").unwrap(),
            "http://n3:8083"
        );
        assert_eq!(
            with_scheme(&parse_endpoint("[::1]:8081").unwrap(), false),
            "http://[::1]:8081"
        );
    }

    #[test]
    fn endpoints_refuse_what_they_cannot_reach() {
        for bad in [
            "",
            "localhost",
            "ftp://n1:8081",
            "https://n1",
            "https://n1:8081/v1",
            "n1:0",
            "n1:99999",
            "n1:x",
            "http://n1:8081/v1",
            "::1:8081",
            "[::1:8081",
            "user@n1:8081",
            ":8081",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_endpoint("localhost")
            .unwrap_err()
            .contains("missing port"));
    }

    #[test]
    fn node_ids_are_positive() {
        assert_eq!(parse_node_id("3").unwrap(), 3);
        assert!(parse_node_id("0").is_err());
        assert!(parse_node_id("-1").is_err());
        assert!(parse_node_id("x").is_err());
    }

    #[test]
    fn round_robin_assignment() {
        let batch = assignment_batch("t", 4, 2, &[1, 2, 3]).unwrap();
        assert_eq!(batch.len(), 1 + 3 * 4);
        assert_eq!(
            batch[0],
            Command::CreateTopic {
                name: "t".into(),
                partition_count: 4,
                replication_factor: 2
            }
        );
        let replicas: Vec<Vec<NodeId>> = batch
            .iter()
            .filter_map(|c| match c {
                Command::AssignPartition { replicas, .. } => Some(replicas.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            replicas,
            vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]
        );
        assert_eq!(
            batch[2],
            Command::SetPartitionLeader {
                topic: "t".into(),
                partition: 0,
                leader: 1
            }
        );
        assert_eq!(
            batch[12],
            Command::UpdateIsr {
                topic: "t".into(),
                partition: 3,
                isr: vec![1, 2]
            }
        );
        // The JSON body is an array of externally tagged commands.
        let json = serde_json::to_value(&batch[..2]).unwrap();
        assert_eq!(
            json[1],
            serde_json::json!({"AssignPartition":{"topic":"t","partition":0,"replicas":[1,2]}})
        );
    }

    #[test]
    fn assignment_refuses_impossible_requests() {
        assert!(assignment_batch("t", 3, 4, &[1, 2, 3])
            .unwrap_err()
            .contains("more than the 3 brokers"));
        assert!(assignment_batch("t", 3, 1, &[]).is_err());
        assert!(assignment_batch("t", 3, 1, &[1, 1])
            .unwrap_err()
            .contains("twice"));
        assert!(assignment_batch("t", 4000, 1, &[1]).is_err());
        assert!(assignment_batch("t", 3333, 1, &[1]).is_ok());
    }

    #[test]
    fn status_codes_map_to_exit_codes() {
        use Disposition::*;
        let code = |status, err, kind| match disposition(status, err, kind) {
            Fail(f) => Some(f.exit_code()),
            _ => None,
        };
        assert_eq!(disposition(200, "", Kind::Write), Success);
        assert_eq!(disposition(307, "", Kind::Write), Redirect);
        for s in [400, 404, 409, 410, 413] {
            assert_eq!(code(s, "x", Kind::Write), Some(3));
            assert_eq!(code(s, "x", Kind::Read), Some(3));
        }
        assert_eq!(disposition(503, "not_leader", Kind::Write), TryElsewhere);
        assert_eq!(disposition(503, "overloaded", Kind::Read), TryElsewhere);
        for c in ["timeout", "leadership_lost", "isr_shrank", "shutting_down"] {
            assert_eq!(code(504, c, Kind::Write), Some(5));
        }
        assert_eq!(code(504, "not_applied", Kind::Read), Some(6));
        assert_eq!(code(504, "not_confirmed", Kind::Read), Some(6));
        assert_eq!(code(504, "transfer_timed_out", Kind::Write), Some(4));
        assert_eq!(code(500, "", Kind::Write), Some(5));
        assert_eq!(disposition(500, "", Kind::Read), TryElsewhere);
        assert_eq!(Failure::Usage.exit_code(), 2);
        assert_eq!(Failure::Unavailable.exit_code(), 4);
    }

    #[test]
    fn server_errors_keep_code_and_message() {
        let e = server_error(
            409,
            "http://a:1/v1/commands",
            r#"{"error":"invalid_command","message":"topic exists","detail":{"rule":"TopicExists"}}"#,
            Kind::Write,
            None,
        );
        assert_eq!(e.failure, Failure::Refused);
        assert_eq!(e.code.as_deref(), Some("invalid_command"));
        assert!(e.message.contains("topic exists"));
        assert!(e.detail.is_some());
        let e = server_error(
            503,
            "u",
            r#"{"error":"not_leader","message":"m"}"#,
            Kind::Write,
            Some("3"),
        );
        assert!(e.message.contains("node 3"));
        let e = server_error(502, "u", "<html>bad gateway</html>", Kind::Read, None);
        assert!(e.message.contains("bad gateway"));
        assert!(e.body.is_none());
    }

    #[test]
    fn locations_resolve() {
        assert_eq!(
            resolve_location(
                "http://a:1/v1/commands?acks=all",
                "http://b:2/v1/commands?acks=all"
            ),
            "http://b:2/v1/commands?acks=all"
        );
        assert_eq!(
            resolve_location("http://a:1/v1/commands", "/v1/x"),
            "http://a:1/v1/x"
        );
        assert_eq!(resolve_location("http://a:1", "/"), "http://a:1/");
        assert_eq!(origin("http://a:1/v1/topics?x=1"), "http://a:1");
        assert_eq!(plural(1, "partition"), "1 partition");
        assert_eq!(plural(3, "partition"), "3 partitions");
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("orders.v2_x-y"), "orders.v2_x-y");
        assert_eq!(encode_component("a b/c?"), "a%20b%2Fc%3F");
        assert!(topic_path("..").is_err());
    }

    #[test]
    fn tables_align_columns() {
        let t = render_table(
            &["A", "LONGER"],
            &[
                vec!["x".into(), "1".into()],
                vec!["wide-cell".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A          LONGER\nx          1\nwide-cell  22\n");
        assert_eq!(render_table(&["ONLY"], &[]), "ONLY\n");
    }

    #[test]
    fn cells_render_json() {
        assert_eq!(cell(None), "-");
        assert_eq!(cell(Some(&Value::Null)), "-");
        assert_eq!(cell(Some(&serde_json::json!([1, 2, 3]))), "1,2,3");
        assert_eq!(cell(Some(&serde_json::json!([]))), "-");
        assert_eq!(cell(Some(&serde_json::json!("leader"))), "leader");
        assert_eq!(cell(Some(&serde_json::json!(true))), "yes");
        assert_eq!(cell(Some(&serde_json::json!(7))), "7");
    }

    #[test]
    fn sse_parser_reads_events() {
        let mut p = SseParser::default();
        let stream = "id: 1\nevent: entry\ndata: {\"offset\":1}\n\n: keep-alive\n\n\
                      event: cutoff\r\ndata: {\"resume_from\":2}\r\n\r\n\
                      data:a\ndata:b\n\n";
        let events: Vec<SseEvent> = stream
            .split_inclusive('\n')
            .filter_map(|l| p.feed(l))
            .collect();
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "entry".into(),
                    data: "{\"offset\":1}".into(),
                    id: Some("1".into())
                },
                SseEvent {
                    event: "cutoff".into(),
                    data: "{\"resume_from\":2}".into(),
                    id: Some("1".into())
                },
                SseEvent {
                    event: "message".into(),
                    data: "a\nb".into(),
                    id: Some("1".into())
                },
            ]
        );
    }

    #[test]
    fn watch_lines() {
        let v = serde_json::json!({"offset":2,"epoch":1,"command":{"DeleteTopic":{"name":"x"}}});
        assert_eq!(
            watch_line(&v).unwrap(),
            r#"2 1 {"DeleteTopic":{"name":"x"}}"#
        );
        assert!(watch_line(&serde_json::json!({"offset":2})).is_none());
    }

    #[test]
    fn read_queries() {
        let r = ReadArgs {
            min_offset: Some(5),
            linearizable: true,
        };
        assert_eq!(
            read_query(&r, 10_000),
            "?min_offset=5&linearizable=true&timeout_ms=9000"
        );
        let r = ReadArgs {
            min_offset: None,
            linearizable: false,
        };
        assert_eq!(read_query(&r, 10_000), "");
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(30), Duration::from_millis(5000));
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

    #[test]
    fn tls_files_that_cannot_be_read_are_usage_errors() {
        assert!(tls_config(None, None, None).unwrap().is_none());
        let missing = Path::new("/nonexistent/metawalctl-test/ca.pem");
        let err = tls_config(Some(missing), None, None).unwrap_err();
        assert_eq!(err.failure, Failure::Usage);
        assert!(
            err.message.contains("CA certificate") && err.message.contains("ca.pem"),
            "{}",
            err.message
        );
        let err = tls_config(Some(missing), Some(missing), None).unwrap_err();
        assert_eq!(err.failure, Failure::Usage);
        let err = tls_config(None, Some(missing), Some(missing)).unwrap_err();
        assert_eq!(err.failure, Failure::Usage);
        assert!(err.message.contains("--cacert"), "{}", err.message);
        // A file with no certificate in it.
        let dir = std::env::temp_dir().join(format!("metawalctl-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = tls_config(Some(&empty), None, None).unwrap_err();
        assert_eq!(err.failure, Failure::Usage);
        assert!(
            err.message.contains("no PEM CERTIFICATE"),
            "{}",
            err.message
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A self-signed CA certificate (openssl, P-256, valid until 2126).
    const TEST_CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBmzCCAUGgAwIBAgIUJaayKrJYj4hUrNw2zwdvrPTjFCYwCgYIKoZIzj0EAwIw\n\
IjEgMB4GA1UEAwwXbWV0YXdhbGN0bCB1bml0IHRlc3QgQ0EwIBcNMjYxMTI5MDYy\n\
MzI1WhgPMjEyNjExMDUwNjIzMjVaMCIxIDAeBgNVBAMMF21ldGF3YWxjdGwgdW5p\n\
dCB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE66t+oXJqhtKdkcEK\n\
P/F2gRoNEpABAalW+r1spEGJCECtMxdOEKRJTIQsdGCNbGOFG/bPBhKpKbpzJvK+\n\
LtPFMaNTMFEwHQYDVR0OBBYEFFUAkFPnN1q6asvnRImu+rdEQ/sLMB8GA1UdIwQY\n\
MBaAFFUAkFPnN1q6asvnRImu+rdEQ/sLMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI\n\
zj0EAwIDSAAwRQIhAM3PfKXOwY27BFVhcOrWYIVZYZdtAEmmB7fGxffOdVPdAiAk\n\
JEk91i5Embcqgy8SJPPNQwSVer+i9Iag0wPCnzr9tQ==\n\
-----END CERTIFICATE-----\n\
";

    /// A server that answers every connection's first bytes with a TLS
    /// alert record and closes, as an HTTPS port does to plain HTTP.
    /// A server that answers every connection's first bytes with a TLS
    /// alert record and closes, as an HTTPS port does to plain HTTP (also
    /// the probe that follows a reset). Sends how many bytes the first
    /// connection brought.
    fn tls_only_server() -> (String, std::sync::mpsc::Receiver<usize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Bounded: the request and at most one probe.
            for _ in 0..2 {
                let Ok((mut stream, _)) = listener.accept() else {
                    break;
                };
                let mut b = [0u8; 1024];
                let n = stream.read(&mut b).unwrap_or(0);
                let _ = tx.send(n);
                // alert, TLS 1.2 record version, length 2, fatal,
                // decode_error; then close, maybe with the body unread
                // (then the client sees a reset).
                let _ = stream.write_all(&[21, 3, 3, 0, 2, 2, 50]);
            }
        });
        (base, rx)
    }

    #[test]
    fn plain_http_to_an_https_port_is_unavailable_not_unknown() {
        let (base, sent) = tls_only_server();
        let client = Client::new(&[base], Duration::from_secs(5), None);
        let err = propose(
            &client,
            &[Command::DeleteTopic { name: "t".into() }],
            Acks::All,
        )
        .unwrap_err();
        let n = sent.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(n > 0, "the request was not sent");
        // The TLS layer refused the bytes: nothing was done, so not exit 5.
        assert_eq!(err.failure, Failure::Unavailable, "{}", err.message);
        assert!(
            err.message.contains("TLS") && err.message.contains("https://"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_https_endpoint_serving_plain_http_is_a_tls_failure() {
        // A plain HTTP server on an https:// endpoint: it answers the
        // ClientHello with an HTTP error, which is no TLS record.
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let https = format!("https://{}", listener.local_addr().unwrap());
        let _h = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut b = [0u8; 1024];
            let _ = stream.read(&mut b);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        let dir = std::env::temp_dir().join(format!("metawalctl-tls2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Any well-formed CA certificate will do: the handshake never gets
        // as far as checking it.
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, TEST_CA_PEM).unwrap();
        let tls = tls_config(Some(&ca), None, None).unwrap();
        let client = Client::new(&[https], Duration::from_secs(5), tls);
        let err = client
            .request("GET", "/v1/status", None, Kind::Read)
            .unwrap_err();
        assert_eq!(err.failure, Failure::Unavailable, "{}", err.message);
        assert!(err.message.contains("TLS"), "{}", err.message);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A one-thread HTTP server that answers each accepted connection with
    /// the next canned response (`None`: read the request, then close
    /// without answering) and returns what it received: (request line, body).
    fn fake_server(
        responses: Vec<Option<String>>,
    ) -> (
        String,
        std::net::TcpListener,
        std::thread::JoinHandle<Vec<(String, String)>>,
    ) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let probe = listener.try_clone().unwrap();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for response in responses {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.push((
                    request_line.trim().to_string(),
                    String::from_utf8(body).unwrap(),
                ));
                if let Some(r) = response {
                    (&stream).write_all(r.as_bytes()).unwrap();
                }
            }
            seen
        });
        (base, probe, handle)
    }

    fn http(status: &str, headers: &str, body: &str) -> Option<String> {
        Some(format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }

    #[test]
    fn a_write_follows_307_and_resends_the_body() {
        let (leader, _, leader_seen) =
            fake_server(vec![http("200 OK", "", r#"{"offset":5,"epoch":2}"#)]);
        let location = format!("Location: {leader}/v1/commands?acks=all\r\n");
        let (follower, _, follower_seen) =
            fake_server(vec![http("307 Temporary Redirect", &location, "{}")]);
        let client = Client::new(&[follower], Duration::from_secs(5), None);
        let reply = propose(
            &client,
            &[Command::DeleteTopic { name: "t".into() }],
            Acks::All,
        )
        .unwrap();
        assert_eq!(reply.json["offset"], 5);
        let body = r#"{"DeleteTopic":{"name":"t"}}"#;
        assert_eq!(
            follower_seen.join().unwrap(),
            vec![("POST /v1/commands?acks=all HTTP/1.1".into(), body.into())]
        );
        assert_eq!(leader_seen.join().unwrap()[0].1, body);
    }

    #[test]
    fn a_write_dropped_after_sending_is_unknown_and_not_resent() {
        let (a, _, a_seen) = fake_server(vec![None]);
        let (b, b_probe, _b) = fake_server(vec![]);
        let client = Client::new(&[a, b], Duration::from_secs(5), None);
        let err = propose(
            &client,
            &[Command::DeleteTopic { name: "t".into() }],
            Acks::All,
        )
        .unwrap_err();
        assert_eq!(err.failure, Failure::OutcomeUnknown);
        assert_eq!(a_seen.join().unwrap().len(), 1);
        b_probe.set_nonblocking(true).unwrap();
        assert!(
            b_probe.accept().is_err(),
            "the write was sent to a second node"
        );
    }

    #[test]
    fn a_request_skips_dead_and_leaderless_nodes() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let (busy, _, _h1) = fake_server(vec![http(
            "503 Service Unavailable",
            "Retry-After: 1\r\nX-Metawal-Leader: none\r\n",
            r#"{"error":"not_leader","message":"no leader","detail":null}"#,
        )]);
        let (ok, _, _h2) = fake_server(vec![http("200 OK", "", r#"{"offset":9,"epoch":3}"#)]);
        let client = Client::new(&[dead, busy, ok], Duration::from_secs(5), None);
        let reply = propose(
            &client,
            &[Command::DeleteTopic { name: "t".into() }],
            Acks::Leader,
        )
        .unwrap();
        assert_eq!(reply.json["offset"], 9);
    }

    #[test]
    fn refusals_and_unknown_outcomes_end_at_once() {
        let (a, _, _h) = fake_server(vec![http(
            "504 Gateway Timeout",
            "",
            r#"{"error":"leadership_lost","message":"lost","detail":null}"#,
        )]);
        let (b, b_probe, _hb) = fake_server(vec![]);
        let client = Client::new(&[a, b], Duration::from_secs(5), None);
        let err = propose(
            &client,
            &[Command::DeleteTopic { name: "t".into() }],
            Acks::All,
        )
        .unwrap_err();
        assert_eq!(err.failure.exit_code(), 5);
        assert_eq!(err.code.as_deref(), Some("leadership_lost"));
        b_probe.set_nonblocking(true).unwrap();
        assert!(b_probe.accept().is_err());
        let (c, _, _hc) = fake_server(vec![http(
            "404 Not Found",
            "",
            r#"{"error":"unknown_topic","message":"no such topic","detail":null}"#,
        )]);
        let client = Client::new(&[c], Duration::from_secs(5), None);
        let err = client
            .request("GET", "/v1/topics/x", None, Kind::Read)
            .unwrap_err();
        assert_eq!(err.failure.exit_code(), 3);
        assert!(err.body.unwrap().contains("unknown_topic"));
    }
}
