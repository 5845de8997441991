//! Turning a request's token pieces into streamed text.
//!
//! Two things keep a piece from being streamed as soon as it is decoded:
//! bytes of a UTF-8 character split across tokens (held until the character
//! is complete), and text that could be the start of a stop string (held
//! until it either completes the stop string, which ends generation and is
//! dropped, or stops matching). So the streamed pieces are valid UTF-8 and
//! concatenate to exactly the final output.

/// What happened to the output after one piece.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// Text that is now safe to stream (may be empty).
    pub(crate) emit: String,
    /// The output contains a stop string; it was cut there.
    pub(crate) stopped: bool,
}

/// The output of one request.
#[derive(Debug)]
pub(crate) struct OutputText {
    /// Bytes of an incomplete UTF-8 character.
    partial: Vec<u8>,
    /// Decoded output so far.
    text: String,
    /// How much of `text` has been streamed.
    emitted: usize,
    stops: Vec<String>,
}

impl OutputText {
    /// An empty output watching for `stops` (none of them empty).
    pub(crate) fn new(stops: Vec<String>) -> Self {
        Self {
            partial: Vec::new(),
            text: String::new(),
            emitted: 0,
            stops,
        }
    }

    /// Adds a token's bytes.
    pub(crate) fn push(&mut self, piece: &[u8]) -> Pushed {
        let from = self.text.len();
        self.decode(piece);
        if let Some(at) = self.find_stop(from) {
            self.text.truncate(at);
            return Pushed {
                emit: self.take_emit(at),
                stopped: true,
            };
        }
        let safe = self.text.len() - self.held_back();
        Pushed {
            emit: self.take_emit(safe),
            stopped: false,
        }
    }

    /// Ends the output (no stop string came): flushes held-back text and
    /// any incomplete character (as U+FFFD). Returns what is left to stream.
    pub(crate) fn finish(&mut self) -> String {
        if !self.partial.is_empty() {
            self.text.push_str(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
        self.take_emit(self.text.len())
    }

    /// The whole output so far.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    fn decode(&mut self, piece: &[u8]) {
        self.partial.extend_from_slice(piece);
        let mut rest: &[u8] = &self.partial;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    self.text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    // `valid_up_to` marks the end of valid UTF-8, so this cannot fail.
                    self.text
                        .push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match error.error_len() {
                        // Incomplete character at the end: wait for the next piece.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(bad) => {
                            self.text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let drop_to = self.partial.len() - keep;
        self.partial.drain(..drop_to);
    }

    /// Earliest stop string in the text that starts at or after `emitted`
    /// and ends after `from` (earlier ones would have been found before).
    fn find_stop(&self, from: usize) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|stop| {
                let start = floor_char_boundary(
                    &self.text,
                    from.saturating_sub(stop.len()).max(self.emitted),
                );
                self.text[start..].find(stop.as_str()).map(|i| start + i)
            })
            .min()
    }

    /// Length of the longest suffix of the text that is a proper prefix of a
    /// stop string.
    fn held_back(&self) -> usize {
        let unsent = &self.text[self.emitted..];
        self.stops
            .iter()
            .filter_map(|stop| {
                (1..stop.len().min(unsent.len() + 1))
                    .rev()
                    .find(|&k| stop.is_char_boundary(k) && unsent.ends_with(&stop[..k]))
            })
            .max()
            .unwrap_or(0)
    }

    fn take_emit(&mut self, upto: usize) -> String {
        if upto <= self.emitted {
            return String::new();
        }
        let piece = self.text[self.emitted..upto].to_owned();
        self.emitted = upto;
        piece
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, String, bool) {
        let mut out = OutputText::new(stops.iter().map(|s| s.to_string()).collect());
        let mut streamed = Vec::new();
        let mut stopped = false;
        for piece in pieces {
            let pushed = out.push(piece);
            streamed.push(pushed.emit);
            if pushed.stopped {
                stopped = true;
                break;
            }
        }
        if !stopped {
            streamed.push(out.finish());
        }
        (streamed, out.text().to_owned(), stopped)
    }

    #[test]
    fn multibyte_characters_split_across_tokens_are_held_until_complete() {
        let euro = "€".as_bytes();
        let (streamed, text, _) = run(&[], &[b"a", &euro[..1], &euro[1..], b"b"]);
        assert_eq!(streamed, ["a", "", "€", "b", ""]);
        assert_eq!(text, "a€b");
    }

    #[test]
    fn a_stop_string_across_pieces_is_cut_and_never_streamed() {
        let (streamed, text, stopped) = run(&["</end>"], &[b"hello </", b"en", b"d> more"]);
        assert!(stopped);
        assert_eq!(text, "hello ");
        assert_eq!(streamed.concat(), "hello ");
        assert_eq!(streamed[0], "hello ");
    }

    #[test]
    fn held_back_text_that_stops_matching_is_released() {
        let (streamed, text, stopped) = run(&["STOP"], &[b"ab ST", b"ART", b" x"]);
        assert!(!stopped);
        assert_eq!(streamed, ["ab ", "START", " x", ""]);
        assert_eq!(text, "ab START x");
    }

    #[test]
    fn finish_flushes_held_text_and_invalid_bytes() {
        let (streamed, text, stopped) = run(&["zz"], &[b"a z", &[0xE2, 0x82]]);
        assert!(!stopped);
        assert_eq!(text, "a z\u{FFFD}");
        assert_eq!(streamed.concat(), text);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (_, text, _) = run(&[], &[&[b'x', 0xFF, b'y']]);
        assert_eq!(text, "x\u{FFFD}y");
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        let (_, text, stopped) = run(&["world", "lo w"], &[b"hello world"]);
        assert!(stopped);
        assert_eq!(text, "hel");
    }
}
