//! An exact, fast token counter for ASCII text under tiktoken's `o200k_base` encoding.
//!
//! tiktoken splits text into pieces with a regex (`O200K_BASE_PAT_STR`) and byte-pair-encodes
//! each piece. The regex needs `fancy-regex` (it has a look-ahead) and is about half of
//! tiktoken's cost; the other half is byte-pair encoding pieces that are already one token.
//! For ASCII text the regex reduces to six byte classes, so [`Pieces`] splits with a hand-written
//! scanner that reproduces the regex's leftmost-first, backtracking choice exactly, and a piece
//! that is itself a token is counted with one hash lookup. Other pieces go through tiktoken's own
//! byte-pair merge (`byte_pair_split`) with the same ranks, so the count equals `encode_ordinary(text).len()`.
//! The property tests below check the pieces against the regex itself and the counts against
//! tiktoken on arbitrary ASCII.
//!
//! Non-ASCII text is left to tiktoken: Unicode letter and mark classes would need tables this
//! module does not carry.

use rustc_hash::FxHashMap;
use tiktoken_rs::{CoreBPE, Rank};

/// The regex's character classes, restricted to ASCII.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// `\p{Lu}`: `A-Z`.
    Upper,
    /// `\p{Ll}`: `a-z`.
    Lower,
    /// `\p{N}`: `0-9`.
    Digit,
    /// `[\r\n]` (also whitespace).
    Newline,
    /// The other ASCII `\s` (Unicode `White_Space`): tab, vertical tab, form feed, space.
    Space,
    /// Neither letter, digit nor whitespace: punctuation, symbols, control characters.
    Other,
}

const fn class_of(b: u8) -> Class {
    match b {
        b'A'..=b'Z' => Class::Upper,
        b'a'..=b'z' => Class::Lower,
        b'0'..=b'9' => Class::Digit,
        b'\r' | b'\n' => Class::Newline,
        b'\t' | 0x0b | 0x0c | b' ' => Class::Space,
        _ => Class::Other,
    }
}

static CLASSES: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
};

/// The pieces tiktoken's o200k regex cuts ASCII text into, in order.
#[derive(Clone)]
pub struct Pieces<'a> {
    b: &'a [u8],
    at: usize,
}

/// `None` for text that is not ASCII.
pub fn pieces(text: &str) -> Option<Pieces<'_>> {
    text.is_ascii().then_some(Pieces {
        b: text.as_bytes(),
        at: 0,
    })
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        if start >= self.b.len() {
            return None;
        }
        // Every rule takes at least one byte; `max` makes that a guarantee, not an assumption.
        let end = piece_end(self.b, start).max(start + 1);
        self.at = end;
        Some(&self.b[start..end])
    }
}

impl Pieces<'_> {
    fn class(&self, i: usize) -> Option<Class> {
        self.b.get(i).map(|&c| CLASSES[usize::from(c)])
    }
}

/// End of the piece starting at `i` (`i < b.len()`, `b` ASCII). The regex's alternatives, tried
/// in order (ASCII has no `\p{Lt}`, `\p{Lm}`, `\p{Lo}` or `\p{M}`):
/// 1. `[^\r\n\p{L}\p{N}]?[\p{Lu}…]*[\p{Ll}…]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`
/// 2. `[^\r\n\p{L}\p{N}]?[\p{Lu}…]+[\p{Ll}…]*(?i:'s|…)?`
/// 3. `\p{N}{1,3}`
/// 4. ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
/// 5. `\s*[\r\n]+`
/// 6. `\s+(?!\S)`
/// 7. `\s+`
fn piece_end(b: &[u8], i: usize) -> usize {
    let p = Pieces { b, at: i };
    match CLASSES[usize::from(b[i])] {
        Class::Upper | Class::Lower => word_end(&p, i).unwrap_or(i + 1),
        Class::Digit => run_end(&p, i, |c| c == Class::Digit).min(i + 3),
        // A newline cannot prefix a word (1, 2) nor start 4: only the whitespace rules apply.
        Class::Newline => space_end(&p, i),
        c @ (Class::Space | Class::Other) => {
            // 1 and 2 with this byte as the optional prefix (without it they need a letter here).
            if let Some(end) = word_end(&p, i + 1) {
                return end;
            }
            // 4: an optional space, then one or more `Other`, then `[\r\n/]*`.
            let symbols = if c == Class::Other {
                Some(i)
            } else if b[i] == b' ' && p.class(i + 1) == Some(Class::Other) {
                Some(i + 1)
            } else {
                None
            };
            match symbols {
                Some(s) => {
                    let end = run_end(&p, s, |c| c == Class::Other);
                    let mut e = end;
                    while matches!(b.get(e), Some(b'\r' | b'\n' | b'/')) {
                        e += 1;
                    }
                    e
                }
                None => space_end(&p, i),
            }
        }
    }
}

