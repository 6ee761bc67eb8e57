//! Output checks: the model's answer scanned for secrets and `restricted` patterns, with the
//! route's `output` action (`log`, `mask`, `block`). They run before the restoration of
//! redacted values, so they see what the model wrote (placeholders, which no detector matches),
//! never the client's own values coming back.
//!
//! A whole answer is scanned string by string. In a stream each text field is scanned as it
//! grows; what goes out lags the model by a window (`WINDOW` bytes, stretched back to the start
//! of the word that crosses it), so a value split across events is seen whole before any of it
//! leaves, and masked or refused in time. A value the detector sees begun but not ended (one
//! longer than the window, a PEM block from its BEGIN line to its END line) is held until it
//! ends. A `block`
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
    /// A text ran past the detector's allowance (`detect::Overrun`): the answer was refused,
    /// unless the action is `log`.
    pub unchecked: bool,
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
    /// A text ran past the detector's allowance and the action protects (`mask`, `block`): the
    /// answer is refused, since what it holds is not known.
    unchecked: bool,
}

impl Checks {
    /// Whether `kind` is checked on output: credentials and restricted patterns.
    fn checked(&self, kind: Kind) -> bool {
        matches!(self.guard.catalog().class(kind), Class::Secret | Class::Restricted)
    }

    /// Scans `text`: counts what it holds, notes refusals, and returns the masked text when the
    /// action is `mask` and something was found. `upto`: findings that end after it are left
    /// for a later scan (a stream's held tail); the earliest start of those that begin before
    /// it is returned too, so the caller holds them back whole.
    fn scan(&mut self, text: &str, upto: usize) -> (Option<String>, Option<usize>) {
        self.findings.clear();
        if self.guard.detector.scan(text, &mut self.findings).is_err() {
            let mut audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
            audit.unchecked = true;
            // `log` records it; `mask` cannot mask what it cannot find: both others refuse.
            if self.action != Action::Log {
                audit.blocked = true;
                self.unchecked = true;
                return (None, None);
            }
        }
        let mut findings = std::mem::take(&mut self.findings);
        findings.retain(|f| self.checked(f.kind));
        let straddling = findings
            .iter()
            .filter(|f| f.end > upto && f.start < upto)
            .map(|f| f.start)
            .min();
        findings.retain(|f| f.end <= upto);
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
                        out.push_str(&catalog.mask(f.kind));
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
        (masked, straddling)
    }

    /// The answer is refused: nothing more of it goes out.
    fn stopped(&self) -> bool {
        self.unchecked || !self.refused.is_empty()
    }

