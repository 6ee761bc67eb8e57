//! Guardrails: what the gateway finds in a request's text and in the model's answer, and what it
//! does about it (redact and restore, mask, block, log; prompt-injection scoring). Plain Rust: no
//! Pingora and no I/O (the optional Presidio analyzer is called by `proxy::guard`, which hands
//! its findings in as `request::External`).
//!
//! - `entity`: the vocabulary every part shares (entity kinds, findings, classes).
//! - `detect`: the one-pass detector (built-in PII and secret detectors with their validators,
//!   custom entities from the config).
//! - `inject`: the prompt-injection scorer.
//! - `policy`: the config's policies, resolved per route to an action per kind.
//! - `request`: the request-side stage: scan every text of the body once, then redact, mask,
//!   block or log; score injection; the audit of what was done.
//! - `redact`: placeholders in, a vault of originals kept for the answer.
//! - `restore`: the answer side: placeholders back to originals in whole JSON answers and in
//!   the streams of both client dialects (an `api::observe::ResponseObserver`).
//! - `output`: the output checks (secrets and restricted patterns in the answer: log, mask,
//!   block), whole and streamed.
//! - `presidio`: the analyzer's wire format (request body, findings back to byte ranges).
//!
//! Invariant: no raw value found by a detector is logged or recorded anywhere; audits carry
//! kinds and counts only.

pub mod detect;
pub mod entity;
pub mod inject;
pub mod output;
pub mod policy;
pub mod presidio;
pub mod redact;
pub mod request;
pub mod restore;

/// The guardrails of one config: the detector (built-in, custom and analyzer kinds), the
/// injection scorer and the analyzer's settings. Built once per load, shared by every request.
pub struct Guard {
    pub detector: detect::Detector,
    /// Shared by every snapshot (`Scorer::shared`).
    pub scorer: std::sync::Arc<inject::Scorer>,
    pub presidio: Option<presidio::Settings>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("kinds", &self.detector.catalog().len())
            .field("presidio", &self.presidio.is_some())
            .finish()
    }
}

impl Guard {
    pub fn catalog(&self) -> &entity::Catalog {
        self.detector.catalog()
    }
}

/// The 400 `content_blocked` of a request or answer (`what`) whose text ran past the detector's
/// allowance (`detect::Overrun`): what it holds is not known, so it does not go through.
pub fn unchecked(what: &str) -> crate::api::ApiError {
    crate::api::ApiError::ContentBlocked(format!(
        "The {what} was blocked by the gateway's guardrails: its text could not be checked within \
         the time the detector allows for its size (text built of near-misses the detector must \
         re-examine, such as long runs of `sk-`, costs it far more than real text)."
    ))
}

/// The 400 `content_blocked` of a refused request or answer (`what`): it names the kinds found,
/// never a value.
pub fn blocked(what: &str, catalog: &entity::Catalog, kinds: &[entity::Kind]) -> crate::api::ApiError {
    crate::api::ApiError::ContentBlocked(format!(
        "The {what} was blocked by the gateway's guardrails: it contains {} (values are not shown).",
        catalog.named(kinds)
    ))
}
