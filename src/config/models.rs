//! `GET /v1/models` and `GET /v1/models/{id}`: the servable model aliases, in OpenAI's list shape,
//! or in Anthropic's (`type: model`, `display_name`, `created_at`, `has_more`) for a client that
//! sends `anthropic-version` (the Anthropic SDKs do).

use bytes::Bytes;
use serde_json::{json, Value};

use super::{ModelAlias, Snapshot};
use crate::api::{ApiError, Wire};

/// Listed and found: "the configured model aliases that have an enabled provider among their own
/// targets" (README). A fallback's does not count: an alias listed as `gpt-4o` should be one a
/// client can get GPT-4o from, not only its stand-in. `hidden` ones are routable, never shown.
fn servable(m: &ModelAlias) -> bool {
    !m.hidden && m.targets.iter().any(|t| t.provider.is_enabled())
}

fn openai_entry(m: &ModelAlias, created: u64) -> Value {
    json!({"id": m.name, "object": "model", "created": created, "owned_by": "tollgate"})
}

fn anthropic_entry(m: &ModelAlias, created: u64) -> Value {
    json!({"type": "model", "id": m.name, "display_name": m.name, "created_at": crate::time::format_rfc3339_secs(created)})
}

/// The list. OpenAI clients get the body `list_body` made at config load.
pub fn list(snapshot: &Snapshot, client: Wire) -> Bytes {
    match client {
        Wire::OpenAi => snapshot.models_list_body.clone(),
        Wire::Anthropic => list_body(snapshot.models.values().map(AsRef::as_ref), snapshot.loaded_at, client),
    }
}

/// The list of the servable aliases among `models`, by name, as `created` at this time.
pub fn list_body<'a>(models: impl IntoIterator<Item = &'a ModelAlias>, created: u64, client: Wire) -> Bytes {
    let mut ms: Vec<&ModelAlias> = models.into_iter().filter(|m| servable(m)).collect();
    ms.sort_by(|a, b| a.name.cmp(&b.name));
    let body = match client {
        Wire::OpenAi => {
            let data: Vec<Value> = ms.iter().map(|m| openai_entry(m, created)).collect();
            json!({"object": "list", "data": data})
        }
        Wire::Anthropic => {
            let data: Vec<Value> = ms.iter().map(|m| anthropic_entry(m, created)).collect();
            let first = ms.first().map(|m| m.name.clone());
            let last = ms.last().map(|m| m.name.clone());
            json!({"data": data, "has_more": false, "first_id": first, "last_id": last})
        }
    };
    Bytes::from(body.to_string())
}

/// One model by alias; hidden and unservable aliases are not found, as in the list.
pub fn retrieve(snapshot: &Snapshot, id: &str, client: Wire) -> Result<Bytes, ApiError> {
    let m = snapshot
        .model(id)
        .filter(|m| servable(m))
        .ok_or_else(|| ApiError::ModelNotFound(id.to_string()))?;
    let v = match client {
        Wire::OpenAi => openai_entry(m, snapshot.loaded_at),
        Wire::Anthropic => anthropic_entry(m, snapshot.loaded_at),
    };
    Ok(Bytes::from(v.to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{load_str, Env};

    /// `gpt`'s own provider is disabled (no key) though its fallback is not; every provider of
    /// `dead` is disabled; `secret` is hidden.
    const DOC: &str = "\
providers:
  openai: { kind: openai, base_url: https://api.openai.com/v1, api_keys: [\"${OPENAI_API_KEY}\"] }
  local: { kind: openai_compatible, base_url: http://localhost:8000/v1, api_keys: [k] }
  off: { kind: openai_compatible, base_url: http://localhost:8001/v1, enabled: false }
models:
  gpt: { targets: [ { provider: openai, model: gpt-4o } ], fallbacks: [local-model] }
  local-model: { targets: [ { provider: local, model: llama } ] }
  mixed: { targets: [ { provider: off, model: a }, { provider: local, model: b } ] }
  dead: { targets: [ { provider: off, model: c } ] }
  secret: { hidden: true, targets: [ { provider: local, model: x } ] }
";

    fn ids(body: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(body).unwrap();
        let data = v["data"].as_array().unwrap();
        data.iter()
            .filter_map(|m| m["id"].as_str())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn list_and_retrieve_agree_on_what_is_servable() {
        let env = Env {
            var: &|_| None,
            resolve: &|_, port| Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        };
        let snap = load_str(Path::new("test.yaml"), DOC, &env).unwrap();
        for client in [Wire::OpenAi, Wire::Anthropic] {
            let listed = ids(&list(&snap, client));
            assert_eq!(listed, ["local-model", "mixed"], "{client:?}");
            for alias in ["gpt", "local-model", "mixed", "dead", "secret", "nope"] {
                match retrieve(&snap, alias, client) {
                    Ok(body) => {
                        assert!(
                            listed.iter().any(|l| l == alias),
                            "{client:?}: {alias} found, not listed"
                        );
                        let v: Value = serde_json::from_slice(&body).unwrap();
                        assert_eq!(v["id"], alias);
                    }
                    Err(e) => {
                        assert!(
                            !listed.iter().any(|l| l == alias),
                            "{client:?}: {alias} listed, not found"
                        );
                        assert_eq!(e, ApiError::ModelNotFound(alias.to_string()), "as for an unknown alias");
                    }
                }
            }
        }
        // The list made at load is the one `list_body` makes; `created` is the snapshot's load time.
        let openai = list_body(snap.models.values().map(AsRef::as_ref), snap.loaded_at, Wire::OpenAi);
        assert_eq!(snap.models_list_body, openai);
        let v: Value = serde_json::from_slice(&openai).unwrap();
        assert_eq!(v["data"][0]["created"], snap.loaded_at);
    }
}
