//! The YAML document → `RawConfig`, strictly, listing every structural problem of a file in one
//! run (each once, with a hint where one helps) rather than stopping at the first.
//!
//! serde stops at the first error, so after each one the offending node is left out of the
//! document and it is deserialised again, until it goes through (or nothing more can be left
//! out). What remains is a `RawConfig` that the semantic pass (`compile`) can still check, so
//! `tollgate check` also lists the semantic problems of the rest of the file. Left-out sequence
//! items shift the items after them; paths are mapped back to the file's own numbering.
//!
//! An empty document (nothing, or only comments) is an error: a config file that says nothing
//! is far more likely a truncated write than an intent to run with every default.

use std::path::Path;

use serde_yaml::Value;

use super::error::ConfigError;
use super::locate::{line_of, render, Seg};
use super::raw::RawConfig;

/// Bounds the retries on a hostile or badly broken file; past it, a note says more were left.
pub(crate) const MAX_PROBLEMS: usize = 100;

/// What the structural pass made of a document.
pub(crate) struct Parsed {
    /// The document with its broken parts left out, when that deserialises.
    pub raw: Option<RawConfig>,
    /// Structural problems, in the order found.
    pub errors: Vec<ConfigError>,
    /// Providers and model aliases left out whole: semantic problems that only follow from
    /// their absence (a model naming a dropped provider) are not reported again.
    pub dropped: Vec<String>,
    /// Items left out of sequences: (the sequence's path, the item's index), in the file's
    /// numbering. Later items moved up; `original` maps their paths back.
    pub removed: Vec<(Vec<Seg>, usize)>,
    /// The document's top-level keys.
    pub sections: Vec<String>,
    /// The document's key paths under the guarded sections (see `reload`).
    pub paths: super::doc_paths::DocPaths,
}

/// A problem that ends parsing at once (unreadable YAML, an empty document).
pub(crate) fn fatal(file: &Path, line: Option<usize>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.display().to_string(),
        line,
        path: String::new(),
        message: message.into(),
    }
}

pub(crate) fn parse_document(file: &Path, doc: &str) -> Result<Parsed, ConfigError> {
    let value: Value = serde_yaml::from_str(doc).map_err(|e| {
        let line = e.location().map(|l| l.line());
        fatal(file, line, strip_location(&e.to_string()))
    })?;
    if value.is_null() {
        return Err(fatal(
            file,
            None,
            "the config file is empty (only whitespace or comments): refused, as it is far more likely a \
             file being written than a wish to run on defaults (write `{}` for all defaults)",
        ));
    }
    let sections = match &value {
        Value::Mapping(m) => m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    let mut out = Parsed {
        raw: None,
        errors: Vec::new(),
        dropped: Vec::new(),
        removed: Vec::new(),
        sections,
        paths: super::doc_paths::DocPaths::of(&value),
    };
    let mut err = match deserialize(doc) {
        Ok(raw) => {
            out.raw = Some(raw);
            return Ok(out);
        }
        Err(e) => e,
    };
    let mut current = value;
    let mut first = true;
    for round in 0..=MAX_PROBLEMS {
        if round == MAX_PROBLEMS {
            // `err` is a problem more, not reported: say the list is not the whole of it.
            out.errors.push(ConfigError::more_problems(file, out.errors.len()));
            break;
        }
        let here = segments(err.path());
        let inner = err.into_inner();
        let orig = here.as_ref().map(|h| original(h, &out.removed));
        let shown = orig.as_ref().map(|o| render(o)).unwrap_or_default();
        // serde_yaml names the path in the edited document's numbering.
        let edited = here.as_ref().map(|h| render(h)).unwrap_or_default();
        let raw_msg = strip_path(&strip_location(&inner.to_string()), &edited);
        let line = if first {
            inner.location().map(|l| l.line())
        } else {
            None
        }
        .or_else(|| orig.as_ref().and_then(|o| line_of(doc, o)));
        first = false;
        // A field already reported for its bad value, now reported again as missing.
        let repeat = missing_field(&raw_msg).is_some_and(|f| {
            let p = if shown.is_empty() {
                f.to_string()
            } else {
                format!("{shown}.{f}")
            };
            out.errors.iter().any(|e| e.path == p)
        });
        if !repeat {
            let value = here.as_ref().and_then(|h| node(&current, h));
            out.errors.push(ConfigError {
                file: file.display().to_string(),
                line,
                path: shown,
                message: with_hint(&raw_msg, value),
            });
        }
        let (Some(here), Some(orig)) = (here, orig) else {
            break;
        };
        if here.is_empty() || !remove(&mut current, &here) {
            break;
        }
        if let (Some(Seg::Index(i)), Some(parent)) = (orig.last(), orig.get(..orig.len() - 1)) {
            out.removed.push((parent.to_vec(), *i));
        }
        if let [Seg::Key(section), Seg::Key(name)] = orig.as_slice() {
            if section == "providers" || section == "models" {
                out.dropped.push(name.clone());
            }
        }
        let Ok(text) = serde_yaml::to_string(&current) else {
            break;
        };
        match deserialize(&text) {
            Ok(raw) => {
                out.raw = Some(raw);
                break;
            }
            Err(e) => err = e,
        }
    }
    Ok(out)
}

type PathError = serde_path_to_error::Error<serde_yaml::Error>;

fn deserialize(doc: &str) -> Result<RawConfig, PathError> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(doc))
}

