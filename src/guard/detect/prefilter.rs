//! Where the built-in patterns can match, found without the automaton: `Detector::scan` runs its
//! search only in windows of the text around *triggers*, bytes and words that every built-in
//! match holds, instead of over the whole text.
//!
//! Why hand-rolled, and what it buys: under callgrind the automaton (a lazy DFA over ~30
//! patterns) costs ~11 instructions a byte of prose and an Aho-Corasick pass over the trigger
//! words ~20, so neither can find the windows cheaply. The SSE2 candidate search here
//! (`Candidates`) costs ~5, candidates settled included: on the load runner's 1.9 KB body the
//! request stage's criterion median fell from 6.0 to 3.1 µs with the windows (the byte loop runs
//! at a higher IPC than the automaton's table walks). Where triggers are everywhere the text is
//! scanned whole after its first `DENSE_AFTER` bytes (`Detector::scan_windows`), so dense text
//! pays ~10 %.
//!
//! The triggers:
//! - a digit or `@` (cards, phones, IBANs, SSNs, IPv4, birth dates, e-mail addresses, URL
//!   credentials), and `:` before a hex digit, `:` or `/` (IPv6, `scheme://`);
//! - a password word at the end of a word (`pass`, `password`, `passwd`, `passwort`, `passe`,
//!   `pwd`, `kennwort`, `contraseña`, `senha`, any case), and `secret` anywhere;
//! - the key prefixes: `AKIA`/`ASIA`/`ABIA`/`ACCA`, `eyJ`, `sk-`, `glpat-`, `xox?-`, `gh?_`,
//!   `github_pat_`, `sk_`/`rk_` with `live_`/`test_`, `AccountKey=`, `SharedAccessKey=`,
//!   `private_key_id`, `-----BEGIN`.
//!
//! A trigger's window starts `BACK` bytes before the start of its word (a birth date's context
//! and the gap after it, an SSN's label, `mot de` before `passe`: all bounded in characters) and
//! ends a reach after the end of its word that depends on the trigger: `AFTER_CHAR` bytes for a
//! digit (the rest of a spaced number, an IBAN's letter groups), the key's own word for a key
//! prefix, the end of the line for a PEM header, and for a password word `AFTER_PASSWORD`
//! non-whitespace bytes (its value in JSON is up to 128 characters, and `[ \t]*=` or `\s*:`
//! before it may be a run of spaces of any length) to the end of the word reached. Windows that
//! overlap are merged. A window's bounds cost O(1) past the trigger's own word (walked once per
//! word): a number's digits do not each walk the text.
//!
//! Invariants `scan` relies on:
//! - every match of a built-in pattern lies inside one merged window (each row of `patterns`
//!   holds a trigger, and the reaches cover what a row can match around it);
//! - a window's start never decreases from one trigger to the next (`back` depends only on the
//!   start of the trigger's word, and triggers come in order), so a window that ends before the
//!   next one starts is final;
//! - `ſ` and the Kelvin sign `K` fold to `s` and `k` in the patterns' case-insensitive words, and
//!   are not triggers here: a text holding one is scanned whole (`Fold`).
//!
//! The scan over windows finds exactly what a scan of the whole text finds: tested on the
//! labelled corpus and by a property test against `Detector::scan_unfiltered`. Custom entities
//! (any regex, any word) turn the prefilter off.

/// Bytes a window reaches back before the start of its trigger's word: a birth date's context
/// word (up to 25 bytes), the separators and a gap of up to 28 characters, 4 bytes each
/// (`patterns::dob_regex`); an SSN's label (`patterns`' SSN row) is shorter.
pub const BACK: usize = 160;
/// Bytes after a digit's, `@`'s or `:`'s word: the rest of a spaced number or IBAN.
const AFTER_CHAR: usize = 40;
/// Non-whitespace bytes after a password word: its value, up to 128 characters (4 bytes each)
/// in JSON, and the separators.
const AFTER_PASSWORD: usize = 560;
/// Bytes after `secret`: `_access_key`, quotes, up to 3 spaces twice, `=>`, a 40-character key.
const AFTER_SECRET: usize = 72;
/// Non-whitespace bytes after `private_key_id`: `":"` and 40 hex digits in quotes.
const AFTER_GCP: usize = 64;

