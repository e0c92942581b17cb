//! One request to one node, sent once, not redirected, not retried.
//!
//! Why a module of its own: everything above it (routing, redirects,
//! retries) is policy; this is the mechanism it is built on, and what load
//! generators and test harnesses need directly — send exactly once, keep a
//! keep-alive connection if asked, and say precisely whether a failure
//! happened before anything was sent ([`NodeError::NotSent`],
//! [`NodeError::Diagnosed`]) or after ([`NodeError::MaybeSent`]).

use std::sync::Arc;
use std::time::Duration;

use metawal::NodeId;
use rustls::ClientConfig;
use serde_json::Value;

use crate::diagnose::{probe_plain, tls_failure, Diagnosis, PlainProbe, Preflight};
use crate::error::{transport_text, Appended, Kind};
use crate::types::Reply;
use crate::CONNECT_TIMEOUT;

/// The HTTP methods of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Reads.
    Get,
    /// Writes and the leadership transfer.
    Post,
    /// Removing a member.
    Delete,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// Whether a [`Node`] keeps its connection between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// A fresh connection per request: a connection the server closed while
    /// idle can never make a write look lost. What [`crate::Client`] uses.
    Fresh,
    /// One keep-alive connection, reused (for load generation). A write on
    /// a reused connection that the server had closed fails as
    /// [`NodeError::MaybeSent`]: the client cannot tell it was not read.
    KeepAlive,
}

/// A node's answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Answer {
    /// The URL that answered.
    pub url: String,
    /// The HTTP status.
    pub status: u16,
    /// `X-Metawal-Leader` (absent or `none`: `None`).
    pub leader: Option<NodeId>,
    /// `X-Metawal-Epoch`.
    pub epoch: Option<u64>,
    /// `X-Metawal-Applied`.
    pub applied: Option<u64>,
    /// `Location` (on a redirect).
    pub location: Option<String>,
    /// `Retry-After`.
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: String,
}

/// Why one request to one node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node never read the request as HTTP (TLS failed, or the port
    /// speaks something else). Nothing was done.
    #[error("{url}: {problem}")]
    Diagnosed {
        /// The URL.
        url: String,
        /// What was found.
        problem: Diagnosis,
    },
    /// Could not connect (refused, DNS, bad URL): nothing was sent.
    #[error("{}", transport_text(url, source))]
    NotSent {
        /// The URL.
        url: String,
        /// ureq's error.
        source: Box<ureq::Transport>,
    },
    /// The connection failed after the request may have been sent: a write
    /// may have been applied.
    #[error("{}", transport_text(url, source))]
    MaybeSent {
        /// The URL.
        url: String,
        /// ureq's error.
        source: Box<ureq::Transport>,
    },
    /// The node answered but its body could not be read.
    #[error("{url} answered but its body could not be read: {source}")]
    BodyUnreadable {
        /// The URL.
        url: String,
        /// The read error.
        source: std::io::Error,
    },
    /// ([`Node::get`] only) The node answered with a status other than 2xx.
    #[error("{}: status code {}", answer.url, answer.status)]
    Status {
        /// The answer.
        answer: Box<Answer>,
    },
    /// ([`Node::get`] only) The body is not JSON.
    #[error("not JSON: {source}")]
    NotJson {
        /// The URL.
        url: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

impl NodeError {
    /// Whether a write that failed like this may be in the log.
    pub fn appended(&self, kind: Kind) -> Appended {
        match (kind, self) {
            (Kind::Read, _) | (_, NodeError::Diagnosed { .. } | NodeError::NotSent { .. }) => {
                Appended::No
            }
            // A 2xx answer was a success, any other a refusal: the caller
            // looks at the status (docs/api.md); here only "maybe".
            _ => Appended::Maybe,
        }
    }
}

/// The agent and the TLS preflight, shared by every node of a client.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    pub(crate) agent: ureq::Agent,
    pub(crate) preflight: Arc<Preflight>,
}

impl Transport {
    /// A ureq agent: 2 s connect timeout, overall `timeout` (or read
    /// `read_timeout` for streams), no redirects (the caller follows them,
    /// re-sending the body), TLS from `tls` (`None`: built-in web roots).
    pub(crate) fn agent(
        tls: Option<&Arc<ClientConfig>>,
        timeout: Option<Duration>,
        read_timeout: Option<Duration>,
        reuse: Reuse,
    ) -> ureq::Agent {
        let mut b = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .redirects(0)
            .user_agent(concat!("metawal-client/", env!("CARGO_PKG_VERSION")));
        if reuse == Reuse::Fresh {
            b = b.max_idle_connections(0);
        }
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        if let Some(t) = read_timeout {
            b = b.timeout_read(t);
        }
        if let Some(tls) = tls {
            b = b.tls_config(tls.clone());
        }
        b.build()
    }

