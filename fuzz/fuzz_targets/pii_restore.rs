//! The answer a client gets to a guarded request, on its way through the guardrails' observers:
//! the PII restorer (a vault holding values that need JSON escaping) and the output checks
//! (credentials and restricted patterns masked), each over a whole JSON answer (either dialect,
//! or an error body) and an SSE stream of either client dialect.
//!
//! Checked beyond "no panic": a stream's output does not depend on how it was cut; bytes that
//! cannot hold a placeholder leave the restorer unchanged, whole or streamed; and the detector's
//! prefilter finds what a scan of the whole text finds, on any text.

#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate::api::observe::ResponseObserver;
use tollgate::api::Wire;
use tollgate::guard::detect::Detector;
use tollgate::guard::output;
use tollgate::guard::redact::Vault;
use tollgate::guard::restore::{observer, restore_json, restore_text};
use tollgate_fuzz::pieces;

fn vault() -> Arc<Vault> {
    static V: OnceLock<Arc<Vault>> = OnceLock::new();
    Arc::clone(V.get_or_init(|| {
        // The request held `[EMAIL_1]` literally: the vault must not hand it out.
        let mut v = Vault::new(b"{\"content\":\"see [EMAIL_1]\"}");
        v.placeholder("EMAIL", "alice@example.com");
        v.placeholder("EMAIL", "bob@example.org");
        v.placeholder("PERSON", "Ann \"Q\" O'Neil\\");
        v.placeholder("CREDIT_CARD", "4111 1111 1111 1111");
        v.placeholder("custom id", "id\n\u{1F600}");
        Arc::new(v)
    }))
}

fn detector() -> &'static Detector {
    static D: OnceLock<Detector> = OnceLock::new();
    D.get_or_init(Detector::builtin)
}

fuzz_target!(|data: &[u8]| {
    let vault = vault();
    let untouchable = !data.contains(&b'[') && !data.windows(6).any(|w| w == b"\\u005b" || w == b"\\u005B");
    let whole = restore_json(data, &vault);
    if untouchable {
        assert_eq!(whole, None, "a body without a placeholder was rewritten");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = restore_text(text, &vault);
        let (mut fast, mut whole) = (Vec::new(), Vec::new());
        // Past its allowance (crafted text) a scan stops, and its callers refuse the text.
        if detector().scan(text, &mut fast).is_ok() {
            detector().scan_unfiltered(text, &mut whole);
            assert_eq!(fast, whole, "the prefilter changed what the detector finds");
        }
    }
    let cut = pieces(data, 40);
    for client in [Wire::OpenAi, Wire::Anthropic] {
        for complete in [true, false] {
            let all = stream(observer(Arc::clone(&vault), client), &[data], complete);
            let cut_up = stream(observer(Arc::clone(&vault), client), &cut, complete);
            assert_eq!(all, cut_up, "{client:?}: the restored stream depends on how it was cut");
            if untouchable && complete {
                assert_eq!(all, data, "{client:?}: a stream without a placeholder was changed");
            }
        }
        let (guard, policy) = tollgate_fuzz::guard();
        let checks = |stream| output::observer(Arc::clone(guard), policy, client, stream).map(|(o, _)| o);
        if let Some(mut whole) = checks(false) {
            let _ = whole.body(Bytes::copy_from_slice(data));
            let _ = whole.refusal();
        }
        if let (Some(a), Some(b)) = (checks(true), checks(true)) {
            assert_eq!(
                stream(a, &[data], true),
                stream(b, &cut, true),
                "{client:?}: the output checks depend on how the stream was cut"
            );
        }
    }
});

fn stream(mut o: Box<dyn ResponseObserver>, pieces: &[&[u8]], complete: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        out.extend_from_slice(&o.body(Bytes::copy_from_slice(p)));
    }
    out.extend_from_slice(&o.end(complete));
    out
}
