//! Tests of the exporter: config checks, hidden credentials, Retry-After, partial success, the
//! thread's stop, and every span accounted for when exports race a stop.

use super::*;

fn cfg(endpoint: &str) -> OtlpConfig {
    OtlpConfig {
        endpoint: endpoint.to_string(),
        ..OtlpConfig::default()
    }
}

#[test]
fn start_validates_the_config() {
    assert!(Exporter::start(cfg("ftp://collector/v1/traces"))
        .unwrap_err()
        .contains("http"));
    assert!(Exporter::start(cfg("not a url")).is_err());
    assert!(Exporter::start(cfg("http://")).is_err());
    let zero = OtlpConfig {
        batch_size: 0,
        ..cfg("http://127.0.0.1:4318/v1/traces")
    };
    assert!(Exporter::start(zero).is_err());
    let forever = OtlpConfig {
        flush_interval: Duration::MAX,
        ..cfg("http://127.0.0.1:4318/v1/traces")
    };
    assert!(Exporter::start(forever).is_err());
    let bad_header = OtlpConfig {
        headers: vec![("authorization".into(), "Bearer sk-secret\r\nx: y".into())],
        ..cfg("http://127.0.0.1:4318/v1/traces")
    };
    let err = Exporter::start(bad_header).unwrap_err();
    assert!(err.contains("authorization") && !err.contains("sk-secret"), "{err}");
    let bad_name = OtlpConfig {
        headers: vec![("x auth".into(), "v".into())],
        ..cfg("http://127.0.0.1:4318/v1/traces")
    };
    assert!(Exporter::start(bad_name).is_err());
    let ok = Exporter::start(cfg("https://otlp.example.com/v1/traces")).unwrap();
    ok.shutdown(Duration::from_secs(1));
}

#[test]
fn debug_hides_credentials() {
    let c = OtlpConfig {
        headers: vec![("x-api-key".into(), "sk-secret".into())],
        ..cfg("https://user:pw-secret@otlp.example.com/v1/traces?token=q-secret")
    };
    let shown = format!("{c:?}");
    assert!(shown.contains("x-api-key: ***"), "{shown}");
    assert!(shown.contains("https://otlp.example.com/v1/traces"), "{shown}");
    assert!(!shown.contains("secret"), "{shown}");
}

#[test]
fn retry_after_is_parsed_and_capped() {
    assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
    assert_eq!(parse_retry_after("3600"), Some(MAX_PAUSE));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    assert_eq!(parse_retry_after("-1"), None);
}

#[test]
fn partial_success_is_read() {
    assert_eq!(rejected_spans(b""), 0);
    assert_eq!(rejected_spans(b"{}"), 0);
    assert_eq!(rejected_spans(br#"{"partialSuccess":{"rejectedSpans":"3"}}"#), 3);
    assert_eq!(rejected_spans(br#"{"partialSuccess":{"rejectedSpans":4}}"#), 4);
    assert_eq!(rejected_spans(b"\x0a\x00"), 0);
}

#[test]
fn dropping_the_last_handle_stops_the_thread() {
    let exporter = Exporter::start(cfg("http://127.0.0.1:9/v1/traces")).unwrap();
    let clone = exporter.clone();
    let shared = Arc::downgrade(&exporter.inner.shared);
    drop(exporter);
    std::thread::sleep(Duration::from_millis(20));
    assert!(shared.upgrade().is_some(), "a clone keeps the exporter running");
    drop(clone);
    let deadline = Instant::now() + Duration::from_secs(5);
    while shared.upgrade().is_some() {
        assert!(Instant::now() < deadline, "the worker did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn export_after_shutdown_drops() {
    let exporter = Exporter::start(cfg("http://127.0.0.1:9/v1/traces")).unwrap();
    exporter.shutdown(Duration::from_secs(1));
    let span = Span::new(
        super::super::TraceId::random(),
        None,
        "x",
        super::super::SpanKind::Internal,
        1,
        2,
    );
    exporter.export(vec![span.clone(), span]);
    assert_eq!(exporter.stats().snapshot().dropped, 2);
    assert!(exporter.flush(Duration::from_millis(50)));
    assert!(exporter.flush(Duration::MAX), "an absurd timeout does not overflow");
}

#[test]
fn racing_exports_and_a_stop_account_for_every_span() {
    let exporter = Exporter::start(OtlpConfig {
        queue_capacity: 64,
        batch_size: 8,
        flush_interval: Duration::from_millis(5),
        timeout: Duration::from_millis(200),
        ..cfg("http://127.0.0.1:9/v1/traces")
    })
    .unwrap();
    let span = Span::new(
        super::super::TraceId::random(),
        None,
        "x",
        super::super::SpanKind::Internal,
        1,
        2,
    );
    let (offered, stopped) = (AtomicU64::new(0), AtomicBool::new(false));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (exporter, span) = (exporter.clone(), span.clone());
            let (offered, stopped) = (&offered, &stopped);
            s.spawn(move || {
                // Until after the stop, so that exports race it.
                while !stopped.load(Ordering::Relaxed) {
                    exporter.export(vec![span.clone(), span.clone(), span.clone()]);
                    offered.fetch_add(3, Ordering::Relaxed);
                    assert!(exporter.stats().queue_depth.load(Ordering::Relaxed) <= 64);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(20));
        // Too short for the retries: the stop lands while exports and a batch are in flight.
        exporter.shutdown(Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(20));
        stopped.store(true, Ordering::Relaxed);
    });
    let offered = offered.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    let settled = |s: StatsSnapshot| s.exported + s.failed_spans + s.dropped;
    while settled(exporter.stats().snapshot()) < offered && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = exporter.stats().snapshot();
    assert_eq!(s.queue_depth, 0, "{s:?}");
    assert_eq!(settled(s), offered, "{s:?}");
    assert!(exporter.flush(Duration::from_millis(50)), "nothing is left to wait for");
}
