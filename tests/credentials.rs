//! Bedrock with role credentials (`aws_credentials: chain`) against small fakes of the AWS token
//! endpoints the SDK's default chain asks: EC2 instance metadata (IMDSv2), the ECS task-role
//! endpoint, and STS for web identity (EKS IRSA). Each fake issues short-lived credentials with
//! a new session token every time, so the mock provider's signature check shows which ones
//! signed each request: refreshed in the background ahead of expiry, under a steady load, never
//! once per request. A token endpoint that is down makes that provider's requests a 503 naming
//! the cause, passes them to a fallback, and leaves the other providers alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::fake::{Fake, Seen};
use common::*;
use serde_json::{json, Value};

/// How long each issued credential lives.
const LIFETIME: Duration = Duration::from_secs(6);

fn expiration() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + LIFETIME).to_string()
}

/// Credentials the mock provider's signature check accepts, with session token `tok-N`.
fn creds_json(n: u32) -> String {
    json!({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "AKIDMOCK", "SecretAccessKey": "mock-secret",
        "Token": format!("tok-{n}"), "Expiration": expiration(), "LastUpdated": "2026-01-01T00:00:00Z"})
    .to_string()
}

fn imds() -> Fake {
    Fake::start(Arc::new(|r: &Seen, n| {
        let token = r
            .headers
            .iter()
            .any(|(k, v)| k == "x-aws-ec2-metadata-token" && v == "imds-token");
        match (r.method.as_str(), r.path.as_str()) {
            ("PUT", "/latest/api/token") => (200, "imds-token".into()),
            (_, _) if !token => (401, String::new()),
            ("GET", "/latest/meta-data/iam/security-credentials/") => (200, "tollgate-role".into()),
            ("GET", "/latest/meta-data/iam/security-credentials/tollgate-role") => (200, creds_json(n)),
            _ => (404, String::new()),
        }
    }))
}

/// Environment for the gateway: no ambient AWS settings but the ones given.
fn aws_env<'a>(dir: &'a str, extra: &[(&'a str, String)]) -> Vec<(&'a str, String)> {
    let mut env = vec![
        ("AWS_CONFIG_FILE", format!("{dir}/no-config")),
        ("AWS_SHARED_CREDENTIALS_FILE", format!("{dir}/no-credentials")),
        ("AWS_EC2_METADATA_DISABLED", "false".to_string()),
    ];
    env.extend(extra.iter().cloned());
    env
}

fn config(mock: &Mock) -> String {
    let bedrock_base = format!("http://{}", mock.addr);
    format!(
        "routing:\n  retries: 0\nproviders:\n  bedrock:\n    kind: bedrock\n    base_url: \"{bedrock_base}\"\n    aws_region: us-east-1\n    aws_credentials: chain\n{}models:\n  claude:\n    targets: [ {{ provider: bedrock, model: anthropic.claude-mock-v1 }} ]\n  gpt:\n    targets: [ {{ provider: oai, model: mock-gpt }} ]\n  claude-or-gpt:\n    targets: [ {{ provider: bedrock, model: anthropic.claude-mock-v1 }} ]\n    fallbacks: [ gpt ]\n",
        mock_provider("oai", &mock.base_url(), ""),
    )
}

fn start(mock: &Mock, env: &[(&str, String)]) -> Gateway {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Gateway::start_env("", &config(mock), &env)
}

fn ask(gw: &Gateway, model: &str) -> Resp {
    gw.chat(&json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]}))
}

