//! The API's request options and typed replies (docs/api.md).
//!
//! Why a module of its own: callers should not pick fields out of JSON by
//! name; these types are the documented shapes. Each reply also keeps the
//! raw body, for callers that print the server's JSON unchanged.

use metawal::NodeId;
use serde::Deserialize;
use serde_json::Value;

/// A successful (2xx) answer with its body read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Reply {
    /// The URL that answered (after redirects).
    pub url: String,
    /// The raw body.
    pub body: String,
    /// The body as JSON (`Null` if it was not JSON).
    pub json: Value,
}

impl Reply {
    /// A reply from its parts.
    pub fn new(url: String, body: String, json: Value) -> Reply {
        Reply { url, body, json }
    }

    /// The body as a `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.json)
    }
}

/// `acks=` of a write: when the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Committed, and on disk on every in-sync replica.
    #[default]
    All,
    /// On the leader's disk.
    Leader,
    /// Appended on the leader.
    None,
}

impl Acks {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "leader",
            Acks::None => "none",
        }
    }
}

/// The answer to `POST /v1/commands`: where the entry is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Proposed {
    /// The entry's log offset (pass it as `min_offset` to read your write).
    pub offset: u64,
    /// The epoch it was appended in.
    pub epoch: u64,
    /// The whole reply.
    #[serde(skip)]
    pub reply: Option<Reply>,
}

/// The answer to `POST /v1/leader/transfer`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Transferred {
    /// The node that leads now.
    pub leader: NodeId,
    /// Its epoch.
    pub epoch: u64,
}

/// `GET /v1/status`: one node's view (the fields this client documents;
/// the reply has more).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct NodeStatus {
    /// The node's id.
    pub node_id: NodeId,
    /// `leader`, `follower`, …
    pub role: String,
    /// The node's epoch.
    pub epoch: u64,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// The end of its log.
    #[serde(default)]
    pub log_end: u64,
    /// The commit offset it knows.
    #[serde(default)]
    pub commit: u64,
    /// The last offset it applied.
    pub applied_offset: u64,
    /// SHA-256 of the applied state (hex).
    #[serde(default)]
    pub digest: String,
    /// The followers (on the leader only).
    #[serde(default)]
    pub followers: Vec<FollowerStatus>,
}

/// One follower in the leader's [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct FollowerStatus {
    /// The follower's node id.
    pub peer: NodeId,
    /// Whether its link is up.
    #[serde(default)]
    pub connected: bool,
    /// The link's state.
    #[serde(default)]
    pub state: String,
    /// The last offset it acknowledged.
    #[serde(default)]
    pub acked_offset: u64,
    /// How far behind it is.
    #[serde(default)]
    pub lag: u64,
    /// Whether it is in the ISR.
    #[serde(default)]
    pub in_isr: bool,
    /// How often its link reconnected.
    #[serde(default)]
    pub reconnects: u64,
}
