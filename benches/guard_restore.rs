//! Criterion benches of `pii: redact`'s pure paths: `rewrite_strings` over a 2 KB chat body
//! (no findings, and three values redacted into the vault), and the stream restorer over a
//! 100-event OpenAI stream (one event per piece, a tenth of them carrying placeholders, some
//! split across events) and the same stream without placeholders.
//!
//! Run: `cargo bench --bench guard_restore` (add `-- --quick` for a fast pass).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use tollgate::api::Wire;
use tollgate::guard::entity::{Finding, Kind};
use tollgate::guard::redact::{apply, rewrite_strings, Vault};
use tollgate::guard::restore::observer;

const SECRETS: [&str; 3] = ["alice@example.com", "bob.smith@example.org", "4111 1111 1111 1111"];
const LABELS: [&str; 3] = ["EMAIL", "EMAIL", "CARD"];

/// A ~2 KB chat request: a system prompt, a few turns, a tool; with or without the secrets.
fn body(with_secrets: bool) -> Vec<u8> {
    let filler = "Please review the attached notes and summarise the main points for the team. ";
    let user = if with_secrets {
        format!(
            "{filler}Contact {} or {} about the invoice, paid with card {}. {filler}",
            SECRETS[0], SECRETS[1], SECRETS[2]
        )
    } else {
        format!("{filler}Contact the billing team about the invoice. {filler}")
    };
    let b = json!({
        "model": "gpt-4o",
        "stream": true,
        "messages": [
            {"role": "system", "content": filler.repeat(4)},
            {"role": "user", "content": user},
            {"role": "assistant", "content": filler.repeat(3)},
            {"role": "user", "content": [{"type": "text", "text": filler.repeat(3)}]},
        ],
        "tools": [{"type": "function", "function": {"name": "send_mail", "description": "Sends a mail",
            "parameters": {"type": "object", "properties": {"to": {"type": "string"}}}}}],
    });
    serde_json::to_vec(&b).unwrap()
}

/// The edit a redacting route runs on each string: find the secrets (a stand-in for the
/// detector), replace them with vault placeholders.
fn redact(text: &str, vault: &mut Vault) -> Option<String> {
    let findings: Vec<Finding> = SECRETS
        .iter()
        .enumerate()
        .filter_map(|(k, s)| {
            let start = text.find(s)?;
            Some(Finding {
                kind: Kind(k as u16),
                start,
                end: start + s.len(),
            })
        })
        .collect();
    if findings.is_empty() {
        return None;
    }
    apply(text, &findings, &mut |f, v, out| {
        out.push_str(vault.placeholder(LABELS[usize::from(f.kind.0)], v));
        true
    })
}

fn stream(with_placeholders: bool) -> Vec<Bytes> {
    (0..100)
        .map(|i| {
            let content = match (with_placeholders, i % 10) {
                (true, 3) => "write to [EMAIL_1] and [EMA".to_string(),
                (true, 4) => "IL_2] today ".to_string(),
                _ => format!("token {i} of the answer "),
            };
            let finish = (i == 99).then_some("stop");
            let c = json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",
                "choices":[{"index":0,"delta":{"content":content},"finish_reason":finish}]});
            Bytes::from(format!("data: {c}\n\n"))
        })
        .chain(std::iter::once(Bytes::from_static(b"data: [DONE]\n\n")))
        .collect()
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("guard_redact");
    for (name, with) in [
        ("rewrite_strings_2kb_no_findings", false),
        ("rewrite_strings_2kb_three_findings", true),
    ] {
        let b = body(with);
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let mut vault = Vault::new(&b);
                let out = rewrite_strings(black_box(&b), &mut |s| redact(s, &mut vault));
                assert_eq!(out.is_some(), with);
                black_box((out, vault.len()))
            })
        });
    }
    g.finish();

    let mut vault = Vault::new(b"");
    for s in &SECRETS {
        let label = if s.contains('@') { "EMAIL" } else { "CARD" };
        vault.placeholder(label, s);
    }
    let vault = Arc::new(vault);
    let mut g = c.benchmark_group("guard_restore");
    for (name, with) in [
        ("stream_100_events", true),
        ("stream_100_events_no_placeholders", false),
    ] {
        let pieces = stream(with);
        g.throughput(Throughput::Bytes(pieces.iter().map(|p| p.len() as u64).sum()));
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let mut obs = observer(Arc::clone(&vault), Wire::OpenAi);
                let mut n = 0;
                for p in &pieces {
                    n += obs.body(p.clone()).len();
                }
                n += obs.end(true).len();
                black_box(n)
            })
        });
    }
    g.finish();
}

criterion_group!(guard, benches);
criterion_main!(guard);
