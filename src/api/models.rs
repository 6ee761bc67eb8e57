//! `GET /v1/models` and `GET /v1/models/{id}`: the servable model aliases, in OpenAI's list shape,
//! or in Anthropic's (`type: model`, `display_name`, `created_at`, `has_more`) for a client that
//! sends `anthropic-version` (the Anthropic SDKs do).

use bytes::Bytes;
use serde_json::{json, Value};

use super::ApiError;
use crate::config::{ModelAlias, Snapshot};
use crate::providers::Wire;

fn servable(m: &ModelAlias) -> bool {
    !m.hidden && !m.plan.is_empty()
}

fn openai_entry(m: &ModelAlias, created: u64) -> Value {
    json!({"id": m.name, "object": "model", "created": created, "owned_by": "tollgate"})
}

fn anthropic_entry(m: &ModelAlias, created: u64) -> Value {
    json!({"type": "model", "id": m.name, "display_name": m.name, "created_at": crate::time::format_rfc3339_secs(created)})
}

/// The list. OpenAI clients get the body precomputed at config load.
pub fn list(snapshot: &Snapshot, client: Wire) -> Bytes {
    match client {
        Wire::OpenAi => snapshot.models_list_body.clone(),
        Wire::Anthropic => {
            let mut ms: Vec<&std::sync::Arc<ModelAlias>> = snapshot.models.values().filter(|m| servable(m)).collect();
            ms.sort_by(|a, b| a.name.cmp(&b.name));
            let data: Vec<Value> = ms.iter().map(|m| anthropic_entry(m, snapshot.loaded_at)).collect();
            let first = ms.first().map(|m| m.name.clone());
            let last = ms.last().map(|m| m.name.clone());
            Bytes::from(json!({"data": data, "has_more": false, "first_id": first, "last_id": last}).to_string())
        }
    }
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
