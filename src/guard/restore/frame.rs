//! Raw SSE event framing for the stream filters: the byte stream cut into whole events, each
//! kept as its exact bytes (so an event nobody changes goes on byte-identical), pieces split
//! anywhere, `\n`, `\r\n` and `\r` line endings (a `\r\n` split between pieces included).
//!
//! Invariants: every byte pushed comes out exactly once, in order, as part of one event (or of
//! the tail handed back at the end); a partial event is bounded by `MAX_EVENT` (beyond it the
//! caller gives up framing rather than buffer without limit); scanning is linear in the bytes
//! pushed, however small the pieces.

use std::borrow::Cow;

use bytes::Bytes;

/// Largest partial event held while waiting for its end.
pub const MAX_EVENT: usize = 16 * 1024 * 1024;

/// The framer's state between pieces: the partial event, and how far it was scanned.
#[derive(Debug, Default)]
pub struct Framer {
    carry: Vec<u8>,
    /// Offset in `carry` scanning resumes at.
    scan: usize,
    /// Offset in `carry` of the current line's start.
    line_start: usize,
}

/// The partial event grew past `MAX_EVENT`: the caller gets its bytes back.
#[derive(Debug)]
pub struct TooLarge(pub Bytes);

impl Framer {
    /// Adds `piece`; calls `on_event` with each complete event (as a slice of one `Bytes`, with
    /// its blank line). `at_end`: no more bytes follow, so a trailing `\r` ends its line.
    pub fn push(
        &mut self,
        piece: Bytes,
        at_end: bool,
        on_event: &mut dyn FnMut(&Bytes, usize, usize),
    ) -> Result<(), TooLarge> {
        let data = if self.carry.is_empty() {
            piece
        } else {
            let mut v = std::mem::take(&mut self.carry);
            v.extend_from_slice(&piece);
            Bytes::from(v)
        };
        let b = &data[..];
        let (mut pos, mut line_start, mut ev_start) = (self.scan, self.line_start, 0usize);
        while let Some(off) = memchr::memchr2(b'\n', b'\r', &b[pos..]) {
            let p = pos + off;
            let term_end = if b[p] == b'\r' {
                match b.get(p + 1) {
                    Some(b'\n') => p + 2,
                    Some(_) => p + 1,
                    None if at_end => p + 1,
                    None => break,
                }
            } else {
                p + 1
            };
            if p == line_start {
                on_event(&data, ev_start, term_end);
                ev_start = term_end;
            }
            line_start = term_end;
            pos = term_end;
        }
        if pos < b.len() && !b[pos..].contains(&b'\r') {
            pos = b.len();
        }
        if b.len() - ev_start > MAX_EVENT {
            *self = Framer::default();
            return Err(TooLarge(data.slice(ev_start..)));
        }
        self.carry = b[ev_start..].to_vec();
        self.scan = pos - ev_start;
        self.line_start = line_start - ev_start;
        Ok(())
    }

    /// The bytes of an unfinished event, handed back at the end (the framer is then empty).
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.carry);
        *self = Framer::default();
        rest
    }
}

/// Lines of an event, without their endings.
fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr2(b'\n', b'\r', rest) {
            Some(p) => {
                let skip = if rest[p] == b'\r' && rest.get(p + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                (&rest[..p], &rest[p + skip..])
            }
            None => (rest, &b""[..]),
        };
        rest = next;
        Some(line)
    })
}

fn field(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b':', line) {
        Some(i) => {
            let v = &line[i + 1..];
            (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
        }
        None => (line, &b""[..]),
    }
}

/// An event's data (`data:` lines joined with `\n`), None when it has none or it is not UTF-8.
pub fn data(raw: &[u8]) -> Option<Cow<'_, str>> {
    let mut found: Option<Cow<'_, [u8]>> = None;
    for line in lines(raw) {
        let (name, value) = field(line);
        if name != b"data" {
            continue;
        }
        found = Some(match found {
            None => Cow::Borrowed(value),
            Some(prev) => {
                let mut v = prev.into_owned();
                v.push(b'\n');
                v.extend_from_slice(value);
                Cow::Owned(v)
            }
        });
    }
    match found? {
        Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
        Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
    }
}

/// The event `raw` with its data replaced by `data` (one line: JSON has no raw newline), its
/// other lines (event name, id, comments) kept in order; `raw` without data (or empty) gets
/// the data line last.
pub fn with_data(raw: &[u8], data: &str, out: &mut Vec<u8>) {
    let mut written = false;
    for line in lines(raw) {
        if line.is_empty() {
            continue;
        }
        if field(line).0 == b"data" {
            if !written {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(data.as_bytes());
                out.push(b'\n');
                written = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    if !written {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(data.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pieces: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut f = Framer::default();
        let mut events = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let at_end = i + 1 == pieces.len();
            f.push(Bytes::copy_from_slice(p), at_end, &mut |d, s, e| {
                events.push(d[s..e].to_vec())
            })
            .unwrap();
        }
        (events, f.take_rest())
    }

    const STREAM: &[u8] =
        b": hi\r\n\r\nevent: a\r\ndata: {\"x\":1}\r\n\r\ndata: l1\ndata: l2\n\ndata: r\r\rdata: [DONE]\n\ndata: tail";

    #[test]
    fn frames_events_with_their_bytes_at_every_split() {
        let (whole, rest) = frame(&[STREAM]);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole.concat(), &STREAM[..STREAM.len() - 10]);
        assert_eq!(rest, b"data: tail");
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let got = frame(&[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]);
                assert_eq!(got, (whole.clone(), rest.clone()), "split {i}/{j}");
            }
        }
    }

    #[test]
    fn a_cr_at_the_end_of_a_piece_waits_for_the_next() {
        let (ev, rest) = frame(&[b"data: a\r\n\r", b"\ndata: b\n\n"]);
        assert_eq!(ev, [b"data: a\r\n\r\n".to_vec(), b"data: b\n\n".to_vec()]);
        assert!(rest.is_empty());
    }

    #[test]
    fn data_and_rewrite() {
        assert_eq!(data(b"event: e\r\ndata: a\r\ndata:b\r\n\r\n").as_deref(), Some("a\nb"));
        assert_eq!(data(b": comment\n\n"), None);
        let mut out = Vec::new();
        with_data(b"event: e\r\nid: 1\r\ndata: a\r\ndata: b\r\n\r\n", "{}", &mut out);
        assert_eq!(out, b"event: e\nid: 1\ndata: {}\n\n");
    }

    #[test]
    fn oversized_partial_event_is_handed_back() {
        let mut f = Framer::default();
        let big = Bytes::from(vec![b'x'; MAX_EVENT + 1]);
        let r = f.push(big, false, &mut |_, _, _| {});
        assert!(matches!(r, Err(TooLarge(b)) if b.len() == MAX_EVENT + 1));
    }
}
