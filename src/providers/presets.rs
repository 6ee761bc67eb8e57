//! Presets of the OpenAI-compatible family: one adapter (`openai`), a base URL and the quirks
//! each server documents. `kind: openai_compatible` + `preset: groq` fills in the base URL and
//! the quirks; a provider's own `drop_fields` adds to them.

/// What an OpenAI-compatible server does not accept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Top-level request fields removed before sending (the server would reject them).
    pub drop_fields: Vec<String>,
    /// Remove `messages[].name`.
    pub drop_message_name: bool,
    /// The server returns one choice: `n > 1` is refused with a clear 400 instead of theirs.
    pub single_choice: bool,
}

impl Quirks {
    pub fn is_empty(&self) -> bool {
        self.drop_fields.is_empty() && !self.drop_message_name && !self.single_choice
    }
}

pub struct Preset {
    pub name: &'static str,
    pub base_url: &'static str,
    /// Local servers that need no key (Ollama, vLLM).
    pub key_optional: bool,
    pub drop_fields: &'static [&'static str],
    pub drop_message_name: bool,
    pub single_choice: bool,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "mistral",
        base_url: "https://api.mistral.ai/v1",
        key_optional: false,
        drop_fields: &[],
        drop_message_name: false,
        single_choice: false,
    },
    // console.groq.com/docs/openai: logprobs, logit_bias, top_logprobs and messages[].name are
    // rejected with a 400; n must be 1.
    Preset {
        name: "groq",
        base_url: "https://api.groq.com/openai/v1",
        key_optional: false,
        drop_fields: &["logprobs", "logit_bias", "top_logprobs"],
        drop_message_name: true,
        single_choice: true,
    },
    Preset {
        name: "deepseek",
        base_url: "https://api.deepseek.com/v1",
        key_optional: false,
        drop_fields: &[],
        drop_message_name: false,
        single_choice: false,
    },
    Preset {
        name: "together",
        base_url: "https://api.together.xyz/v1",
        key_optional: false,
        drop_fields: &[],
        drop_message_name: false,
        single_choice: false,
    },
    Preset {
        name: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        key_optional: false,
        drop_fields: &[],
        drop_message_name: false,
        single_choice: false,
    },
    Preset {
        name: "ollama",
        base_url: "http://127.0.0.1:11434/v1",
        key_optional: true,
        drop_fields: &[],
        drop_message_name: false,
        single_choice: false,
    },
    Preset {
        name: "vllm",
        base_url: "http://127.0.0.1:8000/v1",
        key_optional: true,
        drop_fields: &[],
        drop_message_name: false,
        single_choice: false,
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

pub fn names() -> String {
    PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

impl Preset {
    pub fn quirks(&self) -> Quirks {
        Quirks {
            drop_fields: self.drop_fields.iter().map(|s| s.to_string()).collect(),
            drop_message_name: self.drop_message_name,
            single_choice: self.single_choice,
        }
    }
}

/// Applies quirks to an OpenAI request body, returning the body to send (`None`: unchanged).
pub fn apply(quirks: &Quirks, body: &[u8]) -> Result<Option<serde_json::Map<String, serde_json::Value>>, String> {
    if quirks.is_empty() {
        return Ok(None);
    }
    let mentions = |field: &str| memchr::memmem::find(body, format!("\"{field}\"").as_bytes()).is_some();
    let touched = quirks.drop_fields.iter().any(|f| mentions(f))
        || (quirks.drop_message_name && mentions("name"))
        || (quirks.single_choice && mentions("n"));
    if !touched {
        return Ok(None);
    }
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(body) else {
        return Ok(None);
    };
    if quirks.single_choice && obj.get("n").and_then(serde_json::Value::as_u64).is_some_and(|n| n > 1) {
        return Err("this provider returns one choice; n must be 1".into());
    }
    for f in &quirks.drop_fields {
        if obj.remove(f).is_some() {
            tracing::debug!(field = %f, "dropping a field the provider rejects");
        }
    }
    if quirks.drop_message_name {
        if let Some(serde_json::Value::Array(msgs)) = obj.get_mut("messages") {
            for m in msgs.iter_mut().filter_map(serde_json::Value::as_object_mut) {
                m.remove("name");
            }
        }
    }
    Ok(Some(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groq_quirks_drop_fields_and_refuse_n() {
        let q = find("groq").unwrap().quirks();
        let body = br#"{"model":"m","logprobs":true,"n":1,"messages":[{"role":"user","name":"bob","content":"x"}]}"#;
        let out = apply(&q, body).unwrap().unwrap();
        assert!(out.get("logprobs").is_none());
        assert!(out["messages"][0].get("name").is_none());
        assert_eq!(out["messages"][0]["content"], "x");
        assert!(apply(&q, br#"{"model":"m","n":2,"messages":[]}"#).is_err());
        // Untouched bodies are not re-serialised.
        assert_eq!(apply(&q, br#"{"model":"m","messages":[]}"#).unwrap(), None);
        assert_eq!(apply(&Quirks::default(), body).unwrap(), None);
    }
}
