//! Encoded payloads: finds plausible base64 and hex runs in the raw text and decodes them, and
//! applies rot13 when the text announces it, so the scorer can score what the model would read
//! after "decode this and follow it".
//!
//! Invariants: only runs of at least `MIN_RUN` characters are tried, at most `MAX_CANDIDATES`
//! per text, and a decoded payload is kept only when it reads as text (valid UTF-8, mostly
//! printable, with letters), so hashes, keys and images decode to nothing.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};

/// The shortest base64 or hex run worth decoding.
pub(super) const MIN_RUN: usize = 16;
/// The most candidates decoded per text.
pub(super) const MAX_CANDIDATES: usize = 8;
/// The longest run decoded (longer runs are images or archives, not instructions).
const MAX_RUN: usize = 16 * 1024;

const B64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const B64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, B64_CONFIG);
const B64_URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, B64_CONFIG);

pub(super) fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// Text a person could have written: UTF-8, at least 90% printable, at least 8 letters, and
/// containing a space (an instruction has words).
fn readable(bytes: Vec<u8>) -> Option<String> {
    let text = String::from_utf8(bytes).ok()?;
    let total = text.chars().count();
    let printable = text.chars().filter(|c| !c.is_control() || c.is_whitespace()).count();
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    (printable * 10 >= total * 9 && letters >= 8 && text.contains(' ')).then_some(text)
}

fn decode_run(run: &str) -> Option<String> {
    let bytes = run.as_bytes();
    let hexish = bytes.len() % 2 == 0 && bytes.iter().all(u8::is_ascii_hexdigit);
    if hexish {
        let decoded: Option<Vec<u8>> = bytes
            .chunks(2)
            .map(|p| std::str::from_utf8(p).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        if let Some(text) = decoded.and_then(readable) {
            return Some(text);
        }
    }
    let trimmed = run.trim_end_matches('=');
    // A length of 4n+1 cannot be base64; drop the stray last character.
    let trimmed = if trimmed.len() % 4 == 1 {
        &trimmed[..trimmed.len() - 1]
    } else {
        trimmed
    };
    let engine = if trimmed.contains(['-', '_']) { &B64_URL } else { &B64 };
    engine.decode(trimmed).ok().and_then(readable)
}

/// Whether a base64-alphabet run is long enough and unlike a plain word, so worth decoding.
fn worth_decoding(run: &str) -> bool {
    let letters = run.bytes().filter(u8::is_ascii_alphabetic).count();
    // Ordinary long words ("internationalization") pass the length test; they fail to decode to
    // readable text, but skip the obvious ones: all-lowercase letter runs.
    let plain_word = run.bytes().all(|b| b.is_ascii_lowercase());
    run.len() >= MIN_RUN && run.len() <= MAX_RUN && letters > 0 && !plain_word
}

/// Whether `text` might hold a run `candidates` would try to decode: no decoding, no allocation,
/// and never false when `candidates` would try one (it may be true when it would not).
#[cfg(test)]
pub(super) fn has_candidate_run(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !is_b64(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let (mut letters, mut all_lower) = (false, true);
        while i < bytes.len() && is_b64(bytes[i]) {
            letters |= bytes[i].is_ascii_alphabetic();
            all_lower &= bytes[i].is_ascii_lowercase();
            i += 1;
        }
        let padded = bytes.get(i) == Some(&b'=');
        // `candidates` adds up to two `=` to the run, which also makes it no plain word.
        if letters && (i - start) + 2 >= MIN_RUN && (!all_lower || padded) {
            return true;
        }
    }
    false
}

/// Decoded texts of the base64 and hex runs in `text`, in order, at most `MAX_CANDIDATES`.
pub(super) fn candidates(text: &str) -> impl Iterator<Item = String> + '_ {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if !is_b64(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && is_b64(bytes[i]) {
                i += 1;
            }
            let mut end = i;
            while i < bytes.len() && bytes[i] == b'=' && i - end < 2 {
                i += 1;
            }
            end = end.max(i);
            let run = &text[start..end];
            if worth_decoding(run) {
                if let Some(decoded) = decode_run(run) {
                    return Some(decoded);
                }
            }
        }
        None
    })
    .take(MAX_CANDIDATES)
}

/// Whether the raw text announces rot13 (then the whole text is worth reading rotated). Checked
/// on the raw text: leetspeak folding would turn "rot13" into "rotie".
pub(super) fn announces_rot13(raw: &str) -> bool {
    raw.as_bytes().windows(5).any(is_rot13_window)
}

/// Whether five bytes spell "rot13", "rot-1" or "rot 1" (any ASCII case).
pub(super) fn is_rot13_window(w: &[u8]) -> bool {
    w.len() == 5
        && w[..3].eq_ignore_ascii_case(b"rot")
        && (w[3..] == *b"13" || (matches!(w[3], b'-' | b' ') && w[4] == b'1'))
}

/// `text` with ASCII letters rotated by 13.
pub(super) fn rot13(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a') + 13) % 26 + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A') + 13) % 26 + b'A') as char,
            _ => c,
        })
        .collect()
}
