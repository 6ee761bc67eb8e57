//! Server-Sent Events bytes, as every SSE provider streams them: the incremental decoder, with
//! the default event bound and with a small one.
//!
//! Checked beyond "no panic": without a bound in reach, the events do not depend on how the
//! stream was cut; with one, the decoder never holds more than its bound; events written back
//! by the encoder decode to themselves.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tollgate::sse::{encode_event, SseDecoder, SseError, SseEvent, DEFAULT_MAX_EVENT};
use tollgate_fuzz::pieces;

/// Small enough for fuzz inputs to pass it.
const SMALL: usize = 256;

fuzz_target!(|data: &[u8]| {
    let cut = pieces(data, 32);
    let whole = decode(DEFAULT_MAX_EVENT, &[data]);
    assert_eq!(whole, decode(DEFAULT_MAX_EVENT, &cut), "the events depend on how the stream was cut");
    let _ = decode(SMALL, &cut);

    let mut out = BytesMut::new();
    for e in &whole.0 {
        encode_event(&mut out, e.event.as_deref(), &e.data);
    }
    let (again, err) = decode(DEFAULT_MAX_EVENT, &[&out]);
    assert_eq!(err, None);
    let without_ids: Vec<(Option<String>, String)> = whole.0.iter().map(|e| (e.event.clone(), e.data.clone())).collect();
    let again: Vec<(Option<String>, String)> = again.into_iter().map(|e| (e.event, e.data)).collect();
    assert_eq!(again, without_ids, "encoded events do not decode to themselves");
});

/// The events decoded from `pieces` (up to the first error), and that error.
fn decode(max: usize, pieces: &[&[u8]]) -> (Vec<SseEvent>, Option<SseError>) {
    let mut d = SseDecoder::with_max_size(max);
    let mut events = Vec::new();
    for p in pieces {
        if let Err(e) = d.push(p, &mut |e| events.push(e)) {
            return (events, Some(e));
        }
        assert!(d.buffered() <= max, "the decoder holds {} bytes, over its bound", d.buffered());
    }
    let end = d.finish(&mut |e| events.push(e)).err();
    (events, end)
}