/// How far a window reaches after its trigger's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The word only (a key with its prefix).
    Word,
    /// This many bytes more.
    Bytes(usize),
    /// This many non-whitespace bytes more (whitespace is free), to the end of the word reached.
    Visible(usize),
    /// To the end of the line (a PEM header).
    Line,
}

/// A trigger: its bytes and its reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    pub start: usize,
    pub end: usize,
    pub reach: Reach,
}

/// The text holds a character that folds to a trigger word's letter: scan it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fold;

/// Bytes that are a candidate whatever surrounds them: digits, `@`, `_`, `=`.
/// (`is_candidate` adds the bytes that are candidates only next to certain others.)
static STRONG: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = true;
        c += 1;
    }
    t[b'@' as usize] = true;
    t[b'_' as usize] = true;
    t[b'=' as usize] = true;
    t
};

/// Whether `b[k]` may be where `trigger_at` finds a trigger: a `STRONG` byte, or a byte that is
/// one only with the bytes next to it, as `trigger_at` needs them (so most `s`, `w`, `A`, `-`
/// and `:` of prose are not candidates):
/// - `:` before a hex digit, `:` or `/`;
/// - `-` before `-` (`-----BEGIN`) or after one of `k t a b p r s` (`sk-`, `glpat-`, `xox?-`);
/// - `A` before `K S B C` (`AKIA`, `ASIA`, `ABIA`, `ACCA`); `J` after `y` (`eyJ`);
/// - `s` (any case) after `a` and before `s` (`pass…`, found at its first `s`), or before `e`
///   and then `c`, `n` or the lead byte of `ñ`/`Ñ` (`secret`, `senha`, `contraseña`);
/// - `w` (any case) before `d` (`pwd`) or before `ort` (`kennwort`);
/// - the lead bytes of `ſ` (C5 BF) and `K` (E2 84 AA), followed by the rest.
///
/// `Candidates` settles each byte its coarse SIMD mask marks with this.
fn is_candidate(b: &[u8], k: usize) -> bool {
    let Some(&c) = b.get(k) else { return false };
    if STRONG[usize::from(c)] {
        return true;
    }
    let at = |d: usize| b.get(k + d).copied().unwrap_or(0);
    let lower = |d: usize| at(d) | 0x20;
    let prev = k.checked_sub(1).and_then(|p| b.get(p)).copied().unwrap_or(0);
    match c {
        b':' => at(1).is_ascii_hexdigit() || matches!(at(1), b':' | b'/'),
        b'-' => at(1) == b'-' || b"ktabprs".contains(&prev),
        b'A' => matches!(at(1), b'K' | b'S' | b'B' | b'C'),
        b'J' => prev == b'y',
        b's' | b'S' => {
            (lower(1) == b's' && prev | 0x20 == b'a')
                || (lower(1) == b'e' && (matches!(lower(2), b'c' | b'n') || at(2) == 0xC3))
        }
        b'w' | b'W' => lower(1) == b'd' || (lower(1) == b'o' && lower(2) == b'r' && lower(3) == b't'),
        0xC5 => at(1) == 0xBF,
        0xE2 => at(1) == 0x84 && at(2) == 0xAA,
        _ => false,
    }
}

/// The candidates of a text in order (`is_candidate`). On x86_64 (the baseline SSE2) a coarse
/// mask of sixteen bytes a step marks the bytes that may be one (`sse2::coarse`: the lead bytes,
/// and `s`/`w` before the letters that can follow them in a trigger word), and each marked byte
/// is settled by `is_candidate`; its bits are taken one by one, so a candidate costs no new
/// step. Other targets take the byte loop.
///
/// Hand-rolled: prose has a candidate every few dozen bytes; this costs ~5 instructions a byte
/// of prose under callgrind, settling included (8.8k for the 1.7 KB of text of the load
/// runner's 1.9 KB body), against ~10 for a byte-table loop and ~8-11 for the automaton itself.
/// Settling the coarse bytes here (the bytes around `s`, `w`, `A`, `-` and `:`) rather than in
/// `trigger_at`, and taking a step's bits one by one rather than starting a new step after each
/// candidate, took that body from 36 candidates to 17 and the scan's own instructions from
/// 11.5k to 10.3k.
pub struct Candidates<'a> {
    b: &'a [u8],
    /// The next byte no step has looked at.
    next: usize,
    /// Coarse candidates of the last step not yet settled, as bits from `base`.
    mask: u32,
    base: usize,
}

