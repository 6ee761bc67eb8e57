//! Token estimation with tiktoken's `o200k_base` encoding (GPT-4o's; a close estimate for other
//! providers' tokenizers, and it is an estimate: providers' own usage is what gets billed).
//!
//! Chat overhead follows OpenAI's documented accounting: 3 tokens per message, 1 more for a
//! `name`, and 3 for priming the reply. An image is counted as 85 tokens (OpenAI's low-detail
//! cost): the gateway does not decode images to size them. Encoding is CPU work (about 0.5 ms per
//! 1k tokens unoptimised builds aside), so callers run large inputs on a blocking thread.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use memchr::memmem::Finder;
use tiktoken_rs::CoreBPE;

use super::o200k::Counter;

use super::prompt::{Prompt, PromptContent};
use crate::api::chat::ChatRequest;

const PER_MESSAGE: u64 = 3;
const PER_NAME: u64 = 1;
const REPLY_PRIMING: u64 = 3;
const PER_IMAGE: u64 = 85;

fn bpe() -> &'static CoreBPE {
    tiktoken_rs::o200k_base_singleton()
}

/// The fast exact counter for ASCII text, built by `warm_up`.
static ASCII: std::sync::OnceLock<Counter> = std::sync::OnceLock::new();

/// Loads the encoder and builds the ASCII counter (a few hundred ms); call once at start, off the
/// request path.
pub fn warm_up() {
    ASCII.get_or_init(|| Counter::new(bpe()));
}

/// The encoder is loaded (`/ready` waits for it, so no request pays the load).
pub fn is_warm() -> bool {
    ASCII.get().is_some()
}

/// Tokens of `text` under `o200k_base`, exactly as tiktoken's `encode_ordinary` counts them:
/// ASCII text through the hand-written splitter (`o200k.rs`, about ten times faster), the rest
/// through tiktoken itself.
pub fn count_text(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    if let Some(n) = ASCII.get().and_then(|c| c.count(text)) {
        return n;
    }
    bpe().encode_ordinary(text).len() as u64
}

/// Prompt texts repeat: the same system prompt and few-shot examples on every request of an
/// application, and a chat resends its whole history each turn. Their counts are kept by a hash
/// of the text, so only what is new in a request is counted. Hashing takes about 1 ns a byte;
/// counting, ~3 ns for ASCII (`o200k.rs`) and ~40 for other text (tiktoken).
///
/// The table is direct-mapped and lock-free: 65,536 slots of one `AtomicU64` (512 KB), each
/// holding 40 more bits of the text's hash as a tag and its count in the low 24 bits (0 is an
/// empty slot: a text this long has at least one token). A new text simply takes its slot. The
/// hash is SipHash with a per-process random key, so nobody can make a long text collide with a
/// short one to shrink its reservation; an accidental collision (one in 2^40 per lookup) would
/// only misestimate one text.
struct PromptCounts {
    slots: Box<[AtomicU64]>,
    hasher: std::hash::RandomState,
}

const PROMPT_SLOTS_BITS: u32 = 16;
const COUNT_BITS: u32 = 24;
/// Shorter texts are counted directly (as fast as a lookup).
const PROMPT_CACHE_MIN_LEN: usize = 24;

static PROMPT_COUNTS: std::sync::OnceLock<PromptCounts> = std::sync::OnceLock::new();

fn count_prompt_text(text: &str) -> u64 {
    if text.len() < PROMPT_CACHE_MIN_LEN {
        return count_text(text);
    }
    let table = PROMPT_COUNTS.get_or_init(|| PromptCounts {
        slots: (0..1 << PROMPT_SLOTS_BITS).map(|_| AtomicU64::new(0)).collect(),
        hasher: std::hash::RandomState::new(),
    });
    let hash = table.hasher.hash_one(text.as_bytes());
    let slot = &table.slots[(hash & ((1 << PROMPT_SLOTS_BITS) - 1)) as usize];
    // The 40 bits above the index, above the count.
    let tag = ((hash >> PROMPT_SLOTS_BITS) & ((1 << (64 - COUNT_BITS)) - 1)) << COUNT_BITS;
    let seen = slot.load(Ordering::Relaxed);
    if seen != 0 && seen & !COUNT_MASK == tag {
        return seen & COUNT_MASK;
    }
    let n = count_text(text);
    if n <= COUNT_MASK {
        slot.store(tag | n, Ordering::Relaxed);
    }
    n
}

const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Estimated prompt tokens of a canonical chat request (see [`estimate`]).
pub fn estimate_chat(req: &ChatRequest) -> u64 {
    estimate(&Prompt::of_chat(req))
}

/// A chat request's prompt tokens by the tokenizer, and its own cap on the completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptNeed {
    pub prompt: u64,
    pub max_output: Option<u64>,
}

