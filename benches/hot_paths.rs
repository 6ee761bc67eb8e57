//! Criterion benches of the request path's pure parts: alias lookup and plan building, request
//! parse + render (small and large prompts), SSE decoding and the streaming passthrough observer.
//!
//! Run: `cargo bench --bench hot_paths` (add `-- --quick` for a fast pass).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate::api::openai::LlmRequest;
use tollgate::api::Endpoint;
use tollgate::config::{load_str, Env, Snapshot};
use tollgate::sse::SseDecoder;

fn snapshot(aliases: usize) -> Snapshot {
    let mut doc = String::from("providers:\n");
    for p in 0..5 {
        doc.push_str(&format!(
            "  p{p}:\n    kind: openai_compatible\n    base_url: http://h{p}:8000/v1\n    api_keys: [k{p}]\n"
        ));
    }
    doc.push_str("models:\n");
    for a in 0..aliases {
        doc.push_str(&format!(
            "  alias-{a}:\n    targets:\n      - {{ provider: p{}, model: m{a} }}\n      - {{ provider: p{}, model: m{a}b }}\n",
            a % 5,
            (a + 1) % 5
        ));
        if a > 0 {
            doc.push_str(&format!("    fallbacks: [alias-{}]\n", a - 1));
        }
    }
    // A policy table of 100 routes: 99 specific ones (task, model glob, metadata), then a
    // catch-all that rewrites to an alias.
    doc.push_str("routes:\n");
    for r in 0..99 {
        doc.push_str(&format!(
            "  - name: r{r}\n    match: {{ task: task-{r}, model: \"alias-{}*\", metadata: {{ tier: t{} }} }}\n    strategy: least_latency\n",
            r % aliases.max(1),
            r % 3
        ));
    }
    doc.push_str("  - name: default\n    model: alias-0\n");
    let resolve = |_: &str, port: u16| Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    let env = Env {
        var: &|_| None,
        resolve: &resolve,
    };
    load_str(Path::new("bench.yaml"), &doc, &env).expect("bench config")
}

fn chat_body(prompt_bytes: usize) -> Bytes {
    let content: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(prompt_bytes)
        .collect();
    Bytes::from(
        serde_json::json!({
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": content}
            ],
            "temperature": 0.2,
            "model": "alias-7",
            "stream": true,
            "stream_options": {"include_usage": true}
        })
        .to_string(),
    )
}

fn bench_routing(c: &mut Criterion) {
    let snap = snapshot(50);
    let mut g = c.benchmark_group("routing");
    g.bench_function("alias_lookup_50", |b| {
        b.iter(|| black_box(snap.model(black_box("alias-37"))))
    });
    // alias-37 falls back through every lower alias: a plan capped at 16 attempts.
    g.bench_function("plan_long_fallback_chain", |b| {
        b.iter(|| black_box(tollgate::routing::plan(&snap, black_box("alias-37")).unwrap()))
    });
    // Per-request ordering of an alias's own targets (4 targets), as the proxy does it.
    let stats: Vec<std::sync::Arc<tollgate::routing::balance::TargetStats>> = (0..4)
        .map(|_| std::sync::Arc::new(tollgate::routing::balance::TargetStats::new()))
        .collect();
    for (i, s) in stats.iter().enumerate() {
        s.observe_ttfb(std::time::Duration::from_millis(10 * (4 - i as u64)));
    }
    let weighted = tollgate::routing::balance::Weighted::new(&[5, 3, 1, 1]);
    for (name, strategy) in [
        ("order_priority_4", tollgate::routing::balance::Strategy::Priority),
        ("order_weighted_4", tollgate::routing::balance::Strategy::Weighted),
        (
            "order_least_latency_4",
            tollgate::routing::balance::Strategy::LeastLatency,
        ),
        ("order_least_busy_4", tollgate::routing::balance::Strategy::LeastBusy),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(tollgate::routing::balance::order(strategy, 4, Some(&weighted), &stats)))
        });
    }
    let breaker = tollgate::routing::breaker::Breaker::new(Default::default());
    g.bench_function("breaker_admit_record", |b| {
        b.iter(|| {
            let now = tollgate::routing::breaker::now_ms();
            black_box(breaker.admit(now));
            breaker.record(true, now);
        })
    });
    g.bench_function("ab_arm_sticky", |b| {
        b.iter(|| {
            black_box(tollgate::routing::balance::ab_arm(
                "alias-7",
                Some(black_box("user-12345")),
                10.0,
            ))
        })
    });
    // Route selection through all 100 routes (only the catch-all matches: the worst case), then
    // the plan of the alias it names — the whole per-request policy step.
    let metadata: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"tier":"t9","feature":"search"}"#).unwrap();
    g.bench_function("route_select_100_then_plan", |b| {
        b.iter(|| {
            let input = tollgate::routing::routes::RouteInput {
                model: black_box("alias-49"),
                task: Some(black_box("task-unknown")),
                metadata: Some(&metadata),
                key: Some("key-1"),
                team: Some("growth"),
                tier: Some("free"),
            };
            let route = tollgate::routing::routes::select(&snap.routes, &input).unwrap();
            let alias = route.rewrite.as_deref().unwrap_or("alias-49");
            black_box(tollgate::routing::plan(&snap, alias).unwrap())
        })
    });
    g.bench_function("plan_single_alias", |b| {
        b.iter(|| black_box(tollgate::routing::plan(&snap, black_box("alias-0")).unwrap()))
    });
    g.finish();
}

