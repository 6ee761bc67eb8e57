#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;
use crate::api::chat::{CompletionDetails, PromptDetails, Usage};

fn price(family: &str, model: &str) -> Price {
    *PriceTable::builtin()
        .lookup(family, model)
        .unwrap_or_else(|| panic!("{family}/{model} is not priced"))
}

/// OpenAI-shaped usage: `prompt` includes `cached`, `completion` includes `reasoning`.
fn openai_usage(prompt: u64, cached: u64, completion: u64, reasoning: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: Some(PromptDetails {
            cached_tokens: cached,
            cache_write_tokens: 0,
        }),
        completion_tokens_details: Some(CompletionDetails {
            reasoning_tokens: reasoning,
        }),
    }
}

fn entry(provider: &str, model: &str, input: f64, output: f64) -> PriceEntry {
    PriceEntry {
        provider: provider.into(),
        model: model.into(),
        input,
        output,
        cached_input: None,
        cache_write: None,
        above: None,
    }
}

// ---------------------------------------------------------------- bills

#[test]
fn openai_gpt4o_with_cached_tokens() {
    // gpt-4o: $2.50 in, $1.25 cached, $10 out per 1M.
    // 6_000 uncached × 2.50 = 15_000; 4_000 cached × 1.25 = 5_000; 1_000 out × 10 = 10_000
    // = 30_000 µUSD = 30_000_000 nanos ($0.03).
    let u = openai_usage(10_000, 4_000, 1_000, 0);
    assert_eq!(price("openai", "gpt-4o").cost_nanos(&u), 30_000_000);
}

#[test]
fn openai_o3_mini_with_cached_and_reasoning_tokens() {
    // o3-mini: $1.10 in, $0.55 cached, $4.40 out. Reasoning (2_500) is inside completion (3_000).
    // 976 uncached × 1.10 = 1_073.6; 1_024 cached × 0.55 = 563.2; 3_000 out × 4.40 = 13_200
    // = 14_836.8 µUSD = 14_836_800 nanos.
    let u = openai_usage(2_000, 1_024, 3_000, 2_500);
    assert_eq!(price("openai", "o3-mini").cost_nanos(&u), 14_836_800);
}

#[test]
fn anthropic_with_cache_read_and_write() {
    // claude-sonnet-4-5: $3 in, $0.30 read, $3.75 write (5m), $15 out.
    // 1_000 × 3 = 3_000; 20_000 × 0.30 = 6_000; 5_000 × 3.75 = 18_750; 500 × 15 = 7_500
    // = 35_250 µUSD = 35_250_000 nanos. The prompt is 26_000 tokens, under the 200k tier.
    let u = Usage::with_cache(1_000, 500, 20_000, 5_000);
    assert_eq!(
        price("anthropic", "claude-sonnet-4-5-20250929").cost_nanos(&u),
        35_250_000
    );
}

#[test]
fn gemini_with_cached_tokens_and_thoughts() {
    // gemini-2.5-pro (≤200k): $1.25 in, $0.125 cached, $10 out; thoughts (10_000) are output.
    // 1_500 uncached × 1.25 = 1_875; 10_000 cached × 0.125 = 1_250; 11_000 out × 10 = 110_000
    // = 113_125 µUSD = 113_125_000 nanos.
    let u = openai_usage(11_500, 10_000, 11_000, 10_000);
    assert_eq!(price("gemini", "gemini-2.5-pro").cost_nanos(&u), 113_125_000);
}

#[test]
fn gemini_above_200k_bills_the_whole_request_at_the_long_tier() {
    let p = price("gemini", "gemini-2.5-pro");
    // >200k: $2.50 in, $0.25 cached, $15 out, for every token of the request.
    // 200_000 uncached × 2.50 = 500_000; 50_000 cached × 0.25 = 12_500; 2_000 out × 15 = 30_000
    // = 542_500 µUSD = 542_500_000 nanos.
    let u = openai_usage(250_000, 50_000, 2_000, 0);
    assert_eq!(p.cost_nanos(&u), 542_500_000);
    // Exactly 200_000 is not above the threshold: 200_000 × 1.25 = 250_000 µUSD.
    assert_eq!(p.cost_nanos(&Usage::new(200_000, 0)), 250_000_000);
    // 200_001 is: 200_001 × 2.50 = 500_002.5 µUSD.
    assert_eq!(p.cost_nanos(&Usage::new(200_001, 0)), 500_002_500);
}

