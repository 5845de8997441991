//! What a tool call gives back to the model: text it reads, structured data
//! the runtime and UX use, and flags saying whether it was cut short or
//! reports a failure. Failures the model should react to (a missing file, a
//! denied call, a timeout) are observations, not Rust errors, so the tool loop
//! carries on and the model can try something else.

use serde::{Deserialize, Serialize};

/// The result of a tool call as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// What the model reads.
    pub text: String,
    /// Structured details (exit codes, paths, counts) for the runtime and UX.
    /// Kept small: content goes in `text`.
    pub data: serde_json::Value,
    /// Whether `text` was cut to the configured size.
    pub truncated: bool,
    /// Whether the call failed in a way the model should react to.
    pub is_error: bool,
}

impl Observation {
    /// A successful observation.
    pub fn ok(text: impl Into<String>, data: serde_json::Value) -> Observation {
        Observation {
            text: text.into(),
            data,
            truncated: false,
            is_error: false,
        }
    }

    /// A failure the model should see, with no structured data.
    pub fn error(text: impl Into<String>) -> Observation {
        Observation::error_with(text, serde_json::Value::Null)
    }

    /// A failure the model should see, with structured data.
    pub fn error_with(text: impl Into<String>, data: serde_json::Value) -> Observation {
        Observation {
            text: text.into(),
            data,
            truncated: false,
            is_error: true,
        }
    }

    /// Cuts `text` to at most `max_bytes` (on a character boundary) and
    /// appends a note saying how much was shown. The note itself may take the
    /// text slightly past `max_bytes`.
    pub fn truncated_to(mut self, max_bytes: usize) -> Observation {
        if let Some(cut) = truncate_with_note(&self.text, max_bytes, self.text.len()) {
            self.text = cut;
            self.truncated = true;
        }
        self
    }
}

/// The note appended to text that was cut.
pub fn truncation_note(shown: usize, total: usize) -> String {
    format!("[output truncated: {shown} of {total} bytes shown]")
}

/// The longest prefix of `text` no longer than `max_bytes` that ends on a
/// character boundary.
pub fn utf8_prefix(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to `max_bytes` with a note naming `total` (the size of the whole
/// output, which may be more than `text` when the caller stopped reading
/// early), or `None` when nothing was cut.
pub fn truncate_with_note(text: &str, max_bytes: usize, total: usize) -> Option<String> {
    if text.len() <= max_bytes && total <= text.len() {
        return None;
    }
    let head = utf8_prefix(text, max_bytes);
    let mut out = String::with_capacity(head.len() + 64);
    out.push_str(head);
    if !head.is_empty() && !head.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&truncation_note(head.len(), total));
    Some(out)
}
