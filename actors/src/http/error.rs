//! `ApiError`: every non-200 answer of the HTTP API, in one shape.
//!
//! Why one type: the status code is a promise about writes (docs/api.md:
//! 503 = nothing appended, retry is safe; 504 on a write = outcome unknown,
//! read before retrying). Keeping the mapping from library errors to
//! statuses here, in one place, keeps that promise checkable.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::changes::ChangesError;
use crate::error::{ProposeError, ReadError, RoleError};
use metawal::state::ValidationError;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";

/// An HTTP API error (or a redirect to the leader).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    /// Stable code, e.g. `invalid_command`.
    pub code: &'static str,
    pub message: String,
    pub detail: Value,
    /// `Location` of a 307.
    pub location: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: Value::Null,
            location: None,
        }
    }

    pub fn with_detail(mut self, detail: Value) -> ApiError {
        self.detail = detail;
        self
    }

    pub fn bad_parameter(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_parameter", message)
    }

    /// 307 to the same request on the leader's HTTP address.
    pub fn redirect(location: String) -> ApiError {
        ApiError {
            location: Some(location.clone()),
            ..ApiError::new(
                StatusCode::TEMPORARY_REDIRECT,
                "redirect",
                format!("this node does not lead; the leader serves {location}"),
            )
        }
    }

    /// 503: no leader to send the client to.
    pub fn no_leader(leader: Option<metawal::NodeId>) -> ApiError {
        let message = match leader {
            Some(l) => format!(
                "this node does not lead and the HTTP address of the leader (node {l}) is not configured (--peer-http); send the request to node {l}"
            ),
            None => "no leader is known right now (an election may be under way); nothing was done, retry shortly".into(),
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", message)
            .with_detail(json!({ "leader": leader }))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(l) = &self.location {
            res.insert_header((header::LOCATION, l.as_str()));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header((
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            ));
        }
        res.json(json!({
            "error": self.code,
            "message": self.message,
            "detail": self.detail,
        }))
    }
}

/// The rule a validation error names: its variant name, from `Debug`.
fn rule_name(e: &ValidationError) -> String {
    format!("{e:?}")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// A refused command: 400 with the rule and, in a batch, the index.
pub(crate) fn invalid_command(e: &ValidationError) -> ApiError {
    let (rule, index) = match e {
        ValidationError::InBatch { index, error, .. } => (rule_name(error), Some(*index)),
        ValidationError::NotInBatch { index, .. } => (rule_name(e), Some(*index)),
        other => (rule_name(other), None),
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_command",
        format!("{e}; nothing was appended"),
    )
    .with_detail(json!({ "rule": rule, "batch_index": index }))
}

/// A failed proposal. `NotLeader` is handled by the caller (redirect).
pub(crate) fn propose_error(e: &ProposeError) -> ApiError {
    use StatusCode as S;
    let unavailable = S::SERVICE_UNAVAILABLE;
    let unknown = S::GATEWAY_TIMEOUT;
    let msg = e.to_string();
    // 504 says the entry may have been appended, any other status that it
    // was not: the arms below agree with `ProposeError::appended` (tested).
    match e {
        ProposeError::NotLeader { leader, .. } => ApiError::no_leader(*leader),
        ProposeError::Invalid(v) => invalid_command(v),
        ProposeError::NotEnoughReplicas { isr, required } => {
            ApiError::new(unavailable, "not_enough_replicas", msg)
                .with_detail(json!({ "isr": isr, "required": required }))
        }
        ProposeError::NotEnoughReplicasAfterAppend { offset, isr, required } => {
            ApiError::new(unknown, "isr_shrank", msg)
                .with_detail(json!({ "offset": offset, "isr": isr, "required": required }))
        }
        ProposeError::Timeout { offset, .. } => {
            ApiError::new(unknown, "timeout", msg).with_detail(json!({ "offset": offset }))
        }
        ProposeError::LeadershipLost => ApiError::new(unknown, "leadership_lost", msg),
        ProposeError::TooLarge { bytes, max } => {
            ApiError::new(S::PAYLOAD_TOO_LARGE, "entry_too_large", msg)
                .with_detail(json!({ "bytes": bytes, "max": max }))
        }
        ProposeError::Overloaded(_) => ApiError::new(unavailable, "overloaded", msg),
        ProposeError::StorageFailed => ApiError::new(unavailable, "storage_failed", msg),
        ProposeError::StorageFailedAfterAppend { offset } => {
            ApiError::new(unknown, "storage_failed", msg).with_detail(json!({ "offset": offset }))
        }
        ProposeError::Encode(_) => ApiError::new(S::INTERNAL_SERVER_ERROR, "encode_failed", msg),
        // The store may have gone away after appending: unknown.
        ProposeError::ShuttingDown => ApiError::new(
            unknown,
            "shutting_down",
            "the node is shutting down; the entry may or may not be in the log: read before retrying",
        ),
    }
}

/// A status, state or log query the node could not answer (it has stopped,
/// or its disk reader has): 503, nothing changed.
pub(crate) fn node_stopped(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        e.to_string(),
    )
}

