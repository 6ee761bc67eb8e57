//! Dialect-neutral deterministic content of the mock provider: the text pieces a response is made
//! of, token counts of plain text and token-id inputs, and embedding vectors. Every dialect
//! (OpenAI now; Anthropic, Gemini, Bedrock later) builds its wire format from these, so the same
//! directives give the same text, numbers and vectors whatever the dialect.
//!
//! * Pieces: piece 0 is the first word, every later piece is a space followed by a word, cycling
//!   through `This is the Tollgate mock.` (or repeating the `text=` word).
//! * `text_tokens(s) = ceil(chars(s) / 4)` (Unicode scalar values); a token-id array counts its
//!   length.
//! * Embeddings: a splitmix64 stream seeded by the FNV-1a hash of the input (tagged text, its
//!   letters and digits lower-cased, or token ids), mapped to [-1, 1) and L2-normalised.

const DEFAULT_FIRST: &str = "This";
const DEFAULT_LATER: [&str; 5] = [" This", " is", " the", " Tollgate", " mock."];

/// `ceil(chars(s) / 4)`.
pub fn text_tokens(s: &str) -> u64 {
    (s.chars().count() as u64).div_ceil(4)
}

/// One completions prompt or embeddings input item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    Text(&'a str),
    Tokens(Vec<u64>),
}

/// Prompt tokens of completions prompts or embeddings inputs.
pub fn input_tokens(inputs: &[Input<'_>]) -> u64 {
    inputs
        .iter()
        .map(|i| match i {
            Input::Text(s) => text_tokens(s),
            Input::Tokens(t) => t.len() as u64,
        })
        .sum()
}

/// The content pieces of a response: the default sentence's words, one repeated word, or given
/// pieces (an `echo`, see `echo`).
#[derive(Debug, Clone)]
pub struct Pieces {
    kind: PieceKind,
}

#[derive(Debug, Clone)]
enum PieceKind {
    Sentence,
    /// The word, and the word after a space.
    Word(String, String),
    Given(Vec<String>),
}

impl Pieces {
    pub fn new(word: Option<&str>) -> Self {
        Pieces {
            kind: match word {
                Some(w) => PieceKind::Word(w.to_string(), format!(" {w}")),
                None => PieceKind::Sentence,
            },
        }
    }

    /// Exactly these pieces (past the last one: empty).
    pub fn given(pieces: Vec<String>) -> Self {
        Pieces {
            kind: PieceKind::Given(pieces),
        }
    }

    /// Piece `i` (0-based): no leading space on the first, one on every later piece.
    pub fn get(&self, i: u32) -> &str {
        match (&self.kind, i) {
            (PieceKind::Given(p), i) => p.get(i as usize).map_or("", String::as_str),
            (PieceKind::Word(first, _), 0) => first,
            (PieceKind::Word(_, later), _) => later,
            (PieceKind::Sentence, 0) => DEFAULT_FIRST,
            (PieceKind::Sentence, i) => DEFAULT_LATER[i as usize % DEFAULT_LATER.len()],
        }
    }
}

/// The full content of a response with `chunks` pieces.
pub fn completion_text(chunks: u32, word: Option<&str>) -> String {
    let p = Pieces::new(word);
    (0..chunks).map(|i| p.get(i)).collect()
}

fn fnv1a(input: &Input<'_>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match input {
        Input::Text(s) => {
            // Case and everything but letters and digits do not count: texts that differ only
            // there embed alike (the semantic cache's plumbing tests ask paraphrases so).
            eat(b"s");
            for c in s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase) {
                let mut buf = [0u8; 4];
                eat(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        Input::Tokens(t) => {
            eat(b"t");
            for id in t {
                eat(&id.to_le_bytes());
            }
        }
    }
    h
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The deterministic, L2-normalised embedding of `input` with `dims` components.
pub fn embedding_vector(input: &Input<'_>, dims: usize) -> Vec<f32> {
    let mut state = fnv1a(input);
    let raw: Vec<f64> = (0..dims)
        .map(|_| (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        raw.iter().map(|x| (x / norm) as f32).collect()
    } else {
        let mut v = vec![0.0; dims];
        if let Some(first) = v.first_mut() {
            *first = 1.0;
        }
        v
    }
}

/// OpenAI's base64 embedding encoding (the gateway's own helper).
pub fn base64_f32(v: &[f32]) -> String {
    crate::api::embeddings::base64_f32(v.iter().copied())
}
