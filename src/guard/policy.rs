//! What the guardrails do, as written in the config (`Raw*`, strict serde types) and as resolved
//! for one route (`Policy`: an action per entity kind, the output action, the injection mode).
//!
//! A route's `guardrails:` overrides the top-level `guardrails.defaults` field by field (its
//! `entities:` map entry by entry); a route without one, and a request no route matches, gets
//! the defaults. Resolution happens once per config load (`config::compile`), so a request reads
//! a slice indexed by kind.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::entity::{Catalog, Class, Kind};

/// What to do with an entity the guardrails found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    Off,
    /// Detect and record (audit) only.
    Log,
    /// Replace with the type's label (`[EMAIL]`): irreversible.
    Mask,
    /// Replace with a numbered placeholder (`[EMAIL_1]`) and restore the original in the answer.
    Redact,
    /// Refuse the request (400 `content_blocked`, naming the types, never the values).
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Log => "log",
            Action::Mask => "mask",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }

    /// How much the action protects: a reload that lowers it weakens security (mask and redact
    /// both keep the value from the provider).
    pub fn strength(self) -> u8 {
        match self {
            Action::Off => 0,
            Action::Log => 1,
            Action::Mask | Action::Redact => 2,
            Action::Block => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionMode {
    #[default]
    Off,
    /// Record detections (audit) and let the request through.
    Flag,
    /// Refuse requests that look like prompt injection.
    Block,
}

impl InjectionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            InjectionMode::Off => "off",
            InjectionMode::Flag => "flag",
            InjectionMode::Block => "block",
        }
    }

    pub fn strength(self) -> u8 {
        self as u8
    }
}

/// A guardrail policy as written (`guardrails.defaults`, `routes[].guardrails`). Unset fields
/// inherit from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// The action for every personal-data kind (built-in, custom `class: pii`, Presidio's).
    #[serde(default)]
    pub pii: Option<Action>,
    /// The action for every credential kind (cloud keys, API tokens, private keys, passwords).
    #[serde(default)]
    pub secrets: Option<Action>,
    /// Per-kind overrides, by name (`EMAIL: block`, `PROJECT: redact`).
    #[serde(default)]
    pub entities: BTreeMap<String, Action>,
    /// What to do when the model's answer holds a secret or a `restricted` pattern:
    /// `off | log | mask | block`.
    #[serde(default)]
    pub output: Option<Action>,
    #[serde(default)]
    pub injection: Option<InjectionMode>,
    /// The score (0–1) from which a request counts as an injection attempt.
    #[serde(default)]
    pub injection_threshold: Option<f32>,
    /// Ask the Presidio analyzer (`guardrails.presidio`) too. Default: yes when one is set.
    #[serde(default)]
    pub presidio: Option<bool>,
}

impl RawPolicy {
    /// `self` over `base`, field by field.
    pub fn over(&self, base: &RawPolicy) -> RawPolicy {
        let mut entities = base.entities.clone();
        entities.extend(self.entities.iter().map(|(k, v)| (k.clone(), *v)));
        RawPolicy {
            pii: self.pii.or(base.pii),
            secrets: self.secrets.or(base.secrets),
            entities,
            output: self.output.or(base.output),
            injection: self.injection.or(base.injection),
            injection_threshold: self.injection_threshold.or(base.injection_threshold),
            presidio: self.presidio.or(base.presidio),
        }
    }
}

/// The top-level `guardrails:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrails {
    /// The policy of routes that set none, and of requests no route matches.
    #[serde(default)]
    pub defaults: Option<RawPolicy>,
    /// Custom entity kinds, detected in the same pass as the built-in ones.
    #[serde(default)]
    pub entities: Vec<RawEntity>,
    /// Patterns the operator does not want in answers (checked on output with the `output`
    /// action; on input only when a policy's `entities:` names them).
    #[serde(default)]
    pub restricted: Vec<RawEntity>,
    /// A Microsoft Presidio analyzer for what patterns cannot find (names, places, organisations).
    #[serde(default)]
    pub presidio: Option<RawPresidio>,
}

