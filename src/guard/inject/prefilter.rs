//! The prefilter of the injection scorer: decides, on the raw text and without allocating, that a
//! text cannot score above 0, so the normaliser, the decoder and the rule set are skipped.
//!
//! A text is clean when (1) normalising it would only lowercase ASCII letters
//! (`needs_normalising` is false: no invisible or fullwidth character, no curly quote, no
//! non-ASCII capital, no look-alike or leetspeak digit inside a Latin word, no letter three times
//! in a row, no spaced-out single letters), (2) it holds no base64/hex run worth decoding and
//! does not announce rot13, and (3) the trigger automaton finds none of the literals every rule
//! needs one of (`rules::triggers`). The same automaton runs again over the normalised text of
//! a text that is not clean, and the rule set only runs when it hits there.
//!
//! Invariant (tested over every fixture and a property test of random mixes of attack words):
//! the scorer with the prefilter returns exactly the verdict it returns without it. It holds
//! because (1) makes the normalised text equal to the raw text up to ASCII case, which the
//! automaton ignores, and each rule needs one trigger literal to match at all.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::normalize::{fold_compat, fold_homoglyph, is_invisible};

/// The trigger automaton and, per literal, whether it needs a word boundary before and after.
pub(super) struct Triggers {
    ac: Option<AhoCorasick>,
    bounds: Vec<(bool, bool)>,
}

impl Triggers {
    /// Build from literals in the `rules::TRIGGERS` syntax (`^` and `$` ask for word boundaries).
    /// If the automaton cannot be built every text counts as a hit (slower, never less safe).
    pub(super) fn new(literals: &[String]) -> Triggers {
        let mut pats = Vec::with_capacity(literals.len());
        let mut bounds = Vec::with_capacity(literals.len());
        for lit in literals {
            let (left, rest) = match lit.strip_prefix('^') {
                Some(r) => (true, r),
                None => (false, lit.as_str()),
            };
            let (right, pat) = match rest.strip_suffix('$') {
                Some(p) => (true, p),
                None => (false, rest),
            };
            pats.push(pat.to_string());
            bounds.push((left, right));
        }
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&pats)
            .or_else(|_| {
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&pats)
            })
            .ok();
        Triggers { ac, bounds }
    }

    /// Whether any trigger occurs in `text` (ASCII case ignored), respecting its boundaries.
    pub(super) fn hits(&self, text: &str) -> bool {
        let Some(ac) = &self.ac else {
            return true;
        };
        let bytes = text.as_bytes();
        // A boundary fails only next to an ASCII word character: a non-ASCII letter also fails
        // the rules' Unicode `\b`, so accepting it is the safe side.
        let word = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        ac.find_overlapping_iter(text).any(|m| {
            let (left, right) = self.bounds.get(m.pattern().as_usize()).copied().unwrap_or_default();
            !(left && m.start() > 0 && word(m.start() - 1)) && !(right && word(m.end()))
        })
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

/// Per-word state of `needs_normalising`.
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

/// Whether normalising `text` could change more than the case of ASCII letters. Errs on the side
/// of true (e.g. any digit-and-letter word, any single letters joined by one separator).
pub(super) fn needs_normalising(text: &str) -> bool {
    let mut word = Word::default();
    let mut in_word = false;
    let mut prev_single = false;
    let (mut gap, mut gap_char) = (0usize, ' ');
    let end_word = |word: &Word, prev_single: &mut bool| -> bool {
        let single = word.len == 1;
        let joins = single && *prev_single && word.gap_before == 1 && is_join_separator(word.gap_char_before);
        *prev_single = single;
        joins
    };
    for c in text.chars() {
        let (alnum, lower) = if c.is_ascii() {
            (c.is_ascii_alphanumeric(), c.to_ascii_lowercase())
        } else {
            if is_invisible(c) || fold_compat(c).is_some() || is_folded_quote(c) {
                return true;
            }
            let alnum = c.is_alphanumeric();
            if alnum {
                let mut lower = c.to_lowercase();
                if lower.next() != Some(c) || lower.next().is_some() {
                    return true;
                }
            }
            (alnum, c)
        };
        if !alnum {
            if in_word {
                if end_word(&word, &mut prev_single) {
                    return true;
                }
                in_word = false;
                gap = 0;
            }
            gap += 1;
            gap_char = c;
            continue;
        }
        if !in_word {
            in_word = true;
            word = Word {
                gap_before: gap,
                gap_char_before: gap_char,
                ..Word::default()
            };
        }
        word.len += 1;
        word.ascii_letter |= lower.is_ascii_alphabetic();
        word.leet_or_glyph |= matches!(lower, '0' | '1' | '3' | '4' | '5' | '7') || fold_homoglyph(lower).is_some();
        if word.ascii_letter && word.leet_or_glyph {
            return true;
        }
        if lower == word.run_char {
            word.run_len += 1;
            if word.run_len >= 3 && lower.is_alphabetic() {
                return true;
            }
        } else {
            word.run_char = lower;
            word.run_len = 1;
        }
    }
    in_word && end_word(&word, &mut prev_single)
}
