//! Criterion benches of each dialect's translators through the public adapter API, on the golden
//! fixtures: request render (parse + canonical + dialect body), non-streamed response → OpenAI,
//! streamed response → OpenAI chunks (fed in 1460-byte pieces), the Responses API's conversion
//! around the chat stages, and the AWS event-stream decoder.
//!
//! Run: `cargo bench --bench translators` (add `-- --quick` for a fast pass).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate::api::openai::LlmRequest;
use tollgate::api::responses::request::to_chat;
use tollgate::api::responses::{Encoder, ResponsesRequest, Turn};
use tollgate::api::Endpoint;
use tollgate::config::{load_str, Env, Snapshot};
use tollgate::sse::eventstream::{Decoder, Frame};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIX}{path}")).unwrap()
}

fn snapshot() -> Snapshot {
    let doc = "\
providers:
  anthropic: { kind: anthropic, base_url: http://a/v1, api_keys: [k] }
  gemini: { kind: gemini, base_url: http://g/v1beta, api_keys: [k] }
  bedrock: { kind: bedrock, base_url: http://b, aws_region: us-east-1, aws_access_key_id: AKID, aws_secret_access_key: s }
  openai: { kind: openai_compatible, base_url: http://o/v1, api_keys: [k] }
models:
  anthropic: { targets: [ { provider: anthropic, model: claude-sonnet-4-5 } ] }
  gemini: { targets: [ { provider: gemini, model: gemini-2.5-flash } ] }
  bedrock: { targets: [ { provider: bedrock, model: \"anthropic.claude-3-5-sonnet-20240620-v1:0\" } ] }
  openai: { targets: [ { provider: openai, model: gpt-4o } ] }
";
    let resolve = |_: &str, port: u16| Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    let env = Env {
        var: &|_| None,
        resolve: &resolve,
    };
    load_str(Path::new("bench.yaml"), doc, &env).unwrap()
}

/// The rich OpenAI request (system, developer, image, tools, tool results) with `stream` set.
fn request(stream: bool) -> Bytes {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture("anthropic/openai_request.json")).unwrap();
    v["stream"] = serde_json::json!(stream);
    // Bedrock cannot take http image URLs; keep the base64 image only, for every dialect alike.
    if let Some(parts) = v["messages"][2]["content"].as_array_mut() {
        parts.retain(|p| !p["image_url"]["url"].as_str().is_some_and(|u| u.starts_with("http")));
    }
    Bytes::from(v.to_string())
}

fn bedrock_stream() -> Vec<u8> {
    let events: Vec<serde_json::Value> = serde_json::from_slice(&fixture("bedrock/stream_text.events.json")).unwrap();
    let mut out = Vec::new();
    for e in events {
        let payload = Bytes::from(e["payload"].to_string());
        out.extend_from_slice(&Frame::event(e["event"].as_str().unwrap(), payload).encode().unwrap());
    }
    out
}

fn bench(c: &mut Criterion) {
    let snap = snapshot();
    let dialects: [(&str, Vec<u8>, Vec<u8>); 3] = [
        (
            "anthropic",
            fixture("anthropic/anthropic_response.json"),
            fixture("anthropic/stream.sse"),
        ),
        (
            "gemini",
            fixture("gemini/chat_response.gemini.json"),
            fixture("gemini/stream_text.sse"),
        ),
        (
            "bedrock",
            fixture("bedrock/chat_response.converse.json"),
            bedrock_stream(),
        ),
    ];
    let mut g = c.benchmark_group("translate");
    for (name, response, stream) in &dialects {
        let target = snap.model(name).unwrap().targets[0].clone();
        let adapter = target.provider.kind.adapter();
        let body = request(false);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("request", name), &body, |b, body| {
            b.iter(|| {
                let req = LlmRequest::parse(Endpoint::ChatCompletions, body.clone()).unwrap();
                black_box(adapter.render(&req, &target.render_target()).unwrap())
            })
        });
        let req = LlmRequest::parse(Endpoint::ChatCompletions, body.clone()).unwrap();
        let rendered = adapter.render(&req, &target.render_target()).unwrap();
        g.throughput(Throughput::Bytes(response.len() as u64));
        g.bench_with_input(BenchmarkId::new("response", name), response, |b, response| {
            b.iter(|| black_box(adapter.parse_chat(response, &rendered).unwrap()))
        });
        let sreq = LlmRequest::parse(Endpoint::ChatCompletions, request(true)).unwrap();
        let srendered = adapter.render(&sreq, &target.render_target()).unwrap();
        let pieces: Vec<&[u8]> = stream.chunks(1460).collect();
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_with_input(BenchmarkId::new("stream", name), &pieces, |b, pieces| {
            b.iter(|| {
                let mut src = adapter.chat_stream(&srendered);
                let mut out = Vec::new();
                for p in pieces {
                    src.push(p, &mut out).unwrap();
                }
                src.finish(&mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    g.finish();

    // The canonical parse alone (serde into `ChatRequest`, unknown fields kept via `flatten`),
    // to see how much of `translate/request` it is.
    let body = request(false);
    let mut g = c.benchmark_group("canonical");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("parse_chat_request", |b| {
        b.iter(|| black_box(serde_json::from_slice::<tollgate::api::chat::ChatRequest>(&body).unwrap()))
    });
    g.bench_function("parse_as_value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(&body).unwrap()))
    });
    g.finish();

    // The Responses API around the chat stages: a request into the chat body the stages serve
    // (parse, items → messages, serialise, the chat parse), and the gateway's chat answer out as
    // Responses events or a response object.
    let mut g = c.benchmark_group("responses");
    let rbody = serde_json::json!({"model": "openai", "instructions": "Be brief.", "input": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "18C and sunny"},
        {"role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]}],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}}}], "stream": true})
    .to_string();
    g.throughput(Throughput::Bytes(rbody.len() as u64));
    g.bench_function("request_to_chat", |b| {
        b.iter(|| {
            let r = ResponsesRequest::parse(rbody.as_bytes()).unwrap();
            let input = r.input_items().unwrap();
            let chat = to_chat(&r, &[], &input).unwrap();
            let bytes = Bytes::from(serde_json::to_vec(&chat).unwrap());
            black_box(LlmRequest::parse(Endpoint::ChatCompletions, bytes).unwrap())
        })
    });
    let turn = Turn::new(&ResponsesRequest::parse(rbody.as_bytes()).unwrap(), 1_700_000_000);
    // 100 text chunks, a finish and a usage chunk: the gateway's own chat stream.
    let mut chat = String::new();
    for i in 0..100 {
        let c = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": format!("word{i} ")}, "finish_reason": null}]});
        chat.push_str(&format!("data: {c}\n\n"));
    }
    chat.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    chat.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":100,\"total_tokens\":120}}\n\ndata: [DONE]\n\n");
    g.throughput(Throughput::Elements(102));
    g.bench_function("stream_102_chunks", |b| {
        b.iter(|| {
            let mut enc = Encoder::new(turn.clone());
            let mut n = 0;
            for p in chat.as_bytes().chunks(1460) {
                n += enc.body(p).len();
            }
            black_box(n)
        })
    });
    let whole = serde_json::json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "It will rain tomorrow in Paris."},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}})
    .to_string();
    g.throughput(Throughput::Elements(1));
    g.bench_function("whole", |b| {
        b.iter(|| black_box(Encoder::new(turn.clone()).whole(whole.as_bytes()).len()))
    });
    g.finish();

    let frames = bedrock_stream();
    let mut g = c.benchmark_group("eventstream");
    g.throughput(Throughput::Bytes(frames.len() as u64));
    g.bench_function("decode_1460", |b| {
        b.iter(|| {
            let mut d = Decoder::with_max_frame(16 << 20);
            let mut n = 0usize;
            for p in frames.chunks(1460) {
                d.push(p, &mut |f| n += f.payload.len()).unwrap();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
