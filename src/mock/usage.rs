//! The mock provider's usage meter: running totals, per model, of the token usage it handed out,
//! so a load test can reconcile a gateway's spend ledger with what the "provider" would bill
//! (`GET /_mock/usage`; `DELETE /_mock/usage` resets it).
//!
//! What counts: every OpenAI-dialect answer that carries a usage object (chat and legacy
//! completions, JSON or SSE, also under Azure paths; embeddings), once, when its reply is over.
//! Errors carry no usage and count nothing; the Anthropic, Gemini and Bedrock dialects are not
//! metered. Each answer lands in one of two buckets:
//! * **reported**: the usage object was written to the client: a JSON body written whole, or a
//!   stream whose usage event was written (`stream_options.include_usage`);
//! * **unreported**: the usage the answer *would* have reported, when the client never got it: a
//!   stream without `include_usage`, a stream cut before its usage event, a JSON body whose write
//!   failed. A gateway that bills only provider-reported usage should see none of these.
//!
//! `cached_tokens` is kept for shape (a gateway ledger has the column) but stays 0 until the
//! mock reports cached tokens.
//!
//! Invariants: the request path takes no lock. Counters are relaxed atomics; a model's slot in a
//! fixed table is claimed once (a `OnceLock`, so only two first-time claimers of one slot ever
//! wait for each other) and found afterwards by a scan of atomic loads. Models past
//! [`MAX_MODELS`] share the [`OTHER_MODEL`] slot. A `Pending` entry adds its usage when dropped, so
//! an answer abandoned mid-write (client gone, shutdown) is still counted, as unreported. Reads
//! and resets are per counter, not a consistent snapshot: read or reset while no load runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::{json, Map, Value};

/// Distinct model names metered on their own.
pub const MAX_MODELS: usize = 64;
/// The name under which models past [`MAX_MODELS`] are counted together.
pub const OTHER_MODEL: &str = "(other)";

/// Usage of one answer, or a sum of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

impl Tokens {
    /// One answer's usage.
    pub fn one(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Tokens {
            requests: 1,
            prompt_tokens,
            completion_tokens,
            cached_tokens: 0,
        }
    }

    fn add(&mut self, o: &Tokens) {
        self.requests += o.requests;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.cached_tokens += o.cached_tokens;
    }