    /// Sends `method url` once and returns the unread answer, whatever its
    /// status; `timeout` overrides the agent's overall timeout.
    pub(crate) fn start(
        &self,
        method: Method,
        url: &str,
        body: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<ureq::Response, StartError> {
        self.preflight
            .check(url)
            .map_err(|problem| StartError::Diagnosed {
                url: url.to_string(),
                problem,
            })?;
        let mut request = self
            .agent
            .request(method.as_str(), url)
            .set("Accept", "application/json");
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let result = match body {
            Some(b) => request
                .set("Content-Type", "application/json")
                .send_string(b),
            None => request.call(),
        };
        match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => Ok(r),
            Err(ureq::Error::Transport(t)) => Err(classify(url, t)),
        }
    }
}

/// Why [`Transport::start`] got no answer.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The node never read the request as HTTP.
    Diagnosed { url: String, problem: Diagnosis },
    /// Nothing was sent.
    NotSent {
        url: String,
        source: Box<ureq::Transport>,
    },
    /// The request may have been sent.
    MaybeSent {
        url: String,
        source: Box<ureq::Transport>,
    },
}

impl From<StartError> for NodeError {
    fn from(e: StartError) -> NodeError {
        match e {
            StartError::Diagnosed { url, problem } => NodeError::Diagnosed { url, problem },
            StartError::NotSent { url, source } => NodeError::NotSent { url, source },
            StartError::MaybeSent { url, source } => NodeError::MaybeSent { url, source },
        }
    }
}

/// What a transport error means: diagnosed (nothing done), not sent, or
/// maybe sent.
fn classify(url: &str, t: ureq::Transport) -> StartError {
    use ureq::ErrorKind as K;
    let url = url.to_string();
    if let Some(problem) = tls_failure(&url, &t) {
        // The handshake failed or the node spoke TLS to a plain request:
        // the HTTP server never read it (nothing done, also for a write).
        return StartError::Diagnosed { url, problem };
    }
    let not_sent = matches!(
        t.kind(),
        K::ConnectionFailed | K::Dns | K::InvalidUrl | K::UnknownScheme
    );
    if not_sent {
        return StartError::NotSent {
            url,
            source: Box::new(t),
        };
    }
    // An HTTPS port that reset a plain request before its TLS alert could
    // be read, or a replication listener: neither read it as HTTP.
    let problem = match probe_plain(&url) {
        PlainProbe::Tls => Diagnosis::SpeaksHttps { dropped: true },
        PlainProbe::Replication { node, cluster } => Diagnosis::ReplicationListener {
            node,
            cluster,
            tls: false,
        },
        _ => {
            return StartError::MaybeSent {
                url,
                source: Box::new(t),
            }
        }
    };
    StartError::Diagnosed { url, problem }
}

/// The answer's headers and body, read.
pub(crate) fn read_answer(response: ureq::Response) -> Result<Answer, NodeError> {
    let url = response.get_url().to_string();
    let number = |name: &str| {
        response
            .header(name)
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let (status, leader, epoch, applied) = (
        response.status(),
        number("X-Metawal-Leader"),
        number("X-Metawal-Epoch"),
        number("X-Metawal-Applied"),
    );
    let retry_after = number("Retry-After").map(Duration::from_secs);
    let location = response.header("Location").map(str::to_string);
    let body = response
        .into_string()
        .map_err(|source| NodeError::BodyUnreadable {
            url: url.clone(),
            source,
        })?;
    Ok(Answer {
        url,
        status,
        leader,
        epoch,
        applied,
        location,
        retry_after,
        body,
    })
}

/// One node of the API, for requests sent exactly once.
#[derive(Debug, Clone)]
pub struct Node {
    endpoint: String,
    transport: Transport,
}

impl Node {
    /// A node at `endpoint` (`http://host:port` or `https://host:port`, see
    /// [`crate::parse_endpoint`] and [`crate::with_scheme`]); each request
    /// times out after `timeout`; `tls` is trusted for `https://` (`None`:
    /// the built-in web roots).
    pub fn new(
        endpoint: &str,
        timeout: Duration,
        tls: Option<Arc<ClientConfig>>,
        reuse: Reuse,
    ) -> Node {
        let agent = Transport::agent(tls.as_ref(), Some(timeout), None, reuse);
        Node::with_transport(
            endpoint,
            Transport {
                agent,
                preflight: Arc::new(Preflight::new(tls)),
            },
        )
    }

    pub(crate) fn with_transport(endpoint: &str, transport: Transport) -> Node {
        Node {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            transport,
        }
    }

    /// The endpoint (`scheme://host:port`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends `method path` (with a JSON `body`) once: no redirect followed,
    /// no retry. Any status is an [`Answer`]; an error says whether the
    /// request may have reached the node.
    pub fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<Answer, NodeError> {
        let url = format!("{}{path}", self.endpoint);
        read_answer(self.transport.start(method, &url, body, None)?)
    }

    /// `GET path` once, expecting a 2xx JSON answer.
    pub fn get(&self, path: &str) -> Result<Reply, NodeError> {
        let answer = self.send_once(Method::Get, path, None)?;
        if !(200..300).contains(&answer.status) {
            return Err(NodeError::Status {
                answer: Box::new(answer),
            });
        }
        let json: Value =
            serde_json::from_str(&answer.body).map_err(|source| NodeError::NotJson {
                url: answer.url.clone(),
                source,
            })?;
        Ok(Reply {
            url: answer.url,
            body: answer.body,
            json,
        })
    }
}