/// Alternatives 1 and 2 from `i` with no prefix: upper case letters then lower case ones, at
/// least one letter in all, then an optional contraction. `None` if `i` is not a letter.
fn word_end(p: &Pieces<'_>, i: usize) -> Option<usize> {
    let upper = run_end(p, i, |c| c == Class::Upper);
    let lower = run_end(p, upper, |c| c == Class::Lower);
    if lower == i {
        return None;
    }
    Some(contraction_end(p.b, lower))
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)?` at `i`.
fn contraction_end(b: &[u8], i: usize) -> usize {
    if b.get(i) != Some(&b'\'') {
        return i;
    }
    let second = |c: u8| b.get(i + 2).is_some_and(|x| x.eq_ignore_ascii_case(&c));
    match b.get(i + 1).map(u8::to_ascii_lowercase) {
        Some(b's' | b't' | b'm' | b'd') => i + 2,
        Some(b'r' | b'v') if second(b'e') => i + 3,
        Some(b'l') if second(b'l') => i + 3,
        _ => i,
    }
}

/// Alternatives 5 to 7 at the whitespace byte `i`.
fn space_end(p: &Pieces<'_>, i: usize) -> usize {
    let run = run_end(p, i, |c| matches!(c, Class::Space | Class::Newline));
    // 5: `\s*` backs off to the run's last newline, which `[\r\n]+` then takes.
    if let Some(last) = p.b[i..run].iter().rposition(|&c| c == b'\r' || c == b'\n') {
        return i + last + 1;
    }
    // 6: the whole run at the end of the text; otherwise all but the last byte, which then
    // prefixes the next word or symbol run. 7: a single space before a non-space.
    if run == p.b.len() || run - i == 1 {
        run
    } else {
        run - 1
    }
}

fn run_end(p: &Pieces<'_>, mut i: usize, f: impl Fn(Class) -> bool) -> usize {
    while p.class(i).is_some_and(&f) {
        i += 1;
    }
    i
}

/// Pieces' counts, per thread: words recur across prompts, and the rank map (200k entries, ~10
/// MB) is mostly out of the CPU caches between requests, so a lookup there costs a few memory
/// loads where a hit here costs one. Direct-mapped, 4096 slots of 16 bytes (64 KB). A slot holds a
/// piece of up to 15 bytes, each stored with its top bit set (ASCII never has it, so a stored
/// piece is never 0, the empty slot, and pieces of different lengths never compare equal), and
/// the piece's token count in the top byte.
const HOT_BITS: u32 = 12;
const KEY_MASK: u128 = (1 << 120) - 1;

thread_local! {
    static HOT: std::cell::RefCell<Box<[u128]>> =
        std::cell::RefCell::new(vec![0u128; 1 << HOT_BITS].into_boxed_slice());
}

/// A piece of 1 to 15 bytes as a cache key; `None` for longer ones.
fn pack(piece: &[u8]) -> Option<u128> {
    if piece.len() > 15 {
        return None;
    }
    let mut key = 0u128;
    for (i, &b) in piece.iter().enumerate() {
        key |= u128::from(b | 0x80) << (8 * i);
    }
    Some(key)
}

fn slot_of(key: u128) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let h = ((key as u64) ^ ((key >> 64) as u64).wrapping_mul(K)).wrapping_mul(K);
    (h >> (64 - HOT_BITS)) as usize
}

/// The o200k ranks, recovered from tiktoken's decoder (tiktoken-rs keeps its encoder private).
pub struct Counter {
    ranks: FxHashMap<Vec<u8>, Rank>,
}

impl Counter {
    /// About 200k decodes: do it once, off the request path.
    pub fn new(bpe: &CoreBPE) -> Counter {
        let special = bpe.special_tokens();
        let mut ranks = FxHashMap::default();
        ranks.reserve(200_000);
        for rank in 0..200_000 {
            let Ok(bytes) = bpe.decode_bytes(&[rank]) else { continue };
            if std::str::from_utf8(&bytes).is_ok_and(|s| special.contains(s)) {
                continue;
            }
            ranks.insert(bytes, rank);
        }
        Counter { ranks }
    }

    /// The token count of `text`, exactly as tiktoken's `encode_ordinary`; `None` for text that
    /// is not ASCII.
    pub fn count(&self, text: &str) -> Option<u64> {
        let pieces = pieces(text)?;
        let counted = HOT.try_with(|hot| {
            let mut hot = hot.borrow_mut();
            let mut n = 0u64;
            for piece in pieces.clone() {
                n += match pack(piece) {
                    Some(key) => {
                        let slot = &mut hot[slot_of(key)];
                        if *slot & KEY_MASK == key {
                            (*slot >> 120) as u64
                        } else {
                            let c = self.count_piece(piece);
                            // At most 15 tokens in 15 bytes: the count fits the top byte.
                            *slot = key | (u128::from(c as u8) << 120);
                            c
                        }
                    }
                    None => self.count_piece(piece),
                };
            }
            n
        });
        // Only while the thread is being torn down: count without the cache.
        Some(counted.unwrap_or_else(|_| pieces.map(|p| self.count_piece(p)).sum()))
    }

    fn count_piece(&self, piece: &[u8]) -> u64 {
        if self.ranks.contains_key(piece) {
            1
        } else {
            // Every single byte is a token, so `piece` has two or more (the split's premise).
            tiktoken_rs::byte_pair_split(piece, &self.ranks).len() as u64
        }
    }

    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn regex_pieces(text: &str) -> Vec<String> {
        thread_local! {
            static RE: fancy_regex::Regex =
                fancy_regex::Regex::new(tiktoken_rs::O200K_BASE_PAT_STR).unwrap();
        }
        RE.with(|re| re.find_iter(text).map(|m| m.unwrap().as_str().to_string()).collect())
    }

    fn our_pieces(text: &str) -> Vec<String> {
        pieces(text)
            .unwrap()
            .map(|p| String::from_utf8(p.to_vec()).unwrap())
            .collect()
    }

    fn counter() -> &'static Counter {
        static C: std::sync::OnceLock<Counter> = std::sync::OnceLock::new();
        C.get_or_init(|| Counter::new(tiktoken_rs::o200k_base_singleton()))
    }

    #[test]
    fn splits_like_the_regex_on_tricky_cases() {
        for text in [
            "Hello, world!",
            "I'm sure they'LL say we've done it; she'S 'd 're",
            "HTTPRequest parseJSON iOS MyHTTPServer ABC's",
            "1234567 12 3 4a5 x1y2",
            "a  b   c\t\td \n\n  e \r\n f  ",
            "  leading and trailing  ",
            " !!! ?? ... //path/to\n/x\r\n",
            "line\n\n\nnext\n",
            "\x0b\x0c \x1c\x1d x \x7f\x00y",
            "'s 'x' don't' '",
            "end with space ",
            "\n",
            " ",
            "a",
        ] {
            assert_eq!(our_pieces(text), regex_pieces(text), "{text:?}");
        }
        assert!(pieces("naïve").is_none());
    }

    #[test]
    fn recovers_the_whole_vocabulary() {
        // o200k_base has 199,998 ordinary tokens (ranks 0..=199_997).
        assert_eq!(counter().len(), 199_998);
    }

    #[test]
    fn counts_like_tiktoken() {
        let bpe = tiktoken_rs::o200k_base_singleton();
        for text in [
            "Hello, world!",
            "You are a concise support assistant for an online bookshop.",
            "supercalifragilisticexpialidocious antidisestablishmentarianism",
            "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}",
            "",
        ] {
            assert_eq!(
                counter().count(text),
                Some(bpe.encode_ordinary(text).len() as u64),
                "{text:?}"
            );
        }
        assert_eq!(counter().count("café"), None);
    }

    /// ASCII text weighted towards the bytes the regex treats specially.
    fn ascii_text() -> impl Strategy<Value = String> {
        let byte = prop_oneof![
            4 => proptest::char::range('a', 'z'),
            2 => proptest::char::range('A', 'Z'),
            2 => proptest::char::range('0', '9'),
            3 => Just(' '),
            1 => prop::sample::select(vec!['\n', '\r', '\t', '\x0b', '\x0c']),
            1 => prop::sample::select(vec!['\'', '/', '.', ',', '!', '-', '{', '"', ':']),
            1 => proptest::char::range('\0', '\x7f'),
        ];
        prop::collection::vec(byte, 0..64).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn pieces_equal_the_regex(text in ascii_text()) {
            prop_assert_eq!(our_pieces(&text), regex_pieces(&text));
        }

        #[test]
        fn counts_equal_tiktoken(text in ascii_text()) {
            let bpe = tiktoken_rs::o200k_base_singleton();
            prop_assert_eq!(counter().count(&text), Some(bpe.encode_ordinary(&text).len() as u64));
        }

        #[test]
        fn any_ascii_splits_without_panic(text in "[\\x00-\\x7f]{0,200}") {
            let joined: Vec<u8> = pieces(&text).unwrap().flatten().copied().collect();
            prop_assert_eq!(joined, text.as_bytes());
        }
    }
}
