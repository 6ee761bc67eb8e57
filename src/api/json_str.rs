//! The JSON string codec: a string's inside decoded (`decode`) and text escaped into one
//! (`escape_into`, `escaped`), without building a `serde_json::Value`. Used where bytes are
//! edited in place (the guardrails' body walk and restorers) and where JSON is written by hand
//! (the trace exporter): one codec, so every JSON the gateway writes escapes alike.
//!
//! Invariants: `decode` of what `escape_into` wrote is the text again (a property test below);
//! `escape_into` writes valid JSON for any `&str`; `decode` never panics, a malformed escape is
//! None.

use std::borrow::Cow;

/// Decodes the inside of a JSON string (escapes; a lone surrogate becomes U+FFFD). None: a
/// malformed escape.
pub fn decode(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    // `memchr` (SIMD) rather than `str::find`, whose portable search costs ~1.2 instructions a
    // byte under callgrind on the guardrails' long texts.
    while let Some(p) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..p]);
        let esc = rest.as_bytes().get(p + 1)?;
        // A backslash before a multi-byte character is no escape; `get` also keeps the cut off
        // the middle of that character (callers hand in unvalidated JSON: provider answers).
        rest = rest.get(p + 2..)?;
        match esc {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let hi = hex4(rest)?;
                rest = &rest[4..];
                let c = if (0xD800..0xDC00).contains(&hi) {
                    match rest.strip_prefix("\\u").and_then(hex4) {
                        Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                            rest = &rest[6..];
                            char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                        }
                        _ => None,
                    }
                } else {
                    char::from_u32(hi)
                };
                out.push(c.unwrap_or('\u{FFFD}'));
            }
            _ => return None,
        }
    }
    out.push_str(rest);
    Some(out)
}

fn hex4(s: &str) -> Option<u32> {
    u32::from_str_radix(s.get(..4)?, 16).ok()
}

/// Bytes JSON strings must escape: `"`, `\\` and the control characters.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The first byte at or after `from` that JSON must escape. Hand-rolled: the guardrails
/// re-encode every rewritten text. On x86_64 sixteen bytes a step with SSE2 (the baseline):
/// `escape_into` costs ~1.3 instructions a byte under callgrind with this (the copy included;
/// 1.9k on the load runner's 1.5 KB user message), against ~3.6 with the eight-byte SWAR loop,
/// which other targets keep, and ~4 with a table loop. The tail (under 16 bytes) goes through
/// the table.
fn next_escape(b: &[u8], mut from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    while let Some(block) = b.get(from..from + 16) {
        let mask = sse2::needs_escape(block);
        if mask != 0 {
            return Some(from + mask.trailing_zeros() as usize);
        }
        from += 16;
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        from = swar_skip(b, from);
    }
    b.get(from..)?
        .iter()
        .position(|&c| NEEDS_ESCAPE[usize::from(c)])
        .map(|i| from + i)
}

/// Where a byte to escape may be, at or after `from`, eight bytes a step: a word with none of
/// `"`, `\\` or a byte below 0x20 is skipped whole.
#[cfg(not(target_arch = "x86_64"))]
fn swar_skip(b: &[u8], mut from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A high bit set in a byte of the result where that byte of `w` is zero (exact for the
    // first such byte; later ones may be false positives, which the byte loop sorts out).
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    while let Some(chunk) = b.get(from..from + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // Below 0x20: w - 0x20 borrows into the high bit (bytes of 0x80 and up are excluded
        // by `!w`).
        let low = w.wrapping_sub(0x20 * ONES) & !w & HIGH;
        if low | zero(w ^ (u64::from(b'"') * ONES)) | zero(w ^ (u64::from(b'\\') * ONES)) != 0 {
            break;
        }
        from += 8;
    }
    from
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    /// Bit k set: `block[k]` must be escaped (`"`, `\\`, below 0x20), for k in 0..16.
    pub fn needs_escape(block: &[u8]) -> u32 {
        assert!(block.len() >= 16);
        // SAFETY: SSE2 is part of the x86_64 baseline, so the target feature is always there.
        unsafe { needs_escape_sse2(block) }
    }

    #[target_feature(enable = "sse2")]
    fn needs_escape_sse2(block: &[u8]) -> u32 {
        // SAFETY: one unaligned 16-byte load inside `block` (`block.len() >= 16`).
        let v = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        // Below 0x20 (unsigned): max(v, 0x1F) is 0x1F.
        let low = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1F)), _mm_set1_epi8(0x1F));
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(low, _mm_or_si128(quote, backslash))) as u32
    }
}

