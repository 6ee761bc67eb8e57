//! Normalisation for the injection scorer: one pass from the raw text to the lowercase, folded
//! text the rules run on, plus flags saying which obfuscations were undone.
//!
//! Steps, in order, per character: drop invisible format characters (zero-width space and
//! joiners, word joiner, BOM, soft hyphen, bidi controls); fold fullwidth forms and mathematical
//! alphanumerics to ASCII; lowercase; curly quotes to ASCII quotes. Per word: fold Cyrillic and
//! Greek look-alikes to Latin only in words that also hold an ASCII letter (a mixed-script word;
//! plain Russian or Greek text is left alone so its own rules still match); fold leetspeak digits
//! (0 1 3 4 5 7) only in words of at most 15 characters that also hold a letter; collapse a letter repeated three or more
//! times to one. Across words: join runs of single letters split by one repeated separator
//! (`i g n o r e`, `i.g.n.o.r.e`, `i-g-n-o-r-e`, `i_g_n_o_r_e`); a longer gap ends the run.
//!
//! Invariant: the output never holds an invisible format character, and the buffers are only
//! appended to (callers reuse them, so a clean text costs no allocation after the first call).

/// Which obfuscations the pass undid (any of them is evidence of intent when a rule also fires).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Flags {
    pub invisible: bool,
    pub compat: bool,
    pub homoglyph: bool,
    pub leet: bool,
    pub spaced: bool,
    pub repeated: bool,
}

impl Flags {
    pub(super) fn any(self) -> bool {
        self.invisible || self.compat || self.homoglyph || self.leet || self.spaced || self.repeated
    }
}

/// Characters that render as nothing and only serve to split a word for a matcher.
pub(super) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fe00}'..='\u{fe0f}'
    )
}

/// Fullwidth ASCII and the mathematical alphanumeric letters and digits, to ASCII.
pub(super) fn fold_compat(c: char) -> Option<char> {
    let u = c as u32;
    let ascii = |v: u32| char::from_u32(v);
    match u {
        0xFF01..=0xFF5E => ascii(u - 0xFEE0),
        0x1D400..=0x1D6A3 => {
            let i = (u - 0x1D400) % 52;
            ascii(if i < 26 { b'a' as u32 + i } else { b'a' as u32 + i - 26 })
        }
        0x1D7CE..=0x1D7FF => ascii(b'0' as u32 + (u - 0x1D7CE) % 10),
        _ => None,
    }
}

/// A lowercase Cyrillic or Greek letter that looks like a Latin one.
pub(super) fn fold_homoglyph(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ε' => 'e',
        'һ' | 'η' => 'h',
        'і' | 'ι' | 'ί' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' | 'μ' => 'm',
        'н' => 'h',
        'ν' => 'v',
        'о' | 'ο' | 'ό' => 'o',
        'р' | 'ρ' => 'p',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' => 'u',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        'ζ' => 'z',
        _ => return None,
    })
}

/// The longest word leetspeak folding applies to.
const MAX_LEET_WORD: usize = 15;

fn fold_leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        _ => return None,
    })
}

fn is_join_separator(c: char) -> bool {
    matches!(c, ' ' | '.' | '-' | '_' | '*' | '/' | '|')
}

/// Push `n` copies of `c`, or one when a letter is repeated three or more times.
fn emit_run(out: &mut String, flags: &mut Flags, c: char, n: usize) {
    if n >= 3 && c.is_alphabetic() {
        flags.repeated = true;
        out.push(c);
        return;
    }
    for _ in 0..n {
        out.push(c);
    }
}

/// The reusable state of one pass.
struct Pass<'a> {
    out: &'a mut String,
    word: &'a mut String,
    flags: Flags,
    // Per word being collected.
    has_ascii_letter: bool,
    has_homoglyph: bool,
    has_leet_digit: bool,
    word_chars: usize,
    // Spaced-letter runs: where the last single-letter word ended in `out`, the separators seen
    // since, and the separator the current run uses.
    last_single_end: Option<usize>,
    gap: usize,
    gap_char: char,
    run_sep: Option<char>,
    run_len: usize,
}