#[test]
fn bedrock_claude_with_cache_read_and_write_through_a_region_profile() {
    // anthropic.claude-3-5-sonnet-20241022-v2:0: $3 in, $0.30 read, $3.75 write, $15 out.
    // 2_000 × 3 = 6_000; 10_000 × 0.30 = 3_000; 3_000 × 3.75 = 11_250; 800 × 15 = 12_000
    // = 32_250 µUSD = 32_250_000 nanos.
    let u = Usage::with_cache(2_000, 800, 10_000, 3_000);
    let p = price("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0");
    assert_eq!(p.cost_nanos(&u), 32_250_000);
}

#[test]
fn deepseek_cache_hits() {
    // deepseek-chat: $0.28 miss, $0.028 hit, $0.42 out.
    // 10_000 miss × 0.28 = 2_800; 90_000 hit × 0.028 = 2_520; 1_000 out × 0.42 = 420
    // = 5_740 µUSD = 5_740_000 nanos.
    let u = openai_usage(100_000, 90_000, 1_000, 0);
    assert_eq!(price("deepseek", "deepseek-chat").cost_nanos(&u), 5_740_000);
}

#[test]
fn embedding_has_no_completion() {
    // text-embedding-3-small: $0.02 per 1M. 12_345 × 0.02 = 246.9 µUSD = 246_900 nanos.
    let u = Usage::new(12_345, 0);
    assert_eq!(price("openai", "text-embedding-3-small").cost_nanos(&u), 246_900);
    // Bedrock Titan v2, same price: 1_000 × 0.02 = 20 µUSD.
    assert_eq!(
        price("bedrock", "amazon.titan-embed-text-v2:0").cost_nanos(&Usage::new(1_000, 0)),
        20_000
    );
}

#[test]
fn zero_usage_costs_nothing() {
    for e in PriceTable::builtin().entries() {
        assert_eq!(
            price(&e.provider, &e.model).cost_nanos(&Usage::default()),
            0,
            "{}/{}",
            e.provider,
            e.model
        );
    }
}

#[test]
fn rounding_happens_once_at_the_end() {
    // gpt-5-nano: $0.05 in, $0.40 out. 1 × 0.05 + 1 × 0.40 = 0.45 µUSD = 450 nanos.
    assert_eq!(price("openai", "gpt-5-nano").cost_nanos(&Usage::new(1, 1)), 450);
    // Nova Micro cache reads at $0.00875: 3 × 0.00875 = 0.02625 µUSD = 26.25 nanos, rounded once
    // to 26 (rounding each token's 8.75 nanos first would give 3 × 9 = 27).
    let u = openai_usage(3, 3, 0, 0);
    assert_eq!(price("bedrock", "amazon.nova-micro-v1:0").cost_nanos(&u), 26);
}

#[test]
fn inconsistent_usage_saturates_instead_of_going_negative() {
    // A provider reporting more cached than prompt tokens: uncached is 0, cached billed as given.
    // gpt-4o: 500 cached × 1.25 = 625 µUSD.
    let u = openai_usage(100, 500, 0, 0);
    assert_eq!(price("openai", "gpt-4o").cost_nanos(&u), 625_000);
    // Absurd counts saturate at i64::MAX rather than wrapping or panicking.
    let huge = Usage {
        prompt_tokens: u64::MAX,
        completion_tokens: u64::MAX,
        ..Default::default()
    };
    assert_eq!(price("openai", "o1-pro").cost_nanos(&huge), i64::MAX);
}

#[test]
fn estimates_price_every_prompt_token_as_uncached() {
    // gpt-4o: 1_000 × 2.50 + 500 × 10 = 7_500 µUSD.
    assert_eq!(price("openai", "gpt-4o").estimate_nanos(1_000, 500), 7_500_000);
    // gemini-2.5-pro above 200k: 300_000 × 2.50 + 1_000 × 15 = 765_000 µUSD.
    assert_eq!(
        price("gemini", "gemini-2.5-pro").estimate_nanos(300_000, 1_000),
        765_000_000
    );
    assert_eq!(price("gemini", "gemini-2.5-pro").estimate_nanos(0, 0), 0);
}

// ---------------------------------------------------------------- lookup

