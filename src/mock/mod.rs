//! The mock LLM provider: a real HTTP/1.1 server (a Pingora [`HttpServerApp`]) used by
//! integration tests, benches, load tests and the demo config.
//!
//! This file owns the app: reading a request, recording it (`record`), routing by method and
//! path, resolving the behaviour directives (`behavior`) and authentication; `io` writes the
//! replies, including timed SSE streams, dropped connections and hangs. What a reply *contains*
//! is the dialect's business (`openai`, `anthropic`, `gemini`, `bedrock`; the fake analyzer
//! `presidio`), as a pure function of the body, the sequence number and the behaviour; `content`
//! and `echo` hold what the dialects share (the default pieces; the `echo`/`tool_echo` answers
//! made of the last user message, markers removed, in `piece`-byte pieces).
//!
//! Order of work for one request: read the whole body (≤ 64 MiB, else 413 and close) → `/_mock/*`
//! admin calls are answered and not recorded → record → route (404/405) → resolve directives
//! (400 naming the bad one; `/analyze` reads the header only, as its body is a prompt; `echo`
//! and `tool_echo` to Gemini or Bedrock are a bad directive too) → `close_after=0` drops the connection → `hang` waits for shutdown or
//! the client leaving → `latency_ms` → forced `status` → `Authorization: Bearer` (401) → the
//! dialect's reply. Only normally completed responses return the connection for keep-alive.
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`,
//! `GET /v1/models[/{id}]`; Gemini (`gemini`): `POST /v1beta/models/{model}:{generateContent,
//! streamGenerateContent,batchEmbedContents,embedContent}`; Bedrock (`bedrock`, SigV4-verified):
//! `POST /model/{modelId}/{converse,converse-stream,invoke}`; Anthropic (`anthropic`):
//! `POST /v1/messages`; Azure: `POST /openai/deployments/{dep}/{chat/completions,completions,
//! embeddings}`; a fake Presidio analyzer (`presidio`): `POST /analyze`; admin: `GET|DELETE /_mock/requests`,
//! `GET|DELETE /_mock/usage` (the usage handed out, per model: `usage`), `GET /_mock/health`.
//! Every recorded request's response carries `x-mock-seq: <seq>` (the `seq` of its record).
//!
//! Invariants: nothing sleeps unless a directive or flag asks; no threads are spawned per request;
//! each SSE event is one body write (flushed, so delays are visible to the client); no input can
//! panic the server.

pub mod anthropic;
pub mod bedrock;
pub mod behavior;
pub mod content;
pub mod echo;
pub mod files;
pub mod gemini;
mod io;
pub mod models;
pub mod openai;
pub mod presidio;
pub mod record;
pub mod responses;
pub mod usage;
pub mod vertex;

#[cfg(test)]
mod server_tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use pingora::apps::{HttpServerApp, ReusedHttpStream};
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;

use behavior::{Behavior, DEFAULT_CHUNKS, MAX_CHUNKS, MAX_DELAY_MS};
use io::{finish, hang, read_body, sleep_ms, write_reply};
use openai::Answer;
use record::{Record, Recorder};
use usage::UsageMeter;

pub use openai::{chat_prompt_tokens, completion_text};

/// Largest request body the mock reads; larger ones get a 413 and the connection is closed.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// Default `--record-limit`.
pub const DEFAULT_RECORD_LIMIT: usize = 10_000;

/// Flags of the mock provider: the default behaviour of every response (directives in a request
/// override them per key), the key it accepts and how much it records.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct MockOptions {
    /// Delay before every response header, in ms.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(..=MAX_DELAY_MS))]
    pub latency_ms: u64,
    /// Streaming: delay between the response header and the first event, in ms.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(..=MAX_DELAY_MS))]
    pub first_chunk_ms: u64,
    /// Streaming: delay between events, in ms.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(..=MAX_DELAY_MS))]
    pub chunk_delay_ms: u64,
    /// Content chunks per response (= completion tokens).
    #[arg(long, default_value_t = DEFAULT_CHUNKS, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CHUNKS)))]
    pub chunks: u32,
    /// Answer every request with this status and an OpenAI-shaped error (2xx: answer normally).
    #[arg(long, value_parser = clap::value_parser!(u16).range(200..=599))]
    pub status: Option<u16>,
    /// `Retry-After` seconds on forced errors.
    #[arg(long)]
    pub retry_after: Option<u64>,
    /// Streaming: drop the connection after this many content chunks (0: before any header).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_CHUNKS)))]
    pub close_after: Option<u32>,
    /// Read every request and never answer.
    #[arg(long)]
    pub hang: bool,
    /// Accept only `Authorization: Bearer <this key>` (default: any non-empty key).
    #[arg(long, value_name = "KEY")]
    pub require_key: Option<String>,
    /// Keep at most this many newest requests for `GET /_mock/requests`.
    #[arg(long, default_value_t = DEFAULT_RECORD_LIMIT)]
    pub record_limit: usize,
    /// With `--status`: only the first N model requests get the forced status, later ones succeed
    /// (a provider that recovers; 0 = every request).
    #[arg(long, default_value_t = 0)]
    pub fail_first: u64,
    /// Reject chat prompts longer than this many tokens (OpenAI's `context_length_exceeded`).
    #[arg(long, value_name = "TOKENS")]
    pub context_window: Option<u64>,
    /// Bedrock: the access key id whose SigV4 signatures are accepted.
    #[arg(long, value_name = "ID", default_value = bedrock::DEFAULT_ACCESS_KEY_ID)]
    pub aws_access_key_id: String,
    /// Bedrock: the secret access key signatures are verified with.
    #[arg(long, value_name = "SECRET", default_value = bedrock::DEFAULT_SECRET_ACCESS_KEY)]
    pub aws_secret_access_key: String,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            latency_ms: 0,
            first_chunk_ms: 0,
            chunk_delay_ms: 0,
            chunks: DEFAULT_CHUNKS,
            status: None,
            retry_after: None,
            close_after: None,
            hang: false,
            require_key: None,
            record_limit: DEFAULT_RECORD_LIMIT,
            fail_first: 0,
            context_window: None,
            aws_access_key_id: bedrock::DEFAULT_ACCESS_KEY_ID.into(),
            aws_secret_access_key: bedrock::DEFAULT_SECRET_ACCESS_KEY.into(),
        }
    }
}

