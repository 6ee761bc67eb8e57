//! The prefilter of the injection scorer: decides, on the raw text and without allocating, that a
//! text cannot score above 0, so the normaliser, the decoder and the rule set are skipped.
//!
//! A text is clean when (1) `needs_full_path` is false: one pass over the bytes finds nothing
//! the normaliser would change beyond the case of ASCII letters (no invisible or fullwidth
//! character, no curly quote, no non-ASCII capital, no look-alike or leetspeak digit inside a
//! Latin word, no letter three times in a row, no spaced-out single letters), no base64/hex run
//! worth decoding and no rot13 announcement; and (2) the trigger automata find none of the
//! literals every rule needs one of (`rules::triggers`). A text that is not clean takes the full
//! path, where the same automata run over the normalised text and the rule set only runs when
//! they hit there.
//!
//! Invariant (tested over every fixture, random Unicode strings and random mixes of attack
//! words): the scorer with the prefilter returns exactly the verdict it returns without it. It
//! holds because (1) makes the normalised text equal to the raw text up to ASCII case, which the
//! automata ignore, and each rule needs one trigger literal to match at all. Word boundaries on
//! short literals ("dan", "ai") are checked against ASCII word characters only, which can only
//! accept more than the rules' Unicode `\b`.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::decode;
use super::normalize::{fold_compat, fold_homoglyph, is_invisible};

/// One automaton and, per literal, whether it needs a word boundary before and after.
struct Set {
    ac: Option<AhoCorasick>,
    bounds: Vec<(bool, bool)>,
}

impl Set {
    fn new(literals: &[&str], kind: Option<AhoCorasickKind>) -> Set {
        let mut pats = Vec::with_capacity(literals.len());
        let mut bounds = Vec::with_capacity(literals.len());
        for lit in literals {
            let (left, rest) = match lit.strip_prefix('^') {
                Some(r) => (true, r),
                None => (false, *lit),
            };
            let (right, pat) = match rest.strip_suffix('$') {
                Some(p) => (true, p),
                None => (false, rest),
            };
            pats.push(pat);
            bounds.push((left, right));
        }
        let build = |kind| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(kind)
                .build(&pats)
        };
        let ac = build(kind).or_else(|_| build(None)).ok();
        Set { ac, bounds }
    }

    fn hits(&self, text: &str) -> bool {
        let Some(ac) = &self.ac else {
            return true;
        };
        let bytes = text.as_bytes();
        // A boundary fails only next to an ASCII word character: a non-ASCII letter also fails
        // the rules' Unicode `\b`, so accepting it is the safe side.
        let word = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        ac.find_overlapping_iter(text).any(|m| {
            let (left, right) = self.bounds.get(m.pattern().as_usize()).copied().unwrap_or_default();
            let left_fails = left && m.start() > 0 && word(m.start() - 1);
            let right_fails = right && word(m.end());
            !left_fails && !right_fails
        })
    }
}

/// The trigger literals as two automata: the ASCII ones (small enough for a cache-resident DFA,
/// the only one an ASCII text needs) and the others, searched only in texts that hold non-ASCII.
pub(super) struct Triggers {
    ascii: Set,
    other: Set,
}

impl Triggers {
    /// Build from literals in the `rules::TRIGGERS` syntax (`^` and `$` ask for word boundaries).
    /// If an automaton cannot be built every text counts as a hit (slower, never less safe).
    pub(super) fn new(literals: &[String]) -> Triggers {
        let (ascii, other): (Vec<&str>, Vec<&str>) = literals.iter().map(String::as_str).partition(|l| l.is_ascii());
        Triggers {
            ascii: Set::new(&ascii, Some(AhoCorasickKind::DFA)),
            other: Set::new(&other, None),
        }
    }

    /// Whether any trigger occurs in `text` (ASCII case ignored), respecting its boundaries.
    pub(super) fn hits(&self, text: &str) -> bool {
        self.ascii.hits(text) || (!text.is_ascii() && self.other.hits(text))
    }
}

/// Curly quotes and guillemets the normaliser folds to ASCII quotes.
fn is_folded_quote(c: char) -> bool {
    matches!(
        c,
        '\u{2018}' | '\u{2019}' | '\u{02bc}' | '\u{201c}' | '\u{201d}' | '\u{00ab}' | '\u{00bb}'
    )
}

/// Separators across which the normaliser joins single letters (see `normalize`).
fn is_join_separator(c: char) -> bool {
    matches!(c, ' ' | '.' | '-' | '_' | '*' | '/' | '|')
}

