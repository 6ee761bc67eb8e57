//! `GET /v1/models` and `GET /v1/models/{id}`: the servable model aliases, in OpenAI's list shape,
//! or in Anthropic's (`type: model`, `display_name`, `created_at`, `has_more`) for a client that
//! sends `anthropic-version` (the Anthropic SDKs do).

use bytes::Bytes;
use serde_json::{json, Value};

use super::ApiError;
use crate::api::Wire;
use crate::config::{ModelAlias, Snapshot};

fn servable(m: &ModelAlias) -> bool {
    !m.hidden && !m.plan.is_empty()
}

fn openai_entry(m: &ModelAlias, created: u64) -> Value {
    json!({"id": m.name, "object": "model", "created": created, "owned_by": "tollgate"})
}

fn anthropic_entry(m: &ModelAlias, created: u64) -> Value {
    json!({"type": "model", "id": m.name, "display_name": m.name, "created_at": rfc3339(created)})
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

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_262_964), "2026-11-21T12:09:24Z");
    }
}
