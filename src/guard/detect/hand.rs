//! The e-mail and numeric rows of `patterns` as hand-written anchored matchers, so that a window
//! whose triggers are only digits and `@` (most prompts' entities: addresses, phone numbers,
//! cards) is scanned without entering the automaton (`Detector::scan_hand`).
//!
//! Why hand-rolled: the automaton's cost in a gateway is not its instructions but its code and
//! tables coming back from memory on every request (~200 of the stage's ~500 simulated L1 misses
//! per cold call on the load runner's body, `loadtest/guard-misses.sh`). These matchers are a
//! few hundred bytes of code and no tables. Measured (2026-12-07): the cold call went from 514 to
//! 302 misses on the load runner's 0.5 KB body and from ~700 to 525 on its 1.9 KB body, for ~2k
//! more instructions (the scan steps through each window byte by byte, label words included);
//! the check's time in the gateway (`tollgate_guardrail_check_seconds` under
//! `loadtest/limits-ab.sh` with `AB_GUARD`) from 8.9 to 7.4 µs and from 10.9 to 9.0 µs.
//!
//! Each `fn(text, p) -> Option<end>` returns exactly what its row's regex returns anchored at `p`
//! under leftmost-first semantics (the backtracker's first success: greedy quantifiers try
//! longer first, optional parts are tried present first, alternatives in order), with the
//! ASCII word boundary of the compiled rows; look-around reads the whole text. The rows that are
//! ambiguous (how a digit run splits into a phone number's groups) are searched in that order
//! with the failed `(position, groups so far)` states remembered, so a long digit run costs a
//! bounded number of steps. Tested equal to the automaton's anchored search at every position
//! of generated texts (`tests::hand_matchers_agree_with_the_automaton`).
//!
//! A window may use them only when no other row can give a finding in it: every row of higher
//! priority needs a trigger other than a digit or `@` (a key prefix, a password word, `:`
//! before a hex digit), IPv6 is never accepted without a `:` trigger, and the birth-date and
//! labelled SSN rows start at a label word, which `label_at` looks for at every word start the
//! scan passes (any one sends the window back to the automaton).

/// An anchored matcher: the end of its row's match starting at `p`.
pub(super) type HandFn = fn(&[u8], usize) -> Option<usize>;

/// A row's matcher and the bytes its matches can start with (`start_class`), so a scan calls
/// only the matchers that can match where it stands.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    pub matcher: HandFn,
    pub starts: u8,
}

/// A letter at a word start.
pub(super) const LETTER: u8 = 1;
/// A digit at a word start.
pub(super) const DIGIT: u8 = 2;
pub(super) const PLUS: u8 = 4;
pub(super) const PAREN: u8 = 8;
/// The row's matches start in the run of an address's local part before an `@` (`local_start`).
pub(super) const NEEDS_AT: u8 = 16;

const fn row(matcher: HandFn, starts: u8) -> Row {
    Row { matcher, starts }
}

pub(super) const EMAIL: Row = row(email, LETTER | DIGIT | NEEDS_AT);
pub(super) const IBAN: Row = row(iban, LETTER);
pub(super) const SSN_DASHED: Row = row(ssn_dashed, DIGIT);
pub(super) const SSN_SPACED: Row = row(ssn_spaced, DIGIT);
pub(super) const CARD: Row = row(card, DIGIT);
pub(super) const PHONE_PLUS: Row = row(phone_plus, PLUS);
pub(super) const PHONE_NANP: Row = row(phone_nanp, DIGIT | PAREN);
pub(super) const PHONE_TRUNK: Row = row(phone_trunk, DIGIT | PAREN);
pub(super) const IPV4: Row = row(ipv4, DIGIT);

fn at(b: &[u8], i: usize) -> u8 {
    // 0 is neither a word byte, a digit nor any literal the rows look for.
    b.get(i).copied().unwrap_or(0)
}

fn word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// `\b` before a word byte at `i`.
fn starts_word(b: &[u8], i: usize) -> bool {
    i == 0 || !word(at(b, i - 1))
}

/// The digits from `i`, at most `max`.
fn digits(b: &[u8], i: usize, max: usize) -> usize {
    (0..max).take_while(|&k| at(b, i + k).is_ascii_digit()).count()
}

