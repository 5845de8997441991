//! Reads the JSON envelope of [`super::tools::ToolMode`] while it is being
//! generated, so that a stream sends what the model writes as it writes
//! it: the text of `{"content": "..."}` as content, a call
//! `{"name": "f", "arguments": {...}}` as OpenAI streams one (the name
//! once, then the arguments' text piece by piece).
//!
//! The grammar writes the keys in the schema's order; an envelope read
//! another way (or cut short before its first value) is left to
//! [`super::tools::ToolMode::interpret`] at the end, as before.

use troupe_inference::chat::tool_calls::ToolSyntax;

/// What a piece of the envelope adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Delta {
    /// More text for the user.
    Content(String),
    /// A call of `name` begins.
    Call(String),
    /// More of the call's arguments (JSON text).
    Arguments(String),
}

/// Where the reader is in the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Before the first value: the text so far could still open either form.
    Head,
    /// In the content string; `escape` holds an escape not yet complete.
    Content { escape: String, high: Option<u16> },
    /// In the arguments value.
    Arguments {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// The value ended: what follows closes the envelope.
    Done,
    /// Not readable as it comes: interpreted whole at the end.
    Opaque,
}

/// How the answer turned out, once the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Streamed {
    /// Nothing was sent: interpret the whole text.
    Nothing,
    /// Content was sent.
    Content,
    /// A call was sent.
    Call,
}

/// Reads one envelope piece by piece.
#[derive(Debug, Clone)]
pub(super) struct EnvelopeReader {
    /// Everything generated, for the fallback.
    text: String,
    /// The part of the head not yet matched.
    head: String,
    state: State,
    call: bool,
    /// Where in `text` the arguments' value ended, once it has.
    value_end: Option<usize>,
}

/// A function name longer than this is not waited for.
const LONGEST_HEAD: usize = 512;

impl EnvelopeReader {
    pub(super) fn new() -> Self {
        Self {
            text: String::new(),
            head: String::new(),
            state: State::Head,
            call: false,
            value_end: None,
        }
    }

    /// The byte of [`EnvelopeReader::text`] just after a call's arguments,
    /// once they are complete.
    pub(super) fn value_end(&self) -> Option<usize> {
        self.value_end
    }

    /// Everything generated so far.
    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// What has been sent, once the stream ended: a call only counts as
    /// one when its arguments were whole.
    pub(super) fn streamed(&self) -> Streamed {
        match self.state {
            State::Head | State::Opaque => Streamed::Nothing,
            State::Done if self.call => Streamed::Call,
            _ => Streamed::Content,
        }
    }

    /// Takes the next piece of generated text.
    pub(super) fn push(&mut self, piece: &str) -> Vec<Delta> {
        self.text.push_str(piece);
        let mut out = Vec::new();
        let mut rest = piece.to_owned();
        if self.state == State::Head {
            self.head.push_str(piece);
            match read_head(&self.head) {
                Head::More if self.head.len() <= LONGEST_HEAD => return out,
                Head::More | Head::No => {
                    self.state = State::Opaque;
                    return out;
                }
                Head::Content(consumed) => {
                    rest = self.head[consumed..].to_owned();
                    self.state = State::Content {
                        escape: String::new(),
                        high: None,
                    };
                }
                Head::Call(name, consumed) => {
                    rest = self.head[consumed..].to_owned();
                    self.call = true;
                    out.push(Delta::Call(name));
                    self.state = State::Arguments {
                        depth: 0,
                        in_string: false,
                        escaped: false,
                    };
                }
            }
        }
        match &mut self.state {
            State::Content { escape, high } => {
                let (text, ended) = content(&rest, escape, high);
                if !text.is_empty() {
                    out.push(Delta::Content(text));
                }
                if ended {
                    self.state = State::Done;
                }
            }
            State::Arguments {
                depth,
                in_string,
                escaped,
            } => {
                let (text, ended) = arguments(&rest, depth, in_string, escaped);
                if let Some(end) = ended {
                    self.value_end = Some(self.text.len() - rest.len() + end);
                    self.state = State::Done;
                }
                if !text.is_empty() {
                    out.push(Delta::Arguments(text));
                }
            }
            State::Head | State::Done | State::Opaque => {}
        }
        out
    }
}

