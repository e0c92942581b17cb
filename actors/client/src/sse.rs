//! Server-sent events: the framing of the change stream.
//!
//! Why a module of its own: the parser is pure (lines in, events out), so
//! it is tested without a server, and [`crate::ChangeStream`] only adds I/O
//! and the API's event types on top.

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (default `message`).
    pub event: String,
    /// `data:` lines joined by `\n`.
    pub data: String,
    /// `id:`, if given (it carries over to later events, as the spec says).
    pub id: Option<String>,
}

/// Incremental server-sent-event parser (the WHATWG rules this API uses:
/// `field: value` lines, `:` comments, a blank line ends an event).
#[derive(Debug, Default)]
pub struct SseParser {
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds one line (with or without its line ending); returns an event
    /// when the line ends one.
    pub fn feed(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }

    /// A blank line: the event gathered so far, if any.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        let had = std::mem::replace(&mut self.has_data, false);
        if !had && event.is_empty() {
            return None;
        }
        Some(SseEvent {
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data,
            id: self.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_reads_events() {
        let mut p = SseParser::default();
        let stream = "id: 1\nevent: entry\ndata: {\"offset\":1}\n\n: keep-alive\n\n\
                      event: cutoff\r\ndata: {\"resume_from\":2}\r\n\r\n\
                      data:a\ndata:b\n\n";
        let events: Vec<SseEvent> = stream
            .split_inclusive('\n')
            .filter_map(|l| p.feed(l))
            .collect();
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "entry".into(),
                    data: "{\"offset\":1}".into(),
                    id: Some("1".into())
                },
                SseEvent {
                    event: "cutoff".into(),
                    data: "{\"resume_from\":2}".into(),
                    id: Some("1".into())
                },
                SseEvent {
                    event: "message".into(),
                    data: "a\nb".into(),
                    id: Some("1".into())
                },
            ]
        );
    }
}
