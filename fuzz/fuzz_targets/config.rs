//! A config file, as `tollgate run`, `tollgate check` and a reload read it: the YAML parse, the
//! strict typed parse with its key paths, and the compile into a snapshot with every
//! cross-reference checked. The environment is injected (every `${VAR}` is set, every name
//! resolves to loopback), so nothing outside the input decides the outcome.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tollgate::config::load_str;
use tollgate_fuzz::hermetic_env;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = std::str::from_utf8(data) else { return };
    let loaded = hermetic_env(|env| load_str(Path::new("/nonexistent/tollgate-fuzz/tollgate.yaml"), doc, env));
    if let Err(errors) = loaded {
        // What `tollgate check` prints.
        let _ = errors.to_string();
    }
});