/// A linearizable read that could not be confirmed. `NotLeader` is
/// handled by the caller (redirect).
pub(crate) fn read_error(e: &ReadError) -> ApiError {
    match e {
        ReadError::NotLeader { leader, .. } => ApiError::no_leader(*leader),
        ReadError::LeadershipLost => ApiError::no_leader(None),
        ReadError::Timeout(_) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "not_confirmed", e.to_string())
        }
    }
}

/// A failed leader transfer. `NotLeader` is handled by the caller.
pub(crate) fn role_error(e: &RoleError) -> ApiError {
    let msg = e.to_string();
    match e {
        RoleError::NotLeader { leader, .. } => ApiError::no_leader(*leader),
        RoleError::UnknownPeer { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "unknown_peer", msg)
        }
        RoleError::TransferTimedOut { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "transfer_timed_out", msg)
        }
        RoleError::TransferInProgress { .. } => {
            ApiError::new(StatusCode::CONFLICT, "transfer_in_progress", msg)
        }
        RoleError::ShuttingDown => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", msg)
        }
    }
}

/// A change stream that ended in error (as an `event: error` payload or,
/// before the stream started, a response).
pub(crate) fn changes_error(e: &ChangesError, applied: u64) -> ApiError {
    let msg = e.to_string();
    match e {
        ChangesError::Compacted { log_start, .. } => compacted(*log_start, applied, msg),
        ChangesError::Overloaded { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", msg)
        }
        ChangesError::Storage(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_failed", msg)
        }
        ChangesError::ShuttingDown => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", msg)
        }
    }
}

/// 410: the entries asked for were compacted into a snapshot.
pub(crate) fn compacted(log_start: u64, snapshot_offset: u64, message: String) -> ApiError {
    ApiError::new(StatusCode::GONE, "compacted", message)
        .with_detail(json!({ "log_start": log_start, "snapshot_offset": snapshot_offset }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_error_says_by_its_status_whether_anything_was_appended() {
        let definite = [
            ProposeError::Invalid(ValidationError::EmptyBatch),
            ProposeError::NotEnoughReplicas {
                isr: 1,
                required: 2,
            },
            ProposeError::Overloaded(crate::error::Overload::ReplicatorMailbox),
            ProposeError::TooLarge {
                bytes: 70_000,
                max: 65_536,
            },
            ProposeError::StorageFailed,
            ProposeError::Encode(metawal::record::RecordError::Encode("x".into())),
            ProposeError::NotLeader {
                node: 1,
                leader: None,
            },
        ];
        for e in definite {
            let s = propose_error(&e).status.as_u16();
            assert!(matches!(s, 400 | 413 | 500 | 503), "{e:?} gave {s}");
            assert_eq!(e.appended(), crate::error::Appended::No, "{e:?}");
        }
        let unknown = [
            ProposeError::Timeout {
                offset: 3,
                timeout: std::time::Duration::from_secs(1),
            },
            ProposeError::LeadershipLost,
            ProposeError::NotEnoughReplicasAfterAppend {
                offset: 3,
                isr: 1,
                required: 2,
            },
            ProposeError::ShuttingDown,
            ProposeError::StorageFailedAfterAppend { offset: 3 },
        ];
        for e in unknown {
            assert_eq!(propose_error(&e).status.as_u16(), 504, "{e:?}");
            assert_eq!(e.appended(), crate::error::Appended::Maybe, "{e:?}");
        }
    }

    #[test]
    fn a_refused_batch_names_the_rule_and_the_index() {
        let e = ValidationError::InBatch {
            index: 2,
            kind: "AssignPartition",
            error: Box::new(ValidationError::UnknownTopic { name: "x".into() }),
        };
        let api = invalid_command(&e);
        assert_eq!(
            api.detail,
            json!({"rule": "UnknownTopic", "batch_index": 2})
        );
        let api = invalid_command(&ValidationError::EmptyBatch);
        assert_eq!(
            api.detail,
            json!({"rule": "EmptyBatch", "batch_index": null})
        );
    }
}