/// A conversation as agents and coding tools send it: many turns, text with line breaks and quotes
/// (escapes in JSON), some of it in content parts, about `bytes` long.
fn conversation_body(bytes: usize) -> Bytes {
    let line = "    let x = \"value\"; // a line of code\n";
    let turn: String = line.chars().cycle().take(2_000).collect();
    let mut messages = vec![serde_json::json!({"role": "system", "content": "You are a coding assistant."})];
    let mut size = 0;
    while size < bytes {
        messages.push(serde_json::json!({"role": "user", "content": [{"type": "text", "text": turn}]}));
        messages.push(serde_json::json!({"role": "assistant", "content": turn}));
        size += 2 * turn.len();
    }
    Bytes::from(
        serde_json::json!({"messages": messages, "model": "alias-7", "max_tokens": 1024, "temperature": 0.2})
            .to_string(),
    )
}

fn bench_parse_render(c: &mut Criterion) {
    let snap = snapshot(50);
    let target = snap.model("alias-7").unwrap().targets[0].clone();
    let adapter = target.provider.kind.adapter();
    let mut g = c.benchmark_group("parse_render");
    for size in [1_000usize, 100_000, 4_000_000] {
        let body = chat_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| {
                let req = LlmRequest::parse(Endpoint::ChatCompletions, body.clone()).unwrap();
                black_box(adapter.render(&req, &target.render_target()).unwrap())
            })
        });
    }
    let body = conversation_body(100_000);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_with_input(BenchmarkId::new("conversation", 100_000), &body, |b, body| {
        b.iter(|| {
            let req = LlmRequest::parse(Endpoint::ChatCompletions, body.clone()).unwrap();
            black_box(adapter.render(&req, &target.render_target()).unwrap())
        })
    });
    g.finish();
}

fn openai_stream(chunks: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..chunks {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    s.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":200}}\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

fn bench_sse(c: &mut Criterion) {
    let stream = openai_stream(200);
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for piece in [64usize, 1460, 16384] {
        g.bench_with_input(BenchmarkId::new("decode", piece), &piece, |b, &piece| {
            b.iter(|| {
                let mut d = SseDecoder::default();
                let mut n = 0usize;
                for chunk in stream.chunks(piece) {
                    d.push(chunk, &mut |e| n += e.data.len()).unwrap();
                }
                d.finish(&mut |e| n += e.data.len()).unwrap();
                black_box(n)
            })
        });
    }
    let adapter = tollgate::providers::ProviderKind::OpenAiCompatible.adapter();
    let pieces: Vec<Bytes> = stream.chunks(1460).map(Bytes::copy_from_slice).collect();
    g.bench_function("openai_passthrough_observer", |b| {
        b.iter(|| {
            let mut o = adapter.observer();
            for p in &pieces {
                o.push(p).unwrap();
            }
            o.finish().unwrap();
            black_box(o.usage())
        })
    });
    g.finish();
}

/// Pingora's `HttpPeer` for an upstream attempt: the one kept in the address's slot (what the
/// proxy does) against building a fresh one from the config's plain `Peer`; both hash it for the
/// connection pool as the connector does.
fn bench_upstream_peer(c: &mut Criterion) {
    use pingora::upstreams::peer::Peer as _;
    let peer = |built| tollgate::config::Peer {
        addr: SocketAddr::from(([10, 1, 2, 3], 443)),
        tls: true,
        sni: "bedrock-runtime.us-east-1.amazonaws.com".into(),
        connect_timeout: std::time::Duration::from_secs(5),
        idle_timeout: std::time::Duration::from_secs(90),
        built,
    };
    let kept = peer(Default::default());
    let mut g = c.benchmark_group("upstream_peer");
    g.bench_function("kept", |b| {
        b.iter(|| tollgate::proxy::upstream::peer_of(black_box(&kept)).reuse_hash())
    });
    g.bench_function("build", |b| {
        b.iter(|| tollgate::proxy::upstream::peer_of(black_box(&peer(Default::default()))).reuse_hash())
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_routing,
    bench_parse_render,
    bench_sse,
    bench_upstream_peer
);
criterion_main!(benches);