    fn refusal(&self) -> Option<ApiError> {
        if self.unchecked {
            return Some(super::unchecked("answer"));
        }
        (!self.refused.is_empty()).then(|| super::blocked("answer", self.guard.catalog(), &self.refused))
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
        unchecked: false,
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
        match walk(&bytes, false, &mut |_, text| checks.scan(text, text.len()).0) {
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
        if self.checks.stopped() {
            return;
        }
        let mut all = match self.held.iter().position(|(k, _)| *k == field) {
            Some(i) => self.held.swap_remove(i).1,
            None => String::new(),
        };
        all.push_str(text);
        // What may go out: up to the window, and never a value that has begun but not ended.
        let window = safe_cut(&all);
        let (masked, straddling) = self.checks.scan(&all, window);
        if self.checks.stopped() {
            return;
        }
        let mut cut = straddling.map_or(window, |s| s.min(window));
        if let Some(m) = masked {
            // Every replacement lies before the cut: it moves by their change of length.
            cut = (cut + m.len()).saturating_sub(all.len());
            all = m;
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
        if self.checks.stopped() {
            return;
        }
        let (masked, _) = self.checks.scan(&rest, rest.len());
        if !self.checks.stopped() {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::guard::detect::{CustomEntity, CustomPattern, Validator};
    use crate::guard::inject::Scorer;
    use crate::guard::policy::RawPolicy;

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    fn guard() -> Arc<Guard> {
        let restricted = CustomEntity {
            name: "INTERNAL_HOST".into(),
            class: Class::Restricted,
            pattern: CustomPattern::Regex {
                pattern: r"[a-z0-9-]+\.corp\.example\.com".into(),
                validator: Validator::None,
            },
        };
        Arc::new(Guard {
            detector: crate::guard::detect::Detector::new(&[restricted], &[]).unwrap(),
            scorer: Scorer::shared(),
            presidio: None,
        })
    }

    fn policy(g: &Guard, output: &str) -> Policy {
        let raw: RawPolicy = serde_yaml::from_str(&format!("{{ output: {output} }}")).unwrap();
        Policy::resolve(&raw, g.catalog(), false).unwrap()
    }

    fn chunk(content: &str) -> String {
        let c = json!({"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",
            "choices":[{"index":0,"delta":{"content":content},"finish_reason":null}]});
        format!("data: {c}\n\n")
    }

    /// An OpenAI stream whose text holds the key split over events, a restricted host, and an
    /// email (personal data is not an output check).
    fn stream(text: &str, piece: usize) -> String {
        let mut s = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = piece.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            s.push_str(&chunk(&rest[..cut]));
            rest = &rest[cut..];
        }
        let end = json!({"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",
            "choices":[{"index":0,"delta":{},"finish_reason":"stop"}]});
        s.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
        s
    }

    fn text_of(body: &[u8]) -> String {
        String::from_utf8_lossy(body)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect()
    }

    fn run(obs: &mut Box<dyn ResponseObserver>, body: &str, cuts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&body.len())) {
            out.extend_from_slice(&obs.body(Bytes::copy_from_slice(&body.as_bytes()[at..c])));
            at = c;
        }
        out.extend_from_slice(&obs.end(true));
        out
    }

    const TEXT: &str = "Here is the config. The key is AKIAIOSFODNN7EXAMPLE and the host is db-1.corp.example.com; \
ask jane@example.com. Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco \
laboris nisi ut aliquip ex ea commodo consequat. The end.";

    #[test]
    fn a_masked_stream_gives_the_same_text_however_it_is_cut() {
        let g = guard();
        let p = policy(&g, "mask");
        let expected = TEXT
            .replace(KEY, "[AWS_ACCESS_KEY]")
            .replace("db-1.corp.example.com", "[INTERNAL_HOST]");
        for piece in [1, 3, 8, 64] {
            let body = stream(TEXT, piece);
            // Cut the bytes at every offset of the first 400 (and the events at `piece`).
            for cut in (0..body.len().min(400)).step_by(7) {
                let (mut obs, audit) = observer(Arc::clone(&g), &p, Wire::OpenAi, true).unwrap();
                let out = run(&mut obs, &body, &[cut]);
                assert_eq!(text_of(&out), expected, "piece {piece}, cut {cut}");
                assert!(!String::from_utf8_lossy(&out).contains("AKIA"));
                let a = audit.lock().unwrap();
                assert_eq!((a.found.len(), a.masked, a.blocked), (2, 2, false));
            }
        }
    }

    #[test]
    fn a_block_refuses_a_whole_answer_and_cuts_a_stream_before_the_value() {
        let g = guard();
        let p = policy(&g, "block");
        let whole = json!({"choices":[{"message":{"role":"assistant","content":TEXT}}]}).to_string();
        let (mut obs, audit) = observer(Arc::clone(&g), &p, Wire::OpenAi, false).unwrap();
        let _ = obs.body(Bytes::from(whole));
        let e = obs.refusal().unwrap();
        assert_eq!(e.code(), "content_blocked");
        assert!(e.to_string().contains("AWS_ACCESS_KEY"), "{e}");
        assert!(audit.lock().unwrap().blocked);

        let body = stream(TEXT, 2);
        let (mut obs, _) = observer(Arc::clone(&g), &p, Wire::OpenAi, true).unwrap();
        let mut out = Vec::new();
        let mut refused = false;
        for piece in body.as_bytes().chunks(5) {
            out.extend_from_slice(&obs.body(Bytes::copy_from_slice(piece)));
            if obs.refusal().is_some() {
                refused = true;
                break;
            }
        }
        assert!(refused);
        let sent = text_of(&out);
        assert!(!sent.contains("AKIA") && TEXT.starts_with(&sent), "{sent}");
    }

    #[test]
    fn personal_data_and_clean_answers_pass_untouched_and_off_builds_nothing() {
        let g = guard();
        let p = policy(&g, "mask");
        let clean = "Ask jane@example.com or call +1 415 555 0132.";
        let body = stream(clean, 4);
        let (mut obs, audit) = observer(Arc::clone(&g), &p, Wire::OpenAi, true).unwrap();
        assert_eq!(text_of(&run(&mut obs, &body, &[])), clean);
        assert!(audit.lock().unwrap().found.is_empty());
        assert!(observer(g.clone(), &policy(&g, "off"), Wire::OpenAi, true).is_none());
    }

    #[test]
    fn a_value_longer_than_the_window_is_held_until_it_ends() {
        let g = guard();
        let p = policy(&g, "mask");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7".repeat(12)
        );
        let text = format!("Here: {pem} done.");
        let (mut obs, _) = observer(Arc::clone(&g), &p, Wire::OpenAi, true).unwrap();
        let out = run(&mut obs, &stream(&text, 16), &[]);
        assert_eq!(text_of(&out), "Here: [PRIVATE_KEY] done.");
    }
}
