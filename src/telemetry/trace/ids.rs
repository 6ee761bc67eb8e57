//! Trace and span ids and the W3C `traceparent` header (Trace Context level 1).
//!
//! Invariants: an id built by `random` or accepted by `parse`/`from_hex` is never all zeros (the
//! spec's "invalid" value), and ids always print as lowercase hex of fixed width. `parse` takes
//! untrusted client input: it never panics, allocates nothing and rejects anything the spec calls
//! invalid, so a bad header starts a new trace instead of polluting the collector.

use std::fmt;

use rand::RngCore;

/// A 16-byte trace id; never all zeros when built by `random`, `from_hex` or `TraceParent::parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id; never all zeros when built by `random`, `from_hex` or `TraceParent::parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

macro_rules! id_impl {
    ($ty:ident, $len:expr) => {
        impl $ty {
            /// A random non-zero id from the thread-local CSPRNG (no syscall after the first use).
            pub fn random() -> $ty {
                let mut rng = rand::thread_rng();
                let mut bytes = [0u8; $len];
                loop {
                    rng.fill_bytes(&mut bytes);
                    if bytes != [0u8; $len] {
                        return $ty(bytes);
                    }
                }
            }

            /// Parses exactly `2 * len` lowercase hex digits; `None` for anything else or all zeros.
            pub fn from_hex(s: &str) -> Option<$ty> {
                let bytes = decode_lower_hex::<$len>(s.as_bytes())?;
                (bytes != [0u8; $len]).then_some($ty(bytes))
            }

            /// True unless all zeros.
            pub fn is_valid(&self) -> bool {
                self.0 != [0u8; $len]
            }

            /// Lowercase hex into a stack buffer: the encoder uses this to avoid a `String` per id.
            pub(crate) fn hex_bytes(&self) -> [u8; 2 * $len] {
                let mut out = [0u8; 2 * $len];
                for (i, b) in self.0.iter().enumerate() {
                    out[2 * i] = HEX[(b >> 4) as usize];
                    out[2 * i + 1] = HEX[(b & 0x0f) as usize];
                }
                out
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let hex = self.hex_bytes();
                // Only ASCII hex digits are written into `hex`, so this never fails.
                f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
            }
        }
    };
}

id_impl!(TraceId, 16);
id_impl!(SpanId, 8);

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex digit value; uppercase is invalid in `traceparent` (HEXDIGLC).
fn lower_hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn decode_lower_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (lower_hex_val(pair[0])? << 4) | lower_hex_val(pair[1])?;
    }
    Some(out)
}

/// A parsed `traceparent`: the caller's trace, the caller's span (our parent) and the sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub sampled: bool,
}

/// `00-` + 32 + `-` + 16 + `-` + 2.
const TRACEPARENT_LEN: usize = 55;

