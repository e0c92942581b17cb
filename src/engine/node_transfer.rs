//! Leadership transfer on the leader: its start (refused unless this node
//! leads and no other transfer is under way), its two phases (the target
//! catching up, then electing) with their deadlines, and its end, reported
//! once as [`NodeAction::TransferEnded`].
//!
//! A child module of `node.rs` (it sees the engine's private state),
//! separate so that `node.rs` holds the engine's life and the role changes
//! it steps through, and this file the one operation that runs alongside.

use std::time::Instant;

use super::{NodeAction, NodeEngine, State, Transfer, TransferFailed, TransferPhase};
use crate::command::NodeId;

impl NodeEngine {
    /// The deadline this engine keeps itself: a transfer's.
    pub(super) fn on_tick_at(&mut self, now: Instant) {
        if let Some(t) = self.transfer {
            if now >= t.deadline {
                let (step, waited) = match t.phase {
                    TransferPhase::CatchingUp => ("catching up", self.election_timeout),
                    TransferPhase::Electing => ("electing", 2 * self.election_timeout),
                };
                self.end_transfer(Err(TransferFailed::TimedOut { step, waited }));
            }
        }
    }

    pub(super) fn start_transfer(&mut self, now: Instant, to: NodeId) {
        if let Some(t) = &self.transfer {
            let to_busy = t.to;
            self.actions.push_back(NodeAction::TransferEnded {
                to,
                outcome: Err(TransferFailed::InProgress { to: to_busy }),
            });
            return;
        }
        let outcome = match self.state {
            State::Leading { .. } if to == self.node => Err(TransferFailed::UnknownPeer { to }),
            State::Leading { .. } => Ok(()),
            State::Stopped | State::Failed => Err(TransferFailed::Stopping),
            _ => Err(TransferFailed::NotLeader),
        };
        if let Err(e) = outcome {
            self.actions.push_back(NodeAction::TransferEnded {
                to,
                outcome: Err(e),
            });
            return;
        }
        self.transfer = Some(Transfer {
            to,
            phase: TransferPhase::CatchingUp,
            deadline: now + self.election_timeout,
        });
        self.publish(now);
        self.actions.push_back(NodeAction::WatchCatchUp { to });
    }

    /// `leader` is known to lead: a transfer to it is done.
    pub(super) fn transfer_seen_leader(&mut self, leader: NodeId) {
        if self
            .transfer
            .is_some_and(|t| t.to == leader && t.phase == TransferPhase::Electing)
        {
            self.end_transfer(Ok(()));
        }
    }

    pub(super) fn end_transfer(&mut self, outcome: Result<(), TransferFailed>) {
        if let Some(t) = self.transfer.take() {
            self.actions
                .push_back(NodeAction::TransferEnded { to: t.to, outcome });
        }
    }
}