impl MockOptions {
    /// The default [`Behavior`] these flags describe.
    pub fn behavior(&self) -> Behavior {
        Behavior {
            status: self.status,
            retry_after: self.retry_after,
            retry_after_ms: None,
            latency_ms: self.latency_ms.min(MAX_DELAY_MS),
            first_chunk_ms: self.first_chunk_ms.min(MAX_DELAY_MS),
            chunk_delay_ms: self.chunk_delay_ms.min(MAX_DELAY_MS),
            chunks: self.chunks.clamp(1, MAX_CHUNKS),
            close_after: self.close_after,
            hang: self.hang,
            ratelimit_headers: false,
            text: None,
            tool: None,
            context_window: self.context_window,
            echo: false,
            tool_echo: false,
            piece: behavior::DEFAULT_PIECE,
        }
    }
}

/// What a handler decided to send.
pub(crate) enum Reply {
    /// A complete `application/json` body with its status and extra headers.
    Json {
        status: u16,
        body: Bytes,
        headers: Vec<(&'static str, String)>,
    },
    /// A `text/event-stream` body produced event by event.
    Sse(Box<dyn EventSource>),
}

/// A lazily generated SSE stream (so 100 000 chunks cost no memory up front).
pub(crate) trait EventSource: Send {
    fn next_event(&mut self) -> Option<SseEvent>;
    /// The stream's `content-type` (Bedrock's binary event stream is not SSE).
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }
}

/// One complete SSE event (`data: ...\n\n`), written as one body write.
pub(crate) struct SseEvent {
    pub data: Bytes,
    /// A content chunk (counted by `close_after`), as opposed to framing events.
    pub content: bool,
}

