use super::*;
use crate::limits::DAY_MS;
use llmrl_core::period::{Period, PeriodKind};

const POLICY: &str = r#"
count_cached_input = false

[[orgs]]
name = "acme"
upstream = "openai"
budget_usd = 100
budget_period = "month"

[[teams]]
name = "ml"
org = "acme"
rpm = 50
rpd = 1000
day_reset = "midnight"
utc_offset_minutes = -480

[[upstreams]]
name = "openai"
[[upstreams.pools]]
name = "gpt-4o"
models = ["gpt-4o", "gpt-4o-2024-08-06"]
rpm = 500
tpm = 30000
max_parallel_requests = 8
[[upstreams.pools]]
name = "rest"
models = ["*"]
rpm = 100

[prices."gpt-4o"]
input = 2.5
cached_input = 1.25
output = 10.0

[[keys]]
name = "a"
key = "sk-a"
team = "ml"
rpm = 5
tpd = 100000
max_parallel_requests = 2

[keys.models."gpt-4o"]
rpm = 2

[[keys]]
name = "classic"
key = "sk-classic"
rpm = 3
itpm = 100

[[keys]]
name = "nothing"
key = "sk-nothing"
"#;

fn file() -> KeysFile {
    let file: KeysFile = toml::from_str(POLICY).unwrap();
    file.validate().unwrap();
    file
}

fn scopes(plan: &Plan) -> &[ScopeSpec] {
    match &plan.checks {
        Checks::Multi(scopes) => scopes,
        Checks::Single { .. } => panic!("expected several scopes"),
    }
}

#[test]
fn a_request_runs_under_every_scope_that_applies() {
    let file = file();
    let key = file.find("sk-a").unwrap();
    let plan = file.plan(key, "gpt-4o").unwrap();
    let scopes = scopes(&plan);
    let owners: Vec<String> = scopes
        .iter()
        .map(|s| format!("{} {:?}", s.owner.label(), s.window))
        .collect();
    assert_eq!(
        owners,
        [
            "key:a Slots",
            &format!("key:a Day(Rolling({DAY_MS}))"),
            "key:a/gpt-4o Minute(60000)",
            "team:ml Minute(60000)",
            &format!(
                "team:ml Day(Calendar({:?}))",
                Period::new(PeriodKind::Day, -480).unwrap()
            ),
            "org:acme Budget(Calendar(Period { kind: Month, offset_minutes: 0 }))",
            "pool:openai/gpt-4o Minute(60000)",
        ]
    );
    // An organisation's scopes share its hash tag (one slot, one MCHECK); the upstream's pool
    // is shared by every key of every organisation.
    for scope in &scopes[..6] {
        assert!(
            scope.redis_key.starts_with("llmrl:{o:acme}:"),
            "{}",
            scope.redis_key
        );
        assert!(!scope.redis_key.contains("sk-a"));
    }
    assert!(scopes[6]
        .redis_key
        .starts_with("llmrl:{u:openai}:p:gpt-4o:"));
    assert_eq!(scopes[0].limits.concurrency, 2, "the key's own slots");
    assert_eq!(
        scopes[6].limits.concurrency, 8,
        "the pool's slots, in its minute scope"
    );
    assert_eq!(scopes[1].limits.summed, [0, 0, 0, 100_000]);
    assert_eq!(scopes[1].fourth, Fourth::Tokens);
    assert_eq!(
        scopes[2].limits.summed,
        [2, 0, 0, 0],
        "the model's rpm replaces the key's"
    );
    assert_eq!(scopes[5].limits.summed, [0, 0, 0, 100_000_000]);
    assert_eq!(scopes[5].fourth, Fourth::Spend);
    assert!(plan.holds_slots && plan.counts_spend && plan.count_cached_input == Some(false));
    assert_eq!(plan.price.unwrap().cached_input, Some(1.25));
    assert_eq!(plan.output_cap, Some(30_000));
    assert_eq!(
        plan.groups,
        [vec![0, 1, 2, 3, 4, 5], vec![6]],
        "two cluster slots"
    );
    assert_eq!(hash_tag("llmrl:{u:openai}:p:x"), "u:openai");
    assert_eq!(hash_tag("plain"), "plain");

    // Another model: the key's own minute limits, and the catch-all pool.
    let other = file.plan(key, "o3-mini").unwrap();
    let labels: Vec<String> = scopes_of(&other);
    assert!(
        labels.contains(&"key:a Minute(60000)".to_string()),
        "{labels:?}"
    );
    assert!(labels.contains(&"pool:openai/rest Minute(60000)".to_string()));
    assert_eq!(other.price, None);
}

