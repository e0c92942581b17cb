//! `/v1/members`: list the cluster's members on any node; add a learner,
//! promote it, remove a member on the leader (a follower answers 307 to the
//! leader, like `/v1/commands`). Each change answers 200 once it is
//! committed, and a refusal a 409 with a typed `code` (docs/api.md).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use metawal::membership::{ChangeRefused, DirectoryId, Member};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{query, ApiData, ApiError};
use crate::error::MemberError;
use crate::members::{MemberStatus, Members};
use crate::shared::Role;

/// Most a promotion waits for its learner when `timeout_ms` is not given.
const DEFAULT_PROMOTE_WAIT_MS: u64 = 10_000;

fn member_json(m: &MemberStatus) -> Value {
    json!({
        "node_id": m.member.node_id,
        "replication_addr": m.member.replication_addr,
        "http_addr": m.member.http_addr,
        "kafka_addr": m.member.kafka_addr,
        "directory_id": m.member.directory_id.to_string(),
        "last_offset": m.acked_offset,
        "caught_up": m.caught_up,
        "last_contact_ms_ago": m.heard_ago.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    })
}

/// The JSON of [`Members`] (the answer of `GET /v1/members` and of every
/// change).
pub(crate) fn members_json(m: &Members) -> Value {
    json!({
        "node_id": m.node_id,
        "leader": m.leader,
        "log_end": m.log_end,
        "voters": m.voters.iter().map(member_json).collect::<Vec<_>>(),
        "learners": m.learners.iter().map(member_json).collect::<Vec<_>>(),
        "pending_change": m.pending_offset.map(|offset| json!({ "offset": offset })),
    })
}

pub(crate) async fn list(api: ApiData) -> HttpResponse {
    HttpResponse::Ok().json(members_json(&api.node.members().await))
}

/// The body of `POST /v1/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    node_id: u64,
    replication_addr: String,
    #[serde(default)]
    http_addr: String,
    /// Where Kafka clients reach its Kafka front (`host:port`); none if
    /// left out.
    #[serde(default)]
    kafka_addr: String,
    /// The new node's directory id (its `/v1/status` shows it); unknown
    /// (not checked) if left out.
    #[serde(default)]
    directory_id: Option<String>,
}

pub(crate) async fn add(
    req: HttpRequest,
    api: ApiData,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if api.node.role() != Role::Leader {
        return Err(api.to_leader(&req));
    }
    let b: AddBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not a member ({{\"node_id\":4,\"replication_addr\":\"IP:PORT\",\"http_addr\":\"HOST:PORT\"}}): {e}")))?;
    let directory_id = match b.directory_id.as_deref() {
        None | Some("") => DirectoryId::UNKNOWN,
        Some(s) => s
            .parse()
            .map_err(|e| ApiError::bad_parameter(format!("directory_id: {e}")))?,
    };
    let member = Member {
        node_id: b.node_id,
        directory_id,
        replication_addr: b.replication_addr,
        http_addr: b.http_addr,
        kafka_addr: b.kafka_addr,
    };
    let result = api.node.add_learner(member).await;
    answer(&req, &api, result).await
}

#[derive(Debug, Deserialize)]
struct PromoteQuery {
    timeout_ms: Option<u64>,
}

fn node_id(req: &HttpRequest) -> Result<u64, ApiError> {
    let raw = req.match_info().get("id").unwrap_or_default();
    raw.parse()
        .map_err(|_| ApiError::bad_parameter(format!("node id {raw:?} is not a number")))
}

pub(crate) async fn promote(req: HttpRequest, api: ApiData) -> Result<HttpResponse, ApiError> {
    let id = node_id(&req)?;
    let q: PromoteQuery = query(&req)?;
    if api.node.role() != Role::Leader {
        return Err(api.to_leader(&req));
    }
    let wait = std::time::Duration::from_millis(q.timeout_ms.unwrap_or(DEFAULT_PROMOTE_WAIT_MS));
    let result = api.node.promote(id, wait).await;
    answer(&req, &api, result).await
}

pub(crate) async fn remove(req: HttpRequest, api: ApiData) -> Result<HttpResponse, ApiError> {
    let id = node_id(&req)?;
    if api.node.role() != Role::Leader {
        return Err(api.to_leader(&req));
    }
    let result = api.node.remove(id).await;
    answer(&req, &api, result).await
}

async fn answer(
    req: &HttpRequest,
    api: &ApiData,
    result: Result<u64, MemberError>,
) -> Result<HttpResponse, ApiError> {
    match result {
        Ok(offset) => {
            let members = api.node.members().await;
            let mut body = members_json(&members);
            body["offset"] = json!(offset);
            body["epoch"] = json!(api.node.epoch());
            Ok(HttpResponse::Ok().json(body))
        }
        Err(MemberError::Refused(ChangeRefused::NotLeader { .. })) => Err(api.to_leader(req)),
        Err(e) => Err(member_error(&e)),
    }
}

/// The status and code of each [`MemberError`]: 409 for a refusal (nothing
/// appended; the message says what to do), 400 for a bad request, 504
/// when the outcome is unknown (maybe appended, not known committed), 503
/// when nothing was appended and a retry may work.
pub(crate) fn member_error(e: &MemberError) -> ApiError {
    let msg = e.to_string();
    let conflict = |code| ApiError::new(StatusCode::CONFLICT, code, msg.clone());
    match e {
        MemberError::Refused(r) => match r {
            ChangeRefused::LeaderNotReady { .. } => conflict("leader_not_ready"),
            ChangeRefused::ChangeInProgress { .. } => conflict("change_in_progress"),
            ChangeRefused::UnknownNode { .. } => conflict("unknown_node"),
            ChangeRefused::AlreadyMember { .. } => conflict("already_member"),
            ChangeRefused::AlreadyVoter { .. } => conflict("already_voter"),
            ChangeRefused::NotCaughtUp { .. } => conflict("not_caught_up"),
            ChangeRefused::WouldLeaveNoVoters { .. } => conflict("would_leave_no_voters"),
            ChangeRefused::RemoveLeader { .. } => conflict("remove_leader"),
            ChangeRefused::FixedMembership => conflict("fixed_membership"),
            ChangeRefused::NothingToPin => conflict("nothing_to_pin"),
            ChangeRefused::NotLeader { leader } => ApiError::no_leader(*leader),
            ChangeRefused::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_member", msg)
            }
        },
        MemberError::Busy => conflict("change_in_progress"),
        MemberError::BadAddress { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_member", msg)
        }
        MemberError::NotAppended(p) => super::error::propose_error(p),
        MemberError::Timeout { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "change_timed_out", msg)
        }
        MemberError::LeadershipLost { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "leadership_lost", msg)
        }
        // The change may have been appended before the node stopped.
        MemberError::ShuttingDown => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "shutting_down", msg)
        }
    }
}
