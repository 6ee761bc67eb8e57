use super::*;

fn key(n: u8) -> Key {
    Key([n; 32])
}

fn entry(tenant: &str, model: &str, now: Instant, ttl: u64, stale: u64, body: &str) -> Arc<Entry> {
    Arc::new(Entry {
        tenant: tenant.into(),
        model: model.into(),
        stored_at: now,
        fresh_until: now + Duration::from_secs(ttl),
        keep_until: now + Duration::from_secs(ttl + stale),
        body: Bytes::from(body.to_owned()),
        cost_nanousd: 42,
    })
}

#[test]
fn an_entry_is_fresh_then_stale_then_gone() {
    let store = Local::new(1 << 20);
    let t0 = Instant::now();
    store.put(key(1), entry("team:a", "gpt", t0, 60, 30, "answer"));
    match store.get(&key(1), t0) {
        Lookup::Fresh(e) => assert_eq!(&e.body[..], b"answer"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.get(&key(1), t0 + Duration::from_secs(61)),
        Lookup::Stale(_)
    ));
    assert!(matches!(store.get(&key(1), t0 + Duration::from_secs(91)), Lookup::Miss));
    assert!(matches!(store.get(&key(2), t0), Lookup::Miss));
}

#[test]
fn a_replaced_entry_keeps_its_own_deadline_not_the_old_one() {
    // moka's default keeps an updated entry's old expiry; the store sets the new one. The old
    // entry is kept one second: past that, only the new deadline keeps the key.
    let store = Local::new(1 << 20);
    let t0 = Instant::now();
    store.put(key(1), entry("team:a", "gpt", t0, 1, 0, "old"));
    store.put(key(1), entry("team:a", "gpt", t0, 600, 0, "new"));
    std::thread::sleep(Duration::from_millis(1200));
    store.stats();
    match store.get(&key(1), Instant::now()) {
        Lookup::Fresh(e) => assert_eq!(&e.body[..], b"new"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn purges_remove_what_they_name_and_nothing_else() {
    let store = Local::new(1 << 20);
    let t0 = Instant::now();
    store.put(key(1), entry("team:a", "gpt", t0, 60, 0, "1"));
    store.put(key(2), entry("team:a", "claude", t0, 60, 0, "2"));
    store.put(key(3), entry("team:b", "gpt", t0, 60, 0, "3"));
    store.put(key(4), entry("team:b", "claude", t0, 60, 0, "4"));
    let present = |s: &Local| {
        (1..=4)
            .map(|n| !matches!(s.get(&key(n), t0), Lookup::Miss))
            .collect::<Vec<_>>()
    };
    store.purge(&Purge::Key(key(4)));
    assert_eq!(present(&store), [true, true, true, false]);
    store.purge(&Purge::Tenant("team:a".into()));
    assert_eq!(present(&store), [false, false, true, false]);
    store.put(key(1), entry("team:a", "gpt", t0, 60, 0, "1"));
    store.purge(&Purge::Model("gpt".into()));
    assert_eq!(present(&store), [false, false, false, false]);
    store.put(key(2), entry("team:a", "claude", t0, 60, 0, "2"));
    store.purge(&Purge::All);
    assert_eq!(present(&store), [false, false, false, false]);
}

#[test]
fn the_store_stays_within_its_bytes_and_refuses_an_entry_larger_than_itself() {
    let cap = 64 * 1024;
    let store = Local::new(cap);
    let t0 = Instant::now();
    let body = "x".repeat(1000);
    for n in 0..=255u8 {
        store.put(key(n), entry("team:a", "gpt", t0, 60, 0, &body));
    }
    let stats = store.stats();
    assert!(stats.bytes <= cap, "{stats:?}");
    assert!(stats.entries > 0 && stats.entries < 256, "{stats:?}");
    let huge = Local::new(cap);
    huge.put(key(1), entry("team:a", "gpt", t0, 60, 0, &"y".repeat(100 * 1024)));
    assert_eq!(huge.stats().entries, 0);
    assert!(matches!(huge.get(&key(1), t0), Lookup::Miss));
}

#[test]
fn debug_never_prints_a_body() {
    let e = entry("team:a", "gpt", Instant::now(), 1, 0, "the secret answer");
    let d = format!("{e:?}");
    assert!(!d.contains("secret") && d.contains("bytes"), "{d}");
}
