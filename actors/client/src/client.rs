//! The client over an endpoint list: routing to the leader, redirects,
//! and retries that never re-send a write that may have been applied.
//!
//! Why a module of its own: this is the policy (docs/api.md, "metawalctl"):
//!
//! * A request goes to the first endpoint; a follower's `307` is followed
//!   by the client itself (at most [`MAX_HOPS`] hops) because ureq does not
//!   re-send a POST body on a redirect.
//! * A refused connection, a TLS failure or a `503` moves on to the next
//!   endpoint; when every endpoint was tried and some node answered (an
//!   election is probably running), the list is tried again after the
//!   server's `Retry-After`, for at most [`MAX_ROUNDS`] rounds within the
//!   timeout. TLS failures are not waited out (certificates do not fix
//!   themselves).
//! * Only a failure to connect (nothing was sent), a TLS failure (the
//!   server never read it) or a `503` (the server promises nothing was
//!   appended) lets a write go to another endpoint. A `504` such as
//!   `timeout`, or a connection that drops after the request was sent,
//!   ends the request: the entry may be in the log ([`Error::appended`]).
//!   Connections are not pooled, so a stale keep-alive connection can never
//!   make a write look lost.

use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use metawal::Command;
use rustls::ClientConfig;
use serde_json::Value;

use crate::diagnose::Preflight;
use crate::error::{Attempt, Disposition, Error, ErrorCode, Kind, ServerError, Unavailable};
use crate::node::{Method, Node, Reuse, StartError, Transport};
use crate::types::{Acks, NodeStatus, Proposed, Reply};
use crate::watch::ChangeStream;
use crate::{endpoint::resolve_location, MAX_HOPS, MAX_ROUNDS};

/// A change stream silent this long is given up (the server sends a
/// keep-alive comment every 15 s).
pub const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(45);

/// What one endpoint did with a request.
enum Step {
    /// Give up with this error.
    Fatal(Error),
    /// Try the next endpoint.
    Next(Box<Attempt>),
}

/// What one pass over the endpoint list found.
enum Round {
    /// An endpoint (its index) answered with a 2xx.
    Done(Box<ureq::Response>, usize),
    /// None did; the endpoints that did not answer at all.
    Failed(Vec<Attempt>, Vec<usize>),
}

/// A request: what the routing needs to (re)send it.
#[derive(Clone, Copy)]
struct Request<'a> {
    method: Method,
    path: &'a str,
    body: Option<&'a str>,
    kind: Kind,
    /// Overrides the agent's overall timeout (the change stream's limit).
    timeout: Option<Duration>,
}

/// The blocking client of a metawal cluster's HTTP API.
#[derive(Debug)]
pub struct Client {
    nodes: Vec<Node>,
    endpoints: Vec<String>,
    /// For ordinary requests: overall timeout.
    transport: Transport,
    /// For change streams: no overall timeout, a read timeout instead.
    stream: Transport,
    timeout: Duration,
}

impl Client {
    /// A client over `endpoints` (each `http://host:port` or
    /// `https://host:port`, see [`crate::parse_endpoint`] and
    /// [`crate::with_scheme`]; duplicates are dropped), with `timeout` for
    /// one request, trusting `tls` for `https://` (`None`: the built-in web
    /// roots). Nothing is connected until a request is made.
    pub fn new(endpoints: &[String], timeout: Duration, tls: Option<Arc<ClientConfig>>) -> Self {
        let mut seen = std::collections::BTreeSet::new();
        let endpoints: Vec<String> = endpoints
            .iter()
            .filter(|e| seen.insert(e.to_string()))
            .cloned()
            .collect();
        let preflight = Arc::new(Preflight::new(tls.clone()));
        let agent = |timeout, read| Transport::agent(tls.as_ref(), timeout, read, Reuse::Fresh);
        let transport = Transport {
            agent: agent(Some(timeout), None),
            preflight: preflight.clone(),
        };
        let stream = Transport {
            agent: agent(None, Some(WATCH_READ_TIMEOUT)),
            preflight,
        };
        Client {
            nodes: endpoints
                .iter()
                .map(|e| Node::with_transport(e, transport.clone()))
                .collect(),
            endpoints,
            transport,
            stream,
            timeout,
        }
    }

