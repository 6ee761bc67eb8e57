//! The streaming relay's pure part: upstream body bytes in, client bytes out. Either the bytes
//! pass through unchanged while an observer watches them (same wire format on both sides), or
//! the provider's stream is decoded into canonical chunks and encoded in the client's format.
//! Either way the usage is counted here, the one place that sees the provider's usage fields;
//! what goes to the client then runs through the relay's observers (`api::observe`), of which
//! `UsageStripper` is one.
//! What an observer cannot read of a passed-through stream is counted and logged
//! (`ParseErrors`), never dropped silently.

use bytes::{Bytes, BytesMut};
use prometheus::IntCounterVec;

use crate::api::chat::{ChatChunk, Usage};
use crate::api::client::StreamEncoder;
use crate::api::observe::ResponseObserver;
use crate::providers::{Adapter, ChunkSource, Observer, Rendered, StreamFault, Unreadable, Wire, TEXT_LIMIT};

/// Most bytes of an `Unreadable` detail that reach the log: it may quote model output.
const SAMPLE: usize = 120;

/// Counts the parts of a passed-through stream its observer could not read, by provider
/// (`tollgate_stream_parse_errors_total`), and logs the first of the stream with its offset and
/// its detail cut to `SAMPLE` bytes. The detail is the parser's message, which may quote a piece
/// of the provider's output (never the request or a key): hence the cap, and one line per stream.
pub struct ParseErrors<'a> {
    counter: &'a IntCounterVec,
    provider: &'a str,
    /// Bytes of the stream observed so far.
    seen: u64,
    count: u32,
}

impl<'a> ParseErrors<'a> {
    pub fn new(counter: &'a IntCounterVec, provider: &'a str) -> Self {
        ParseErrors {
            counter,
            provider,
            seen: 0,
            count: 0,
        }
    }

    /// Notes the outcome of observing the next `len` bytes (0 at the end of the stream).
    fn note(&mut self, outcome: Result<(), Unreadable>, len: usize) {
        self.seen += len as u64;
        let Err(e) = outcome else { return };
        self.count += 1;
        self.counter.with_label_values(&[self.provider]).inc();
        if self.count == 1 {
            tracing::warn!(
                provider = self.provider,
                stream_bytes = self.seen,
                detail = sample(&e.detail),
                "could not read part of a relayed stream (the client got it unchanged); its usage may be estimated"
            );
        }
    }
}

/// The first `SAMPLE` bytes of `s`, cut at a character boundary.
fn sample(s: &str) -> &str {
    let mut end = s.len().min(SAMPLE);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub enum Relay<'a> {
    Pass {
        observer: Box<dyn Observer>,
        parse_errors: ParseErrors<'a>,
        client: Wire,
        /// The bytes after the last complete event: held until their event is complete, so a
        /// stream cut mid-event never hands the client half an event (with the error event
        /// written onto its line).
        held: BytesMut,
    },
    Translate {
        source: Box<dyn ChunkSource>,
        encoder: StreamEncoder,
        chunks: Vec<ChatChunk>,
        /// The completion text (content, reasoning, tool arguments) that went to the client,
        /// up to `TEXT_LIMIT`, to count tokens when the stream ends without usage.
        text: String,
    },
}

/// Re-frames an OpenAI stream's events (`data: …` lines only, so nothing is lost) and leaves
/// out the usage-only chunk (`"choices":[]` with `usage`): the observer for a passthrough stream
/// whose usage chunk the gateway asked for and the client did not (`Rendered::strip_usage`).
#[derive(Default)]
pub struct UsageStripper {
    decoder: crate::sse::SseDecoder,
}

impl UsageStripper {
    fn emit(out: &mut BytesMut, ev: crate::sse::SseEvent) {
        let usage_only = ev.data.contains("\"usage\"")
            && serde_json::from_str::<serde_json::Value>(&ev.data)
                .is_ok_and(|v| v["usage"].is_object() && v["choices"].as_array().is_some_and(Vec::is_empty));
        if !usage_only {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(ev.data.as_bytes());
            out.extend_from_slice(b"\n\n");
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        if self.decoder.push(bytes, &mut |ev| Self::emit(&mut out, ev)).is_err() {
            // An oversized event: pass the bytes on rather than lose them.
            return Bytes::copy_from_slice(bytes);
        }
        out.freeze()
    }

    fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        let _ = self.decoder.finish(&mut |ev| Self::emit(&mut out, ev));
        out.freeze()
    }
}

impl ResponseObserver for UsageStripper {
    fn body(&mut self, bytes: Bytes) -> Bytes {
        self.push(&bytes)
    }

    fn end(&mut self, _complete: bool) -> Bytes {
        self.finish()
    }
}