fn scopes_of(plan: &Plan) -> Vec<String> {
    scopes(plan)
        .iter()
        .map(|s| format!("{} {:?}", s.owner.label(), s.window))
        .collect()
}

#[test]
fn a_key_with_one_classic_scope_keeps_its_counter() {
    let file = file();
    let key = file.find("sk-classic").unwrap();
    let plan = file.plan(key, "gpt-4o").unwrap();
    let digest = key.digest().unwrap();
    assert_eq!(
        plan.checks,
        Checks::Single {
            redis_key: limiter_key(&digest, 60_000, ClassicScope::Default),
            limits: Limits {
                rpm: 3,
                itpm: 100,
                otpm: 0
            },
            window_ms: 60_000,
        }
    );
    // No limits at all: still counted, under its classic key.
    let nothing = file.find("sk-nothing").unwrap();
    assert!(matches!(
        file.plan(nothing, "m").unwrap().checks,
        Checks::Single { .. }
    ));
    assert_eq!(
        file.planned_models(file.find("sk-a").unwrap()),
        ["gpt-4o", "gpt-4o-2024-08-06"]
    );
}

#[test]
fn files_that_do_not_hold_together_are_refused() {
    let broken = [
        POLICY.replace("team = \"ml\"\nrpm = 5", "team = \"ops\"\nrpm = 5"),
        POLICY.replace("name = \"ml\"", "name = \"m{l}\""),
        POLICY.replace("org = \"acme\"\nrpm", "org = \"globex\"\nrpm"),
        POLICY.replace(
            "upstream = \"openai\"\nbudget",
            "upstream = \"azure\"\nbudget",
        ),
        POLICY.replace("input = 2.5", "input = -1"),
        POLICY.replace("day_reset = \"midnight\"", "day_reset = \"noon\""),
        POLICY.replace("rpm = 3\nitpm = 100", "rpm = 3\nitpm = 100\nwindow_ms = 61"),
        POLICY.replace(
            "[[keys]]\nname = \"classic\"",
            "[[teams]]\nname = \"ml\"\n\n[[keys]]\nname = \"classic\"",
        ),
        // A key's name is what the admin API's URLs and the binding-scope header carry.
        POLICY.replace("name = \"classic\"", "name = \"\""),
        POLICY.replace("name = \"classic\"", "name = \"my key/1\""),
        POLICY.replace("name = \"classic\"", "name = \"a\""),
    ];
    for text in broken {
        let file: KeysFile = toml::from_str(&text).unwrap();
        assert!(file.validate().is_err(), "{text}");
    }
    let typo = POLICY.replace("rpd = 1000", "rdp = 1000");
    assert!(
        toml::from_str::<KeysFile>(&typo).is_err(),
        "unknown fields are errors"
    );
}

#[test]
fn key_slots_as_redis_cluster_computes_them() {
    // Values from Redis's CLUSTER KEYSLOT.
    assert_eq!(key_slot("foo"), 12182);
    assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
    assert_eq!(key_slot("123456789"), 12739);
    // An empty tag is no tag: the whole key is hashed.
    assert_eq!(key_slot("{}foo"), 9500);
}
