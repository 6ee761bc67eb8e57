//! Behaviour directives: how a test steers one response of the mock provider.
//!
//! A directive list is `key=value` pairs (or a bare flag word: `hang`, `ratelimit_headers`,
//! `echo`, `tool_echo`)
//! separated by spaces or commas.
//! It comes from three places, later ones winning **per key**:
//!
//! 1. the server flags ([`super::MockOptions`], turned into the default [`Behavior`]);
//! 2. every `[[mock: ...]]` marker found anywhere in the raw request body, in order (a raw byte
//!    search, so a marker in a message's text survives whatever JSON translation a gateway does;
//!    the JSON escapes `\n`, `\r` and `\t` inside a marker count as separators);
//! 3. the `x-mock-behavior` request header.
//!
//! | key | value | effect |
//! |---|---|---|
//! | `status` | 200..=599 | non-2xx: answer that status with a forced error body; 2xx: normal answer |
//! | `retry_after` | seconds | `Retry-After` on a forced error |
//! | `retry_after_ms` | ms | `retry-after-ms` on a forced error |
//! | `latency_ms` | ms | delay before the response header |
//! | `first_chunk_ms` | ms | streaming: delay between the header and the first event |
//! | `chunk_delay_ms` | ms | streaming: delay between events |
//! | `chunks` | 1..=100000 | number of content pieces (= completion tokens) |
//! | `close_after` | n | streaming: drop the connection after n content events (JSON answers ignore n > 0); `0`: close after reading the request, on every endpoint |
//! | `hang` | bare, or `true`/`false` | read the request, never answer |
//! | `text` | a word | the content pieces are this word instead of the default sentence |
//! | `ratelimit_headers` | bare, or `true`/`false` | a non-streamed chat answer carries OpenAI's six `x-ratelimit-*` headers, as OpenAI sends them (see [`super::openai::ratelimit_headers`]) |
//! | `tool` | a tool name | answer with a call to this tool (the request must declare it), arguments `{"q":"mock"}` |
//! | `context_window` | tokens | reject longer chat prompts with OpenAI's `context_length_exceeded` 400 |
//! | `echo` | bare, or `true`/`false` | the answer's text is the last user message's text, `[[mock: ...]]` markers removed (see [`super::echo`]); streamed in `piece`-byte pieces; overrides `chunks`, `text`, `tool` and `max_tokens` |
//! | `tool_echo` | bare, or `true`/`false` | the answer is one call of the tool `record` with the arguments `{"note": <echoed text>}`, streamed in `piece`-byte pieces of the arguments text; wins over `echo` and `tool` |
//! | `piece` | 1..=4096 | `echo`/`tool_echo`: the stream piece size in bytes (default 4), cut on UTF-8 character boundaries |
//!
//! `echo` and `tool_echo` are answered by the OpenAI (chat, completions, Azure) and Anthropic
//! endpoints; Gemini and Bedrock answer them with the 400 of a bad directive, and legacy
//! completions answer `tool_echo` so (they have no tool calls). Embeddings and models ignore
//! them, as they ignore `chunks`. The fake Presidio analyzer (`POST /analyze`) reads directives
//! from the header only: its body is a prompt, whose markers are meant for the LLM.
//!
//! Invariant: anything unknown or out of range is an error naming the directive, never ignored,
//! so a typo in a test is loud.

use memchr::memmem;

/// Request header carrying directives.
pub const HEADER: &str = "x-mock-behavior";
/// Opening of a body marker.
pub const MARKER_OPEN: &[u8] = b"[[mock:";
/// Closing of a body marker.
pub const MARKER_CLOSE: &[u8] = b"]]";
/// Default number of content chunks.
pub const DEFAULT_CHUNKS: u32 = 4;
/// Largest `chunks` (and `close_after`) value.
pub const MAX_CHUNKS: u32 = 100_000;
/// Largest delay a directive may ask for (one hour).
pub const MAX_DELAY_MS: u64 = 3_600_000;
/// Largest `retry_after` in seconds (one day).
pub const MAX_RETRY_AFTER_S: u64 = 86_400;
/// Longest `text` word, in characters.
pub const MAX_TEXT_CHARS: usize = 256;
/// Default `piece` (bytes per echoed stream piece).
pub const DEFAULT_PIECE: u32 = 4;
/// Largest `piece`.
pub const MAX_PIECE: u32 = 4096;

