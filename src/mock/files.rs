//! OpenAI's Files API, as much of it as the gateway's passthrough tests need: a multipart upload
//! (`POST /v1/files`) answered with the file object plus the SHA-256 of the bytes received (a
//! mock-only field, so a test can tell the body arrived whole), and a binary download
//! (`GET /v1/files/{id}/content`) of `DOWNLOAD_BYTES` deterministic bytes.

use bytes::Bytes;
use memchr::memmem;
use pingora::http::RequestHeader;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::openai::{error_reply, json_reply};
use super::Reply;

/// Size of every download: above Pingora's 64 KiB body buffer, so it must stream.
pub const DOWNLOAD_BYTES: usize = 300_000;

/// The byte at `i` of every download.
pub fn download_byte(i: usize) -> u8 {
    ((i * 31 + 7) % 251) as u8
}

pub(super) fn upload(req: &RequestHeader, body: &[u8], seq: u64) -> Reply {
    let ct = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = ct
        .strip_prefix("multipart/form-data")
        .and_then(|rest| rest.split(';').find_map(|p| p.trim().strip_prefix("boundary=")))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
    else {
        return error_reply(
            400,
            "Expected a multipart/form-data body.",
            "invalid_request_error",
            None,
            None,
        );
    };
    let parts = parts(body, boundary);
    let field = |name: &str| parts.iter().find(|p| p.name == name);
    let Some(file) = field("file") else {
        return error_reply(400, "Missing file part.", "invalid_request_error", Some("file"), None);
    };
    let purpose = field("purpose").map(|p| String::from_utf8_lossy(p.content).into_owned());
    json_reply(
        200,
        &json!({
            "id": format!("file-mock-{seq}"),
            "object": "file",
            "bytes": file.content.len(),
            "created_at": 1_700_000_000,
            "filename": file.filename,
            "purpose": purpose,
            "status": "processed",
            "sha256": hex::encode(Sha256::digest(file.content)),
        }),
    )
}

pub(super) fn download() -> Reply {
    let body: Vec<u8> = (0..DOWNLOAD_BYTES).map(download_byte).collect();
    Reply::Json {
        status: 200,
        body: Bytes::from(body),
        headers: vec![("content-type", "application/octet-stream".into())],
    }
}

struct Part<'a> {
    name: String,
    filename: Option<String>,
    content: &'a [u8],
}

/// The parts of a multipart body (RFC 7578), as far as they are well formed.
fn parts<'a>(body: &'a [u8], boundary: &str) -> Vec<Part<'a>> {
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let starts: Vec<usize> = memmem::find_iter(body, delim.as_bytes()).collect();
    for w in starts.windows(2) {
        let (from, to) = (w[0] + delim.len(), w[1]);
        let part = &body[from..to];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(split) = memmem::find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]);
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .unwrap_or_default();
        let param = |key: &str| {
            disposition.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(&format!("{key}="))
                    .map(|v| v.trim_matches('"').to_string())
            })
        };
        let Some(name) = param("name") else { continue };
        out.push(Part {
            name,
            filename: param("filename"),
            content: &part[split + 4..],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_read_with_their_names_and_bytes() {
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\x02\r\n--xyz--\r\n";
        let p = parts(body, "xyz");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "purpose");
        assert_eq!(p[0].content, b"batch");
        assert_eq!(p[1].filename.as_deref(), Some("a.jsonl"));
        assert_eq!(p[1].content, b"\x00\x01\r\n\x02");
    }
}
