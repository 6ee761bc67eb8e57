//! Guardrails: what the gateway finds in a request's text and in the model's answer, and what it
//! does about it (redact and restore, mask, block, log; prompt-injection scoring). Plain Rust: no
//! Pingora, no I/O except the optional Presidio analyzer's client (`presidio`).
//!
//! - `entity`: the vocabulary every part shares (entity kinds, findings, classes).
//! - `detect`: the one-pass detector (built-in PII and secret detectors with their validators,
//!   custom entities from the config).
//! - `inject`: the prompt-injection scorer.
//! - `redact`: the request side: placeholders in, a vault of originals kept for the answer.
//! - `restore`: the answer side: placeholders back to originals in whole JSON answers and in
//!   the streams of both client dialects (an `api::observe::ResponseObserver`).

pub mod detect;
pub mod entity;
pub mod inject;
pub mod redact;
pub mod restore;