/// How a request ended.
enum Flow {
    /// The response completed: the connection may be reused.
    Finished,
    /// Drop the connection (forced close, hang, write error, unreadable request).
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Chat,
    Completions,
    Embeddings,
    /// Anthropic's Messages API (auth, errors and validation of its own).
    Messages,
    /// Azure OpenAI: `/openai/deployments/{deployment}/{op}?api-version=…` with an `api-key`
    /// header; the bodies are OpenAI's.
    Azure(Box<Route>),
    /// Google Gemini below `/v1beta/` (key, errors and validation of its own).
    Gemini(gemini::Call),
    /// AWS Bedrock below `/model/` (SigV4, errors and validation of its own).
    Bedrock(bedrock::Call),
    Models,
    Model(String),
    /// The fake Presidio analyzer (`presidio`).
    Analyze,
    /// OpenAI's Responses API (`responses`).
    Responses,
    /// Google Vertex AI below `/v1/projects/` (`vertex`).
    Vertex(vertex::Call),
    /// `POST /v1/files` (multipart) and `GET /v1/files/{id}/content` (`files`).
    FileUpload,
    FileContent,
}

impl Route {
    fn needs_auth(&self) -> bool {
        matches!(
            self,
            Route::Chat
                | Route::Completions
                | Route::Embeddings
                | Route::FileUpload
                | Route::FileContent
                | Route::Responses
        )
    }
}

/// The mock provider application.
pub struct MockApp {
    defaults: Behavior,
    fail_first: u64,
    failed: AtomicU64,
    require_key: Option<String>,
    recorder: Recorder,
    usage: Arc<UsageMeter>,
    seq: AtomicU64,
    aws: bedrock::AwsKeys,
}

impl MockApp {
    pub fn new(opts: MockOptions) -> Self {
        MockApp {
            defaults: opts.behavior(),
            fail_first: opts.fail_first,
            failed: AtomicU64::new(0),
            aws: bedrock::AwsKeys {
                access_key_id: opts.aws_access_key_id,
                secret_access_key: opts.aws_secret_access_key,
            },
            require_key: opts.require_key,
            recorder: Recorder::new(opts.record_limit),
            usage: Arc::new(UsageMeter::new()),
            seq: AtomicU64::new(0),
        }
    }

    /// The requests received so far (what `GET /_mock/requests` lists).
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The usage handed out so far (what `GET /_mock/usage` shows).
    pub fn usage(&self) -> &UsageMeter {
        &self.usage
    }

