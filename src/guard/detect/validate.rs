//! Cheap checks run on the automaton's candidates: checksums (Luhn, ISO 7064 mod 97), issuer
//! ranges, SSN rules, address parsers, date sanity, and the context tests that keep a value from
//! being a piece of a longer number. All take the text and byte offsets and allocate nothing.
//!
//! Invariant: a check that returns a span returns one inside the candidate's span (or, for
//! `pem_end`, extending it forward), starting and ending on ASCII characters, so char boundaries.

use std::net::Ipv6Addr;
use std::str::FromStr;

/// Luhn over the ASCII digits of `s` (other characters are skipped). Needs at least 2 digits.
pub fn luhn(s: &str) -> bool {
    let mut sum = 0u32;
    let mut n = 0usize;
    for b in s.bytes().rev().filter(u8::is_ascii_digit) {
        let d = u32::from(b - b'0');
        sum += if n % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
        n += 1;
    }
    n >= 2 && sum % 10 == 0
}

/// ISO 7064 mod 97-10 as IBANs use it: the first four characters moved to the end, letters as
/// 10..35, the number modulo 97 must be 1. Spaces are skipped; anything else not alphanumeric
/// fails. Needs at least 5 characters.
pub fn mod97(s: &str) -> bool {
    let mut chars = s.bytes().filter(|b| *b != b' ');
    let head: [u8; 4] = {
        let mut h = [0u8; 4];
        for slot in &mut h {
            match chars.next() {
                Some(b) => *slot = b,
                None => return false,
            }
        }
        h
    };
    let mut rem = 0u32;
    let mut len = 0usize;
    for b in chars.chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            b'a'..=b'z' => u32::from(b - b'a') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
        len += 1;
    }
    len >= 5 && rem == 1
}

/// IBAN length by country (ISO 13616 registry).
pub fn iban_len(cc: &[u8]) -> Option<usize> {
    const TABLE: &[(&[u8; 2], usize)] = &[
        (b"AD", 24),
        (b"AE", 23),
        (b"AL", 28),
        (b"AT", 20),
        (b"AZ", 28),
        (b"BA", 20),
        (b"BE", 16),
        (b"BG", 22),
        (b"BH", 22),
        (b"BR", 29),
        (b"BY", 28),
        (b"CH", 21),
        (b"CR", 22),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DK", 18),
        (b"DO", 28),
        (b"EE", 20),
        (b"EG", 29),
        (b"ES", 24),
        (b"FI", 18),
        (b"FO", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GE", 22),
        (b"GI", 23),
        (b"GL", 18),
        (b"GR", 27),
        (b"GT", 28),
        (b"HR", 21),
        (b"HU", 28),
        (b"IE", 22),
        (b"IL", 23),
        (b"IQ", 23),
        (b"IS", 26),
        (b"IT", 27),
        (b"JO", 30),
        (b"KW", 30),
        (b"KZ", 20),
        (b"LB", 28),
        (b"LC", 32),
        (b"LI", 21),
        (b"LT", 20),
        (b"LU", 20),
        (b"LV", 21),
        (b"MC", 27),
        (b"MD", 24),
        (b"ME", 22),
        (b"MK", 19),
        (b"MR", 27),
        (b"MT", 31),
        (b"MU", 30),
        (b"NL", 18),
        (b"NO", 15),
        (b"PK", 24),
        (b"PL", 28),
        (b"PS", 29),
        (b"PT", 25),
        (b"QA", 29),
        (b"RO", 24),
        (b"RS", 22),
        (b"SA", 24),
        (b"SC", 31),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"ST", 25),
        (b"SV", 28),
        (b"TL", 23),
        (b"TN", 24),
        (b"TR", 26),
        (b"UA", 29),
        (b"VA", 22),
        (b"VG", 24),
        (b"XK", 20),
    ];
    TABLE.iter().find(|(c, _)| c.as_slice() == cc).map(|(_, n)| *n)
}