/// What a match starting at `i` would start with (`LETTER`, `DIGIT`, `PLUS`, `PAREN`), 0 where
/// no hand row's match can start.
pub(super) fn start_class(b: &[u8], i: usize) -> u8 {
    match at(b, i) {
        b'a'..=b'z' | b'A'..=b'Z' if starts_word(b, i) => LETTER,
        b'0'..=b'9' if starts_word(b, i) => DIGIT,
        b'+' => PLUS,
        b'(' => PAREN,
        _ => 0,
    }
}

/// A word starting at `i` that may begin a birth-date or SSN label (`patterns::dob_regex`'s
/// context words, the SSN row's `ssn` / `social security`), any ASCII case: a superset, so a
/// word it misses cannot start one of those rows' matches.
pub(super) fn label_at(b: &[u8], i: usize) -> bool {
    let is = |lit: &[u8]| b.get(i..i + lit.len()).is_some_and(|w| w.eq_ignore_ascii_case(lit));
    // What may follow a context word: the regex's `[\s:,.\-]` (a non-ASCII byte may be
    // Unicode whitespace).
    let sep = |k: usize| matches!(at(b, i + k), b' ' | b'\t'..=b'\r' | b':' | b',' | b'.' | b'-' | 0x80..);
    match at(b, i) | 0x20 {
        b'b' => is(b"born") || is(b"birth"),
        b'd' => is(b"dob") || is(b"d.o.b") || is(b"date ") || is(b"data "),
        b'g' => is(b"geb"),
        b'n' => {
            at(b, i + 1) == 0xC3
                || (is(b"nee") && sep(3))
                || ((is(b"nato") || is(b"nata")) && sep(4))
                || is(b"nacid")
                || is(b"nascid")
        }
        b'f' => is(b"fecha"),
        b's' => is(b"ssn") || is(b"social"),
        _ => false,
    }
}

fn local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// Where the run of local-part bytes before the `@` at `at_sign` starts: an address matched at
/// `p` has only such bytes from `p` to its `@`, the first `@` after `p`.
pub(super) fn local_start(b: &[u8], at_sign: usize) -> usize {
    let mut i = at_sign;
    while i > 0 && local(at(b, i - 1)) {
        i -= 1;
    }
    i
}

/// `\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b`
pub(super) fn email(b: &[u8], p: usize) -> Option<usize> {
    if !at(b, p).is_ascii_alphanumeric() || !starts_word(b, p) {
        return None;
    }
    let label = |c: u8| c.is_ascii_alphanumeric() || c == b'-';
    // The local part cannot give back a byte: `@` must follow its whole run.
    let mut i = p + 1;
    while local(at(b, i)) {
        i += 1;
    }
    if at(b, i) != b'@' {
        return None;
    }
    let mut j = i + 1;
    while label(at(b, j)) {
        j += 1;
    }
    if j == i + 1 {
        return None;
    }
    // Each `.label` after the first may instead be the final `\.[A-Za-z]{2,}\b`: its leading
    // letters, two or more, not followed by a digit or `_`. The groups are greedy, so the last
    // dot where that holds wins.
    let mut end = None;
    while at(b, j) == b'.' && label(at(b, j + 1)) {
        let letters = (j + 1..).take_while(|&k| at(b, k).is_ascii_alphabetic()).count();
        if letters >= 2 && !word(at(b, j + 1 + letters)) {
            end = Some(j + 1 + letters);
        }
        j += 1;
        while label(at(b, j)) {
            j += 1;
        }
    }
    end
}

/// The number of groups `[seps]?[class]` chained from `i`, at most `ends.len()`, each group's
/// end in `ends` (a separator is taken only before a byte of the class, so the chain is unique:
/// the backtracker has no other way through it).
fn chain(b: &[u8], mut i: usize, seps: &[u8], class: fn(&u8) -> bool, ends: &mut [usize]) -> usize {
    let mut n = 0;
    while n < ends.len() {
        if seps.contains(&at(b, i)) && class(&at(b, i + 1)) {
            i += 2;
        } else if class(&at(b, i)) {
            i += 1;
        } else {
            break;
        }
        ends[n] = i;
        n += 1;
    }
    n
}

/// The end of the longest chain of at least `min` (> 0) groups that ends at a word boundary.
fn longest_bounded(b: &[u8], ends: &[usize], min: usize) -> Option<usize> {
    ends.get(min - 1..)?.iter().rev().copied().find(|&e| !word(at(b, e)))
}

