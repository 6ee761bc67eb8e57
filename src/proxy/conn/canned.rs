//! The connection layer's own answers, built once per listener: OpenAI-shaped JSON errors written
//! straight to the socket (no request was handed to the proxy, so no `Session` exists to write
//! them), each closing the connection.

use std::time::Duration;

use bytes::Bytes;

use crate::api::error::error_body;

/// Pre-rendered responses (status line, headers and body).
pub struct Canned {
    pub header_timeout: Bytes,
    pub header_too_large: Bytes,
    pub over_capacity: Bytes,
    pub bad_request: Bytes,
    pub method_not_allowed: Bytes,
}

impl Canned {
    pub fn new(header_timeout: Duration, max_header_bytes: usize) -> Canned {
        Canned {
            header_timeout: response(
                "408 Request Timeout",
                &[],
                &format!(
                    "The request's headers did not arrive within {}.",
                    humantime::format_duration(header_timeout)
                ),
                "invalid_request_error",
                "request_timeout",
            ),
            header_too_large: response(
                "431 Request Header Fields Too Large",
                &[],
                &format!("The request's headers are larger than the gateway's limit of {max_header_bytes} bytes."),
                "invalid_request_error",
                "request_header_too_large",
            ),
            over_capacity: response(
                "503 Service Unavailable",
                &["retry-after: 1"],
                "The gateway is at its connection limit; retry shortly.",
                "api_error",
                "too_many_connections",
            ),
            bad_request: response(
                "400 Bad Request",
                &[],
                "The request is not valid HTTP/1.1: its request line, a header, or its framing \
                 (Content-Length / Transfer-Encoding) is malformed.",
                "invalid_request_error",
                "invalid_http_request",
            ),
            method_not_allowed: response(
                "405 Method Not Allowed",
                &["allow: GET, POST"],
                "This method is not supported by the gateway.",
                "invalid_request_error",
                "method_not_allowed",
            ),
        }
    }

    /// The gateway's answer for a status Pingora chose to answer with.
    pub fn for_status(&self, status: u16) -> Bytes {
        match status {
            405 => self.method_not_allowed.clone(),
            408 => self.header_timeout.clone(),
            503 => self.over_capacity.clone(),
            _ => self.bad_request.clone(),
        }
    }
}

fn response(status_line: &str, extra: &[&str], message: &str, kind: &str, code: &str) -> Bytes {
    let body = error_body(message, kind, None, Some(code));
    let mut out = format!(
        "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for h in extra {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    Bytes::from(bytes)
}

/// The status of an HTTP/1 response's first bytes (`HTTP/1.1 400 …`), if they are one.
pub fn status_of(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_of_a_response_head() {
        assert_eq!(status_of(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(status_of(b"HTTP/1.0 405 Method"), Some(405));
        assert_eq!(status_of(b"HTTP/1.1 4"), None);
        assert_eq!(status_of(b"data: {}"), None);
        assert_eq!(status_of(b"HTTP/1.1 4x0 "), None);
    }

    #[test]
    fn answers_are_complete_json_responses_that_close() {
        let c = Canned::new(Duration::from_secs(10), 65536);
        for bytes in [&c.header_timeout, &c.header_too_large, &c.over_capacity, &c.bad_request] {
            let text = std::str::from_utf8(bytes).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains("connection: close"), "{head}");
            assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(v["error"]["code"].is_string(), "{body}");
        }
        assert!(std::str::from_utf8(&c.header_timeout).unwrap().contains("within 10s"));
        assert_eq!(status_of(&c.for_status(400)), Some(400));
        assert_eq!(status_of(&c.for_status(405)), Some(405));
    }
}
