//! Config of the translated dialects (Bedrock, Gemini): what their providers compile to, and
//! that the render target a compiled target lends its adapter is the one the config describes.
//! (The adapters themselves are tested in `providers` on hand-built targets.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::api::openai::LlmRequest;
use crate::api::Endpoint;
use crate::providers::ProviderKind;

const CONFIG: &str = "
providers:
  aws:
    kind: bedrock
    aws_region: us-east-1
    aws_access_key_id: ${AWS_ACCESS_KEY_ID}
    aws_secret_access_key: ${AWS_SECRET_ACCESS_KEY}
    aws_session_token: ${AWS_SESSION_TOKEN}
  google:
    kind: gemini
    base_url: https://generativelanguage.googleapis.com/v1beta
    api_keys: [test-key]
models:
  claude-sonnet:
    targets:
      - { provider: aws, model: anthropic.claude-3-5-sonnet-20240620-v1:0 }
  gemini-flash:
    targets:
      - { provider: google, model: gemini-2.5-flash }
";

fn load(doc: &str, vars: &'static [(&'static str, &'static str)]) -> Result<Snapshot, ConfigErrors> {
    let resolve = |_: &str, port: u16| Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    let var = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    let env = Env {
        var: &var,
        resolve: &resolve,
    };
    load_str(Path::new("dialects.yaml"), doc, &env)
}

const CREDS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
    ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
];

fn target(alias: &str) -> Arc<Target> {
    let snap = load(CONFIG, CREDS).unwrap();
    snap.model(alias).unwrap().targets[0].clone()
}

fn chat(model: &str) -> LlmRequest {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    LlmRequest::parse(Endpoint::ChatCompletions, Bytes::from(body)).unwrap()
}

#[test]
fn a_bedrock_target_lends_its_model_host_and_credentials_to_the_adapter() {
    let t = target("claude-sonnet");
    assert_eq!(t.provider.kind, ProviderKind::Bedrock);
    assert!(t.provider.is_enabled());
    assert!(t.provider.auth.is_empty() && t.provider.next_auth().is_none());
    let rt = t.render_target();
    assert_eq!(rt.provider, "aws");
    assert_eq!(rt.model, "anthropic.claude-3-5-sonnet-20240620-v1:0");
    assert_eq!(rt.model_json, b"\"anthropic.claude-3-5-sonnet-20240620-v1:0\"");
    assert_eq!(rt.host, "bedrock-runtime.us-east-1.amazonaws.com");
    let r = t.provider.kind.adapter().render(&chat("claude-sonnet"), &rt).unwrap();
    assert_eq!(r.path, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
    let auth = r.headers.iter().find(|(k, _)| k == "authorization").unwrap();
    let auth = auth.1.to_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
}

#[test]
fn a_bedrock_session_token_is_kept_when_its_variable_is_set() {
    let token = |aws: &crate::providers::AwsCredentials| match &aws.keys {
        crate::providers::AwsKeys::Static { session_token, .. } => {
            session_token.as_ref().map(|t| t.expose().to_string())
        }
        crate::providers::AwsKeys::Chain(_) => panic!("static keys expected"),
    };
    assert!(token(target("claude-sonnet").provider.options.aws.as_ref().unwrap()).is_none());
    let mut vars = CREDS.to_vec();
    vars.push(("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN"));
    let vars: &'static [(&str, &str)] = Box::leak(vars.into_boxed_slice());
    let snap = load(CONFIG, vars).unwrap();
    let aws = snap.providers["aws"].options.aws.clone().unwrap();
    assert_eq!(token(&aws).as_deref(), Some("FwoGZXIvYXdzEXAMPLETOKEN"));
}

#[test]
fn a_gemini_target_renders_below_its_base_url_with_its_key_header() {
    let t = target("gemini-flash");
    assert_eq!(t.provider.kind, ProviderKind::Gemini);
    assert_eq!(t.provider.auth_header.as_str(), "x-goog-api-key");
    let r = t
        .provider
        .kind
        .adapter()
        .render(&chat("gemini-flash"), &t.render_target())
        .unwrap();
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
}

fn errors(doc: &str, vars: &'static [(&'static str, &'static str)]) -> Vec<String> {
    match load(doc, vars) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect(),
    }
}

