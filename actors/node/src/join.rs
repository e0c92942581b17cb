//! `--join`: find a running cluster's voters through any of its nodes'
//! HTTP APIs, before this node starts.
//!
//! Why before the start: a joining node is an empty learner-in-waiting; it
//! needs the voters' replication addresses only to know who may lead it
//! (its membership until the leader's log reaches it). The leader adds it
//! (`metawalctl member add`) and its log is the truth from then on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metawal_actors::NodeId;
use metawal_client::{tls, Client};
use serde_json::Value;

/// How long one `GET /v1/members` may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A voter as `GET /v1/members` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Voter {
    /// Its replication address.
    pub(crate) replication: SocketAddr,
    /// Its HTTP address (empty: none).
    pub(crate) http: String,
    /// Its Kafka front's address (empty: none, or a cluster that does not
    /// list them).
    pub(crate) kafka: String,
}

/// The cluster's voters by id, as the first of `endpoints` that answers
/// lists them. With `ca`, HTTPS trusting
/// it, presenting `identity` (this node's certificate and key) if given.
pub(crate) fn voters(
    endpoints: &[String],
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<BTreeMap<NodeId, Voter>, String> {
    let tls = match ca {
        Some(ca) => Some(Arc::new(
            tls::client_config(ca, identity).map_err(|e| format!("--join: {e}"))?,
        )),
        None => None,
    };
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|e| metawal_client::endpoint::with_scheme(e, tls.is_some()))
        .collect();
    let client = Client::new(&endpoints, ASK_TIMEOUT, tls);
    let reply = client
        .get("/v1/members")
        .map_err(|e| format!("--join: no listed node answered GET /v1/members: {e}"))?;
    parse_voters(&reply.json)
}

/// The voters of a `GET /v1/members` answer; every one must have an
/// `IP:port` replication address.
fn parse_voters(j: &Value) -> Result<BTreeMap<NodeId, Voter>, String> {
    let list = j
        .get("voters")
        .and_then(Value::as_array)
        .ok_or("--join: the answer has no voters list")?;
    let mut out = BTreeMap::new();
    for v in list {
        let id = v
            .get("node_id")
            .and_then(Value::as_u64)
            .filter(|&id| id >= 1)
            .ok_or_else(|| format!("--join: a voter without a node id: {v}"))?;
        let repl = v
            .get("replication_addr")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("--join: voter {id} has no replication address"))?;
        let addr: SocketAddr = repl.parse().map_err(|_| {
            format!("--join: voter {id}'s replication address {repl:?} is not IP:port")
        })?;
        let text = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        out.insert(
            id,
            Voter {
                replication: addr,
                http: text("http_addr"),
                kafka: text("kafka_addr"),
            },
        );
    }
    if out.is_empty() {
        return Err("--join: the cluster lists no voters".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_are_read_from_a_members_answer_and_bad_ones_refused() {
        let j: Value = serde_json::json!({"voters": [
            {"node_id": 1, "replication_addr": "127.0.0.1:7101", "http_addr": "127.0.0.1:8081", "kafka_addr": "k1:9092"},
            {"node_id": 2, "replication_addr": "127.0.0.1:7102", "http_addr": ""}
        ], "learners": []});
        let v = parse_voters(&j).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[&1].http, "127.0.0.1:8081");
        assert_eq!(v[&1].kafka, "k1:9092");
        assert_eq!(v[&2].kafka, "", "a cluster that lists no Kafka address");
        let bad = serde_json::json!({"voters": [{"node_id": 1, "replication_addr": "host:7101"}]});
        assert!(parse_voters(&bad).unwrap_err().contains("not IP:port"));
        assert!(parse_voters(&serde_json::json!({"voters": []})).is_err());
        assert!(parse_voters(&serde_json::json!({})).is_err());
    }
}
