//! `metawalctl leader transfer --to ID`.
//!
//! Why a module of its own: one subcommand group, one file. The one
//! subtlety: the server refuses a transfer to the node that already leads
//! (`unknown_peer`), which for the user is done, not wrong.

use metawal::NodeId;
use metawal_client::{Client, ErrorCode, Kind, Method, NodeStatus, Reply};

use crate::cli::{Cli, LeaderCmd};
use crate::exit::CtlError;
use crate::output::{cell, emit};

/// `leader …`
pub fn run(cli: &Cli, client: &Client, cmd: &LeaderCmd) -> Result<(), CtlError> {
    let LeaderCmd::Transfer { to } = cmd;
    let path = format!("/v1/leader/transfer?to={to}");
    let reply = match client.request(Method::Post, &path, None, Kind::Write) {
        Ok(r) => r,
        Err(e) if e.code() == Some(&ErrorCode::UnknownPeer) => match already_leads(client, *to) {
            Some(reply) => reply,
            None => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    if cli.json {
        return emit(&reply.body);
    }
    emit(&format!(
        "node {} leads epoch {}",
        cell(reply.json.get("leader")),
        cell(reply.json.get("epoch"))
    ))
}

/// `Some` (a status reply shaped like a transfer's `{"leader","epoch"}`) if
/// node `to` is the leader an endpoint reports.
fn already_leads(client: &Client, to: NodeId) -> Option<Reply> {
    let status = client.status().ok()?;
    let s: NodeStatus = status.parse().ok()?;
    if s.leader != Some(to) {
        return None;
    }
    let body = serde_json::json!({"leader": to, "epoch": s.epoch});
    Some(Reply::new(status.url, body.to_string(), body))
}