/// Per-word state of `needs_full_path`.
#[derive(Default)]
struct Word {
    len: usize,
    ascii_letter: bool,
    leet_or_glyph: bool,
    run_char: char,
    run_len: usize,
    gap_before: usize,
    gap_char_before: char,
}

/// The word-level part of the scan: normalisation changes nothing but ASCII case.
#[derive(Default)]
struct Words {
    word: Word,
    in_word: bool,
    prev_single: bool,
    gap: usize,
    gap_char: char,
}

impl Words {
    /// A character that is not part of a word. Returns true when the word it ends would be
    /// joined to the previous single letter.
    fn separator(&mut self, c: char) -> bool {
        let joins = self.in_word && self.end_word();
        self.gap += 1;
        self.gap_char = c;
        joins
    }

    fn end_word(&mut self) -> bool {
        let w = &self.word;
        let single = w.len == 1;
        let joins = single && self.prev_single && w.gap_before == 1 && is_join_separator(w.gap_char_before);
        self.prev_single = single;
        self.in_word = false;
        self.gap = 0;
        joins
    }

    /// A word character, already lowercase (`glyph`: a Cyrillic/Greek look-alike). Returns true
    /// when normalisation would fold or collapse something.
    fn letter(&mut self, lower: char, glyph: bool) -> bool {
        if !self.in_word {
            self.in_word = true;
            self.word = Word {
                gap_before: self.gap,
                gap_char_before: self.gap_char,
                ..Word::default()
            };
        }
        let w = &mut self.word;
        w.len += 1;
        w.ascii_letter |= lower.is_ascii_alphabetic();
        w.leet_or_glyph |= glyph || matches!(lower, '0' | '1' | '3' | '4' | '5' | '7');
        if w.ascii_letter && w.leet_or_glyph {
            return true;
        }
        if lower == w.run_char {
            w.run_len += 1;
            w.run_len >= 3 && lower.is_alphabetic()
        } else {
            w.run_char = lower;
            w.run_len = 1;
            false
        }
    }
}

/// A run of base64 characters being scanned (mirrors `decode::has_candidate_run`).
#[derive(Default)]
struct B64Run {
    len: usize,
    letters: bool,
    not_lower: bool,
}

impl B64Run {
    /// The run ends at a byte that is not base64 (`padded`: an `=`). Whether `decode::candidates`
    /// might try it.
    fn end(&mut self, padded: bool) -> bool {
        let worth = self.letters && self.len + 2 >= decode::MIN_RUN && (self.not_lower || padded);
        *self = B64Run::default();
        worth
    }
}

/// Whether the scorer must take the full path for `text` before even looking for triggers: in
/// one pass over the bytes, normalising it could change more than the case of ASCII letters
/// (any invisible or fullwidth character, curly quote, non-ASCII capital, look-alike or
/// leetspeak digit in a word with a Latin letter, letter three times in a row, single letters
/// joined by one separator), or it holds a base64/hex run worth decoding, or it announces rot13.
/// Errs on the side of true; never false when any of those holds.
pub(super) fn needs_full_path(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut words = Words::default();
    let mut run = B64Run::default();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii() {
            if decode::is_b64(b) {
                run.len += 1;
                run.letters |= b.is_ascii_alphabetic();
                run.not_lower |= !b.is_ascii_lowercase();
            } else if run.len > 0 && run.end(b == b'=') {
                return true;
            }
            if (b | 0x20) == b'r' && bytes.get(i..i + 5).is_some_and(decode::is_rot13_window) {
                return true;
            }
            let hit = if b.is_ascii_alphanumeric() {
                words.letter(b.to_ascii_lowercase() as char, false)
            } else {
                words.separator(b as char)
            };
            if hit {
                return true;
            }
            i += 1;
            continue;
        }
        if run.len > 0 && run.end(false) {
            return true;
        }
        let Some(c) = text.get(i..).and_then(|s| s.chars().next()) else {
            return true;
        };
        i += c.len_utf8();
        if is_invisible(c) || fold_compat(c).is_some() || is_folded_quote(c) {
            return true;
        }
        let hit = if c.is_alphanumeric() {
            let mut lower = c.to_lowercase();
            if lower.next() != Some(c) || lower.next().is_some() {
                return true;
            }
            words.letter(c, fold_homoglyph(c).is_some())
        } else {
            words.separator(c)
        };
        if hit {
            return true;
        }
    }
    (run.len > 0 && run.end(false)) || (words.in_word && words.end_word())
}