/// `\b[A-Za-z]{2}[0-9]{2}(?:[ ]?[A-Za-z0-9]){11,32}\b`
pub(super) fn iban(b: &[u8], p: usize) -> Option<usize> {
    let head = at(b, p).is_ascii_alphabetic()
        && at(b, p + 1).is_ascii_alphabetic()
        && at(b, p + 2).is_ascii_digit()
        && at(b, p + 3).is_ascii_digit();
    if !head || !starts_word(b, p) {
        return None;
    }
    let mut ends = [0; 32];
    let n = chain(b, p + 4, b" ", u8::is_ascii_alphanumeric, &mut ends);
    longest_bounded(b, &ends[..n], 11)
}

/// `\b[0-9]{3}<sep>[0-9]{2}<sep>[0-9]{4}\b`
fn ssn_with(b: &[u8], p: usize, sep: u8) -> Option<usize> {
    let ok = starts_word(b, p)
        && digits(b, p, 3) == 3
        && at(b, p + 3) == sep
        && digits(b, p + 4, 2) == 2
        && at(b, p + 6) == sep
        && digits(b, p + 7, 4) == 4
        && !word(at(b, p + 11));
    ok.then_some(p + 11)
}

/// `\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b`
pub(super) fn ssn_dashed(b: &[u8], p: usize) -> Option<usize> {
    ssn_with(b, p, b'-')
}

/// `\b[0-9]{3} [0-9]{2} [0-9]{4}\b`
pub(super) fn ssn_spaced(b: &[u8], p: usize) -> Option<usize> {
    ssn_with(b, p, b' ')
}

/// `\b[0-9](?:[ -]?[0-9]){11,18}\b`
pub(super) fn card(b: &[u8], p: usize) -> Option<usize> {
    if !at(b, p).is_ascii_digit() || !starts_word(b, p) {
        return None;
    }
    let mut ends = [0; 18];
    let n = chain(b, p + 1, b" -", u8::is_ascii_digit, &mut ends);
    longest_bounded(b, &ends[..n], 11)
}

/// `\b[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\b`: each run of digits is whole (a fourth
/// digit is neither `.` nor a boundary).
pub(super) fn ipv4(b: &[u8], p: usize) -> Option<usize> {
    if !starts_word(b, p) {
        return None;
    }
    let mut i = p;
    for octet in 0..4 {
        let n = digits(b, i, 4);
        if !(1..=3).contains(&n) {
            return None;
        }
        i += n;
        if octet < 3 {
            if at(b, i) != b'.' {
                return None;
            }
            i += 1;
        }
    }
    (!word(at(b, i))).then_some(i)
}

/// Repeated digit groups `(?:[seps]?[0-9]{min_len,max_len}){min,max}\b`, greedy, searched in
/// the backtracker's order; `failed` remembers the `(offset from origin, groups so far)` states
/// already known to fail (their outcome does not depend on how they were reached).
struct Groups {
    seps: &'static [u8],
    min_len: usize,
    max_len: usize,
    min: usize,
    max: usize,
}

struct Search<'a> {
    b: &'a [u8],
    origin: usize,
    failed: [u64; 8],
}

impl Search<'_> {
    fn new(b: &[u8], origin: usize) -> Search<'_> {
        Search {
            b,
            origin,
            failed: [0; 8],
        }
    }

    fn groups(&mut self, g: &Groups, q: usize, count: usize) -> Option<usize> {
        let bit = q.checked_sub(self.origin).filter(|&o| o < 64).map(|o| 1u64 << o);
        if let Some(bit) = bit {
            if self.failed[count] & bit != 0 {
                return None;
            }
        }
        if count < g.max {
            // A separator is taken when there is one (without it the group needs a digit here).
            let s = if g.seps.contains(&at(self.b, q)) { q + 1 } else { q };
            let run = digits(self.b, s, g.max_len);
            for len in (g.min_len..=run).rev() {
                if let Some(e) = self.groups(g, s + len, count + 1) {
                    return Some(e);
                }
            }
        }
        // The byte before `q` is a digit: the boundary needs a non-word byte at `q`.
        if count >= g.min && !word(at(self.b, q)) {
            return Some(q);
        }
        if let Some(bit) = bit {
            self.failed[count] |= bit;
        }
        None
    }
}

