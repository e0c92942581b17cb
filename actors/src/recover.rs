//! The way back from a lost quorum: rewrite the voter set of a stopped
//! node's data directory (`metawal-node recover`), the counterpart of
//! etcd's `--force-new-cluster` and hashicorp/raft's `RecoverCluster`.
//!
//! **Unsafe by design**: it makes a node lead without the majority that
//! committed the log, so any write only the lost nodes held is gone, and
//! a lost node that comes back must be wiped before it rejoins. Run it on
//! one surviving node, the one whose log is longest, with the node
//! stopped; docs/operations.md has the checklist.
//!
//! How: it appends one `Membership` entry — the voters asked for, no
//! learners — at the end of the node's log, in an epoch above every epoch
//! the node has seen, and records that epoch in `meta` (no vote, no
//! leader). At its next start the entry is in force (a membership takes
//! effect when appended): the node counts only the new voters, stands, and
//! the survivors, whose logs are shorter or older, vote for it and take
//! the entry from it. Nothing here runs on an arbiter: it is an offline
//! command, run before the node starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use metawal::command::{Command, Entry};
use metawal::engine::recovery::{self, RecoveredMemberships};
use metawal::membership::{DirectoryId, Member, Membership};
use metawal::storage::{NodeMeta, Snapshot};
use metawal::wal::{Wal, WalOptions};
use metawal::{MetadataState, NodeId, Record};

use crate::disk_files::{snapshot_dir, wal_dir};

/// What a recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverReport {
    /// The voters in force before (`None`: the log held no membership, so
    /// they were the ones of the flags, which this command does not see).
    pub old_voters: Option<Vec<NodeId>>,
    /// The voters in force now.
    pub new_voters: Vec<NodeId>,
    /// The offset of the entry appended.
    pub offset: u64,
    /// Its epoch (also the node's epoch now).
    pub epoch: u64,
    /// The node's commit point: entries after it were never known
    /// committed here and may be ones a lost majority had truncated.
    pub commit: u64,
}

