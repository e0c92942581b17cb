//! Status, health, leader transfer and metrics: what an operator and a
//! load balancer ask a node about itself.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::error::{node_stopped, role_error};
use super::{ApiData, ApiError};
use crate::error::{MetricsError, RoleError};
use crate::shared::Role;
use crate::status::NodeStatus;

/// A peer connection's state as JSON: `{"state": ..}`, with `reason` and
/// `detail` for a failure.
fn connection_json(c: &crate::status::PeerConnection) -> serde_json::Value {
    serde_json::to_value(c).unwrap_or_else(|_| json!({ "state": c.as_str() }))
}

fn status_json(
    s: &NodeStatus,
    applied: &crate::store::Applied,
    peers: &[crate::status::PeerStatus],
) -> serde_json::Value {
    let followers: Vec<_> = s
        .followers
        .iter()
        .map(|f| {
            json!({
                "peer": f.peer,
                "connected": f.connected,
                "state": f.state.as_str(),
                "acked_offset": f.acked_offset,
                "lag": f.lag,
                "in_isr": f.in_isr,
                "inflight_bytes": f.inflight_bytes,
                "reconnects": f.reconnects,
                "snapshots_sent": f.snapshots_sent,
                "link_restarts": f.link_restarts,
                "connection": connection_json(&f.connection),
            })
        })
        .collect();
    let peers: Vec<_> = peers
        .iter()
        .map(|p| {
            json!({
                "peer": p.peer,
                "addr": p.addr.map(|a| a.to_string()),
                "connection": connection_json(&p.connection),
                "via": p.via.as_str(),
                "since_ms": p.since.as_millis() as u64,
                "failures": p.failures,
            })
        })
        .collect();
    json!({
        "node_id": s.node_id,
        "role": s.role.as_str(),
        "election_role": format!("{:?}", s.election_role).to_lowercase(),
        "epoch": s.epoch,
        "leader": s.leader,
        "voted_for": s.voted_for,
        "since_leader_contact_ms": s.since_leader_contact.map(|d| d.as_millis() as u64),
        "elections": s.elections,
        "pre_votes": s.pre_votes,
        "log_end": s.log_end,
        "last_log_epoch": s.last_log_epoch,
        "durable": s.durable,
        "commit": s.commit,
        "applied_offset": applied.offset,
        "applied_epoch": applied.epoch,
        "digest": applied.digest.to_string(),
        "isr_len": s.isr_len,
        "followers": followers,
        "peers": peers,
    })
}

pub(crate) async fn status(api: ApiData) -> Result<HttpResponse, ApiError> {
    let s = api.node.status().await.map_err(|e| node_stopped(&e))?;
    // Offset and digest from one message: they always match each other.
    let applied = api.node.applied().await.map_err(|e| node_stopped(&e))?;
    let peers = api.node.metrics().peer_connections();
    let mut body = status_json(&s, &applied, &peers);
    body["directory_id"] = json!(api.node.directory_id().to_string());
    let m = api.node.members_in_force();
    body["voters"] = json!(m.voter_ids().collect::<Vec<_>>());
    body["learners"] = json!(m.learners().map(|l| l.node_id).collect::<Vec<_>>());
    Ok(HttpResponse::Ok().json(body))
}

pub(crate) async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(api: ApiData) -> Result<HttpResponse, ApiError> {
    let s = api.node.status().await.map_err(|e| node_stopped(&e))?;
    let not_ready = |reason: String| {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            reason,
        ))
    };
    if matches!(s.role, Role::Failed | Role::Stopped) {
        return not_ready(format!("this node is {}", s.role));
    }
    if s.leader.is_none() {
        return not_ready("no leader is known (an election may be under way)".into());
    }
    if s.applied_offset < s.commit {
        return not_ready(format!(
            "applied offset {} is behind the commit point {} this node knows",
            s.applied_offset, s.commit
        ));
    }
    Ok(HttpResponse::Ok()
        .json(json!({ "ready": true, "leader": s.leader, "applied_offset": s.applied_offset })))
}

#[derive(Debug, Deserialize)]
struct TransferQuery {
    to: Option<u64>,
}

pub(crate) async fn transfer(req: HttpRequest, api: ApiData) -> Result<HttpResponse, ApiError> {
    let q: TransferQuery = super::query(&req)?;
    let to =
        q.to.ok_or_else(|| ApiError::bad_parameter("give the node to hand leadership to: ?to=ID"))?;
    if api.node.role() != Role::Leader {
        return Err(api.to_leader(&req));
    }
    // Already there: re-running a transfer succeeds without an election.
    if to == api.node.id() {
        return Ok(HttpResponse::Ok().json(json!({ "leader": to, "epoch": api.node.epoch() })));
    }
    match api.node.transfer_leadership(to).await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "leader": to, "epoch": api.node.epoch() }))),
        Err(RoleError::NotLeader { .. }) => Err(api.to_leader(&req)),
        Err(e) => Err(role_error(&e)),
    }
}

pub(crate) async fn metrics(api: ApiData) -> Result<HttpResponse, ApiError> {
    let text = api.node.metrics_text().await.map_err(|e| match e {
        MetricsError::Status(e) => node_stopped(&e),
        e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics", e.to_string()),
    })?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}

pub(crate) async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} {}: see docs/api.md", req.method(), req.path()),
    ))
}