/// Appends `s` JSON-escaped (without quotes): `"`, `\\` and control characters. Runs without
/// any are copied whole (`next_escape` finds the next byte to escape).
pub fn escape_into(s: &str, out: &mut Vec<u8>) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    let mut start = 0;
    let mut at = 0;
    while let Some(i) = next_escape(b, at) {
        let c = b[i];
        at = i + 1;
        out.extend_from_slice(&b[start..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 15)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

/// `s` JSON-escaped (without quotes), borrowed when nothing needs escaping.
pub fn escaped(s: &str) -> Cow<'_, str> {
    if next_escape(s.as_bytes(), 0).is_none() {
        return Cow::Borrowed(s);
    }
    let mut v = Vec::with_capacity(s.len() + 8);
    escape_into(s, &mut v);
    Cow::Owned(String::from_utf8(v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escaping_round_trips_through_serde() {
        let s = "a\"b\\c\nd\u{0}e\u{1f}f\u{8}\u{c}😀";
        let mut v = b"\"".to_vec();
        escape_into(s, &mut v);
        v.push(b'"');
        assert_eq!(serde_json::from_slice::<String>(&v).unwrap(), s);
        assert!(String::from_utf8(v).unwrap().contains("\\b\\f"));
        assert_eq!(escaped("plain"), Cow::Borrowed("plain"));
    }

    #[test]
    fn decode_handles_every_escape_and_refuses_bad_ones() {
        assert_eq!(
            decode(r#"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"#).as_deref(),
            Some("a\"\\/\u{8}\u{c}\n\r\té😀")
        );
        assert_eq!(decode(r"\ud83d x").as_deref(), Some("\u{FFFD} x"));
        assert_eq!(decode(r"\q"), None);
        assert_eq!(decode(r"\u12"), None);
        assert_eq!(decode("\\"), None);
    }

    /// Found by fuzzing (`fuzz/`, target `pii_restore`): a backslash before a multi-byte
    /// character made `decode` cut inside that character, and panic.
    #[test]
    fn a_backslash_before_a_multibyte_character_is_a_bad_escape() {
        assert_eq!(decode("\\\u{6af}"), None);
        assert_eq!(decode("ok \\\u{e9} then"), None);
        assert_eq!(decode("\\\u{1f600}"), None);
    }

    proptest! {
        #[test]
        fn decode_inverts_escape(s in "\\PC{0,40}|[\\x00-\\x20\"\\\\a-z]{0,40}") {
            let mut v = Vec::new();
            escape_into(&s, &mut v);
            let inside = String::from_utf8(v).unwrap();
            prop_assert_eq!(decode(&inside), Some(s.clone()));
            prop_assert_eq!(serde_json::from_str::<String>(&format!("\"{inside}\"")).unwrap(), s);
        }

        /// The block-at-a-time search finds exactly the first byte the table marks, from any
        /// start, whatever bytes surround it (high bytes, bytes just above 0x20, `!`, `#`, `[`).
        #[test]
        fn next_escape_finds_the_first_byte_to_escape(
            b in proptest::collection::vec(prop_oneof![
                Just(0u8), Just(0x1f), Just(0x20), Just(0x21), Just(b'"'), Just(0x23), Just(b'\\'),
                Just(0x5b), Just(0x5d), Just(0x7f), Just(0x80), Just(0xff), any::<u8>(), 0x40u8..0x7b,
            ], 0..70),
            from in 0usize..74,
        ) {
            let naive = b.get(from..).and_then(|r| r.iter().position(|&c| NEEDS_ESCAPE[usize::from(c)])).map(|i| from + i);
            prop_assert_eq!(next_escape(&b, from), naive);
        }

        /// The same after long clean runs, so that whole blocks are skipped before the hit.
        #[test]
        fn next_escape_after_clean_blocks(
            clean in proptest::collection::vec(0x20u8..0x7f, 0..60),
            hit in prop_oneof![Just(0u8), Just(0x1f), Just(b'"'), Just(b'\\'), Just(0x80u8)],
            tail in proptest::collection::vec(any::<u8>(), 0..20),
            from in 0usize..30,
        ) {
            let b: Vec<u8> = clean.iter().copied().chain([hit]).chain(tail).collect();
            let naive = b.get(from..).and_then(|r| r.iter().position(|&c| NEEDS_ESCAPE[usize::from(c)])).map(|i| from + i);
            prop_assert_eq!(next_escape(&b, from), naive);
        }
    }
}
