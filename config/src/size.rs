//! Byte sizes as people write them in config files and flags (`4GiB`,
//! `512MiB`, `800MB`) and as troupe prints them.

/// A size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason} (examples: 4GiB, 512MiB, 2G, 1000000)")]
pub struct ParseSizeError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Reads a byte size such as `4GiB`, `512MiB`, `2G`, `1.5GiB`, `800MB` or
/// `1000000`.
///
/// Units are case-insensitive. `KiB`/`MiB`/`GiB`/`TiB` and the one-letter
/// `K`/`M`/`G`/`T` are powers of 1024 (as in Docker's `--memory`); `KB`/`MB`/
/// `GB`/`TB` are powers of 1000; `B` or no unit means bytes. Fractions are
/// allowed and rounded down to whole bytes.
///
/// # Errors
/// [`ParseSizeError`] naming the input when the number or unit is not
/// understood, or the size overflows 64 bits.
pub fn parse_size(input: &str) -> Result<u64, ParseSizeError> {
    let error = |reason: &str| ParseSizeError {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(error("it does not start with a number"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(error(
                "unknown unit; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB",
            ))
        }
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| error("it is larger than 2^64 bytes"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| error("the number is not a decimal number"))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(error("it is larger than 2^64 bytes"));
    }
    Ok(bytes as u64)
}

/// Writes `bytes` for people: `1.50 GiB`, `312.00 KiB`, `17 B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}
