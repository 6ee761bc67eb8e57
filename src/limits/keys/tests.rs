use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::time::unix_ms_i64;

const HOUR_MS: i64 = 3_600_000;

fn url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("spend.db").display())
}

fn open(dir: &Path) -> KeyStore {
    KeyStore::open(Some(&url(dir)), Vec::new(), DEFAULT_POLL).unwrap()
}

fn spec(v: Value) -> KeySpec {
    serde_json::from_value(v).unwrap()
}

fn cfg_key(id: &str, secret: &str) -> (KeySpec, String) {
    (spec(json!({"id": id, "team": "cfg-team"})), secret.to_string())
}

fn call(store: &KeyStore, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    admin::handle(store, method, path, &body)
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn create_then_lookup_and_the_secret_is_never_stored_or_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (key, secret) = store
        .create(spec(json!({
            "name": "backend prod", "team": "backend", "user": "ana", "tier": "gold",
            "models": ["gpt-4o*", "claude-sonnet"], "metadata": {"env": "prod"},
            "limits": {"rpm": 100}
        })))
        .unwrap();
    assert!(secret.starts_with("tg-") && secret.len() == 3 + 43, "{secret}");
    assert!(key.id.starts_with("key_") && key.id.len() == 16);
    assert_eq!(key.source, KeySource::Api);

    let found = store.lookup(&secret, unix_ms_i64()).unwrap();
    assert_eq!(found.id, key.id);
    assert_eq!(found.team.as_deref(), Some("backend"));
    assert_eq!(found.user.as_deref(), Some("ana"));
    assert_eq!(found.tier.as_deref(), Some("gold"));
    assert_eq!(found.limits, json!({"rpm": 100}));
    assert_eq!(found.metadata.get("env").map(String::as_str), Some("prod"));
    assert!(found.allows_model("gpt-4o-mini") && found.allows_model("claude-sonnet"));
    assert!(!found.allows_model("claude-opus") && !found.allows_model("o1"));
    assert_eq!(store.ring().len(), 1);
    assert_eq!(
        store.lookup(&format!("{secret}x"), unix_ms_i64()).unwrap_err(),
        KeyError::Unknown
    );

    // Listing and showing never carry the secret or its hash.
    let hash = ring::KeyHash::of(&secret).to_hex();
    let listed = serde_json::to_string(&call(&store, "GET", "/admin/keys", Value::Null).1).unwrap();
    let shown = serde_json::to_string(&call(&store, "GET", &format!("/admin/keys/{}", key.id), Value::Null).1).unwrap();
    for text in [&listed, &shown] {
        assert!(text.contains(&key.id), "{text}");
        assert!(
            !text.contains(&secret) && !text.contains(&hash) && !text.contains("tg-"),
            "{text}"
        );
    }

    // The store keeps the hash only.
    let conn = rusqlite::Connection::open(dir.path().join("spend.db")).unwrap();
    let (stored_hash, dump): (String, String) = conn
        .query_row(
            "SELECT hash, id || COALESCE(name,'') || models || metadata || limits FROM virtual_keys",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(stored_hash, hash);
    assert!(!dump.contains(&secret));

    // A key with no models allows every model.
    let (_, any) = store.create(KeySpec::default()).unwrap();
    assert!(store.lookup(&any, unix_ms_i64()).unwrap().allows_model("anything"));
}

#[test]
fn unknown_revoked_and_expired_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = unix_ms_i64();
    assert_eq!(store.lookup("tg-nope", now).unwrap_err(), KeyError::Unknown);
    assert_eq!(store.lookup("", now).unwrap_err(), KeyError::Unknown);

    let expires = format_rfc3339(now + HOUR_MS);
    let (key, secret) = store.create(spec(json!({"id": "exp", "expires_at": expires}))).unwrap();
    assert_eq!(key.expires_ms, Some(parse_time(&expires).unwrap()));
    assert!(store.lookup(&secret, now).is_ok());
    assert_eq!(store.lookup(&secret, now + 2 * HOUR_MS).unwrap_err(), KeyError::Expired);

    let revoked = store.revoke("exp").unwrap();
    assert!(revoked.revoked && revoked.revoked_ms.is_some());
    assert_eq!(store.lookup(&secret, now).unwrap_err(), KeyError::Revoked);
    // Idempotent, and a revoked key stays revoked: no update, no rotation.
    assert!(store.revoke("exp").unwrap().revoked);
    assert_eq!(
        store.update("exp", KeyPatch::default()).unwrap_err(),
        AdminError::Revoked("exp".into())
    );
    assert_eq!(
        store.rotate("exp", Duration::ZERO).unwrap_err(),
        AdminError::Revoked("exp".into())
    );
    assert_eq!(store.lookup(&secret, now).unwrap_err(), KeyError::Revoked);

    // Every refusal is a 401 invalid_api_key that never echoes the key.
    for e in [KeyError::Unknown, KeyError::Revoked, KeyError::Expired] {
        assert_eq!((e.status(), e.code()), (401, "invalid_api_key"));
        assert!(!e.to_string().contains("tg-"));
    }
    assert_eq!(store.revoke("nope").unwrap_err(), AdminError::NotFound("nope".into()));
    // An expiry in the past is refused at creation.
    let past = format_rfc3339(now - HOUR_MS);
    assert!(matches!(
        store.create(spec(json!({"expires_at": past}))),
        Err(AdminError::InvalidBody { param: Some(p), .. }) if p == "expires_at"
    ));
}

