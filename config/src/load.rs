//! Finding, reading and layering the configuration.
//!
//! Order: defaults, then the file (`--config`, else `$TROUPE_CONFIG`, else
//! `<platform config dir>/troupe/troupe.toml` when it exists), then
//! `TROUPE_*` environment variables. The environment is passed in rather than
//! read here so that tests (and embedders) control it.

use crate::raw::RawConfig;
use crate::resolved::{resolve, Config};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The variable that names a config file.
pub const CONFIG_ENV: &str = "TROUPE_CONFIG";
const ENV_PREFIX: &str = "TROUPE_";

/// What [`load`] is told.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// A file named on the command line (`--config`); it must exist.
    pub explicit: Option<PathBuf>,
    /// The environment, as `(name, value)` pairs; usually `std::env::vars()`.
    pub env: Vec<(String, String)>,
    /// Whether to look in the platform config dir when nothing names a file.
    pub platform_default: bool,
}

impl LoadOptions {
    /// Options for the running process: its environment and the platform
    /// config dir, plus an optional `--config` path.
    pub fn from_process(explicit: Option<PathBuf>) -> LoadOptions {
        LoadOptions {
            explicit,
            env: std::env::vars().collect(),
            platform_default: true,
        }
    }
}

/// Where a configuration came from, so that errors can name it.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Keys set by environment variables: key path → variable name.
    pub env_keys: BTreeMap<String, String>,
}

impl ConfigSource {
    /// Where the value of `key` came from, in words.
    pub fn origin_of(&self, key: &str) -> String {
        if let Some(var) = self.env_keys.get(key) {
            return format!("environment variable {var}");
        }
        match &self.file {
            Some(p) => p.display().to_string(),
            None => "the built-in defaults".to_string(),
        }
    }

    /// Relative paths in the file are relative to the file's directory.
    pub(crate) fn base_dir(&self) -> PathBuf {
        self.file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    pub(crate) fn invalid(&self, key: &str, reason: &str) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_string(),
            origin: self.origin_of(key),
            reason: reason.to_string(),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file named explicitly does not exist.
    #[error("config file {path} (from {named_by}) does not exist")]
    NotFound {
        /// The missing file.
        path: PathBuf,
        /// `--config` or `TROUPE_CONFIG`.
        named_by: String,
    },
    /// The file exists but could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key troupe does not know (often a typo).
    #[error("unknown config key `{key}` in {origin}{hint}")]
    UnknownKey {
        /// The full key path, e.g. `inference.threadz`.
        key: String,
        /// The file or environment variable it came from.
        origin: String,
        /// The keys that are allowed there, when known.
        hint: String,
    },
    /// A value of the wrong type or out of range.
    #[error("invalid value for `{key}` in {origin}: {reason}")]
    InvalidValue {
        /// The full key path.
        key: String,
        /// The file or environment variable it came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Loads, layers and validates the configuration.
pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
    let file = locate(opts)?;
    let mut table = match &file {
        Some(path) => read_table(path)?,
        None => toml::Table::new(),
    };
    let mut source = ConfigSource {
        file,
        env_keys: BTreeMap::new(),
    };
    let mut env_values = BTreeMap::new();
    for (var, value) in &opts.env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if var == CONFIG_ENV || rest.is_empty() {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        set_path(&mut table, &key, parse_env_value(value));
        source.env_keys.insert(key.clone(), var.clone());
        env_values.insert(key, value.clone());
    }
    // An environment value that looked like a number or boolean but lands on
    // a string key is retried as the string it was written as.
    let raw = loop {
        match deserialize(&table) {
            Ok(raw) => break raw,
            Err((key, message, is_unknown)) => {
                if !is_unknown {
                    if let Some(text) = env_values.remove(&key) {
                        set_path(&mut table, &key, toml::Value::String(text));
                        continue;
                    }
                }
                return Err(if is_unknown {
                    ConfigError::UnknownKey {
                        origin: source.origin_of(&key),
                        key,
                        hint: message,
                    }
                } else {
                    source.invalid(&key, &message)
                });
            }
        }
    };
    resolve(raw, source)
}

fn locate(opts: &LoadOptions) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(path) = &opts.explicit {
        return must_exist(path, "--config").map(Some);
    }
    if let Some((_, value)) = opts.env.iter().find(|(k, _)| k == CONFIG_ENV) {
        if !value.is_empty() {
            return must_exist(Path::new(value), CONFIG_ENV).map(Some);
        }
    }
    if opts.platform_default {
        if let Some(dir) = dirs::config_dir() {
            let path = dir.join("troupe").join("troupe.toml");
            if path.is_file() {
                return Ok(Some(path));
            }
        }
    }
    Ok(None)
}

fn must_exist(path: &Path, named_by: &str) -> Result<PathBuf, ConfigError> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(ConfigError::NotFound {
            path: path.to_path_buf(),
            named_by: named_by.to_string(),
        })
    }
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
}

/// Deserialises, returning on failure the key path, the message and whether
/// the key is unknown (as opposed to having a bad value).
fn deserialize(table: &toml::Table) -> Result<RawConfig, (String, String, bool)> {
    let value = toml::Value::Table(table.clone());
    serde_path_to_error::deserialize::<_, RawConfig>(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        match message.strip_prefix("unknown field `") {
            Some(rest) => {
                let field = rest.split('`').next().unwrap_or_default();
                let key = match path.as_str() {
                    "." | "" => field.to_string(),
                    p if p.ends_with(field) => p.to_string(),
                    p => format!("{p}.{field}"),
                };
                let hint = rest
                    .split_once(", expected ")
                    .map(|(_, exp)| format!(" (expected {exp})"))
                    .unwrap_or_default();
                (key, hint, true)
            }
            None => (path, message, false),
        }
    })
}

fn parse_env_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut cur = table;
    for part in parts {
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(t) = entry else {
            return;
        };
        cur = t;
    }
    cur.insert(last.to_string(), value);
}
