//! AWS event-stream framing (`application/vnd.amazon.eventstream`), the binary stream Bedrock's
//! `ConverseStream` answers with: an incremental, bounded decoder and the matching encoder (used
//! by the mock provider and tests).
//!
//! One frame on the wire, all integers big-endian:
//!
//! ```text
//! total length u32 | headers length u32 | prelude CRC32 (of the 8 bytes before it)
//! headers (headers length bytes) | payload | message CRC32 (of every byte before it)
//! ```
//!
//! A header is `name length u8 | name | value type u8 | value`, the value sized by its type
//! (`HeaderValue`). Invariants: bytes may arrive in pieces of any size; both CRCs are checked
//! (the prelude's as soon as its 12 bytes are in, so a corrupt length never makes the decoder wait
//! for bytes that will not come); no frame larger than the bound is buffered; after the first
//! error the decoder stays failed, since the byte stream can no longer be re-synchronised.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Default bound on one frame (prelude, headers, payload and CRC).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
const PRELUDE_LEN: usize = 12;
/// Prelude plus the message CRC: a frame with no headers and no payload.
const MIN_FRAME: usize = PRELUDE_LEN + 4;

/// A header value, by wire type number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false): no value bytes.
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Short(i16),
    /// Type 4.
    Int(i32),
    /// Type 5.
    Long(i64),
    /// Type 6: u16 length, then the bytes.
    Bytes(Bytes),
    /// Type 7: u16 length, then UTF-8.
    String(String),
    /// Type 8: milliseconds since the epoch.
    Timestamp(i64),
    /// Type 9.
    Uuid([u8; 16]),
}

impl HeaderValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }

    fn type_byte(&self) -> u8 {
        match self {
            HeaderValue::Bool(true) => 0,
            HeaderValue::Bool(false) => 1,
            HeaderValue::Byte(_) => 2,
            HeaderValue::Short(_) => 3,
            HeaderValue::Int(_) => 4,
            HeaderValue::Long(_) => 5,
            HeaderValue::Bytes(_) => 6,
            HeaderValue::String(_) => 7,
            HeaderValue::Timestamp(_) => 8,
            HeaderValue::Uuid(_) => 9,
        }
    }
}

/// What a frame carries, from its `:message-type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType<'a> {
    /// `event` (also assumed when the header is absent).
    Event,
    /// `exception`: a modelled service error, named by `:exception-type`.
    Exception,
    /// `error`: a protocol-level error with `:error-code` and `:error-message` headers.
    Error,
    Other(&'a str),
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Bytes,
}

impl Frame {
    /// An `event` frame with a JSON payload, as Bedrock sends them.
    pub fn event(event_type: &str, payload: impl Into<Bytes>) -> Frame {
        Frame {
            headers: vec![
                (":event-type".into(), HeaderValue::String(event_type.into())),
                (":content-type".into(), HeaderValue::String("application/json".into())),
                (":message-type".into(), HeaderValue::String("event".into())),
            ],
            payload: payload.into(),
        }
    }

