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
const STATUS_HEADERS: [&str; 10] = [
    "NODE", "ENDPOINT", "ROLE", "EPOCH", "LEADER", "LOG_END", "COMMIT", "APPLIED", "DIGEST",
    "PEERS",
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
        peers_cell(s),
    ]
}

/// The PEERS cell: `ok` while every peer connection is up; otherwise each
/// peer whose connection is not, with its state and reason
/// (`3:handshake_refused(secret_mismatch)`), so a node started with the
/// wrong secret does not pass for a healthy one. `-` if the node does not
/// report its peers.
fn peers_cell(s: &Value) -> String {
    let Some(peers) = s.get("peers").and_then(Value::as_array) else {
        return "-".into();
    };
    let down: Vec<String> = peers
        .iter()
        .filter_map(|p| {
            let conn = p.get("connection")?;
            let state = conn
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            if state == "connected" {
                return None;
            }
            let peer = cell(p.get("peer"));
            Some(match conn.get("reason").and_then(Value::as_str) {
                Some(reason) => format!("{peer}:{state}({reason})"),
                None => format!("{peer}:{state}"),
            })
        })
        .collect();
    if down.is_empty() {
        "ok".into()
    } else {
        down.join(" ")
    }
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
    let mut rows = rows_of(s, "followers", &fields);
    let connections = s.get("followers").and_then(Value::as_array);
    for (row, f) in rows.iter_mut().zip(connections.into_iter().flatten()) {
        let conn = f.get("connection");
        let state = cell(conn.and_then(|c| c.get("state")));
        row.push(
            match conn.and_then(|c| c.get("reason")).and_then(Value::as_str) {
                Some(reason) => format!("{state}({reason})"),
                None => state,
            },
        );
    }
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
        "CONNECTION",
    ];
    render_table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(peers: Value) -> Value {
        serde_json::json!({"node_id": 1, "role": "leader", "peers": peers,
            "followers": [{"peer": 3, "connected": false, "state": "probe",
                "connection": {"state": "handshake_refused", "reason": "secret_mismatch"}}]})
    }

    #[test]
    fn a_refused_handshake_shows_in_the_top_table_and_the_followers_table() {
        let s = status(serde_json::json!([
            {"peer": 2, "connection": {"state": "connected"}},
            {"peer": 3, "connection": {"state": "handshake_refused", "reason": "secret_mismatch"}},
        ]));
        let row = status_row("http://127.0.0.1:1", &s);
        assert_eq!(row.len(), STATUS_HEADERS.len());
        assert_eq!(row[9], "3:handshake_refused(secret_mismatch)");
        let table = followers_table(&s);
        assert!(table.contains("CONNECTION"), "{table}");
        assert!(
            table.contains("handshake_refused(secret_mismatch)"),
            "{table}"
        );
    }

    #[test]
    fn all_peers_connected_is_ok_and_no_peers_field_is_a_dash() {
        let s = status(serde_json::json!([{"peer": 2, "connection": {"state": "connected"}}]));
        assert_eq!(peers_cell(&s), "ok");
        assert_eq!(peers_cell(&serde_json::json!({"node_id": 1})), "-");
        let s = status(serde_json::json!([{"peer": 2, "connection": {"state": "connecting"}}]));
        assert_eq!(peers_cell(&s), "2:connecting");
    }
}