/// An IBAN candidate at `text[s..e]`: country length, then mod 97. Returns the end of the IBAN
/// (the candidate may run into a following word; the IBAN must end at a non-alphanumeric).
pub fn iban(text: &str, s: usize, e: usize) -> Option<usize> {
    let b = text.as_bytes();
    let cc = b.get(s..s + 2)?;
    // All capitals or all lower case (a pasted lower-case IBAN), not `De89…`.
    let lower = cc.iter().all(u8::is_ascii_lowercase);
    let want = iban_len(&[cc[0].to_ascii_uppercase(), cc[1].to_ascii_uppercase()])?;

    let mut got = 0;
    let mut end = s;
    for (i, &c) in b.get(s..e)?.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            got += 1;
            if got == want {
                end = s + i + 1;
                break;
            }
        }
    }
    let mixed = |c: &u8| {
        if lower {
            c.is_ascii_uppercase()
        } else {
            c.is_ascii_lowercase()
        }
    };
    if got != want || b.get(end).is_some_and(u8::is_ascii_alphanumeric) || b[s..end].iter().any(mixed) {
        return None;
    }
    mod97(text.get(s..end)?).then_some(end)
}

/// Whether the card number's issuer prefix and length belong to a known network: Visa,
/// Mastercard (51-55, 2221-2720), Amex, Discover, JCB, Diners, UnionPay, Maestro.
pub fn card_network(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| -> u32 { d.iter().take(k).fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0')) };
    let (p1, p2, p3, p4, p6) = (p(1), p(2), p(3), p(4), p(6));
    let visa = p1 == 4 && matches!(n, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16;
    let amex = matches!(p2, 34 | 37) && n == 15;
    let discover = (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622126..=622925).contains(&p6))
        && (16..=19).contains(&n);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&n);
    let diners = ((300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&n);
    let unionpay = p2 == 62 && (16..=19).contains(&n);
    let maestro =
        (p2 == 50 || (56..=58).contains(&p2) || matches!(p4, 6304 | 6759 | 6761..=6763)) && (12..=19).contains(&n);
    visa || mastercard || amex || discover || jcb || diners || unionpay || maestro
}

/// A card candidate: digit groups with one kind of separator (or none). Tries the longest run
/// of whole groups that is a known network's number and passes Luhn (a candidate may have
/// swallowed a following number). Returns the end of the card.
pub fn card(text: &str, s: usize, e: usize) -> Option<usize> {
    let b = text.as_bytes().get(s..e)?;
    let sep = b.iter().copied().find(|c| !c.is_ascii_digit());
    let mut digits = [0u8; 19];
    let mut nd = 0usize;
    let mut best = None;
    let mut best_digits = 0usize;
    let mut group = 0usize;
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            if nd == digits.len() {
                break;
            }
            digits[nd] = c;
            nd += 1;
            group += 1;
            let at_group_end = b.get(i + 1).is_none_or(|n| !n.is_ascii_digit());
            if at_group_end {
                if sep.is_some() && !(3..=6).contains(&group) && nd != group {
                    // 1- and 2-digit groups are not how cards are written.
                    break;
                }
                group = 0;
                let d = &digits[..nd];
                if nd >= 12 && card_network(d) && luhn_digits(d) {
                    best = Some(s + i + 1);
                    best_digits = nd;
                }
            }
        } else if Some(c) != sep {
            return None;
        }
    }
    // A prefix may shed a short trailing group (`… 1111 12/25`), not a whole 4-digit group: a
    // 16-digit order number whose first 12 digits happen to pass is not a card.
    let total = b.iter().filter(|c| c.is_ascii_digit()).count();
    best.filter(|_| total - best_digits <= 3)
}

fn luhn_digits(d: &[u8]) -> bool {
    std::str::from_utf8(d).is_ok_and(luhn)
}

/// US SSN rules over 9 digits (separators skipped): area not 000, 666 or 900-999; group not
/// 00; serial not 0000.
pub fn ssn(v: &str) -> bool {
    let mut d = [0u32; 9];
    let mut n = 0;
    for b in v.bytes().filter(u8::is_ascii_digit) {
        if n == 9 {
            return false;
        }
        d[n] = u32::from(b - b'0');
        n += 1;
    }
    if n != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// A dotted quad with octets 0-255 and no leading zeros.
pub fn ipv4(v: &str) -> bool {
    let mut n = 0;
    for part in v.split('.') {
        n += 1;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part.starts_with('0')) {
            return false;
        }
        if part.parse::<u16>().map_or(true, |x| x > 255) {
            return false;
        }
    }
    n == 4
}