#[test]
fn lookup_matches_exact_names_and_dated_suffixes() {
    let t = PriceTable::builtin();
    let gpt4o = t.lookup("openai", "gpt-4o").unwrap();
    assert_eq!(t.lookup("openai", "gpt-4o-2024-08-06"), Some(gpt4o));
    assert_eq!(
        t.lookup("anthropic", "claude-3-5-sonnet-20241022"),
        t.lookup("anthropic", "claude-3-5-sonnet")
    );
    assert_eq!(
        t.lookup("anthropic", "claude-3-5-sonnet-latest"),
        t.lookup("anthropic", "claude-3-5-sonnet")
    );
    assert!(t.lookup("anthropic", "claude-3-5-sonnet").is_some());
}

#[test]
fn lookup_prefers_the_longest_prefix() {
    let t = PriceTable::builtin();
    let mini = t.lookup("openai", "gpt-4o-mini").unwrap();
    assert_eq!(t.lookup("openai", "gpt-4o-mini-2024-07-18"), Some(mini));
    assert_ne!(
        t.lookup("openai", "gpt-4o-mini-2024-07-18"),
        t.lookup("openai", "gpt-4o")
    );
    // A newer model extending an older name has its own price (Opus 4.5 is a third of Opus 4).
    let opus45 = t.lookup("anthropic", "claude-opus-4-5-20251101").unwrap();
    assert_eq!(opus45.cost_nanos(&Usage::new(1_000_000, 0)), 5_000_000_000);
    let opus4 = t.lookup("anthropic", "claude-opus-4-20250514").unwrap();
    assert_eq!(opus4.cost_nanos(&Usage::new(1_000_000, 0)), 15_000_000_000);
    assert_eq!(
        t.lookup("gemini", "gemini-2.5-flash-lite-preview-06-17"),
        t.lookup("gemini", "gemini-2.5-flash-lite")
    );
}

#[test]
fn lookup_needs_a_boundary_after_the_prefix() {
    let t = PriceTable::builtin();
    assert_eq!(t.lookup("openai", "gpt-4oxyz"), None);
    assert_eq!(t.lookup("openai", "o3x"), None);
    // `.` is not a boundary: gpt-5.9 is not gpt-5.
    assert_eq!(t.lookup("openai", "gpt-5.9"), None);
}

#[test]
fn lookup_strips_gemini_models_prefix_and_version_suffixes() {
    let t = PriceTable::builtin();
    let pro = t.lookup("gemini", "gemini-2.5-pro").unwrap();
    assert_eq!(t.lookup("gemini", "models/gemini-2.5-pro"), Some(pro));
    assert_eq!(t.lookup("gemini", "models/gemini-2.5-pro-preview-05-06"), Some(pro));
    assert_eq!(t.lookup("gemini", "gemini-2.5-pro@001"), Some(pro));
    assert_eq!(t.lookup("gemini", "gemini-2.5-pro:latest"), Some(pro));
}

#[test]
fn lookup_strips_bedrock_region_profiles() {
    let t = PriceTable::builtin();
    let id = "anthropic.claude-3-haiku-20240307-v1:0";
    let base = t.lookup("bedrock", id).unwrap();
    for region in ["us.", "eu.", "apac.", "global."] {
        assert_eq!(t.lookup("bedrock", &format!("{region}{id}")), Some(base), "{region}");
    }
    assert!(t.lookup("bedrock", "us.amazon.nova-pro-v1:0").is_some());
}

#[test]
fn azure_falls_back_to_openai_and_unknowns_are_none() {
    let t = PriceTable::builtin();
    assert_eq!(t.lookup("azure", "gpt-4o-2024-11-20"), t.lookup("openai", "gpt-4o"));
    assert!(t.lookup("azure", "gpt-4o").is_some());
    assert_eq!(t.lookup("openai", "no-such-model"), None);
    assert_eq!(t.lookup("no-such-family", "gpt-4o"), None);
    assert_eq!(t.lookup("openai", ""), None);
    assert_eq!(t.lookup("openai", "-"), None);
    // Another family's model is not found under the wrong family.
    assert_eq!(t.lookup("anthropic", "gpt-4o"), None);
}

#[test]
fn lookup_of_hostile_names_is_bounded_and_safe() {
    let t = PriceTable::builtin();
    let long = "-".repeat(100_000);
    assert_eq!(t.lookup("openai", &long), None);
    assert_eq!(
        t.lookup("openai", &format!("gpt-4o{long}")),
        t.lookup("openai", "gpt-4o")
    );
    assert_eq!(t.lookup("openai", "gpt-4o-é-ü"), t.lookup("openai", "gpt-4o"));
    assert_eq!(t.lookup("openai", "models/"), None);
    assert_eq!(t.lookup("openai", "@"), None);
}

