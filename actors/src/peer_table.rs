//! Every peer's connection as this node last saw it ([`PeerTable`],
//! [`PeerStatus`]) and the rate limit on the WARN lines about it
//! ([`WarnLimiter`]).
//!
//! Separate from `status.rs` (the node's own status) and from
//! `peer_connection.rs` (the words for one observation): this is where the
//! observations are kept, expired and rate-limited.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metawal::NodeId;

use crate::peer_connection::{HandshakeRefusal, PeerChannel, PeerConnection};

/// At most one WARN line per peer and reason in this interval about
/// failing to connect to it or to complete a handshake with it; the next
/// one says how many attempts failed for that reason in between
/// (`suppressed`). A new reason is logged at once.
pub const PEER_WARN_INTERVAL: Duration = Duration::from_secs(30);

/// How long an observation of a peer connection that no live connection
/// backs (an election connection, a refused inbound handshake, a link
/// that stopped) stays in [`crate::NodeMetrics::peer_connections`]: election
/// connections are made only while an election runs, so without new
/// evidence the last one says little after this.
pub const PEER_STATE_TTL: Duration = Duration::from_secs(60);
/// One peer's connection as this node last saw it (`/v1/status` `peers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub peer: NodeId,
    /// The address the observation was made on, if known (the configured
    /// address for outbound connections, the remote one for inbound).
    pub addr: Option<SocketAddr>,
    /// How the connection stands.
    pub connection: PeerConnection,
    /// Which connection showed it.
    pub via: PeerChannel,
    /// How long ago.
    pub since: Duration,
    /// Attempts that failed in a row up to now (0 once one succeeds).
    pub failures: u64,
}

/// Rate limit for the WARN lines about one peer (see
/// [`PEER_WARN_INTERVAL`]): one per reason per interval, so that a new
/// reason (unreachable, then a refused handshake) is never hidden behind
/// an old one. Pure: the clock is passed in.
#[derive(Debug, Clone)]
pub struct WarnLimiter {
    interval: Duration,
    /// Per reason: when it was last logged, and the failures not logged
    /// since.
    last: BTreeMap<&'static str, (Instant, u64)>,
}

impl WarnLimiter {
    /// A limiter allowing one warning per reason per `interval`.
    pub fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter {
            interval,
            last: BTreeMap::new(),
        }
    }

    /// A failure for `reason` at `now`: `Some(n)` if it is to be logged,
    /// `n` being the failures for that reason not logged since its last
    /// warning; `None` if it is suppressed.
    pub fn failure(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(reason) {
            Some((last, suppressed)) if now.saturating_duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }

    /// The connection works again: the next failure is logged at once.
    /// Returns the failures suppressed since the last warnings.
    pub fn success(&mut self) -> u64 {
        std::mem::take(&mut self.last)
            .into_values()
            .map(|(_, n)| n)
            .sum()
    }
}

struct PeerEntry {
    observed: Option<Observed>,
    warn: WarnLimiter,
    failures: u64,
}

struct Observed {
    addr: Option<SocketAddr>,
    connection: PeerConnection,
    via: PeerChannel,
    at: Instant,
    /// A live connection (or a link that keeps retrying) backs it: it does
    /// not expire.
    live: bool,
}

/// What recording one observation decided about logging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noted {
    /// A failure to log at WARN, with the failures suppressed before it.
    Warn { suppressed: u64 },
    /// A failure not to log (rate limit).
    Suppressed,
    /// A success after `failures` failed attempts.
    Restored { failures: u64 },
    /// Nothing to log.
    Quiet,
}

/// Every peer's connection as this node last saw it, and the WARN rate
/// limit per peer. Only peers registered (the configured voters) are kept,
/// so an unauthenticated connection claiming any id cannot grow it.
#[derive(Default)]
pub struct PeerTable {
    peers: Mutex<BTreeMap<NodeId, PeerEntry>>,
}

impl std::fmt::Debug for PeerTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTable")
    }
}

