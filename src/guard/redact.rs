//! (stub until the redactor lands: the API only)
use std::borrow::Cow;

use super::entity::Finding;

#[derive(Default)]
pub struct Vault {
    entries: Vec<(String, String, String)>,
}
impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault({})", self.entries.len())
    }
}
impl Vault {
    pub fn new(_body: &[u8]) -> Vault {
        Vault::default()
    }
    pub fn placeholder(&mut self, label: &str, value: &str) -> &str {
        let pos = match self.entries.iter().position(|(l, v, _)| l == label && v == value) {
            Some(p) => p,
            None => {
                let n = self.entries.iter().filter(|(l, _, _)| l == label).count() + 1;
                self.entries
                    .push((label.into(), value.into(), format!("[{label}_{n}]")));
                self.entries.len() - 1
            }
        };
        &self.entries[pos].2
    }
    pub fn original(&self, placeholder: &str) -> Option<&str> {
        self.entries.iter().find(|e| e.2 == placeholder).map(|e| e.1.as_str())
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn walk(v: &mut serde_json::Value, key: Option<&str>, edit: &mut dyn FnMut(&str) -> Option<String>) -> bool {
    match v {
        serde_json::Value::String(s) => {
            if matches!(key, Some("model" | "role" | "type" | "id" | "url" | "data")) {
                return false;
            }
            match edit(s) {
                Some(n) => {
                    *s = n;
                    true
                }
                None => false,
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().fold(false, |c, x| walk(x, None, edit) | c),
        serde_json::Value::Object(o) => o.iter_mut().fold(false, |c, (k, x)| walk(x, Some(k), edit) | c),
        _ => false,
    }
}

pub fn rewrite_strings(body: &[u8], edit: &mut dyn FnMut(&str) -> Option<String>) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    walk(&mut v, None, edit).then(|| serde_json::to_vec(&v).unwrap_or_default())
}

pub fn for_each_string(body: &[u8], f: &mut dyn FnMut(&str)) {
    let _ = rewrite_strings(body, &mut |s| {
        f(s);
        None
    });
}

pub fn apply(
    text: &str,
    findings: &[Finding],
    replace: &mut dyn FnMut(&Finding, &str) -> Option<Cow<'static, str>>,
) -> Option<String> {
    let mut out = String::new();
    let mut at = 0;
    let mut changed = false;
    for f in findings {
        if let Some(r) = replace(f, &text[f.start..f.end]) {
            out.push_str(&text[at..f.start]);
            out.push_str(&r);
            at = f.end;
            changed = true;
        }
    }
    out.push_str(&text[at..]);
    changed.then_some(out)
}
