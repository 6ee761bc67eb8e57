//! `${VAR}` / `${VAR:-default}` expansion for config strings.
//!
//! Expansion is explicit and total: every `${` must close, names are `[A-Za-z_][A-Za-z0-9_]*`, and
//! the caller learns which variables were unset so it can decide between "disable this provider
//! with a warning" (a key) and "reject the config" (anything else). `$$` is a literal `$`.

/// The result of expanding one string.
#[derive(Debug, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    /// Variables that were referenced without a default and are unset (or empty).
    pub missing: Vec<String>,
}

/// Expands `${NAME}` and `${NAME:-default}` using `lookup`. Errors describe malformed syntax.
pub fn expand_with(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Expanded, String> {
    let mut value = String::with_capacity(input.len());
    let mut missing = Vec::new();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        value.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            value.push('$');
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            value.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(format!("unclosed `${{` in {input:?}"));
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if !is_var_name(name) {
            return Err(format!("`${{{body}}}` is not a valid variable reference"));
        }
        match lookup(name).filter(|v| !v.is_empty()) {
            Some(v) => value.push_str(&v),
            None => match default {
                Some(d) => value.push_str(d),
                None => missing.push(name.to_string()),
            },
        }
        rest = &body_start[end + 1..];
    }
    value.push_str(rest);
    Ok(Expanded { value, missing })
}

/// Expands against the process environment.
pub fn expand(input: &str) -> Result<Expanded, String> {
    expand_with(input, |name| std::env::var(name).ok())
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_missing_default_and_literals() {
        let e = expand_with("a-${SET}-${UNSET}-${EMPTY:-d}-$$-$x", env).unwrap();
        assert_eq!(e.value, "a-value--d-$-$x");
        assert_eq!(e.missing, vec!["UNSET".to_string()]);
    }

    #[test]
    fn empty_counts_as_missing() {
        assert_eq!(expand_with("${EMPTY}", env).unwrap().missing, vec!["EMPTY"]);
    }

    #[test]
    fn rejects_malformed_references() {
        assert!(expand_with("${OPEN", env).is_err());
        assert!(expand_with("${1BAD}", env).is_err());
        assert!(expand_with("${}", env).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = expand_with(&s, env);
        }
    }
}