#[test]
fn rotation_keeps_the_old_secret_until_the_grace_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_, old) = store.create(spec(json!({"id": "rot", "team": "t"}))).unwrap();
    let now = unix_ms_i64();
    let (key, new) = store.rotate("rot", Duration::from_secs(3600)).unwrap();
    assert_ne!(old, new);
    let until = key.prev_valid_until_ms.unwrap();
    assert!((now + HOUR_MS..now + HOUR_MS + 60_000).contains(&until));
    assert_eq!(store.ring().len(), 1);

    for secret in [&old, &new] {
        assert_eq!(store.lookup(secret, now).unwrap().id, "rot");
    }
    assert_eq!(store.lookup(&old, until).unwrap_err(), KeyError::Revoked);
    assert_eq!(store.lookup(&new, until).unwrap().team.as_deref(), Some("t"));

    // Without a grace the old secret stops at once (and so does the one still in its grace).
    let (key, newest) = store.rotate("rot", Duration::ZERO).unwrap();
    assert_eq!(key.prev_valid_until_ms, None);
    assert_eq!(store.lookup(&new, now).unwrap_err(), KeyError::Unknown);
    assert_eq!(store.lookup(&old, now).unwrap_err(), KeyError::Unknown);
    assert!(store.lookup(&newest, now).is_ok());
}

