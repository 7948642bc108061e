use super::*;
use crate::driver::Sample;
use std::time::Duration;

/// Two keys of one team of one organisation behind one upstream pool, and a third key alone.
const POLICY: &str = r#"{
  "count_cached_input": false,
  "orgs": [{"name": "acme", "upstream": "openai", "budget_usd": 5, "budget_period": "day"}],
  "teams": [{"name": "ml", "org": "acme", "rpm": 15, "max_parallel_requests": 3}],
  "upstreams": [{"name": "openai", "pools": [{"name": "all", "models": ["*"], "tpm": 900}]}],
  "prices": {"gpt-4o-mini": {"input": 2.0, "cached_input": 1.0, "output": 10.0}},
  "keys": [
    {"name": "a", "key": "sk-a", "team": "ml", "rpm": 10, "rpd": 100},
    {"name": "b", "key": "sk-b", "team": "ml", "rpm": 10},
    {"name": "solo", "key": "sk-solo", "rpm": 3}
  ]
}"#;

fn plan(keys: &[&str]) -> AuditPlan {
    let file: KeysFile = serde_json::from_str(POLICY).unwrap();
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    from_keys_file(&file, &keys, "gpt-4o-mini", true).unwrap()
}

#[test]
fn every_scope_of_every_key_once_with_the_keys_it_counts() {
    let plan = plan(&["sk-a", "sk-b", "sk-solo"]);
    let names: Vec<(&str, &[usize])> = plan
        .scopes
        .iter()
        .map(|s| (s.name.as_str(), s.keys.as_slice()))
        .collect();
    assert_eq!(
        names,
        [
            ("key:a any 60000 ms", &[0][..]),
            ("key:a any 86400000 ms", &[0]),
            ("team:ml any 60000 ms", &[0, 1]),
            ("org:acme each day", &[0, 1]),
            ("pool:openai/all any 60000 ms", &[0, 1]),
            ("key:b any 60000 ms", &[1]),
            ("key:solo any 60000 ms", &[2]),
        ]
    );
    let team = &plan.scopes[2];
    assert_eq!((team.limits, team.concurrency), ([15, 0, 0, 0], 3));
    let org = &plan.scopes[3];
    assert_eq!((org.limits[3], org.fourth), (5_000_000, Fourth::Spend));
    assert!(matches!(org.rule, Rule::Calendar(_)));
    assert_eq!(plan.scopes[4].limits, [0, 0, 0, 900]);
    // The classic key: one window of CHECK.
    assert_eq!(plan.scopes[6].rule, Rule::Sliding(60_000));
    assert_eq!(plan.scopes[6].limits, [3, 0, 0, 0]);
    assert!(!plan.costing.count_cached_input);

    let file: KeysFile = serde_json::from_str(POLICY).unwrap();
    let unknown = from_keys_file(&file, &["sk-nobody".to_string()], "m", true).unwrap_err();
    assert!(unknown.contains("is not in it"), "{unknown}");
}

fn sample(key: usize, sent_ms: f64, streaming: Option<(f64, f64)>) -> Sample {
    Sample {
        node: 0,
        key,
        status: Status::Ok,
        latency_us: 1000,
        sent_ms,
        done_ms: sent_ms + 1.0,
        prompt_tokens: 100,
        completion_tokens: 20,
        cached_tokens: 40,
        streaming,
    }
}

fn outcome(samples: Vec<Sample>) -> Outcome {
    let histogram = hdrhistogram::Histogram::new(3).unwrap();
    Outcome {
        samples,
        elapsed: Duration::from_secs(10),
        start_unix_ms: 1_700_000_000_000.0,
        latency_ok: histogram.clone(),
        latency_limited: histogram.clone(),
        latency_other: histogram,
    }
}

#[test]
fn usage_counts_per_the_policy_and_prices() {
    let plan = plan(&["sk-a"]);
    let s = sample(0, 0.0, None);
    // Cached prompt tokens do not count toward input tokens here; they cost the cached price.
    assert_eq!(amounts(&s, Fourth::Tokens, plan.costing), [1, 60, 20, 80]);
    // 60 × 2 + 40 × 1 + 20 × 10 micro-dollars.
    assert_eq!(amounts(&s, Fourth::Spend, plan.costing)[3], 360);
}

#[test]
fn a_shared_scope_sums_its_keys_and_flags_what_exceeds_it() {
    let plan = plan(&["sk-a", "sk-b"]);
    // Ten requests of each key within a second: each key at its cap, the team 5 over.
    let samples: Vec<Sample> = (0..20)
        .map(|i| sample(i % 2, i as f64 * 10.0, None))
        .collect();
    let audits = audit(&outcome(samples), &plan, 0.0);
    let by_name = |name: &str| audits.iter().find(|a| a.scope == name).unwrap();
    let key_a = by_name("key:a any 60000 ms");
    assert_eq!((key_a.admitted_requests, key_a.violations), (10, 0));
    let team = by_name("team:ml any 60000 ms");
    assert_eq!(team.admitted_requests, 20);
    assert_eq!(team.dimensions[0].max_in_window, 20);
    assert!(team.violations > 0);
    assert_eq!(
        team.note.as_deref(),
        Some("concurrency is audited on streamed answers (--stream)")
    );
    // The pool's 900 tokens a minute: 20 × 80 = 1600 in one minute.
    let pool = by_name("pool:openai/all any 60000 ms");
    assert_eq!(pool.dimensions[0].dimension, "tokens");
    assert_eq!(pool.dimensions[0].max_in_window, 1600);
    assert!(pool.violations > 0);
    // The organisation's daily spend: 20 × 360 micro-dollars, far under $5.
    let org = by_name("org:acme each day");
    assert_eq!(org.dimensions[0].dimension, "spend_micro_usd");
    assert_eq!((org.dimensions[0].admitted, org.violations), (7200, 0));
}

#[test]
fn concurrency_from_streamed_answers() {
    let plan = plan(&["sk-a", "sk-b"]);
    // Four streams of the team overlapping between 30 and 40 ms: one over its 3 slots.
    let samples = vec![
        sample(0, 0.0, Some((1.0, 40.0))),
        sample(1, 0.0, Some((2.0, 50.0))),
        sample(0, 5.0, Some((10.0, 60.0))),
        sample(1, 20.0, Some((30.0, 70.0))),
    ];
    let audits = audit(&outcome(samples), &plan, 0.0);
    let team = audits
        .iter()
        .find(|a| a.scope == "team:ml any 60000 ms")
        .unwrap();
    let slots = team.dimensions.last().unwrap();
    assert_eq!(slots.dimension, "concurrency");
    assert_eq!((slots.max_in_window, slots.violations), (4, 1));
    assert_eq!(team.note, None);
}
