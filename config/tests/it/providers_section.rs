//! The `[[providers]]` and `[routing]` sections: providers read from the
//! file, default chains, and the errors a person sees for bad entries.

use std::time::Duration;
use troupe_config::{load, ChainEntry, ConfigError};

use crate::common;
use common::{invalid_key, load_text, opts, write};

fn provider(name: &str) -> ChainEntry {
    ChainEntry::Provider(name.to_string())
}

#[test]
fn no_providers_means_local_then_cluster_for_every_role() {
    let cfg = load_text("").unwrap();
    assert!(cfg.providers.providers.is_empty());
    let expected = vec![ChainEntry::Local, ChainEntry::Cluster];
    assert_eq!(cfg.providers.routing.ux, expected);
    assert_eq!(cfg.providers.routing.director, expected);
    assert_eq!(cfg.providers.routing.worker, expected);
}

#[test]
fn a_provider_is_read_with_its_settings_and_defaults() {
    let cfg = load_text(
        r#"
[[providers]]
name = "groq"
base_url = "https://api.groq.com/openai/v1/"
model = "llama-3.1-8b-instant"
api_key_env = "GROQ_API_KEY"
timeout_s = 2.5
max_retries = 4
backoff_ms = 100
breaker_failures = 5
breaker_reset_s = 10
prompt_price = 0.00000005
completion_price = 0.00000008

[[providers]]
name = "ollama.local"
base_url = "http://127.0.0.1:11434/v1"
model = "qwen2.5:0.5b"
"#,
    )
    .unwrap();
    let [groq, ollama] = &cfg.providers.providers[..] else {
        panic!("two providers expected: {:?}", cfg.providers.providers);
    };
    assert_eq!(groq.name, "groq");
    assert_eq!(groq.base_url, "https://api.groq.com/openai/v1");
    assert_eq!(
        groq.chat_completions_url(),
        "https://api.groq.com/openai/v1/chat/completions"
    );
    assert_eq!(groq.api_key_env.as_deref(), Some("GROQ_API_KEY"));
    assert_eq!(groq.timeout, Duration::from_millis(2500));
    assert_eq!(groq.max_retries, 4);
    assert_eq!(groq.backoff, Duration::from_millis(100));
    assert_eq!(groq.breaker_failures, 5);
    assert_eq!(groq.breaker_reset, Duration::from_secs(10));
    assert_eq!(groq.prompt_price, 0.000_000_05);
    assert!(groq.enabled);

    assert_eq!(ollama.api_key_env, None);
    assert_eq!(ollama.timeout, Duration::from_secs(60));
    assert_eq!(ollama.max_retries, 2);
    assert_eq!(ollama.backoff, Duration::from_millis(500));
    assert_eq!(ollama.backoff_max, Duration::from_secs(8));
    assert_eq!(ollama.breaker_failures, 3);
    assert_eq!(ollama.breaker_reset, Duration::from_secs(30));
    assert_eq!(ollama.completion_price, 0.0);

    // No [routing]: every role tries local, cluster, then each provider in file order.
    let expected = vec![
        ChainEntry::Local,
        ChainEntry::Cluster,
        provider("groq"),
        provider("ollama.local"),
    ];
    assert_eq!(cfg.providers.routing.worker, expected);
    assert_eq!(cfg.providers.routing.ux, expected);
}

const TWO_PROVIDERS: &str = r#"
[[providers]]
name = "groq"
base_url = "https://api.groq.com/openai/v1"
model = "llama-3.1-8b-instant"

[[providers]]
name = "off"
base_url = "http://127.0.0.1:9/v1"
model = "m"
enabled = false
"#;

#[test]
fn routing_chains_are_read_in_order_and_disabled_providers_left_out() {
    let cfg = load_text(&format!(
        "{TWO_PROVIDERS}\n[routing]\nux = [\"groq\", \"local\"]\ndirector = [\"local\", \"off\", \"cluster\", \"groq\"]\n"
    ))
    .unwrap();
    let routing = &cfg.providers.routing;
    assert_eq!(routing.ux, vec![provider("groq"), ChainEntry::Local]);
    assert_eq!(
        routing.director,
        vec![ChainEntry::Local, ChainEntry::Cluster, provider("groq")]
    );
    // Not written: the default, without the disabled provider.
    assert_eq!(
        routing.worker,
        vec![ChainEntry::Local, ChainEntry::Cluster, provider("groq")]
    );
    assert_eq!(cfg.providers.enabled().count(), 1);
    assert!(!cfg.providers.provider("off").unwrap().enabled);
}

#[test]
fn a_chain_naming_an_unknown_provider_is_refused_naming_role_and_name() {
    let err = load_text(&format!(
        "{TWO_PROVIDERS}\n[routing]\nworker = [\"local\", \"openai\"]\n"
    ))
    .unwrap_err();
    let (key, reason) = invalid_key(err);
    assert_eq!(key, "routing.worker");
    assert!(reason.contains("`openai`"), "{reason}");
    assert!(
        reason.contains("groq"),
        "the known names are listed: {reason}"
    );
}

#[test]
fn a_name_twice_in_a_chain_or_an_empty_chain_is_refused() {
    let (key, reason) = invalid_key(
        load_text(&format!(
            "{TWO_PROVIDERS}\n[routing]\nux = [\"groq\", \"local\", \"groq\"]\n"
        ))
        .unwrap_err(),
    );
    assert_eq!(key, "routing.ux");
    assert!(reason.contains("`groq` is named twice"), "{reason}");

    let (key, _) = invalid_key(load_text("[routing]\ndirector = []\n").unwrap_err());
    assert_eq!(key, "routing.director");
}

