//! GBNF for "an integer between `lo` and `hi`": the decimal digits of every
//! value in the range and nothing else, built like the classic regex for a
//! numeric range (split by digit count, then by leading digit).

/// Integers have at most this many digits in every grammar: every one fits
/// an `i64`, and a random model cannot emit digits forever.
pub(crate) const MAX_DIGITS: u32 = 16;

/// The largest magnitude the grammars emit: `MAX_DIGITS` nines.
pub(crate) fn limit() -> i128 {
    10i128.pow(MAX_DIGITS) - 1
}

/// A GBNF expression for the integers in `[lo, hi]` (both within
/// `±limit()`, `lo <= hi`), without leading zeros or `-0`.
pub(crate) fn range_expr(lo: i128, hi: i128) -> String {
    let mut alts = Vec::new();
    if lo < 0 {
        let smallest = if hi < 0 { -hi } else { 1 };
        alts.push(format!("\"-\" ( {} )", non_negative(smallest, -lo)));
    }
    if hi >= 0 {
        alts.push(non_negative(lo.max(0), hi));
    }
    alts.join(" | ")
}

fn non_negative(lo: i128, hi: i128) -> String {
    let (lo_len, hi_len) = (lo.to_string().len() as u32, hi.to_string().len() as u32);
    let mut alts = Vec::new();
    for len in lo_len..=hi_len {
        let first = if len == lo_len {
            lo
        } else {
            10i128.pow(len - 1)
        };
        let last = if len == hi_len {
            hi
        } else {
            10i128.pow(len) - 1
        };
        alts.push(same_length(
            first.to_string().as_bytes(),
            last.to_string().as_bytes(),
        ));
    }
    alts.join(" | ")
}

fn digit_class(lo: u8, hi: u8) -> String {
    match (lo, hi) {
        (lo, hi) if lo == hi => format!("\"{}\"", lo as char),
        (lo, hi) => format!("[{}-{}]", lo as char, hi as char),
    }
}

fn any_digits(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => " [0-9]".to_owned(),
        n => format!(" [0-9]{{{n}}}"),
    }
}

/// Digit strings of one length between `lo` and `hi` (inclusive).
fn same_length(lo: &[u8], hi: &[u8]) -> String {
    let Some((&l, lo_rest)) = lo.split_first() else {
        return String::new();
    };
    let Some((&h, hi_rest)) = hi.split_first() else {
        return String::new();
    };
    let rest_len = lo_rest.len();
    if lo_rest.iter().all(|d| *d == b'0') && hi_rest.iter().all(|d| *d == b'9') {
        return format!("{}{}", digit_class(l, h), any_digits(rest_len));
    }
    if l == h {
        return format!(
            "{} ( {} )",
            digit_class(l, l),
            same_length(lo_rest, hi_rest)
        );
    }
    let nines = vec![b'9'; rest_len];
    let zeros = vec![b'0'; rest_len];
    let mut alts = vec![format!(
        "{} ( {} )",
        digit_class(l, l),
        same_length(lo_rest, &nines)
    )];
    if l + 1 < h {
        alts.push(format!(
            "{}{}",
            digit_class(l + 1, h - 1),
            any_digits(rest_len)
        ));
    }
    alts.push(format!(
        "{} ( {} )",
        digit_class(h, h),
        same_length(&zeros, hi_rest)
    ));
    alts.join(" | ")
}
