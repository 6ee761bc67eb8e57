//! AWS Signature Version 4 for Bedrock requests, and its verification (used by the mock provider).
//!
//! Signing is a pure function of the request, the credentials and the time, so it is tested
//! against AWS's published test-suite vectors. The rules that matter here:
//!
//! * the request path puts each model id through one round of URI encoding (`:` → `%3A`), and the
//!   canonical URI encodes every path segment *again* (`%3A` → `%253A`), as every service but S3
//!   requires;
//! * canonical headers are lower-cased, trimmed, with inner runs of spaces collapsed, sorted by
//!   name; exactly the headers sent are signed (`content-type;host;x-amz-date`, plus
//!   `x-amz-security-token` with temporary credentials);
//! * `x-amz-date` is `YYYYMMDDTHHMMSSZ` in UTC (the calendar is `crate::time`'s).
//!
//! Invariant: the secret key never leaves this module other than as an HMAC key; the
//! `authorization` and token header values are marked sensitive.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::secret::Secret;
use crate::time::Utc;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service name Bedrock's runtime endpoints sign with.
pub const SERVICE: &str = "bedrock";
/// The content type the upstream request carries (set by `proxy::upstream`), signed as is.
pub const CONTENT_TYPE: &str = "application/json";
pub const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
pub const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// Resolved AWS credentials, as the signer needs them.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a Secret,
    pub session_token: Option<&'a Secret>,
}

/// Percent-encodes every byte but RFC 3986's unreserved characters, with upper-case hex.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The canonical URI of a request path as sent: each `/`-separated segment encoded again.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/').map(uri_encode).collect::<Vec<_>>().join("/")
}

/// `x-amz-date` for a time: `YYYYMMDDTHHMMSSZ` (UTC). Times before the epoch clamp to it.
pub fn amz_date(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_mul(1000);
    let u = Utc::from_unix_ms(i64::try_from(ms).unwrap_or(i64::MAX));
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        u.year, u.month, u.day, u.hour, u.minute, u.second
    )
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `kSigning` for a date (`YYYYMMDD`), region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn canonical_value(v: &str) -> String {
    v.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

/// One request to sign or verify.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (already percent-encoded once).
    pub path: &'a str,
    /// The canonical query string (empty for Bedrock).
    pub query: &'a str,
    /// The headers to sign, names in any case; each name once.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_sha256: &'a str,
}

impl Request<'_> {
    /// `(canonical request, signed headers)`.
    pub fn canonical(&self) -> (String, String) {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), canonical_value(v)))
            .collect();
        headers.sort();
        let signed = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
        let mut c = String::with_capacity(256);
        c.push_str(self.method);
        c.push('\n');
        c.push_str(&canonical_uri(self.path));
        c.push('\n');
        c.push_str(self.query);
        c.push('\n');
        for (n, v) in &headers {
            c.push_str(n);
            c.push(':');
            c.push_str(v);
            c.push('\n');
        }
        c.push('\n');
        c.push_str(&signed);
        c.push('\n');
        c.push_str(self.payload_sha256);
        (c, signed)
    }
}

