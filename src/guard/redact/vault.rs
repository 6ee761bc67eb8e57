//! The vault: the originals of one request's redacted values, by placeholder.
//!
//! A placeholder is `[` + label + `_` + number + `]` (`[EMAIL_1]`, `[CREDIT_CARD_2]`): the label
//! is `[A-Z][A-Z0-9_]*` (a catalog name, normalised by `label`), the number counts per label
//! from one. This module owns that format (`placeholder_end`, `MAX_PLACEHOLDER`); the restorers
//! find placeholders with it.
//!
//! Invariants: the same value under the same label gets the same placeholder within a request;
//! a placeholder text that already occurs literally in the request body is never handed out
//! (its number is skipped), so restoring cannot turn the user's own `[EMAIL_1]` into someone's
//! address; `Debug` prints the counts per label only, never a value.

use std::fmt;

/// Longest label kept (longer ones are cut).
pub const MAX_LABEL: usize = 32;

/// Longest placeholder text: `[`, a label, `_`, ten digits, `]`.
pub const MAX_PLACEHOLDER: usize = MAX_LABEL + 13;

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
}

/// If a placeholder-shaped text starts at byte `i` of `s` (`s[i] == b'['`), the end of it (one
/// past its `]`). The shape only: whether the vault knows it is the caller's question.
pub fn placeholder_end(s: &[u8], i: usize) -> Option<usize> {
    let rest = s.get(i..)?;
    if rest.first() != Some(&b'[') || !rest.get(1).is_some_and(u8::is_ascii_uppercase) {
        return None;
    }
    let close = rest.iter().take(MAX_PLACEHOLDER).position(|&b| b == b']')?;
    let inner = &rest[1..close];
    let underscore = inner.iter().rposition(|&b| b == b'_')?;
    let (label, digits) = (&inner[..underscore], &inner[underscore + 1..]);
    let ok = !label.is_empty()
        && label.iter().all(|&b| is_label_byte(b))
        && !digits.is_empty()
        && digits.len() <= 10
        && digits.iter().all(u8::is_ascii_digit);
    ok.then_some(i + close + 1)
}

/// Already a label as `label` would make it (catalog names are: the detector checks them).
fn is_label(name: &str) -> bool {
    name.len() <= MAX_LABEL
        && name.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A catalog name as a placeholder label: upper-cased, other bytes than `[A-Z0-9_]` as `_`, a
/// leading digit or `_` prefixed with `X`, cut to `MAX_LABEL` bytes.
pub fn label(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_LABEL) + 1);
    if !name.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
        out.push('X');
    }
    for c in name.chars() {
        if out.len() >= MAX_LABEL {
            break;
        }
        let c = c.to_ascii_uppercase();
        out.push(if c.is_ascii_uppercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        });
    }
    out
}

/// `[LABEL_N]`, built in one allocation of the exact size (no formatting machinery: this runs
/// for every redacted value).
fn format_placeholder(label: &str, n: u32) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    let mut p = String::with_capacity(label.len() + digits.len() + 3);
    p.push('[');
    p.push_str(label);
    p.push('_');
    p.push_str(digits);
    p.push(']');
    p
}

struct Entry {
    /// Index into `labels`.
    label: usize,
    placeholder: Box<str>,
    value: Box<str>,
}

/// The originals of one request. A request holds a handful of values, so lookups are linear
/// scans of one vector (no hashing, one allocation per value kept: measured cheaper than maps
/// in the gateway, where the vault is built once per request and dropped with it).
#[derive(Default)]
pub struct Vault {
    entries: Vec<Entry>,
    /// Per label: its text, the last number handed out, and how many values it stands for.
    labels: Vec<(Box<str>, u32, u32)>,
    /// Placeholder-shaped texts found literally in the request: never handed out.
    taken: Vec<Box<str>>,
}

impl Vault {
    /// A vault for the request `body` (its placeholder-shaped texts are noted, not kept).
    pub fn new(body: &[u8]) -> Self {
        let mut taken = Vec::new();
        for i in memchr::memchr_iter(b'[', body) {
            if let Some(end) = placeholder_end(body, i) {
                if let Ok(p) = std::str::from_utf8(&body[i..end]) {
                    taken.push(p.into());
                }
            }
        }
        Vault {
            taken,
            ..Default::default()
        }
    }

    /// The placeholder standing for `value` under `label` (a catalog name; normalised by
    /// `label`): the one it already has in this request, else the label's next free number.
    pub fn placeholder(&mut self, label: &str, value: &str) -> &str {
        let normal = is_label(label);
        let owned;
        let label: &str = if normal {
            label
        } else {
            owned = self::label(label);
            &owned
        };
        let slot = match self.labels.iter().position(|(l, _, _)| **l == *label) {
            Some(s) => s,
            None => {
                self.labels.push((label.into(), 0, 0));
                self.labels.len() - 1
            }
        };
        if let Some(i) = self.entries.iter().position(|e| e.label == slot && *e.value == *value) {
            return &self.entries[i].placeholder;
        }
        let placeholder = loop {
            let n = &mut self.labels[slot].1;
            *n = n.saturating_add(1);
            let p = format_placeholder(label, *n);
            if !self.taken.iter().any(|t| **t == *p) || *n == u32::MAX {
                break p;
            }
        };
        self.labels[slot].2 += 1;
        self.entries.push(Entry {
            label: slot,
            placeholder: placeholder.into(),
            value: value.into(),
        });
        &self.entries[self.entries.len() - 1].placeholder
    }