/// The error's path as segments; `None` when it has a step that cannot be followed.
fn segments(path: &serde_path_to_error::Path) -> Option<Vec<Seg>> {
    use serde_path_to_error::Segment;
    let mut out = Vec::new();
    for s in path.iter() {
        match s {
            Segment::Seq { index } => out.push(Seg::Index(*index)),
            Segment::Map { key } => out.push(Seg::Key(key.clone())),
            // A variant name is not a node of the document.
            Segment::Enum { .. } => {}
            Segment::Unknown => return None,
        }
    }
    Some(out)
}

/// Maps a path in the edited document back to the file's own numbering.
pub(crate) fn original(path: &[Seg], removed: &[(Vec<Seg>, usize)]) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::with_capacity(path.len());
    for seg in path {
        match seg {
            Seg::Key(_) => out.push(seg.clone()),
            Seg::Index(i) => {
                let mut gone: Vec<usize> = removed.iter().filter(|(p, _)| *p == out).map(|(_, j)| *j).collect();
                gone.sort_unstable();
                let mut j = *i;
                for g in gone {
                    if g <= j {
                        j += 1;
                    }
                }
                out.push(Seg::Index(j));
            }
        }
    }
    out
}

fn node<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.as_mapping()?.iter().find(|(key, _)| key_is(key, k)).map(|(_, v)| v),
        Seg::Index(i) => v.as_sequence()?.get(*i),
    })
}

