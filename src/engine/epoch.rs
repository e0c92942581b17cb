//! Epoch fencing: may a node act for `leader` in `epoch`, given the
//! `(epoch, leader)` it has persisted?
//!
//! One rule for every path that persists a new epoch (a follower accepting a
//! leader's handshake, a node taking or handing over leadership), checked
//! against what is on disk at the moment of writing, so that two writers
//! racing on the disk thread cannot lower the persisted epoch.

use crate::command::NodeId;

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
