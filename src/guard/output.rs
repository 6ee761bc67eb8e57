//! Output checks: the model's answer scanned for secrets and `restricted` patterns, with the
//! route's `output` action (`log`, `mask`, `block`). They run before the restoration of
//! redacted values, so they see what the model wrote (placeholders, which no detector matches),
//! never the client's own values coming back.
//!
//! A whole answer is scanned string by string. In a stream each text field is scanned as it
//! grows; what goes out lags the model by a window (`WINDOW` bytes, stretched back to the start
//! of the word that crosses it), so a value split across events is seen whole before any of it
//! leaves, and masked or refused in time. A value longer than the window with no space in it
//! is held until it ends (a PEM block is held from its BEGIN line to its END line). A `block`
//! ends the stream with a `content_blocked` error event right after what was already let out.
//!
//! The audit (kinds and counts, never values) is shared with the request's record through
//! `Audit`, which the relay's owner reads at the end.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::entity::{Class, Finding, Kind};
use super::policy::{Action, Policy};
use super::redact::walk::walk;
use super::restore::{FieldFilter, FieldKey, StreamFilter};
use super::Guard;
use crate::api::observe::ResponseObserver;
use crate::api::{ApiError, Wire};

/// How far behind the model a checked stream runs, at least.
pub const WINDOW: usize = 256;

/// What the output checks found: each kind with its count; whether the answer was refused.
#[derive(Debug, Default)]
pub struct Audit {
    pub found: Vec<(Kind, u32)>,
    pub masked: u32,
    pub blocked: bool,
}

/// The audit, shared between the observer and the request's record.
pub type SharedAudit = Arc<Mutex<Audit>>;

/// The checks of one answer: which kinds count and what to do with them.
struct Checks {
    guard: Arc<Guard>,
    action: Action,
    audit: SharedAudit,
    findings: Vec<Finding>,
    /// The kinds refused (the answer's error names them).
    refused: Vec<Kind>,
}

impl Checks {
    /// Whether `kind` is checked on output: credentials and restricted patterns.
    fn checked(&self, kind: Kind) -> bool {
        matches!(self.guard.catalog().class(kind), Class::Secret | Class::Restricted)
    }

    /// Scans `text`: counts what it holds, notes refusals, and returns the masked text when the
    /// action is `mask` and something was found. `upto`: findings that end after it are left
    /// for a later scan (a stream's held tail).
    fn scan(&mut self, text: &str, upto: usize) -> Option<String> {
        self.findings.clear();
        self.guard.detector.scan(text, &mut self.findings);
        let mut findings = std::mem::take(&mut self.findings);
        findings.retain(|f| f.end <= upto && self.checked(f.kind));
        let mut masked = None;
        if !findings.is_empty() {
            let mut audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
            for f in &findings {
                match audit.found.iter_mut().find(|(k, _)| *k == f.kind) {
                    Some(e) => e.1 += 1,
                    None => audit.found.push((f.kind, 1)),
                }
            }
            match self.action {
                Action::Block => {
                    audit.blocked = true;
                    for f in &findings {
                        if !self.refused.contains(&f.kind) {
                            self.refused.push(f.kind);
                        }
                    }
                }
                Action::Mask => {
                    let catalog = self.guard.catalog();
                    let mut out = String::with_capacity(text.len());
                    let mut at = 0;
                    for f in &findings {
                        if f.start < at {
                            continue;
                        }
                        out.push_str(&text[at..f.start]);
                        out.push('[');
                        out.push_str(catalog.name(f.kind));
                        out.push(']');
                        at = f.end;
                        audit.masked += 1;
                    }
                    out.push_str(&text[at..]);
                    masked = Some(out);
                }
                Action::Off | Action::Log | Action::Redact => {}
            }
        }
        self.findings = findings;
        masked
    }