const KNOWN_KEYS: &str = "status, retry_after, retry_after_ms, latency_ms, first_chunk_ms, \
                          chunk_delay_ms, chunks, close_after, hang, text, ratelimit_headers, tool, \
                          context_window, echo, tool_echo, piece";

/// The fully resolved behaviour of one response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behavior {
    /// Forced status; `None` or a 2xx means a normal answer.
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub retry_after_ms: Option<u64>,
    pub latency_ms: u64,
    pub first_chunk_ms: u64,
    pub chunk_delay_ms: u64,
    pub chunks: u32,
    pub close_after: Option<u32>,
    pub hang: bool,
    pub text: Option<String>,
    /// Non-streamed chat answers carry OpenAI's `x-ratelimit-*` headers.
    pub ratelimit_headers: bool,
    /// Answer with a call to this tool (the request must declare it) instead of text.
    pub tool: Option<String>,
    /// Reject prompts of more tokens than this with OpenAI's `context_length_exceeded` 400.
    pub context_window: Option<u64>,
    /// Answer the last user message's text (`echo`).
    pub echo: bool,
    /// Answer a `record` tool call whose `note` is the last user message's text (`tool_echo`).
    pub tool_echo: bool,
    /// Bytes per streamed echo piece (`piece`).
    pub piece: u32,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            status: None,
            retry_after: None,
            retry_after_ms: None,
            latency_ms: 0,
            first_chunk_ms: 0,
            chunk_delay_ms: 0,
            chunks: DEFAULT_CHUNKS,
            close_after: None,
            hang: false,
            text: None,
            ratelimit_headers: false,
            tool: None,
            context_window: None,
            echo: false,
            tool_echo: false,
            piece: DEFAULT_PIECE,
        }
    }
}

impl Behavior {
    /// The status to force, if the behaviour asks for a non-2xx answer.
    pub fn forced_status(&self) -> Option<u16> {
        self.status.filter(|s| !(200..300).contains(s))
    }

    /// Apply the keys set in `o` on top of `self`.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(v) = o.status {
            self.status = Some(v);
        }
        if let Some(v) = o.retry_after {
            self.retry_after = Some(v);
        }
        if let Some(v) = o.retry_after_ms {
            self.retry_after_ms = Some(v);
        }
        if let Some(v) = o.latency_ms {
            self.latency_ms = v;
        }
        if let Some(v) = o.first_chunk_ms {
            self.first_chunk_ms = v;
        }
        if let Some(v) = o.chunk_delay_ms {
            self.chunk_delay_ms = v;
        }
        if let Some(v) = o.chunks {
            self.chunks = v;
        }
        if let Some(v) = o.close_after {
            self.close_after = Some(v);
        }
        if let Some(v) = o.hang {
            self.hang = v;
        }
        if let Some(v) = o.ratelimit_headers {
            self.ratelimit_headers = v;
        }
        if let Some(v) = &o.text {
            self.text = Some(v.clone());
        }
        if let Some(v) = &o.tool {
            self.tool = Some(v.clone());
        }
        if let Some(v) = o.context_window {
            self.context_window = Some(v);
        }
        if let Some(v) = o.echo {
            self.echo = v;
        }
        if let Some(v) = o.tool_echo {
            self.tool_echo = v;
        }
        if let Some(v) = o.piece {
            self.piece = v;
        }
    }
}

/// The keys one directive list sets (unset keys are `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub retry_after_ms: Option<u64>,
    pub latency_ms: Option<u64>,
    pub first_chunk_ms: Option<u64>,
    pub chunk_delay_ms: Option<u64>,
    pub chunks: Option<u32>,
    pub close_after: Option<u32>,
    pub hang: Option<bool>,
    pub ratelimit_headers: Option<bool>,
    pub tool: Option<String>,
    pub context_window: Option<u64>,
    pub text: Option<String>,
    pub echo: Option<bool>,
    pub tool_echo: Option<bool>,
    pub piece: Option<u32>,
}

