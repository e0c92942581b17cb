//! Tunables of replication and storage, with the defaults of the design.
//!
//! [`ReplicationConfig::default`] gives: heartbeat 100 ms, election timeout
//! 1 s, session timeout 2 s,
//! replica lag 5 s, `min_insync_replicas` 2, request timeout 5 s, backoff
//! 50 ms → 5 s, window 4 MiB, batch 256 KiB, max frame 16 MiB, snapshot every
//! 100 000 entries.

use std::time::Duration;

/// Errors in a configuration, found by [`ReplicationConfig::validate`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value is outside the range it must be in.
    #[error("config `{field}` is invalid: {reason}")]
    Invalid {
        /// The field name.
        field: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
}

/// Replication and storage tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// How often the leader sends a heartbeat on an idle link.
    pub heartbeat_interval: Duration,
    /// `T` of leader election: a follower that has not heard its leader for
    /// a random time in `[T, 2T)` stands for election; a leader that has not
    /// heard from a majority for `T` steps down.
    pub election_timeout: Duration,
    /// A peer silent this long is considered gone; the link reconnects.
    pub session_timeout: Duration,
    /// A follower that has not caught up with the leader's log end for this
    /// long leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// `acks=all` needs at least this many ISR members (leader included).
    /// Capped at the cluster size.
    pub min_insync_replicas: usize,
    /// A proposal that is not resolved in this time fails with a timeout
    /// (answered on the leader's first tick after it: up to
    /// `heartbeat_interval / 2` later).
    pub request_timeout: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Most unacknowledged bytes in flight on one link.
    pub window_bytes: usize,
    /// Most unacknowledged entries in flight on one link.
    pub window_entries: usize,
    /// Largest `Append` frame payload the leader builds.
    pub batch_bytes: usize,
    /// Largest frame either side accepts; longer lengths are refused before
    /// any allocation.
    pub max_frame_bytes: usize,
    /// Take a snapshot (and drop older WAL segments) every this many entries.
    pub snapshot_every: u64,
    /// Roll a WAL segment once it reaches this size.
    pub segment_bytes: u64,
    /// Bytes of recent records the leader keeps in memory for its links.
    pub tail_cache_bytes: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_secs(1),
            session_timeout: Duration::from_secs(2),
            replica_lag_time_max: Duration::from_secs(5),
            min_insync_replicas: 2,
            request_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            window_bytes: 4 * 1024 * 1024,
            window_entries: 32 * 1024,
            batch_bytes: 256 * 1024,
            max_frame_bytes: 16 * 1024 * 1024,
            snapshot_every: 100_000,
            segment_bytes: 64 * 1024 * 1024,
            tail_cache_bytes: 8 * 1024 * 1024,
        }
    }
}

impl ReplicationConfig {
    /// Check that every value is usable. Returns the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(field: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                field,
                reason: reason.into(),
            })
        }
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat_interval", "must be greater than zero");
        }
        if self.session_timeout <= self.heartbeat_interval {
            return bad(
                "session_timeout",
                format!(
                    "must be longer than heartbeat_interval ({:?})",
                    self.heartbeat_interval
                ),
            );
        }
        if self.election_timeout < 3 * self.heartbeat_interval {
            return bad(
                "election_timeout",
                format!(
                    "must be at least 3 x heartbeat_interval ({:?}), or a live leader looks dead between heartbeats",
                    self.heartbeat_interval
                ),
            );
        }
        if self.replica_lag_time_max.is_zero() {
            return bad("replica_lag_time_max", "must be greater than zero");
        }
        if self.min_insync_replicas == 0 {
            return bad("min_insync_replicas", "must be at least 1");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be greater than zero");
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return bad(
                "backoff_min/backoff_max",
                "need 0 < backoff_min <= backoff_max",
            );
        }
        if self.max_frame_bytes < 1024 {
            return bad("max_frame_bytes", "must be at least 1024");
        }
        if self.batch_bytes == 0 || self.batch_bytes + 1024 > self.max_frame_bytes {
            return bad(
                "batch_bytes",
                "must be non-zero and at least 1 KiB below max_frame_bytes",
            );
        }
        if self.window_bytes < self.batch_bytes {
            return bad("window_bytes", "must be at least batch_bytes");
        }
        if self.window_entries == 0 {
            return bad("window_entries", "must be at least 1");
        }
        if self.snapshot_every == 0 {
            return bad("snapshot_every", "must be at least 1");
        }
        if self.segment_bytes < 4096 {
            return bad("segment_bytes", "must be at least 4096");
        }
        Ok(())
    }

    /// `min_insync_replicas` capped at the cluster size (leader included).
    pub fn effective_min_insync(&self, cluster_size: usize) -> usize {
        self.min_insync_replicas.min(cluster_size.max(1))
    }
}