/// `\+[1-9][0-9]{0,3}(?:[ .-]?\(0?[0-9]{1,4}\))?(?:[ .-]?[0-9]{1,5}){2,7}\b`
pub(super) fn phone_plus(b: &[u8], p: usize) -> Option<usize> {
    if at(b, p) != b'+' || !matches!(at(b, p + 1), b'1'..=b'9') {
        return None;
    }
    const G: Groups = Groups {
        seps: b" .-",
        min_len: 1,
        max_len: 5,
        min: 2,
        max: 7,
    };
    // `[ .-]?\(0?[0-9]{1,4}\)` from `i`: where it ends (the digits in the parentheses are all
    // of their run: 1 to 4, or 5 with the leading 0).
    let paren = |i: usize| {
        let i = if matches!(at(b, i), b' ' | b'.' | b'-') {
            i + 1
        } else {
            i
        };
        if at(b, i) != b'(' {
            return None;
        }
        let n = digits(b, i + 1, 6);
        let ok = (1..=4).contains(&n) || (n == 5 && at(b, i + 1) == b'0');
        (ok && at(b, i + 1 + n) == b')').then_some(i + 2 + n)
    };
    let mut search = Search::new(b, p);
    for cc in (0..=digits(b, p + 2, 3)).rev() {
        let i = p + 2 + cc;
        if let Some(q) = paren(i) {
            if let Some(e) = search.groups(&G, q, 0) {
                return Some(e);
            }
        }
        if let Some(e) = search.groups(&G, i, 0) {
            return Some(e);
        }
    }
    None
}

/// `(?:\b1[ .-]?)?(?:\([2-9][0-9]{2}\)[ ]?|\b[2-9][0-9]{2}[ .-])[0-9]{3}[ .-][0-9]{4}\b`
pub(super) fn phone_nanp(b: &[u8], p: usize) -> Option<usize> {
    let sep = |i: usize| matches!(at(b, i), b' ' | b'.' | b'-');
    let tail = |r: usize| {
        let ok = digits(b, r, 3) == 3 && sep(r + 3) && digits(b, r + 4, 4) == 4 && !word(at(b, r + 8));
        ok.then_some(r + 8)
    };
    let area = |q: usize| {
        let code = |k: usize| matches!(at(b, k), b'2'..=b'9') && digits(b, k + 1, 2) == 2;
        if at(b, q) == b'(' && code(q + 1) && at(b, q + 4) == b')' {
            if at(b, q + 5) == b' ' {
                if let Some(e) = tail(q + 6) {
                    return Some(e);
                }
            }
            if let Some(e) = tail(q + 5) {
                return Some(e);
            }
        }
        if code(q) && starts_word(b, q) && sep(q + 3) {
            return tail(q + 4);
        }
        None
    };
    if at(b, p) == b'1' && starts_word(b, p) {
        if sep(p + 1) {
            if let Some(e) = area(p + 2) {
                return Some(e);
            }
        }
        if let Some(e) = area(p + 1) {
            return Some(e);
        }
    }
    area(p)
}

/// `(?:\(0[0-9]{1,4}\)[ ]?|\b0[0-9]{1,4}[ /.-]?)[0-9]{2,4}(?:[ .-]?[0-9]{2,4}){0,3}\b`
pub(super) fn phone_trunk(b: &[u8], p: usize) -> Option<usize> {
    const G: Groups = Groups {
        seps: b" .-",
        min_len: 2,
        max_len: 4,
        min: 0,
        max: 3,
    };
    let mut search = Search::new(b, p);
    // `[0-9]{2,4}` and then the groups.
    let mut body = |q: usize| {
        for len in (2..=digits(b, q, 4)).rev() {
            if let Some(e) = search.groups(&G, q + len, 0) {
                return Some(e);
            }
        }
        None
    };
    if at(b, p) == b'(' {
        let n = digits(b, p + 2, 5);
        if at(b, p + 1) != b'0' || !(1..=4).contains(&n) || at(b, p + 2 + n) != b')' {
            return None;
        }
        let q = p + 3 + n;
        if at(b, q) == b' ' {
            if let Some(e) = body(q + 1) {
                return Some(e);
            }
        }
        return body(q);
    }
    if at(b, p) != b'0' || !starts_word(b, p) {
        return None;
    }
    for n in (1..=digits(b, p + 1, 4)).rev() {
        let i = p + 1 + n;
        let q = if matches!(at(b, i), b' ' | b'/' | b'.' | b'-') {
            i + 1
        } else {
            i
        };
        if let Some(e) = body(q) {
            return Some(e);
        }
    }
    None
}