    /// An `exception` frame (`{"message": ...}` payload) of the given type.
    pub fn exception(exception_type: &str, payload: impl Into<Bytes>) -> Frame {
        Frame {
            headers: vec![
                (":exception-type".into(), HeaderValue::String(exception_type.into())),
                (":content-type".into(), HeaderValue::String("application/json".into())),
                (":message-type".into(), HeaderValue::String("exception".into())),
            ],
            payload: payload.into(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// A string header's value.
    pub fn str_header(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(HeaderValue::as_str)
    }

    /// `:event-type` (e.g. `contentBlockDelta`).
    pub fn event_type(&self) -> Option<&str> {
        self.str_header(":event-type")
    }

    pub fn message_type(&self) -> MessageType<'_> {
        match self.str_header(":message-type") {
            None | Some("event") => MessageType::Event,
            Some("exception") => MessageType::Exception,
            Some("error") => MessageType::Error,
            Some(other) => MessageType::Other(other),
        }
    }

    /// `:exception-type` (e.g. `throttlingException`).
    pub fn exception_type(&self) -> Option<&str> {
        self.str_header(":exception-type")
    }

    /// The frame's bytes. Fails if a header name or value is too long for its length field, or
    /// the frame would exceed `u32`.
    pub fn encode(&self) -> Result<Bytes, EventStreamError> {
        let mut out = BytesMut::new();
        self.encode_into(&mut out)?;
        Ok(out.freeze())
    }

    pub fn encode_into(&self, out: &mut BytesMut) -> Result<(), EventStreamError> {
        let mut headers = BytesMut::new();
        for (name, value) in &self.headers {
            let n = u8::try_from(name.len())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| EventStreamError::BadHeaders(format!("header name of {} bytes", name.len())))?;
            headers.put_u8(n);
            headers.put_slice(name.as_bytes());
            headers.put_u8(value.type_byte());
            match value {
                HeaderValue::Bool(_) => {}
                HeaderValue::Byte(v) => headers.put_i8(*v),
                HeaderValue::Short(v) => headers.put_i16(*v),
                HeaderValue::Int(v) => headers.put_i32(*v),
                HeaderValue::Long(v) | HeaderValue::Timestamp(v) => headers.put_i64(*v),
                HeaderValue::Bytes(b) => put_sized(&mut headers, name, b)?,
                HeaderValue::String(s) => put_sized(&mut headers, name, s.as_bytes())?,
                HeaderValue::Uuid(u) => headers.put_slice(u),
            }
        }
        let total = MIN_FRAME + headers.len() + self.payload.len();
        let total32 = u32::try_from(total).map_err(|_| EventStreamError::TooLarge {
            len: total,
            max: u32::MAX as usize,
        })?;
        let start = out.len();
        out.reserve(total);
        out.put_u32(total32);
        out.put_u32(headers.len() as u32);
        let prelude_crc = crc32fast::hash(&out[start..start + 8]);
        out.put_u32(prelude_crc);
        out.put_slice(&headers);
        out.put_slice(&self.payload);
        let message_crc = crc32fast::hash(&out[start..]);
        out.put_u32(message_crc);
        Ok(())
    }
}

fn put_sized(out: &mut BytesMut, name: &str, v: &[u8]) -> Result<(), EventStreamError> {
    let n = u16::try_from(v.len())
        .map_err(|_| EventStreamError::BadHeaders(format!("value of header {name:?} is {} bytes", v.len())))?;
    out.put_u16(n);
    out.put_slice(v);
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    #[error("an event-stream frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("an event-stream frame declares {0} bytes, less than the minimum of 16")]
    TooShort(usize),
    #[error("event-stream prelude CRC mismatch (computed {computed:#010x}, frame says {declared:#010x})")]
    PreludeCrc { computed: u32, declared: u32 },
    #[error("event-stream message CRC mismatch (computed {computed:#010x}, frame says {declared:#010x})")]
    MessageCrc { computed: u32, declared: u32 },
    #[error("malformed event-stream headers: {0}")]
    BadHeaders(String),
    #[error("the event stream ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
    #[error("the event stream is unusable after an earlier error")]
    Failed,
}

/// Incremental decoder. Feed chunks with `push`, then call `finish` at the end of the body.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_frame: usize,
    /// Total length of the frame being buffered, once its prelude was checked.
    pending: Option<usize>,
    failed: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::with_max_frame(DEFAULT_MAX_FRAME)
    }
}

