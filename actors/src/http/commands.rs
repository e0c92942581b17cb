//! `POST /v1/commands`: one command, or a JSON array of commands as one
//! atomic batch, proposed with the `acks` asked for.
//!
//! The body is parsed into [`ApiCommand`], a mirror of the broker commands
//! of [`Command`] with unknown fields refused: the log's own type stays
//! free to evolve, and a client cannot propose a `LeaderChange` (no such
//! variant here) or nest a batch (an array of objects is the only batch).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use metawal::{Command, NodeId};
use serde::Deserialize;
use serde_json::json;

use super::error::propose_error;
use super::{read_body, ApiData, ApiError};
use crate::error::ProposeError;
use crate::shared::Role;
use crate::store::Acks;

/// A broker command as the API takes it: the serde form of [`Command`]
/// (externally tagged), unknown fields refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
enum ApiCommand {
    CreateTopic {
        name: String,
        partition_count: u32,
        replication_factor: u32,
    },
    DeleteTopic {
        name: String,
    },
    AssignPartition {
        topic: String,
        partition: i32,
        replicas: Vec<NodeId>,
    },
    SetPartitionLeader {
        topic: String,
        partition: i32,
        leader: NodeId,
    },
    UpdateIsr {
        topic: String,
        partition: i32,
        isr: Vec<NodeId>,
    },
    CreatePartitions {
        topic: String,
        partition_count: u32,
    },
}

impl From<ApiCommand> for Command {
    fn from(c: ApiCommand) -> Command {
        match c {
            ApiCommand::CreateTopic {
                name,
                partition_count,
                replication_factor,
            } => Command::CreateTopic {
                name,
                partition_count,
                replication_factor,
            },
            ApiCommand::DeleteTopic { name } => Command::DeleteTopic { name },
            ApiCommand::AssignPartition {
                topic,
                partition,
                replicas,
            } => Command::AssignPartition {
                topic,
                partition,
                replicas,
            },
            ApiCommand::SetPartitionLeader {
                topic,
                partition,
                leader,
            } => Command::SetPartitionLeader {
                topic,
                partition,
                leader,
            },
            ApiCommand::UpdateIsr {
                topic,
                partition,
                isr,
            } => Command::UpdateIsr {
                topic,
                partition,
                isr,
            },
            ApiCommand::CreatePartitions {
                topic,
                partition_count,
            } => Command::CreatePartitions {
                topic,
                partition_count,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
struct WriteQuery {
    acks: Option<String>,
}

fn parse_acks(acks: Option<&str>) -> Result<Acks, ApiError> {
    match acks {
        None | Some("all") => Ok(Acks::All),
        Some("leader") => Ok(Acks::Leader),
        Some("none") => Ok(Acks::None),
        Some(other) => Err(ApiError::bad_parameter(format!(
            "acks={other:?} is not one of all, leader, none"
        ))),
    }
}

fn invalid_json(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!("the body is not a command or an array of commands: {e}; nothing was appended"),
    )
    .with_detail(json!({ "line": e.line(), "column": e.column() }))
}

/// Parse a body: one command object, or an array of them (a batch).
pub(crate) fn parse_body(body: &[u8]) -> Result<Command, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| invalid_json(&e))?;
    if value.is_array() {
        let commands: Vec<ApiCommand> =
            serde_json::from_value(value).map_err(|e| invalid_json(&e))?;
        Ok(Command::Batch {
            commands: commands.into_iter().map(Command::from).collect(),
        })
    } else {
        let command: ApiCommand = serde_json::from_value(value).map_err(|e| invalid_json(&e))?;
        Ok(command.into())
    }
}

pub(crate) async fn post_commands(
    req: HttpRequest,
    api: ApiData,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let q: WriteQuery = super::query(&req)?;
    let acks = parse_acks(q.acks.as_deref())?;
    // A follower sends the client on before reading the body.
    if api.node.role() != Role::Leader {
        return Err(api.to_leader(&req));
    }
    let body = read_body(&req, payload, api.config.body_limit_bytes).await?;
    let command = parse_body(&body)?;
    match api.node.propose(command, acks).await {
        Ok(p) => Ok(HttpResponse::Ok().json(json!({ "offset": p.offset, "epoch": p.epoch }))),
        // Leadership moved between the check and the proposal.
        Err(ProposeError::NotLeader { .. }) => Err(api.to_leader(&req)),
        Err(e) => Err(propose_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_is_one_command_and_an_array_is_a_batch() {
        let one = parse_body(br#"{"DeleteTopic":{"name":"x"}}"#).unwrap();
        assert_eq!(one, Command::DeleteTopic { name: "x".into() });
        let many = parse_body(
            br#"[{"CreateTopic":{"name":"x","partition_count":1,"replication_factor":1}},
                 {"AssignPartition":{"topic":"x","partition":0,"replicas":[2]}}]"#,
        )
        .unwrap();
        assert!(matches!(many, Command::Batch { commands } if commands.len() == 2));
        let grow = parse_body(
            br#"[{"CreatePartitions":{"topic":"x","partition_count":3}},
                 {"AssignPartition":{"topic":"x","partition":2,"replicas":[1]}}]"#,
        )
        .unwrap();
        assert!(matches!(&grow, Command::Batch { commands } if commands[0]
            == Command::CreatePartitions { topic: "x".into(), partition_count: 3 }));
    }

    #[test]
    fn unknown_fields_control_entries_and_garbage_are_invalid_json() {
        for body in [
            &br#"{"DeleteTopic":{"name":"x","force":true}}"#[..],
            br#"{"LeaderChange":{"leader":1,"epoch":9}}"#,
            br#"{"DeleteTopic":{"name":"x"},"CreateTopic":{}}"#,
            br#"[{"DeleteTopic":{"name":"x"}}, 7]"#,
            br#"{"DeleteTopic":{"name":5}}"#,
            br#"{"CreatePartitions":{"topic":"x","partition_count":3,"assignments":[]}}"#,
            br#"{"CreatePartitions":{"topic":"x","partition_count":-1}}"#,
            b"\xff\xfe not json",
            b"",
        ] {
            let e = parse_body(body).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "invalid_json"),
                "{body:?}"
            );
        }
    }

    #[test]
    fn acks_default_to_all_and_others_are_refused() {
        assert_eq!(parse_acks(None), Ok(Acks::All));
        assert_eq!(parse_acks(Some("leader")), Ok(Acks::Leader));
        assert_eq!(parse_acks(Some("some")).unwrap_err().code, "bad_parameter");
    }
}
