//! Server-sent events, parsed incrementally from the bytes of a response.
//!
//! Only what chat-completion streams use: `data:` fields (several lines of
//! one event are joined with `\n`, as the SSE spec says), events ended by a
//! blank line, comments (`:`) and other fields ignored, `\n` or `\r\n` line
//! ends. Lines are split on the `\n` byte, which never occurs inside a
//! multi-byte UTF-8 character, so a character split across network chunks
//! is reassembled before it is decoded.

/// The longest line accepted: a server that never sends a newline must not
/// make troupe buffer without bound.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Why the bytes are not an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A line is not UTF-8.
    NotUtf8,
    /// A line is longer than [`MAX_LINE_BYTES`].
    LineTooLong,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::NotUtf8 => write!(f, "an event stream line is not UTF-8"),
            SseError::LineTooLong => {
                write!(
                    f,
                    "an event stream line is longer than {MAX_LINE_BYTES} bytes"
                )
            }
        }
    }
}

/// Turns chunks of bytes into the `data` of complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
    /// Whether any `data:` field was seen, so that a body with none can be
    /// told from an empty stream.
    pub saw_data: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds `bytes`; returns the data of every event they complete.
    ///
    /// # Errors
    /// When a line is not UTF-8 or too long.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, SseError> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut events)?;
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE_BYTES {
            return Err(SseError::LineTooLong);
        }
        Ok(events)
    }

    /// The end of the body: an event not followed by a blank line still
    /// counts (some servers close the connection right after the last one).
    ///
    /// # Errors
    /// When the last line is not UTF-8.
    pub fn finish(&mut self) -> Result<Vec<String>, SseError> {
        let mut events = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut events)?;
        }
        events.extend(self.data.take());
        Ok(events)
    }

    fn line_done(&mut self, line: &[u8], events: &mut Vec<String>) -> Result<(), SseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            events.extend(self.data.take());
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            self.saw_data = true;
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let body = "data: {\"a\":1}\n\n: comment\nevent: x\ndata: é\r\n\r\ndata: [DONE]\n\n";
        let bytes = body.as_bytes();
        for split in 0..bytes.len() {
            let mut p = SseParser::new();
            let mut events = p.feed(&bytes[..split]).unwrap();
            events.extend(p.feed(&bytes[split..]).unwrap());
            events.extend(p.finish().unwrap());
            assert_eq!(events, ["{\"a\":1}", "é", "[DONE]"], "split at {split}");
        }
    }

    #[test]
    fn multi_line_data_is_joined_and_a_last_event_without_blank_line_counts() {
        let mut p = SseParser::new();
        let mut events = p.feed(b"data: one\ndata:two\n\ndata: last").unwrap();
        events.extend(p.finish().unwrap());
        assert_eq!(events, ["one\ntwo", "last"]);
    }

    #[test]
    fn a_body_without_data_is_noticed() {
        let mut p = SseParser::new();
        let events = p.feed(b"<html>oops</html>\n\n").unwrap();
        assert!(events.is_empty());
        assert!(!p.saw_data);
    }
}