/// The session tokens the mock provider saw, in order.
fn tokens(mock: &Mock) -> Vec<String> {
    mock.requests()
        .iter()
        .filter_map(|r| {
            r["headers"]
                .as_object()
                .and_then(|h| h.get("x-amz-security-token"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// Requests for `secs` seconds, every 250 ms: all must succeed.
fn steady_load(gw: &Gateway, secs: u64) -> usize {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    let mut n = 0;
    while std::time::Instant::now() < until {
        let r = ask(gw, "claude");
        assert_eq!(r.status, 200, "{}", r.body);
        n += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    n
}

fn wait_for_credentials(gw: &Gateway) {
    let mut last = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let r = ask(gw, "claude");
        if r.status == 200 {
            return;
        }
        last = r.body;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no credentials within 20 s; the last answer: {last}");
}

#[test]
fn instance_metadata_credentials_are_refreshed_ahead_of_expiry_under_load() {
    let mock = Mock::start(&[]);
    let fake = imds();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let gw = start(
        &mock,
        &aws_env(&d, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake.url())]),
    );
    wait_for_credentials(&gw);
    let sent = steady_load(&gw, 8);
    let seen = tokens(&mock);
    let mut distinct = seen.clone();
    distinct.dedup();
    assert!(distinct.len() >= 2, "the credentials rotated under load: {distinct:?}");
    // Fetched about once per half-lifetime, not once per request.
    let issued = fake.issued() as usize;
    assert!((2..=8).contains(&issued), "{issued} fetches for {sent} requests");
    assert!(
        fake.seen.lock().unwrap().iter().any(|s| s.method == "PUT"),
        "IMDSv2: a session token first"
    );
}

#[test]
fn web_identity_is_exchanged_at_sts() {
    let mock = Mock::start(&[]);
    let sts = Fake::start(Arc::new(|r: &Seen, n| {
        if !r.body.contains("Action=AssumeRoleWithWebIdentity") || !r.body.contains("WebIdentityToken=the-jwt") {
            return (
                400,
                "<ErrorResponse><Error><Code>InvalidParameter</Code></Error></ErrorResponse>".into(),
            );
        }
        let xml = format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>AKIDMOCK</AccessKeyId><SecretAccessKey>mock-secret</SecretAccessKey><SessionToken>tok-{n}</SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/tollgate/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>",
            expiration()
        );
        (200, xml)
    }));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("token"), "the-jwt").unwrap();
    let gw = start(
        &mock,
        &aws_env(
            &d,
            &[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", format!("{d}/token")),
                ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/tollgate".into()),
                ("AWS_ENDPOINT_URL_STS", sts.url()),
            ],
        ),
    );
    wait_for_credentials(&gw);
    steady_load(&gw, 5);
    assert!(tokens(&mock).iter().all(|t| t.starts_with("tok-")));
    assert!(sts.issued() >= 2, "refreshed: {}", sts.issued());
}

#[test]
fn the_ecs_task_role_endpoint_serves_the_chain() {
    let mock = Mock::start(&[]);
    let ecs = Fake::start(Arc::new(|r: &Seen, n| {
        let authorized = r.headers.iter().any(|(k, v)| k == "authorization" && v == "ecs-auth");
        match (r.path.as_str(), authorized) {
            ("/v2/credentials/task", true) => (200, creds_json(n)),
            _ => (403, String::new()),
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let gw = start(
        &mock,
        &aws_env(
            &d,
            &[
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    format!("{}/v2/credentials/task", ecs.url()),
                ),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth".into()),
            ],
        ),
    );
    wait_for_credentials(&gw);
    assert!(tokens(&mock).last().unwrap().starts_with("tok-"));
}

#[test]
fn a_token_endpoint_that_is_down_fails_its_provider_only_with_the_cause_named() {
    let mock = Mock::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("token"), "the-jwt").unwrap();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let gw = start(
        &mock,
        &aws_env(
            &d,
            &[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", format!("{d}/token")),
                ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/tollgate".into()),
                ("AWS_ENDPOINT_URL_STS", closed),
            ],
        ),
    );
    let r = ask(&gw, "claude");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "credentials_unavailable");
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("bedrock") && message.contains("AWS credential chain"),
        "{message}"
    );
    // Other providers are unaffected; an alias with a fallback is served by it.
    assert_eq!(ask(&gw, "gpt").status, 200);
    let r = ask(&gw, "claude-or-gpt");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tollgate-provider"), Some("oai"));
    assert!(r.header("x-tollgate-attempts").unwrap().contains("bedrock:credentials"));
    assert!(mock
        .requests()
        .iter()
        .all(|q| !q["path"].as_str().unwrap().starts_with("/model/")));
}
