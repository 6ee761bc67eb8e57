//! Incremental Server-Sent Events decoding and encoding (the WHATWG `text/event-stream` rules).
//!
//! The decoder accepts bytes as they arrive from the network, in pieces of any size: events split
//! across chunks, `\n`, `\r\n` and bare `\r` line endings (also a `\r\n` split between chunks),
//! comment and keep-alive lines, multi-line `data:`, and a bound on the size of one event so a
//! broken upstream cannot make the gateway buffer without limit.
//!
//! `eventstream` is the binary counterpart for AWS (`application/vnd.amazon.eventstream`).

pub mod eventstream;

use bytes::{BufMut, BytesMut};

/// One dispatched event. `data` lines are joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event exceeded {0} bytes")]
    TooLarge(usize),
}

/// Incremental decoder. Feed chunks with `push`, then call `finish` at the end of the stream.
#[derive(Debug)]
pub struct SseDecoder {
    /// The current incomplete line.
    line: Vec<u8>,
    /// A `\r` ended the last chunk: a `\n` starting the next one belongs to it.
    pending_cr: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    max_event: usize,
}

pub const DEFAULT_MAX_EVENT: usize = 16 * 1024 * 1024;

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_max_size(DEFAULT_MAX_EVENT)
    }
}

impl SseDecoder {
    pub fn with_max_size(max_event: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            pending_cr: false,
            data: Vec::new(),
            has_data: false,
            event: None,
            id: None,
            max_event,
        }
    }

    /// Decodes `chunk`, calling `on_event` for every complete event.
    pub fn push(&mut self, mut chunk: &[u8], on_event: &mut impl FnMut(SseEvent)) -> Result<(), SseError> {
        if self.pending_cr && !chunk.is_empty() {
            self.pending_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', chunk) {
            let (line_part, rest) = chunk.split_at(pos);
            let is_cr = rest[0] == b'\r';
            chunk = &rest[1..];
            if is_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            if self.line.is_empty() {
                self.process_line(line_part, on_event)?;
            } else {
                self.line.extend_from_slice(line_part);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, on_event)?;
                self.line = line;
                self.line.clear();
            }
        }
        self.line.extend_from_slice(chunk);
        self.check_size(0)
    }

    /// Ends the stream: a final event not followed by a blank line is still dispatched, as most
    /// providers' last event is complete even when the terminating blank line is missing.
    pub fn finish(&mut self, on_event: &mut impl FnMut(SseEvent)) -> Result<(), SseError> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, on_event)?;
        }
        self.process_line(b"", on_event)
    }

    /// Bytes held for an event not yet complete.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len()
    }

    fn check_size(&self, extra: usize) -> Result<(), SseError> {
        if self.line.len() + self.data.len() + extra > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent)) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                if self.data.last() == Some(&b'\n') {
                    self.data.pop();
                }
                let data = String::from_utf8_lossy(&self.data).into_owned();
                on_event(SseEvent {
                    event: self.event.take(),
                    data,
                    id: self.id.clone(),
                });
            }
            self.data.clear();
            self.has_data = false;
            self.event = None;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // comment / keep-alive
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.check_size(value.len() + 1)?;
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => self.id = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {} // `retry` and unknown fields are ignored, as the spec says
        }
        Ok(())
    }
}

/// Appends one event to `out`: an optional `event:` line, one `data:` line per line of `data`,
/// and the blank line that ends the event.
pub fn encode_event(out: &mut BytesMut, event: Option<&str>, data: &str) {
    out.reserve(data.len() + 16);
    if let Some(e) = event {
        out.put_slice(b"event: ");
        out.put_slice(e.as_bytes());
        out.put_u8(b'\n');
    }
    for line in data.split('\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut |e| out.push(e)).unwrap();
        }
        d.finish(&mut |e| out.push(e)).unwrap();
        out
    }

    const STREAM: &[u8] = b": keep-alive\r\n\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: line1\ndata: line2\n\nid: 7\ndata:no-space\r\rdata: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                event: Some("message_start".into()),
                data: "{\"a\":1}".into(),
                id: None,
            },
            SseEvent {
                event: None,
                data: "line1\nline2".into(),
                id: None,
            },
            SseEvent {
                event: None,
                data: "no-space".into(),
                id: Some("7".into()),
            },
            SseEvent {
                event: None,
                data: "[DONE]".into(),
                id: Some("7".into()),
            },
        ]
    }

    #[test]
    fn decodes_mixed_line_endings_comments_and_multiline_data() {
        assert_eq!(decode_all(&[STREAM]), expected());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let got = decode_all(&[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]);
                assert_eq!(got, expected(), "split at {i}/{j}");
            }
        }
    }

    #[test]
    fn final_event_without_blank_line_is_dispatched() {
        assert_eq!(
            decode_all(&[b"data: last"]),
            vec![SseEvent {
                data: "last".into(),
                ..Default::default()
            }]
        );
    }

    #[test]
    fn oversized_event_is_an_error_not_unbounded_memory() {
        let mut d = SseDecoder::with_max_size(64);
        let big = [b'x'; 100];
        let mut sink = |_e: SseEvent| {};
        assert!(d.push(b"data: ", &mut sink).is_ok());
        assert_eq!(d.push(&big, &mut sink), Err(SseError::TooLarge(64)));
        let mut d = SseDecoder::with_max_size(64);
        let r = (0..10).try_for_each(|_| d.push(b"data: 0123456789\n", &mut sink));
        assert_eq!(r, Err(SseError::TooLarge(64)));
    }

    #[test]
    fn encoder_round_trips_through_decoder() {
        let mut out = BytesMut::new();
        encode_event(&mut out, Some("ping"), "a\nb");
        encode_event(&mut out, None, "[DONE]");
        assert_eq!(&out[..], b"event: ping\ndata: a\ndata: b\n\ndata: [DONE]\n\n");
        let got = decode_all(&[&out]);
        assert_eq!(got[0].data, "a\nb");
        assert_eq!(got[1].data, "[DONE]");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_split_invariant(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), cut in 0usize..200) {
            let cut = cut.min(bytes.len());
            let whole = decode_all(&[&bytes]);
            let split = decode_all(&[&bytes[..cut], &bytes[cut..]]);
            proptest::prop_assert_eq!(whole, split);
        }
    }
}
