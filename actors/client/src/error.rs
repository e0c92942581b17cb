//! What a failed request means, typed: whether it may have been applied,
//! what the server said, and why no node took it.
//!
//! Why a module of its own: the one promise this client makes — a write
//! that may have been applied is never sent again — rests on classifying
//! every failure exactly (docs/api.md's status table). [`disposition`] is
//! that table; [`Error::appended`] is the answer callers need before they
//! retry; [`Failure`] is the coarse class (one metawalctl exit code each).

use std::time::Duration;

use metawal::NodeId;
use serde_json::Value;

use crate::diagnose::Diagnosis;
use crate::MAX_HOPS;

/// Whether a request may change the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GET: safe to send anywhere, any number of times.
    Read,
    /// POST: once the request may have been received, never re-sent.
    Write,
}

/// Whether a failed write may be in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Nothing was appended: safe to send again (to any node).
    No,
    /// The entry may be in the log and may still commit: read it back
    /// (`GET /v1/watch?from=…`, the topic) before sending it again.
    Maybe,
}

/// The class of a failure (each is one metawalctl exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The request could not be made on this side; nothing was sent.
    Usage,
    /// The cluster refused the request; nothing was done.
    Refused,
    /// No node could take the request; nothing was done.
    Unavailable,
    /// A write may or may not be in the log.
    OutcomeUnknown,
    /// A read did not get its answer in time.
    ReadTimeout,
}

/// What to do with an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// 2xx: done.
    Success,
    /// 307/308: follow `Location`.
    Redirect,
    /// Not this node, or not now (503; 5xx on a read): try the next endpoint.
    TryElsewhere,
    /// The request ends with this failure.
    Fail(Failure),
}

/// Maps an HTTP status and error code (`""` if none) to what the client
/// does (the table in docs/api.md).
pub fn disposition(status: u16, code: &str, kind: Kind) -> Disposition {
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

// The codes, one list (a child module: the list is long).
#[path = "error_codes.rs"]
mod codes;
pub use codes::ErrorCode;

/// An error answer of the server (status, code, message, detail).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} [{} HTTP {status} from {url}]{}",
    code.as_ref().map_or("-", ErrorCode::as_str),
    not_leader_hint(code.as_ref(), *leader))]
#[non_exhaustive]
pub struct ServerError {
    /// The HTTP status.
    pub status: u16,
    /// The URL that answered.
    pub url: String,
    /// Whether the request was a write.
    pub kind: Kind,
    /// The `error` code, if the body had one.
    pub code: Option<ErrorCode>,
    /// The server's `message` (or the start of a body that was not the
    /// error shape).
    pub message: String,
    /// The `detail`, if not null.
    pub detail: Option<Value>,
    /// The whole body, if it was JSON.
    pub body: Option<String>,
    /// The leader the node named in `X-Metawal-Leader`, if any.
    pub leader: Option<NodeId>,
    /// The server's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

/// The advice appended to a `not_leader` answer that names a leader.
fn not_leader_hint(code: Option<&ErrorCode>, leader: Option<NodeId>) -> String {
    match (code, leader) {
        (Some(ErrorCode::NotLeader), Some(id)) => format!(
            " (it names node {id} as the leader: add node {id}'s HTTP address to \
             --endpoints, or give the nodes --peer-http)"
        ),
        // With no leader known, the server's message already says an
        // election may be running.
        _ => String::new(),
    }
}

impl ServerError {
    /// The error answer `text` with `status` from `url`.
    pub fn from_answer(
        status: u16,
        url: &str,
        text: &str,
        kind: Kind,
        leader: Option<NodeId>,
    ) -> ServerError {
        let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
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
        ServerError {
            status,
            url: url.to_string(),
            kind,
            code: json
                .get("error")
                .and_then(Value::as_str)
                .map(ErrorCode::parse),
            message,
            detail: json.get("detail").cloned().filter(|d| !d.is_null()),
            body: (!json.is_null()).then(|| text.trim().to_string()),
            leader,
            retry_after: None,
        }
    }

    /// What this answer means for the request.
    pub fn disposition(&self) -> Disposition {
        let code = self.code.as_ref().map_or("", ErrorCode::as_str);
        disposition(self.status, code, self.kind)
    }

    /// The failure class (an answer that would be retried elsewhere counts
    /// as [`Failure::Unavailable`]).
    pub fn failure(&self) -> Failure {
        match self.disposition() {
            Disposition::Fail(f) => f,
            _ => Failure::Unavailable,
        }
    }