impl Pass<'_> {
    fn flush_word(&mut self) {
        if self.word_chars == 0 {
            return;
        }
        let fold_glyphs = self.has_ascii_letter && self.has_homoglyph;
        // Leetspeak is a word's worth of letters; longer runs are identifiers, hashes or base64.
        let fold_digits =
            self.has_leet_digit && (self.has_ascii_letter || fold_glyphs) && self.word_chars <= MAX_LEET_WORD;
        let single = self.word_chars == 1;
        // Join a single letter to the previous one across exactly one separator of the run's kind.
        if single {
            let joinable = self.last_single_end.map(|e| e + 1) == Some(self.out.len())
                && self.gap == 1
                && is_join_separator(self.gap_char)
                && self.run_sep.is_none_or(|s| s == self.gap_char);
            if joinable {
                self.out.pop();
                self.run_sep = Some(self.gap_char);
                self.run_len += 1;
                if self.run_len >= 3 {
                    self.flags.spaced = true;
                }
            } else {
                self.run_sep = None;
                self.run_len = 1;
            }
        } else {
            self.run_sep = None;
            self.run_len = 0;
        }
        let (mut run_c, mut run_n) = ('\0', 0usize);
        for c in self.word.chars() {
            let mut c = c;
            if fold_glyphs {
                if let Some(f) = fold_homoglyph(c) {
                    self.flags.homoglyph = true;
                    c = f;
                }
            }
            if fold_digits {
                if let Some(f) = fold_leet(c) {
                    self.flags.leet = true;
                    c = f;
                }
            }
            if c == run_c {
                run_n += 1;
                continue;
            }
            emit_run(self.out, &mut self.flags, run_c, run_n);
            (run_c, run_n) = (c, 1);
        }
        emit_run(self.out, &mut self.flags, run_c, run_n);
        self.last_single_end = if single { Some(self.out.len()) } else { None };
        self.word.clear();
        self.word_chars = 0;
        self.has_ascii_letter = false;
        self.has_homoglyph = false;
        self.has_leet_digit = false;
        self.gap = 0;
    }
}

/// Normalise `src` into `out` (cleared first), using `word` as scratch. Returns what was undone.
pub(super) fn normalize_into(src: &str, out: &mut String, word: &mut String) -> Flags {
    out.clear();
    word.clear();
    let mut p = Pass {
        out,
        word,
        flags: Flags::default(),
        has_ascii_letter: false,
        has_homoglyph: false,
        has_leet_digit: false,
        word_chars: 0,
        last_single_end: None,
        gap: 0,
        gap_char: ' ',
        run_sep: None,
        run_len: 0,
    };
    let mut in_word_invisible = false;
    for raw in src.chars() {
        if is_invisible(raw) {
            if p.word_chars > 0 {
                in_word_invisible = true;
            }
            continue;
        }
        let c = match fold_compat(raw) {
            Some(f) => {
                // Fullwidth punctuation is ordinary CJK typography; only folded letters and
                // digits are an obfuscation.
                if f.is_ascii_alphanumeric() {
                    p.flags.compat = true;
                }
                f
            }
            None => raw,
        };
        if c.is_alphanumeric() {
            if in_word_invisible {
                p.flags.invisible = true;
                in_word_invisible = false;
            }
            for l in c.to_lowercase() {
                if l.is_ascii_alphabetic() {
                    p.has_ascii_letter = true;
                } else if l.is_ascii_digit() {
                    if fold_leet(l).is_some() {
                        p.has_leet_digit = true;
                    }
                } else if fold_homoglyph(l).is_some() {
                    p.has_homoglyph = true;
                }
                p.word.push(l);
            }
            p.word_chars += 1;
        } else {
            in_word_invisible = false;
            p.flush_word();
            let c = match c {
                '\u{2018}' | '\u{2019}' | '\u{02bc}' => '\'',
                '\u{201c}' | '\u{201d}' | '\u{00ab}' | '\u{00bb}' => '"',
                _ => c,
            };
            p.gap += 1;
            p.gap_char = c;
            p.out.push(c);
        }
    }
    p.flush_word();
    p.flags
}