    /// The endpoints, deduplicated, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// One [`Node`] per endpoint, for requests sent once to that node.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The timeout of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `method path` (with a JSON `body`) to the cluster, following
    /// the leader and moving on as the module doc says, and reads the
    /// answer.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        kind: Kind,
    ) -> Result<Reply, Error> {
        let request = Request {
            method,
            path,
            body,
            kind,
            timeout: None,
        };
        let (response, _) = self.route(&self.transport, request, 0)?;
        let url = response.get_url().to_string();
        let body = response
            .into_string()
            .map_err(|source| Error::BodyUnreadable {
                url: url.clone(),
                kind,
                source,
            })?;
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Ok(Reply { url, body, json })
    }

    /// `GET path` from any node that answers (a read).
    pub fn get(&self, path: &str) -> Result<Reply, Error> {
        self.request(Method::Get, path, None, Kind::Read)
    }

    /// `GET /v1/status` from the first node that answers; its typed form is
    /// `reply.parse::<NodeStatus>()` (or [`Client::node_status`]).
    pub fn status(&self) -> Result<Reply, Error> {
        self.get("/v1/status")
    }

    /// `GET /v1/status`, typed.
    pub fn node_status(&self) -> Result<NodeStatus, Error> {
        let reply = self.status()?;
        reply.parse().map_err(|source| Error::UnexpectedBody {
            url: reply.url.clone(),
            kind: Kind::Read,
            body: reply.body.clone(),
            source,
        })
    }

    /// Proposes one command, or several as one atomic batch (one log
    /// entry, all or none), with `acks`. On failure,
    /// [`Error::appended`] says whether the entry may be in the log.
    pub fn propose(&self, commands: &[Command], acks: Acks) -> Result<Proposed, Error> {
        let body = match commands {
            [one] => serde_json::to_string(one),
            many => serde_json::to_string(many),
        }
        .map_err(Error::Encode)?;
        let path = format!("/v1/commands?acks={}", acks.as_str());
        let reply = self.request(Method::Post, &path, Some(&body), Kind::Write)?;
        let mut proposed: Proposed = reply.parse().map_err(|source| Error::UnexpectedBody {
            url: reply.url.clone(),
            kind: Kind::Write,
            body: reply.body.clone(),
            source,
        })?;
        proposed.reply = Some(reply);
        Ok(proposed)
    }

    /// Opens the change stream `GET /v1/watch` from offset `from` (`None`:
    /// new entries only) on the first node that answers.
    pub fn watch(&self, from: Option<u64>) -> Result<ChangeStream, Error> {
        self.watch_at(from, 0, None)
    }

    /// [`Client::watch`] starting at endpoint `start` (the one a previous
    /// stream came from), ending the stream after `limit` if given.
    pub fn watch_at(
        &self,
        from: Option<u64>,
        start: usize,
        limit: Option<Duration>,
    ) -> Result<ChangeStream, Error> {
        let path = match from {
            Some(n) => format!("/v1/watch?from={n}"),
            None => "/v1/watch".to_string(),
        };
        let request = Request {
            method: Method::Get,
            path: &path,
            body: None,
            kind: Kind::Read,
            timeout: limit,
        };
        let (response, endpoint) = self.route(&self.stream, request, start)?;
        Ok(ChangeStream::new(response, endpoint))
    }

    /// Finds a node that answers `request` with a 2xx, starting at
    /// endpoint `start`: the unread answer and the endpoint's index.
    fn route(
        &self,
        transport: &Transport,
        request: Request<'_>,
        start: usize,
    ) -> Result<(ureq::Response, usize), Error> {
        let n = self.endpoints.len().max(1);
        let deadline = Instant::now() + self.timeout;
        let mut order: Vec<usize> = (0..self.endpoints.len()).map(|i| (start + i) % n).collect();
        let mut attempts = Vec::new();
        for round in 0..MAX_ROUNDS {
            let down = match self.round(transport, request, &order)? {
                Round::Done(response, i) => return Ok((*response, i)),
                Round::Failed(a, down) => {
                    attempts = a;
                    down
                }
            };
            let wait = attempts
                .iter()
                .filter_map(|a| a.server_error().and_then(|e| e.retry_after))
                .max()
                .unwrap_or(Duration::from_millis(500))
                .clamp(Duration::from_millis(200), Duration::from_secs(2));
            if !worth_waiting(&attempts)
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
        Err(Error::Unavailable(Box::new(Unavailable {
            endpoints: self.endpoints.clone(),
            attempts,
        })))
    }

    /// One pass over the endpoints in `order`.
    fn round(
        &self,
        transport: &Transport,
        request: Request<'_>,
        order: &[usize],
    ) -> Result<Round, Error> {
        let mut attempts = Vec::new();
        let mut down = Vec::new();
        for &i in order {
            let url = format!("{}{}", self.endpoints[i], request.path);
            match follow(transport, request, &url) {
                Ok(response) => return Ok(Round::Done(Box::new(response), i)),
                Err(Step::Fatal(e)) => return Err(e),
                Err(Step::Next(attempt)) => {
                    if !attempt.answered() {
                        down.push(i);
                    }
                    // overloaded, not_enough_replicas, …: the leader
                    // itself answered; the others would send us back to it.
                    let busy = attempt
                        .server_error()
                        .is_some_and(|e| e.code != Some(ErrorCode::NotLeader));
                    attempts.push(*attempt);
                    if busy {
                        break;
                    }
                }
            }
        }
        Ok(Round::Failed(attempts, down))
    }
}