// ---------------------------------------------------------------- overrides and parsing

#[test]
fn overrides_replace_and_add() {
    let base = PriceTable::builtin();
    let mut cheaper = entry("openai", "gpt-4o", 1.00, 4.00);
    cheaper.cached_input = Some(0.10);
    let added = entry("openai", "my-fine-tune", 3.00, 12.00);
    let t = base.with_overrides(&[cheaper, added]).unwrap();
    assert_eq!(t.len(), base.len() + 1);
    assert_eq!(t.date(), base.date());
    // 1_000 × 1.00 + 1_000 × 4.00 = 5_000 µUSD (was 12_500 with the built-in price).
    assert_eq!(
        t.lookup("openai", "gpt-4o-2024-08-06")
            .unwrap()
            .cost_nanos(&Usage::new(1_000, 1_000)),
        5_000_000
    );
    // 1_000 × 3 + 1_000 × 12 = 15_000 µUSD.
    assert_eq!(
        t.lookup("openai", "my-fine-tune")
            .unwrap()
            .cost_nanos(&Usage::new(1_000, 1_000)),
        15_000_000
    );
    // The built-in table is untouched.
    assert_eq!(
        base.lookup("openai", "gpt-4o")
            .unwrap()
            .cost_nanos(&Usage::new(1_000, 1_000)),
        12_500_000
    );
    assert_eq!(base.lookup("openai", "my-fine-tune"), None);
    // A new family works too.
    let t = base.with_overrides(&[entry("vllm", "llama-3-8b", 0.0, 0.0)]).unwrap();
    assert_eq!(
        t.lookup("vllm", "llama-3-8b").unwrap().cost_nanos(&Usage::new(10, 10)),
        0
    );
}

#[test]
fn invalid_overrides_name_the_entry() {
    let base = PriceTable::builtin();
    let err = base.with_overrides(&[entry("openai", "bad", -1.0, 1.0)]).unwrap_err();
    assert!(
        err.contains("pricing[0] (openai/bad)") && err.contains("input"),
        "{err}"
    );

    let err = base
        .with_overrides(&[entry("openai", "ok", 1.0, 1.0), entry("openai", "nan", 1.0, f64::NAN)])
        .unwrap_err();
    assert!(
        err.contains("pricing[1] (openai/nan)") && err.contains("output"),
        "{err}"
    );

    let mut inf = entry("anthropic", "inf", 1.0, 1.0);
    inf.cache_write = Some(f64::INFINITY);
    let err = base.with_overrides(&[inf]).unwrap_err();
    assert!(err.contains("anthropic/inf") && err.contains("cache_write"), "{err}");

    let mut zero_tier = entry("gemini", "tiered", 1.0, 1.0);
    zero_tier.above = Some(Tier {
        tokens: 0,
        input: 2.0,
        output: -2.0,
        cached_input: None,
        cache_write: None,
    });
    let err = base.with_overrides(&[zero_tier]).unwrap_err();
    assert!(err.contains("above.tokens") && err.contains("above.output"), "{err}");

    let err = base.with_overrides(&[entry("", "m", 1.0, 1.0)]).unwrap_err();
    assert!(err.contains("provider"), "{err}");

    let twice = [entry("openai", "x", 1.0, 1.0), entry("openai", "x", 2.0, 2.0)];
    let err = base.with_overrides(&twice).unwrap_err();
    assert!(err.contains("pricing[1] (openai/x)"), "{err}");
}

#[test]
fn parse_reads_the_format_and_resolves_optional_prices() {
    let t = PriceTable::parse(
        r#"
date: 2026-01-02
sources: [ "https://example.com/pricing" ]
models:
  - { provider: p, model: m, input: 1.0, output: 2.0 }
  - { provider: p, model: tiered, input: 1.0, output: 2.0, cached_input: 0.5,
      above: { tokens: 10, input: 3.0, output: 4.0 } }
"#,
    )
    .unwrap();
    assert_eq!(t.date(), "2026-01-02");
    assert_eq!(t.sources(), ["https://example.com/pricing".to_string()]);
    assert_eq!(t.len(), 2);
    // No cached_input / cache_write: billed as input. 10 × 1 + 5 × 1 + 5 × 1 = 20 µUSD.
    let m = t.lookup("p", "m").unwrap();
    assert_eq!(m.cost_nanos(&Usage::with_cache(10, 0, 5, 5)), 20_000);
    // Above the tier, which has no cached_input: billed at the tier's input.
    // 6 × 3 + 5 × 3 + 1 × 4 = 37 µUSD.
    let tiered = t.lookup("p", "tiered").unwrap();
    assert_eq!(tiered.cost_nanos(&Usage::with_cache(6, 1, 5, 0)), 37_000);
    // At the threshold (10 prompt tokens): 5 × 1 + 5 × 0.5 = 7.5 µUSD.
    assert_eq!(tiered.cost_nanos(&Usage::with_cache(5, 0, 5, 0)), 7_500);
}