impl<'a> Candidates<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Candidates {
            b,
            next: 0,
            mask: 0,
            base: 0,
        }
    }
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            while self.mask != 0 {
                let k = self.base + self.mask.trailing_zeros() as usize;
                self.mask &= self.mask - 1;
                if is_candidate(self.b, k) {
                    return Some(k);
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                // The steps up to the next one with a mark, in locals (a tight loop).
                let b = self.b;
                let mut i = self.next;
                let mask = loop {
                    if let Some(w) = b.get(i..i + 17) {
                        let m = sse2::coarse(w);
                        if m != 0 {
                            break m;
                        }
                        i += 16;
                        continue;
                    }
                    if i >= b.len() {
                        self.next = i;
                        return None;
                    }
                    // The last bytes, padded with zeros (no candidate, and no byte of a pair):
                    // the bits past the end are dropped.
                    let mut w = [0u8; 17];
                    let rest = &b[i..];
                    w[..rest.len()].copy_from_slice(rest);
                    break sse2::coarse(&w) & ((1u32 << rest.len()) - 1);
                };
                self.mask = mask;
                self.base = i;
                self.next = i + 16;
                continue;
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                let k = (self.next..self.b.len()).find(|&k| is_candidate(self.b, k))?;
                self.next = k + 1;
                return Some(k);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8,
    };

    /// Bit k set: `w[k]` may be a candidate (every `is_candidate` byte is marked), for k in
    /// 0..16: a digit, `:`, `@`, `-`, `_`, `=`, `A`, `J`, the lead bytes of `ſ` and `K`, an `s`
    /// before `s` or `e`, a `w` before `o` or `d` (any case). `w` holds at least 17 bytes: the
    /// sixteen and the byte after the last, for the pairs.
    pub fn coarse(w: &[u8]) -> u32 {
        assert!(w.len() >= 17);
        // SAFETY: SSE2 is part of the x86_64 baseline, so the target feature is always there.
        unsafe { coarse_sse2(w) }
    }

    #[target_feature(enable = "sse2")]
    fn coarse_sse2(w: &[u8]) -> u32 {
        // SAFETY: two unaligned 16-byte loads inside `w`, at 0 and at 1 (`w.len() >= 17`).
        let (v, n) = unsafe {
            (
                _mm_loadu_si128(w.as_ptr().cast::<__m128i>()),
                _mm_loadu_si128(w.as_ptr().add(1).cast::<__m128i>()),
            )
        };
        macro_rules! set {
            ($c:expr) => {
                _mm_set1_epi8($c as i8)
            };
        }
        macro_rules! eq {
            ($x:expr, $c:expr) => {
                _mm_cmpeq_epi8($x, set!($c))
            };
        }
        // `0`..=`:` as one range: x + 0x50 maps it to 0x80..=0x8A, the lowest signed bytes.
        let digit = _mm_cmplt_epi8(_mm_add_epi8(v, set!(0x50u8)), set!(0x8Bu8));
        let strong = _mm_or_si128(
            _mm_or_si128(
                _mm_or_si128(digit, eq!(v, b'@')),
                _mm_or_si128(eq!(v, b'-'), eq!(v, b'_')),
            ),
            _mm_or_si128(
                _mm_or_si128(eq!(v, b'='), eq!(v, b'A')),
                _mm_or_si128(eq!(v, b'J'), _mm_or_si128(eq!(v, 0xC5u8), eq!(v, 0xE2u8))),
            ),
        );
        let lv = _mm_or_si128(v, set!(0x20u8));
        let ln = _mm_or_si128(n, set!(0x20u8));
        let s = _mm_and_si128(eq!(lv, b's'), _mm_or_si128(eq!(ln, b's'), eq!(ln, b'e')));
        let w = _mm_and_si128(eq!(lv, b'w'), _mm_or_si128(eq!(ln, b'o'), eq!(ln, b'd')));
        _mm_movemask_epi8(_mm_or_si128(strong, _mm_or_si128(s, w))) as u32
    }
}

