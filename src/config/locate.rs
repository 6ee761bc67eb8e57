//! Finds the line of a key path (`models.demo.targets[0].provider`) in a YAML document, so that a
//! semantic error found after parsing (an unknown provider, a bad URL) can name its line like a
//! parse error does. Block style is located exactly; inside flow style (`{a: 1}`, `[x, y]`) the
//! line of the enclosing block entry is returned. A path it cannot follow yields the line of the
//! deepest segment it found (or `None`), never a wrong guess further down the file.

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Renders a path as `a.b[0].c`.
pub fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

/// 1-based line number of `path` in `doc`.
pub fn line_of(doc: &str, path: &[Seg]) -> Option<usize> {
    let lines: Vec<Line> = doc
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let text = raw.trim_start();
            if text.is_empty() || text.starts_with('#') || text == "---" {
                return None;
            }
            Some(Line {
                no: i + 1,
                indent: raw.len() - text.len(),
                text,
            })
        })
        .collect();
    let mut region: &[Line] = &lines;
    // Column at which the current node's children must be deeper than.
    let mut parent_col: isize = -1;
    let mut found: Option<usize> = None;
    for seg in path {
        let hit = match seg {
            Seg::Key(k) => find_key(region, parent_col, k),
            Seg::Index(i) => find_item(region, parent_col, *i),
        };
        let Some((idx, col)) = hit else {
            return found;
        };
        found = Some(region[idx].no);
        // The node's body: following lines deeper than its column.
        let end = region[idx + 1..]
            .iter()
            .position(|l| (l.indent as isize) <= col as isize)
            .map_or(region.len(), |p| idx + 1 + p);
        let body = &region[idx..end];
        // For `- key: v` items the first line holds the first child, so keep it in the region.
        region = match seg {
            Seg::Index(_) => body,
            Seg::Key(_) => &body[1..],
        };
        parent_col = col as isize;
        if region.is_empty() {
            // Inline value (flow style or scalar): the rest of the path lives on this line.
            return found;
        }
    }
    found
}

/// Finds `key:` among the direct children of a node; returns (index in region, key column).
fn find_key(region: &[Line], parent_col: isize, key: &str) -> Option<(usize, usize)> {
    let mut child_col: Option<usize> = None;
    for (i, l) in region.iter().enumerate() {
        let (col, text) = strip_dash(l);
        if (col as isize) <= parent_col {
            continue;
        }
        let col_ok = match child_col {
            None => {
                child_col = Some(col);
                true
            }
            Some(c) => c == col,
        };
        if col_ok && key_matches(text, key) {
            return Some((i, col));
        }
    }
    None
}

/// Finds the `index`-th `- ` item among the direct children of a node.
fn find_item(region: &[Line], parent_col: isize, index: usize) -> Option<(usize, usize)> {
    let item_col = region
        .iter()
        .filter(|l| l.text.starts_with('-') && (l.indent as isize) >= parent_col)
        .map(|l| l.indent)
        .min()?;
    region
        .iter()
        .enumerate()
        .filter(|(_, l)| l.indent == item_col && l.text.starts_with('-'))
        .nth(index)
        .map(|(i, _)| (i, item_col))
}

/// For a `- key: v` line, the column and text of `key: v`; otherwise the line itself.
fn strip_dash<'a>(l: &Line<'a>) -> (usize, &'a str) {
    if let Some(rest) = l.text.strip_prefix("- ") {
        let inner = rest.trim_start();
        (l.indent + 2 + (rest.len() - inner.len()), inner)
    } else {
        (l.indent, l.text)
    }
}

fn key_matches(text: &str, key: &str) -> bool {
    let unquoted = text
        .strip_prefix(key)
        .or_else(|| {
            text.strip_prefix('"')
                .and_then(|t| t.strip_prefix(key))
                .and_then(|t| t.strip_prefix('"'))
        })
        .or_else(|| {
            text.strip_prefix('\'')
                .and_then(|t| t.strip_prefix(key))
                .and_then(|t| t.strip_prefix('\''))
        });
    matches!(unquoted, Some(rest) if rest.trim_start().starts_with(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
server:
  listen: \"0.0.0.0:8080\"
# comment
providers:
  openai:
    kind: openai
    base_url: https://api.openai.com/v1
  mock: { kind: openai, base_url: \"http://x\" }
models:
  demo:
    targets:
      - provider: mock
        model: a
      - provider: nope
        model: b
  other:
    targets: [ { provider: x, model: y } ]
";

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn finds_block_keys() {
        assert_eq!(line_of(DOC, &[k("server"), k("listen")]), Some(2));
        assert_eq!(line_of(DOC, &[k("providers"), k("openai"), k("base_url")]), Some(7));
    }

    #[test]
    fn finds_sequence_items_and_their_keys() {
        let p = [k("models"), k("demo"), k("targets"), Seg::Index(1), k("provider")];
        assert_eq!(line_of(DOC, &p), Some(14));
        let p = [k("models"), k("demo"), k("targets"), Seg::Index(0), k("model")];
        assert_eq!(line_of(DOC, &p), Some(13));
    }

    #[test]
    fn flow_style_returns_the_enclosing_line() {
        assert_eq!(line_of(DOC, &[k("providers"), k("mock"), k("kind")]), Some(8));
        let p = [k("models"), k("other"), k("targets"), Seg::Index(0), k("provider")];
        assert_eq!(line_of(DOC, &p), Some(17));
    }

    #[test]
    fn missing_key_stops_at_the_deepest_found() {
        assert_eq!(line_of(DOC, &[k("models"), k("missing")]), Some(9));
        assert_eq!(line_of(DOC, &[k("nothing")]), None);
    }

    #[test]
    fn does_not_match_a_key_prefix_or_a_grandchild() {
        // `openai` is a grandchild of the root, not a root key.
        assert_eq!(line_of(DOC, &[k("openai")]), None);
        assert_eq!(line_of(DOC, &[k("serv")]), None);
    }

    #[test]
    fn renders_paths() {
        assert_eq!(render(&[k("a"), Seg::Index(2), k("b")]), "a[2].b");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(doc in "[ a-z:\\-\\[\\]{}#\n]{0,200}", keys in proptest::collection::vec("[a-z]{1,3}", 0..4)) {
            let path: Vec<Seg> = keys.into_iter().map(Seg::Key).collect();
            let _ = line_of(&doc, &path);
        }
    }
}
