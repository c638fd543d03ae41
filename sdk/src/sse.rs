//! Server-sent events: a `text/event-stream` body split into events as its
//! bytes arrive, for [`http::Request::send_streaming`](crate::http::Request::send_streaming).
//!
//! ```
//! let mut stream = hearth_sdk::sse::EventStream::default();
//! let mut events = stream.push(b"event: tick\ndata: {\"n\":1}\n\nda");
//! events.extend(stream.push(b"ta: 2\n"));
//! events.extend(stream.finish());
//! assert_eq!(events[0].event, "tick");
//! assert_eq!(events[0].data, "{\"n\":1}");
//! assert_eq!(events[1].event, "");
//! assert_eq!(events[1].data, "2");
//! ```

/// One event: its `event:` name (empty when unnamed) and its `data:`
/// lines joined with newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; empty for an unnamed (`message`) event.
    pub event: String,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// An event stream being read; feed it chunks with [`EventStream::push`].
///
/// Follows the HTML standard's parsing: lines end with LF, CRLF or CR,
/// `:` lines are comments, an event is dispatched at a blank line when it
/// has data, and fields other than `event` and `data` (`id`, `retry`) are
/// ignored. Bytes are kept until their line ends, so a character split
/// across chunks arrives whole.
#[derive(Debug, Default)]
pub struct EventStream {
    pending: Vec<u8>,
    event: String,
    data: Option<String>,
    /// The last byte was a CR: an LF right after it ends no other line.
    after_cr: bool,
}

impl EventStream {
    /// The events that `chunk` completes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        for &byte in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                // The LF of a CRLF: that line already ended.
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.pending);
                    if let Some(event) = self.line(&String::from_utf8_lossy(&line)) {
                        out.push(event);
                    }
                }
                _ => self.pending.push(byte),
            }
        }
        out
    }

    /// The event a stream cut before its final blank line leaves, for a
    /// reader that wants it (the HTML standard discards it).
    pub fn finish(&mut self) -> Option<Event> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            if let Some(event) = self.line(&String::from_utf8_lossy(&line)) {
                return Some(event);
            }
        }
        self.line("")
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            return self.data.take().map(|data| Event { event, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut stream = EventStream::default();
        let mut out: Vec<Event> = chunks.iter().flat_map(|c| stream.push(c)).collect();
        out.extend(stream.finish());
        out
    }

    #[test]
    fn events_are_split_at_blank_lines_whatever_the_chunks() {
        let body: &[u8] =
            b"event: message\nid: 1\ndata: {\"id\":3}\n\n: keep-alive\n\ndata: a\ndata: b\n\n";
        let whole = all(&[body]);
        assert_eq!(
            whole,
            vec![
                Event {
                    event: "message".into(),
                    data: "{\"id\":3}".into()
                },
                Event {
                    event: String::new(),
                    data: "a\nb".into()
                },
            ]
        );
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(all(&bytes), whole);
    }

    #[test]
    fn crlf_and_cr_end_lines_too() {
        let events = all(&[b"data: x\r", b"\n\r\ndata: y\r\r"]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, "x");
        assert_eq!(events[1].data, "y");
    }

    #[test]
    fn a_character_split_across_chunks_arrives_whole() {
        let text = "data: é\n\n".as_bytes();
        let events = all(&[&text[..7], &text[7..]]);
        assert_eq!(events[0].data, "é");
    }

    #[test]
    fn a_blank_line_without_data_is_no_event_and_a_trailing_event_is_kept() {
        assert!(all(&[b"event: x\n\n\n"]).is_empty());
        assert_eq!(all(&[b"data: last"])[0].data, "last");
        assert_eq!(all(&[b"data\n\n"])[0].data, "");
    }
}