    async fn handle(&self, session: &mut ServerSession, body: Bytes, shutdown: &ShutdownWatch) -> Flow {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        if let Some(admin) = path.strip_prefix("/_mock/") {
            let reply = self.admin(&method, admin, &path);
            return write_reply(session, reply, &self.defaults, None).await;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.recorder.push(Record::capture(seq, req, &body));

        let route = match route(&method, &path) {
            Ok(r) => r,
            Err(reply) => return write_reply(session, reply, &self.defaults, Some(seq)).await,
        };
        let header = req.headers.get(behavior::HEADER).map(|v| v.as_bytes());
        // The analyzer's body is a prompt: its markers are meant for the LLM, not for it.
        let markers: &[u8] = if route == Route::Analyze { b"" } else { &body };
        let mut b = match behavior::resolve(&self.defaults, header, markers) {
            Ok(b) => b,
            Err(e) => {
                let reply = openai::error_reply(
                    400,
                    e.to_string(),
                    "invalid_request_error",
                    None,
                    Some("invalid_mock_directive"),
                );
                return write_reply(session, reply, &self.defaults, Some(seq)).await;
            }
        };
        // `--fail-first N`: the flag's forced status applies to the first N requests only.
        if self.fail_first > 0
            && self.defaults.status.is_some()
            && self.failed.fetch_add(1, Ordering::Relaxed) >= self.fail_first
        {
            b.status = None;
        }
        if let Some(reply) = unsupported(&route, &b) {
            return write_reply(session, reply, &self.defaults, Some(seq)).await;
        }
        if b.close_after == Some(0) {
            return Flow::Close;
        }
        if b.hang {
            hang(session, shutdown).await;
            return Flow::Close;
        }
        sleep_ms(b.latency_ms).await;
        let meter = Some(&self.usage);
        let Answer { reply, mut pending } = if route == Route::Messages {
            anthropic::messages(session.req_header(), &body, seq, &b, self.require_key.as_deref()).into()
        } else if let Route::Azure(inner) = &route {
            azure(session.req_header(), inner, &body, seq, &b, meter)
        } else if let Route::Gemini(call) = &route {
            gemini::reply(session.req_header(), call, &body, seq, &b, self.require_key.as_deref()).into()
        } else if let Route::Bedrock(call) = &route {
            bedrock::reply(session.req_header(), call, &body, seq, &b, &self.aws).into()
        } else if let Route::Vertex(call) = &route {
            vertex::reply(session.req_header(), call, &body, seq, &b).into()
        } else if route == Route::Analyze {
            presidio::analyze(&body, &b).into()
        } else if let Some(status) = b.forced_status() {
            openai::forced_error(status, &b).into()
        } else if let Some(denied) = self.check_auth(session.req_header(), &route) {
            denied.into()
        } else {
            match &route {
                Route::Chat => openai::chat_completions(&body, seq, &b, meter),
                Route::Completions => openai::completions(&body, seq, &b, meter),
                Route::Embeddings => openai::embeddings(&body, meter),
                Route::Messages => {
                    anthropic::messages(session.req_header(), &body, seq, &b, self.require_key.as_deref()).into()
                }
                Route::Azure(inner) => azure(session.req_header(), inner, &body, seq, &b, meter),
                Route::Gemini(call) => {
                    gemini::reply(session.req_header(), call, &body, seq, &b, self.require_key.as_deref()).into()
                }
                Route::Bedrock(call) => bedrock::reply(session.req_header(), call, &body, seq, &b, &self.aws).into(),
                Route::Models => openai::list_models().into(),
                Route::Model(id) => openai::retrieve_model(id).into(),
                Route::Analyze => presidio::analyze(&body, &b).into(),
                Route::Vertex(call) => vertex::reply(session.req_header(), call, &body, seq, &b).into(),
                Route::FileUpload => files::upload(session.req_header(), &body, seq).into(),
                Route::Responses => responses::reply(&body, seq, &b).into(),
                Route::FileContent => files::download().into(),
            }
        };
        let flow = write_reply(session, reply, &b, Some(seq)).await;
        // A JSON answer's usage reached the client once its body was written whole.
        if let (Flow::Finished, Some(p)) = (&flow, &mut pending) {
            p.sent();
        }
        flow
    }

    /// `/_mock/*`: the recorder, the usage meter and the health check.
    fn admin(&self, method: &Method, admin: &str, path: &str) -> Reply {
        match (admin, method) {
            ("requests", &Method::GET) => openai::json_reply(200, &self.recorder.listing_json()),
            ("requests", &Method::DELETE) => {
                let cleared = self.recorder.clear();
                openai::json_reply(200, &serde_json::json!({"status": "ok", "cleared": cleared}))
            }
            ("requests", _) => method_not_allowed(method, path, "GET, DELETE"),
            ("usage", &Method::GET) => openai::json_reply(200, &self.usage.to_json()),
            ("usage", &Method::DELETE) => {
                self.usage.reset();
                openai::json_reply(200, &serde_json::json!({"status": "ok"}))
            }
            ("usage", _) => method_not_allowed(method, path, "GET, DELETE"),
            ("health", &Method::GET) => openai::json_reply(200, &serde_json::json!({"status": "ok"})),
            ("health", _) => method_not_allowed(method, path, "GET"),
            _ => not_found(method, path),
        }
    }

    /// `None` if the request may proceed, else the 401 reply.
    fn check_auth(&self, req: &RequestHeader, route: &Route) -> Option<Reply> {
        if !route.needs_auth() {
            return None;
        }
        let token = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty());
        let message = match (token, &self.require_key) {
            (None, _) => {
                "You didn't provide an API key. You need to provide your API key in an \
                 Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            }
            (Some(t), Some(want)) if t != want => "Incorrect API key provided.",
            (Some(_), _) => return None,
        };
        Some(openai::error_reply(
            401,
            message,
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ))
    }
}

fn route(method: &Method, path: &str) -> Result<Route, Reply> {
    if path.starts_with("/v1beta/") {
        return gemini::route(method, path).map(Route::Gemini);
    }
    if path.starts_with("/model/") {
        return bedrock::route(method, path).map(Route::Bedrock);
    }
    if path.starts_with("/v1/projects/") {
        return vertex::route(method, path).map(Route::Vertex);
    }
    let (route, allowed) = match path {
        "/v1/chat/completions" => (Route::Chat, Method::POST),
        "/v1/completions" => (Route::Completions, Method::POST),
        "/v1/embeddings" => (Route::Embeddings, Method::POST),
        "/v1/messages" => (Route::Messages, Method::POST),
        "/v1/models" => (Route::Models, Method::GET),
        "/analyze" => (Route::Analyze, Method::POST),
        "/v1/files" => (Route::FileUpload, Method::POST),
        "/v1/responses" => (Route::Responses, Method::POST),
        // Azure's v1 surface (a key or an Entra token, checked as for its other routes).
        "/openai/v1/responses" => (Route::Azure(Box::new(Route::Responses)), Method::POST),
        p if p.starts_with("/v1/files/") && p.ends_with("/content") => (Route::FileContent, Method::GET),
        _ => match path.strip_prefix("/v1/models/") {
            Some(id) if !id.is_empty() && !id.contains('/') => (Route::Model(id.to_string()), Method::GET),
            _ => match path
                .strip_prefix("/openai/deployments/")
                .and_then(|r| r.split_once('/'))
            {
                Some((dep, op)) if !dep.is_empty() => match op {
                    "chat/completions" => (Route::Azure(Box::new(Route::Chat)), Method::POST),
                    "completions" => (Route::Azure(Box::new(Route::Completions)), Method::POST),
                    "embeddings" => (Route::Azure(Box::new(Route::Embeddings)), Method::POST),
                    _ => return Err(not_found(method, path)),
                },
                _ => return Err(not_found(method, path)),
            },
        },
    };
    if *method == allowed {
        Ok(route)
    } else {
        Err(method_not_allowed(method, path, allowed.as_str()))
    }
}

/// Azure OpenAI: an `api-version` query parameter and an `api-key` header, then OpenAI's bodies.
fn azure(
    req: &RequestHeader,
    inner: &Route,
    body: &[u8],
    seq: u64,
    b: &Behavior,
    meter: Option<&Arc<UsageMeter>>,
) -> Answer {
    let has_version = req
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("api-version=") && kv.len() > 12));
    // (The v1 surface, where the Responses API lives, takes no api-version.)
    if !has_version && *inner != Route::Responses {
        return openai::json_reply(
            404,
            &serde_json::json!({"error": {"code": "404", "message": "Resource not found"}}),
        )
        .into();
    }
    // A key, or a Microsoft Entra ID token (`Authorization: Bearer`), as Azure takes either.
    let bearer = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.strip_prefix("Bearer ").is_some_and(|t| !t.is_empty()));
    if !bearer && req.headers.get("api-key").is_none_or(|v| v.is_empty()) {
        return openai::json_reply(
            401,
            &serde_json::json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}}),
        )
        .into();
    }
    if let Some(status) = b.forced_status() {
        return openai::forced_error(status, b).into();
    }
    match inner {
        Route::Completions => openai::completions(body, seq, b, meter),
        Route::Embeddings => openai::embeddings(body, meter),
        Route::Responses => responses::reply(body, seq, b).into(),
        _ => openai::chat_completions(body, seq, b, meter),
    }
}