#[test]
fn parse_errors_say_which_entry_and_field() {
    let unknown = "date: x\nmodels:\n  - { provider: p, model: m, input: 1, output: 1, inptu: 2 }\n";
    let err = PriceTable::parse(unknown).unwrap_err();
    assert!(err.contains("models[0]") && err.contains("inptu"), "{err}");

    let negative = "date: x\nmodels:\n  - { provider: p, model: a, input: 1, output: 1 }\n  - { provider: p, model: b, input: 1, output: -3 }\n";
    let err = PriceTable::parse(negative).unwrap_err();
    assert!(err.contains("models[1] (p/b)") && err.contains("output"), "{err}");

    let dup = "date: x\nmodels:\n  - { provider: p, model: a, input: 1, output: 1 }\n  - { provider: p, model: a, input: 2, output: 2 }\n";
    let err = PriceTable::parse(dup).unwrap_err();
    assert!(err.contains("models[1] (p/a)") && err.contains("twice"), "{err}");

    let wrong_type = "date: x\nmodels:\n  - { provider: p, model: a, input: cheap, output: 1 }\n";
    let err = PriceTable::parse(wrong_type).unwrap_err();
    assert!(err.contains("models[0].input"), "{err}");

    assert!(PriceTable::parse("models: []\n").unwrap_err().contains("date"));
    assert!(PriceTable::parse("").is_err());
    assert!(PriceTable::parse(":::").is_err());
}

// ---------------------------------------------------------------- the shipped table

#[test]
fn builtin_table_parses_and_is_sane() {
    let t = PriceTable::builtin();
    assert!(t.len() > 60, "only {} entries", t.len());
    assert!(!t.is_empty());
    assert!(!t.date().is_empty() && !t.sources().is_empty());
    let mut seen = HashSet::new();
    for e in t.entries() {
        let name = format!("{}/{}", e.provider, e.model);
        assert!(seen.insert((e.provider.clone(), e.model.clone())), "duplicate {name}");
        let prices = [Some(e.input), Some(e.output), e.cached_input, e.cache_write];
        for p in prices.into_iter().flatten() {
            assert!(p.is_finite() && p >= 0.0, "{name}: {p}");
        }
        // A cache read is never dearer than an uncached read.
        assert!(
            e.cached_input.is_none_or(|c| c <= e.input),
            "{name}: cached_input > input"
        );
        if let Some(tier) = &e.above {
            assert!(tier.tokens > 0, "{name}");
            // The long-context tier is never cheaper: billing stays monotone in prompt size.
            assert!(
                tier.input >= e.input && tier.output >= e.output,
                "{name}: tier cheaper than base"
            );
            assert!(
                tier.cached_input.unwrap_or(tier.input) >= e.cached_input.unwrap_or(e.input)
                    && tier.cache_write.unwrap_or(tier.input) >= e.cache_write.unwrap_or(e.input),
                "{name}: tier cache prices cheaper than base"
            );
        }
        // Every entry is found by its own name under its own family.
        assert!(t.lookup(&e.provider, &e.model).is_some(), "{name} not found");
    }
    for family in [
        "openai",
        "anthropic",
        "gemini",
        "bedrock",
        "mistral",
        "groq",
        "deepseek",
        "together",
        "openrouter",
    ] {
        assert!(t.entries().iter().any(|e| e.provider == family), "no {family} prices");
    }
    // The same Arc is handed out every time.
    assert!(Arc::ptr_eq(&t, &PriceTable::builtin()));
}

