//! Runs the guardrail request stage (`guard::request::check`, policy `{ pii: redact, secrets:
//! redact }`) N times on one request body, each call after 16 MiB of other memory was touched
//! (as a gateway's request finds its caches after the rest of its work), for
//! `loadtest/guard-misses.sh`, which counts the calls' instructions and cache misses under
//! callgrind's cache simulation: the cold cost as a figure that repeats exactly, where timings on
//! a shared VM do not.
//!
//! `cargo run --release --example guard_stage -- N BODY_FILE [warm]` (`warm`: no eviction).

use std::hint::black_box;
use std::process::ExitCode;

use tollgate::api::Wire;
use tollgate::guard::{detect::Detector, inject::Scorer, policy::Policy, request, Guard};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(n), Some(path)) = (args.get(1).and_then(|a| a.parse::<usize>().ok()), args.get(2)) else {
        eprintln!("usage: guard_stage N BODY_FILE [warm]");
        return ExitCode::from(2);
    };
    let warm = args.get(3).is_some_and(|a| a == "warm");
    let body = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("guard_stage: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let guard = Guard {
        detector: Detector::builtin(),
        scorer: Scorer::shared(),
        presidio: None,
    };
    let policy = match serde_yaml::from_str("{ pii: redact, secrets: redact }")
        .map_err(|e| e.to_string())
        .and_then(|raw| Policy::resolve(&raw, guard.catalog(), false).map_err(|e| format!("{e:?}")))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("guard_stage: policy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut junk = vec![0u8; 16 << 20];
    for k in 0..n {
        if k > 0 && !warm {
            for i in (0..junk.len()).step_by(64) {
                junk[i] = junk[i].wrapping_add(1);
            }
        }
        black_box(request::check(
            &guard,
            &policy,
            Wire::OpenAi,
            black_box(&body),
            None,
            tollgate::guard::detect::Allowance::DEFAULT,
        ));
    }
    black_box(&junk);
    ExitCode::SUCCESS
}