#[test]
fn update_changes_limits_models_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_, secret) = store
        .create(spec(
            json!({"id": "u", "name": "n", "team": "t", "models": ["gpt-4o"], "limits": {"rpm": 10}}),
        ))
        .unwrap();
    let patch: KeyPatch = serde_json::from_value(json!({
        "limits": {"rpm": 20, "tpm": 1000}, "models": ["claude-*"], "metadata": {"a": "b"}, "name": null
    }))
    .unwrap();
    let updated = store.update("u", patch).unwrap();
    assert_eq!(updated.limits, json!({"rpm": 20, "tpm": 1000}));
    assert_eq!(updated.name, None);
    assert_eq!(updated.team.as_deref(), Some("t"));

    // The request path sees the new version at once.
    let seen = store.lookup(&secret, unix_ms_i64()).unwrap();
    assert_eq!(seen.limits, json!({"rpm": 20, "tpm": 1000}));
    let parsed = seen.parsed_limits.as_deref().unwrap();
    assert_eq!(
        (parsed.rpm, parsed.tpm),
        (Some(20), Some(1000)),
        "parsed with the version"
    );
    assert!(seen.allows_model("claude-sonnet") && !seen.allows_model("gpt-4o"));
    assert_eq!(seen.updated_ms, updated.updated_ms);
    assert_eq!(store.get("u").unwrap().metadata.len(), 1);

    // An absent field is unchanged; null clears limits.
    let patch: KeyPatch = serde_json::from_value(json!({"limits": null})).unwrap();
    let cleared = store.update("u", patch).unwrap();
    assert_eq!(cleared.limits, Value::Null);
    assert!(cleared.parsed_limits.is_none());
    assert_eq!(cleared.models, vec!["claude-*".to_string()]);

    let bad: KeyPatch = serde_json::from_value(json!({"limits": 5})).unwrap();
    assert!(matches!(
        store.update("u", bad),
        Err(AdminError::InvalidBody { param: Some(p), .. }) if p == "limits"
    ));
    assert_eq!(
        store.update("nope", KeyPatch::default()).unwrap_err(),
        AdminError::NotFound("nope".into())
    );

    // The limiter's own check, when given, runs on admin writes.
    let store = store.with_limits_check(Box::new(|v| match v.get("rpm") {
        Some(Value::Number(_)) | None => Ok(()),
        Some(_) => Err("limits.rpm must be a number".into()),
    }));
    let bad: KeyPatch = serde_json::from_value(json!({"limits": {"rpm": "many"}})).unwrap();
    match store.update("u", bad) {
        Err(AdminError::InvalidBody { param, message }) => {
            assert_eq!(param.as_deref(), Some("limits"));
            assert!(message.contains("rpm must be a number"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(store.create(spec(json!({"limits": {"rpm": "x"}}))).is_err());
    assert!(store.create(spec(json!({"limits": {"rpm": 1}}))).is_ok());
}

#[test]
fn config_keys_are_read_only_and_replaced_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(
        Some(&url(dir.path())),
        vec![cfg_key("cfg1", "sk-config-one-0123456789")],
        DEFAULT_POLL,
    )
    .unwrap();
    let k = store.lookup("sk-config-one-0123456789", unix_ms_i64()).unwrap();
    assert_eq!((k.id.as_str(), k.source), ("cfg1", KeySource::Config));
    assert_eq!(store.revoke("cfg1").unwrap_err(), AdminError::ReadOnly("cfg1".into()));
    assert_eq!(
        store.rotate("cfg1", Duration::ZERO).unwrap_err(),
        AdminError::ReadOnly("cfg1".into())
    );
    assert_eq!(
        store.update("cfg1", KeyPatch::default()).unwrap_err(),
        AdminError::ReadOnly("cfg1".into())
    );
    assert_eq!(
        store.create(spec(json!({"id": "cfg1"}))).unwrap_err(),
        AdminError::Duplicate("cfg1".into())
    );
    assert_eq!(store.get("cfg1").unwrap().source, KeySource::Config);

    // Config keys are never written to the store.
    let conn = rusqlite::Connection::open(dir.path().join("spend.db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM virtual_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);

    // A stored key whose id a new config key takes is shadowed: the config wins.
    let (_, api_secret) = store.create(spec(json!({"id": "shared"}))).unwrap();
    store
        .set_config_keys(vec![
            cfg_key("cfg2", "sk-config-two-0123456789"),
            cfg_key("shared", "sk-config-shared-012345"),
        ])
        .unwrap();
    let now = unix_ms_i64();
    assert_eq!(
        store.lookup("sk-config-one-0123456789", now).unwrap_err(),
        KeyError::Unknown
    );
    assert_eq!(store.lookup("sk-config-two-0123456789", now).unwrap().id, "cfg2");
    assert_eq!(store.lookup(&api_secret, now).unwrap_err(), KeyError::Unknown);
    assert_eq!(store.get("shared").unwrap().source, KeySource::Config);
    assert_eq!(store.list().unwrap().len(), 2);

    // A bad reload names every problem and changes nothing.
    let err = store
        .set_config_keys(vec![
            (spec(json!({"team": "x"})), "sk-no-id-0123456789".into()),
            cfg_key("dup", "sk-a-0123456789abcdef"),
            cfg_key("dup", "sk-b-0123456789abcdef"),
            cfg_key("empty", ""),
            (
                spec(json!({"id": "lim", "limits": [1]})),
                "sk-c-0123456789abcdef".into(),
            ),
            (
                spec(json!({"id": "lim2", "limits": {"rpm": "many"}})),
                "sk-d-0123456789abcdef".into(),
            ),
        ])
        .unwrap_err();
    for part in [
        "id is required",
        "duplicate id",
        "(empty): the key is empty",
        "limits must be an object",
        "(lim2): limits: invalid type",
    ] {
        assert!(err.contains(part), "{err}");
    }
    assert!(store.lookup("sk-config-two-0123456789", now).is_ok());

    // Back to the old config: the stored key shows again.
    store.set_config_keys(Vec::new()).unwrap();
    assert_eq!(store.lookup(&api_secret, now).unwrap().id, "shared");
}

#[test]
fn without_a_store_only_config_keys_exist() {
    let store = KeyStore::open(None, vec![cfg_key("c", "sk-config-only-01234567")], DEFAULT_POLL).unwrap();
    assert!(store.lookup("sk-config-only-01234567", unix_ms_i64()).is_ok());
    assert_eq!(store.create(KeySpec::default()).unwrap_err(), AdminError::NoStore);
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(store.get("x").unwrap_err(), AdminError::NotFound("x".into()));
    assert!(store.sync_now().is_ok());
    let (status, body) = call(&store, "POST", "/admin/keys", json!({}));
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "key_store_not_configured");
}

#[test]
fn revocation_on_one_node_reaches_the_other() {
    let dir = tempfile::tempdir().unwrap();
    // Node B never polls on its own in the first half: only `sync_now`.
    let a = open(dir.path());
    let b = KeyStore::open(Some(&url(dir.path())), Vec::new(), Duration::from_secs(3600)).unwrap();
    let (_, secret) = a.create(spec(json!({"id": "k1"}))).unwrap();
    assert_eq!(b.lookup(&secret, unix_ms_i64()).unwrap_err(), KeyError::Unknown);
    b.sync_now().unwrap();
    assert!(b.lookup(&secret, unix_ms_i64()).is_ok());
    a.revoke("k1").unwrap();
    assert!(b.lookup(&secret, unix_ms_i64()).is_ok());
    b.sync_now().unwrap();
    assert_eq!(b.lookup(&secret, unix_ms_i64()).unwrap_err(), KeyError::Revoked);

    // With the poll thread (default period): within a second, without being asked.
    let c = open(dir.path());
    let (_, s2) = a.create(spec(json!({"id": "k2"}))).unwrap();
    let seen = wait_until(Duration::from_secs(3), || c.lookup(&s2, unix_ms_i64()).is_ok());
    assert!(seen.is_some(), "node C never saw the new key");
    a.revoke("k2").unwrap();
    let gone = wait_until(Duration::from_secs(3), || c.lookup(&s2, unix_ms_i64()).is_err());
    let gone = gone.expect("node C still accepts a revoked key");
    assert!(gone < Duration::from_millis(1500), "revocation took {gone:?}");

    // A rotation on A: C picks up the new secret and keeps the old one for the grace.
    let (_, s3) = a.create(spec(json!({"id": "k3"}))).unwrap();
    let (_, s3b) = a.rotate("k3", Duration::from_secs(60)).unwrap();
    assert!(wait_until(Duration::from_secs(3), || c.lookup(&s3b, unix_ms_i64()).is_ok()).is_some());
    assert!(c.lookup(&s3, unix_ms_i64()).is_ok());
    assert_eq!(c.lookup(&s3, unix_ms_i64() + 61_000).unwrap_err(), KeyError::Revoked);
    // And the admin view on C reads through to the store.
    assert_eq!(c.list().unwrap().len(), 3);
}

#[test]
fn migrations_add_the_keys_table_beside_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let conn = rusqlite::Connection::open(dir.path().join("spend.db")).unwrap();
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM schema_version ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    drop(store);
    // Reopening changes nothing, and the keys survive.
    let store = open(dir.path());
    store.create(spec(json!({"id": "kept"}))).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.get("kept").unwrap().id, "kept");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 6);
}

