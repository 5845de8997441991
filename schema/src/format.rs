//! The string formats the grammar can enforce exactly (`date`, `date-time`,
//! `uuid`): their GBNF rules and the matching checks for the validator. The
//! two are written side by side so that they describe the same language.

/// A supported `format` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Date,
    DateTime,
    Uuid,
}

impl Format {
    pub(crate) fn parse(name: &str) -> Option<Format> {
        match name {
            "date" => Some(Format::Date),
            "date-time" => Some(Format::DateTime),
            "uuid" => Some(Format::Uuid),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Format::Date => "date",
            Format::DateTime => "date-time",
            Format::Uuid => "uuid",
        }
    }

    /// The builtin rule (including the quotes) for this format.
    pub(super) fn rule(self) -> &'static str {
        match self {
            Format::Date => "date-string",
            Format::DateTime => "date-time-string",
            Format::Uuid => "uuid-string",
        }
    }

    /// Whether `text` (the decoded string) is in this format's grammar.
    pub(super) fn matches(self, text: &str) -> bool {
        let bytes = text.as_bytes();
        match self {
            Format::Date => bytes.len() == 10 && full_date(bytes),
            Format::DateTime => date_time(bytes),
            Format::Uuid => uuid(bytes),
        }
    }
}

/// GBNF rules for the formats: `(name, body)`.
pub(crate) const RULES: &[(&str, &str)] = &[
    ("date-string", r#""\"" full-date "\"""#),
    (
        "full-date",
        r#"year "-" ( month31 "-" day31 | month30 "-" day30 | "02-" day28 ) | leap-year "-02-29""#,
    ),
    ("year", "[0-9]{4}"),
    (
        "leap-year",
        r#"[0-9] [0-9] ( [02468] [48] | [13579] [26] | [2468] "0" ) | ( [02468] [048] | [13579] [26] ) "00""#,
    ),
    ("month31", r#""0" [13578] | "1" [02]"#),
    ("month30", r#""0" [469] | "11""#),
    ("day28", r#""0" [1-9] | "1" [0-9] | "2" [0-8]"#),
    ("day30", r#"day28 | "29" | "30""#),
    ("day31", r#"day30 | "31""#),
    (
        "date-time-string",
        r#""\"" full-date "T" hour ":" minute ":" minute ( "." [0-9]{1,9} )? ( "Z" | [+-] hour ":" minute ) "\"""#,
    ),
    ("hour", r#"[01] [0-9] | "2" [0-3]"#),
    ("minute", "[0-5] [0-9]"),
    (
        "uuid-string",
        r#""\"" hex{8} "-" hex{4} "-" hex{4} "-" hex{4} "-" hex{12} "\"""#,
    ),
    ("hex", "[0-9a-fA-F]"),
];

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

fn full_date(bytes: &[u8]) -> bool {
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (
        digits(&bytes[..4]),
        digits(&bytes[5..7]),
        digits(&bytes[8..10]),
    ) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

fn two_digits_below(bytes: &[u8], limit: u32) -> bool {
    bytes.len() == 2 && digits(bytes).is_some_and(|n| n < limit)
}

fn date_time(bytes: &[u8]) -> bool {
    // YYYY-MM-DDTHH:MM:SS is 19 bytes; then fraction, then offset.
    if bytes.len() < 20 || !full_date(&bytes[..10]) || bytes[10] != b'T' {
        return false;
    }
    let time = &bytes[11..19];
    if !(two_digits_below(&time[0..2], 24)
        && time[2] == b':'
        && two_digits_below(&time[3..5], 60)
        && time[5] == b':'
        && two_digits_below(&time[6..8], 60))
    {
        return false;
    }
    let mut rest = &bytes[19..];
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let n = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &after_dot[n..];
    }
    match rest {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            two_digits_below(&[*h1, *h2], 24) && two_digits_below(&[*m1, *m2], 60)
        }
        _ => false,
    }
}

fn uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}
