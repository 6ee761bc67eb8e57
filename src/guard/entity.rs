//! The vocabulary the guardrails share: an entity kind (an index into the detector's catalog),
//! a finding (a kind and its byte range in the scanned text) and the class that picks a kind's
//! default action.

/// An entity type: an index into a `Catalog`. Its name is the placeholder's label (`EMAIL` in
/// `[EMAIL_1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(pub u16);

/// What a detector found: a kind and the byte range of the value in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// Which of a policy's defaults applies to a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Personal data (email, phone, card, …, and custom entities unless they say otherwise).
    Pii,
    /// Credentials (cloud keys, API tokens, private keys, passwords).
    Secret,
    /// Patterns the operator does not want in answers (output checks only).
    Restricted,
}

/// The entity types one detector knows, indexed by `Kind`.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    names: Vec<Box<str>>,
    classes: Vec<Class>,
}

impl Catalog {
    /// Adds a kind (or returns the existing one of that name).
    pub fn add(&mut self, name: &str, class: Class) -> Kind {
        if let Some(k) = self.kind(name) {
            return k;
        }
        self.names.push(name.into());
        self.classes.push(class);
        Kind((self.names.len() - 1) as u16)
    }

    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.names.iter().position(|n| &**n == name).map(|i| Kind(i as u16))
    }

    pub fn name(&self, kind: Kind) -> &str {
        self.names.get(usize::from(kind.0)).map_or("UNKNOWN", |n| n)
    }

    pub fn class(&self, kind: Kind) -> Class {
        self.classes.get(usize::from(kind.0)).copied().unwrap_or(Class::Pii)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        (0..self.names.len()).map(|i| Kind(i as u16))
    }

    /// What a mask puts in a value's place: `[EMAIL]`.
    pub fn mask(&self, kind: Kind) -> String {
        let mut s = String::new();
        self.mask_into(kind, &mut s);
        s
    }

    /// Appends `mask(kind)` to `out`.
    pub fn mask_into(&self, kind: Kind, out: &mut String) {
        out.push('[');
        out.push_str(self.name(kind));
        out.push(']');
    }

    /// Kinds with their counts, as the audit writes them: `CARD:1,EMAIL:2`.
    pub fn counted(&self, counts: impl IntoIterator<Item = (Kind, u32)>) -> String {
        let mut out = String::new();
        for (k, n) in counts {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(self.name(k));
            out.push(':');
            out.push_str(itoa::Buffer::new().format(n));
        }
        out
    }

    /// Kinds by name, for a message: `CARD, EMAIL`.
    pub fn named(&self, kinds: &[Kind]) -> String {
        let names: Vec<&str> = kinds.iter().map(|k| self.name(*k)).collect();
        names.join(", ")
    }
}