/// An IPv6 candidate: trailing single `:` trimmed, then std's parser. Needs a hex digit and two
/// colons. Returns the end.
pub fn ipv6(text: &str, s: usize, e: usize) -> Option<usize> {
    let mut v = text.get(s..e)?;
    if v.ends_with(':') && !v.ends_with("::") {
        v = &v[..v.len() - 1];
    }
    let colons = v.bytes().filter(|b| *b == b':').count();
    if colons < 2 || !v.bytes().any(|b| b.is_ascii_hexdigit()) || v.len() > 45 {
        return None;
    }
    Ipv6Addr::from_str(v).ok().map(|_| s + v.len())
}

/// Whether a version word ("version", "v", "ver", "release", "Version", …) comes right before
/// `s` (skipping one space or dot), so `v1.2.3.4` or `version 10.0.0.1` is not an address.
pub fn after_version_word(text: &str, s: usize) -> bool {
    let before = text.get(..s).unwrap_or("").trim_end_matches([' ', '.', ':']);
    let word_start = before
        .bytes()
        .rposition(|b| !b.is_ascii_alphabetic())
        .map_or(0, |i| i + 1);
    let word = &before[word_start..];
    // Version words, and software whose four-part versions come up in prompts.
    [
        "v", "ver", "version", "versión", "release", "build", "firmware", "rev", "revision", "python", "chrome",
        "chromium", "firefox", "safari", "edge", "node", "windows", "macos", "ios", "android", "java", "jdk", "kernel",
        "linux", "ruby", "php", "perl", "go", "dotnet",
    ]
    .iter()
    .any(|w| word.eq_ignore_ascii_case(w))
}

/// Whether `text[s..e]` is a piece of a longer number: a digit right before or after, or a
/// separator (`-`, `.`, `/`, `,`) with a digit on its far side.
pub fn embedded_in_number(text: &str, s: usize, e: usize) -> bool {
    let b = text.as_bytes();
    let is_sep = |c: u8| matches!(c, b'-' | b'.' | b'/' | b',');
    let before = s.checked_sub(1).and_then(|i| b.get(i)).copied();
    let before2 = s.checked_sub(2).and_then(|i| b.get(i)).copied();
    let after = b.get(e).copied();
    let after2 = b.get(e + 1).copied();
    before.is_some_and(|c| c.is_ascii_digit())
        || after.is_some_and(|c| c.is_ascii_digit())
        || (before.is_some_and(is_sep) && before2.is_some_and(|c| c.is_ascii_digit()))
        || (after.is_some_and(is_sep) && after2.is_some_and(|c| c.is_ascii_digit()))
}

/// A phone candidate: 8-15 digits for `+` numbers, 10-11 for NANP shapes, 9-12 with at least
/// one separator for national numbers with a leading 0; not part of a longer number.
pub fn phone(text: &str, s: usize, e: usize) -> bool {
    let Some(v) = text.get(s..e) else { return false };
    if embedded_in_number(text, s, e) {
        return false;
    }
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    let first = v.bytes().next();
    let prev = text.get(..s).and_then(|p| p.bytes().last());
    if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'+') {
        return false;
    }
    // A digit group right before (`#4189 0939 3285 1166`): the tail of a longer number.
    let prev2 = s.checked_sub(2).and_then(|i| text.as_bytes().get(i)).copied();
    if prev == Some(b' ') && prev2.is_some_and(|c| c.is_ascii_digit()) {
        return false;
    }
    if id_context(text, s) {
        return false;
    }
    // `00` starts an international prefix, not an area code; `ddd-dd-dddd` is an SSN's shape.
    let b = v.as_bytes();
    let ssn_shape = b.len() == 11 && b[3] == b'-' && b[6] == b'-';
    if v.starts_with("00") || v.starts_with("(00") || ssn_shape {
        return false;
    }
    match first {
        Some(b'+') => (8..=15).contains(&digits),
        Some(b'(') | Some(b'0') if v.starts_with("(0") || v.starts_with('0') => {
            (9..=12).contains(&digits) && v.bytes().any(|c| matches!(c, b' ' | b'-' | b'.' | b'/' | b')'))
        }
        _ => (10..=11).contains(&digits),
    }
}

