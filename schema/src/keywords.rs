//! The scalar keywords (`minLength`/`maxLength`/`format` for strings,
//! `minimum`/`maximum` and their exclusive forms for integers, and the
//! repetition counts), read and checked for what the grammar can enforce.

use serde_json::{Map, Value};

use super::compile::{invalid, unsatisfiable, unsupported_use, Typed};
use super::format::Format;
use super::{SchemaError, MAX_REPETITION};

/// A non-negative integer keyword, at most [`MAX_REPETITION`].
pub(crate) fn count(
    map: &Map<String, Value>,
    path: &str,
    keyword: &str,
) -> Result<Option<u64>, SchemaError> {
    let Some(value) = map.get(keyword) else {
        return Ok(None);
    };
    let n = value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u32::MAX as f64)
                .map(|f| f as u64)
        })
        .ok_or_else(|| invalid(path, keyword, "must be a non-negative integer"))?;
    if n > MAX_REPETITION {
        return Err(unsupported_use(
            path,
            keyword,
            format!("{n} is more than {MAX_REPETITION}, the most llama.cpp's grammar can repeat"),
        ));
    }
    Ok(Some(n))
}

pub(crate) fn string_keywords(
    map: &Map<String, Value>,
    path: &str,
    typed: &mut Typed,
) -> Result<(), SchemaError> {
    typed.min_length = count(map, path, "minLength")?.unwrap_or(0);
    typed.max_length = count(map, path, "maxLength")?;
    if typed.max_length.is_some_and(|max| max < typed.min_length) {
        return Err(unsatisfiable(path, "`minLength` is more than `maxLength`"));
    }
    if let Some(format) = map.get("format") {
        let Some(name) = format.as_str() else {
            return Err(invalid(path, "format", "must be a string"));
        };
        let Some(format) = Format::parse(name) else {
            return Err(unsupported_use(
                path,
                "format",
                format!("format \"{name}\" cannot be enforced"),
            ));
        };
        if let Some(keyword) = ["minLength", "maxLength"]
            .into_iter()
            .find(|k| map.contains_key(*k))
        {
            return Err(unsupported_use(
                path,
                keyword,
                "length bounds together with `format`",
            ));
        }
        typed.format = Some(format);
    }
    Ok(())
}

pub(crate) fn integer_keywords(
    map: &Map<String, Value>,
    path: &str,
    typed: &mut Typed,
) -> Result<(), SchemaError> {
    let bound = |keyword: &str, inclusive_up: bool| -> Result<Option<i128>, SchemaError> {
        let Some(value) = map.get(keyword) else {
            return Ok(None);
        };
        let Some(f) = value.as_f64() else {
            return Err(invalid(path, keyword, "must be a number"));
        };
        if let Some(i) = value.as_i64() {
            return Ok(Some(i128::from(i)));
        }
        if f.abs() > 1e30 {
            return Err(unsupported_use(path, keyword, "bounds beyond ±1e30"));
        }
        // Rounding toward the allowed side turns a fractional bound into
        // the equivalent inclusive integer bound.
        Ok(Some(if inclusive_up { f.ceil() } else { f.floor() } as i128))
    };
    let mut minimum = bound("minimum", true)?;
    let mut maximum = bound("maximum", false)?;
    if let Some(exclusive) = bound("exclusiveMinimum", false)? {
        minimum = Some(minimum.map_or(exclusive + 1, |m| m.max(exclusive + 1)));
    }
    if let Some(exclusive) = bound("exclusiveMaximum", true)? {
        maximum = Some(maximum.map_or(exclusive - 1, |m| m.min(exclusive - 1)));
    }
    if let (Some(lo), Some(hi)) = (minimum, maximum) {
        if lo > hi {
            return Err(unsatisfiable(
                path,
                format!("no integer is at least {lo} and at most {hi}"),
            ));
        }
    }
    let narrow = |bound: Option<i128>, keyword: &str| {
        bound
            .map(i64::try_from)
            .transpose()
            .map_err(|_| unsupported_use(path, keyword, "bounds beyond the 64-bit integer range"))
    };
    typed.minimum = narrow(minimum, "minimum")?;
    typed.maximum = narrow(maximum, "maximum")?;
    Ok(())
}
