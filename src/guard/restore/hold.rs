//! The restorer as a stream `FieldFilter`: per field, the text is restored as it comes, and only
//! a tail that could still grow into one of the vault's placeholders (`[`, `[EMA`, `[EMAIL_1`)
//! is held back until the next piece of the same field, or its end.
//!
//! Invariants: at most `MAX_PLACEHOLDER` bytes are held per field, and only from its last `[`;
//! nothing is held in a text with no `[`; a held tail is never a complete placeholder, so at
//! the field's end it goes out as it is.

use std::sync::Arc;

use super::restore_into;
use super::stream::{FieldFilter, FieldKey, StreamFilter};
use crate::api::observe::ResponseObserver;
use crate::api::Wire;
use crate::guard::redact::Vault;

/// Restores the vault's placeholders field by field.
pub struct Restorer {
    vault: Arc<Vault>,
    held: Vec<(FieldKey, String)>,
}

impl Restorer {
    pub fn new(vault: Arc<Vault>) -> Self {
        Restorer {
            vault,
            held: Vec::new(),
        }
    }

    /// Bytes held back over all fields.
    pub fn held(&self) -> usize {
        self.held.iter().map(|(_, s)| s.len()).sum()
    }
}

impl FieldFilter for Restorer {
    /// A `[` that may open a placeholder: before a capital, or ending a string (`["`), or before
    /// an escape (`[\u0045`); or an escaped `[` itself.
    fn wants(&self, data: &str) -> bool {
        if self.vault.is_empty() {
            return false;
        }
        let b = data.as_bytes();
        memchr::memchr_iter(b'[', b).any(|i| {
            b.get(i + 1)
                .is_some_and(|&c| c.is_ascii_uppercase() || c == b'"' || c == b'\\')
        }) || memchr::memmem::find(b, b"\\u005").is_some()
    }

    fn push(&mut self, field: FieldKey, text: &str, json_text: bool, out: &mut String) {
        let at = self.held.iter().position(|(k, _)| *k == field);
        let joined;
        let all: &str = match at {
            Some(i) => {
                let (_, mut h) = self.held.swap_remove(i);
                h.push_str(text);
                joined = h;
                &joined
            }
            None => text,
        };
        let cut = match all.rfind('[') {
            Some(p) if self.vault.could_complete(&all[p..]) => p,
            _ => all.len(),
        };
        let (now, later) = all.split_at(cut);
        match restore_into(now, &self.vault, json_text) {
            Some(r) => out.push_str(&r),
            None => out.push_str(now),
        }
        if !later.is_empty() {
            self.held.push((field, later.to_string()));
        }
    }

    fn finish(&mut self, field: FieldKey, _json_text: bool, out: &mut String) {
        if let Some(i) = self.held.iter().position(|(k, _)| *k == field) {
            out.push_str(&self.held.swap_remove(i).1);
        }
    }

    fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn drop_held(&mut self) {
        self.held.clear();
    }
}

/// The observer restoring `vault`'s placeholders in a stream in the `client`'s dialect.
pub fn observer(vault: Arc<Vault>, client: Wire) -> Box<dyn ResponseObserver> {
    Box::new(StreamFilter::new(Restorer::new(vault), client))
}
