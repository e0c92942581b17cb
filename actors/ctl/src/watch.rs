//! `metawalctl watch [--from N] [--count N] [--timeout SECS]`: committed
//! entries as they arrive.
//!
//! Why a module of its own: the change stream is the one long-running
//! subcommand. It reconnects after a `cutoff`, an `error` event or a
//! dropped stream from the next offset, with backoff, at most
//! [`MAX_WATCH_RECONNECTS`] times in a row without a new entry; `--timeout`
//! bounds the whole run (a fresh cluster may never have `--count` entries).

use std::fmt::Write as _;
use std::thread::sleep;
use std::time::{Duration, Instant};

use metawal_client::{ChangeStream, Client, ErrorCode, Failure, StreamEnd, WatchEvent};

use crate::cli::{Cli, WatchArgs};
use crate::exit::CtlError;
use crate::output::{emit, note};

/// Most consecutive watch reconnects without receiving an entry.
pub const MAX_WATCH_RECONNECTS: u32 = 10;

/// Where a watch is.
struct Watcher<'a> {
    cli: &'a Cli,
    client: &'a Client,
    args: &'a WatchArgs,
    /// The next offset to ask for (`None`: new entries only).
    next: Option<u64>,
    printed: u64,
    /// Reconnects in a row without a new entry.
    failures: u32,
    /// The endpoint the last stream came from.
    start: usize,
    deadline: Option<Instant>,
}

/// `watch …`
pub fn run(cli: &Cli, client: &Client, args: &WatchArgs) -> Result<(), CtlError> {
    if args.count == Some(0) {
        return Ok(());
    }
    let deadline = args
        .timeout
        .map(|s| Instant::now() + Duration::from_secs(s));
    // Without --from: new entries only. Pin the start to an explicit offset
    // (the answering node's applied offset + 1) so that a reconnect before
    // the first entry cannot skip any; the stream's own `X-Metawal-Applied`
    // is read after the server chose its start, so it is only a fallback.
    let next = match args.from {
        Some(f) => Some(f),
        None => client.node_status().ok().map(|s| s.applied_offset + 1),
    };
    let mut w = Watcher {
        cli,
        client,
        args,
        next,
        printed: 0,
        failures: 0,
        start: 0,
        deadline,
    };
    w.run()
}

