//! `GET /v1/topics`, `GET /v1/topics/{name}` and `GET /v1/snapshot`:
//! reads of the applied metadata, on any node.
//!
//! A read answers from this node's applied state, after the two optional
//! waits that make it stronger: `min_offset` (read your writes: wait until
//! this node applied the offset a write returned) and `linearizable` (the
//! leader confirms with a quorum that it still leads, then applies what was
//! committed before the read began; see `metawal::engine::read_index`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use metawal::state::PartitionState;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::read_error;
use super::{read_wait, ApiData, ApiError};
use crate::error::ReadError;
use crate::shared::Role;

#[derive(Debug, Deserialize)]
struct ReadQuery {
    min_offset: Option<u64>,
    timeout_ms: Option<u64>,
    linearizable: Option<bool>,
}

/// Run the waits a read asked for.
async fn prepare(req: &HttpRequest, api: &ApiData) -> Result<(), ApiError> {
    let q: ReadQuery = super::query(req)?;
    let wait = read_wait(q.timeout_ms);
    if q.linearizable == Some(true) {
        if api.node.role() != Role::Leader {
            return Err(api.to_leader(req));
        }
        match api.node.read_index(wait).await {
            Ok(_) => {}
            Err(ReadError::NotLeader { .. }) => return Err(api.to_leader(req)),
            Err(e) => return Err(read_error(&e)),
        }
    }
    if let Some(offset) = q.min_offset {
        if api.node.view().wait_applied(offset, wait).await.is_none() {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "not_applied",
                format!(
                    "this node had not applied offset {offset} within {} ms (it is at {}); retry, or read from the leader",
                    wait.as_millis(),
                    api.node.view().applied_offset()
                ),
            )
            .with_detail(json!({ "min_offset": offset, "applied_offset": api.node.view().applied_offset() })));
        }
    }
    Ok(())
}

fn partitions_json(partitions: &[PartitionState]) -> Value {
    Value::Array(
        partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({ "partition": i, "replicas": p.replicas, "leader": p.leader, "isr": p.isr })
            })
            .collect(),
    )
}

pub(crate) async fn list_topics(req: HttpRequest, api: ApiData) -> Result<HttpResponse, ApiError> {
    prepare(&req, &api).await?;
    let view = api.node.view();
    let applied = view.applied_offset();
    let topics: Vec<Value> = view
        .topics()
        .into_iter()
        .filter_map(|name| {
            let t = view.topic(&name)?;
            Some(json!({
                "name": name,
                "partition_count": t.partitions.len(),
                "replication_factor": t.replication_factor,
            }))
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "applied_offset": applied, "topics": topics })))
}

pub(crate) async fn describe_topic(
    req: HttpRequest,
    api: ApiData,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    prepare(&req, &api).await?;
    let view = api.node.view();
    let applied = view.applied_offset();
    match view.topic(&name) {
        Some(t) => Ok(HttpResponse::Ok().json(json!({
            "applied_offset": applied,
            "name": name.as_str(),
            "replication_factor": t.replication_factor,
            "partitions": partitions_json(&t.partitions),
        }))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_topic",
            format!("topic {:?} does not exist on this node (applied offset {applied}); if it was just created, read with min_offset set to the offset its write returned", name.as_str()),
        )),
    }
}

pub(crate) async fn snapshot(api: ApiData) -> Result<HttpResponse, ApiError> {
    let state = api
        .node
        .state()
        .await
        .map_err(|e| super::error::node_stopped(&e))?;
    let topics: Vec<Value> = state
        .topics()
        .map(|(name, t)| {
            json!({
                "name": name,
                "replication_factor": t.replication_factor,
                "partitions": partitions_json(&t.partitions),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "offset": state.applied_offset(),
        "epoch": state.applied_epoch(),
        "digest": state.digest().to_string(),
        "topics": topics,
    })))
}