#[test]
fn admin_api_statuses_and_error_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(
        Some(&url(dir.path())),
        vec![cfg_key("cfg", "sk-config-key-0123456789")],
        DEFAULT_POLL,
    )
    .unwrap();
    let code = |r: &(u16, Value)| r.1["error"]["code"].as_str().unwrap_or_default().to_string();
    let param = |r: &(u16, Value)| r.1["error"]["param"].clone();

    let created = call(
        &store,
        "POST",
        "/admin/keys",
        json!({"id": "app", "team": "web", "limits": {"rpm": 5}}),
    );
    assert_eq!(created.0, 201, "{}", created.1);
    let secret = created.1["secret"].as_str().unwrap().to_string();
    assert_eq!(created.1["id"], "app");
    assert_eq!(created.1["revoked"], false);
    assert!(store.lookup(&secret, unix_ms_i64()).is_ok());

    let dup = call(&store, "POST", "/admin/keys", json!({"id": "app"}));
    assert_eq!((dup.0, code(&dup)), (409, "duplicate_key".into()));
    let bad_json = admin::handle(&store, "POST", "/admin/keys", b"{not json");
    assert_eq!((bad_json.0, code(&bad_json)), (400, "invalid_request".into()));
    let unknown_field = call(&store, "POST", "/admin/keys", json!({"colour": "red"}));
    assert_eq!((unknown_field.0, param(&unknown_field)), (400, json!("colour")));
    let wrong_type = call(&store, "POST", "/admin/keys", json!({"models": "gpt-4o"}));
    assert_eq!((wrong_type.0, param(&wrong_type)), (400, json!("models")));
    let bad_id = call(&store, "POST", "/admin/keys", json!({"id": "no spaces"}));
    assert_eq!((bad_id.0, param(&bad_id)), (400, json!("id")));
    let bad_time = call(&store, "POST", "/admin/keys", json!({"expires_at": "soon"}));
    assert_eq!((bad_time.0, param(&bad_time)), (400, json!("expires_at")));
    let empty_model = call(&store, "POST", "/admin/keys", json!({"models": ["ok", ""]}));
    assert_eq!((empty_model.0, param(&empty_model)), (400, json!("models[1]")));
    // An empty body creates a key with defaults and a generated id.
    let generated = admin::handle(&store, "POST", "/admin/keys", b"");
    assert_eq!(generated.0, 201);
    assert!(generated.1["id"].as_str().unwrap().starts_with("key_"));

    let list = call(&store, "GET", "/admin/keys/", Value::Null);
    assert_eq!(list.0, 200);
    assert_eq!(list.1["object"], "list");
    assert_eq!(list.1["data"].as_array().unwrap().len(), 3);
    assert!(!list.1.to_string().contains("secret\""));

    let shown = call(&store, "GET", "/admin/keys/app", Value::Null);
    assert_eq!((shown.0, shown.1["limits"].clone()), (200, json!({"rpm": 5})));
    assert!(shown.1.get("secret").is_none());
    let missing = call(&store, "GET", "/admin/keys/nope", Value::Null);
    assert_eq!((missing.0, code(&missing)), (404, "key_not_found".into()));
    assert_eq!(missing.1["error"]["type"], "not_found_error");

    let patched = call(
        &store,
        "PATCH",
        "/admin/keys/app",
        json!({"limits": {"rpm": 50}, "tier": "gold"}),
    );
    assert_eq!((patched.0, patched.1["limits"]["rpm"].clone()), (200, json!(50)));
    assert_eq!(patched.1["tier"], "gold");
    let patch_team = call(&store, "PATCH", "/admin/keys/app", json!({"team": "other"}));
    assert_eq!((patch_team.0, param(&patch_team)), (400, json!("team")));
    let patch_limits = call(&store, "PATCH", "/admin/keys/app", json!({"limits": "lots"}));
    assert_eq!((patch_limits.0, param(&patch_limits)), (400, json!("limits")));

    let rotated = call(&store, "POST", "/admin/keys/app/rotate", json!({"grace": "10m"}));
    assert_eq!(rotated.0, 200, "{}", rotated.1);
    let new_secret = rotated.1["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert!(rotated.1["previous_secret_valid_until"].is_string());
    assert!(store.lookup(&secret, unix_ms_i64()).is_ok() && store.lookup(new_secret, unix_ms_i64()).is_ok());
    let bad_grace = call(&store, "POST", "/admin/keys/app/rotate", json!({"grace": "a while"}));
    assert_eq!((bad_grace.0, param(&bad_grace)), (400, json!("grace")));
    let no_body_rotate = admin::handle(&store, "POST", "/admin/keys/app/rotate", b"");
    assert_eq!(no_body_rotate.0, 200);
    assert!(no_body_rotate.1["previous_secret_valid_until"].is_null());

    let revoked = call(&store, "DELETE", "/admin/keys/app", Value::Null);
    assert_eq!((revoked.0, revoked.1["revoked"].clone()), (200, json!(true)));
    assert!(revoked.1["revoked_at"].is_string());
    let after = call(&store, "PATCH", "/admin/keys/app", json!({"name": "x"}));
    assert_eq!((after.0, code(&after)), (409, "key_revoked".into()));

    let ro = call(&store, "DELETE", "/admin/keys/cfg", Value::Null);
    assert_eq!((ro.0, code(&ro)), (409, "read_only_key".into()));
    let ro_rotate = call(&store, "POST", "/admin/keys/cfg/rotate", Value::Null);
    assert_eq!((ro_rotate.0, code(&ro_rotate)), (409, "read_only_key".into()));
    let cfg_shown = call(&store, "GET", "/admin/keys/cfg", Value::Null);
    assert_eq!((cfg_shown.0, cfg_shown.1["source"].clone()), (200, json!("config")));

    for (method, path) in [
        ("PUT", "/admin/keys"),
        ("DELETE", "/admin/keys"),
        ("POST", "/admin/keys/app"),
        ("GET", "/admin/keys/app/rotate"),
    ] {
        let r = call(&store, method, path, Value::Null);
        assert_eq!((r.0, code(&r)), (405, "method_not_allowed".into()), "{method} {path}");
    }
    for path in ["/admin/keys/a/b/c", "/admin/keysx", "/admin/other"] {
        let r = call(&store, "GET", path, Value::Null);
        assert_eq!((r.0, code(&r)), (404, "unknown_url".into()), "{path}");
    }
    // Every error body is OpenAI-shaped.
    for r in [&dup, &bad_json, &missing, &ro] {
        let e = &r.1["error"];
        assert!(
            e["message"].is_string() && e["type"].is_string() && e["code"].is_string(),
            "{}",
            r.1
        );
        assert!(e.as_object().unwrap().contains_key("param"));
    }
}

