//! The Grafana dashboard and the Prometheus alert rules under `deploy/observability/` refer only
//! to metrics the gateway registers, and are well-formed: the dashboard is JSON whose panels all
//! carry a query; every rule has a name, an expression, a severity and a summary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

use tollgate::telemetry::metrics::{series_names, Metrics};

const DASHBOARD: &str = include_str!("../deploy/observability/grafana-dashboard.json");
const ALERTS: &str = include_str!("../deploy/observability/alerts.yaml");

/// The `tollgate_*` names `text` refers to that the gateway does not export (a histogram only as
/// its `_bucket`, `_sum` and `_count` series).
fn unknown_metrics(text: &str, series: &BTreeSet<String>) -> Vec<String> {
    let mut unknown = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("tollgate_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        let name = &text[start..end];
        if !series.contains(name) {
            unknown.push(name.to_string());
        }
        i = end;
    }
    unknown
}

fn series() -> BTreeSet<String> {
    let _metrics = Metrics::new().unwrap();
    series_names().into_iter().collect()
}

#[test]
fn the_dashboard_and_the_rules_name_only_registered_metrics() {
    let series = series();
    assert!(series.contains("tollgate_requests_total") && series.contains("tollgate_overhead_seconds_bucket"));
    assert_eq!(unknown_metrics(DASHBOARD, &series), Vec::<String>::new());
    assert_eq!(unknown_metrics(ALERTS, &series), Vec::<String>::new());
    // The check itself catches a name that does not exist, a histogram suffix on a counter and a
    // histogram by its bare name.
    assert_eq!(
        unknown_metrics(
            "rate(tollgate_requests_totl[5m]) + tollgate_requests_total_bucket + tollgate_overhead_seconds",
            &series
        ),
        vec![
            "tollgate_requests_totl",
            "tollgate_requests_total_bucket",
            "tollgate_overhead_seconds"
        ]
    );
}

#[test]
fn the_dashboard_is_json_with_a_query_in_every_panel() {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    assert_eq!(d["uid"], "tollgate-overview");
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| e.contains("tollgate_")),
                "{}",
                p["title"]
            );
        }
    }
}

#[test]
fn every_alert_rule_has_a_name_an_expression_a_severity_and_a_summary() {
    let doc: serde_yaml::Value = serde_yaml::from_str(ALERTS).unwrap();
    let mut alerts = BTreeSet::new();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            assert!(alerts.insert(name.to_string()), "{name} twice");
            assert!(rule["expr"].as_str().is_some_and(|e| e.contains("tollgate_")), "{name}");
            assert!(
                matches!(rule["labels"]["severity"].as_str(), Some("warning" | "critical")),
                "{name}"
            );
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{name}");
        }
    }
    // What the issue asks the rules to cover.
    for needed in [
        "TollgateProviderErrorRate",
        "TollgateBreakerOpen",
        "TollgateBudgetRefusals",
        "TollgateLedgerSpillGrowing",
        "TollgateRedisDown",
    ] {
        assert!(alerts.contains(needed), "{needed} missing");
    }
}

/// `tollgate_budget_used_ratio`: a gateway started on a ledger that holds a key's spend reports
/// the share of that key's budget spent (what `TollgateBudgetNearExhaustion` watches).
#[test]
fn the_budget_gauge_reports_each_budgets_share_spent_from_the_ledger() {
    let mock = Mock::start(&[]);
    let shared = tempfile::tempdir().unwrap();
    let ledger = shared.path().join("spend.db");
    let rest = format!(
        "usage:\n  ledger: \"sqlite:{}\"\n  flush_interval: 20ms\nauth:\n  required: true\n\
keys:\n  - {{ id: capped, key: \"${{CAPPED_KEY}}\", team: search, limits: {{ budgets: [ {{ usd: 1.0, period: 1d }} ] }} }}\n\
teams:\n  search: {{ limits: {{ budgets: [ {{ usd: 100.0, period: month }} ] }} }}\n\
pricing:\n  models:\n    - {{ provider: mock, model: priced, input: 1000, output: 1000 }}\n\
providers:\n{}models:\n  m:\n    targets: [ {{ provider: mock, model: priced }} ]\n",
        ledger.display(),
        mock_provider("mock", &mock.base_url(), "")
    );
    let spend = |gw: &Gateway| {
        let body = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hello there"}]}"#;
        let r = post(
            &gw.url("/v1/chat/completions"),
            body,
            &[("authorization", "Bearer tg-capped-secret")],
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    {
        let mut first = Gateway::start_env("", &rest, &[("CAPPED_KEY", "tg-capped-secret")]);
        spend(&first);
        spend(&first);
        first.proc.signal(libc::SIGTERM);
        assert!(first.proc.wait_exit(Duration::from_secs(15)).is_some());
    }
    // The next process reads the ledger at its first pass.
    let gw = Gateway::start_env("", &rest, &[("CAPPED_KEY", "tg-capped-secret")]);
    let key = "tollgate_budget_used_ratio{id=\"capped\",period=\"1d\",scope=\"key\"}";
    let team = "tollgate_budget_used_ratio{id=\"search\",period=\"month\",scope=\"team\"}";
    wait_until("the budget gauge", Duration::from_secs(10), || gw.metric(key) > 0.0);
    let (k, t) = (gw.metric(key), gw.metric(team));
    // Both shares come from the same spend: 100 times apart, as the budgets are.
    assert!(k > 0.0 && (k / t - 100.0).abs() < 1e-6, "key {k}, team {t}");
}