/// The 400 of a bad directive for `echo`/`tool_echo` where the dialect does not implement them
/// (Gemini, Bedrock), so a test expecting an echo fails loudly.
fn unsupported(route: &Route, b: &Behavior) -> Option<Reply> {
    let dialect = match route {
        Route::Gemini(_) => "Gemini",
        Route::Bedrock(_) => "Bedrock",
        _ => return None,
    };
    let key = if b.tool_echo {
        "tool_echo"
    } else if b.echo {
        "echo"
    } else {
        return None;
    };
    Some(openai::error_reply(
        400,
        format!(
            "mock directive `{key}` is not implemented for the {dialect} endpoints (only OpenAI, Azure and Anthropic)"
        ),
        "invalid_request_error",
        None,
        Some("invalid_mock_directive"),
    ))
}

fn not_found(method: &Method, path: &str) -> Reply {
    openai::error_reply(
        404,
        format!("Invalid URL ({method} {path})"),
        "invalid_request_error",
        None,
        Some("unknown_url"),
    )
}

fn method_not_allowed(method: &Method, path: &str, allowed: &str) -> Reply {
    let mut reply = openai::error_reply(
        405,
        format!("Method {method} is not allowed on {path} (allowed: {allowed})"),
        "invalid_request_error",
        None,
        Some("method_not_allowed"),
    );
    if let Reply::Json { headers, .. } = &mut reply {
        headers.push(("allow", allowed.to_string()));
    }
    reply
}