/// Appends a chunk's text to `text`, up to `TEXT_LIMIT`.
fn keep_text(text: &mut String, c: &ChatChunk) {
    for choice in &c.choices {
        let d = &choice.delta;
        let tools = d
            .tool_calls
            .iter()
            .flatten()
            .filter_map(|t| t.function.as_ref()?.arguments.as_deref());
        for piece in d
            .content
            .iter()
            .chain(d.reasoning_content.iter())
            .map(String::as_str)
            .chain(tools)
        {
            if text.len() + piece.len() <= TEXT_LIMIT {
                text.push_str(piece);
            }
        }
    }
}

impl<'a> Relay<'a> {
    pub fn new(
        adapter: &dyn Adapter,
        rendered: &Rendered,
        client: Wire,
        include_usage: bool,
        parse_errors: ParseErrors<'a>,
    ) -> Relay<'a> {
        if rendered.passthrough {
            Relay::Pass {
                observer: match rendered.native_responses {
                    true => Box::<crate::providers::openai::ResponsesObserver>::default(),
                    false => adapter.observer(),
                },
                parse_errors,
                client,
                held: BytesMut::new(),
            }
        } else {
            Relay::Translate {
                source: adapter.chat_stream(rendered),
                encoder: StreamEncoder::new(client, include_usage),
                chunks: Vec::new(),
                text: String::new(),
            }
        }
    }

    /// One upstream chunk → the bytes for the client (possibly empty).
    pub fn push(&mut self, bytes: Bytes) -> Result<Bytes, StreamFault> {
        match self {
            Relay::Pass {
                observer,
                parse_errors,
                held,
                ..
            } => {
                parse_errors.note(observer.push(&bytes), bytes.len());
                Ok(complete_events(held, bytes))
            }
            Relay::Translate {
                source,
                encoder,
                chunks,
                text,
            } => {
                source.push(&bytes, chunks)?;
                Ok(encode(encoder, chunks, text))
            }
        }
    }

    /// The upstream body ended: the final bytes. The stream is complete only if `completed()`.
    pub fn finish(&mut self) -> Result<Bytes, StreamFault> {
        match self {
            Relay::Pass {
                observer,
                parse_errors,
                held,
                ..
            } => {
                parse_errors.note(observer.finish(), 0);
                // A complete stream's last event may lack its blank line: it goes, terminated.
                // An incomplete stream's half event is dropped (an SSE client discards it too);
                // the error event follows on a line of its own.
                if held.is_empty() || !observer.completed() {
                    return Ok(Bytes::new());
                }
                let mut tail = std::mem::take(held);
                tail.extend_from_slice(if tail.ends_with(b"\n") { b"\n" } else { b"\n\n" });
                Ok(tail.freeze())
            }
            Relay::Translate {
                source,
                encoder,
                chunks,
                text,
            } => {
                source.finish(chunks)?;
                let mut out = BytesMut::new();
                for c in chunks.drain(..) {
                    keep_text(text, &c);
                    encoder.push(&c, &mut out);
                }
                if source.completed() {
                    encoder.finish(&mut out);
                }
                Ok(out.freeze())
            }
        }
    }

    pub fn completed(&self) -> bool {
        match self {
            Relay::Pass { observer, .. } => observer.completed(),
            Relay::Translate { source, .. } => source.completed(),
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match self {
            Relay::Pass { observer, .. } => observer.usage(),
            Relay::Translate { source, .. } => source.usage(),
        }
    }

    /// The completion text seen so far, when the gateway kept it (to count tokens the
    /// provider did not report).
    pub fn completion_text(&self) -> Option<&str> {
        match self {
            Relay::Pass { observer, .. } => observer.completion_text(),
            Relay::Translate { text, .. } => Some(text),
        }
    }

    /// An in-band error event in the client's format.
    pub fn error_event(&self, code: &str, message: &str) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Relay::Pass { client, .. } => StreamEncoder::new(*client, false).error(&mut out, code, message),
            Relay::Translate { encoder, .. } => encoder.error(&mut out, code, message),
        }
        out.freeze()
    }
}

/// What of `held` + `bytes` ends with a complete SSE event (a blank line: `\n\n`, or `\n\r\n`
/// after CRLF lines), the rest kept in `held`. Zero-copy when nothing is held and `bytes` ends at
/// an event's end, as providers' chunks almost always do.
fn complete_events(held: &mut BytesMut, mut bytes: Bytes) -> Bytes {
    let scan: &[u8] = if held.is_empty() { &bytes } else { &[] };
    if !scan.is_empty() {
        match last_event_end(scan) {
            Some(end) if end == scan.len() => return bytes,
            Some(end) => {
                let out = bytes.split_to(end);
                held.extend_from_slice(&bytes);
                return out;
            }
            None => {
                held.extend_from_slice(&bytes);
                return Bytes::new();
            }
        }
    }
    held.extend_from_slice(&bytes);
    match last_event_end(held) {
        Some(end) => held.split_to(end).freeze(),
        None => Bytes::new(),
    }
}