impl Decoder {
    pub fn with_max_frame(max_frame: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            max_frame: max_frame.max(MIN_FRAME),
            pending: None,
            failed: false,
        }
    }

    /// Decodes `chunk`, calling `on_frame` for every complete frame.
    pub fn push(&mut self, chunk: &[u8], on_frame: &mut impl FnMut(Frame)) -> Result<(), EventStreamError> {
        if self.failed {
            return Err(EventStreamError::Failed);
        }
        self.buf.extend_from_slice(chunk);
        let r = self.drain(on_frame);
        if r.is_err() {
            self.failed = true;
            self.buf.clear();
        }
        r
    }

    /// The body ended: an error if it stopped inside a frame.
    pub fn finish(&mut self) -> Result<(), EventStreamError> {
        if self.failed {
            return Err(EventStreamError::Failed);
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.failed = true;
            Err(EventStreamError::Truncated(self.buf.len()))
        }
    }

    /// Bytes held for an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn drain(&mut self, on_frame: &mut impl FnMut(Frame)) -> Result<(), EventStreamError> {
        loop {
            let total = match self.pending {
                Some(t) => t,
                None => {
                    if self.buf.len() < PRELUDE_LEN {
                        return Ok(());
                    }
                    let t = self.check_prelude()?;
                    self.pending = Some(t);
                    t
                }
            };
            if self.buf.len() < total {
                return Ok(());
            }
            self.pending = None;
            let frame = self.buf.split_to(total).freeze();
            on_frame(parse_frame(frame)?);
        }
    }

    /// Validates the 12-byte prelude at the start of the buffer; returns the frame's total length.
    fn check_prelude(&self) -> Result<usize, EventStreamError> {
        let p = &self.buf[..PRELUDE_LEN];
        let declared = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        let computed = crc32fast::hash(&p[..8]);
        if computed != declared {
            return Err(EventStreamError::PreludeCrc { computed, declared });
        }
        let total = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        let headers = u32::from_be_bytes([p[4], p[5], p[6], p[7]]) as usize;
        if total < MIN_FRAME {
            return Err(EventStreamError::TooShort(total));
        }
        if total > self.max_frame {
            return Err(EventStreamError::TooLarge {
                len: total,
                max: self.max_frame,
            });
        }
        if headers > total - MIN_FRAME {
            return Err(EventStreamError::BadHeaders(format!(
                "{headers} bytes of headers in a {total}-byte frame"
            )));
        }
        Ok(total)
    }
}

/// Parses one whole frame (prelude already checked).
fn parse_frame(frame: Bytes) -> Result<Frame, EventStreamError> {
    let total = frame.len();
    let declared = u32::from_be_bytes([frame[total - 4], frame[total - 3], frame[total - 2], frame[total - 1]]);
    let computed = crc32fast::hash(&frame[..total - 4]);
    if computed != declared {
        return Err(EventStreamError::MessageCrc { computed, declared });
    }
    let headers_len = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
    let headers_end = PRELUDE_LEN + headers_len;
    let headers = parse_headers(&frame[PRELUDE_LEN..headers_end])?;
    Ok(Frame {
        headers,
        payload: frame.slice(headers_end..total - 4),
    })
}