/// A custom entity kind: a regex (with an optional validator) or a word list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntity {
    /// The placeholder label: `[A-Z][A-Z0-9_]*`.
    pub name: String,
    #[serde(default)]
    pub regex: Option<String>,
    /// `none | luhn | mod97`, applied to the digits of each regex match.
    #[serde(default)]
    pub validator: Option<RawValidator>,
    /// Whole words, matched case-insensitively.
    #[serde(default)]
    pub words: Option<Vec<String>>,
    /// Which policy default applies: `pii` (the default) or `secret`.
    #[serde(default)]
    pub class: Option<RawClass>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawValidator {
    None,
    Luhn,
    Mod97,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawClass {
    Pii,
    Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Go on with what the built-in detectors found.
    Open,
    /// Refuse the request (503 `guardrail_unavailable`): nothing unchecked reaches a provider.
    #[default]
    Closed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPresidio {
    /// The analyzer's base URL (`http://presidio:5002`); the gateway posts to `/analyze`.
    pub url: String,
    #[serde(default = "default_presidio_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The entity types to ask for, as Presidio names them (they become placeholder labels).
    #[serde(default = "default_presidio_entities")]
    pub entities: Vec<String>,
    /// Presidio's confidence from which a finding counts.
    #[serde(default = "default_min_score")]
    pub min_score: f64,
    #[serde(default = "default_language")]
    pub language: String,
}

fn default_presidio_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_presidio_entities() -> Vec<String> {
    ["PERSON", "LOCATION", "ORGANIZATION"].map(String::from).to_vec()
}

fn default_min_score() -> f64 {
    0.5
}

fn default_language() -> String {
    "en".into()
}

/// A resolved policy: what a request's guardrail stage and its answer's checks do.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The input action of each kind, indexed by `Kind`.
    pub actions: Vec<Action>,
    /// The output action (applies to secret and restricted kinds).
    pub output: Action,
    pub injection: InjectionMode,
    pub threshold: f32,
    /// Ask the Presidio analyzer (one is set, the policy does not turn it off, and it acts on
    /// some personal-data kind).
    pub presidio: bool,
}

/// A policy that cannot be resolved: the key (relative to the policy) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub key: Vec<String>,
    pub message: String,
}

