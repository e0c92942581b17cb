//! The store engine's two bounded-retry rules, pure: when to take a
//! snapshot ([`SnapshotPolicy`]) and how long to retry failed reads of
//! committed entries ([`ReadRetry`]). Separate from [`super::store`],
//! which applies them, so they are tested on their own.

/// Most consecutive failed reads of committed entries from the WAL before
/// the node fail-stops (retried every heartbeat interval until then).
pub const MAX_READ_FAILURES: u32 = 10;

/// When to snapshot the applied state.
///
/// Every `every` applied entries, one snapshot at a time. A failed snapshot
/// is not retried on the next apply pass (each attempt clones the whole
/// state): the next try waits for another `every` entries.
#[derive(Debug, Clone)]
pub struct SnapshotPolicy {
    every: u64,
    /// Offset of the last snapshot written or installed.
    last: u64,
    /// The next attempt is due once `applied` reaches this.
    next_at: u64,
    in_flight: bool,
    failures: u64,
}

impl SnapshotPolicy {
    /// A policy snapshotting every `every` entries, the last snapshot (or
    /// the recovered state) being at `last`.
    pub fn new(every: u64, last: u64) -> SnapshotPolicy {
        let every = every.max(1);
        SnapshotPolicy {
            every,
            last,
            next_at: last.saturating_add(every),
            in_flight: false,
            failures: 0,
        }
    }

    /// With `applied` entries applied, take a snapshot now? `true` means
    /// one is started: report [`SnapshotPolicy::on_written`] or
    /// [`SnapshotPolicy::on_failed`].
    pub fn maybe_start(&mut self, applied: u64) -> bool {
        if self.in_flight || applied < self.next_at {
            return false;
        }
        self.in_flight = true;
        true
    }

    /// The snapshot at `offset` is on disk.
    pub fn on_written(&mut self, offset: u64) {
        self.in_flight = false;
        self.last = self.last.max(offset);
        self.next_at = self.last.saturating_add(self.every);
    }

    /// The snapshot at `offset` failed: try again after another interval.
    pub fn on_failed(&mut self, offset: u64) {
        self.in_flight = false;
        self.failures += 1;
        self.next_at = offset.saturating_add(self.every);
    }

    /// A snapshot from the leader at `offset` replaced the state.
    pub fn on_installed(&mut self, offset: u64) {
        self.last = self.last.max(offset);
        self.next_at = self.next_at.max(self.last.saturating_add(self.every));
    }

    /// Offset of the last snapshot.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Failed snapshots so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

/// What to do after a failed read of committed entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadVerdict {
    /// Retry after a pause.
    Retry,
    /// Give up: the node cannot apply its committed log; fail-stop.
    FailStop,
}

/// Bounded retries of reads of committed entries (a transient disk-thread
/// hiccup is retried; a persistent failure stops the node instead of
/// leaving it silently behind forever).
#[derive(Debug, Clone, Default)]
pub struct ReadRetry {
    failures: u32,
}

impl ReadRetry {
    /// A read failed.
    pub fn on_failed(&mut self) -> ReadVerdict {
        self.failures += 1;
        if self.failures >= MAX_READ_FAILURES {
            ReadVerdict::FailStop
        } else {
            ReadVerdict::Retry
        }
    }

    /// A read succeeded.
    pub fn on_ok(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_every_interval_one_at_a_time() {
        let mut p = SnapshotPolicy::new(100, 0);
        assert!(!p.maybe_start(99));
        assert!(p.maybe_start(100));
        assert!(!p.maybe_start(150), "one at a time");
        p.on_written(100);
        assert!(!p.maybe_start(199));
        assert!(p.maybe_start(200));
    }

    #[test]
    fn a_failed_snapshot_waits_another_interval() {
        let mut p = SnapshotPolicy::new(100, 0);
        assert!(p.maybe_start(100));
        p.on_failed(100);
        assert!(!p.maybe_start(101), "not retried on the next apply pass");
        assert!(!p.maybe_start(199));
        assert!(p.maybe_start(200));
        assert_eq!(p.failures(), 1);
        p.on_written(200);
        assert_eq!(p.last(), 200);
    }

    #[test]
    fn an_installed_snapshot_restarts_the_interval() {
        let mut p = SnapshotPolicy::new(100, 0);
        p.on_installed(550);
        assert!(!p.maybe_start(600));
        assert!(p.maybe_start(650));
    }

    #[test]
    fn read_failures_are_retried_then_fail_stop() {
        let mut r = ReadRetry::default();
        for _ in 1..MAX_READ_FAILURES {
            assert_eq!(r.on_failed(), ReadVerdict::Retry);
        }
        assert_eq!(r.on_failed(), ReadVerdict::FailStop);
        r.on_ok();
        assert_eq!(r.on_failed(), ReadVerdict::Retry);
    }
}