/// A directive that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    #[error("unknown mock directive `{0}` (known: {KNOWN_KEYS})")]
    UnknownKey(String),
    #[error("mock directive `{0}` needs a value (`{0}=...`)")]
    MissingValue(String),
    #[error("bad value `{value}` for mock directive `{key}`: expected {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("directives are not valid UTF-8")]
    NotUtf8,
    #[error("unterminated `[[mock:` marker (no closing `]]`)")]
    Unterminated,
}

/// Where a bad directive was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Header,
    Body,
}

/// A [`DirectiveError`] with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BehaviorError {
    pub origin: Origin,
    pub error: DirectiveError,
}

impl std::fmt::Display for BehaviorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self.origin {
            Origin::Header => "x-mock-behavior header",
            Origin::Body => "[[mock: ...]] marker in the request body",
        };
        write!(f, "{place}: {}", self.error)
    }
}

impl std::error::Error for BehaviorError {}

impl Overrides {
    /// Parse one directive list (`status=429 retry_after=2`, `hang,chunks=3`).
    pub fn parse(spec: &str) -> Result<Self, DirectiveError> {
        let mut o = Overrides::default();
        for token in spec
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
        {
            let (key, value) = match token.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (token, None),
            };
            o.set(key, value)?;
        }
        Ok(o)
    }

    /// Set `later`'s keys on top of `self`.
    pub fn merge(&mut self, later: Overrides) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            status,
            retry_after,
            retry_after_ms,
            latency_ms,
            first_chunk_ms,
            chunk_delay_ms,
            chunks,
            close_after,
            hang,
            ratelimit_headers,
            text,
            tool,
            context_window,
            echo,
            tool_echo,
            piece
        );
    }

    fn set(&mut self, key: &str, value: Option<&str>) -> Result<(), DirectiveError> {
        let flag = match key {
            "hang" => Some(&mut self.hang),
            "ratelimit_headers" => Some(&mut self.ratelimit_headers),
            "echo" => Some(&mut self.echo),
            "tool_echo" => Some(&mut self.tool_echo),
            _ => None,
        };
        if let Some(flag) = flag {
            let on = match value {
                None | Some("true") | Some("1") => true,
                Some("false") | Some("0") => false,
                Some(v) => return Err(bad(key, v, "nothing, `true` or `false`")),
            };
            *flag = Some(on);
            return Ok(());
        }
        if !is_known(key) {
            return Err(DirectiveError::UnknownKey(key.to_string()));
        }
        let Some(v) = value else {
            return Err(DirectiveError::MissingValue(key.to_string()));
        };
        match key {
            "status" => self.status = Some(num(key, v, 200, 599, "an HTTP status 200..=599")?),
            "retry_after" => self.retry_after = Some(num(key, v, 0, MAX_RETRY_AFTER_S, "seconds 0..=86400")?),
            "retry_after_ms" => {
                self.retry_after_ms = Some(num(key, v, 0, MAX_RETRY_AFTER_S * 1000, "ms 0..=86400000")?)
            }
            "latency_ms" => self.latency_ms = Some(delay(key, v)?),
            "first_chunk_ms" => self.first_chunk_ms = Some(delay(key, v)?),
            "chunk_delay_ms" => self.chunk_delay_ms = Some(delay(key, v)?),
            "chunks" => self.chunks = Some(num(key, v, 1, u64::from(MAX_CHUNKS), "a count 1..=100000")?),
            "close_after" => self.close_after = Some(num(key, v, 0, u64::from(MAX_CHUNKS), "a count 0..=100000")?),
            "text" => {
                let n = v.chars().count();
                if n == 0 || n > MAX_TEXT_CHARS || v.chars().any(char::is_control) {
                    return Err(bad(key, v, "one word of 1..=256 printable characters"));
                }
                self.text = Some(v.to_string());
            }
            "context_window" => self.context_window = Some(num(key, v, 1, 10_000_000, "a token count 1..=10000000")?),
            "piece" => self.piece = Some(num(key, v, 1, u64::from(MAX_PIECE), "a byte count 1..=4096")?),
            "tool" => {
                if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(bad(key, v, "a tool name of 1..=64 letters, digits, '_' or '-'"));
                }
                self.tool = Some(v.to_string());
            }
            _ => return Err(DirectiveError::UnknownKey(key.to_string())),
        }
        Ok(())
    }
}

