//! The Replicator as its links' supervisor: it starts one `FollowerLink`
//! per peer, tells the disconnected ones to retry ([`WakeLinks`]) and the
//! connected ones to probe ([`ProbeLinks`]), reports each follower's status
//! from its link's stats ([`GetReplicationStatus`]), and, for tests, panics
//! a link (`PanicLink`).
//!
//! A child module of `replicator.rs` (it sees the Replicator's private
//! state), separate so that `replicator.rs` holds the log writing, the
//! engine's actions and the proposals, and this file the links around it.

use std::sync::Arc;

use actix::prelude::*;
use metawal::NodeId;

#[cfg(feature = "fault-injection")]
use super::PanicLink;
use super::{GetReplicationStatus, LinkSlot, ProbeLinks, ReplicationStatus, Replicator, WakeLinks};
use crate::leader::link::{FollowerLink, LinkInit, LinkStats};
use crate::status::FollowerStatus;

impl Replicator {
    pub(super) fn start_link(&mut self, peer: NodeId, restarts: u64, ctx: &mut Context<Self>) {
        let Some(&addr) = self.peers.get(&peer) else {
            return;
        };
        let stats = Arc::new(LinkStats::default());
        let link = FollowerLink::new(LinkInit {
            node: self.node,
            peer,
            peer_addr: addr,
            epoch: self.epoch,
            keys: self.keys.clone(),
            config: self.config.clone(),
            log: self.log.clone(),
            disk: self.disk.clone(),
            replicator: ctx.address().recipient(),
            progress: self.progress_rx.clone(),
            stats: stats.clone(),
            shared: self.shared.clone(),
        });
        let addr = link.start();
        self.links.insert(
            peer,
            LinkSlot {
                addr,
                stats,
                restarts,
            },
        );
    }
}

impl Handler<GetReplicationStatus> for Replicator {
    type Result = MessageResult<GetReplicationStatus>;

    fn handle(&mut self, _msg: GetReplicationStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let tracker = self.engine.tracker();
        let log_end = tracker.log_end();
        let followers = self
            .links
            .iter()
            .map(|(&peer, slot)| {
                let acked = slot.stats.acked();
                FollowerStatus {
                    peer,
                    connected: slot.stats.connected(),
                    state: slot.stats.state(),
                    acked_offset: acked,
                    lag: log_end.saturating_sub(acked),
                    in_isr: tracker.in_isr(peer),
                    inflight_bytes: slot.stats.inflight_bytes(),
                    reconnects: slot.stats.reconnects(),
                    snapshots_sent: slot.stats.snapshots_sent(),
                    link_restarts: slot.restarts,
                    connection: slot.stats.connection(),
                }
            })
            .collect();
        MessageResult(ReplicationStatus {
            log_end,
            durable: tracker.local_durable(),
            commit: tracker.commit(),
            followers,
        })
    }
}

impl Handler<WakeLinks> for Replicator {
    type Result = ();

    fn handle(&mut self, _msg: WakeLinks, _ctx: &mut Context<Self>) {
        for slot in self.links.values() {
            if !slot.stats.connected() {
                let _ = slot.addr.try_send(crate::leader::link::WakeLink);
            }
        }
    }
}

impl Handler<ProbeLinks> for Replicator {
    type Result = ();

    fn handle(&mut self, _msg: ProbeLinks, _ctx: &mut Context<Self>) {
        for slot in self.links.values() {
            if slot.stats.connected() {
                // Best effort: a link whose mailbox is full sends its
                // periodic probe within a heartbeat interval anyway.
                let _ = slot.addr.try_send(crate::leader::link::ProbeLink);
            }
        }
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<PanicLink> for Replicator {
    type Result = bool;

    fn handle(&mut self, msg: PanicLink, _ctx: &mut Context<Self>) -> bool {
        match self.links.get(&msg.0) {
            Some(slot) => slot.addr.try_send(crate::leader::link::InjectPanic).is_ok(),
            None => false,
        }
    }
}
