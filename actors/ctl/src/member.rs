//! `metawalctl member list|add|promote|remove`: the cluster's members
//! through `/v1/members` (docs/api.md). A change goes to the leader (a
//! follower redirects) and answers once committed; a refusal exits with
//! its code and the server's reason.

use metawal_client::{Client, Kind, Method};
use serde_json::{json, Value};

use crate::cli::{Cli, MemberCmd};
use crate::exit::CtlError;
use crate::output::{cell, emit, render_table};

/// `member …`
pub fn run(cli: &Cli, client: &Client, cmd: &MemberCmd) -> Result<(), CtlError> {
    let (reply, done) = match cmd {
        MemberCmd::List => (client.get("/v1/members")?, None),
        MemberCmd::Add {
            id,
            replication_addr,
            http_addr,
            kafka_addr,
            directory_id,
        } => {
            let body = json!({
                "node_id": id,
                "replication_addr": replication_addr,
                "http_addr": http_addr,
                "kafka_addr": kafka_addr,
                "directory_id": directory_id,
            })
            .to_string();
            let reply = client.request(Method::Post, "/v1/members", Some(&body), Kind::Write)?;
            (reply, Some(format!("node {id} added as a learner")))
        }
        MemberCmd::Promote { id, wait_ms } => {
            let path = format!("/v1/members/{id}/promote?timeout_ms={wait_ms}");
            let reply = client.request(Method::Post, &path, None, Kind::Write)?;
            (reply, Some(format!("node {id} promoted to voter")))
        }
        MemberCmd::Remove { id } => {
            let path = format!("/v1/members/{id}");
            let reply = client.request(Method::Delete, &path, None, Kind::Write)?;
            (reply, Some(format!("node {id} removed")))
        }
    };
    if cli.json {
        return emit(&reply.body);
    }
    let mut out = String::new();
    if let Some(done) = done {
        out.push_str(&format!(
            "{done} at offset {}\n",
            cell(reply.json.get("offset"))
        ));
    }
    out.push_str(&members_table(&reply.json));
    emit(&out)
}

/// One row per member: voters first, then learners.
fn members_table(j: &Value) -> String {
    let mut rows = Vec::new();
    for (role, key) in [("voter", "voters"), ("learner", "learners")] {
        for m in j.get(key).and_then(Value::as_array).into_iter().flatten() {
            rows.push(vec![
                cell(m.get("node_id")),
                role.to_string(),
                cell(m.get("replication_addr")),
                cell(m.get("http_addr")),
                cell(m.get("kafka_addr")),
                cell(m.get("last_offset")),
                cell(m.get("caught_up")),
            ]);
        }
    }
    let mut out = render_table(
        &[
            "NODE",
            "ROLE",
            "REPLICATION",
            "HTTP",
            "KAFKA",
            "LAST_OFFSET",
            "CAUGHT_UP",
        ],
        &rows,
    );
    if let Some(p) = j.get("pending_change").filter(|p| !p.is_null()) {
        out.push_str(&format!(
            "\na change at offset {} is not committed yet",
            cell(p.get("offset"))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_voters_then_learners_and_a_pending_change() {
        let j = json!({
            "voters": [{"node_id": 1, "replication_addr": "10.0.0.1:7101", "http_addr": "", "last_offset": 9, "caught_up": true}],
            "learners": [{"node_id": 4, "replication_addr": "10.0.0.4:7101", "http_addr": "10.0.0.4:8081", "kafka_addr": "10.0.0.4:9092", "last_offset": null, "caught_up": null}],
            "pending_change": {"offset": 9},
        });
        let t = members_table(&j);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NODE"));
        assert!(lines[1].starts_with("1") && lines[1].contains("voter"));
        assert!(lines[2].starts_with("4") && lines[2].contains("learner"));
        assert!(lines[0].contains("KAFKA") && lines[2].contains("10.0.0.4:9092"));
        assert!(t.ends_with("a change at offset 9 is not committed yet"));
    }
}