/// Reads an answer in the model's own call syntax ([`ToolSyntax`]) while it
/// is generated: text before the first call goes out as content as it
/// comes (held back only where it could be the start of the opening
/// marker); a Hermes call goes out as OpenAI streams one (its name, then
/// its arguments piece by piece), each call with its own index. Calls of
/// syntaxes without a marker per call (Mistral's array) wait for the end,
/// when [`ToolSyntax::parse`] reads the whole answer.
#[derive(Debug, Clone)]
pub(super) struct CallReader {
    syntax: ToolSyntax,
    /// Everything generated.
    text: String,
    /// Bytes of `text` sent as content.
    sent: usize,
    /// Where the calls began, once the model opened one.
    calls_start: Option<usize>,
    /// The call being read: where its JSON starts in `text`, and its reader.
    current: Option<(usize, EnvelopeReader)>,
    /// Where to look for the next call's marker.
    search_from: usize,
    /// Calls whose name was sent, and of those, calls sent whole.
    started: usize,
    completed: usize,
    /// The answer can no longer open a call (a syntax whose call must open
    /// the answer, which began otherwise).
    plain: bool,
}

impl CallReader {
    pub(super) fn new(syntax: ToolSyntax) -> Self {
        Self {
            syntax,
            text: String::new(),
            sent: 0,
            calls_start: None,
            current: None,
            search_from: 0,
            started: 0,
            completed: 0,
            plain: false,
        }
    }

    /// Everything generated so far.
    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// Text generated but sent neither as content nor as call deltas: the
    /// tail held back because it could have been the marker, or the calls
    /// when none was streamed (they are text after all if they do not read
    /// as calls, e.g. cut short by the length limit).
    pub(super) fn unsent(&self) -> &str {
        match self.calls_start {
            Some(at) if self.started == 0 => &self.text[at..],
            Some(_) => "",
            None => &self.text[self.sent..],
        }
    }

    /// Text generated but not sent as content (the calls included, whether
    /// or not they went out as deltas): what a reader that sends calls
    /// only whole at the end has left when they do not read as calls.
    pub(super) fn not_content(&self) -> &str {
        match self.calls_start {
            Some(at) => &self.text[at..],
            None => &self.text[self.sent..],
        }
    }

    /// Calls whose name was sent, and calls sent whole.
    pub(super) fn calls_sent(&self) -> (usize, usize) {
        (self.started, self.completed)
    }

    /// Takes the next piece of generated text.
    pub(super) fn push(&mut self, piece: &str) -> Vec<Delta> {
        self.text.push_str(piece);
        let mut out = Vec::new();
        let opener = self.syntax.opener();
        if self.calls_start.is_none() && (self.plain || self.syntax.opens_the_answer()) {
            self.read_opening(&mut out);
            return out;
        }
        if self.calls_start.is_none() {
            if let Some(at) = self.text[self.sent..].find(opener).map(|at| at + self.sent) {
                // Space before the calls is not content (as the whole
                // answer's reading trims it).
                let before = self.text[self.sent..at].trim_end();
                if !before.is_empty() {
                    out.push(Delta::Content(before.to_owned()));
                }
                self.sent = self.text.len();
                self.calls_start = Some(at);
                self.search_from = at;
            } else {
                // Hold back a tail that could still become the marker, and
                // the space before it, which is not content if a call follows.
                let held = (1..opener.len())
                    .rev()
                    .find(|&n| self.text.ends_with(&opener[..n]))
                    .unwrap_or(0);
                let upto = self.sent
                    + self.text[self.sent..self.text.len() - held]
                        .trim_end()
                        .len();
                if upto > self.sent {
                    out.push(Delta::Content(self.text[self.sent..upto].to_owned()));
                    self.sent = upto;
                }
                return out;
            }
        }
        self.sent = self.text.len();
        if self.syntax.closer().is_some() {
            self.read_calls(&mut out);
        }
        out
    }

    /// The start of an answer whose call can only open it: held while it
    /// could still be the marker, then a call (read whole at the end) or
    /// text, streamed from then on.
    fn read_opening(&mut self, out: &mut Vec<Delta>) {
        let opener = self.syntax.opener();
        if !self.plain {
            let trimmed = self.text.trim_start();
            if trimmed.starts_with(opener) {
                self.calls_start = Some(self.text.len() - trimmed.len());
                self.sent = self.text.len();
                return;
            }
            if opener.starts_with(trimmed) {
                return;
            }
            self.plain = true;
        }
        if self.sent < self.text.len() {
            out.push(Delta::Content(self.text[self.sent..].to_owned()));
            self.sent = self.text.len();
        }
    }

