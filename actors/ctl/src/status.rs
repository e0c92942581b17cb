//! `metawalctl status [--all]`: one node's view, or every endpoint's.
//!
//! Why a module of its own: `--all` asks each endpoint once, directly
//! (not routed), so that an unreachable node is a row, not a failure.

use std::fmt::Write as _;

use metawal_client::endpoint::origin;
use metawal_client::{Client, Failure};
use serde_json::Value;

use crate::cli::Cli;
use crate::exit::CtlError;
use crate::output::{cell, emit, render_table, rows_of};

/// The status table's columns.
const STATUS_HEADERS: [&str; 9] = [
    "NODE", "ENDPOINT", "ROLE", "EPOCH", "LEADER", "LOG_END", "COMMIT", "APPLIED", "DIGEST",
];

/// `status [--all]`
pub fn run(cli: &Cli, client: &Client, all: bool) -> Result<(), CtlError> {
    if all {
        return all_nodes(cli, client);
    }
    let reply = client.status()?;
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
    emit(&out)
}

/// `status --all`: one row per endpoint, `unreachable` rows included, then
/// each leader's followers.
fn all_nodes(cli: &Cli, client: &Client) -> Result<(), CtlError> {
    let mut rows = Vec::new();
    let mut bodies = Vec::new();
    let mut leaders = Vec::new();
    let mut answered = 0;
    for node in client.nodes() {
        let endpoint = node.endpoint();
        match node.get("/v1/status") {
            Ok(reply) => {
                answered += 1;
                let s = &reply.json;
                rows.push(status_row(endpoint, s));
                if s.get("role").and_then(Value::as_str) == Some("leader") {
                    leaders.push((cell(s.get("node_id")), followers_table(s)));
                }
                bodies.push(reply.body.trim().to_string());
            }
            Err(e) => {
                let mut row = vec!["-".to_string(); STATUS_HEADERS.len()];
                row[1] = endpoint.to_string();
                row[2] = "unreachable".into();
                rows.push(row);
                let body = serde_json::json!({"endpoint": endpoint, "error": "unreachable", "message": e.to_string()});
                bodies.push(body.to_string());
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
                client.endpoints().join(", ")
            ),
        ));
    }
    Ok(())
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

/// The followers table of a leader's status (empty string if none).
fn followers_table(s: &Value) -> String {
    let fields = [
        "peer",
        "connected",
        "state",
        "acked_offset",
        "lag",
        "in_isr",
        "reconnects",
    ];
    let rows = rows_of(s, "followers", &fields);
    if rows.is_empty() {
        return String::new();
    }
    let headers = [
        "PEER",
        "CONNECTED",
        "STATE",
        "ACKED",
        "LAG",
        "IN_ISR",
        "RECONNECTS",
    ];
    render_table(&headers, &rows)
}
