//! The `[memory]` section: defaults, values read from the file, and the
//! errors a person sees for bad ones.

use std::path::PathBuf;
use troupe_config::memory::{DEFAULT_EMBEDDER, DEFAULT_EXACT_THRESHOLD};
use troupe_config::{load, ConfigError, LoadOptions};

fn load_text(
    text: &str,
) -> (
    Result<troupe_config::Config, ConfigError>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("troupe.toml");
    std::fs::write(&path, text).unwrap();
    let result = load(&LoadOptions {
        explicit: Some(path),
        env: Vec::new(),
        platform_default: false,
    });
    (result, dir)
}

#[test]
fn no_section_means_minilm_from_the_cache() {
    let (cfg, _dir) = load_text("");
    let memory = cfg.unwrap().memory;
    assert!(memory.enabled);
    assert_eq!(memory.embedder, DEFAULT_EMBEDDER);
    assert_eq!(memory.embedder_path, None);
    assert_eq!(memory.exact_threshold, DEFAULT_EXACT_THRESHOLD);
    assert_eq!(memory.decay_half_life_days, 30.0);
}

#[test]
fn values_are_read_and_a_relative_path_is_taken_from_the_file() {
    let (cfg, dir) = load_text(
        r#"
[memory]
enabled = false
embedder = "BAAI/bge-small-en-v1.5"
embedder_path = "models/bge"
exact_threshold = 500
decay_half_life_days = 7.5
"#,
    );
    let memory = cfg.unwrap().memory;
    assert!(!memory.enabled);
    assert_eq!(memory.embedder, "BAAI/bge-small-en-v1.5");
    assert_eq!(memory.embedder_path, Some(dir.path().join("models/bge")));
    assert_eq!(memory.exact_threshold, 500);
    assert_eq!(memory.decay_half_life_days, 7.5);
}

#[test]
fn bad_values_name_the_key() {
    for (text, key) in [
        ("[memory]\nembedder = \"\"", "memory.embedder"),
        ("[memory]\nembedder = \"a/b/c\"", "memory.embedder"),
        (
            "[memory]\ndecay_half_life_days = 0",
            "memory.decay_half_life_days",
        ),
        (
            "[memory]\ndecay_half_life_days = -3.0",
            "memory.decay_half_life_days",
        ),
    ] {
        let (cfg, _dir) = load_text(text);
        match cfg {
            Err(ConfigError::InvalidValue { key: k, .. }) => assert_eq!(k, key, "{text}"),
            other => panic!("{text}: expected an invalid {key}, got {other:?}"),
        }
    }
    let (cfg, _dir) = load_text("[memory]\nembeder = \"x/y\"");
    let message = cfg.unwrap_err().to_string();
    assert!(message.contains("embeder"), "{message}");
}
