//! Reconnect delays: exponential from `min` to `max`, with "equal jitter"
//! (half the delay fixed, half random) so that links restarted together do
//! not reconnect in lockstep. The randomness is an argument, not drawn here.

use std::time::Duration;

/// Exponential backoff state of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays from `min` doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt; `jitter` in `[0, 1]` picks where in
    /// the upper half of the current step the delay falls.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        let step = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        step / 2 + step.mul_f64(jitter) / 2
    }

    /// Back to the shortest delay. Call after the first ack on a new
    /// connection, not on connect: a peer that accepts and closes at once
    /// would otherwise cause a tight reconnect loop.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        assert_eq!(b.next_delay(1.0), Duration::from_millis(50));
        assert_eq!(b.next_delay(1.0), Duration::from_millis(100));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(100));
        for _ in 0..40 {
            assert!(b.next_delay(1.0) <= Duration::from_secs(5));
        }
        assert_eq!(b.next_delay(1.0), Duration::from_secs(5));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(2500));
        b.reset();
        assert_eq!(b.next_delay(1.0), Duration::from_millis(50));
        assert_eq!(b.next_delay(f64::NAN), Duration::from_millis(50));
    }
}