#[test]
fn config_defaults_the_base_url_from_the_region() {
    let t = target("claude-sonnet");
    assert_eq!(t.provider.host_header, "bedrock-runtime.us-east-1.amazonaws.com");
    assert_eq!(t.provider.path_prefix, "");
    let aws = t.provider.options.aws.as_ref().unwrap();
    assert_eq!(aws.region, "us-east-1");
    assert_eq!(format!("{aws:?}").matches("***").count(), 2, "secrets never print");
    assert!(!format!("{aws:?}").contains("EXAMPLEKEY"));
}

#[test]
fn config_disables_without_credentials_and_rejects_misuse() {
    let snap = load(CONFIG, &[]).unwrap();
    let p = &snap.providers["aws"];
    assert!(!p.is_enabled());
    assert_eq!(
        p.disabled.as_deref(),
        Some("environment variable AWS_ACCESS_KEY_ID, environment variable AWS_SECRET_ACCESS_KEY not set")
    );
    assert_eq!(snap.warnings.iter().filter(|w| w.contains("\"aws\"")).count(), 1);

    let no_region = "providers:\n  aws:\n    kind: bedrock\n    aws_access_key_id: k\n    aws_secret_access_key: s\n";
    let e = errors(no_region, &[]);
    assert!(e.iter().any(|e| e.contains("aws_region")), "{e:?}");

    let bad_region = "providers:\n  aws:\n    kind: bedrock\n    aws_region: US East\n    aws_access_key_id: k\n    aws_secret_access_key: s\n";
    assert!(errors(bad_region, &[])
        .iter()
        .any(|e| e.contains("providers.aws.aws_region")));

    let keys = "providers:\n  aws:\n    kind: bedrock\n    aws_region: eu-west-3\n    aws_access_key_id: k\n    aws_secret_access_key: s\n    api_keys: [x]\n";
    assert!(errors(keys, &[]).iter().any(|e| e.contains("api_keys")));

    let elsewhere = "providers:\n  oa:\n    kind: openai\n    base_url: https://api.openai.com/v1\n    api_keys: [k]\n    aws_region: us-east-1\n";
    assert!(errors(elsewhere, &[])
        .iter()
        .any(|e| e.contains("aws_region") && e.contains("only applies")));

    let signed_header = "providers:\n  aws:\n    kind: bedrock\n    aws_region: eu-west-3\n    aws_access_key_id: k\n    aws_secret_access_key: s\n    headers: {x-amz-date: \"1\"}\n";
    assert!(errors(signed_header, &[]).iter().any(|e| e.contains("signed")));

    let temporary = "providers:\n  aws:\n    kind: bedrock\n    base_url: https://vpce.example.com/bedrock\n    aws_region: eu-west-3\n    aws_access_key_id: ASIAEXAMPLE\n    aws_secret_access_key: s\n";
    let snap = load(temporary, &[]).unwrap();
    let p = &snap.providers["aws"];
    assert!(p.disabled.as_deref().is_some_and(|d| d.contains("aws_session_token")));
    assert_eq!(p.path_prefix, "/bedrock");
}

#[test]
fn bedrock_role_credentials_come_from_the_chain_and_nothing_else() {
    let chain = "providers:\n  aws:\n    kind: bedrock\n    aws_region: eu-west-3\n    aws_credentials: chain\n    aws_profile: prod\n";
    let snap = load(chain, &[]).unwrap();
    let p = &snap.providers["aws"];
    assert!(p.disabled.is_none(), "no static keys needed: {:?}", p.disabled);
    match &p.options.aws.as_ref().unwrap().keys {
        crate::providers::AwsKeys::Chain(cell) => assert_eq!(
            cell.source(),
            &crate::credentials::Source::AwsChain {
                region: "eu-west-3".into(),
                profile: Some("prod".into())
            }
        ),
        other => panic!("{other:?}"),
    }

    let both = "providers:\n  aws:\n    kind: bedrock\n    aws_region: eu-west-3\n    aws_credentials: chain\n    aws_access_key_id: k\n";
    assert!(errors(both, &[])
        .iter()
        .any(|e| e.contains("providers.aws.aws_access_key_id") && e.contains("chain")));
    let unknown = "providers:\n  aws:\n    kind: bedrock\n    aws_region: eu-west-3\n    aws_credentials: instance\n";
    assert!(errors(unknown, &[])
        .iter()
        .any(|e| e.contains("providers.aws.aws_credentials")));
    let stray = "providers:\n  aws:\n    kind: bedrock\n    aws_region: eu-west-3\n    aws_access_key_id: k\n    aws_secret_access_key: s\n    aws_profile: prod\n";
    assert!(errors(stray, &[])
        .iter()
        .any(|e| e.contains("providers.aws.aws_profile")));
}

