//! Membership: who votes, who only replicates, and how that changes while
//! the cluster serves (KRaft's KIP-853 shape: single-server changes,
//! learners that catch up before they vote).
//!
//! Why a module of its own: the voter set decides every majority (commit,
//! elections, check-quorum, read index), so it must have one definition
//! that the engines share, and its rules (one change at a time, the
//! own-epoch barrier, learners first) must be decided in one place and
//! tested apart from the I/O that carries them out.
//!
//! - [`Membership`]: the voters and learners, each a [`Member`] (node id,
//!   [`DirectoryId`], replication and HTTP addresses), checked on
//!   construction. It travels in the log as [`crate::command::Command::Membership`]
//!   (a control entry, like `LeaderChange`) and in snapshots.
//! - [`MembershipLog`]: the membership in force at each offset of a log. A
//!   membership entry takes effect when it is *appended* (not when it
//!   commits), and reverts when that suffix is truncated.
//! - [`admit_change`]: whether a leader may append a [`MemberChange`] now,
//!   and the membership it leads to, or a typed [`ChangeRefused`] saying why
//!   not and what to do. Never a silent no-op.
//!
//! The module has no randomness and no clock: a directory id is drawn by
//! the caller at a data directory's first start; how recently a learner
//! was heard is passed in.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::id::NodeId;

mod change;
mod log;

pub use change::{admit_change, ChangeContext, ChangeRefused, LearnerProgress, MemberChange};
pub use log::{MembershipLog, MembershipLogError, MAX_PENDING_CHANGES};

/// Most members (voters and learners together) a membership holds.
pub const MAX_MEMBERS: usize = 15;
/// Longest address (`host:port`) a member may carry, in bytes.
pub const MAX_ADDR_BYTES: usize = 255;

/// A data directory's identity: 16 random bytes drawn at its first start
/// and kept in its `meta`. A node that comes back with a wiped disk under
/// its old node id has a new directory id, so the voter set can tell it
/// from the node it replaced (which may have voted, and acknowledged
/// entries the new disk does not hold).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DirectoryId(pub [u8; 16]);

impl DirectoryId {
    /// The id of a directory that predates directory ids (or a bootstrap
    /// voter whose id is not known yet): matches nothing but itself.
    pub const UNKNOWN: DirectoryId = DirectoryId([0; 16]);

    /// Whether this is [`DirectoryId::UNKNOWN`].
    pub fn is_unknown(&self) -> bool {
        *self == DirectoryId::UNKNOWN
    }
}

impl fmt::Display for DirectoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DirectoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DirectoryId({self})")
    }
}

/// A directory id that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a directory id is 32 hex digits, got {0:?}")]
pub struct BadDirectoryId(pub String);

impl FromStr for DirectoryId {
    type Err = BadDirectoryId;

    fn from_str(s: &str) -> Result<DirectoryId, BadDirectoryId> {
        let bad = || BadDirectoryId(s.chars().take(64).collect());
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(DirectoryId(out))
    }
}

/// One member of the cluster: a voter or a learner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// Its node id.
    pub node_id: NodeId,
    /// The data directory it votes (or replicates) with.
    pub directory_id: DirectoryId,
    /// Where its replication listener is (`host:port`).
    pub replication_addr: String,
    /// Where its HTTP API is (`host:port`), for redirects and tools.
    pub http_addr: String,
    /// Where Kafka clients reach its Kafka admin front (`host:port`;
    /// empty: none advertised). Added after the first log format: an entry
    /// or snapshot written without it reads as empty (`#[serde(default)]`
    /// on the last field of an array-encoded struct), and an empty one is
    /// not written, so a member without one encodes byte for byte as
    /// before (a node of the previous version reads it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kafka_addr: String,
}

/// Whether a member votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRole {
    /// Counted for commit, elections, check-quorum and reads.
    Voter,
    /// Replicated to and fsyncing, counted for nothing.
    Learner,
}

impl fmt::Display for MemberRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        })
    }
}

/// A membership that is not well formed (from a command, a log entry, a
/// snapshot or flags): nothing is changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// No voter: nobody could ever commit again.
    #[error("a membership needs at least one voter")]
    NoVoters,
    /// More members than [`MAX_MEMBERS`].
    #[error("{count} members is more than the limit of {max}")]
    TooMany {
        /// Members given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A node id listed twice (as voter, learner, or both).
    #[error("node {node_id} is listed more than once")]
    Duplicate {
        /// The id.
        node_id: NodeId,
    },
    /// Node id 0 is reserved for "none".
    #[error("node id 0 is reserved")]
    ZeroId,
    /// A replication address that is empty, or an address longer than
    /// [`MAX_ADDR_BYTES`].
    #[error("node {node_id}: {which} address {addr:?} must be at most {max} bytes (a replication address at least 1)")]
    BadAddress {
        /// The member.
        node_id: NodeId,
        /// `"replication"`, `"http"` or `"kafka"`.
        which: &'static str,
        /// The address given (cut to the limit).
        addr: String,
        /// The limit.
        max: usize,
    },
    /// A Kafka address that is neither empty nor `host:port` with a port
    /// from 1 to 65535 (what a Kafka client is told to connect to).
    #[error("node {node_id}: Kafka address {addr:?} is not HOST:PORT with a port from 1 to 65535")]
    BadKafkaAddress {
        /// The member.
        node_id: NodeId,
        /// The address given.
        addr: String,
    },
}