/// A date that could be a birth date: day 1-31, month 1-12, year 1900-2030 (or two digits).
/// Numeric dates may be D/M/Y, M/D/Y or Y-M-D; month names are accepted as they come.
pub fn birth_date(v: &str) -> bool {
    let mut nums = [0u32; 3];
    let mut lens = [0usize; 3];
    let mut n = 0;
    let mut cur: Option<(u32, usize)> = None;
    for b in v.bytes().chain(std::iter::once(b' ')) {
        if b.is_ascii_digit() {
            let (x, l) = cur.unwrap_or((0, 0));
            cur = Some((x.saturating_mul(10).saturating_add(u32::from(b - b'0')), l + 1));
        } else if let Some((x, l)) = cur.take() {
            if n == 3 {
                return false;
            }
            nums[n] = x;
            lens[n] = l;
            n += 1;
        }
    }
    let year_ok = |y: u32, l: usize| l == 2 || (l == 4 && (1900..=2030).contains(&y));
    let day_ok = |d: u32| (1..=31).contains(&d);
    let month_ok = |m: u32| (1..=12).contains(&m);
    match n {
        // "12 March 1990", "March 12, 1990"
        2 => day_ok(nums[0]) && lens[0] <= 2 && year_ok(nums[1], lens[1]) && lens[1] == 4,
        3 if lens[0] == 4 => year_ok(nums[0], 4) && month_ok(nums[1]) && day_ok(nums[2]),
        3 => {
            year_ok(nums[2], lens[2])
                && ((day_ok(nums[0]) && month_ok(nums[1])) || (month_ok(nums[0]) && day_ok(nums[1])))
        }
        _ => false,
    }
}

/// Whether `s` has the variety of a generated key: letters and digits, and at least `distinct`
/// different characters.
pub fn varied(s: &str, distinct: usize) -> bool {
    let mut seen = [false; 128];
    let mut count = 0;
    let (mut digit, mut alpha) = (false, false);
    for b in s.bytes() {
        digit |= b.is_ascii_digit();
        alpha |= b.is_ascii_alphabetic();
        if let Some(slot) = seen.get_mut(usize::from(b)) {
            if !*slot {
                *slot = true;
                count += 1;
            }
        }
    }
    digit && alpha && count >= distinct
}

/// A password value that is not a reference, a mask, an empty-ish token or a template slot.
pub fn password_value(v: &str) -> bool {
    let first = v.bytes().next();
    if v.is_empty() || matches!(first, Some(b'$' | b'{' | b'<' | b'%' | b'[')) {
        return false;
    }
    if v.bytes()
        .all(|b| matches!(b, b'*' | b'x' | b'X' | b'.' | b'#' | b'-' | b'_'))
    {
        return false;
    }
    const NOT_VALUES: &[&str] = &[
        "null",
        "none",
        "true",
        "false",
        "required",
        "optional",
        "string",
        "password",
        "changeme?",
        "must",
        "should",
        "is",
        "was",
        "the",
        "and",
        "reset",
        "field",
        "hidden",
        "redacted",
        "undefined",
        "empty",
        "your",
        "my",
        "new",
        "old",
        "here",
        "env",
        "secret",
    ];
    !NOT_VALUES.iter().any(|w| v.eq_ignore_ascii_case(w))
}

/// A password from prose ("my password is …"): also needs a digit, a symbol or inner capitals.
pub fn password_like(v: &str) -> bool {
    password_value(v)
        && (v.bytes().any(|b| b.is_ascii_digit() || b.is_ascii_punctuation())
            || v.bytes().skip(1).any(|b| b.is_ascii_uppercase()))
}

/// Trims trailing sentence punctuation from a value (`hunter2.` → `hunter2`), keeping at least
/// one character. Returns the new end.
pub fn trim_trailing_punct(text: &str, s: usize, mut e: usize) -> usize {
    let b = text.as_bytes();
    while e > s + 1
        && b.get(e - 1)
            .is_some_and(|c| matches!(c, b'.' | b',' | b';' | b':' | b')' | b'\'' | b'"'))
    {
        e -= 1;
    }
    e
}