/// `b[at..]` starts with `lit` (exactly).
fn eq(b: &[u8], at: usize, lit: &[u8]) -> bool {
    b.get(at..).is_some_and(|r| r.starts_with(lit))
}

/// `b[at..]` starts with `lit` (lower case ASCII), ignoring ASCII case.
fn eq_ci(b: &[u8], at: usize, lit: &[u8]) -> bool {
    b.get(at..at + lit.len()).is_some_and(|r| r.eq_ignore_ascii_case(lit))
}

/// `b[..at]` ends with `lit` exactly: `lit` starts at `at - lit.len()`.
fn before(b: &[u8], at: usize, lit: &[u8]) -> bool {
    at.checked_sub(lit.len()).is_some_and(|s| eq(b, s, lit))
}

fn word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// No ASCII word character at `e` (the patterns' word boundary after a password word).
fn ends_word(b: &[u8], e: usize) -> bool {
    !b.get(e).copied().is_some_and(word_byte)
}

/// The trigger whose bytes include `b[i]`, a byte `Candidates` stopped at.
pub fn trigger_at(b: &[u8], i: usize) -> Result<Option<Trigger>, Fold> {
    let t = |start: usize, end: usize, reach: Reach| Ok(Some(Trigger { start, end, reach }));
    let Some(&c) = b.get(i) else { return Ok(None) };
    match c {
        b'0'..=b'9' | b'@' => t(i, i + 1, Reach::Bytes(AFTER_CHAR)),
        b':' if b
            .get(i + 1)
            .is_some_and(|&n| n.is_ascii_hexdigit() || n == b':' || n == b'/') =>
        {
            t(i, i + 1, Reach::Bytes(AFTER_CHAR))
        }
        b'-' if eq(b, i, b"-----BEGIN") => t(i, i + 10, Reach::Line),
        b'-' if before(b, i, b"sk")
            || before(b, i, b"glpat")
            || i.checked_sub(1)
                .is_some_and(|j| before(b, j, b"xox") && b"abprs".contains(&b[j])) =>
        {
            t(i, i + 1, Reach::Word)
        }
        b'_' if (i >= 3 && before(b, i - 1, b"gh") && b"pousr".contains(&b[i - 1]))
            || (before(b, i, b"github") && eq(b, i, b"_pat_"))
            || ((before(b, i, b"sk") || before(b, i, b"rk")) && (eq(b, i + 1, b"live_") || eq(b, i + 1, b"test_"))) =>
        {
            t(i, i + 1, Reach::Word)
        }
        b'_' if before(b, i, b"private") && eq(b, i, b"_key_id") => t(i, i + 7, Reach::Visible(AFTER_GCP)),
        b'=' if before(b, i, b"AccountKey") || before(b, i, b"SharedAccessKey") => t(i, i + 1, Reach::Word),
        b's' | b'S' => Ok(password_or_secret(b, i)),
        b'w' | b'W' => {
            // `pwd`, `kennwort` (the other password words are found at their `s`).
            if i >= 1 && eq_ci(b, i - 1, b"pwd") && ends_word(b, i + 2) {
                t(i - 1, i + 2, Reach::Visible(AFTER_PASSWORD))
            } else if i >= 4 && eq_ci(b, i - 4, b"kennwort") && ends_word(b, i + 4) {
                t(i - 4, i + 4, Reach::Visible(AFTER_PASSWORD))
            } else {
                Ok(None)
            }
        }
        b'A' if eq(b, i, b"AKIA") || eq(b, i, b"ASIA") || eq(b, i, b"ABIA") || eq(b, i, b"ACCA") => {
            t(i, i + 4, Reach::Word)
        }
        b'J' if before(b, i, b"ey") => t(i - 2, i + 1, Reach::Word),
        0xC5 if b.get(i + 1) == Some(&0xBF) => Err(Fold),
        0xE2 if eq(b, i, "\u{212A}".as_bytes()) => Err(Fold),
        _ => Ok(None),
    }
}