/// Leaves the node at `path` out; false when there is none.
fn remove(root: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut v = root;
    for seg in parent {
        let next = match seg {
            Seg::Key(k) => v
                .as_mapping_mut()
                .and_then(|m| m.iter_mut().find(|(key, _)| key_is(key, k)).map(|(_, v)| v)),
            Seg::Index(i) => v.as_sequence_mut().and_then(|s| s.get_mut(*i)),
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    match last {
        Seg::Key(k) => {
            let Some(m) = v.as_mapping_mut() else {
                return false;
            };
            let Some(key) = m.keys().find(|key| key_is(key, k)).cloned() else {
                return false;
            };
            // `shift_remove` keeps the order of the keys after it: `remove` would move the last
            // key into its place, so the next run would find the file's problems out of order.
            m.shift_remove(&key).is_some()
        }
        Seg::Index(i) => match v.as_sequence_mut() {
            Some(s) if *i < s.len() => {
                s.remove(*i);
                true
            }
            _ => false,
        },
    }
}

/// A mapping key as serde named it (keys that are not strings are named by their YAML text).
fn key_is(key: &Value, name: &str) -> bool {
    match key {
        Value::String(s) => s == name,
        other => serde_yaml::to_string(other).is_ok_and(|s| s.trim_end() == name),
    }
}

/// serde_yaml appends " at line X column Y"; the line is reported separately.
pub(crate) fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde_yaml starts a message with the path it was at (`timeouts.connect: invalid value…`); the
/// path is reported in its own field, so say it once.
fn strip_path(msg: &str, path: &str) -> String {
    if let Some((head, rest)) = msg.split_once(": ") {
        let head_is_path = !head.is_empty() && !head.contains(' ') && (path.starts_with(head) || head == ".");
        if head_is_path {
            return rest.to_string();
        }
    }
    msg.to_string()
}

fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.split('`').next()
}

/// The message, with a suggestion when the mistake has an obvious fix.
fn with_hint(msg: &str, value: Option<&Value>) -> String {
    if msg.contains("expected a duration") {
        let bare = match value {
            Some(Value::Number(n)) if n.is_u64() => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        if let Some(n) = bare {
            return format!(
                "`{n}` is not a duration: durations need a unit; did you mean `{n}s`? (or `{n}ms`, `{n}m`)"
            );
        }
        return format!("{msg} such as `500ms`, `5s`, `2m`");
    }
    for prefix in ["unknown field `", "unknown variant `"] {
        let Some(rest) = msg.strip_prefix(prefix) else {
            continue;
        };
        let Some((given, tail)) = rest.split_once('`') else {
            continue;
        };
        let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        if let Some(best) = nearest(given, &expected) {
            return format!("{prefix}{given}`; did you mean `{best}`?");
        }
    }
    msg.to_string()
}

/// The expected name closest to `given`, when it is close enough to be a typo of it.
fn nearest<'a>(given: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (edit_distance(given, e), *e))
        .filter(|(d, e)| *d <= (given.chars().count().max(e.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("fallback", "fallbacks"), 1);
        assert_eq!(edit_distance("retrys", "retries"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggests_only_close_names() {
        assert_eq!(
            nearest("fallback", &["targets", "fallbacks", "hidden"]),
            Some("fallbacks")
        );
        assert_eq!(nearest("lisen", &["listen", "admin_listen"]), Some("listen"));
        assert_eq!(nearest("colour", &["targets", "hidden"]), None);
    }

    #[test]
    fn strips_the_repeated_path_only() {
        assert_eq!(
            strip_path("timeouts.connect: invalid value: x", "timeouts.connect"),
            "invalid value: x"
        );
        assert_eq!(strip_path("invalid type: string", "a.b"), "invalid type: string");
    }

    #[test]
    fn maps_indexes_back_past_removed_items() {
        let k = |s: &str| Seg::Key(s.into());
        let removed = vec![(vec![k("keys")], 0), (vec![k("keys")], 2)];
        // In the edited document item 1 was the file's item 3 (0 and 2 are gone).
        assert_eq!(
            original(&[k("keys"), Seg::Index(1), k("id")], &removed),
            vec![k("keys"), Seg::Index(3), k("id")]
        );
        assert_eq!(
            original(&[k("routes"), Seg::Index(0)], &removed),
            vec![k("routes"), Seg::Index(0)]
        );
    }

    #[test]
    fn a_file_with_too_many_problems_lists_the_first_ones_in_file_order_and_says_so() {
        // 120 unknown top-level keys, one per line. Each round leaves the reported key out and
        // parses again; were the key removed with `swap_remove`, the last key would take its
        // place and be reported next, so the list would jump to line 120 and never show most
        // of the file's first 100 problems.
        let doc: String = (1..=120).map(|i| format!("x{i}: 1\n")).collect();
        let parsed = parse_document(Path::new("t.yaml"), &doc).unwrap();
        let (note, problems) = parsed.errors.split_last().unwrap();
        assert_eq!(problems.len(), MAX_PROBLEMS);
        for (i, e) in problems.iter().enumerate() {
            assert_eq!(
                (e.path.as_str(), e.line),
                (format!("x{}", i + 1).as_str(), Some(i + 1)),
                "{e}"
            );
        }
        assert!(note.is_more_problems(), "{note}");
        assert_eq!(
            note.to_string(),
            "t.yaml: more problems follow: only the first 100 are listed; fix them and check again for the rest"
        );
        // Exactly at the cap there is nothing more to say.
        let doc: String = (1..=MAX_PROBLEMS).map(|i| format!("x{i}: 1\n")).collect();
        let parsed = parse_document(Path::new("t.yaml"), &doc).unwrap();
        assert_eq!(parsed.errors.len(), MAX_PROBLEMS);
        assert!(!parsed.errors.iter().any(ConfigError::is_more_problems));
    }

    #[test]
    fn left_out_keys_keep_the_order_of_the_rest() {
        let mut doc: Value = serde_yaml::from_str("a: 1\nb: 2\nc: 3\nd: 4\n").unwrap();
        assert!(remove(&mut doc, &[Seg::Key("b".into())]));
        let keys: Vec<&str> = doc.as_mapping().unwrap().keys().filter_map(Value::as_str).collect();
        assert_eq!(keys, ["a", "c", "d"]);
    }

    mod fuzz {
        use std::net::SocketAddr;

        use proptest::prelude::*;

        use super::super::*;
        use crate::config::{load_str, Env};

        const SHIPPED: &str = include_str!("../../conf/tollgate.yaml");
        const FILE: &str = "conf/fuzzed.yaml";

        /// One edit of a document: what a bad hand edit or a cut write does to it.
        #[derive(Debug, Clone)]
        enum Edit {
            /// Cut at this byte (a write that stopped).
            Truncate(usize),
            DeleteLine(usize),
            /// Replace what follows the line's first `:` with `junk`.
            ReplaceValue(usize, String),
            InsertLine(usize, String),
            /// Move a line two columns in or out.
            Indent(usize, bool),
            /// Rename the key the line starts with (a typo).
            RenameKey(usize, String),
        }

        /// Mostly plain scalars (the document stays YAML, with values of the wrong kind), some
        /// YAML syntax.
        fn junk() -> impl Strategy<Value = String> {
            prop_oneof![
                5 => "[a-z0-9_]{1,8}",
                1 => "[a-z0-9_:\\[\\]{}, \"'&*!|>#-]{0,24}",
            ]
        }

        /// Edits that keep the document YAML (a value of the wrong kind, a misspelt key), so
        /// that the structural pass, not only the YAML parser, sees many problems at once.
        fn yaml_edit() -> impl Strategy<Value = Edit> {
            prop_oneof![
                (any::<usize>(), "[a-z0-9_]{1,8}").prop_map(|(i, j)| Edit::ReplaceValue(i, j)),
                (any::<usize>(), "[a-z_]{1,10}").prop_map(|(i, k)| Edit::RenameKey(i, k)),
            ]
        }

        fn edit() -> impl Strategy<Value = Edit> {
            prop_oneof![
                1 => any::<usize>().prop_map(Edit::Truncate),
                2 => any::<usize>().prop_map(Edit::DeleteLine),
                4 => (any::<usize>(), junk()).prop_map(|(i, j)| Edit::ReplaceValue(i, j)),
                1 => (any::<usize>(), junk()).prop_map(|(i, j)| Edit::InsertLine(i, j)),
                1 => (any::<usize>(), any::<bool>()).prop_map(|(i, o)| Edit::Indent(i, o)),
                4 => (any::<usize>(), "[a-z_]{1,10}").prop_map(|(i, k)| Edit::RenameKey(i, k)),
            ]
        }

        fn apply(doc: &str, e: &Edit) -> String {
            let mut lines: Vec<String> = doc.lines().map(str::to_string).collect();
            let n = lines.len().max(1);
            match e {
                Edit::Truncate(at) => {
                    let mut at = at % (doc.len() + 1);
                    while !doc.is_char_boundary(at) {
                        at -= 1;
                    }
                    return doc[..at].to_string();
                }
                Edit::DeleteLine(i) if !lines.is_empty() => {
                    lines.remove(i % n);
                }
                Edit::ReplaceValue(i, junk) if !lines.is_empty() => {
                    let line = &mut lines[i % n];
                    // Only a value on the line: a key whose value is the block below stays one.
                    let scalar = line
                        .find(':')
                        .filter(|c| !line[c + 1..].trim().is_empty() && !line.contains(['{', '[']));
                    if let Some(colon) = scalar {
                        line.truncate(colon + 1);
                        line.push(' ');
                        line.push_str(junk);
                    }
                }
                Edit::InsertLine(i, junk) => lines.insert(i % (lines.len() + 1), junk.clone()),
                Edit::Indent(i, out) if !lines.is_empty() => {
                    let line = &mut lines[i % n];
                    if *out {
                        line.insert_str(0, "  ");
                    } else if line.starts_with("  ") {
                        line.replace_range(..2, "");
                    }
                }
                Edit::RenameKey(i, name) if !lines.is_empty() => {
                    let line = &mut lines[i % n];
                    let start = line.len() - line.trim_start_matches([' ', '-']).len();
                    let key = line[start..]
                        .find(':')
                        .filter(|_| !line[start..].starts_with(['#', '{']));
                    if let Some(colon) = key {
                        line.replace_range(start..start + colon, name);
                    }
                }
                _ => {}
            }
            lines.join("\n") + "\n"
        }

        fn edited(edits: &[Edit]) -> String {
            edits.iter().fold(SHIPPED.to_string(), |d, e| apply(&d, e))
        }

        fn document() -> impl Strategy<Value = String> {
            prop_oneof![
                2 => proptest::collection::vec(yaml_edit(), 1..24).prop_map(|e| edited(&e)),
                2 => proptest::collection::vec(edit(), 1..5).prop_map(|e| edited(&e)),
                1 => "[a-z_:\\[\\]{}, \\n#0-9\"'&*!|>-]{0,300}",
            ]
        }

        /// `tollgate check` as far as the environment allows: parse, then compile with no
        /// variables set and every host resolving to loopback.
        fn check(doc: &str) -> Result<(), Vec<ConfigError>> {
            let var = |_: &str| None;
            let resolve = |_: &str, port: u16| Ok::<_, String>(SocketAddr::from(([127, 0, 0, 1], port)));
            let env = Env {
                var: &var,
                resolve: &resolve,
            };
            load_str(Path::new(FILE), doc, &env).map(drop).map_err(|e| e.errors)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]

            #[test]
            fn any_document_is_parsed_without_panic_and_every_problem_names_the_file(doc in document()) {
                match parse_document(Path::new(FILE), &doc) {
                    Err(e) => prop_assert_eq!(&e.file, FILE),
                    Ok(parsed) => {
                        prop_assert!(parsed.errors.len() <= MAX_PROBLEMS + 1);
                        for e in &parsed.errors {
                            prop_assert_eq!(&e.file, FILE, "{}", e);
                        }
                    }
                }
                if let Err(errors) = check(&doc) {
                    prop_assert!(!errors.is_empty());
                    for e in &errors {
                        prop_assert_eq!(&e.file, FILE, "{}", e);
                    }
                }
            }
        }
    }
}