impl TraceParent {
    /// Parses a `traceparent` header value per W3C Trace Context level 1.
    ///
    /// Version `00` must be exactly `00-<32 hex>-<16 hex>-<2 hex>`. A higher version (anything but
    /// `ff`) is parsed for the same four fields and may carry more after a `-`, as the spec's
    /// forward-compatibility rules ask. Hex must be lowercase; all-zero ids are rejected. Spaces and
    /// tabs around the value (HTTP optional whitespace) are ignored.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let s = header.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
        if s.len() < TRACEPARENT_LEN {
            return None;
        }
        let version = decode_lower_hex::<1>(&s[0..2])?[0];
        if version == 0xff || s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
            return None;
        }
        match (version, s.get(TRACEPARENT_LEN)) {
            (_, None) => {}
            // Version 00 has exactly four fields; later versions may append `-`-prefixed fields.
            (0, Some(_)) => return None,
            (_, Some(&c)) if c != b'-' => return None,
            (_, Some(_)) => {}
        }
        let trace_id = decode_lower_hex::<16>(&s[3..35])?;
        let parent_id = decode_lower_hex::<8>(&s[36..52])?;
        let flags = decode_lower_hex::<1>(&s[53..55])?[0];
        let (trace_id, parent_id) = (TraceId(trace_id), SpanId(parent_id));
        if !trace_id.is_valid() || !parent_id.is_valid() {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            sampled: flags & 0x01 == 0x01,
        })
    }

    /// The version-00 header to send upstream: `00-<trace id>-<span id>-01` (or `-00` unsampled).
    pub fn header_value(trace_id: TraceId, span_id: SpanId, sampled: bool) -> String {
        let flags = if sampled { "01" } else { "00" };
        format!("00-{trace_id}-{span_id}-{flags}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let tp = TraceParent::parse(VALID).unwrap();
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(tp.sampled);
        let unsampled = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled);
        // Unknown flag bits are ignored; only bit 0 is "sampled".
        assert!(
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
                .unwrap()
                .sampled
        );
        assert!(
            !TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe")
                .unwrap()
                .sampled
        );
    }

    #[test]
    fn optional_whitespace_around_the_value_is_ignored() {
        assert!(TraceParent::parse(&format!(" \t{VALID}\t ")).is_some());
        assert!(TraceParent::parse(&format!("{VALID}\n")).is_none());
    }

    #[test]
    fn uppercase_hex_is_rejected() {
        assert!(TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
        assert!(TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01").is_none());
        assert!(TraceParent::parse("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none());
        assert!(TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A").is_none());
    }

    #[test]
    fn zero_ids_are_rejected() {
        assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01").is_none());
    }

    #[test]
    fn wrong_lengths_and_separators_are_rejected() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn version_ff_is_rejected() {
        assert!(TraceParent::parse("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none());
    }

    #[test]
    fn future_versions_parse_the_known_fields() {
        let tp = TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let extended =
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds");
        assert_eq!(extended, Some(tp));
        // Extra content must start with a dash, and the known fields keep their rules.
        assert!(TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x").is_none());
        assert!(TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01-x").is_none());
        assert!(TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7").is_none());
    }

    #[test]
    fn header_value_round_trips() {
        for sampled in [true, false] {
            let (t, s) = (TraceId::random(), SpanId::random());
            let header = TraceParent::header_value(t, s, sampled);
            assert_eq!(header.len(), 55);
            assert_eq!(
                TraceParent::parse(&header),
                Some(TraceParent {
                    trace_id: t,
                    parent_id: s,
                    sampled
                })
            );
        }
        assert_eq!(
            TraceParent::header_value(TraceId([0xab; 16]), SpanId([0x01; 8]), true),
            "00-abababababababababababababababab-0101010101010101-01"
        );
    }

    #[test]
    fn random_ids_are_lowercase_hex_and_non_zero() {
        for _ in 0..1000 {
            let (t, s) = (TraceId::random(), SpanId::random());
            assert!(t.is_valid() && s.is_valid());
            let (th, sh) = (t.to_string(), s.to_string());
            assert_eq!(th.len(), 32);
            assert_eq!(sh.len(), 16);
            assert!(th
                .bytes()
                .chain(sh.bytes())
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
            assert_eq!(TraceId::from_hex(&th), Some(t));
            assert_eq!(SpanId::from_hex(&sh), Some(s));
        }
        assert_ne!(TraceId::random(), TraceId::random());
    }

    #[test]
    fn from_hex_rejects_bad_input() {
        assert_eq!(SpanId::from_hex("0000000000000000"), None);
        assert_eq!(SpanId::from_hex("00f067aa0ba902b"), None);
        assert_eq!(SpanId::from_hex("00F067AA0BA902B7"), None);
        assert_eq!(SpanId::from_hex("00f067aa0ba902é"), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_any_string(s in "\\PC{0,80}") {
            let _ = TraceParent::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_near_valid_input(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'-'), Just(b'0'), Just(b'f'), Just(b'F'), Just(b' '), any::<u8>()], 50..64)
        ) {
            if let Ok(s) = std::str::from_utf8(&bytes) {
                if let Some(tp) = TraceParent::parse(s) {
                    // Anything accepted re-encodes to a header that parses to the same value.
                    let again = TraceParent::header_value(tp.trace_id, tp.parent_id, tp.sampled);
                    prop_assert_eq!(TraceParent::parse(&again), Some(tp));
                }
            }
        }

        #[test]
        fn valid_headers_always_parse(
            version in 0u8..0xff, t in any::<[u8; 16]>(), s in any::<[u8; 8]>(), flags in any::<u8>(), tail in "(-[a-z0-9]{0,10})?"
        ) {
            prop_assume!(t != [0; 16] && s != [0; 8]);
            let tail = if version == 0 { String::new() } else { tail };
            let header = format!("{version:02x}-{}-{}-{flags:02x}{tail}", TraceId(t), SpanId(s));
            prop_assert_eq!(
                TraceParent::parse(&header),
                Some(TraceParent { trace_id: TraceId(t), parent_id: SpanId(s), sampled: flags & 1 == 1 })
            );
        }
    }
}