    fn is_zero(&self) -> bool {
        *self == Tokens::default()
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cached_tokens: AtomicU64,
}

impl Counters {
    fn add(&self, t: &Tokens) {
        self.requests.fetch_add(t.requests, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(t.prompt_tokens, Ordering::Relaxed);
        self.completion_tokens.fetch_add(t.completion_tokens, Ordering::Relaxed);
        self.cached_tokens.fetch_add(t.cached_tokens, Ordering::Relaxed);
    }

    fn load(&self) -> Tokens {
        Tokens {
            requests: self.requests.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            cached_tokens: self.cached_tokens.load(Ordering::Relaxed),
        }
    }

    fn reset(&self) {
        for c in [
            &self.requests,
            &self.prompt_tokens,
            &self.completion_tokens,
            &self.cached_tokens,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Slot {
    model: OnceLock<Box<str>>,
    reported: Counters,
    unreported: Counters,
}

/// One model's (or the totals') two buckets, as read by [`UsageMeter::snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buckets {
    pub reported: Tokens,
    pub unreported: Tokens,
}

impl Buckets {
    /// `{"requests", "prompt_tokens", "completion_tokens", "cached_tokens", "unreported": {…}}`:
    /// the reported bucket at the top level, so `.totals.prompt_tokens` is what clients were told.
    fn to_json(self) -> Value {
        let mut v = json!(self.reported);
        if let Value::Object(m) = &mut v {
            m.insert("unreported".into(), json!(self.unreported));
        }
        v
    }
}

/// Per-model usage totals of the mock (see the module docs).
pub struct UsageMeter {
    slots: Box<[Slot]>,
    other: Slot,
}

impl Default for UsageMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageMeter {
    pub fn new() -> Self {
        UsageMeter {
            slots: (0..MAX_MODELS).map(|_| Slot::default()).collect(),
            other: Slot::default(),
        }
    }

    /// The slot of `model`, claiming the first free one on first sight. Slots fill in order and
    /// never change, so every caller scanning for one name stops at the same slot.
    fn slot(&self, model: &str) -> &Slot {
        for s in self.slots.iter() {
            let taken = match s.model.get() {
                Some(m) => m,
                None => {
                    let _ = s.model.set(model.into());
                    match s.model.get() {
                        Some(m) => m,
                        None => continue,
                    }
                }
            };
            if **taken == *model {
                return s;
            }
        }
        &self.other
    }

    /// Count one answer's usage (`t.requests` is normally 1).
    pub fn add(&self, model: &str, t: &Tokens, reported: bool) {
        let slot = self.slot(model);
        if reported {
            slot.reported.add(t);
        } else {
            slot.unreported.add(t);
        }
    }

    /// Models with any usage since the last reset, in first-seen order, and the totals.
    pub fn snapshot(&self) -> (Vec<(String, Buckets)>, Buckets) {
        let mut models = Vec::new();
        let mut totals = Buckets::default();
        let named = self
            .slots
            .iter()
            .filter_map(|s| s.model.get().map(|m| (&**m, s)))
            .chain(std::iter::once((OTHER_MODEL, &self.other)));
        for (name, s) in named {
            let b = Buckets {
                reported: s.reported.load(),
                unreported: s.unreported.load(),
            };
            if b.reported.is_zero() && b.unreported.is_zero() {
                continue;
            }
            totals.reported.add(&b.reported);
            totals.unreported.add(&b.unreported);
            models.push((name.to_string(), b));
        }
        (models, totals)
    }

    /// The `GET /_mock/usage` body: `{"models": {"<model>": {…}}, "totals": {…}}`.
    pub fn to_json(&self) -> Value {
        let (models, totals) = self.snapshot();
        let models: Map<String, Value> = models.into_iter().map(|(m, b)| (m, b.to_json())).collect();
        json!({"models": models, "totals": totals.to_json()})
    }

    /// Zero every counter (model slots stay claimed; zero models are not listed).
    pub fn reset(&self) {
        for s in self.slots.iter().chain(std::iter::once(&self.other)) {
            s.reported.reset();
            s.unreported.reset();
        }
    }
}

/// One answer's usage on its way out: added to the meter when dropped, as reported if [`sent`]
/// was called by then, else as unreported.
///
/// [`sent`]: Pending::sent
pub(crate) struct Pending {
    meter: Arc<UsageMeter>,
    model: String,
    tokens: Tokens,
    sent: bool,
}

impl Pending {
    pub fn new(meter: &Arc<UsageMeter>, model: &str, tokens: Tokens) -> Self {
        Pending {
            meter: meter.clone(),
            model: model.to_string(),
            tokens,
            sent: false,
        }
    }

    /// The usage object reached the client.
    pub fn sent(&mut self) {
        self.sent = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.meter.add(&self.model, &self.tokens, self.sent);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn buckets_models_totals_and_reset() {
        let m = Arc::new(UsageMeter::new());
        m.add("a", &Tokens::one(10, 4), true);
        m.add("b", &Tokens::one(7, 2), true);
        m.add("a", &Tokens::one(5, 1), false);
        {
            let mut p = Pending::new(&m, "b", Tokens::one(3, 3));
            p.sent();
        }
        drop(Pending::new(&m, "b", Tokens::one(1, 1)));
        assert_eq!(
            m.to_json(),
            json!({
                "models": {
                    "a": {"requests": 1, "prompt_tokens": 10, "completion_tokens": 4, "cached_tokens": 0,
                          "unreported": {"requests": 1, "prompt_tokens": 5, "completion_tokens": 1, "cached_tokens": 0}},
                    "b": {"requests": 2, "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 0,
                          "unreported": {"requests": 1, "prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": 0}},
                },
                "totals": {"requests": 3, "prompt_tokens": 20, "completion_tokens": 9, "cached_tokens": 0,
                           "unreported": {"requests": 2, "prompt_tokens": 6, "completion_tokens": 2, "cached_tokens": 0}},
            })
        );
        m.reset();
        let empty = Buckets::default().to_json();
        assert_eq!(m.to_json(), json!({"models": {}, "totals": empty}));
        m.add("b", &Tokens::one(1, 0), true);
        assert_eq!(m.snapshot().0[0].0, "b");
    }

    #[test]
    fn overflow_goes_to_other() {
        let m = UsageMeter::new();
        for i in 0..MAX_MODELS + 3 {
            m.add(&format!("m{i}"), &Tokens::one(1, 1), true);
        }
        let (models, totals) = m.snapshot();
        assert_eq!(models.len(), MAX_MODELS + 1);
        assert_eq!(models.last().unwrap().0, OTHER_MODEL);
        assert_eq!(models.last().unwrap().1.reported.requests, 3);
        assert_eq!(totals.reported.requests, MAX_MODELS as u64 + 3);
    }

    #[test]
    fn concurrent_adds_are_all_counted_once_per_model() {
        let m = Arc::new(UsageMeter::new());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        let model = ["x", "y", "z"][((i + t) % 3) as usize];
                        m.add(model, &Tokens::one(2, 3), i % 2 == 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (models, totals) = m.snapshot();
        let mut names: Vec<&str> = models.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["x", "y", "z"]);
        assert_eq!(
            totals.reported,
            Tokens {
                requests: 4000,
                prompt_tokens: 8000,
                completion_tokens: 12000,
                cached_tokens: 0
            }
        );
        assert_eq!(totals.unreported.requests, 4000);
    }
}
