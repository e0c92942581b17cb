//! The change stream (`GET /v1/watch`) as an iterator of typed events.
//!
//! Why a module of its own: the stream is long-lived and read line by
//! line, so it needs what a request/response does not — a bound on the
//! line length (a broken or hostile server cannot make the client buffer
//! without limit), the API's events (`entry`, `cutoff`, `error`) typed, and
//! where to resume. Reconnecting is the caller's policy: every event that
//! ends a stream says where to resume from.

use std::io::{BufRead, BufReader, Read};

use serde_json::Value;

use crate::sse::{SseEvent, SseParser};

/// Longest SSE line accepted (entries are at most 64 KiB records; their
/// JSON is larger but far below this).
pub const MAX_SSE_LINE: u64 = 16 << 20;

/// One committed entry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChangeEntry {
    /// Its offset (resume from `offset + 1`).
    pub offset: u64,
    /// Its epoch.
    pub epoch: u64,
    /// The command as the server sent it (the serde form of the entry's
    /// command, `LeaderChange` included).
    pub command: Value,
    /// The event's data, unchanged.
    pub data: String,
}

/// Why the server ended a stream (`cutoff` or `error`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StreamEnd {
    /// Where to resume, if the server said.
    pub resume_from: Option<u64>,
    /// The server's `message` or `reason` (or the whole data).
    pub why: String,
    /// The event's data, unchanged.
    pub data: String,
}

/// One event of the change stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// A committed entry.
    Entry(ChangeEntry),
    /// The reader did not keep up and was cut off; the stream ends.
    Cutoff(StreamEnd),
    /// The server failed; the stream ends.
    Error(StreamEnd),
    /// Another event (ignored by the API's clients so far).
    Other(SseEvent),
}

/// Why a stream stopped without an event saying so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The server closed it.
    #[error("the stream from {url} ended")]
    Ended {
        /// The stream's URL.
        url: String,
    },
    /// Reading failed (or timed out).
    #[error("the stream from {url} failed: {source}")]
    Failed {
        /// The stream's URL.
        url: String,
        /// The read error.
        source: std::io::Error,
    },
    /// A line over [`MAX_SSE_LINE`] bytes.
    #[error("the stream from {url} sent a line over {max} bytes")]
    LineTooLong {
        /// The stream's URL.
        url: String,
        /// The limit.
        max: u64,
    },
    /// An `entry` event without offset, epoch and command.
    #[error("{url} sent an entry this client cannot read: {data}")]
    BadEntry {
        /// The stream's URL.
        url: String,
        /// The event's data.
        data: String,
    },
}

/// An open change stream: an iterator of events that ends after the first
/// error (or the event that ends the stream).
pub struct ChangeStream {
    url: String,
    endpoint: usize,
    applied: Option<u64>,
    reader: BufReader<Box<dyn Read + Send + Sync + 'static>>,
    parser: SseParser,
    max_line: u64,
    done: bool,
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ChangeStream {
    /// The stream of `response`, opened at endpoint index `endpoint`.
    pub(crate) fn new(response: ureq::Response, endpoint: usize) -> ChangeStream {
        let applied = response
            .header("X-Metawal-Applied")
            .and_then(|a| a.trim().parse::<u64>().ok());
        ChangeStream {
            url: response.get_url().to_string(),
            endpoint,
            applied,
            reader: BufReader::new(response.into_reader()),
            parser: SseParser::new(),
            max_line: MAX_SSE_LINE,
            done: false,
        }
    }

    /// The URL that serves the stream.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The index of the endpoint the stream was opened at.
    pub fn endpoint(&self) -> usize {
        self.endpoint
    }

    /// The node's applied offset when it answered (`X-Metawal-Applied`):
    /// a stream opened without `from` starts after it, at most there.
    pub fn applied(&self) -> Option<u64> {
        self.applied
    }

    /// The next event, reading lines until one ends.
    fn read_event(&mut self) -> Result<WatchEvent, StreamError> {
        let mut line = String::new();
        loop {
            line.clear();
            let url = || self.url.clone();
            match (&mut self.reader)
                .take(self.max_line + 1)
                .read_line(&mut line)
            {
                Ok(0) => return Err(StreamError::Ended { url: url() }),
                Ok(n) if n as u64 > self.max_line => {
                    return Err(StreamError::LineTooLong {
                        url: url(),
                        max: self.max_line,
                    })
                }
                Ok(_) => {}
                Err(source) => return Err(StreamError::Failed { url: url(), source }),
            }
            if let Some(ev) = self.parser.feed(&line) {
                return typed(ev, &self.url);
            }
        }
    }
}

/// The API's meaning of one event.
fn typed(ev: SseEvent, url: &str) -> Result<WatchEvent, StreamError> {
    let data: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
    let end = |data: &Value, raw: String| StreamEnd {
        resume_from: data.get("resume_from").and_then(Value::as_u64),
        why: data
            .get("message")
            .or_else(|| data.get("reason"))
            .map(|m| match m {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| raw.clone()),
        data: raw,
    };
    match ev.event.as_str() {
        "entry" => {
            let fields = (
                data.get("offset").and_then(Value::as_u64),
                data.get("epoch").and_then(Value::as_u64),
                data.get("command"),
            );
            let (Some(offset), Some(epoch), Some(command)) = fields else {
                return Err(StreamError::BadEntry {
                    url: url.to_string(),
                    data: ev.data,
                });
            };
            Ok(WatchEvent::Entry(ChangeEntry {
                offset,
                epoch,
                command: command.clone(),
                data: ev.data,
            }))
        }
        "cutoff" => Ok(WatchEvent::Cutoff(end(&data, ev.data))),
        "error" => Ok(WatchEvent::Error(end(&data, ev.data))),
        _ => Ok(WatchEvent::Other(ev)),
    }
}

impl Iterator for ChangeStream {
    type Item = Result<WatchEvent, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.read_event();
        self.done = matches!(
            item,
            Err(_) | Ok(WatchEvent::Cutoff(_) | WatchEvent::Error(_))
        );
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(data: &str) -> SseEvent {
        SseEvent {
            event: "entry".into(),
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn entries_are_typed_and_incomplete_ones_refused() {
        let data = r#"{"offset":2,"epoch":1,"command":{"DeleteTopic":{"name":"x"}}}"#;
        let Ok(WatchEvent::Entry(e)) = typed(entry(data), "u") else {
            panic!("not an entry")
        };
        assert_eq!((e.offset, e.epoch), (2, 1));
        assert_eq!(e.command.to_string(), r#"{"DeleteTopic":{"name":"x"}}"#);
        assert_eq!(e.data, data);
        assert!(matches!(
            typed(entry(r#"{"offset":2}"#), "u"),
            Err(StreamError::BadEntry { .. })
        ));
        let cutoff = SseEvent {
            event: "cutoff".into(),
            data: r#"{"reason":"slow","resume_from":7}"#.into(),
            id: None,
        };
        let Ok(WatchEvent::Cutoff(end)) = typed(cutoff, "u") else {
            panic!("not a cutoff")
        };
        assert_eq!((end.resume_from, end.why.as_str()), (Some(7), "slow"));
    }
}