/// Whether another round may succeed: some node answered (an election is
/// likely), and not every node that answered names a leader it has no
/// HTTP address for (a configuration problem). TLS failures count as not
/// answering: waiting will not fix certificates.
fn worth_waiting(attempts: &[Attempt]) -> bool {
    let any_answered = attempts.iter().any(Attempt::answered);
    let all_misconfigured = attempts
        .iter()
        .filter(|a| a.answered())
        .all(|a| a.server_error().is_some_and(ServerError::misconfigured));
    any_answered && !all_misconfigured
}

/// Sends the request to `url` and follows `307`s from there.
fn follow(transport: &Transport, request: Request<'_>, url: &str) -> Result<ureq::Response, Step> {
    let mut url = url.to_string();
    for hop in 0..=MAX_HOPS {
        let response = transport
            .start(request.method, &url, request.body, request.timeout)
            .map_err(|e| failed(e, request.kind, hop > 0))?;
        let status = response.status();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        if status == 307 || status == 308 {
            match response.header("Location") {
                Some(location) => {
                    url = resolve_location(&url, location);
                    continue;
                }
                None => return Err(Step::Next(Box::new(Attempt::NoLocation { url, status }))),
            }
        }
        let err = server_error(response, &url, request.kind);
        return Err(match err.disposition() {
            Disposition::Fail(_) => Step::Fatal(Error::Server(Box::new(err))),
            _ => Step::Next(Box::new(Attempt::Server(err))),
        });
    }
    Err(Step::Next(Box::new(Attempt::TooManyRedirects { url })))
}

/// An error answer (its body read) as a [`ServerError`].
fn server_error(response: ureq::Response, url: &str, kind: Kind) -> ServerError {
    let header = |name| {
        response
            .header(name)
            .and_then(|v: &str| v.trim().parse::<u64>().ok())
    };
    let leader = header("X-Metawal-Leader");
    let retry_after = header("Retry-After").map(Duration::from_secs);
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    let mut err = ServerError::from_answer(status, url, &text, kind, leader);
    err.retry_after = retry_after;
    err
}

/// What a request that got no answer means: a write that may have been
/// sent ends here; anything else moves on to the next endpoint.
fn failed(e: StartError, kind: Kind, redirected: bool) -> Step {
    let attempt = match e {
        StartError::Diagnosed { url, problem } => Attempt::Diagnosed { url, problem },
        StartError::NotSent { url, source } => Attempt::Transport {
            url,
            sent: false,
            source,
        },
        StartError::MaybeSent { url, source } if kind == Kind::Read => Attempt::Transport {
            url,
            // A read that timed out or dropped still means a node is there.
            sent: true,
            source,
        },
        StartError::MaybeSent { url, source } => {
            return Step::Fatal(Error::SentThenFailed { url, source })
        }
    };
    if redirected {
        // The first node answered with a redirect to a leader that is
        // gone: an election is coming, so this counts as "a node answered".
        Step::Next(Box::new(Attempt::LeaderUnreachable(Box::new(attempt))))
    } else {
        Step::Next(Box::new(attempt))
    }
}
