//! The sentence-transformers files of a model: which modules follow the
//! transformer (`modules.json`), how token states become one vector
//! (`1_Pooling/config.json`), and how long an input may be
//! (`sentence_bert_config.json`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::pooling::Pooling;
use super::source::ModelFiles;
use super::EmbedError;

/// What the sentence-transformers files say, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentenceConfig {
    /// How token states are pooled.
    pub pooling: Pooling,
    /// The pooling config's `word_embedding_dimension` and that file, for
    /// the loader to check against the transformer's width.
    pub pooling_width: Option<(usize, PathBuf)>,
    /// Whether a `Normalize` module follows the pooling.
    pub normalize: bool,
    /// `max_seq_length`, when the model says.
    pub max_seq_length: Option<usize>,
    /// Whether inputs are lower-cased before tokenising.
    pub do_lower_case: bool,
}

const TRANSFORMER: &str = "sentence_transformers.models.Transformer";
const POOLING: &str = "sentence_transformers.models.Pooling";
const NORMALIZE: &str = "sentence_transformers.models.Normalize";

impl SentenceConfig {
    /// Reads the files through `files`. `modules.json` and the pooling
    /// config are required: without them the pooling would be a guess, and
    /// a wrong guess gives vectors that look fine and compare badly.
    pub(crate) fn read(files: &ModelFiles) -> Result<Self, EmbedError> {
        let modules_path = files.require("modules.json")?;
        let modules = read_json(&modules_path)?;
        let bad = |reason: String| EmbedError::BadFile {
            path: modules_path.clone(),
            reason,
        };
        let list = modules
            .as_array()
            .ok_or_else(|| bad("expected a list of modules".to_owned()))?;
        let mut pooling = None;
        let mut normalize = false;
        for (position, module) in list.iter().enumerate() {
            let kind = module
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("module {position} has no \"type\"")))?;
            let dir = module.get("path").and_then(Value::as_str).unwrap_or("");
            // A module's folder lies inside the model: never read files
            // elsewhere because a modules.json says so.
            if dir.starts_with('/') || dir.split(['/', '\\']).any(|part| part == "..") {
                return Err(bad(format!(
                    "module {position} has path {dir:?}, outside the model"
                )));
            }
            match kind {
                TRANSFORMER if position == 0 => {}
                TRANSFORMER => return Err(bad("the Transformer module must come first".into())),
                POOLING if pooling.is_none() && position > 0 => {
                    let file = if dir.is_empty() {
                        "config.json".to_owned()
                    } else {
                        format!("{}/config.json", dir.trim_end_matches('/'))
                    };
                    let path = files.require(&file)?;
                    let (modes, width) = read_pooling(&path)?;
                    pooling = Some((modes, width.map(|w| (w, path))));
                }
                POOLING => return Err(bad("one Pooling module, after the Transformer".into())),
                NORMALIZE if pooling.is_some() && !normalize => normalize = true,
                NORMALIZE => return Err(bad("Normalize must follow the Pooling module".into())),
                other => {
                    return Err(EmbedError::Unsupported {
                        path: modules_path.clone(),
                        what: format!("the module {other}"),
                    })
                }
            }
        }
        let (pooling, pooling_width) =
            pooling.ok_or_else(|| bad("there is no Pooling module".into()))?;

        let (max_seq_length, do_lower_case) = match files.find("sentence_bert_config.json")? {
            Some(path) => read_sentence_bert(&path)?,
            None => (None, false),
        };
        Ok(Self {
            pooling,
            pooling_width,
            normalize,
            max_seq_length,
            do_lower_case,
        })
    }
}

/// `1_Pooling/config.json`: the `pooling_mode_*` flags, in the order
/// sentence-transformers concatenates them, and `word_embedding_dimension`.
fn read_pooling(path: &Path) -> Result<(Pooling, Option<usize>), EmbedError> {
    let config = read_json(path)?;
    let bad = |reason: String| EmbedError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let object = config
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".into()))?;
    let flag = |key: &str| -> Result<bool, EmbedError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(bad(format!("{key} is {other}, not true or false"))),
        }
    };
    let pooling = Pooling {
        cls: flag("pooling_mode_cls_token")?,
        max: flag("pooling_mode_max_tokens")?,
        mean: flag("pooling_mode_mean_tokens")?,
        mean_sqrt_len: flag("pooling_mode_mean_sqrt_len_tokens")?,
    };
    for key in object.keys().filter(|k| k.starts_with("pooling_mode_")) {
        let known = matches!(
            key.as_str(),
            "pooling_mode_cls_token"
                | "pooling_mode_max_tokens"
                | "pooling_mode_mean_tokens"
                | "pooling_mode_mean_sqrt_len_tokens"
        );
        if !known && flag(key)? {
            return Err(EmbedError::Unsupported {
                path: path.to_path_buf(),
                what: format!("the pooling mode {key}"),
            });
        }
    }
    if !(pooling.cls || pooling.max || pooling.mean || pooling.mean_sqrt_len) {
        return Err(bad("no pooling_mode_* is true".into()));
    }
    let width = match object.get("word_embedding_dimension") {
        None | Some(Value::Null) => None,
        Some(dim) => Some(
            dim.as_u64()
                .and_then(|w| usize::try_from(w).ok())
                .ok_or_else(|| bad(format!("word_embedding_dimension is {dim}")))?,
        ),
    };
    Ok((pooling, width))
}

/// `sentence_bert_config.json`: `max_seq_length` and `do_lower_case`.
fn read_sentence_bert(path: &Path) -> Result<(Option<usize>, bool), EmbedError> {
    let config = read_json(path)?;
    let bad = |reason: String| EmbedError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let max_seq_length = match config.get("max_seq_length") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(n) if n >= 2 => Some(
                usize::try_from(n).map_err(|_| bad(format!("max_seq_length {n} is too large")))?,
            ),
            _ => {
                return Err(bad(format!(
                    "max_seq_length is {value}, not a number of tokens >= 2"
                )))
            }
        },
    };
    let do_lower_case = config
        .get("do_lower_case")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((max_seq_length, do_lower_case))
}

/// A JSON file, with errors that name it.
pub(crate) fn read_json(path: &Path) -> Result<Value, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmbedError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| EmbedError::BadFile {
        path: path.to_path_buf(),
        reason: format!("not JSON: {e}"),
    })
}