/// Why a recovery was refused or failed. Nothing is changed on a refusal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoverError {
    /// No `meta` in the directory: not a node's data directory.
    #[error("{dir} holds no meta file: not a metawal data directory")]
    NotADataDir {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory is another node's or cluster's.
    #[error("{dir} belongs to node {found_node} of cluster {found_cluster:?}, not node {node} of {cluster:?}")]
    Foreign {
        /// The directory.
        dir: PathBuf,
        /// Its node.
        found_node: NodeId,
        /// Its cluster.
        found_cluster: String,
        /// The node asked for.
        node: NodeId,
        /// The cluster asked for.
        cluster: String,
    },
    /// The voters asked for do not include this node (it must lead them).
    #[error("the new voters must include this node ({node}): it is the one that will lead them")]
    SelfNotAVoter {
        /// This node.
        node: NodeId,
    },
    /// A voter asked for is not a member and has no address given.
    #[error("node {node} is not a member of this node's membership; give its replication address with --peer {node}=IP:PORT")]
    UnknownVoter {
        /// The id.
        node: NodeId,
    },
    /// The new voter set is not a valid membership.
    #[error("the new voters are not a valid membership: {0}")]
    Invalid(#[from] metawal::membership::MembershipError),
    /// Reading or writing the directory failed. The voter set changes only
    /// once the entry is written (after the meta's new epoch): a failure
    /// before leaves it as it was; fix the cause and rerun.
    #[error("{0}")]
    Storage(String),
}

fn storage(e: impl std::fmt::Display) -> RecoverError {
    RecoverError::Storage(e.to_string())
}

/// Rewrite the voter set of the stopped node `node` of `cluster` in
/// `data_dir` to `voters` (see the module docs: unsafe, one node only).
/// `peers` gives the replication address of any voter the membership in
/// force does not list (always needed for a cluster that never logged its
/// membership: its bootstrap came from flags).
pub fn recover_voters(
    data_dir: &Path,
    node: NodeId,
    cluster: &str,
    voters: &[NodeId],
    peers: &BTreeMap<NodeId, SocketAddr>,
) -> Result<RecoverReport, RecoverError> {
    let mut meta =
        NodeMeta::load(data_dir)
            .map_err(storage)?
            .ok_or_else(|| RecoverError::NotADataDir {
                dir: data_dir.to_path_buf(),
            })?;
    if meta.node_id != node || meta.cluster_id != cluster {
        return Err(RecoverError::Foreign {
            dir: data_dir.to_path_buf(),
            found_node: meta.node_id,
            found_cluster: meta.cluster_id,
            node,
            cluster: cluster.to_string(),
        });
    }
    if !voters.contains(&node) {
        return Err(RecoverError::SelfNotAVoter { node });
    }
    let options = WalOptions {
        segment_bytes: metawal::ReplicationConfig::default().segment_bytes,
        preallocate: true,
    };
    let (mut wal, _report) = Wal::open(&wal_dir(data_dir), options).map_err(storage)?;
    let mut memberships = RecoveredMemberships::default();
    let (state, snap_offset) =
        match Snapshot::load_latest(&snapshot_dir(data_dir)).map_err(storage)? {
            Some(s) => {
                memberships.snapshot = s.state.membership().cloned().map(|m| (s.offset, m));
                (s.state, s.offset)
            }
            None => (MetadataState::new(), 0),
        };
    let last = wal.last_offset().max(snap_offset);
    let commit = recovery::commit_point(meta.commit_hint, snap_offset, last);
    let dir = data_dir.display().to_string();
    let (_, appended) = recovery::replay_log(
        &dir,
        state,
        commit,
        snap_offset + 1,
        wal.last_offset(),
        |next| wal.read(next, recovery::REPLAY_READ_ENTRIES, 8 * 1024 * 1024),
        &mut memberships,
    )
    .map_err(storage)?;
    let logged = memberships.logged();
    let current = if logged {
        let log = memberships.into_log(placeholder(node)?).map_err(storage)?;
        Some(log.latest().clone())
    } else {
        None
    };
    let old_voters: Option<Vec<NodeId>> = current.as_ref().map(|m| m.voter_ids().collect());
    let mut new = Vec::with_capacity(voters.len());
    for &id in voters {
        let known = current
            .as_ref()
            .and_then(|m| m.member(id))
            .map(|(m, _)| m.clone());
        let member = match (known, peers.get(&id)) {
            (Some(m), _) => m,
            (None, Some(addr)) => Member {
                node_id: id,
                directory_id: if id == node {
                    meta.directory_id
                } else {
                    DirectoryId::UNKNOWN
                },
                replication_addr: addr.to_string(),
                http_addr: String::new(),
                kafka_addr: String::new(),
            },
            (None, None) => return Err(RecoverError::UnknownVoter { node: id }),
        };
        new.push(member);
    }
    let membership = Membership::new(new, [])?;
    let epoch = meta.current_epoch.max(wal.epochs().last_epoch()) + 1;
    let offset = last + 1;
    let entry = Entry {
        offset,
        epoch,
        command: Command::Membership(membership.clone()),
    };
    // The entry must apply where the log ends, as any entry must.
    appended
        .clone()
        .apply(&entry)
        .map_err(|e| storage(format!("the membership entry does not apply: {e}")))?;
    let record = Record::encode(&entry).map_err(storage)?;
    // The epoch first: if the entry's write then fails, the node only has
    // a higher epoch and no vote (harmless), the voter set is unchanged,
    // and a rerun starts one epoch higher.
    meta.current_epoch = epoch;
    meta.voted_for = None;
    meta.leader = None;
    meta.store(data_dir)
        .map_err(|e| storage(format!("writing meta: {e}")))?;
    wal.append(&[record])
        .and_then(|()| wal.sync())
        .map_err(|e| storage(format!("writing the membership entry: {e}")))?;
    tracing::warn!(node, offset, epoch, old_voters = ?old_voters, new_voters = ?voters, "voter set rewritten offline (recover): writes only the lost nodes held are gone");
    Ok(RecoverReport {
        old_voters,
        new_voters: membership.voter_ids().collect(),
        offset,
        epoch,
        commit,
    })
}

/// A base for a log that holds memberships (never used as the answer:
/// `into_log` only falls back to it when nothing is logged).
fn placeholder(node: NodeId) -> Result<Membership, RecoverError> {
    let me = Member {
        node_id: node,
        directory_id: DirectoryId::UNKNOWN,
        replication_addr: "0.0.0.0:0".into(),
        http_addr: String::new(),
        kafka_addr: String::new(),
    };
    Ok(Membership::new([me], [])?)
}