/// Whether `text[s..e]` lies inside a placeholder such as `[EMAIL_1]` or `[CARD_12]`.
pub fn in_placeholder(text: &str, s: usize, e: usize) -> bool {
    let b = text.as_bytes();
    let is_label = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_';
    // Find the opening bracket: at s, or just before a run of label characters ending at s.
    let mut open = s;
    if b.get(s) != Some(&b'[') {
        while open > 0 && b.get(open - 1).is_some_and(|c| is_label(*c)) {
            open -= 1;
        }
        if open == 0 || b.get(open - 1) != Some(&b'[') {
            return false;
        }
        open -= 1;
    }
    let mut i = open + 1;
    while b.get(i).is_some_and(|c| is_label(*c)) {
        i += 1;
    }
    if b.get(i) != Some(&b']') || i <= open + 1 {
        return false;
    }
    // The label must end in `_<digits>` and start with a capital.
    let label = &b[open + 1..i];
    let digits = label.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    let ok = digits > 0
        && label.len() > digits + 1
        && label[label.len() - digits - 1] == b'_'
        && label[0].is_ascii_uppercase();
    ok && e <= i + 1
}

/// Where the PEM block opened by a header ending at `e` ends: after its END line (real or
/// escaped newlines both work, the END line is found by text), or the end of the text.
pub fn pem_end(text: &str, e: usize) -> usize {
    let rest = text.get(e..).unwrap_or("");
    if let Some(i) = rest.find("-----END ") {
        let after = &rest[i + 9..];
        if let Some(j) = after.find("PRIVATE KEY-----") {
            if j <= 40 {
                return e + i + 9 + j + "PRIVATE KEY-----".len();
            }
        }
    }
    text.len()
}

/// Whether a word-list hit at `text[s..e]` is a whole word (no letter, digit or `_` on either
/// side, Unicode-aware).
pub fn whole_word(text: &str, s: usize, e: usize) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let before = text.get(..s).and_then(|p| p.chars().next_back());
    let after = text.get(e..).and_then(|p| p.chars().next());
    !before.is_some_and(word) && !after.is_some_and(word)
}

/// An email candidate: no empty label, no `..`, labels not starting or ending with `-`.
pub fn email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.ends_with('.')
        && !local.contains("..")
        && domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
}

/// Whether the words just before `s` (same line, up to 32 bytes) name an identifier rather than a
/// phone: `Artikelnummer 0815-4711-42`, `order no. 030 …`, unless a phone word is there too
/// (`Telefonnummer`).
pub fn id_context(text: &str, s: usize) -> bool {
    let mut from = s.saturating_sub(32);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let before = text.get(from..s).unwrap_or("");
    let line = before.rsplit('\n').next().unwrap_or("");
    // Only the sentence the number is in: `… 340 tickets in March. My number is 0151 …` is a
    // phone (a sentence ends at `. ` before a capital; `order no. 030` does not end one).
    let b = line.as_bytes();
    let sentence = (1..b.len().saturating_sub(1))
        .rev()
        .find(|&i| matches!(b[i - 1], b'.' | b'!' | b'?' | b';') && b[i] == b' ' && b[i + 1].is_ascii_uppercase())
        .map_or(line, |i| &line[i + 1..]);
    const ID: &[&str] = &[
        "artikel", "sku", "order", "bestell", "invoice", "rechnung", "kunden", "customer", "serial", "account",
        "konto", "ticket", "tracking", "item", "part no", "case", "ref", "commande", "pedido", "factura", "facture",
    ];
    const PHONE: &[&str] = &[
        "tel", "phone", "fon", "handy", "mobil", "fax", "ruf", "call", "appel", "tél", "llam", "whatsapp",
    ];
    // Two automata, each asked only whether one of its words occurs (no iteration over every
    // overlapping match: the phone words are looked for only when an identifier word is there).
    type Words = Option<(aho_corasick::AhoCorasick, aho_corasick::AhoCorasick)>;
    static WORDS: std::sync::OnceLock<Words> = std::sync::OnceLock::new();
    let Some((id, phone)) = WORDS.get_or_init(|| {
        let build = |words: &[&str]| {
            aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(words)
                .ok()
        };
        Some((build(ID)?, build(PHONE)?))
    }) else {
        return false;
    };
    id.is_match(sentence) && !phone.is_match(sentence)
}
