//! `tollgate spend` output: the spend report as an aligned text table.

use serde::Serialize;
use serde_json::Value;

const COLUMNS: &[(&str, &str)] = &[
    ("requests", "requests"),
    ("errors", "errors"),
    ("prompt_tokens", "prompt"),
    ("completion_tokens", "completion"),
    ("cached_tokens", "cached"),
    ("reasoning_tokens", "reasoning"),
    ("cost_usd", "cost_usd"),
];

/// The report (anything serialising like `/admin/spend`'s body) as a table: one row per group,
/// then the totals.
pub fn table(report: &impl Serialize) -> String {
    let Ok(v) = serde_json::to_value(report) else {
        return String::new();
    };
    let dims: Vec<String> = v["group_by"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<String> = dims.clone();
    header.extend(COLUMNS.iter().map(|(_, h)| h.to_string()));
    rows.push(header);
    let cells = |row: &Value, label: Option<&str>| -> Vec<String> {
        let mut out: Vec<String> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| match (label, i) {
                (Some(l), 0) => l.to_string(),
                (Some(_), _) => String::new(),
                (None, _) => match &row[d.as_str()] {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    other => other.to_string(),
                },
            })
            .collect();
        for (key, _) in COLUMNS {
            out.push(match &row[*key] {
                Value::Number(n) if *key == "cost_usd" => format!("{:.6}", n.as_f64().unwrap_or(0.0)),
                Value::Number(n) => n.to_string(),
                _ => "0".into(),
            });
        }
        out
    };
    for g in v["groups"].as_array().into_iter().flatten() {
        rows.push(cells(g, None));
    }
    let mut total = cells(&v["totals"], Some("TOTAL"));
    if dims.is_empty() {
        total.insert(0, "TOTAL".into());
        rows[0].insert(0, String::new());
        for r in rows.iter_mut().skip(1) {
            r.insert(0, String::new());
        }
    }
    rows.push(total);
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r.get(c).map_or(0, String::len)).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "spend from {} to {}\n",
        v["from"].as_str().unwrap_or("?"),
        v["to"].as_str().unwrap_or("?")
    );
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                // Dimensions left-aligned, numbers right-aligned.
                if c < dims.len().max(1) && (c < dims.len() || dims.is_empty()) {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_then_totals_aligned() {
        let report = serde_json::json!({
            "from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z", "group_by": ["team"],
            "totals": {"requests": 3, "errors": 1, "prompt_tokens": 30, "completion_tokens": 12, "cached_tokens": 0, "reasoning_tokens": 0, "cost_usd": 0.0015},
            "groups": [
                {"team": "search", "requests": 2, "errors": 0, "prompt_tokens": 20, "completion_tokens": 10, "cached_tokens": 0, "reasoning_tokens": 0, "cost_usd": 0.001},
                {"team": null, "requests": 1, "errors": 1, "prompt_tokens": 10, "completion_tokens": 2, "cached_tokens": 0, "reasoning_tokens": 0, "cost_usd": 0.0005}
            ]
        });
        let t = table(&report);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[1].starts_with("team"), "{t}");
        assert!(lines[2].starts_with("search") && lines[2].ends_with("0.001000"), "{t}");
        assert!(lines[3].starts_with("-"), "{t}");
        assert!(lines[4].starts_with("TOTAL") && lines[4].ends_with("0.001500"), "{t}");
    }
}