    /// The original a placeholder stands for (None: not one of this request's).
    pub fn original(&self, placeholder: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| *e.placeholder == *placeholder)
            .map(|e| &*e.value)
    }

    /// Whether `prefix` (starting with `[`) is the start, not the whole, of one of this
    /// request's placeholders: a stream holds such a tail back until it is complete.
    pub fn could_complete(&self, prefix: &str) -> bool {
        prefix.len() < MAX_PLACEHOLDER
            && prefix.starts_with('[')
            && self
                .entries
                .iter()
                .any(|e| e.placeholder.len() > prefix.len() && e.placeholder.starts_with(prefix))
    }

    /// How many distinct values were redacted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Per label (in first-use order): how many distinct values it stands for (for the audit).
    pub fn counts(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.labels.iter().map(|(l, _, c)| (&**l, *c))
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.counts()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_per_label_from_one_and_dedupes_values() {
        let mut v = Vault::new(b"{}");
        assert_eq!(v.placeholder("EMAIL", "a@x.io"), "[EMAIL_1]");
        assert_eq!(v.placeholder("EMAIL", "b@x.io"), "[EMAIL_2]");
        assert_eq!(v.placeholder("CARD", "4111"), "[CARD_1]");
        assert_eq!(v.placeholder("EMAIL", "a@x.io"), "[EMAIL_1]");
        // The same text under another label is another value.
        assert_eq!(v.placeholder("PHONE", "a@x.io"), "[PHONE_1]");
        assert_eq!(v.original("[EMAIL_2]"), Some("b@x.io"));
        assert_eq!(v.original("[EMAIL_9]"), None);
        assert_eq!(v.len(), 4);
        assert_eq!(
            v.counts().collect::<Vec<_>>(),
            [("EMAIL", 2), ("CARD", 1), ("PHONE", 1)]
        );
    }

    #[test]
    fn skips_numbers_whose_placeholder_the_request_already_contains() {
        let mut v = Vault::new(br#"{"content":"see [EMAIL_1] and [EMAIL_3], not [EMAIL 2]"}"#);
        assert_eq!(v.placeholder("EMAIL", "a@x.io"), "[EMAIL_2]");
        assert_eq!(v.placeholder("EMAIL", "b@x.io"), "[EMAIL_4]");
        assert_eq!(v.original("[EMAIL_1]"), None);
        assert_eq!(v.counts().collect::<Vec<_>>(), [("EMAIL", 2)]);
    }

    #[test]
    fn debug_prints_counts_never_values() {
        let mut v = Vault::new(b"");
        v.placeholder("EMAIL", "secret@x.io");
        let d = format!("{v:?}");
        assert!(!d.contains("secret"), "{d}");
        assert!(d.contains("EMAIL") && d.contains('1'), "{d}");
    }

    #[test]
    fn labels_are_normalised_to_the_placeholder_alphabet() {
        assert_eq!(label("credit-card"), "CREDIT_CARD");
        assert_eq!(label("9x"), "X9X");
        assert_eq!(label(&"a".repeat(50)).len(), MAX_LABEL);
        let mut v = Vault::new(b"");
        assert_eq!(v.placeholder("employee id", "7"), "[EMPLOYEE_ID_1]");
    }

    #[test]
    fn placeholder_numbers_print_in_decimal() {
        for n in [1, 9, 10, 99, 100, 4_294_967_295] {
            assert_eq!(format_placeholder("EMAIL", n), format!("[EMAIL_{n}]"));
        }
    }

    #[test]
    fn placeholder_shape() {
        let s = b"x [EMAIL_1] [CREDIT_CARD_12] [EMAIL 1] [email_1] [EMAIL_] [_1] [EMAIL_1";
        let found: Vec<_> = memchr::memchr_iter(b'[', s)
            .filter_map(|i| placeholder_end(s, i).map(|e| &s[i..e]))
            .collect();
        assert_eq!(found, [&b"[EMAIL_1]"[..], b"[CREDIT_CARD_12]"]);
    }

    #[test]
    fn could_complete_only_prefixes_of_known_placeholders() {
        let mut v = Vault::new(b"");
        v.placeholder("EMAIL", "a");
        assert!(v.could_complete("["));
        assert!(v.could_complete("[EMA"));
        assert!(v.could_complete("[EMAIL_1"));
        assert!(!v.could_complete("[EMAIL_2"));
        assert!(!v.could_complete("[CARD"));
        assert!(!v.could_complete("[EMAIL_1]x"));
        assert!(!v.could_complete("[EMAIL_1]"));
    }
}