    /// The node names a leader it cannot redirect to (no `--peer-http` for
    /// it): waiting will not change that.
    pub fn misconfigured(&self) -> bool {
        self.code == Some(ErrorCode::NotLeader) && self.leader.is_some()
    }
}

/// Why one endpoint could not take a request (the request then went on to
/// the next endpoint, or ended).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Attempt {
    /// The node never read the request as HTTP (TLS failed, or the port
    /// speaks something else): nothing was done, and waiting will not help.
    #[error("{url}: {problem}")]
    Diagnosed {
        /// The URL tried.
        url: String,
        /// What was found.
        problem: Diagnosis,
    },
    /// The connection failed (`sent`: after the request may have been
    /// sent; only for reads, which are then tried elsewhere).
    #[error("{}", transport_text(url, source))]
    Transport {
        /// The URL tried.
        url: String,
        /// Whether the request may have reached the node.
        sent: bool,
        /// ureq's error.
        source: Box<ureq::Transport>,
    },
    /// A redirect without `Location`.
    #[error("{url}: {status} without Location")]
    NoLocation {
        /// The URL that answered.
        url: String,
        /// Its status.
        status: u16,
    },
    /// The node answered with an error worth trying elsewhere (503, …).
    #[error("{0}")]
    Server(ServerError),
    /// More than [`MAX_HOPS`] redirects.
    #[error("more than {MAX_HOPS} redirects, last to {url}")]
    TooManyRedirects {
        /// The last `Location`.
        url: String,
    },
    /// A node redirected to the leader, which then failed like this: an
    /// election is probably coming.
    #[error("redirected to the leader, unreachable: {0}")]
    LeaderUnreachable(Box<Attempt>),
}

/// ureq's message for `url`, with the URL in front if ureq left it out.
pub(crate) fn transport_text(url: &str, t: &ureq::Transport) -> String {
    let what = t.to_string();
    if what.contains(url) {
        what
    } else {
        format!("{url}: {what}")
    }
}

impl Attempt {
    /// Whether a node answered at all (false: connection refused, DNS, TLS).
    pub fn answered(&self) -> bool {
        match self {
            Attempt::Diagnosed { .. } => false,
            Attempt::Transport { sent, .. } => *sent,
            _ => true,
        }
    }

    /// The diagnosis, if the node never read the request as HTTP.
    pub fn diagnosis(&self) -> Option<&Diagnosis> {
        match self {
            Attempt::Diagnosed { problem, .. } => Some(problem),
            Attempt::LeaderUnreachable(inner) => inner.diagnosis(),
            _ => None,
        }
    }

    /// The server's error answer, if it gave one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Attempt::Server(e) => Some(e),
            _ => None,
        }
    }
}

/// No endpoint took the request; every attempt of the last round, in order.
#[derive(Debug)]
#[non_exhaustive]
pub struct Unavailable {
    /// The endpoints tried.
    pub endpoints: Vec<String>,
    /// Why each attempt of the last round failed.
    pub attempts: Vec<Attempt>,
}

impl Unavailable {
    /// The last server error answer among the attempts.
    pub fn last_server_error(&self) -> Option<&ServerError> {
        self.attempts.iter().rev().find_map(Attempt::server_error)
    }

    fn notes(&self) -> String {
        self.attempts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let diagnosed: Vec<&Diagnosis> = self
            .attempts
            .iter()
            .filter_map(Attempt::diagnosis)
            .collect();
        let only_diagnosed = self
            .attempts
            .iter()
            .all(|a| a.diagnosis().is_some() || !a.answered());
        if !diagnosed.is_empty() && only_diagnosed {
            let what = if diagnosed.iter().all(|d| d.is_tls()) {
                "TLS failed, no node took the request"
            } else {
                "no node took the request"
            };
            return write!(f, "{what}: {}", self.notes());
        }
        if !self.attempts.iter().any(Attempt::answered) {
            return write!(
                f,
                "no node answered at {}: start the nodes or pass --endpoints ({})",
                self.endpoints.join(", "),
                self.notes()
            );
        }
        write!(f, "no node could take the request: {}", self.notes())
    }
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server's answer ends the request (a refusal, a 504, …).
    #[error("{0}")]
    Server(Box<ServerError>),
    /// No endpoint could take the request.
    #[error("{0}")]
    Unavailable(Box<Unavailable>),
    /// A write's connection failed after the request was sent: it may have
    /// been applied.
    #[error(
        "the request failed after it was sent ({})",
        transport_text(url, source)
    )]
    SentThenFailed {
        /// The URL.
        url: String,
        /// ureq's error.
        source: Box<ureq::Transport>,
    },
    /// A 2xx answer whose body could not be read.
    #[error("{url} answered but its body could not be read: {source}")]
    BodyUnreadable {
        /// The URL that answered.
        url: String,
        /// Whether the request was a write (then it was applied, but the
        /// answer is lost).
        kind: Kind,
        /// The read error.
        source: std::io::Error,
    },
    /// A 2xx answer whose body is not what the API documents.
    #[error("{url} answered with a body this client cannot read ({source}): {body}")]
    UnexpectedBody {
        /// The URL that answered.
        url: String,
        /// Whether the request was a write.
        kind: Kind,
        /// The body.
        body: String,
        /// Why it could not be read.
        source: serde_json::Error,
    },
    /// The request body could not be encoded; nothing was sent.
    #[error("cannot encode the command: {0}")]
    Encode(#[source] serde_json::Error),
}