#[async_trait]
impl HttpServerApp for MockApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(session.read_request().await, Ok(true)) {
            return None;
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let expects_continue = session
            .get_header(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue && session.write_continue_response().await.is_err() {
            return None;
        }
        let (body, too_large) = read_body(&mut session).await.ok()?;
        if too_large {
            session.set_keepalive(None);
            let path = session.req_header().uri.path();
            if !path.starts_with("/_mock/") {
                let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
                self.recorder.push(Record::capture(seq, session.req_header(), &body));
            }
            let reply = openai::error_reply(
                413,
                format!("Request body exceeds the mock's limit of {MAX_BODY_BYTES} bytes."),
                "invalid_request_error",
                None,
                Some("request_too_large"),
            );
            write_reply(&mut session, reply, &self.defaults, None).await;
            return None;
        }
        match self.handle(&mut session, body, shutdown).await {
            Flow::Finished => finish(session).await,
            Flow::Close => None,
        }
    }
}

/// A pingora listening service serving the mock on `listen` (e.g. `"127.0.0.1:8091"`).
pub fn mock_service(listen: &str, opts: MockOptions) -> Service<MockApp> {
    let mut service = Service::new("tollgate mock provider".to_string(), MockApp::new(opts));
    service.add_tcp(listen);
    service
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        mock: MockOptions,
    }

    #[test]
    fn default_matches_clap_defaults() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.mock, MockOptions::default());
        let cli = Cli::try_parse_from([
            "x",
            "--latency-ms=5",
            "--first-chunk-ms=6",
            "--chunk-delay-ms=7",
            "--chunks=9",
            "--status=503",
            "--retry-after=2",
            "--close-after=3",
            "--hang",
            "--require-key=k",
            "--record-limit=10",
        ])
        .unwrap();
        let b = cli.mock.behavior();
        assert_eq!((b.latency_ms, b.first_chunk_ms, b.chunk_delay_ms), (5, 6, 7));
        assert_eq!((b.chunks, b.status, b.retry_after), (9, Some(503), Some(2)));
        assert_eq!((b.close_after, b.hang), (Some(3), true));
        assert!(Cli::try_parse_from(["x", "--chunks=0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--status=99"]).is_err());
    }

    #[test]
    fn routes() {
        assert_eq!(route(&Method::POST, "/v1/chat/completions").ok(), Some(Route::Chat));
        assert_eq!(
            route(&Method::GET, "/v1/models/mock-gpt").ok(),
            Some(Route::Model("mock-gpt".into()))
        );
        let status = |r: Result<Route, Reply>| match r {
            Err(Reply::Json { status, .. }) => status,
            _ => 0,
        };
        assert_eq!(status(route(&Method::GET, "/v1/chat/completions")), 405);
        assert_eq!(status(route(&Method::POST, "/v1/nope")), 404);
        assert_eq!(status(route(&Method::GET, "/v1/models/")), 404);
        assert_eq!(route(&Method::POST, "/analyze").ok(), Some(Route::Analyze));
        assert_eq!(status(route(&Method::GET, "/analyze")), 405);
        let echo = Behavior {
            echo: true,
            ..Behavior::default()
        };
        assert!(unsupported(&Route::Chat, &echo).is_none());
        assert!(unsupported(&Route::Messages, &echo).is_none());
    }

    #[test]
    fn auth() {
        let app = MockApp::new(MockOptions {
            require_key: Some("sk-good".into()),
            ..MockOptions::default()
        });
        let req = |auth: Option<&str>| {
            let mut h = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
            if let Some(a) = auth {
                h.insert_header("authorization", a).unwrap();
            }
            h
        };
        assert!(app.check_auth(&req(Some("Bearer sk-good")), &Route::Chat).is_none());
        assert!(app.check_auth(&req(Some("bearer  sk-good ")), &Route::Chat).is_none());
        for bad in [None, Some("Bearer "), Some("Basic sk-good"), Some("Bearer sk-bad")] {
            assert!(app.check_auth(&req(bad), &Route::Chat).is_some(), "{bad:?}");
        }
        assert!(app.check_auth(&req(None), &Route::Models).is_none());
        let open = MockApp::new(MockOptions::default());
        assert!(open
            .check_auth(&req(Some("Bearer anything")), &Route::Embeddings)
            .is_none());
    }
}