impl Policy {
    /// Resolves `raw` against the kinds the detector knows. `has_presidio`: an analyzer is set.
    pub fn resolve(raw: &RawPolicy, catalog: &Catalog, has_presidio: bool) -> Result<Policy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let err = |key: &[&str], message: String| PolicyError {
            key: key.iter().map(|s| s.to_string()).collect(),
            message,
        };
        let (pii, secrets) = (raw.pii.unwrap_or_default(), raw.secrets.unwrap_or_default());
        let mut actions: Vec<Action> = catalog
            .kinds()
            .map(|k| match catalog.class(k) {
                Class::Pii => pii,
                Class::Secret => secrets,
                Class::Restricted => Action::Off,
            })
            .collect();
        for (name, action) in &raw.entities {
            match catalog.kind(name) {
                Some(Kind(i)) => actions[usize::from(i)] = *action,
                None => errors.push(err(
                    &["entities", name],
                    format!(
                        "unknown entity type {name:?} (known: {})",
                        catalog.kinds().map(|k| catalog.name(k)).collect::<Vec<_>>().join(", ")
                    ),
                )),
            }
        }
        let output = raw.output.unwrap_or_default();
        if output == Action::Redact {
            errors.push(err(
                &["output"],
                "`redact` cannot apply to the answer (the client never sent the value to restore): use `mask`".into(),
            ));
        }
        let threshold = raw.injection_threshold.unwrap_or(super::inject::DEFAULT_THRESHOLD);
        if !(0.0..=1.0).contains(&threshold) {
            errors.push(err(&["injection_threshold"], "must be between 0 and 1".into()));
        }
        if raw.presidio == Some(true) && !has_presidio {
            errors.push(err(&["presidio"], "no analyzer is set (`guardrails.presidio`)".into()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // The analyzer finds personal data only: a policy that acts on none does not call it
        // (a route that only scores injection must not fail when the analyzer is down).
        let acts_on_pii = catalog
            .kinds()
            .any(|k| catalog.class(k) == Class::Pii && actions[usize::from(k.0)] != Action::Off);
        Ok(Policy {
            actions,
            output,
            injection: raw.injection.unwrap_or_default(),
            threshold,
            presidio: has_presidio && raw.presidio != Some(false) && acts_on_pii,
        })
    }

    pub fn action(&self, kind: Kind) -> Action {
        self.actions.get(usize::from(kind.0)).copied().unwrap_or_default()
    }

    /// Anything to do on the request side (scanning costs nothing when this is false).
    pub fn checks_input(&self) -> bool {
        self.actions.iter().any(|a| *a != Action::Off) || self.injection != InjectionMode::Off
    }

    /// Anything to do on the answer side, besides restoring placeholders.
    pub fn checks_output(&self) -> bool {
        self.output != Action::Off
    }

    /// The changes from `self` (under `catalog`) to `new` (under `new_catalog`) that lower
    /// protection, in words (empty: none). Kinds are compared by name; a kind `new_catalog`
    /// lacks is the removal of its definition, which the config's removed-settings rule names.
    pub fn weakened_by(&self, catalog: &Catalog, new: &Policy, new_catalog: &Catalog) -> Vec<String> {
        let mut out = Vec::new();
        for k in catalog.kinds() {
            let name = catalog.name(k);
            let Some(nk) = new_catalog.kind(name) else { continue };
            let (a, b) = (self.action(k), new.action(nk));
            if b.strength() < a.strength() {
                out.push(format!("{name} {} -> {}", a.as_str(), b.as_str()));
            }
        }
        if new.output.strength() < self.output.strength() {
            out.push(format!("output {} -> {}", self.output.as_str(), new.output.as_str()));
        }
        if new.injection.strength() < self.injection.strength() {
            out.push(format!(
                "injection {} -> {}",
                self.injection.as_str(),
                new.injection.as_str()
            ));
        }
        if new.injection != InjectionMode::Off && new.threshold > self.threshold {
            out.push(format!("injection_threshold {} -> {}", self.threshold, new.threshold));
        }
        if self.presidio && !new.presidio {
            out.push("presidio on -> off".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.add("EMAIL", Class::Pii);
        c.add("API_KEY", Class::Secret);
        c.add("INTERNAL", Class::Restricted);
        c
    }

    fn raw(yaml: &str) -> RawPolicy {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn classes_take_their_default_and_entities_override_them() {
        let c = catalog();
        let p = Policy::resolve(
            &raw("{ pii: redact, secrets: block, entities: { EMAIL: mask } }"),
            &c,
            false,
        )
        .unwrap();
        assert_eq!(p.actions, vec![Action::Mask, Action::Block, Action::Off]);
        assert!(p.checks_input());
        assert!(!p.checks_output());
    }

    #[test]
    fn a_route_overrides_the_defaults_field_by_field() {
        let base = raw("{ pii: log, secrets: block, entities: { EMAIL: mask }, injection: flag }");
        let route = raw("{ pii: redact, entities: { API_KEY: redact } }");
        let merged = route.over(&base);
        assert_eq!(merged.pii, Some(Action::Redact));
        assert_eq!(merged.secrets, Some(Action::Block));
        assert_eq!(merged.injection, Some(InjectionMode::Flag));
        assert_eq!(merged.entities.len(), 2);
    }

    #[test]
    fn unknown_types_redacted_output_and_a_missing_analyzer_are_errors() {
        let errs = Policy::resolve(
            &raw("{ entities: { NOPE: block }, output: redact, injection_threshold: 2, presidio: true }"),
            &catalog(),
            false,
        )
        .unwrap_err();
        let keys: Vec<String> = errs.iter().map(|e| e.key.join(".")).collect();
        assert_eq!(keys, ["entities.NOPE", "output", "injection_threshold", "presidio"]);
        assert!(
            errs[0].message.contains("EMAIL, API_KEY, INTERNAL"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn the_analyzer_is_asked_only_by_policies_that_act_on_personal_data() {
        let c = catalog();
        let ask = |yaml: &str| Policy::resolve(&raw(yaml), &c, true).unwrap().presidio;
        assert!(ask("{ pii: log }"));
        assert!(ask("{ entities: { EMAIL: redact } }"));
        assert!(!ask("{ pii: redact, presidio: false }"));
        assert!(!ask("{ secrets: block, injection: block }"));
        assert!(!Policy::resolve(&raw("{ pii: redact }"), &c, false).unwrap().presidio);
    }

    #[test]
    fn lowering_any_action_is_a_weakening_and_raising_is_not() {
        let c = catalog();
        let strong = Policy::resolve(
            &raw("{ pii: redact, secrets: block, injection: block, output: mask }"),
            &c,
            false,
        )
        .unwrap();
        let masked = Policy::resolve(
            &raw("{ pii: mask, secrets: block, injection: block, output: block }"),
            &c,
            false,
        )
        .unwrap();
        assert!(strong.weakened_by(&c, &masked, &c).is_empty());
        let weak = Policy::resolve(&raw("{ pii: log, secrets: block, injection: flag }"), &c, false).unwrap();
        assert_eq!(
            strong.weakened_by(&c, &weak, &c),
            ["EMAIL redact -> log", "output mask -> off", "injection block -> flag"]
        );
    }
}
