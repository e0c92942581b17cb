//! The link figures the Replicator reads for status without a message
//! ([`LinkStats`]): atomics the link updates after each step.
//!
//! Separate from `link.rs` (the link actor) because the Replicator and the
//! status read these and nothing else of the link.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use metawal::engine::FollowerLinkEngine;
use metawal::replication::LinkState;

use crate::status::PeerConnection;

/// Link figures the Replicator reads for status without a message.
#[derive(Debug, Default)]
pub struct LinkStats {
    state: AtomicU8,
    connected: AtomicBool,
    acked: AtomicU64,
    inflight_bytes: AtomicUsize,
    reconnects: AtomicU64,
    snapshots_sent: AtomicU64,
    connection: Mutex<PeerConnection>,
}

impl LinkStats {
    pub(super) fn update(&self, e: &FollowerLinkEngine) {
        let p = e.progress();
        let s = match p.state() {
            LinkState::Connecting => 0,
            LinkState::Handshaking => 1,
            LinkState::Probing => 2,
            LinkState::Streaming => 3,
            LinkState::Snapshotting => 4,
        };
        self.state.store(s, Ordering::Relaxed);
        self.connected.store(e.connected(), Ordering::Relaxed);
        self.acked.store(p.acked_offset(), Ordering::Relaxed);
        self.inflight_bytes
            .store(p.inflight_bytes(), Ordering::Relaxed);
        self.reconnects.store(p.reconnects(), Ordering::Relaxed);
        self.snapshots_sent
            .store(e.snapshots_sent(), Ordering::Relaxed);
    }

    /// The link's state.
    pub fn state(&self) -> LinkState {
        match self.state.load(Ordering::Relaxed) {
            1 => LinkState::Handshaking,
            2 => LinkState::Probing,
            3 => LinkState::Streaming,
            4 => LinkState::Snapshotting,
            _ => LinkState::Connecting,
        }
    }

    /// Whether a connection is up (handshake done).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Acked offset.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Bytes in flight.
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes.load(Ordering::Relaxed)
    }

    /// Reconnections.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Snapshots sent.
    pub fn snapshots_sent(&self) -> u64 {
        self.snapshots_sent.load(Ordering::Relaxed)
    }

    /// How the link's connection stands.
    pub fn connection(&self) -> PeerConnection {
        match self.connection.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(super) fn set_connection(&self, c: PeerConnection) {
        match self.connection.lock() {
            Ok(mut g) => *g = c,
            Err(p) => *p.into_inner() = c,
        }
    }
}
