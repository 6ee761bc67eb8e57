//! The OTLP exporter against a real HTTP collector on loopback: a small std server that records
//! every request (headers and JSON body) and answers from a script (default 200 `{}`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate::telemetry::trace::{Exporter, OtlpConfig, Span, SpanKind, TraceId};

struct Received {
    at: Instant,
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn spans(&self) -> &Vec<Value> {
        self.body["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap()
    }
}

#[derive(Clone, Default)]
struct Collector {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// Status and extra header lines for the next replies; 200 once empty.
    script: Arc<Mutex<VecDeque<(u16, &'static str)>>>,
}

impl Collector {
    fn start(script: &[(u16, &'static str)]) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let collector = Collector {
            port: listener.local_addr().unwrap().port(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            ..Collector::default()
        };
        let c = collector.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let c = c.clone();
                std::thread::spawn(move || c.serve(stream));
            }
        });
        collector
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    /// Keep-alive loop: one request after another until the client closes.
    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (k, v) = line.split_once(':').unwrap();
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .expect("the exporter sends content-length");
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            self.received.lock().unwrap().push(Received {
                at: Instant::now(),
                path,
                headers,
                body: serde_json::from_slice(&body).expect("the body is JSON"),
            });
            let (status, extra) = self.script.lock().unwrap().pop_front().unwrap_or((200, ""));
            let reply_body = if status == 200 { "{}" } else { "" };
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{reply_body}",
                reply_body.len()
            );
            if writer.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    fn wait_for(&self, requests: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.count() >= requests {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

fn config(endpoint: String) -> OtlpConfig {
    OtlpConfig {
        endpoint,
        service_name: "otlp-test".into(),
        ..OtlpConfig::default()
    }
}

fn spans(n: usize) -> Vec<Span> {
    let trace = TraceId::random();
    (0..n)
        .map(|i| Span::new(trace, None, "span", SpanKind::Internal, i as u64, i as u64 + 1))
        .collect()
}

#[test]
fn spans_reach_the_collector() {
    let collector = Collector::start(&[]);
    let exporter = Exporter::start(OtlpConfig {
        headers: vec![("x-api-key".into(), "sk-test".into())],
        flush_interval: Duration::from_secs(60),
        ..config(collector.endpoint())
    })
    .unwrap();

    let trace = TraceId::random();
    let mut root = Span::new(trace, None, "chat gpt-4o", SpanKind::Server, 100, 200);
    root.attr("gen_ai.request.model", "gpt-4o")
        .attr("gen_ai.usage.input_tokens", 12u64);
    let mut upstream = Span::new(trace, Some(root.span_id), "chat gpt-4o", SpanKind::Client, 110, 190);
    upstream.error = Some("upstream timed out".into());
    let policy = Span::new(trace, Some(root.span_id), "policy", SpanKind::Internal, 101, 102);
    let (root_id, upstream_id) = (root.span_id, upstream.span_id);
    exporter.export(vec![root, upstream, policy]);

    assert!(exporter.flush(Duration::from_secs(5)));
    assert_eq!(collector.count(), 1);
    let received = collector.received.lock().unwrap();
    let req = &received[0];
    assert_eq!(req.path, "/v1/traces");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-api-key"), Some("sk-test"));
    let resource = &req.body["resourceSpans"][0]["resource"]["attributes"][0];
    assert_eq!(resource["key"], "service.name");
    assert_eq!(resource["value"]["stringValue"], "otlp-test");
    let spans = req.spans();
    assert_eq!(spans.len(), 3);
    assert_eq!(spans[0]["traceId"], trace.to_string());
    assert_eq!(spans[0]["spanId"], root_id.to_string());
    assert_eq!(spans[0]["kind"], 2);
    assert_eq!(spans[0]["startTimeUnixNano"], "100");
    assert_eq!(spans[0]["attributes"][1]["value"]["intValue"], "12");
    assert_eq!(spans[1]["spanId"], upstream_id.to_string());
    assert_eq!(spans[1]["parentSpanId"], root_id.to_string());
    assert_eq!(spans[1]["status"]["code"], 2);
    let stats = exporter.stats().snapshot();
    assert_eq!((stats.exported, stats.dropped, stats.failed_batches), (3, 0, 0));
    drop(received);
    exporter.shutdown(Duration::from_secs(2));
}

#[test]
fn batches_by_size() {
    let collector = Collector::start(&[]);
    let exporter = Exporter::start(OtlpConfig {
        batch_size: 10,
        flush_interval: Duration::from_secs(60),
        ..config(collector.endpoint())
    })
    .unwrap();
    for _ in 0..5 {
        exporter.export(spans(5));
    }
    // Two full batches go without waiting for the interval; the last five wait.
    assert!(collector.wait_for(2, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(collector.count(), 2);
    assert_eq!(exporter.stats().snapshot().queue_depth, 5);
    assert!(exporter.flush(Duration::from_secs(5)));
    let sizes: Vec<usize> = collector
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.spans().len())
        .collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(exporter.stats().snapshot().exported, 25);
}

#[test]
fn batches_by_interval() {
    let collector = Collector::start(&[]);
    let exporter = Exporter::start(OtlpConfig {
        batch_size: 1000,
        flush_interval: Duration::from_millis(200),
        ..config(collector.endpoint())
    })
    .unwrap();
    exporter.export(spans(3));
    assert!(
        collector.wait_for(1, Duration::from_secs(3)),
        "a partial batch goes out on the interval"
    );
    assert_eq!(collector.received.lock().unwrap()[0].spans().len(), 3);
    exporter.export(spans(2));
    assert!(collector.wait_for(2, Duration::from_secs(3)));
    // The collector records a POST before it answers; `exported` moves once the answer is read.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while exporter.stats().snapshot().exported < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(exporter.stats().snapshot().exported, 5);
}

#[test]
fn retries_once_after_503() {
    let collector = Collector::start(&[(503, "")]);
    let exporter = Exporter::start(config(collector.endpoint())).unwrap();
    exporter.export(spans(2));
    assert!(exporter.flush(Duration::from_secs(10)));
    let received = collector.received.lock().unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].body, received[1].body, "the retry sends the same batch");
    let stats = exporter.stats().snapshot();
    assert_eq!((stats.exported, stats.failed_batches), (2, 0));
}

#[test]
fn retry_after_is_honoured() {
    let collector = Collector::start(&[(429, "retry-after: 1\r\n")]);
    let exporter = Exporter::start(config(collector.endpoint())).unwrap();
    exporter.export(spans(1));
    assert!(exporter.flush(Duration::from_secs(10)));
    let received = collector.received.lock().unwrap();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(waited >= Duration::from_millis(950), "retried after {waited:?}");
    assert_eq!(exporter.stats().snapshot().exported, 1);
}

#[test]
fn non_retryable_status_drops_the_batch() {
    let collector = Collector::start(&[(400, "")]);
    let exporter = Exporter::start(config(collector.endpoint())).unwrap();
    exporter.export(spans(4));
    assert!(exporter.flush(Duration::from_secs(5)));
    assert_eq!(collector.count(), 1, "a 400 is not retried");
    let stats = exporter.stats().snapshot();
    assert_eq!((stats.exported, stats.failed_batches, stats.failed_spans), (0, 1, 4));
    // The exporter carries on with the next batch.
    exporter.export(spans(1));
    assert!(exporter.flush(Duration::from_secs(5)));
    assert_eq!(exporter.stats().snapshot().exported, 1);
}

#[test]
fn dead_collector_never_blocks_export() {
    let dead_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let exporter = Exporter::start(OtlpConfig {
        queue_capacity: 1000,
        batch_size: 500,
        flush_interval: Duration::from_millis(20),
        timeout: Duration::from_secs(1),
        ..config(format!("http://127.0.0.1:{dead_port}/v1/traces"))
    })
    .unwrap();
    let batches: Vec<Vec<Span>> = (0..1000).map(|_| spans(100)).collect();

    let started = Instant::now();
    for batch in batches {
        exporter.export(batch);
    }
    let elapsed = started.elapsed();
    eprintln!("100k spans offered to a full queue in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "100k exports took {elapsed:?}");
    let stats = exporter.stats().snapshot();
    assert!(stats.queue_depth <= 1000);
    assert!(stats.dropped >= 100_000 - 3000, "dropped {}", stats.dropped);

    assert!(
        exporter.flush(Duration::from_secs(20)),
        "flush returns once every batch failed"
    );
    let stats = exporter.stats().snapshot();
    assert!(stats.failed_batches >= 2, "{stats:?}");
    assert_eq!(stats.exported, 0);
    assert_eq!(stats.dropped + stats.failed_spans, 100_000, "{stats:?}");
    exporter.shutdown(Duration::from_secs(2));
}
