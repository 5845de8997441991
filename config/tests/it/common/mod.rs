//! What the configuration tests share: a file to load and load options.
// Each test file uses only some of these.
#![allow(dead_code)]

use std::path::PathBuf;
use troupe_config::{load, Config, ConfigError, LoadOptions};

/// Writes `text` as `troupe.toml` in `dir`.
pub(crate) fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("troupe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Options loading `file` (if any) with `env` as the environment and no
/// platform default.
pub(crate) fn opts(file: Option<PathBuf>, env: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        explicit: file,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        platform_default: false,
    }
}

/// Loads `text` as the only configuration file.
pub(crate) fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, text);
    load(&opts(Some(path), &[]))
}

/// The key and reason of an invalid-value error.
pub(crate) fn invalid_key(err: ConfigError) -> (String, String) {
    match err {
        ConfigError::InvalidValue { key, reason, .. } => (key, reason),
        other => panic!("expected an invalid value, got {other}"),
    }
}