#[test]
fn builtin_covers_the_common_models() {
    let t = PriceTable::builtin();
    let required: &[(&str, &[&str])] = &[
        (
            "openai",
            &[
                "gpt-4o",
                "gpt-4o-mini",
                "gpt-4.1",
                "gpt-4.1-mini",
                "gpt-4.1-nano",
                "o1",
                "o3",
                "o3-mini",
                "o4-mini",
                "gpt-5",
                "gpt-5-mini",
                "gpt-5-nano",
                "text-embedding-3-small",
                "text-embedding-3-large",
                "text-embedding-ada-002",
            ],
        ),
        (
            "anthropic",
            &[
                "claude-3-5-haiku-20241022",
                "claude-3-5-sonnet-20240620",
                "claude-3-7-sonnet-20250219",
                "claude-sonnet-4-20250514",
                "claude-sonnet-4-5-20250929",
                "claude-opus-4-20250514",
                "claude-opus-4-1-20250805",
                "claude-haiku-4-5-20251001",
                "claude-3-haiku-20240307",
                "claude-3-opus-20240229",
            ],
        ),
        (
            "gemini",
            &[
                "gemini-1.5-flash",
                "gemini-1.5-pro",
                "gemini-2.0-flash",
                "gemini-2.0-flash-lite",
                "gemini-2.5-pro",
                "gemini-2.5-flash",
                "gemini-2.5-flash-lite",
                "text-embedding-004",
            ],
        ),
        (
            "bedrock",
            &[
                "anthropic.claude-3-5-sonnet-20241022-v2:0",
                "anthropic.claude-3-haiku-20240307-v1:0",
                "amazon.nova-pro-v1:0",
                "amazon.nova-lite-v1:0",
                "amazon.nova-micro-v1:0",
                "meta.llama3-1-70b-instruct-v1:0",
                "amazon.titan-embed-text-v2:0",
                "cohere.embed-english-v3",
            ],
        ),
        (
            "mistral",
            &[
                "mistral-large-latest",
                "mistral-small-latest",
                "codestral-latest",
                "open-mistral-nemo",
                "mistral-embed",
            ],
        ),
        ("groq", &["llama-3.3-70b-versatile", "llama-3.1-8b-instant"]),
        ("deepseek", &["deepseek-chat", "deepseek-reasoner"]),
        ("openrouter", &["anthropic/claude-sonnet-4", "openai/gpt-4o"]),
    ];
    for (family, models) in required {
        for model in *models {
            assert!(t.lookup(family, model).is_some(), "{family}/{model} is not priced");
        }
    }
    assert!(t.entries().iter().filter(|e| e.provider == "together").count() >= 2);
}

// ---------------------------------------------------------------- properties

const MAX_TOKENS: u64 = 1_000_000_000_000; // 1e12

proptest! {
    #[test]
    fn cost_never_panics_and_is_monotone_in_each_token_count(
        which in any::<prop::sample::Index>(),
        input in 0..MAX_TOKENS,
        output in 0..MAX_TOKENS,
        read in 0..MAX_TOKENS,
        write in 0..MAX_TOKENS,
        delta in 1..1_000_000_u64,
    ) {
        let t = PriceTable::builtin();
        let e = which.get(t.entries());
        let p = t.lookup(&e.provider, &e.model).unwrap();
        let cost = |i, o, r, w| p.cost_nanos(&Usage::with_cache(i, o, r, w));
        let base = cost(input, output, read, write);
        prop_assert!(base >= 0);
        prop_assert!(cost(input + delta, output, read, write) >= base);
        prop_assert!(cost(input, output + delta, read, write) >= base);
        prop_assert!(cost(input, output, read + delta, write) >= base);
        prop_assert!(cost(input, output, read, write + delta) >= base);
        prop_assert!(p.estimate_nanos(input, output) >= 0);
        prop_assert!(p.estimate_nanos(input + delta, output) >= p.estimate_nanos(input, output));
    }

    #[test]
    fn cost_never_panics_on_arbitrary_usage(
        prompt in any::<u64>(), completion in any::<u64>(), cached in any::<u64>(), written in any::<u64>(),
    ) {
        let u = Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: 0,
            prompt_tokens_details: Some(PromptDetails { cached_tokens: cached, cache_write_tokens: written }),
            completion_tokens_details: None,
        };
        for e in PriceTable::builtin().entries() {
            prop_assert!(price(&e.provider, &e.model).cost_nanos(&u) >= 0);
        }
    }

    #[test]
    fn lookup_never_panics(family in "[a-z]{0,10}", model in "\\PC{0,40}") {
        let t = PriceTable::builtin();
        let _ = t.lookup(&family, &model);
        let _ = t.lookup("openai", &model);
        let _ = t.lookup("bedrock", &format!("us.{model}"));
    }
}
