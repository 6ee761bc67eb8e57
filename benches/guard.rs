//! Criterion benches of the guard's detector (`guard::detect`): one `scan` over a 2 KB clean
//! prompt, a 2 KB prompt with several entities, 64 KB of mixed text, and non-ASCII text (German
//! and Chinese). Throughput is in bytes, so criterion prints MB/s next to the time.
//!
//! Also the stage (`guard_stage`) and crafted text against the detector's allowance
//! (`guard_crafted`).
//!
//! Run: `cargo bench --bench guard` (add `-- --quick` for a fast pass). The medians are in the
//! module doc of `src/guard/detect/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::guard::detect::{Allowance, Detector};

const PROSE: &str = "Can you help me rewrite the following paragraph so it sounds more professional? \
We shipped version 2.4 of the billing service last Tuesday, and since then about 12 customers \
reported that invoices over 1,000 EUR were rounded twice. The fix is in review (PR 4821); it \
changes 3 files and adds 40 tests. Our plan for the next 2 weeks: roll it out to 10% of traffic, \
watch the error rate, then go to 100% on the 15th. Please keep the tone friendly but precise, \
and make sure the numbers stay exactly as written. ";

const ENTITIES: &str = "Hi, I'm Jane (jane.doe@example.com, +44 20 7946 0958). My card is \
4111 1111 1111 1111 and the IBAN is DE89 3704 0044 0532 0130 00. The server is 192.168.10.24 and \
the key is sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv, password: Summer2024! ";

const GERMAN: &str = "Sehr geehrte Damen und Herren, bitte prüfen Sie die Größe der Lieferung \
für Köln und München; die Übergabe erfolgt am Montag gegen 14 Uhr. Vielen Dank für Ihre Geduld. ";

const CHINESE: &str = "请帮我把下面这段话改写得更正式一些。我们上周二发布了计费服务的新版本，\
之后大约有十二位客户反映发票金额被四舍五入了两次。修复方案正在审核中。";

fn fill(parts: &[&str], len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        for p in parts {
            s.push_str(p);
        }
    }
    let mut cut = len;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

fn bench(c: &mut Criterion) {
    let d = Detector::builtin();
    let inputs = [
        ("clean_2k", fill(&[PROSE], 2048)),
        ("entities_2k", fill(&[PROSE, ENTITIES], 2048)),
        ("mixed_64k", fill(&[PROSE, PROSE, ENTITIES, GERMAN, CHINESE], 64 * 1024)),
        ("german_chinese_2k", fill(&[GERMAN, CHINESE], 2048)),
    ];
    let mut g = c.benchmark_group("guard_scan");
    for (name, text) in &inputs {
        g.throughput(Throughput::Bytes(text.len() as u64));
        let mut out = Vec::with_capacity(64);
        g.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                d.scan(black_box(text), &mut out).unwrap();
                black_box(out.len())
            })
        });
        // The same text through the automaton whole (no prefilter): the baseline.
        g.bench_function(format!("{name}_whole"), |b| {
            b.iter(|| {
                out.clear();
                d.scan_unfiltered(black_box(text), &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// The whole request-side stage (`guard::request::check`) on a 2 KB chat body: every string of
/// the body walked, scanned and (with entities) redacted into a new body, and the user text
/// scored for injection; with PII and secrets redacted and injection flagged.
fn stage(c: &mut Criterion) {
    use tollgate::api::Wire;
    use tollgate::guard::{inject::Scorer, policy::Policy, request, Guard};
    let guard = Guard {
        detector: Detector::builtin(),
        scorer: Scorer::shared(),
        presidio: None,
    };
    let raw = serde_yaml::from_str("{ pii: redact, secrets: redact, injection: flag }").unwrap();
    let policy = Policy::resolve(&raw, guard.catalog(), false).unwrap();
    let no_injection = Policy::resolve(
        &serde_yaml::from_str("{ pii: redact, secrets: redact }").unwrap(),
        guard.catalog(),
        false,
    )
    .unwrap();
    let body = |user: &str| {
        serde_json::to_vec(&serde_json::json!({"model": "demo", "max_tokens": 64, "messages": [
            {"role": "system", "content": "You are a concise support assistant. Answer in two sentences."},
            {"role": "user", "content": user}]}))
        .unwrap()
    };
    let inputs = [
        ("clean_2k", body(&fill(&[PROSE], 1900))),
        ("entities_2k", body(&fill(&[PROSE, ENTITIES], 1900))),
        // The load runner's body (an email and a phone in 500 bytes).
        ("loadtest_body", include_bytes!("../loadtest/body-pii.json").to_vec()),
        (
            "loadtest_body_2k",
            include_bytes!("../loadtest/body-pii-2k.json").to_vec(),
        ),
    ];
    let mut g = c.benchmark_group("guard_stage");
    for (name, body) in &inputs {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| {
                black_box(request::check(
                    &guard,
                    &policy,
                    Wire::OpenAi,
                    black_box(body),
                    None,
                    Allowance::DEFAULT,
                ))
            })
        });
        g.bench_function(format!("{name}_no_injection"), |b| {
            b.iter(|| {
                black_box(request::check(
                    &guard,
                    &no_injection,
                    Wire::OpenAi,
                    black_box(body),
                    None,
                    Allowance::DEFAULT,
                ))
            })
        });
    }
    g.finish();
}

/// 16 KB of crafted text, each kind costing a scan time in the square of its length (seconds
/// at 64 KB without the allowance), against 16 KB of the densest real text measured: the crafted
/// ones stop at their allowance (`Overrun`, ~21 ms for 16 KB in this build) and the real ones
/// finish far inside it. `ok`/`overrun` in each row's name says which it did.
fn crafted(c: &mut Criterion) {
    let d = Detector::builtin();
    let len = 16 * 1024;
    let inputs = [
        ("address_dots", "a.".repeat(len / 2) + "a..@x.com"),
        ("sk_runs", "sk-".repeat(len / 3)),
        ("dotted_digits", "1.1.".repeat(len / 4)),
        ("ipv4_runs", "1.2.3.4.".repeat(len / 8)),
        ("card_table", fill(&["4111 1111 1111 1112 "], len)),
        (
            "password_cards",
            fill(&["password: Summer2024! and 4111 1111 1111 1112, "], len),
        ),
        (
            "csv",
            (0..len / 40)
                .map(|i| {
                    format!(
                        "2024-01-{:02},{}.{:02},{},0.{}\n",
                        i % 28 + 1,
                        i * 37 % 10_000,
                        i % 100,
                        i * 7919 % 100_000,
                        i % 97
                    )
                })
                .collect(),
        ),
    ];
    let mut g = c.benchmark_group("guard_crafted");
    g.sample_size(10);
    for (name, text) in &inputs {
        let outcome = if d.scan(text, &mut Vec::new()).is_ok() {
            "ok"
        } else {
            "overrun"
        };
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("{name}_{outcome}"), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                black_box(d.scan(black_box(text), &mut out).is_ok())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, stage, crafted);
criterion_main!(benches);