/// The password words and `secret`, at one of their `s`.
fn password_or_secret(b: &[u8], i: usize) -> Option<Trigger> {
    // Each word has `ss` or `se` at the `s` it is found at: most `s` stop here.
    if !matches!(b.get(i + 1).map(|c| c | 0x20), Some(b's' | b'e')) {
        return None;
    }
    let password = |start: usize, end: usize| {
        ends_word(b, end).then_some(Trigger {
            start,
            end,
            reach: Reach::Visible(AFTER_PASSWORD),
        })
    };
    // `pass` and what extends it, found at its first `s`. `pass` and `passe` alone start a word
    // (`compass = 3` is not a password); `password`, `passwd`, `passwort` may end one.
    if i >= 2 && eq_ci(b, i - 2, b"pass") {
        let rest = [&b"word"[..], b"wort", b"wd", b"e"]
            .iter()
            .find(|w| eq_ci(b, i + 2, w))
            .map_or(0, |w| w.len());
        let starts_word = !(i - 2)
            .checked_sub(1)
            .and_then(|p| b.get(p))
            .copied()
            .is_some_and(word_byte);
        if rest <= 1 && !starts_word {
            return None;
        }
        return password(i - 2, i + 2 + rest);
    }
    if eq_ci(b, i, b"secret") {
        return Some(Trigger {
            start: i,
            end: i + 6,
            reach: Reach::Bytes(AFTER_SECRET),
        });
    }
    if eq_ci(b, i, b"senha") {
        return password(i, i + 5);
    }
    // `contraseña` / `CONTRASEÑA`, at its `s`.
    if i >= 6
        && eq_ci(b, i - 6, b"contra")
        && eq_ci(b, i + 1, b"e")
        && (eq(b, i + 2, "ñ".as_bytes()) || eq(b, i + 2, "Ñ".as_bytes()))
        && eq_ci(b, i + 4, b"a")
    {
        return password(i - 6, i + 5);
    }
    None
}

/// The whitespace character starting at `i`, as its length (0: none, or the end).
fn ws_at(text: &str, i: usize) -> usize {
    match text.as_bytes().get(i) {
        None => 0,
        Some(&c) if c < 0x80 => usize::from(matches!(c, b' ' | b'\t'..=b'\r')),
        Some(_) => text
            .get(i..)
            .and_then(|r| r.chars().next())
            .filter(|c| c.is_whitespace())
            .map_or(0, char::len_utf8),
    }
}

/// The character ending at `i`: its length and whether it is whitespace (None: `i` is 0).
fn char_before(text: &str, i: usize) -> Option<(usize, bool)> {
    let b = text.as_bytes();
    let c = *b.get(i.checked_sub(1)?)?;
    if c < 0x80 {
        return Some((1, matches!(c, b' ' | b'\t'..=b'\r')));
    }
    let ch = text.get(..i)?.chars().next_back()?;
    Some((ch.len_utf8(), ch.is_whitespace()))
}

/// Printable ASCII and non-ASCII bytes: not ASCII whitespace (a non-ASCII byte may still begin
/// a whitespace character, which `ws_at` / `char_before` decode).
fn plain(c: u8) -> bool {
    c > b' '
}

/// The start of the word holding `i` (a char boundary).
pub fn word_start(text: &str, mut i: usize) -> usize {
    let b = text.as_bytes();
    loop {
        // Printable ASCII a byte at a time; anything else decoded.
        while i > 0 && plain(b[i - 1]) && b[i - 1] < 0x80 {
            i -= 1;
        }
        match char_before(text, i) {
            Some((len, false)) => i -= len,
            _ => return i,
        }
    }
}

/// The end of the word holding the byte before `i` (a char boundary), or `i` at whitespace.
pub fn word_end(text: &str, mut i: usize) -> usize {
    let b = text.as_bytes();
    loop {
        while i < b.len() && plain(b[i]) && b[i] < 0x80 {
            i += 1;
        }
        if i >= b.len() || ws_at(text, i) > 0 {
            return i;
        }
        i += text.get(i..).and_then(|r| r.chars().next()).map_or(1, char::len_utf8);
    }
}