impl Watcher<'_> {
    fn run(&mut self) -> Result<(), CtlError> {
        loop {
            let Some(limit) = self.remaining() else {
                return self.timed_out();
            };
            let stream = match self.client.watch_at(self.next, self.start, limit) {
                Ok(s) => s,
                Err(e) => {
                    self.open_failed(e)?;
                    continue;
                }
            };
            let Some(end) = self.drain(stream)? else {
                return Ok(());
            };
            if self.remaining().is_none() {
                return self.timed_out();
            }
            self.failures += 1;
            if self.failures > MAX_WATCH_RECONNECTS {
                return Err(CtlError::new(
                    Failure::Unavailable,
                    format!(
                        "{end}; gave up after {MAX_WATCH_RECONNECTS} reconnects without progress"
                    ),
                ));
            }
            let from = self.next.map_or_else(|| "(new)".into(), |n| n.to_string());
            note!("metawalctl: watch: {end}; reconnecting from offset {from}");
            self.pause();
        }
    }

    /// Time left before `--timeout`: `Some(None)` without one, `None` when
    /// it has passed.
    fn remaining(&self) -> Option<Option<Duration>> {
        match self.deadline {
            None => Some(None),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then_some(Some(left))
            }
        }
    }

    /// Sleeps the backoff, but not past `--timeout`.
    fn pause(&self) {
        let mut wait = backoff(self.failures);
        if let Some(Some(left)) = self.remaining() {
            wait = wait.min(left);
        }
        sleep(wait);
    }

    /// The stream could not be opened: a compacted start ends the watch;
    /// an unavailable cluster is retried once the watch has been running.
    fn open_failed(&mut self, e: metawal_client::Error) -> Result<(), CtlError> {
        if e.code() == Some(&ErrorCode::Compacted) {
            return Err(compacted(e.into(), self.client));
        }
        if self.remaining().is_none() {
            return self.timed_out();
        }
        if e.failure() != Failure::Unavailable || self.failures == 0 {
            return Err(e.into());
        }
        self.failures += 1;
        if self.failures > MAX_WATCH_RECONNECTS {
            return Err(e.into());
        }
        note!("metawalctl: watch: {e} (retrying)");
        self.pause();
        Ok(())
    }

    /// Prints the stream's entries; `None` when `--count` is reached, else
    /// why the stream ended.
    fn drain(&mut self, stream: ChangeStream) -> Result<Option<String>, CtlError> {
        self.start = stream.endpoint();
        if self.next.is_none() {
            // The status above failed: the stream started after the node's
            // applied offset, at most this one.
            self.next = stream.applied().map(|a| a + 1);
        }
        let url = stream.url().to_string();
        for event in stream {
            let entry = match event {
                Ok(WatchEvent::Entry(entry)) => entry,
                Ok(WatchEvent::Cutoff(end)) => return Ok(Some(self.ended(&url, "cutoff", end))),
                Ok(WatchEvent::Error(end)) => return Ok(Some(self.ended(&url, "error", end))),
                Ok(_) => continue,
                Err(e) => return Ok(Some(e.to_string())),
            };
            let text = if self.cli.json {
                entry.data.clone()
            } else {
                watch_line(entry.offset, entry.epoch, &entry.command)
            };
            emit(&text)?;
            self.next = Some(entry.offset + 1);
            self.failures = 0;
            self.printed += 1;
            if Some(self.printed) == self.args.count {
                return Ok(None);
            }
        }
        Ok(Some(format!("the stream from {url} ended")))
    }

    /// The server ended the stream with `event`: resume where it says.
    fn ended(&mut self, url: &str, event: &str, end: StreamEnd) -> String {
        if let Some(r) = end.resume_from {
            self.next = Some(r);
        }
        format!("{url} ended the stream with {event}: {}", end.why)
    }

    /// `--timeout` passed: a normal end without `--count`, exit 6 with it.
    fn timed_out(&self) -> Result<(), CtlError> {
        let secs = self.args.timeout.unwrap_or(0);
        let Some(count) = self.args.count else {
            note!(
                "metawalctl: watch: stopped after --timeout {secs}s ({} entries)",
                self.printed
            );
            return Ok(());
        };
        let mut e = CtlError::new(
            Failure::ReadTimeout,
            format!(
                "watch got {} of --count {count} entries within --timeout {secs}s \
                 (the log may not have that many yet)",
                self.printed
            ),
        );
        e.advice = Some("watch with a lower --count or a longer --timeout");
        Err(e)
    }
}

/// One watch line in table mode: `offset epoch command-json`.
pub fn watch_line(offset: u64, epoch: u64, command: &serde_json::Value) -> String {
    format!("{offset} {epoch} {command}")
}

/// Reconnect delay after `n` failures in a row: 200 ms doubling, at most 5 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_millis((200u64 << n.saturating_sub(1).min(5)).min(5000))
}

/// The 410 `compacted` answer, with what to do.
///
/// The snapshot served by `GET /v1/snapshot` is the node's applied state
/// *now*, which may be past `detail.snapshot_offset`: the watch must resume
/// after the offset of the snapshot actually loaded, so the advice names that
/// offset rather than a number from this answer.
fn compacted(mut e: CtlError, client: &Client) -> CtlError {
    let endpoint = client.endpoints().first().cloned().unwrap_or_default();
    let _ = write!(
        e.message,
        "; to catch up: `curl -s {endpoint}/v1/snapshot` (the whole state at its \
         `offset`), then `metawalctl watch --from <that offset + 1>`"
    );
    e.failure = Failure::Refused;
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines() {
        let command = serde_json::json!({"DeleteTopic":{"name":"x"}});
        assert_eq!(
            watch_line(2, 1, &command),
            r#"2 1 {"DeleteTopic":{"name":"x"}}"#
        );
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(30), Duration::from_millis(5000));
    }
}