    /// Feeds the text after each call's marker to a reader of its JSON.
    fn read_calls(&mut self, out: &mut Vec<Delta>) {
        let opener = self.syntax.opener();
        loop {
            if self.current.is_none() {
                let Some(at) = self.text[self.search_from..].find(opener) else {
                    return;
                };
                let start = self.search_from + at + opener.len();
                self.current = Some((start, EnvelopeReader::new()));
                self.search_from = start;
            }
            let Some((start, reader)) = self.current.as_mut() else {
                return;
            };
            let fed = *start + reader.text().len();
            for delta in reader.push(&self.text[fed..]) {
                match delta {
                    Delta::Call(name) => {
                        self.started += 1;
                        out.push(Delta::Call(name));
                    }
                    Delta::Arguments(text) => out.push(Delta::Arguments(text)),
                    // The grammar writes calls only; a content form is
                    // left to the whole answer's reading.
                    Delta::Content(_) => {}
                }
            }
            match reader.value_end() {
                Some(end) => {
                    self.completed += 1;
                    self.search_from = *start + end;
                    self.current = None;
                }
                None => return,
            }
        }
    }
}

enum Head {
    /// Could still become an envelope's head.
    More,
    /// Cannot.
    No,
    /// `{"content": "` ends at this byte.
    Content(usize),
    /// `{"name": "NAME", "arguments":` ends at this byte.
    Call(String, usize),
}

/// A cursor over the head's text; `None` means the text ran out.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn space(&mut self) {
        let skipped = self.text[self.at..].len() - self.text[self.at..].trim_start().len();
        self.at += skipped;
    }

    /// `Some(true)` when `literal` follows (after spaces), `Some(false)` when
    /// something else does, `None` when the text ends inside it.
    fn literal(&mut self, literal: &str) -> Option<bool> {
        self.space();
        let rest = &self.text[self.at..];
        if rest.starts_with(literal) {
            self.at += literal.len();
            Some(true)
        } else if literal.starts_with(rest) {
            None
        } else {
            Some(false)
        }
    }

    /// A JSON string without escapes (a function name).
    fn name(&mut self) -> Option<Result<String, ()>> {
        if !self.literal("\"")? {
            return Some(Err(()));
        }
        let rest = &self.text[self.at..];
        let end = rest.find(['"', '\\'])?;
        if rest.as_bytes()[end] == b'\\' {
            return Some(Err(()));
        }
        self.at += end + 1;
        Some(Ok(rest[..end].to_owned()))
    }
}

fn read_head(text: &str) -> Head {
    let mut cursor = Cursor { text, at: 0 };
    let step = |found: Option<bool>| match found {
        None => Err(Head::More),
        Some(false) => Err(Head::No),
        Some(true) => Ok(()),
    };
    let mut read = || -> Result<Head, Head> {
        step(cursor.literal("{"))?;
        step(cursor.literal("\""))?;
        match cursor.literal("content\"") {
            Some(true) => {
                step(cursor.literal(":"))?;
                step(cursor.literal("\""))?;
                return Ok(Head::Content(cursor.at));
            }
            None => return Err(Head::More),
            Some(false) => {}
        }
        step(cursor.literal("name\""))?;
        step(cursor.literal(":"))?;
        let name = match cursor.name() {
            None => return Err(Head::More),
            Some(Err(())) => return Err(Head::No),
            Some(Ok(name)) => name,
        };
        step(cursor.literal(","))?;
        step(cursor.literal("\"arguments\""))?;
        step(cursor.literal(":"))?;
        Ok(Head::Call(name, cursor.at))
    };
    match read() {
        Ok(head) | Err(head) => head,
    }
}

/// Decodes the content string's text in `piece`; whether it ended. A
/// malformed escape or an unpaired surrogate becomes U+FFFD.
fn content(piece: &str, escape: &mut String, high: &mut Option<u16>) -> (String, bool) {
    let mut out = String::new();
    for c in piece.chars() {
        if !escape.is_empty() {
            escape.push(c);
            if !escape.starts_with("\\u") {
                if high.take().is_some() {
                    out.push('\u{FFFD}');
                }
                out.push(simple_escape(escape));
                escape.clear();
                continue;
            }
            if escape.len() == 2 || (c.is_ascii_hexdigit() && escape.len() < 6) {
                continue;
            }
            if escape.len() == 6 && c.is_ascii_hexdigit() {
                let unit = u16::from_str_radix(&escape[2..], 16).unwrap_or(0xFFFD);
                escape.clear();
                unicode_escape(unit, high, &mut out);
                continue;
            }
            // Not a hex digit: the escape is broken; the character is text.
            escape.clear();
            out.push('\u{FFFD}');
        }
        if c != '\\' && high.take().is_some() {
            out.push('\u{FFFD}');
        }
        match c {
            '"' => return (out, true),
            '\\' => escape.push(c),
            c => out.push(c),
        }
    }
    (out, false)
}

