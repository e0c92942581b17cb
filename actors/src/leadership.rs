//! The leadership stream: every change of a node's (role, epoch, leader),
//! in order, so that a broker is told when this node gains or loses the
//! metadata leadership instead of polling [`Node::role`](crate::Node::role).
//!
//! Why a stream of snapshots and not a watch: a watch coalesces, and a
//! broker that starts controller work on "leader in epoch 5" must also see
//! the "follower in epoch 6" that came before "leader in epoch 7". The
//! stream is bounded ([`LEADERSHIP_LOG`](crate::shared::LEADERSHIP_LOG)
//! changes): a reader that falls that far behind is told how many it
//! missed and what the leadership is now, and goes on from there.

use tokio::sync::{broadcast, watch};

use crate::status::Leadership;

/// Every change of a node's [`Leadership`] from the moment it was asked
/// for ([`crate::Node::leadership_changes`]), in order.
#[derive(Debug)]
pub struct LeadershipChanges {
    log: broadcast::Receiver<Leadership>,
    now: watch::Receiver<Leadership>,
}

/// Why [`LeadershipChanges::next`] returned no change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeadershipError {
    /// The reader fell more than the stream's bound behind: `missed`
    /// changes are lost to it; `now` is the leadership at this moment. The
    /// next call continues with the oldest change still kept.
    #[error("fell {missed} leadership changes behind; now {now:?}")]
    Lagged {
        /// Changes this reader will never see.
        missed: u64,
        /// The leadership now.
        now: Leadership,
    },
    /// The node is gone (its last change was `Role::Stopped`).
    #[error("the node is gone")]
    Closed,
}

impl LeadershipChanges {
    pub(crate) fn new(
        log: broadcast::Receiver<Leadership>,
        now: watch::Receiver<Leadership>,
    ) -> LeadershipChanges {
        LeadershipChanges { log, now }
    }

    /// The next change, waiting for it. A node that stops publishes
    /// `Role::Stopped` as its last change.
    pub async fn next(&mut self) -> Result<Leadership, LeadershipError> {
        match self.log.recv().await {
            Ok(l) => Ok(l),
            Err(broadcast::error::RecvError::Lagged(missed)) => Err(LeadershipError::Lagged {
                missed,
                now: *self.now.borrow(),
            }),
            Err(broadcast::error::RecvError::Closed) => Err(LeadershipError::Closed),
        }
    }
}
