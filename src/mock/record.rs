//! The request recorder: what the mock provider received, for tests to assert on.
//!
//! Every request except `/_mock/*` calls is recorded (failed and forced ones too) in a ring of the
//! newest `limit` records behind a std `Mutex` (held only to push, clear or clone `Arc`s out, never
//! while serialising). `total` counts every request recorded since start or the last clear,
//! including those the ring has since dropped. A limit of 0 records nothing but still counts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use pingora::http::RequestHeader;
use serde_json::{json, Map, Value};

/// One received request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The mock's request sequence number (also used in response ids).
    pub seq: u64,
    pub method: String,
    /// Path and query, as received.
    pub path: String,
    /// Lowercased header names with their values (repeated headers joined with `, `).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Record {
    /// Capture a request header and its full body.
    pub fn capture(seq: u64, req: &RequestHeader, body: &Bytes) -> Self {
        let mut headers: Vec<(String, String)> = Vec::with_capacity(req.headers.len());
        for (name, value) in req.headers.iter() {
            let value = String::from_utf8_lossy(value.as_bytes());
            match headers.last_mut() {
                Some((last, joined)) if last == name.as_str() => {
                    joined.push_str(", ");
                    joined.push_str(&value);
                }
                _ => headers.push((name.as_str().to_string(), value.into_owned())),
            }
        }
        Record {
            seq,
            method: req.method.as_str().to_string(),
            path: req
                .uri
                .path_and_query()
                .map_or_else(|| req.uri.path().to_string(), |pq| pq.as_str().to_string()),
            headers,
            body: body.clone(),
        }
    }

    /// The record as it appears in `GET /_mock/requests`.
    pub fn to_json(&self) -> Value {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "seq": self.seq,
            "method": self.method,
            "path": self.path,
            "headers": headers,
            "body": String::from_utf8_lossy(&self.body),
            "body_len": self.body.len(),
        })
    }
}

struct Ring {
    records: VecDeque<Arc<Record>>,
    total: u64,
}

/// A bounded, shared log of received requests.
pub struct Recorder {
    limit: usize,
    ring: Mutex<Ring>,
}

impl Recorder {
    /// A recorder keeping at most `limit` newest records.
    pub fn new(limit: usize) -> Self {
        Recorder {
            limit,
            ring: Mutex::new(Ring {
                records: VecDeque::with_capacity(limit.min(1024)),
                total: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A poisoned lock only means a panic elsewhere mid-push; the ring is still consistent.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record one request, dropping the oldest record when full.
    pub fn push(&self, record: Record) {
        let mut ring = self.lock();
        ring.total += 1;
        if self.limit == 0 {
            return;
        }
        while ring.records.len() >= self.limit {
            ring.records.pop_front();
        }
        ring.records.push_back(Arc::new(record));
    }

    /// Forget every record and reset `total`; returns how many records were dropped.
    pub fn clear(&self) -> usize {
        let mut ring = self.lock();
        let n = ring.records.len();
        ring.records.clear();
        ring.total = 0;
        n
    }

    /// The kept records, oldest first, and the total count.
    pub fn snapshot(&self) -> (Vec<Arc<Record>>, u64) {
        let ring = self.lock();
        (ring.records.iter().cloned().collect(), ring.total)
    }

    /// The `GET /_mock/requests` body: `{"total": n, "requests": [...]}`.
    pub fn listing_json(&self) -> Value {
        let (records, total) = self.snapshot();
        let requests: Vec<Value> = records.iter().map(|r| r.to_json()).collect();
        json!({ "total": total, "requests": requests })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn req() -> RequestHeader {
        let mut h = RequestHeader::build("POST", b"/v1/chat/completions?x=1", None).unwrap();
        h.insert_header("Authorization", "Bearer k").unwrap();
        h.append_header("x-multi", "a").unwrap();
        h.append_header("x-multi", "b").unwrap();
        h
    }

    #[test]
    fn capture_lowercases_and_joins_headers() {
        let r = Record::capture(7, &req(), &Bytes::from_static(b"{\"a\":1}\xff"));
        let j = r.to_json();
        assert_eq!(j["seq"], 7);
        assert_eq!(j["method"], "POST");
        assert_eq!(j["path"], "/v1/chat/completions?x=1");
        assert_eq!(j["headers"]["authorization"], "Bearer k");
        assert_eq!(j["headers"]["x-multi"], "a, b");
        assert_eq!(j["body"], "{\"a\":1}\u{fffd}");
        assert_eq!(j["body_len"], 8);
    }

    #[test]
    fn ring_keeps_newest_and_counts_all() {
        let rec = Recorder::new(3);
        for seq in 1..=5 {
            rec.push(Record::capture(seq, &req(), &Bytes::new()));
        }
        let j = rec.listing_json();
        assert_eq!(j["total"], 5);
        let seqs: Vec<u64> = j["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(rec.clear(), 3);
        assert_eq!(rec.listing_json(), json!({"total": 0, "requests": []}));

        let none = Recorder::new(0);
        none.push(Record::capture(1, &req(), &Bytes::new()));
        assert_eq!(none.snapshot().1, 1);
        assert!(none.snapshot().0.is_empty());
    }
}