#[test]
fn handles_are_shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<KeyStore>();
    send_sync::<KeyRing>();
    send_sync::<VirtualKey>();
}

#[test]
fn presented_key_reads_bearer_then_x_api_key() {
    assert_eq!(presented_key(Some("Bearer tg-abc"), None), Some("tg-abc"));
    assert_eq!(presented_key(Some("bearer  tg-abc "), Some("other")), Some("tg-abc"));
    assert_eq!(presented_key(None, Some(" tg-x ")), Some("tg-x"));
    assert_eq!(presented_key(Some("Basic Zm9v"), Some("tg-y")), Some("tg-y"));
    assert_eq!(presented_key(Some("Bearer "), None), None);
    assert_eq!(presented_key(None, None), None);
}

#[test]
fn placeholders_match_whole_keys_only() {
    let list = vec!["unused".to_string(), "sk-none".to_string()];
    assert!(is_placeholder("unused", &list) && is_placeholder("sk-none", &list));
    for other in ["unuse", "unused2", "UNUSED", "", "sk-non"] {
        assert!(!is_placeholder(other, &list), "{other}");
    }
    assert!(!is_placeholder("unused", &[]));
}

#[test]
fn key_hash_equality_and_hex() {
    let a = ring::KeyHash::of("tg-one");
    let b = ring::KeyHash::of("tg-one");
    let c = ring::KeyHash::of("tg-two");
    assert!(a == b && a != c);
    assert!(ring::KeyHash::from_hex(&a.to_hex()).is_some_and(|h| h == a));
    assert!(ring::KeyHash::from_hex("zz").is_none());
}

#[test]
fn an_unreadable_row_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_, good) = store.create(spec(json!({"id": "good"}))).unwrap();
    let (_, bad) = store.create(spec(json!({"id": "bad"}))).unwrap();
    let (_, bad_limits) = store.create(spec(json!({"id": "bad-limits"}))).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("spend.db")).unwrap();
    conn.execute(
        "UPDATE virtual_keys SET models = 'not json', updated_ms = updated_ms + 1 WHERE id = 'bad'",
        [],
    )
    .unwrap();
    // Limits the limiter cannot read: the key is refused, never served without limits.
    conn.execute(
        "UPDATE virtual_keys SET limits = '{\"rpm\": \"x\"}', updated_ms = updated_ms + 1 WHERE id = 'bad-limits'",
        [],
    )
    .unwrap();
    store.sync_now().unwrap();
    assert!(store.lookup(&good, unix_ms_i64()).is_ok());
    assert_eq!(store.lookup(&bad, unix_ms_i64()).unwrap_err(), KeyError::Unknown);
    assert_eq!(store.lookup(&bad_limits, unix_ms_i64()).unwrap_err(), KeyError::Unknown);
    assert!(matches!(store.get("bad"), Err(AdminError::Internal(_))));
}