/// The credential scope `YYYYMMDD/region/service/aws4_request`.
pub fn scope(amz_date: &str, region: &str, service: &str) -> String {
    format!(
        "{}/{region}/{service}/aws4_request",
        amz_date.get(..8).unwrap_or(amz_date)
    )
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The hex signature of `req` (whose headers include `x-amz-date: amz_date`).
pub fn signature(req: &Request<'_>, secret: &str, amz_date: &str, region: &str, service: &str) -> (String, String) {
    let (creq, signed) = req.canonical();
    let scope = scope(amz_date, region, service);
    let sts = string_to_sign(amz_date, &scope, &creq);
    let key = signing_key(secret, amz_date.get(..8).unwrap_or(amz_date), region, service);
    (hex::encode(hmac(&key, sts.as_bytes())), signed)
}

/// The `Authorization` header value for `req`.
pub fn authorization(
    req: &Request<'_>,
    access_key_id: &str,
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
) -> String {
    let (sig, signed) = signature(req, secret, amz_date, region, service);
    format!(
        "{ALGORITHM} Credential={access_key_id}/{}, SignedHeaders={signed}, Signature={sig}",
        scope(amz_date, region, service)
    )
}

/// A signing failure: a credential or host that cannot go in an HTTP header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot sign the Bedrock request: {0}")]
pub struct SignError(pub &'static str);

/// Signs a Bedrock `POST` with a JSON body: the headers to add besides `host` and
/// `content-type` (which the caller sends as `host` and [`CONTENT_TYPE`]).
pub fn sign_post(
    creds: Credentials<'_>,
    region: &str,
    host: &str,
    path: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
    let date = amz_date(now);
    let payload = sha256_hex(body);
    let mut headers: Vec<(&str, &str)> = vec![("content-type", CONTENT_TYPE), ("host", host), ("x-amz-date", &date)];
    if let Some(t) = creds.session_token {
        headers.push(("x-amz-security-token", t.expose()));
    }
    let req = Request {
        method: "POST",
        path,
        query: "",
        headers: &headers,
        payload_sha256: &payload,
    };
    let auth = authorization(
        &req,
        creds.access_key_id,
        creds.secret_access_key.expose(),
        &date,
        region,
        SERVICE,
    );
    let mut out = Vec::with_capacity(3);
    let mut auth =
        HeaderValue::try_from(auth).map_err(|_| SignError("the access key id is not a valid header value"))?;
    auth.set_sensitive(true);
    out.push((http::header::AUTHORIZATION, auth));
    out.push((
        X_AMZ_DATE,
        HeaderValue::try_from(date).map_err(|_| SignError("bad date"))?,
    ));
    if let Some(t) = creds.session_token {
        let mut v = HeaderValue::try_from(t.expose())
            .map_err(|_| SignError("the session token is not a valid header value"))?;
        v.set_sensitive(true);
        out.push((X_AMZ_SECURITY_TOKEN, v));
    }
    Ok(out)
}

/// Why a received request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing Authorization header")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("unknown access key id")]
    UnknownKey,
    #[error("a signed header is missing from the request: {0}")]
    MissingSignedHeader(String),
    #[error("the signature does not match")]
    Mismatch,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuth<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

pub fn parse_authorization(v: &str) -> Result<ParsedAuth<'_>, VerifyError> {
    let rest = v
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(VerifyError::Malformed("not AWS4-HMAC-SHA256"))?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, val) = part
            .trim()
            .split_once('=')
            .ok_or(VerifyError::Malformed("expected key=value"))?;
        match k {
            "Credential" => cred = Some(val),
            "SignedHeaders" => signed = Some(val),
            "Signature" => sig = Some(val),
            _ => return Err(VerifyError::Malformed("unknown component")),
        }
    }
    let cred = cred.ok_or(VerifyError::Malformed("no Credential"))?;
    let mut c = cred.split('/');
    let (Some(key), Some(date), Some(region), Some(service), Some("aws4_request"), None) =
        (c.next(), c.next(), c.next(), c.next(), c.next(), c.next())
    else {
        return Err(VerifyError::Malformed(
            "Credential is not key/date/region/service/aws4_request",
        ));
    };
    Ok(ParsedAuth {
        access_key_id: key,
        date,
        region,
        service,
        signed_headers: signed
            .ok_or(VerifyError::Malformed("no SignedHeaders"))?
            .split(';')
            .collect(),
        signature: sig.ok_or(VerifyError::Malformed("no Signature"))?,
    })
}