/// `\\"`, `\\n` and the rest; anything else is U+FFFD.
fn simple_escape(escape: &str) -> char {
    match escape {
        "\\\"" => '"',
        "\\\\" => '\\',
        "\\/" => '/',
        "\\b" => '\u{8}',
        "\\f" => '\u{c}',
        "\\n" => '\n',
        "\\r" => '\r',
        "\\t" => '\t',
        _ => '\u{FFFD}',
    }
}

/// One `\\uXXXX` unit: a high surrogate waits for its low half; an
/// unpaired one becomes U+FFFD.
fn unicode_escape(unit: u16, high: &mut Option<u16>, out: &mut String) {
    match (high.take(), unit) {
        (Some(h), 0xDC00..=0xDFFF) => out.extend(char::decode_utf16([h, unit]).flatten()),
        (had, unit) => {
            if had.is_some() {
                out.push('\u{FFFD}');
            }
            if (0xD800..=0xDBFF).contains(&unit) {
                *high = Some(unit);
            } else {
                out.push(char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}'));
            }
        }
    }
}

/// The arguments' text in `piece`, up to the end of their value; the byte
/// of `piece` just after the value, when it ended.
fn arguments(
    piece: &str,
    depth: &mut u32,
    in_string: &mut bool,
    escaped: &mut bool,
) -> (String, Option<usize>) {
    let mut out = String::new();
    for (at, c) in piece.char_indices() {
        if *depth == 0 && c.is_whitespace() && out.is_empty() {
            continue;
        }
        out.push(c);
        if *in_string {
            match (*escaped, c) {
                (true, _) => *escaped = false,
                (false, '\\') => *escaped = true,
                (false, '"') => *in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => *in_string = true,
            '{' | '[' => *depth += 1,
            '}' | ']' => {
                *depth = depth.saturating_sub(1);
                if *depth == 0 {
                    return (out, Some(at + c.len_utf8()));
                }
            }
            _ => {}
        }
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `size` characters; the deltas joined.
    fn read(text: &str, size: usize) -> (Vec<Delta>, Streamed) {
        let mut reader = EnvelopeReader::new();
        let chars: Vec<char> = text.chars().collect();
        let mut deltas = Vec::new();
        for piece in chars.chunks(size) {
            deltas.extend(reader.push(&piece.iter().collect::<String>()));
        }
        assert_eq!(reader.text(), text);
        (join(deltas), reader.streamed())
    }

    #[test]
    fn a_call_streams_its_name_then_its_arguments_in_any_pieces() {
        let text = r#"{"name": "lookup", "arguments": {"word": "a}\"b", "n": [1, {"x": 2}]}}"#;
        for size in 1..8 {
            let (deltas, streamed) = read(text, size);
            assert_eq!(streamed, Streamed::Call);
            assert_eq!(
                deltas,
                vec![
                    Delta::Call("lookup".into()),
                    Delta::Arguments(r#"{"word": "a}\"b", "n": [1, {"x": 2}]}"#.into()),
                ],
                "pieces of {size}"
            );
        }
    }

    #[test]
    fn content_streams_decoded() {
        let text = r#"{ "content" : "Hi \"you\"\n\u00e9\ud83d\ude00 \\ end"}"#;
        for size in 1..6 {
            let (deltas, streamed) = read(text, size);
            assert_eq!(streamed, Streamed::Content);
            assert_eq!(
                deltas,
                vec![Delta::Content("Hi \"you\"\né😀 \\ end".into())]
            );
        }
    }

    #[test]
    fn broken_escapes_become_replacement_characters() {
        let text = r#"{"content": "a\uzz b \ud83d c \q d"}"#;
        let (deltas, _) = read(text, 2);
        assert_eq!(
            deltas,
            vec![Delta::Content("a\u{FFFD}zz b \u{FFFD} c \u{FFFD} d".into())]
        );
        let (deltas, _) = read(r#"{"content": "\u00é1 x"}"#, 1);
        assert_eq!(deltas, vec![Delta::Content("\u{FFFD}é1 x".into())]);
    }

    #[test]
    fn a_call_cut_short_is_not_a_finished_call() {
        let (_, streamed) = read(r#"{"name": "f", "arguments": {"a": 1"#, 3);
        assert_eq!(streamed, Streamed::Content);
    }

    #[test]
    fn other_text_is_left_for_the_end() {
        for text in [
            r#"{"arguments": {}, "name": "f"}"#,
            "plain words",
            r#"{"name": "a\"b""#,
        ] {
            assert_eq!(read(text, 3), (vec![], Streamed::Nothing), "{text}");
        }
        // Cut before the first value: nothing sent yet.
        assert_eq!(read(r#"{"name": "lookup", "argu"#, 4).1, Streamed::Nothing);
    }

    /// Joins adjacent deltas of the same kind.
    fn join(deltas: Vec<Delta>) -> Vec<Delta> {
        let mut joined: Vec<Delta> = Vec::new();
        for delta in deltas {
            match (joined.last_mut(), delta) {
                (Some(Delta::Content(a)), Delta::Content(b)) => a.push_str(&b),
                (Some(Delta::Arguments(a)), Delta::Arguments(b)) => a.push_str(&b),
                (_, delta) => joined.push(delta),
            }
        }
        joined
    }

    #[test]
    fn hermes_calls_stream_after_the_text_each_with_its_name_then_arguments() {
        let text = "Let me <b>check</b>.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"<tool_call>\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>";
        let chars: Vec<char> = text.chars().collect();
        for size in 1..9 {
            let mut reader = CallReader::new(ToolSyntax::Hermes);
            let mut deltas = Vec::new();
            for piece in chars.chunks(size) {
                deltas.extend(reader.push(&piece.iter().collect::<String>()));
            }
            assert_eq!(
                join(deltas),
                vec![
                    Delta::Content("Let me <b>check</b>.".into()),
                    Delta::Call("get_weather".into()),
                    Delta::Arguments("{\"city\": \"<tool_call>\"}".into()),
                    Delta::Call("time".into()),
                    Delta::Arguments("{}".into()),
                ],
                "pieces of {size}"
            );
            assert_eq!(reader.calls_sent(), (2, 2));
            assert_eq!(reader.unsent(), "");
            assert_eq!(reader.text(), text);
        }
    }

    #[test]
    fn text_that_only_looks_like_the_marker_is_held_then_sent() {
        let mut reader = CallReader::new(ToolSyntax::Hermes);
        assert_eq!(reader.push("a <tool"), vec![Delta::Content("a".into())]);
        assert_eq!(
            reader.push("box> b"),
            vec![Delta::Content(" <toolbox> b".into())]
        );
        assert_eq!(reader.push(" <tool_"), vec![]);
        // The answer ended there: the held tail is what is left to send.
        assert_eq!(reader.unsent(), " <tool_");
        assert_eq!(reader.calls_sent(), (0, 0));
    }

    #[test]
    fn a_llama_call_opens_the_answer_or_there_is_none() {
        let mut reader = CallReader::new(ToolSyntax::Llama3);
        assert_eq!(reader.push("\n "), vec![]);
        assert_eq!(reader.push(" {\"na"), vec![]);
        assert_eq!(reader.push("me\": \"f\", \"parameters\": {}}"), vec![]);
        assert_eq!(reader.unsent(), "{\"name\": \"f\", \"parameters\": {}}");
        let mut reader = CallReader::new(ToolSyntax::Llama3);
        assert_eq!(reader.push(" "), vec![]);
        assert_eq!(reader.push("ok {"), vec![Delta::Content(" ok {".into())]);
        // Once text has begun, an object later is text too.
        assert_eq!(
            reader.push("\"name\""),
            vec![Delta::Content("\"name\"".into())]
        );
    }

    #[test]
    fn mistral_calls_wait_for_the_end() {
        let mut reader = CallReader::new(ToolSyntax::MistralNemo);
        let deltas = reader.push("Sure. [TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}]");
        assert_eq!(deltas, vec![Delta::Content("Sure.".into())]);
        assert_eq!(reader.calls_sent(), (0, 0));
        assert!(reader.unsent().starts_with("[TOOL_CALLS]"));
    }
}