fn is_known(key: &str) -> bool {
    matches!(
        key,
        "status"
            | "retry_after"
            | "retry_after_ms"
            | "latency_ms"
            | "first_chunk_ms"
            | "chunk_delay_ms"
            | "chunks"
            | "close_after"
            | "tool"
            | "context_window"
            | "text"
            | "piece"
    )
}

fn bad(key: &str, value: &str, expected: &'static str) -> DirectiveError {
    DirectiveError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

fn num<T>(key: &str, v: &str, min: u64, max: u64, expected: &'static str) -> Result<T, DirectiveError>
where
    T: TryFrom<u64>,
{
    v.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| bad(key, v, expected))
}

fn delay(key: &str, v: &str) -> Result<u64, DirectiveError> {
    num(key, v, 0, MAX_DELAY_MS, "milliseconds 0..=3600000")
}

/// Parse every `[[mock: ...]]` marker in `body`, merged in order (later markers win per key).
pub fn parse_body_markers(body: &[u8]) -> Result<Option<Overrides>, DirectiveError> {
    let mut found: Option<Overrides> = None;
    let mut at = 0;
    while let Some(rel) = memmem::find(&body[at..], MARKER_OPEN) {
        let start = at + rel + MARKER_OPEN.len();
        let Some(len) = memmem::find(&body[start..], MARKER_CLOSE) else {
            return Err(DirectiveError::Unterminated);
        };
        let raw = std::str::from_utf8(&body[start..start + len]).map_err(|_| DirectiveError::NotUtf8)?;
        let parsed = if raw.contains('\\') {
            // The marker sits inside a JSON string: its escaped whitespace separates directives.
            Overrides::parse(&raw.replace("\\n", " ").replace("\\r", " ").replace("\\t", " "))?
        } else {
            Overrides::parse(raw)?
        };
        found.get_or_insert_with(Overrides::default).merge(parsed);
        at = start + len + MARKER_CLOSE.len();
    }
    Ok(found)
}

/// Resolve a request's behaviour: `defaults` (from flags), then body markers, then the header.
pub fn resolve(defaults: &Behavior, header: Option<&[u8]>, body: &[u8]) -> Result<Behavior, BehaviorError> {
    let mut b = defaults.clone();
    // Fast path: most benchmark requests carry no directive at all.
    if memmem::find(body, MARKER_OPEN).is_some() {
        let o = parse_body_markers(body).map_err(|error| BehaviorError {
            origin: Origin::Body,
            error,
        })?;
        if let Some(o) = o {
            b.apply(&o);
        }
    }
    if let Some(h) = header {
        let hdr = |error| BehaviorError {
            origin: Origin::Header,
            error,
        };
        let s = std::str::from_utf8(h).map_err(|_| hdr(DirectiveError::NotUtf8))?;
        b.apply(&Overrides::parse(s).map_err(hdr)?);
    }
    Ok(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_list_with_spaces_and_commas() {
        let o = Overrides::parse(" status=429, retry_after=2 ,,hang  chunks=7 text=ok").unwrap();
        assert_eq!(o.status, Some(429));
        assert_eq!(o.retry_after, Some(2));
        assert_eq!(o.hang, Some(true));
        assert_eq!(o.chunks, Some(7));
        assert_eq!(o.text.as_deref(), Some("ok"));
        assert_eq!(o.latency_ms, None);
        assert_eq!(Overrides::parse("").unwrap(), Overrides::default());
        assert_eq!(Overrides::parse("hang=false").unwrap().hang, Some(false));
    }

    #[test]
    fn all_keys_parse() {
        let o = Overrides::parse(
            "status=503 retry_after=1 retry_after_ms=1500 latency_ms=5 first_chunk_ms=6 \
             chunk_delay_ms=7 chunks=8 close_after=0 text=héllo ratelimit_headers echo tool_echo=1 \
             piece=3",
        )
        .unwrap();
        let mut b = Behavior::default();
        b.apply(&o);
        assert_eq!(
            b,
            Behavior {
                status: Some(503),
                retry_after: Some(1),
                retry_after_ms: Some(1500),
                latency_ms: 5,
                first_chunk_ms: 6,
                chunk_delay_ms: 7,
                chunks: 8,
                close_after: Some(0),
                hang: false,
                text: Some("héllo".into()),
                ratelimit_headers: true,
                tool: None,
                context_window: None,
                echo: true,
                tool_echo: true,
                piece: 3,
            }
        );
        assert_eq!(b.forced_status(), Some(503));
        b.status = Some(200);
        assert_eq!(b.forced_status(), None);
    }

    #[test]
    fn errors_name_the_directive() {
        let cases = [
            ("stauts=429", "stauts"),
            ("status=abc", "status"),
            ("status=99", "status"),
            ("status=600", "status"),
            ("chunks=0", "chunks"),
            ("chunks=100001", "chunks"),
            ("latency_ms=-1", "latency_ms"),
            ("latency_ms=3600001", "latency_ms"),
            ("latency_ms", "latency_ms"),
            ("hang=maybe", "hang"),
            ("ratelimit_headers=2", "ratelimit_headers"),
            ("text=", "text"),
            ("echo=yes", "echo"),
            ("tool_echo=2", "tool_echo"),
            ("piece=0", "piece"),
            ("piece=4097", "piece"),
            ("piece", "piece"),
            ("echoo", "echoo"),
            ("bogus", "bogus"),
        ];
        for (spec, key) in cases {
            let e = Overrides::parse(spec).unwrap_err();
            assert!(e.to_string().contains(&format!("`{key}`")), "{spec}: {e}");
        }
    }

    #[test]
    fn body_markers_are_found_anywhere_and_merge_in_order() {
        let body = br#"{"messages":[{"role":"user","content":"hi [[mock: status=503 latency_ms=100]]"},
            {"role":"user","content":"again [[mock:status=429,chunks=2]] end"}]}"#;
        let o = parse_body_markers(body).unwrap().unwrap();
        assert_eq!(o.status, Some(429));
        assert_eq!(o.latency_ms, Some(100));
        assert_eq!(o.chunks, Some(2));
        assert_eq!(parse_body_markers(b"{\"a\":1}").unwrap(), None);
        assert_eq!(
            parse_body_markers(b"[[mock: status=500").unwrap_err(),
            DirectiveError::Unterminated
        );
        // JSON-escaped newline inside the marker separates directives.
        let o = parse_body_markers(br#""[[mock: chunks=3\nhang]]""#).unwrap().unwrap();
        assert_eq!((o.chunks, o.hang), (Some(3), Some(true)));
    }

    #[test]
    fn header_beats_body_beats_defaults() {
        let defaults = Behavior {
            latency_ms: 9,
            chunk_delay_ms: 4,
            status: Some(500),
            ..Behavior::default()
        };
        let body = b"x [[mock: status=503 latency_ms=100 chunks=2]] y";
        let b = resolve(&defaults, Some(b"status=429"), body).unwrap();
        assert_eq!(b.status, Some(429));
        assert_eq!(b.latency_ms, 100);
        assert_eq!(b.chunks, 2);
        assert_eq!(b.chunk_delay_ms, 4);
        let b = resolve(&defaults, None, b"{}").unwrap();
        assert_eq!(b, defaults);
        let b = resolve(&defaults, Some(b"status=200"), b"{}").unwrap();
        assert_eq!(b.forced_status(), None);
    }

    #[test]
    fn resolve_reports_the_source() {
        let e = resolve(&Behavior::default(), Some(b"chunks=x"), b"").unwrap_err();
        assert_eq!(e.origin, Origin::Header);
        assert!(e.to_string().starts_with("x-mock-behavior header:"), "{e}");
        let e = resolve(&Behavior::default(), None, b"[[mock: nope=1]]").unwrap_err();
        assert_eq!(e.origin, Origin::Body);
        assert!(e.to_string().contains("`nope`"), "{e}");
        let e = resolve(&Behavior::default(), Some(&[0xff, 0xfe]), b"").unwrap_err();
        assert_eq!(e.error, DirectiveError::NotUtf8);
    }
}