impl Error {
    /// The failure class.
    pub fn failure(&self) -> Failure {
        let after_answer = |kind: &Kind| match kind {
            Kind::Write => Failure::OutcomeUnknown,
            Kind::Read => Failure::Unavailable,
        };
        match self {
            Error::Server(e) => e.failure(),
            Error::Unavailable(_) => Failure::Unavailable,
            Error::SentThenFailed { .. } => Failure::OutcomeUnknown,
            Error::BodyUnreadable { kind, .. } | Error::UnexpectedBody { kind, .. } => {
                after_answer(kind)
            }
            Error::Encode(_) => Failure::Usage,
        }
    }

    /// Whether the write may be in the log (always [`Appended::No`] for
    /// reads). [`Appended::Maybe`]: read before sending it again.
    pub fn appended(&self) -> Appended {
        match self.failure() {
            Failure::OutcomeUnknown => Appended::Maybe,
            _ => Appended::No,
        }
    }

    /// The server's error answer: the one that ended the request, or the
    /// last one seen when no node could take it.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) => Some(e),
            Error::Unavailable(u) => u.last_server_error(),
            _ => None,
        }
    }

    /// The server's error code (see [`Error::server_error`]).
    pub fn code(&self) -> Option<&ErrorCode> {
        self.server_error().and_then(|e| e.code.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_failures() {
        use Disposition::*;
        let fail = |status, err, kind| match disposition(status, err, kind) {
            Fail(f) => Some(f),
            _ => None,
        };
        assert_eq!(disposition(200, "", Kind::Write), Success);
        assert_eq!(disposition(307, "", Kind::Write), Redirect);
        for s in [400, 404, 409, 410, 413] {
            assert_eq!(fail(s, "x", Kind::Write), Some(Failure::Refused));
            assert_eq!(fail(s, "x", Kind::Read), Some(Failure::Refused));
        }
        assert_eq!(disposition(503, "not_leader", Kind::Write), TryElsewhere);
        assert_eq!(disposition(503, "overloaded", Kind::Read), TryElsewhere);
        assert_eq!(
            disposition(503, "storage_failed", Kind::Write),
            TryElsewhere
        );
        for c in [
            "timeout",
            "leadership_lost",
            "isr_shrank",
            "shutting_down",
            "storage_failed",
        ] {
            assert_eq!(fail(504, c, Kind::Write), Some(Failure::OutcomeUnknown));
        }
        assert_eq!(
            fail(504, "not_applied", Kind::Read),
            Some(Failure::ReadTimeout)
        );
        assert_eq!(
            fail(504, "not_confirmed", Kind::Read),
            Some(Failure::ReadTimeout)
        );
        assert_eq!(
            fail(504, "transfer_timed_out", Kind::Write),
            Some(Failure::Unavailable)
        );
        assert_eq!(fail(500, "", Kind::Write), Some(Failure::OutcomeUnknown));
        assert_eq!(disposition(500, "", Kind::Read), TryElsewhere);
    }

    #[test]
    fn server_errors_keep_code_and_message() {
        let e = ServerError::from_answer(
            409,
            "http://a:1/v1/commands",
            r#"{"error":"invalid_command","message":"topic exists","detail":{"rule":"TopicExists"}}"#,
            Kind::Write,
            None,
        );
        assert_eq!(e.failure(), Failure::Refused);
        assert_eq!(e.code, Some(ErrorCode::InvalidCommand));
        assert!(e.to_string().contains("topic exists"));
        assert!(e.detail.is_some());
        let e = ServerError::from_answer(
            503,
            "u",
            r#"{"error":"not_leader","message":"m"}"#,
            Kind::Write,
            Some(3),
        );
        assert!(e.to_string().contains("node 3"));
        let e = ServerError::from_answer(502, "u", "<html>bad gateway</html>", Kind::Read, None);
        assert!(e.to_string().contains("bad gateway"));
        assert!(e.body.is_none());
    }

    #[test]
    fn error_codes_round_trip() {
        for code in [
            "compacted",
            "not_leader",
            "transfer_timed_out",
            "something_new",
        ] {
            assert_eq!(ErrorCode::parse(code).as_str(), code);
        }
        assert_eq!(ErrorCode::parse("compacted"), ErrorCode::Compacted);
    }
}
