//! Exit codes and the error a subcommand ends with.
//!
//! Why a module of its own: the exit codes are metawalctl's contract with
//! scripts (docs/api.md); they are decided in one place from the client's
//! typed failure, and printed in `--help` from the same place.

use metawal_client::{ErrorCode, Failure, Kind};

/// The exit codes, as printed in `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  2  usage error (bad flags or arguments; nothing was sent)
  3  refused by the cluster (HTTP 400/404/409/410/413): the request is wrong; nothing was done
  4  unavailable: no endpoint reachable, 503 from every endpoint, no leader,
     or TLS failed (certificates; http:// against an HTTPS port; a replication
     port instead of the HTTP API): nothing was sent
  5  outcome unknown: a write got 504 or the connection dropped after it was sent;
     it may be in the log: read it back (topic describe, watch) before retrying
  6  a read timed out (504 not_applied / not_confirmed), or `watch --count N
     --timeout S` got fewer than N entries within S seconds

Endpoints are tried in order; followers redirect writes to the leader (307).
HTTPS: --cacert ca.pem (host:port endpoints then use https://); a node run with
--http-client-ca also needs --cert client.pem --key client-key.pem.";

/// The process exit code of a failure.
pub fn exit_code(failure: Failure) -> u8 {
    match failure {
        Failure::Usage => 2,
        Failure::Refused => 3,
        Failure::OutcomeUnknown => 5,
        Failure::ReadTimeout => 6,
        // Unavailable, and any class a newer client adds.
        _ => 4,
    }
}

/// The word that starts the error line.
pub fn label(failure: Failure) -> &'static str {
    match failure {
        Failure::Usage => "usage error",
        Failure::Refused => "refused",
        Failure::OutcomeUnknown => "outcome unknown",
        Failure::ReadTimeout => "timed out",
        _ => "unavailable",
    }
}

/// What the user should do next, per failure.
pub fn advice(failure: Failure, kind: Kind) -> &'static str {
    match failure {
        Failure::Usage => "see --help",
        Failure::Refused => "nothing was changed; fix the request",
        Failure::OutcomeUnknown if kind == Kind::Write => {
            "the write may be in the log and may still commit: read it back \
             (metawalctl topic describe / watch) before retrying"
        }
        Failure::OutcomeUnknown => "check with metawalctl status before retrying",
        Failure::ReadTimeout => {
            "the node did not get there in time; retry, raise --timeout-ms, or ask another node"
        }
        _ => "nothing was changed; check the nodes (metawalctl status --all) and retry",
    }
}

/// A failed command: what kind, what to tell the user, and the server's
/// error body if there was one.
#[derive(Debug)]
pub struct CtlError {
    /// The class (the exit code).
    pub failure: Failure,
    /// The explanation.
    pub message: String,
    /// The server's `error` code, if it answered with one.
    pub code: Option<ErrorCode>,
    /// The server's raw error body (printed on stdout with `--json`).
    pub body: Option<String>,
    /// Advice other than the failure's usual one.
    pub advice: Option<&'static str>,
}

impl CtlError {
    /// An error without a server body.
    pub fn new(failure: Failure, message: impl Into<String>) -> Self {
        CtlError {
            failure,
            message: message.into(),
            code: None,
            body: None,
            advice: None,
        }
    }

    /// A usage error (exit 2): nothing was sent.
    pub fn usage(message: impl Into<String>) -> Self {
        CtlError::new(Failure::Usage, message)
    }
}

impl From<metawal_client::Error> for CtlError {
    fn from(e: metawal_client::Error) -> Self {
        let server = e.server_error();
        CtlError {
            failure: e.failure(),
            message: e.to_string(),
            code: server.and_then(|s| s.code.clone()),
            body: server.and_then(|s| s.body.clone()),
            advice: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metawal_client::{disposition, Disposition};

    #[test]
    fn status_codes_map_to_exit_codes() {
        let code = |status, err, kind| match disposition(status, err, kind) {
            Disposition::Fail(f) => Some(exit_code(f)),
            _ => None,
        };
        for s in [400, 404, 409, 410, 413] {
            assert_eq!(code(s, "x", Kind::Write), Some(3));
            assert_eq!(code(s, "x", Kind::Read), Some(3));
        }
        for c in ["timeout", "leadership_lost", "isr_shrank", "shutting_down"] {
            assert_eq!(code(504, c, Kind::Write), Some(5));
        }
        assert_eq!(code(504, "not_applied", Kind::Read), Some(6));
        assert_eq!(code(504, "not_confirmed", Kind::Read), Some(6));
        assert_eq!(code(504, "transfer_timed_out", Kind::Write), Some(4));
        assert_eq!(code(500, "", Kind::Write), Some(5));
        assert_eq!(exit_code(Failure::Usage), 2);
        assert_eq!(exit_code(Failure::Unavailable), 4);
    }
}