impl PeerTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, PeerEntry>> {
        // Every update is whole under the lock: a panic elsewhere leaves
        // the map usable.
        match self.peers.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        }
    }

    /// Make `peer` known (a configured voter).
    pub(crate) fn register(&self, peer: NodeId) {
        self.lock().entry(peer).or_insert_with(|| PeerEntry {
            observed: None,
            warn: WarnLimiter::new(PEER_WARN_INTERVAL),
            failures: 0,
        });
    }

    /// Record what `via` showed about `peer` at `now`. Outbound channels
    /// register the peer (their peers are configured ones); an inbound
    /// observation of an unregistered id is dropped.
    pub(crate) fn note(
        &self,
        peer: NodeId,
        via: PeerChannel,
        addr: Option<SocketAddr>,
        connection: PeerConnection,
        live: bool,
        now: Instant,
    ) -> Noted {
        if via != PeerChannel::Inbound {
            self.register(peer);
        }
        let mut peers = self.lock();
        let Some(entry) = peers.get_mut(&peer) else {
            return Noted::Quiet;
        };
        let noted = if let Some(reason) = connection.reason() {
            entry.failures += 1;
            // A peer that ends a handshake once is usually shutting down or
            // handing over (a planned close, seen under load): debug. If it
            // happens again in a row, it refuses us: WARN as any refusal.
            let first_close = reason == HandshakeRefusal::Closed.as_str() && entry.failures == 1;
            if first_close {
                Noted::Suppressed
            } else {
                match entry.warn.failure(reason, now) {
                    Some(suppressed) => Noted::Warn { suppressed },
                    None => Noted::Suppressed,
                }
            }
        } else if connection == PeerConnection::Connected {
            let failures = std::mem::take(&mut entry.failures);
            entry.warn.success();
            if failures > 0 {
                Noted::Restored { failures }
            } else {
                Noted::Quiet
            }
        } else {
            Noted::Quiet
        };
        entry.observed = Some(Observed {
            addr,
            connection,
            via,
            at: now,
            live,
        });
        noted
    }

    /// The connection on `via` that backed `peer`'s observation ended: it
    /// expires from now on (see [`PEER_STATE_TTL`]).
    pub(crate) fn release(&self, peer: NodeId, via: PeerChannel, now: Instant) {
        if let Some(Some(o)) = self.lock().get_mut(&peer).map(|e| e.observed.as_mut()) {
            if o.via == via && o.live {
                o.live = false;
                o.at = now;
            }
        }
    }

    /// Every peer with a current observation, by id.
    pub fn snapshot(&self, now: Instant) -> Vec<PeerStatus> {
        self.lock()
            .iter()
            .filter_map(|(&peer, e)| {
                let o = e.observed.as_ref()?;
                let since = now.saturating_duration_since(o.at);
                if !o.live && since > PEER_STATE_TTL {
                    return None;
                }
                Some(PeerStatus {
                    peer,
                    addr: o.addr,
                    connection: o.connection.clone(),
                    via: o.via,
                    since,
                    failures: e.failures,
                })
            })
            .collect()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer_connection::Unreachable;

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn the_limiter_warns_once_per_interval_and_counts_what_it_suppressed() {
        let t0 = Instant::now();
        let mut l = WarnLimiter::new(T);
        let r = "connection_refused";
        assert_eq!(l.failure(r, t0), Some(0));
        for s in 1..=5 {
            assert_eq!(l.failure(r, t0 + Duration::from_secs(s)), None);
        }
        // Just before the interval is over: still quiet.
        assert_eq!(l.failure(r, t0 + T - Duration::from_millis(1)), None);
        // At the interval: warns, with the six it kept quiet.
        assert_eq!(l.failure(r, t0 + T), Some(6));
        assert_eq!(l.failure(r, t0 + T + Duration::from_secs(1)), None);
        // A new reason is news: logged at once, then limited on its own.
        let s = "secret_mismatch";
        assert_eq!(l.failure(s, t0 + T + Duration::from_secs(1)), Some(0));
        assert_eq!(l.failure(s, t0 + T + Duration::from_secs(2)), None);
        // A success: the next failure warns at once.
        assert_eq!(l.success(), 2);
        assert_eq!(l.failure(r, t0 + T + Duration::from_secs(3)), Some(0));
    }

    fn refused() -> PeerConnection {
        PeerConnection::refused(HandshakeRefusal::SecretMismatch, "proof does not verify")
    }

    #[test]
    fn the_peer_table_rate_limits_per_peer_and_reports_a_restored_connection() {
        let table = PeerTable::default();
        let t0 = Instant::now();
        let note = |peer, c, at| table.note(peer, PeerChannel::Replication, None, c, true, at);
        assert_eq!(note(2, refused(), t0), Noted::Warn { suppressed: 0 });
        // Another peer has its own limit; the election channel shares the
        // peer's.
        assert_eq!(note(3, refused(), t0), Noted::Warn { suppressed: 0 });
        assert_eq!(
            table.note(2, PeerChannel::Election, None, refused(), false, t0),
            Noted::Suppressed
        );
        assert_eq!(note(2, refused(), t0 + T), Noted::Warn { suppressed: 1 });
        assert_eq!(
            note(2, PeerConnection::Connected, t0 + T),
            Noted::Restored { failures: 3 }
        );
        assert_eq!(note(2, PeerConnection::Connected, t0 + T), Noted::Quiet);
        let snap = table.snapshot(t0 + T);
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].peer, 2);
        assert_eq!(snap[0].connection, PeerConnection::Connected);
        assert_eq!(snap[0].failures, 0);
        assert_eq!(snap[1].connection, refused());
        assert_eq!(snap[1].failures, 1);
    }

    /// A peer that closes one handshake is usually stopping (a planned
    /// close): not a warning; a second close in a row is.
    #[test]
    fn one_closed_handshake_is_quiet_a_second_in_a_row_warns() {
        let table = PeerTable::default();
        let t0 = Instant::now();
        let closed = || PeerConnection::refused(HandshakeRefusal::Closed, "peer closed");
        let note = |c| table.note(2, PeerChannel::Election, None, c, false, t0);
        assert_eq!(note(closed()), Noted::Suppressed);
        assert_eq!(note(closed()), Noted::Warn { suppressed: 0 });
        assert_eq!(
            note(PeerConnection::Connected),
            Noted::Restored { failures: 2 }
        );
        assert_eq!(note(closed()), Noted::Suppressed);
        // Any other refusal warns at once.
        assert_eq!(note(refused()), Noted::Warn { suppressed: 0 });
    }

    #[test]
    fn inbound_observations_of_unknown_ids_are_dropped_and_unbacked_ones_expire() {
        let table = PeerTable::default();
        let t0 = Instant::now();
        // An unauthenticated peer claiming id 99: not a configured voter.
        let n = table.note(99, PeerChannel::Inbound, None, refused(), false, t0);
        assert_eq!(n, Noted::Quiet);
        assert!(table.snapshot(t0).is_empty());
        table.register(4);
        table.note(4, PeerChannel::Inbound, None, refused(), false, t0);
        table.note(
            5,
            PeerChannel::Replication,
            None,
            PeerConnection::Connected,
            true,
            t0,
        );
        let later = t0 + PEER_STATE_TTL + Duration::from_secs(1);
        // The live link's observation stays; the inbound one expired.
        let snap = table.snapshot(later);
        assert_eq!(snap.iter().map(|p| p.peer).collect::<Vec<_>>(), vec![5]);
        // Once the link stops, its observation expires too.
        table.release(5, PeerChannel::Replication, later);
        assert_eq!(table.snapshot(later).len(), 1);
        assert!(table
            .snapshot(later + PEER_STATE_TTL + Duration::from_secs(1))
            .is_empty());
    }

    #[test]
    fn a_connection_state_serializes_with_its_reason() {
        let json = serde_json::to_value(refused()).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "state": "handshake_refused",
                "reason": "secret_mismatch",
                "detail": "proof does not verify",
            })
        );
        let json = serde_json::to_value(PeerConnection::Connected).expect("serializes");
        assert_eq!(json, serde_json::json!({ "state": "connected" }));
        let json = serde_json::to_value(PeerConnection::unreachable(
            Unreachable::ConnectionRefused,
            "connect failed",
        ))
        .expect("serializes");
        assert_eq!(json["reason"], "connection_refused");
    }
}
