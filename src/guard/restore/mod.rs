//! The answer side of `pii: redact`: the placeholders of the request's vault back to their
//! originals in what the client gets.
//!
//! - here: one text (`restore_text`), a whole JSON answer of either dialect, error bodies
//!   included (`restore_json`), and the observer of a whole answer (`whole_observer`).
//! - `frame`: raw SSE event framing that keeps each event's bytes.
//! - `stream`: the per-field stream walker (`FieldFilter`, `FieldKey`, `StreamFilter`), reusable
//!   by any per-field text transformer (the output checks are next).
//! - `hold`: the restorer as a `FieldFilter` (`observer` builds the streaming observer).
//!
//! Invariants: only placeholders the vault knows are replaced (an invented `[EMAIL_9]` or a
//! mangled `[EMAIL 1]` is left as the model wrote it); an original put into JSON text (tool-call
//! arguments) is JSON-escaped, so the arguments stay valid JSON; whatever holds no known
//! placeholder goes out unchanged, byte for byte.
//!
//! Bench (`cargo bench --bench guard_restore -- --quick`, 2 shared cores, medians): the stream
//! restorer over a 100-event OpenAI stream fed one event per piece, 49.0 µs with placeholders
//! in a tenth of the events (one split across two events), 13.8 µs without any (the events
//! pass unparsed).

pub mod frame;
pub mod hold;
pub mod stream;

use std::sync::Arc;

use bytes::Bytes;

use super::redact::vault::{placeholder_end, Vault};
use super::redact::walk::walk;
use crate::api::json_str::escaped;
use crate::api::observe::ResponseObserver;

pub use hold::{observer, Restorer};
pub use stream::{FieldFilter, FieldKey, StreamFilter};

/// `text` with the placeholders known to `vault` replaced by their originals (JSON-escaped when
/// `json_text`). None: none found.
pub(crate) fn restore_into(text: &str, vault: &Vault, json_text: bool) -> Option<String> {
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0usize;
    for i in memchr::memchr_iter(b'[', b) {
        if i < copied {
            continue;
        }
        let Some(end) = placeholder_end(b, i) else { continue };
        let Some(original) = text.get(i..end).and_then(|p| vault.original(p)) else {
            continue;
        };
        let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
        o.push_str(&text[copied..i]);
        if json_text {
            o.push_str(&escaped(original));
        } else {
            o.push_str(original);
        }
        copied = end;
    }
    let mut o = out?;
    o.push_str(&text[copied..]);
    Some(o)
}

/// `text` with the placeholders known to `vault` replaced by their originals; unknown ones are
/// left. None: none found.
pub fn restore_text(text: &str, vault: &Vault) -> Option<String> {
    restore_into(text, vault, false)
}

/// A whole JSON answer (either dialect, or an error body) with every string value restored;
/// inside JSON-text strings (`function.arguments`) the originals go in JSON-escaped. None:
/// nothing to restore, or not JSON.
pub fn restore_json(body: &[u8], vault: &Vault) -> Option<Vec<u8>> {
    // Only a `[` before a capital (or an escape) can open a placeholder; JSON arrays' `[` cannot.
    let opens =
        memchr::memchr_iter(b'[', body).any(|i| body.get(i + 1).is_some_and(|&c| c.is_ascii_uppercase() || c == b'\\'));
    if vault.is_empty() || !opens {
        return None;
    }
    walk(body, false, &mut |ctx, s| restore_into(s, vault, ctx.json_text))
}

/// Restores a whole (non-streamed) answer, which comes as one piece.
struct Whole(Arc<Vault>);

impl ResponseObserver for Whole {
    fn body(&mut self, bytes: Bytes) -> Bytes {
        match restore_json(&bytes, &self.0) {
            Some(v) => Bytes::from(v),
            None => bytes,
        }
    }

    fn end(&mut self, _complete: bool) -> Bytes {
        Bytes::new()
    }
}

/// The observer of a whole answer (success or error body) for a redacted request.
pub fn whole_observer(vault: Arc<Vault>) -> Box<dyn ResponseObserver> {
    Box::new(Whole(vault))
}

#[cfg(test)]
mod tests;