/// Estimated prompt tokens of a chat request: messages, tool definitions and the response format.
pub fn estimate(p: &Prompt<'_>) -> u64 {
    let mut n = REPLY_PRIMING;
    for m in &p.messages {
        n += PER_MESSAGE;
        n += count_prompt_text(&m.role);
        if let Some(name) = &m.name {
            n += PER_NAME + count_prompt_text(name);
        }
        match &m.content {
            Some(PromptContent::Text(t)) => n += count_prompt_text(t),
            Some(PromptContent::Parts(parts)) => {
                for part in parts {
                    match &*part.kind {
                        "image_url" => n += PER_IMAGE,
                        _ => n += part.text.as_deref().map_or(0, count_text),
                    }
                }
            }
            None => {}
        }
        for tc in m.tool_calls.iter().flatten() {
            n += count_prompt_text(&tc.function.name) + count_prompt_text(&tc.function.arguments);
        }
    }
    if let Some(tools) = &p.tools {
        n += count_prompt_text(tools);
    }
    if let Some(rf) = &p.response_format {
        n += count_prompt_text(rf);
    }
    n
}

/// An upper bound of [`estimate`] for an OpenAI-shaped chat body, read off its bytes in a
/// few vector scans (no parse, no tokenizer), so limits can be reserved before the tokenizer
/// has run.
///
/// Why it bounds: every text the estimate counts (roles, names, contents, tool calls, and the
/// tools and response format as their JSON text) is a separate stretch of the body, and decodes
/// to no more bytes than its JSON spelling; an o200k token is at least one byte. What remains is
/// a constant per message (each message is an object, so one `{` each), one per name (the
/// `"name":` key covers it), the reply priming, and [`PER_IMAGE`] per image part. An image part
/// spells `image_url` literally unless the body uses `\u` escapes; then every `{` is counted
/// as a possible image.
pub fn bound_of_body(body: &[u8]) -> u64 {
    // The searchers are built once: building one costs more than a scan of a typical body.
    static ESCAPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\\u"));
    static IMAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"image_url"));
    let braces = memchr::memchr_iter(b'{', body).count() as u64;
    let images = if ESCAPE.find(body).is_some() {
        braces
    } else {
        IMAGE.find_iter(body).count() as u64
    };
    body.len() as u64 + REPLY_PRIMING + PER_MESSAGE * braces + PER_IMAGE * images
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_strings() {
        // o200k_base: "Hello, world!" is 4 tokens ("Hello", ",", " world", "!").
        assert_eq!(count_text("Hello, world!"), 4);
        assert_eq!(count_text(""), 0);
    }

    #[test]
    fn chat_overhead_follows_openai_accounting() {
        let req: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "Hello, world!"}]
        }))
        .unwrap();
        // 3 (priming) + 3 (message) + 1 ("user") + 4 (text).
        assert_eq!(estimate_chat(&req), 3 + 3 + 1 + 4);
        let with_image: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Hello, world!"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
            ]}]
        }))
        .unwrap();
        assert_eq!(estimate_chat(&with_image), estimate_chat(&req) + PER_IMAGE);
    }

    #[test]
    fn cached_counts_equal_tiktoken() {
        warm_up();
        let long = "A long system prompt, repeated on every request of an application. ".repeat(80);
        let texts = [
            "You are a concise support assistant for an online bookshop.",
            "You are a concise support assistant for an online bookshop!",
            "short",
            "Ünïcödé and emoji 🚀 survive the cache just like plain ASCII text does.",
            &long,
        ];
        for _ in 0..3 {
            for t in texts {
                assert_eq!(count_prompt_text(t), bpe().encode_ordinary(t).len() as u64, "{t}");
            }
        }
    }

    #[test]
    fn a_parsed_body_estimates_like_its_canonical_request() {
        warm_up();
        let bodies = [
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/body-json.json")).unwrap(),
            r#"{"model":"m","messages":[{"role":"system","content":"Answer in JSON. Ünïcödé too."},
                {"role":"user","name":"ann","content":[{"type":"text","text":"What is in\nthis picture?"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
                "function":{"name":"lookup","arguments":"{\"sku\":\"A-17\"}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"in stock"}],
                "tools":[{"type":"function","function":{"name":"lookup","description":"Find a product","parameters":{"type":"object"}}}],
                "response_format":{"type":"json_object"},"max_completion_tokens":50}"#
                .to_string(),
        ];
        for body in &bodies {
            let chat: ChatRequest = serde_json::from_str(body).unwrap();
            let view = Prompt::parse(body.as_bytes()).unwrap();
            assert_eq!(estimate(&view), estimate_chat(&chat), "{body}");
            assert_eq!(view.max_output_tokens(), chat.max_output_tokens());
        }
    }

    /// The body's JSON with every character of every string written as a `\u` escape (valid
    /// JSON meaning the same: the bound's worst case, no `image_url` left to find).
    fn escape_all_strings(json: &str) -> String {
        let mut out = String::with_capacity(json.len() * 6);
        let mut chars = json.chars();
        let mut in_string = false;
        while let Some(c) = chars.next() {
            match (in_string, c) {
                (false, '"') => {
                    in_string = true;
                    out.push(c);
                }
                (false, _) => out.push(c),
                (true, '"') => {
                    in_string = false;
                    out.push(c);
                }
                (true, '\\') => {
                    out.push(c);
                    let e = chars.next().unwrap();
                    out.push(e);
                    if e == 'u' {
                        out.extend(chars.by_ref().take(4));
                    }
                }
                (true, _) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
        }
        out
    }

    mod bound {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{json, Value};

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z ]{0,40}",
                "\\PC{0,30}",
                Just("image_url".to_string()),
                Just(String::new())
            ]
        }

        fn part() -> impl Strategy<Value = Value> {
            // Image parts cost more tokens than their bytes: the bare ones weigh most.
            prop_oneof![
                2 => text().prop_map(|t| json!({"type": "text", "text": t})),
                1 => text().prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
                4 => Just(json!({"type": "image_url"})),
                1 => text().prop_map(|t| json!({"type": "input_audio", "input_audio": {"data": t}})),
            ]
        }

        fn message() -> impl Strategy<Value = Value> {
            let content = prop_oneof![
                Just(Value::Null),
                text().prop_map(Value::String),
                proptest::collection::vec(part(), 0..4).prop_map(Value::Array),
            ];
            let call = (text(), text()).prop_map(|(n, a)| {
                json!({"id": "c", "type": "function",
                "function": {"name": n, "arguments": a}})
            });
            (
                text(),
                proptest::option::of(text()),
                content,
                proptest::option::of(proptest::collection::vec(call, 0..3)),
            )
                .prop_map(|(role, name, content, calls)| {
                    let mut m = serde_json::Map::new();
                    m.insert("role".into(), Value::String(role));
                    if let Some(n) = name {
                        m.insert("name".into(), Value::String(n));
                    }
                    m.insert("content".into(), content);
                    if let Some(c) = calls {
                        m.insert("tool_calls".into(), Value::Array(c));
                    }
                    Value::Object(m)
                })
        }

        fn body() -> impl Strategy<Value = Value> {
            (
                proptest::collection::vec(message(), 0..6),
                proptest::option::of(text()),
                any::<bool>(),
            )
                .prop_map(|(messages, tool, json_format)| {
                    let mut b = json!({"model": "m", "messages": messages});
                    if let Some(t) = tool {
                        b["tools"] = json!([{"type": "function", "function": {"name": t, "parameters": {}}}]);
                    }
                    if json_format {
                        b["response_format"] = json!({"type": "json_object"});
                    }
                    b
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            #[test]
            fn the_bound_of_a_body_is_never_below_its_estimate(body in body(), escapes in 0..3) {
                warm_up();
                let mut text = serde_json::to_string(&body).unwrap();
                match escapes {
                    // The image parts' type spelled as cheaply as it can hide from a byte search.
                    1 => text = text.replace("\"image_url\"", "\"image\\u005furl\""),
                    2 => text = escape_all_strings(&text),
                    _ => {}
                }
                let view = Prompt::parse(text.as_bytes()).unwrap();
                let (estimate, bound) = (estimate(&view), bound_of_body(text.as_bytes()));
                prop_assert!(bound >= estimate, "bound {} < estimate {} for {}", bound, estimate, text);
            }
        }

        #[test]
        fn image_parts_hidden_from_the_byte_search_are_still_bounded() {
            warm_up();
            let body = format!(
                r#"{{"model":"m","messages":[{{"role":"u","content":[{}]}}]}}"#,
                [r#"{"type":"image\u005furl"}"#; 3].join(",")
            );
            let estimate = estimate(&Prompt::parse(body.as_bytes()).unwrap());
            assert_eq!(estimate, 3 + 3 + 1 + 3 * PER_IMAGE);
            assert!(bound_of_body(body.as_bytes()) >= estimate, "{body}");
        }

        #[test]
        fn the_bound_is_within_a_few_times_the_estimate_for_a_plain_chat() {
            warm_up();
            let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/body-json.json")).unwrap();
            let estimate = estimate(&Prompt::parse(&body).unwrap());
            let bound = bound_of_body(&body);
            assert!(bound >= estimate && bound <= 8 * estimate, "{bound} vs {estimate}");
        }
    }
}
