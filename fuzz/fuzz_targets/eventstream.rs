//! An AWS event-stream body (`application/vnd.amazon.eventstream`, Bedrock's `ConverseStream`):
//! the frame decoder, then Bedrock's stream translator (plain and JSON-mode requests), the
//! canonical chunks written back in both client formats, and Bedrock's passthrough observer.
//!
//! Every input is read twice: as it is, and with its frames' CRCs made right (each frame's
//! declared lengths kept where they fit the input, else shrunk to fit). Random bytes almost never
//! pass two CRC32s, so without the second reading the fuzzer would hardly get past the prelude.
//!
//! Checked beyond "no panic": the decoder, the translator and the observer make the same of a
//! body fed whole and in pieces cut anywhere; a decoded frame encodes back to itself.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate::providers::Rendered;
use tollgate::sse::eventstream::{Decoder, EventStreamError, Frame};
use tollgate_fuzz::{adapter, chat_renders, encode_for_clients, observe, pieces, translate};

fn renders() -> &'static [Rendered] {
    static R: OnceLock<Vec<Rendered>> = OnceLock::new();
    R.get_or_init(|| chat_renders("bedrock", true))
}

/// A frame bound well below the input size limit, so the `TooLarge` path is reachable.
const MAX_FRAME: usize = 4096;

fuzz_target!(|data: &[u8]| {
    run(data);
    run(&with_valid_crcs(data));
});

fn run(data: &[u8]) {
    let cut = pieces(data, 48);
    let whole = decode(&[data]);
    assert_eq!(whole, decode(&cut), "the decoder depends on how the stream was cut");
    for frame in &whole.0 {
        let bytes = frame.encode().expect("a decoded frame encodes");
        let again = decode(&[&bytes]);
        assert_eq!(again, (vec![frame.clone()], None), "a decoded frame does not encode back to itself");
    }
    let a = adapter("bedrock");
    for r in renders() {
        let all = translate(a.chat_stream(r), &[data]);
        assert_eq!(
            all,
            translate(a.chat_stream(r), &cut),
            "the translation depends on how the stream was cut"
        );
        encode_for_clients(&all);
    }
    if let (Some(o1), Some(o2)) = (observe(a.observer(), &[data]), observe(a.observer(), &cut)) {
        assert_eq!(o1, o2, "the observer depends on how the stream was cut");
    }
}

/// The frames decoded from `pieces` (up to the first error), and that error.
fn decode(pieces: &[&[u8]]) -> (Vec<Frame>, Option<EventStreamError>) {
    let mut d = Decoder::with_max_frame(MAX_FRAME);
    let mut frames = Vec::new();
    for p in pieces {
        if let Err(e) = d.push(p, &mut |f| frames.push(f)) {
            return (frames, Some(e));
        }
        assert!(d.buffered() < MAX_FRAME, "the decoder holds more than a frame");
    }
    let end = d.finish().err();
    (frames, end)
}

/// `data` with each frame's prelude and message CRC computed: the declared total length is kept
/// when it is at least a frame's minimum and fits what is left, else it becomes what is left;
/// the declared headers length likewise.
fn with_valid_crcs(data: &[u8]) -> Vec<u8> {
    const PRELUDE: usize = 12;
    const MIN: usize = 16;
    let mut out = data.to_vec();
    let mut at = 0;
    while out.len() - at >= MIN {
        let left = out.len() - at;
        let be = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let mut total = be(&out, at);
        if !(MIN..=left).contains(&total) {
            total = left;
            out[at..at + 4].copy_from_slice(&(total as u32).to_be_bytes());
        }
        let headers = be(&out, at + 4);
        if headers > total - MIN {
            let fit = headers % (total - MIN + 1);
            out[at + 4..at + 8].copy_from_slice(&(fit as u32).to_be_bytes());
        }
        let prelude = crc32(&out[at..at + 8]);
        out[at + 8..at + PRELUDE].copy_from_slice(&prelude.to_be_bytes());
        let message = crc32(&out[at..at + total - 4]);
        out[at + total - 4..at + total].copy_from_slice(&message.to_be_bytes());
        at += total;
    }
    out
}

/// CRC-32 (IEEE), as the event-stream framing uses it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
