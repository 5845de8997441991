//! What the configuration tests share: a file to load and load options.

use std::path::PathBuf;
use troupe_config::LoadOptions;

/// Writes `text` as `troupe.toml` in `dir`.
pub fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("troupe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Options loading `file` (if any) with `env` as the environment and no
/// platform default.
pub fn opts(file: Option<PathBuf>, env: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        explicit: file,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        platform_default: false,
    }
}