/// The voters and learners of the cluster, each by node id. Built only by
/// [`Membership::new`], so every value is well formed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Membership {
    voters: BTreeMap<NodeId, Member>,
    learners: BTreeMap<NodeId, Member>,
}

/// The serialized form, checked on the way in.
#[derive(Deserialize)]
struct MembershipWire {
    voters: BTreeMap<NodeId, Member>,
    learners: BTreeMap<NodeId, Member>,
}

impl<'de> Deserialize<'de> for Membership {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Membership, D::Error> {
        let wire = MembershipWire::deserialize(d)?;
        for (&id, m) in wire.voters.iter().chain(wire.learners.iter()) {
            if m.node_id != id {
                return Err(serde::de::Error::custom(format!(
                    "member listed under node {id} names node {}",
                    m.node_id
                )));
            }
        }
        Membership::new(wire.voters.into_values(), wire.learners.into_values())
            .map_err(serde::de::Error::custom)
    }
}

impl Membership {
    /// A membership of `voters` and `learners`, checked: at least one
    /// voter, at most [`MAX_MEMBERS`] in all, no id twice, no id 0, every
    /// address at most [`MAX_ADDR_BYTES`] bytes, the replication address
    /// not empty (the HTTP address may be: a node without an HTTP API).
    pub fn new(
        voters: impl IntoIterator<Item = Member>,
        learners: impl IntoIterator<Item = Member>,
    ) -> Result<Membership, MembershipError> {
        let mut m = Membership {
            voters: BTreeMap::new(),
            learners: BTreeMap::new(),
        };
        let mut count = 0usize;
        for (member, voter) in voters
            .into_iter()
            .map(|v| (v, true))
            .chain(learners.into_iter().map(|l| (l, false)))
        {
            count += 1;
            if count > MAX_MEMBERS {
                return Err(MembershipError::TooMany {
                    count,
                    max: MAX_MEMBERS,
                });
            }
            check_member(&member)?;
            let id = member.node_id;
            if m.voters.contains_key(&id) || m.learners.contains_key(&id) {
                return Err(MembershipError::Duplicate { node_id: id });
            }
            if voter {
                m.voters.insert(id, member);
            } else {
                m.learners.insert(id, member);
            }
        }
        if m.voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        Ok(m)
    }

    /// The voters, by node id.
    pub fn voters(&self) -> impl Iterator<Item = &Member> {
        self.voters.values()
    }

    /// The voters' node ids, ascending.
    pub fn voter_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.keys().copied()
    }

    /// The learners, by node id.
    pub fn learners(&self) -> impl Iterator<Item = &Member> {
        self.learners.values()
    }

    /// Every member, voters first.
    pub fn members(&self) -> impl Iterator<Item = (&Member, MemberRole)> {
        self.voters
            .values()
            .map(|m| (m, MemberRole::Voter))
            .chain(self.learners.values().map(|m| (m, MemberRole::Learner)))
    }

    /// How many voters there are.
    pub fn voter_count(&self) -> usize {
        self.voters.len()
    }

    /// Votes (or durable copies) needed for a decision: a strict majority
    /// of the voters.
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains_key(&id)
    }

    /// `id`'s member record and role, if it is a member.
    pub fn member(&self, id: NodeId) -> Option<(&Member, MemberRole)> {
        self.voters
            .get(&id)
            .map(|m| (m, MemberRole::Voter))
            .or_else(|| self.learners.get(&id).map(|m| (m, MemberRole::Learner)))
    }

    /// The highest offset durable on a majority of the voters, given each
    /// voter's durable offset (`durable_of`; a voter not known yet counts as
    /// 0). Learners are not counted.
    pub fn quorum_offset(&self, durable_of: impl Fn(NodeId) -> u64) -> u64 {
        let mut durable: Vec<u64> = self.voters.keys().map(|&id| durable_of(id)).collect();
        durable.sort_unstable_by(|a, b| b.cmp(a));
        durable[self.majority() - 1]
    }

    /// Whether the voters in `yes` (any others ignored) are a majority.
    pub fn is_quorum(&self, yes: impl IntoIterator<Item = NodeId>) -> bool {
        let mut seen = std::collections::BTreeSet::new();
        for id in yes {
            if self.voters.contains_key(&id) {
                seen.insert(id);
            }
        }
        seen.len() >= self.majority()
    }
}

fn check_member(m: &Member) -> Result<(), MembershipError> {
    if m.node_id == 0 {
        return Err(MembershipError::ZeroId);
    }
    // A node may run without an HTTP API or a Kafka front (an embedded
    // one): those addresses may be empty; it has a replication address
    // always.
    for (which, addr, min) in [
        ("replication", &m.replication_addr, 1),
        ("http", &m.http_addr, 0),
        ("kafka", &m.kafka_addr, 0),
    ] {
        if addr.len() < min || addr.len() > MAX_ADDR_BYTES {
            return Err(MembershipError::BadAddress {
                node_id: m.node_id,
                which,
                addr: addr.chars().take(MAX_ADDR_BYTES).collect(),
                max: MAX_ADDR_BYTES,
            });
        }
    }
    if !m.kafka_addr.is_empty() && split_host_port(&m.kafka_addr).is_none() {
        return Err(MembershipError::BadKafkaAddress {
            node_id: m.node_id,
            addr: m.kafka_addr.clone(),
        });
    }
    Ok(())
}

/// `host:port` split, the brackets of an IPv6 host taken off; `None` unless
/// there is a host and a port from 1 to 65535. The host is not resolved.
pub fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests;
