//! The key paths of a config document under the guarded sections, kept with each snapshot so a
//! reload can tell which settings the new file lost (see `reload`).

use std::collections::BTreeSet;

use serde_yaml::Value;

/// Top-level sections whose settings a reload may not drop unconfirmed: access control (`auth`,
/// `admin`, `keys`), spend control (`teams`, `limits`, and `pricing`, since an unpriced model
/// costs 0 and no budget stops it), the policy table (`routes`: guardrails, allowed models) and
/// the guardrails' own section (custom entities, the analyzer, the defaults).
pub const GUARDED_SECTIONS: &[&str] = &[
    "auth",
    "admin",
    "keys",
    "teams",
    "limits",
    "routes",
    "pricing",
    "guardrails",
];

/// One step of a key path in a config document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Step {
    /// A mapping key.
    Key(String),
    /// A sequence item, by its `id` or `name` (`id=k2`) when it has one, else by its index, so
    /// that items reordered keep their paths.
    Item(String),
}

/// The key paths (every mapping key and sequence item, at any depth) under `GUARDED_SECTIONS`
/// of a config document. A key whose value is null (`limits:` with nothing after it) is not set,
/// so it has no path: a file cut right after a key loses that setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocPaths(BTreeSet<Vec<Step>>);

impl DocPaths {
    pub fn of(doc: &Value) -> DocPaths {
        let mut out = BTreeSet::new();
        if let Value::Mapping(m) = doc {
            for (k, v) in m {
                let key = key_text(k);
                if GUARDED_SECTIONS.contains(&key.as_str()) && !v.is_null() {
                    collect(v, vec![Step::Key(key)], &mut out);
                }
            }
        }
        DocPaths(out)
    }

    /// The paths of `self` that `next` lacks, outermost only: when `keys[id=k2].limits` is gone,
    /// so is everything under it, which is not listed.
    pub(super) fn removed_in(&self, next: &DocPaths) -> Vec<Vec<Step>> {
        self.0
            .iter()
            .filter(|p| !next.0.contains(*p))
            .filter(|p| match p.split_last() {
                Some((_, parent)) => parent.is_empty() || next.0.contains(parent),
                None => false,
            })
            .cloned()
            .collect()
    }
}

/// Adds `path` (the node `v` is at) and every path below it.
fn collect(v: &Value, path: Vec<Step>, out: &mut BTreeSet<Vec<Step>>) {
    let child = |step: Step| {
        let mut p = path.clone();
        p.push(step);
        p
    };
    match v {
        Value::Mapping(m) => {
            for (k, v) in m.iter().filter(|(_, v)| !v.is_null()) {
                collect(v, child(Step::Key(key_text(k))), out);
            }
        }
        Value::Sequence(s) => {
            for (i, v) in s.iter().enumerate().filter(|(_, v)| !v.is_null()) {
                collect(v, child(Step::Item(item_label(v, i))), out);
            }
        }
        Value::Tagged(t) => collect(&t.value, path.clone(), out),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
    out.insert(path);
}

/// `id=…` or `name=…` for an item that has one as a scalar, else its index.
fn item_label(item: &Value, index: usize) -> String {
    let field = |name: &str| item.as_mapping().and_then(|m| m.get(name)).and_then(scalar_text);
    match (field("id"), field("name")) {
        (Some(id), _) => format!("id={id}"),
        (None, Some(name)) => format!("name={name}"),
        (None, None) => index.to_string(),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A mapping key as written (keys that are not strings by their YAML text).
fn key_text(k: &Value) -> String {
    scalar_text(k)
        .or_else(|| serde_yaml::to_string(k).ok().map(|s| s.trim_end().to_string()))
        .unwrap_or_default()
}

/// `keys[id=k2].limits`.
pub(super) fn render(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Item(i) => {
                s.push('[');
                s.push_str(i);
                s.push(']');
            }
        }
    }
    s
}