fn parse_headers(mut b: &[u8]) -> Result<Vec<(String, HeaderValue)>, EventStreamError> {
    fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], EventStreamError> {
        if b.len() < n {
            return Err(EventStreamError::BadHeaders(format!("{what} runs past the headers")));
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Ok(head)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let name_len = take(&mut b, 1, "a header name length")?[0] as usize;
        if name_len == 0 {
            return Err(EventStreamError::BadHeaders("empty header name".into()));
        }
        let name = std::str::from_utf8(take(&mut b, name_len, "a header name")?)
            .map_err(|_| EventStreamError::BadHeaders("header name is not UTF-8".into()))?
            .to_string();
        let kind = take(&mut b, 1, "a header value type")?[0];
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(take(&mut b, 1, "a byte value")?.get_i8()),
            3 => HeaderValue::Short(take(&mut b, 2, "a short value")?.get_i16()),
            4 => HeaderValue::Int(take(&mut b, 4, "an integer value")?.get_i32()),
            5 => HeaderValue::Long(take(&mut b, 8, "a long value")?.get_i64()),
            6 | 7 => {
                let n = take(&mut b, 2, "a value length")?.get_u16() as usize;
                let v = take(&mut b, n, "a header value")?;
                if kind == 6 {
                    HeaderValue::Bytes(Bytes::copy_from_slice(v))
                } else {
                    let s = std::str::from_utf8(v)
                        .map_err(|_| EventStreamError::BadHeaders(format!("value of {name:?} is not UTF-8")))?;
                    HeaderValue::String(s.to_string())
                }
            }
            8 => HeaderValue::Timestamp(take(&mut b, 8, "a timestamp value")?.get_i64()),
            9 => {
                let mut u = [0u8; 16];
                u.copy_from_slice(take(&mut b, 16, "a UUID value")?);
                HeaderValue::Uuid(u)
            }
            other => {
                return Err(EventStreamError::BadHeaders(format!(
                    "unknown value type {other} for header {name:?}"
                )))
            }
        };
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<Frame>, EventStreamError> {
        let mut d = Decoder::default();
        let mut frames = Vec::new();
        for c in chunks {
            d.push(c, &mut |f| frames.push(f))?;
        }
        d.finish()?;
        Ok(frames)
    }

    /// The event-stream codec test vectors published with the AWS SDKs
    /// (smithy-typescript `packages/eventstream-codec/test_vectors`), as hex.
    const ALL_HEADERS: &str = "000000cc000000af0fae64ca0a6576656e742d74797065040000a00c0c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0a626f6f6c2066616c73650109626f6f6c207472756500046279746502cf08627974652062756606001449276d2061206c6974746c6520746561706f74210974696d657374616d70080000000000845fed05696e74313603002a05696e7436340500000000028757b20475756964090102030405060708090a0b0c0d0e0f107b27666f6f273a27626172277daba5f10c";
    const EMPTY_MESSAGE: &str = "000000100000000005c248eb7d98c8ff";
    const INT32_HEADER: &str =
        "0000002d0000001041c424b80a6576656e742d74797065040000a00c7b27666f6f273a27626172277d36f480a0";
    const PAYLOAD_NO_HEADERS: &str = "0000001d00000000fd528c5a7b27666f6f273a27626172277dc3653936";
    const PAYLOAD_ONE_STR_HEADER: &str = "0000003d0000002007fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e7b27666f6f273a27626172277d8d9c08b1";
    const CORRUPTED_HEADER_LEN: &str = "0000003d0000002107fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e7b27666f6f273a27626172277d8d9c08b1";
    const CORRUPTED_HEADERS: &str = "0000003d0000002007fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e7b61666f6f273a27626172277d8d9c08b1";
    const CORRUPTED_LENGTH: &str = "0000003e0000002007fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e7b27666f6f273a27626172277d8d9c08b1";
    const CORRUPTED_PAYLOAD: &str = "0000001d00000000fd528c5a5b27666f6f273a27626172277dc3653936";

    fn one(hex_frame: &str) -> Result<Frame, EventStreamError> {
        let mut frames = decode_all(&[&hex::decode(hex_frame).unwrap()])?;
        assert_eq!(frames.len(), 1);
        Ok(frames.remove(0))
    }

    #[test]
    fn decodes_the_published_vectors_and_reencodes_them_byte_for_byte() {
        let foo_bar: &[u8] = b"{'foo':'bar'}";
        let f = one(ALL_HEADERS).unwrap();
        let s = |v: &str| HeaderValue::String(v.into());
        assert_eq!(
            f.headers,
            vec![
                ("event-type".into(), HeaderValue::Int(40972)),
                ("content-type".into(), s("application/json")),
                ("bool false".into(), HeaderValue::Bool(false)),
                ("bool true".into(), HeaderValue::Bool(true)),
                ("byte".into(), HeaderValue::Byte(-49)),
                (
                    "byte buf".into(),
                    HeaderValue::Bytes(Bytes::from_static(b"I'm a little teapot!"))
                ),
                ("timestamp".into(), HeaderValue::Timestamp(8_675_309)),
                ("int16".into(), HeaderValue::Short(42)),
                ("int64".into(), HeaderValue::Long(42_424_242)),
                (
                    "uuid".into(),
                    HeaderValue::Uuid([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
                ),
            ]
        );
        assert_eq!(&f.payload[..], foo_bar);
        assert_eq!(one(EMPTY_MESSAGE).unwrap(), Frame::default());
        assert_eq!(
            one(INT32_HEADER).unwrap().headers,
            vec![("event-type".into(), HeaderValue::Int(0xa00c))]
        );
        assert_eq!(&one(PAYLOAD_NO_HEADERS).unwrap().payload[..], foo_bar);
        assert_eq!(
            one(PAYLOAD_ONE_STR_HEADER).unwrap().str_header("content-type"),
            Some("application/json")
        );
        for v in [
            ALL_HEADERS,
            EMPTY_MESSAGE,
            INT32_HEADER,
            PAYLOAD_NO_HEADERS,
            PAYLOAD_ONE_STR_HEADER,
        ] {
            assert_eq!(hex::encode(one(v).unwrap().encode().unwrap()), v);
        }
    }

    #[test]
    fn rejects_the_published_negative_vectors() {
        assert!(matches!(
            one(CORRUPTED_HEADER_LEN),
            Err(EventStreamError::PreludeCrc { .. })
        ));
        assert!(matches!(
            one(CORRUPTED_HEADERS),
            Err(EventStreamError::MessageCrc { .. })
        ));
        assert!(matches!(
            one(CORRUPTED_LENGTH),
            Err(EventStreamError::PreludeCrc { .. })
        ));
        assert!(matches!(
            one(CORRUPTED_PAYLOAD),
            Err(EventStreamError::MessageCrc { .. })
        ));
    }

    #[test]
    fn empty_frame_is_sixteen_bytes() {
        let f = Frame::default();
        let b = f.encode().unwrap();
        assert_eq!(b.len(), 16);
        assert_eq!(decode_all(&[&b]).unwrap(), vec![f]);
    }

    #[test]
    fn helpers_read_bedrock_headers() {
        let f = Frame::event("contentBlockDelta", Bytes::from_static(b"{}"));
        assert_eq!(f.event_type(), Some("contentBlockDelta"));
        assert_eq!(f.message_type(), MessageType::Event);
        assert_eq!(f.exception_type(), None);
        let e = Frame::exception("throttlingException", Bytes::from_static(br#"{"message":"slow down"}"#));
        assert_eq!(e.message_type(), MessageType::Exception);
        assert_eq!(e.exception_type(), Some("throttlingException"));
        let d = decode_all(&[&e.encode().unwrap()]).unwrap();
        assert_eq!(d, vec![e]);
    }

    #[test]
    fn unknown_header_types_do_not_desync_and_every_type_round_trips() {
        let f = Frame {
            headers: vec![
                ("t".into(), HeaderValue::Bool(true)),
                ("f".into(), HeaderValue::Bool(false)),
                ("b".into(), HeaderValue::Byte(-3)),
                ("s".into(), HeaderValue::Short(-300)),
                ("i".into(), HeaderValue::Int(70_000)),
                ("l".into(), HeaderValue::Long(-5_000_000_000)),
                ("y".into(), HeaderValue::Bytes(Bytes::from_static(&[0, 1, 2]))),
                ("ts".into(), HeaderValue::Timestamp(1_700_000_000_000)),
                ("u".into(), HeaderValue::Uuid([7; 16])),
                (":event-type".into(), HeaderValue::String("messageStop".into())),
            ],
            payload: Bytes::from_static(br#"{"stopReason":"end_turn"}"#),
        };
        let d = decode_all(&[&f.encode().unwrap()]).unwrap();
        assert_eq!(d[0], f);
        assert_eq!(d[0].event_type(), Some("messageStop"));
    }

    #[test]
    fn bounds_and_corruption_are_errors() {
        let f = Frame::event("x", vec![0u8; 100]).encode().unwrap();
        let mut d = Decoder::with_max_frame(64);
        assert!(matches!(
            d.push(&f, &mut |_| {}),
            Err(EventStreamError::TooLarge { .. })
        ));
        // Failed stays failed.
        assert_eq!(d.push(b"", &mut |_| {}), Err(EventStreamError::Failed));

        let mut bad = f.to_vec();
        bad[0] ^= 0x80; // a 2 GiB length: the prelude CRC catches it before any waiting
        assert!(matches!(decode_all(&[&bad]), Err(EventStreamError::PreludeCrc { .. })));
        let mut bad = f.to_vec();
        let last = bad.len() - 10;
        bad[last] ^= 1;
        assert!(matches!(decode_all(&[&bad]), Err(EventStreamError::MessageCrc { .. })));
        assert_eq!(decode_all(&[&f[..20]]), Err(EventStreamError::Truncated(20)));
    }

    #[test]
    fn header_length_overrunning_the_frame_is_an_error() {
        // A correct prelude CRC over a header length larger than the frame allows.
        let mut raw = BytesMut::new();
        raw.put_u32(20);
        raw.put_u32(10);
        let crc = crc32fast::hash(&raw[..8]);
        raw.put_u32(crc);
        raw.put_u32(0);
        raw.put_u32(0);
        assert!(matches!(decode_all(&[&raw]), Err(EventStreamError::BadHeaders(_))));
        // And a header whose value runs past the header block.
        let mut hdr = BytesMut::new();
        hdr.put_u8(1);
        hdr.put_slice(b"a");
        hdr.put_u8(7);
        hdr.put_u16(50);
        let total = MIN_FRAME + hdr.len();
        let mut raw = BytesMut::new();
        raw.put_u32(total as u32);
        raw.put_u32(hdr.len() as u32);
        let crc = crc32fast::hash(&raw[..8]);
        raw.put_u32(crc);
        raw.put_slice(&hdr);
        let crc = crc32fast::hash(&raw);
        raw.put_u32(crc);
        assert!(matches!(decode_all(&[&raw]), Err(EventStreamError::BadHeaders(_))));
    }

    fn header_value() -> impl Strategy<Value = HeaderValue> {
        prop_oneof![
            any::<bool>().prop_map(HeaderValue::Bool),
            any::<i8>().prop_map(HeaderValue::Byte),
            any::<i16>().prop_map(HeaderValue::Short),
            any::<i32>().prop_map(HeaderValue::Int),
            any::<i64>().prop_map(HeaderValue::Long),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| HeaderValue::Bytes(Bytes::from(v))),
            ".{0,30}".prop_map(HeaderValue::String),
            any::<i64>().prop_map(HeaderValue::Timestamp),
            any::<[u8; 16]>().prop_map(HeaderValue::Uuid),
        ]
    }

    fn frame() -> impl Strategy<Value = Frame> {
        (
            proptest::collection::vec(("[:a-z-]{1,20}", header_value()), 0..5),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(headers, payload)| Frame {
                headers,
                payload: Bytes::from(payload),
            })
    }

    proptest! {
        #[test]
        fn any_split_decodes_identically(frames in proptest::collection::vec(frame(), 1..4), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
            let mut wire = BytesMut::new();
            for f in &frames {
                f.encode_into(&mut wire).unwrap();
            }
            let wire = wire.freeze();
            // Random pieces.
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            at.sort_unstable();
            let mut pieces = Vec::new();
            let mut prev = 0;
            for c in at {
                pieces.push(&wire[prev..c]);
                prev = c;
            }
            pieces.push(&wire[prev..]);
            prop_assert_eq!(&decode_all(&pieces).unwrap(), &frames);
            // Every single cut.
            for cut in 0..=wire.len() {
                prop_assert_eq!(&decode_all(&[&wire[..cut], &wire[cut..]]).unwrap(), &frames);
            }
        }

        #[test]
        fn any_corrupted_byte_is_an_error(f in frame(), pos in any::<usize>(), flip in 1u8..=255) {
            let mut wire = f.encode().unwrap().to_vec();
            let i = pos % wire.len();
            wire[i] ^= flip;
            prop_assert!(decode_all(&[&wire]).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), cut in any::<usize>()) {
            let cut = cut % (bytes.len() + 1);
            let _ = decode_all(&[&bytes[..cut], &bytes[cut..]]);
        }
    }
}
