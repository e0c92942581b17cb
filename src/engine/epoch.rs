//! Epoch fencing: may a node act for `leader` in `epoch`, given the
//! `(epoch, leader)` it has persisted?
//!
//! One rule for every path that persists a new epoch (a follower accepting a
//! leader's handshake, a node taking or handing over leadership), checked
//! against what is on disk at the moment of writing, so that two writers
//! racing on the disk thread cannot lower the persisted epoch.

use crate::command::NodeId;
use crate::storage::NodeMeta;

/// Why a node refuses to act for a leader in an epoch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochRefused {
    /// The epoch is below the persisted one.
    #[error("epoch {epoch} is below this node's epoch {current}")]
    Stale {
        /// The epoch asked for.
        epoch: u64,
        /// The persisted epoch.
        current: u64,
        /// The persisted leader of `current`, if any.
        leader: Option<NodeId>,
    },
    /// Another leader holds this very epoch.
    #[error("epoch {epoch} already belongs to node {holder}")]
    Conflict {
        /// The epoch.
        epoch: u64,
        /// Its leader as persisted.
        holder: NodeId,
    },
    /// This node already voted for another candidate in this epoch.
    #[error("this node already voted for node {voted_for} in epoch {epoch}")]
    Voted {
        /// The epoch.
        epoch: u64,
        /// The vote on disk.
        voted_for: NodeId,
    },
}

/// The meta to write when `new` is persisted over `on_disk` (every meta
/// write goes through this, on the one disk thread, so two writers — the
/// log owner persisting a leader's epoch, the elector persisting a vote —
/// never undo each other):
/// - never a lower epoch; never a second leader of an epoch (a write that
///   names a leader is checked by [`maybe_advance_epoch`]);
/// - never a second vote in an epoch;
/// - within the same epoch, what `new` leaves out (`leader`, `voted_for`)
///   is kept from disk; a higher epoch starts with only what `new` says;
/// - the commit hint never goes down;
/// - the directory id on disk, once known, is kept.
pub fn merge_meta(on_disk: Option<&NodeMeta>, new: &NodeMeta) -> Result<NodeMeta, EpochRefused> {
    let Some(cur) = on_disk else {
        return Ok(new.clone());
    };
    match new.leader {
        Some(leader) => {
            maybe_advance_epoch(cur.current_epoch, cur.leader, new.current_epoch, leader)?;
        }
        None if new.current_epoch < cur.current_epoch => {
            return Err(EpochRefused::Stale {
                epoch: new.current_epoch,
                current: cur.current_epoch,
                leader: cur.leader,
            });
        }
        None => {}
    }
    let mut m = new.clone();
    m.commit_hint = m.commit_hint.max(cur.commit_hint);
    // A data directory's identity never changes once written.
    if !cur.directory_id.is_unknown() {
        m.directory_id = cur.directory_id;
    }
    if m.current_epoch == cur.current_epoch {
        m.leader = m.leader.or(cur.leader);
        match (cur.voted_for, m.voted_for) {
            (Some(had), Some(wants)) if had != wants => {
                return Err(EpochRefused::Voted {
                    epoch: m.current_epoch,
                    voted_for: had,
                })
            }
            (had, wants) => m.voted_for = wants.or(had),
        }
    }
    Ok(m)
}

/// The meta that records a vote for `voted_for` (or only the move to
/// `epoch`, if `None`) over `on_disk`: see [`merge_meta`].
pub fn vote_meta(
    on_disk: &NodeMeta,
    epoch: u64,
    voted_for: Option<NodeId>,
) -> Result<NodeMeta, EpochRefused> {
    let new = NodeMeta {
        current_epoch: epoch,
        leader: None,
        voted_for,
        ..on_disk.clone()
    };
    merge_meta(Some(on_disk), &new)
}

/// What persisting `(epoch, leader)` over the persisted
/// `(current, current_leader)` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochStep {
    /// The same epoch and leader: nothing to write.
    Same,
    /// A new epoch (or a leader for an epoch that had none): write it first.
    Advance,
}