#[test]
fn vertex_providers_need_a_project_a_region_and_google_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sa.json");
    std::fs::write(&key, "{}").unwrap();
    let good = format!(
        "providers:\n  v:\n    kind: vertex_anthropic\n    vertex_project: proj-1\n    vertex_region: us-east5\n    google_credentials: {}\n",
        key.display()
    );
    let snap = load(&good, &[]).unwrap();
    let p = &snap.providers["v"];
    assert_eq!(
        p.path_prefix,
        "/v1/projects/proj-1/locations/us-east5/publishers/anthropic"
    );
    assert_eq!(p.host_header, "us-east5-aiplatform.googleapis.com");
    assert_eq!(p.pricing_family, "anthropic");
    assert!(p.options.token.is_some());

    let missing =
        "providers:\n  v:\n    kind: vertex\n    vertex_region: us-central1\n    google_credentials: metadata\n";
    assert!(errors(missing, &[]).iter().any(|e| e.contains("vertex_project")));
    let no_file = "providers:\n  v:\n    kind: vertex\n    vertex_project: p\n    vertex_region: us-central1\n    google_credentials: /nonexistent/sa.json\n";
    assert!(errors(no_file, &[])
        .iter()
        .any(|e| e.contains("providers.v.google_credentials")));
    let keys = "providers:\n  v:\n    kind: vertex\n    vertex_project: p\n    vertex_region: us-central1\n    google_credentials: metadata\n    api_keys: [k]\n";
    assert!(errors(keys, &[]).iter().any(|e| e.contains("providers.v.api_keys")));
    let elsewhere = "providers:\n  g:\n    kind: gemini\n    base_url: https://generativelanguage.googleapis.com/v1beta\n    api_keys: [k]\n    vertex_project: p\n";
    assert!(errors(elsewhere, &[])
        .iter()
        .any(|e| e.contains("providers.g.vertex_project")));
}

#[test]
fn azure_takes_keys_or_entra_id_and_says_what_is_missing() {
    let entra = "providers:\n  az:\n    kind: azure\n    base_url: https://x.openai.azure.com\n    api_version: \"2024-10-21\"\n    azure_credentials: entra\n    entra_tenant_id: t\n    entra_client_id: c\n    entra_client_secret: s\n";
    let snap = load(entra, &[]).unwrap();
    let p = &snap.providers["az"];
    assert!(p.disabled.is_none(), "no api_keys needed: {:?}", p.disabled);
    assert!(p.options.token.is_some());

    let partial = "providers:\n  az:\n    kind: azure\n    base_url: https://x.openai.azure.com\n    api_version: \"2024-10-21\"\n    azure_credentials: entra\n    entra_tenant_id: t\n";
    let e = errors(partial, &[]);
    assert!(
        e.iter().any(|e| e.contains("entra_client_id")) && e.iter().any(|e| e.contains("entra_client_secret")),
        "{e:?}"
    );
    let stray = "providers:\n  az:\n    kind: azure\n    base_url: https://x.openai.azure.com\n    api_version: \"2024-10-21\"\n    api_keys: [k]\n    entra_client_id: c\n";
    assert!(errors(stray, &[])
        .iter()
        .any(|e| e.contains("providers.az.entra_client_id")));
    let elsewhere = "providers:\n  o:\n    kind: openai\n    base_url: https://api.openai.com/v1\n    api_keys: [k]\n    azure_credentials: entra\n";
    assert!(errors(elsewhere, &[])
        .iter()
        .any(|e| e.contains("providers.o.azure_credentials")));
}