/// The end of the last blank line in `b` (one past its `\n`).
fn last_event_end(b: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::rfind(b, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::rfind(b, b"\n\r\n").map(|i| i + 3);
    lf.max(crlf)
}

fn encode(encoder: &mut StreamEncoder, chunks: &mut Vec<ChatChunk>, text: &mut String) -> Bytes {
    if chunks.is_empty() {
        return Bytes::new();
    }
    let mut out = BytesMut::new();
    for c in chunks.drain(..) {
        keep_text(text, &c);
        encoder.push(&c, &mut out);
    }
    out.freeze()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_stripper_drops_only_the_usage_chunk_whatever_the_split() {
        let stream = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n",
            "data: [DONE]\n\n"
        );
        for split in 1..stream.len() {
            let mut s = UsageStripper::default();
            let mut out = Vec::new();
            out.extend_from_slice(&s.push(&stream.as_bytes()[..split]));
            out.extend_from_slice(&s.push(&stream.as_bytes()[split..]));
            out.extend_from_slice(&s.finish());
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("prompt_tokens"), "{text}");
            assert_eq!(text.matches("data: ").count(), 3, "{text}");
            assert!(text.ends_with("data: [DONE]\n\n"));
            assert!(text.contains("\"finish_reason\":\"stop\""));
        }
    }

    #[test]
    fn unreadable_events_of_a_passed_through_stream_are_counted_and_the_first_logged_capped() {
        crate::test_log::capture();
        let counter = IntCounterVec::new(prometheus::Opts::new("t", "t"), &["provider"]).unwrap();
        let provider = "anthropic-unreadable-test";
        let rendered = Rendered {
            path: String::new(),
            body: Bytes::new(),
            headers: Vec::new(),
            passthrough: true,
            json_mode: false,
            strip_usage: false,
            native_responses: false,
        };
        let adapter = crate::providers::ProviderKind::Anthropic.adapter();
        let mut relay = Relay::new(
            adapter,
            &rendered,
            Wire::Anthropic,
            false,
            ParseErrors::new(&counter, provider),
        );
        // Not JSON (a `]` where the object goes on): the event cannot be read at all.
        let text = "model output ".repeat(40);
        let bad = format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}]\n\n"
        );
        let good = "event: ping\ndata: {\"type\":\"ping\"}\n\n";
        for chunk in [bad.as_str(), good, bad.as_str()] {
            let out = relay.push(Bytes::copy_from_slice(chunk.as_bytes())).unwrap();
            assert_eq!(&out[..], chunk.as_bytes(), "the bytes pass unchanged");
        }
        relay.finish().unwrap();
        assert_eq!(counter.with_label_values(&[provider]).get(), 2);
        let lines = crate::test_log::lines_with(provider);
        assert_eq!(lines.len(), 1, "one line per stream: {lines:?}");
        let detail = lines[0].split("detail=").nth(1).unwrap();
        assert!(detail.len() <= SAMPLE + 2, "{detail}");
        assert!(!lines[0].contains("model output"), "{}", lines[0]);
        assert!(
            lines[0].contains(&format!("stream_bytes={}", bad.len())),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn only_whole_events_pass_and_the_rest_waits_for_its_end() {
        let mut held = BytesMut::new();
        let mut out = Vec::new();
        for part in [
            "data: {\"a\":1}\n\ndata: {\"b\"",
            ":2}\n",
            "\n",
            "data: x\r\n\r\ndata: [DO",
            "NE]\n\n",
        ] {
            out.push(complete_events(&mut held, Bytes::copy_from_slice(part.as_bytes())));
        }
        let out: Vec<&[u8]> = out.iter().map(|b| &b[..]).collect();
        assert_eq!(
            out,
            vec![
                &b"data: {\"a\":1}\n\n"[..],
                b"",
                b"data: {\"b\":2}\n\n",
                b"data: x\r\n\r\n",
                b"data: [DONE]\n\n",
            ]
        );
        assert!(held.is_empty());
        // A chunk that ends at an event's end passes without a copy.
        let whole = Bytes::from_static(b"data: 1\n\n");
        let passed = complete_events(&mut held, whole.clone());
        assert_eq!(passed.as_ptr(), whole.as_ptr());
    }

    #[test]
    fn samples_are_cut_at_a_character_boundary() {
        let s = "é".repeat(SAMPLE);
        assert_eq!(sample(&s).len(), SAMPLE);
        assert_eq!(sample("short"), "short");
        let odd = format!("a{s}");
        assert_eq!(sample(&odd).len(), SAMPLE - 1);
    }

    #[test]
    fn translated_text_is_kept_up_to_the_limit() {
        let mut text = String::new();
        let delta = crate::api::chat::Delta {
            content: Some("abc".into()),
            ..Default::default()
        };
        let chunk = ChatChunk::single("id", 0, "m", 0, delta, None);
        keep_text(&mut text, &chunk);
        assert_eq!(text, "abc");
        text = "x".repeat(TEXT_LIMIT - 1);
        keep_text(&mut text, &chunk);
        assert_eq!(text.len(), TEXT_LIMIT - 1, "a piece that does not fit is not kept");
    }
}