/// Decide whether a node may act for `leader` in `epoch`.
pub fn maybe_advance_epoch(
    current: u64,
    current_leader: Option<NodeId>,
    epoch: u64,
    leader: NodeId,
) -> Result<EpochStep, EpochRefused> {
    if epoch < current {
        return Err(EpochRefused::Stale {
            epoch,
            current,
            leader: current_leader,
        });
    }
    if epoch == current {
        return match current_leader {
            Some(l) if l == leader => Ok(EpochStep::Same),
            Some(holder) => Err(EpochRefused::Conflict { epoch, holder }),
            None => Ok(EpochStep::Advance),
        };
    }
    Ok(EpochStep::Advance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_epochs_advance_lower_ones_are_stale() {
        assert_eq!(
            maybe_advance_epoch(3, Some(1), 4, 2),
            Ok(EpochStep::Advance)
        );
        assert_eq!(
            maybe_advance_epoch(5, Some(2), 4, 1),
            Err(EpochRefused::Stale {
                epoch: 4,
                current: 5,
                leader: Some(2)
            }),
            "a slower writer never lowers the persisted epoch"
        );
    }

    fn meta(epoch: u64, leader: Option<NodeId>, voted_for: Option<NodeId>) -> NodeMeta {
        NodeMeta {
            node_id: 2,
            cluster_id: "c".into(),
            directory_id: crate::membership::DirectoryId::UNKNOWN,
            current_epoch: epoch,
            leader,
            voted_for,
            commit_hint: 10,
        }
    }

    /// The log owner persisting the leader it attached does not erase the
    /// vote the elector persisted in the same epoch (which would let the
    /// node vote again in it after a restart), and vice versa.
    #[test]
    fn a_leader_write_keeps_the_vote_and_a_vote_write_keeps_the_leader() {
        let voted = meta(5, None, Some(3));
        let m = merge_meta(Some(&voted), &meta(5, Some(3), None)).unwrap();
        assert_eq!(m, meta(5, Some(3), Some(3)));
        let m = vote_meta(&meta(5, Some(3), None), 5, Some(3)).unwrap();
        assert_eq!(m, meta(5, Some(3), Some(3)));
        // A higher epoch starts clean.
        let m = merge_meta(Some(&voted), &meta(6, Some(1), None)).unwrap();
        assert_eq!(m, meta(6, Some(1), None));
        let m = vote_meta(&meta(5, Some(3), Some(3)), 6, None).unwrap();
        assert_eq!(m, meta(6, None, None));
    }

    #[test]
    fn one_vote_per_epoch_and_never_a_lower_epoch() {
        let voted = meta(5, None, Some(3));
        assert_eq!(
            vote_meta(&voted, 5, Some(1)),
            Err(EpochRefused::Voted {
                epoch: 5,
                voted_for: 3
            })
        );
        assert_eq!(vote_meta(&voted, 5, Some(3)).unwrap(), voted);
        assert_eq!(vote_meta(&voted, 5, None).unwrap(), voted);
        assert!(matches!(
            vote_meta(&voted, 4, Some(1)),
            Err(EpochRefused::Stale { current: 5, .. })
        ));
        // A leaderless write (a shutdown's commit hint) never lowers it.
        assert!(matches!(
            merge_meta(Some(&voted), &meta(4, None, None)),
            Err(EpochRefused::Stale { current: 5, .. })
        ));
        // The commit hint never goes down.
        let mut low = meta(5, None, None);
        low.commit_hint = 3;
        assert_eq!(merge_meta(Some(&voted), &low).unwrap().commit_hint, 10);
    }

    #[test]
    fn one_leader_per_epoch() {
        assert_eq!(maybe_advance_epoch(4, Some(2), 4, 2), Ok(EpochStep::Same));
        assert_eq!(
            maybe_advance_epoch(4, Some(2), 4, 1),
            Err(EpochRefused::Conflict {
                epoch: 4,
                holder: 2
            })
        );
        assert_eq!(maybe_advance_epoch(4, None, 4, 1), Ok(EpochStep::Advance));
    }
}