/// Where a window starts for a trigger in the word starting at `start`: `BACK` bytes before it
/// (on a char boundary). The window may start inside a word: the automaton's look-behind sees
/// the text before its range.
pub fn back(text: &str, start: usize) -> usize {
    let mut i = start.saturating_sub(BACK);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Where a window ends for a trigger whose word ends at `end` (a char boundary).
pub fn forward(text: &str, end: usize, reach: Reach) -> usize {
    match reach {
        Reach::Word => end,
        Reach::Bytes(n) => {
            let mut i = end.saturating_add(n).min(text.len());
            while !text.is_char_boundary(i) {
                i += 1;
            }
            i
        }
        Reach::Line => text
            .as_bytes()
            .get(end..)
            .and_then(|r| memchr::memchr(b'\n', r))
            .map_or(text.len(), |k| end + k),
        Reach::Visible(budget) => {
            let mut i = end;
            let mut left = budget;
            while i < text.len() {
                if left == 0 {
                    return word_end(text, i);
                }
                let ws = ws_at(text, i);
                if ws > 0 {
                    i += ws;
                    continue;
                }
                let len = text.get(i..).and_then(|r| r.chars().next()).map_or(1, char::len_utf8);
                left = left.saturating_sub(len);
                i += len;
            }
            i
        }
    }
}

/// The windows of one text, trigger by trigger: the word of the last trigger and its window's
/// bounds are kept, so the digits of one number cost one walk, not one each.
#[derive(Default)]
pub struct Windows {
    word: Option<(usize, usize)>,
    start: usize,
    ends: Option<(Reach, usize)>,
}

impl Windows {
    /// The window of trigger `t` of `text`.
    pub fn of(&mut self, text: &str, t: Trigger) -> (usize, usize) {
        let same = self.word.is_some_and(|(s, e)| s <= t.start && t.end <= e);
        if !same {
            let (s, e) = (word_start(text, t.start), word_end(text, t.end));
            self.word = Some((s, e));
            self.start = back(text, s);
            self.ends = None;
        }
        let Some((_, word_end)) = self.word else {
            return (t.start, t.end);
        };
        let end = match self.ends {
            Some((r, e)) if r == t.reach => e,
            _ => {
                let e = forward(text, word_end, t.reach);
                self.ends = Some((t.reach, e));
                e
            }
        };
        (self.start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triggers(text: &str) -> Result<Vec<(String, Reach)>, Fold> {
        let b = text.as_bytes();
        let mut out = Vec::new();
        for j in Candidates::new(b) {
            if let Some(t) = trigger_at(b, j)? {
                out.push((text[t.start..t.end].to_string(), t.reach));
            }
        }
        Ok(out)
    }

    /// Bytes around which candidates and triggers hide, and the trigger words themselves.
    fn tricky() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let byte = prop_oneof![
            any::<u8>(),
            proptest::sample::select(
                b"sSeEwWoOdDrRtTcCnNpPaAkKbByYJ09:@-_=/ \xc5\xe2\xbf\x84\xaa\xc3\xb1\x91fF".to_vec()
            ),
        ];
        let word = proptest::sample::select(vec![
            &b"pass"[..],
            b"PASSWORD",
            b"secret",
            b"senha",
            "contraseña".as_bytes(),
            "CONTRASEÑA".as_bytes(),
            b"kennwort",
            b"pwd",
            b"AKIA",
            b"ACCA",
            b"eyJ",
            b"sk-",
            b"glpat-",
            b"xoxb-",
            b"-----BEGIN",
            b"gh_",
            b"::1",
            b"fe:80",
            b"https://",
            "\u{17f}".as_bytes(),
            "\u{212a}".as_bytes(),
        ])
        .prop_map(<[u8]>::to_vec);
        proptest::collection::vec(prop_oneof![byte.prop_map(|b| vec![b]), word], 0..40).prop_map(|parts| parts.concat())
    }

    proptest::proptest! {
        /// The SIMD search yields exactly the bytes the byte loop marks, in order.
        #[test]
        fn candidates_are_what_the_byte_loop_finds(b in tricky()) {
            let naive: Vec<usize> = (0..b.len()).filter(|&k| is_candidate(&b, k)).collect();
            proptest::prop_assert_eq!(Candidates::new(&b).collect::<Vec<_>>(), naive);
        }

        /// Every byte where `trigger_at` finds a trigger (or a folding character) is a
        /// candidate: looking at the neighbours in the search loses no trigger.
        #[test]
        fn every_trigger_is_at_a_candidate(b in tricky()) {
            for k in 0..b.len() {
                if trigger_at(&b, k) != Ok(None) {
                    proptest::prop_assert!(is_candidate(&b, k), "byte {} of {:?}", k, String::from_utf8_lossy(&b));
                }
            }
        }
    }

    #[test]
    fn the_triggers_are_found_and_their_look_alikes_are_not() {
        let words = |t: &str| triggers(t).unwrap().into_iter().map(|(w, _)| w).collect::<Vec<_>>();
        assert_eq!(words("a passenger passed the compass"), Vec::<String>::new());
        assert_eq!(
            words("pass=x PASSWORD: y db_passwd=z Passwort ist w mot de passe est v"),
            ["pass", "PASSWORD", "passwd", "Passwort", "passe"]
        );
        assert_eq!(words("pwd=1"), ["pwd", "1"]);
        assert_eq!(
            words("Kennwort: a, CONTRASEÑA: b, contraseña es c, senha: d"),
            ["Kennwort", "CONTRASEÑA", "contraseña", "senha"]
        );
        assert_eq!(words("my secretary"), ["secret"]);
        assert_eq!(
            words("AKIA ASIA eyJ sk- glpat- xoxb- ghp_ github_pat_ sk_live_ rk_test_ AccountKey= SharedAccessKey= private_key_id -----BEGIN"),
            ["AKIA", "ASIA", "eyJ", "-", "-", "-", "_", "_", "_", "_", "=", "=", "_key_id", "-----BEGIN"]
        );
        assert_eq!(
            words("well-known snake_case a=b Note: see :) http://x ::1 fe:80"),
            [":", ":", ":", "1", ":", "8", "0"]
        );
        assert_eq!(triggers("paſsword"), Err(Fold));
        assert_eq!(triggers("\u{212A}ennwort"), Err(Fold));
    }

    #[test]
    fn windows_reach_back_and_forward_by_the_triggers_reach() {
        let text = format!("{} aa bb  cc\u{a0}dd 1234 ee ff{}", "x".repeat(200), "y".repeat(100));
        let at = text.find("1234").unwrap();
        assert_eq!(word_start(&text, at + 2), at);
        assert_eq!(word_end(&text, at + 2), at + 4);
        // The no-break space is whitespace (as `\s` is): `cc` and `dd` are two words.
        let dd = text.find("dd").unwrap();
        assert_eq!(word_start(&text, dd + 1), dd);
        // Back: BACK bytes, on a char boundary; forward: the reach's bytes.
        assert_eq!(back(&text, at), at - BACK);
        assert_eq!(back("é1", 2), 0);
        assert_eq!(back(&format!("{}1", "é".repeat(100)), 200), 40);
        assert_eq!(forward(&text, at + 4, Reach::Bytes(AFTER_CHAR)), at + 4 + AFTER_CHAR);
        assert_eq!(forward("1é", 1, Reach::Bytes(1)), 3);
        assert_eq!(forward(&text, at + 4, Reach::Word), at + 4);
        // Visible: whitespace is free, and the word reached is taken whole.
        let pw = format!("pwd{}= {}", " ".repeat(900), "v".repeat(600));
        assert_eq!(forward(&pw, 3, Reach::Visible(AFTER_PASSWORD)), pw.len());
        let short = format!("pwd = {} next", "v".repeat(600));
        assert_eq!(forward(&short, 3, Reach::Visible(AFTER_PASSWORD)), short.len() - 5);
        assert_eq!(forward("-----BEGIN RSA PRIVATE KEY-----\nMII", 10, Reach::Line), 31);
    }
}
