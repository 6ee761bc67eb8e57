//! `${VAR}` / `${VAR:-default}` expansion for config strings, and secrets read from files.
//!
//! Expansion is explicit and total: every `${` must close, names are `[A-Za-z_][A-Za-z0-9_]*`, and
//! the caller learns which variables were unset so it can decide between "disable this provider
//! with a warning" (a key) and "reject the config" (anything else). `$$` is a literal `$`.
//!
//! Two more references read a secret from a file, whose content (trailing line breaks removed)
//! takes the reference's place:
//! - `${file:/run/secrets/openai}`: an absolute path (a Docker or Kubernetes secret volume, a file
//!   only the service user can read);
//! - `${credential:openai}`: a systemd credential, the file `openai` in `$CREDENTIALS_DIRECTORY`
//!   (`LoadCredential=openai:/etc/tollgate/openai.key` in the unit).
//!
//! A file that is missing, unreadable, not UTF-8, larger than `MAX_SECRET_FILE` or empty counts as
//! unset, like an unset variable. Unlike the environment (fixed for the life of the process),
//! files are read again by every reload, and the config watcher reloads when one of them changes
//! (`Snapshot::secret_refs`), so a key is rotated by replacing its file. A value read is never
//! logged: messages name the reference, never the content.

use std::path::Path;

/// The largest secret file read (a PEM bundle or a service-account JSON fits many times over).
pub const MAX_SECRET_FILE: u64 = 1 << 20;

/// The result of expanding one string.
#[derive(Debug, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    /// References without a default whose value is unset or empty: variable names, `file:PATH`
    /// and `credential:NAME`.
    pub missing: Vec<String>,
}

impl Expanded {
    /// "environment variable X is not set", or what else is missing (`describe`).
    pub fn missing_message(&self) -> String {
        let verb = if self.missing.len() == 1 { "is" } else { "are" };
        format!("{} {verb} not set", describe(&self.missing))
    }
}

/// What unset references are, for a message: "environment variable OPENAI_API_KEY", "secret file
/// /run/secrets/openai (missing, unreadable or empty)", "systemd credential openai (…)".
pub fn describe(missing: &[String]) -> String {
    missing
        .iter()
        .map(|m| {
            if let Some(path) = m.strip_prefix("file:") {
                format!("secret file {path} (missing, unreadable or empty)")
            } else if let Some(name) = m.strip_prefix("credential:") {
                format!("systemd credential {name} (not in $CREDENTIALS_DIRECTORY, unreadable or empty)")
            } else {
                format!("environment variable {m}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
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
        if !is_var_name(name) && !is_file_ref(name) && !is_credential_ref(name) {
            return Err(format!(
                "`${{{body}}}` is not a valid reference: use ${{NAME}}, ${{NAME:-default}}, ${{file:/absolute/path}} or ${{credential:NAME}}"
            ));
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

/// Expands against the process environment and the secret files.
pub fn expand(input: &str) -> Result<Expanded, String> {
    expand_with(input, system_lookup)
}

/// The value of a reference: an environment variable, or the content of a secret file
/// (`file:PATH`, `credential:NAME`; see the module doc).
pub fn system_lookup(name: &str) -> Option<String> {
    if let Some(path) = name.strip_prefix("file:") {
        return read_secret(Path::new(path));
    }
    if let Some(cred) = name.strip_prefix("credential:") {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
        return read_secret(&Path::new(&dir).join(cred));
    }
    std::env::var(name).ok()
}

/// Whether `name` is a secret file's reference (read again at every reload and watched).
pub fn is_file_backed(name: &str) -> bool {
    is_file_ref(name) || is_credential_ref(name)
}

fn read_secret(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return None;
    }
    let mut text = String::from_utf8(bytes).ok()?;
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    Some(text)
}

fn is_file_ref(name: &str) -> bool {
    name.strip_prefix("file:")
        .is_some_and(|p| p.starts_with('/') && p.len() > 1 && !p.contains('\0'))
}

fn is_credential_ref(name: &str) -> bool {
    name.strip_prefix("credential:")
        .is_some_and(|n| !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\0']))
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
    fn file_and_credential_references_go_to_the_lookup_by_their_full_name() {
        let lookup =
            |name: &str| (name == "file:/run/secrets/k" || name == "credential:k").then(|| format!("<{name}>"));
        let e = expand_with(
            "${file:/run/secrets/k}|${credential:k}|${file:/nope}|${credential:nope:-d}",
            lookup,
        )
        .unwrap();
        assert_eq!(e.value, "<file:/run/secrets/k>|<credential:k>||d");
        assert_eq!(e.missing, vec!["file:/nope"]);
        assert_eq!(
            e.missing_message(),
            "secret file /nope (missing, unreadable or empty) is not set"
        );
        for bad in [
            "${file:relative/path}",
            "${file:}",
            "${file:/}",
            "${credential:a/b}",
            "${credential:..}",
            "${credential:}",
        ] {
            let err = expand_with(bad, lookup).unwrap_err();
            assert!(err.contains("${file:/absolute/path}"), "{bad}: {err}");
        }
    }

    #[test]
    fn secret_files_are_read_whole_without_trailing_line_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-secret value\r\n\n").unwrap();
        let reference = format!("file:{}", path.display());
        assert_eq!(system_lookup(&reference).as_deref(), Some("sk-secret value"));
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(
            expand(&format!("${{{reference}}}")).unwrap().missing,
            vec![reference.clone()],
            "empty counts as unset"
        );
        std::fs::write(&path, vec![b'x'; MAX_SECRET_FILE as usize + 1]).unwrap();
        assert_eq!(system_lookup(&reference), None, "too large");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(system_lookup(&reference), None, "not UTF-8");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(system_lookup(&reference), None, "missing");
        assert!(is_file_backed(&reference) && is_file_backed("credential:x") && !is_file_backed("HOME"));
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