#[test]
fn two_providers_of_one_name_are_refused() {
    let text = r#"
[[providers]]
name = "a"
base_url = "http://127.0.0.1:1/v1"
model = "m"

[[providers]]
name = "a"
base_url = "http://127.0.0.1:2/v1"
model = "m"
"#;
    let (key, reason) = invalid_key(load_text(text).unwrap_err());
    assert_eq!(key, "providers[1].name");
    assert!(reason.contains("`a` names two providers"), "{reason}");
}

fn one_provider(fields: &str) -> Result<troupe_config::Config, ConfigError> {
    load_text(&format!("[[providers]]\n{fields}\n"))
}

#[test]
fn bad_names_urls_and_values_are_refused_naming_the_key() {
    let base = "base_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"";
    let cases = [
        (
            format!("name = \"local\"\n{base}"),
            "providers[0].name",
            "reserved",
        ),
        (
            format!("name = \"cluster\"\n{base}"),
            "providers[0].name",
            "reserved",
        ),
        (
            format!("name = \"a b\"\n{base}"),
            "providers[0].name",
            "letters",
        ),
        (base.to_string(), "providers[0].name", "required"),
        (
            "name = \"p\"\nbase_url = \"ftp://x/v1\"\nmodel = \"m\"".to_string(),
            "providers[0].base_url",
            "not an http:// or https:// URL",
        ),
        (
            "name = \"p\"\nbase_url = \"http:///v1\"\nmodel = \"m\"".to_string(),
            "providers[0].base_url",
            "no host",
        ),
        (
            "name = \"p\"\nbase_url = \"https://user:secret@host/v1\"\nmodel = \"m\"".to_string(),
            "providers[0].base_url",
            "credentials",
        ),
        (
            "name = \"p\"\nbase_url = \"http://h/v1\"".to_string(),
            "providers[0].model",
            "required",
        ),
        (
            format!("name = \"p\"\n{base}\napi_key_env = \"GROQ KEY\""),
            "providers[0].api_key_env",
            "not an environment variable name",
        ),
        (
            format!("name = \"p\"\n{base}\napi_key_env = \"TROUPE_GROQ_KEY\""),
            "providers[0].api_key_env",
            "TROUPE_",
        ),
        (
            format!("name = \"p\"\n{base}\ntimeout_s = 0"),
            "providers[0].timeout_s",
            "outside",
        ),
        (
            format!("name = \"p\"\n{base}\nbreaker_failures = 0"),
            "providers[0].breaker_failures",
            "at least 1",
        ),
        (
            format!("name = \"p\"\n{base}\nbackoff_ms = 9000"),
            "providers[0].backoff_ms",
            "backoff_max_ms",
        ),
        (
            format!("name = \"p\"\n{base}\nprompt_price = -1.0"),
            "providers[0].prompt_price",
            "not a price",
        ),
    ];
    for (fields, want_key, want_reason) in cases {
        let err = one_provider(&fields).expect_err(&fields);
        let (key, reason) = invalid_key(err);
        assert_eq!(key, want_key, "{fields}");
        assert!(reason.contains(want_reason), "{fields}: {reason}");
    }
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err =
        one_provider("name = \"p\"\nbase_url = \"http://h/v1\"\nmodel = \"m\"\napi_key = \"sk-1\"")
            .unwrap_err();
    match err {
        ConfigError::UnknownKey { key, .. } => assert!(key.ends_with("api_key"), "{key}"),
        other => panic!("expected an unknown key, got {other}"),
    }
    let err = load_text("[routing]\nlearner = [\"local\"]\n").unwrap_err();
    match err {
        ConfigError::UnknownKey { key, .. } => assert_eq!(key, "routing.learner"),
        other => panic!("expected an unknown key, got {other}"),
    }
}

#[test]
fn an_unset_key_variable_is_not_a_config_error() {
    let cfg = one_provider(
        "name = \"p\"\nbase_url = \"http://h/v1\"\nmodel = \"m\"\napi_key_env = \"REMOTE_TEST_SURELY_UNSET_KEY\"",
    )
    .unwrap();
    assert_eq!(
        cfg.providers.providers[0].api_key_env.as_deref(),
        Some("REMOTE_TEST_SURELY_UNSET_KEY")
    );
}

#[test]
fn a_chain_can_be_set_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, TWO_PROVIDERS);
    let cfg = load(&opts(Some(path), &[("TROUPE_ROUTING__UX", "[\"groq\"]")])).unwrap();
    assert_eq!(cfg.providers.routing.ux, vec![provider("groq")]);
}

#[test]
fn context_length_is_read_and_a_too_small_one_refused_naming_the_key() {
    let base = "name = \"p\"\nbase_url = \"http://h/v1\"\nmodel = \"m\"";
    let cfg = one_provider(&format!("{base}\ncontext_length = 32768")).unwrap();
    assert_eq!(cfg.providers.providers[0].context_length, Some(32768));
    let cfg = one_provider(base).unwrap();
    assert_eq!(cfg.providers.providers[0].context_length, None);

    for bad in [0, 255] {
        let err = one_provider(&format!("{base}\ncontext_length = {bad}")).unwrap_err();
        let (key, reason) = invalid_key(err);
        assert_eq!(key, "providers[0].context_length");
        assert!(reason.contains(&bad.to_string()), "{reason}");
    }
}
