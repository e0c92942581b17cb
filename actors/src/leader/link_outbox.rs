//! The link's ordered outbox to the Replicator: reports are queued in
//! order, sent with `try_send` as the Replicator's mailbox takes them, acks
//! coalesce, and past [`MAX_OUTBOX`](super::MAX_OUTBOX) events it collapses
//! to the link's current state (see the module docs of `link.rs`).
//!
//! A child module of `link.rs` (it sees the link's private state),
//! separate because delivery to the Replicator is one concern of its own.

use actix::prelude::*;

use super::{FollowerLink, MAX_OUTBOX};
use crate::leader::messages::LinkEvent;

impl FollowerLink {
    /// Queue `event` for the Replicator, in order, and send what its
    /// mailbox takes now (see the module docs).
    pub(super) fn emit(&mut self, event: LinkEvent) {
        if matches!(event, LinkEvent::Acked { .. })
            && matches!(self.outbox.back(), Some(LinkEvent::Acked { .. }))
        {
            self.outbox.pop_back();
        }
        if self.outbox.len() >= MAX_OUTBOX {
            // Collapse to what the Replicator must end up knowing: the
            // connection went down, and is up again at the acked offset if
            // the link is streaming now.
            tracing::warn!(
                node = self.node,
                peer = self.peer,
                "Replicator busy; link events collapsed to the link's state"
            );
            self.outbox.clear();
            self.outbox
                .push_back(LinkEvent::Disconnected { peer: self.peer });
            if self.engine.connected() {
                self.outbox.push_back(LinkEvent::Connected {
                    peer: self.peer,
                    matched: self.engine.progress().acked_offset(),
                });
            }
            if !matches!(
                event,
                LinkEvent::Connected { .. }
                    | LinkEvent::Acked { .. }
                    | LinkEvent::Disconnected { .. }
            ) {
                self.outbox.push_back(event);
            }
        } else {
            self.outbox.push_back(event);
        }
        self.flush_outbox();
    }

    /// Send queued events until the Replicator's mailbox is full.
    pub(super) fn flush_outbox(&mut self) {
        while let Some(event) = self.outbox.pop_front() {
            match self.replicator.try_send(event) {
                Ok(()) => {}
                Err(SendError::Full(event)) => {
                    self.outbox.push_front(event);
                    break;
                }
                Err(SendError::Closed(_)) => {
                    // The Replicator stopped: it stops this link too.
                    self.outbox.clear();
                    break;
                }
            }
        }
    }
}