/// Verifies a received request's SigV4 signature. `header(name)` looks a request header up
/// (lower-case name); `secret_for(access key id)` returns the secret of a known key.
pub fn verify<'a>(
    method: &str,
    path: &str,
    query: &str,
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
    secret_for: impl Fn(&str) -> Option<&'a str>,
) -> Result<ParsedAuth<'a>, VerifyError> {
    let auth = parse_authorization(header("authorization").ok_or(VerifyError::Missing)?)?;
    let secret = secret_for(auth.access_key_id).ok_or(VerifyError::UnknownKey)?;
    let amz_date = header("x-amz-date").ok_or_else(|| VerifyError::MissingSignedHeader("x-amz-date".into()))?;
    if !auth.signed_headers.contains(&"host") || !auth.signed_headers.contains(&"x-amz-date") {
        return Err(VerifyError::Malformed("host and x-amz-date must be signed"));
    }
    if amz_date.get(..8) != Some(auth.date) {
        return Err(VerifyError::Malformed(
            "the Credential date is not the x-amz-date's day",
        ));
    }
    let mut headers = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let v = header(name).ok_or_else(|| VerifyError::MissingSignedHeader((*name).to_string()))?;
        headers.push((*name, v));
    }
    let payload = sha256_hex(body);
    let req = Request {
        method,
        path,
        query,
        headers: &headers,
        payload_sha256: &payload,
    };
    let (expected, _) = signature(&req, secret, amz_date, auth.region, auth.service);
    // Not constant-time: only the mock verifies, against test credentials.
    if expected != auth.signature {
        return Err(VerifyError::Mismatch);
    }
    Ok(auth)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The credentials, region, service and time of AWS's SigV4 test suite.
    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

    fn suite(method: &str, headers: &[(&str, &str)], payload: &str) -> String {
        let req = Request {
            method,
            path: "/",
            query: "",
            headers,
            payload_sha256: payload,
        };
        authorization(&req, AKID, SECRET, DATE, "us-east-1", "service")
    }

    fn expect(signed: &str, sig: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={sig}")
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        let h = [("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)];
        let req = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &h,
            payload_sha256: EMPTY_SHA256,
        };
        // get-vanilla.creq and get-vanilla.sts
        assert_eq!(
            req.canonical().0,
            format!("GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY_SHA256}")
        );
        assert_eq!(
            suite("GET", &h, EMPTY_SHA256),
            expect(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn aws_test_suite_post_vanilla() {
        let h = [("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)];
        assert_eq!(
            suite("POST", &h, EMPTY_SHA256),
            expect(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn aws_test_suite_post_x_www_form_urlencoded() {
        let h = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", DATE),
        ];
        assert_eq!(
            suite("POST", &h, &sha256_hex(b"Param1=value1")),
            expect(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    #[test]
    fn aws_test_suite_post_sts_header_before() {
        let h = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", DATE),
            ("X-Amz-Security-Token", TOKEN),
        ];
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &h,
            payload_sha256: EMPTY_SHA256,
        };
        let sts = string_to_sign(DATE, &scope(DATE, "us-east-1", "service"), &req.canonical().0);
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nc237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6"
        );
        assert_eq!(
            suite("POST", &h, EMPTY_SHA256),
            expect(
                "host;x-amz-date;x-amz-security-token",
                "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
            )
        );
    }

    #[test]
    fn documented_signing_key_derivation() {
        // The IAM example of the SigV4 documentation ("derive a signing key").
        assert_eq!(
            hex::encode(signing_key(SECRET, "20120215", "us-east-1", "iam")),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        let req = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &[("My-Header1", "  a   b  c "), ("Host", "h")],
            payload_sha256: EMPTY_SHA256,
        };
        assert!(req
            .canonical()
            .0
            .contains("\nhost:h\nmy-header1:a b c\n\nhost;my-header1\n"));
    }

    #[test]
    fn model_ids_are_encoded_twice_in_the_canonical_uri() {
        let id = "anthropic.claude-3-5-sonnet-20240620-v1:0";
        let path = format!("/model/{}/converse", uri_encode(id));
        assert_eq!(path, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
        assert_eq!(
            canonical_uri(&path),
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
        );
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0";
        assert_eq!(
            canonical_uri(&format!("/model/{}/converse-stream", uri_encode(arn))),
            "/model/arn%253Aaws%253Abedrock%253Aus-east-1%253A123456789012%253Ainference-profile%252Fus.anthropic.claude-3-haiku-20240307-v1%253A0/converse-stream"
        );
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(uri_encode("a b~é"), "a%20b~%C3%A9");
    }

    #[test]
    fn amz_dates_of_known_times() {
        let at = |s: u64| amz_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_440_938_160), DATE);
        assert_eq!(at(1_709_251_199), "20240229T235959Z");
        assert_eq!(at(4_102_444_799), "20991231T235959Z");
    }

    #[test]
    fn sign_post_then_verify_and_tamper() {
        let secret = Secret::new("mock-secret");
        let token = Secret::new("tok");
        let creds = Credentials {
            access_key_id: "AKIDMOCK",
            secret_access_key: &secret,
            session_token: Some(&token),
        };
        let path = "/model/amazon.nova-lite-v1%3A0/converse";
        let body = br#"{"messages":[]}"#;
        let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let headers = sign_post(creds, "us-east-1", "127.0.0.1:9", path, body, now).unwrap();
        let get = |h: &HeaderName| headers.iter().find(|(n, _)| n == h).map(|(_, v)| v.to_str().unwrap());
        let auth = get(&http::header::AUTHORIZATION).unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDMOCK/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="), "{auth}");
        assert!(headers[0].1.is_sensitive());
        let lookup = |extra: Option<(&'static str, &'static str)>| {
            let mut all: Vec<(String, String)> = vec![
                ("authorization".into(), auth.to_string()),
                ("x-amz-date".into(), DATE.into()),
                ("x-amz-security-token".into(), "tok".into()),
                ("content-type".into(), CONTENT_TYPE.into()),
                ("host".into(), "127.0.0.1:9".into()),
            ];
            if let Some((k, v)) = extra {
                all.retain(|(n, _)| n != k);
                all.push((k.into(), v.into()));
            }
            all
        };
        let run = |all: &Vec<(String, String)>, body: &[u8], path: &str| {
            verify(
                "POST",
                path,
                "",
                |n| all.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str()),
                body,
                |k| (k == "AKIDMOCK").then_some("mock-secret"),
            )
            .map(|a| a.service.to_string())
        };
        assert_eq!(run(&lookup(None), body, path), Ok("bedrock".into()));
        assert_eq!(run(&lookup(None), b"{}", path), Err(VerifyError::Mismatch));
        assert_eq!(
            run(&lookup(None), body, "/model/x/converse"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            run(&lookup(Some(("host", "evil:1"))), body, path),
            Err(VerifyError::Mismatch)
        );
        let mut no_token = lookup(None);
        no_token.retain(|(n, _)| n != "x-amz-security-token");
        assert_eq!(
            run(&no_token, body, path),
            Err(VerifyError::MissingSignedHeader("x-amz-security-token".into()))
        );
        let other_key = auth.replace("AKIDMOCK", "AKIDOTHER");
        let leaked: &'static str = Box::leak(other_key.into_boxed_str());
        assert_eq!(
            run(&lookup(Some(("authorization", leaked))), body, path),
            Err(VerifyError::UnknownKey)
        );
        assert_eq!(
            run(&lookup(Some(("authorization", "Bearer x"))), body, path),
            Err(VerifyError::Malformed("not AWS4-HMAC-SHA256"))
        );
    }
}