    fn refusal(&self) -> Option<ApiError> {
        if self.refused.is_empty() {
            return None;
        }
        let catalog = self.guard.catalog();
        let names: Vec<&str> = self.refused.iter().map(|k| catalog.name(*k)).collect();
        Some(ApiError::ContentBlocked(format!(
            "The answer was blocked by the gateway's guardrails: it contains {} (values are not shown).",
            names.join(", ")
        )))
    }
}

/// The observers that check the answer, when the policy checks output: one for a whole answer,
/// one for a stream in the client's dialect.
pub fn observer(
    guard: Arc<Guard>,
    policy: &Policy,
    client: Wire,
    stream: bool,
) -> Option<(Box<dyn ResponseObserver>, SharedAudit)> {
    if !policy.checks_output() {
        return None;
    }
    let audit = SharedAudit::default();
    let checks = Checks {
        guard,
        action: policy.output,
        audit: Arc::clone(&audit),
        findings: Vec::new(),
        refused: Vec::new(),
    };
    let observer: Box<dyn ResponseObserver> = match stream {
        true => Box::new(StreamFilter::new(
            Streamed {
                checks,
                held: Vec::new(),
            },
            client,
        )),
        false => Box::new(Whole(checks)),
    };
    Some((observer, audit))
}

/// A whole answer, checked string by string.
struct Whole(Checks);

impl ResponseObserver for Whole {
    fn body(&mut self, bytes: Bytes) -> Bytes {
        let checks = &mut self.0;
        match walk(&bytes, false, &mut |_, text| checks.scan(text, text.len())) {
            Some(masked) => Bytes::from(masked),
            None => bytes,
        }
    }

    fn end(&mut self, _complete: bool) -> Bytes {
        Bytes::new()
    }

    fn refusal(&self) -> Option<ApiError> {
        self.0.refusal()
    }
}

/// A stream's text fields, each checked as it grows, running `WINDOW` behind.
struct Streamed {
    checks: Checks,
    /// Each field's text not yet let out.
    held: Vec<(FieldKey, String)>,
}

/// Where the text that may go out now ends: `WINDOW` bytes before the end, moved back to the
/// start of the word that crosses that point (a value has no spaces; a card number's groups
/// fit in the window).
fn safe_cut(text: &str) -> usize {
    let Some(mut cut) = text.len().checked_sub(WINDOW) else {
        return 0;
    };
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    match text[..cut].rfind(char::is_whitespace) {
        Some(ws) if !text[cut..].starts_with(char::is_whitespace) => ws + 1,
        Some(_) => cut,
        None => 0,
    }
}

impl FieldFilter for Streamed {
    fn wants(&self, _data: &str) -> bool {
        true
    }

    fn push(&mut self, field: FieldKey, text: &str, _json_text: bool, out: &mut String) {
        if !self.checks.refused.is_empty() {
            return;
        }
        let mut all = match self.held.iter().position(|(k, _)| *k == field) {
            Some(i) => self.held.swap_remove(i).1,
            None => String::new(),
        };
        all.push_str(text);
        let cut = safe_cut(&all);
        // Findings that end in the part going out are dealt with now; the rest wait.
        if let Some(masked) = self.checks.scan(&all[..], cut) {
            // Masking shifts offsets: recompute the cut over the masked text.
            all = masked;
        }
        let cut = safe_cut(&all);
        if !self.checks.refused.is_empty() {
            return;
        }
        out.push_str(&all[..cut]);
        let rest = all.split_off(cut);
        if !rest.is_empty() {
            self.held.push((field, rest));
        }
    }

    fn finish(&mut self, field: FieldKey, _json_text: bool, out: &mut String) {
        let Some(i) = self.held.iter().position(|(k, _)| *k == field) else {
            return;
        };
        let rest = self.held.swap_remove(i).1;
        if !self.checks.refused.is_empty() {
            return;
        }
        let masked = self.checks.scan(&rest, rest.len());
        if self.checks.refused.is_empty() {
            out.push_str(masked.as_deref().unwrap_or(&rest));
        }
    }

    fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn drop_held(&mut self) {
        self.held.clear();
    }

    fn refusal(&self) -> Option<ApiError> {
        self.checks.refusal()
    }
}
