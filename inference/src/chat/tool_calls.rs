//! Tool calls in a model's own syntax, as its chat template describes them.
//!
//! A template that knows tools shows the model the tool definitions and the
//! earlier calls in the syntax it was trained on; the model then writes a
//! call the same way. Three syntaxes are recognised, by the text of the
//! template (as llama.cpp's `common/chat.cpp` recognises them):
//!
//! - [`ToolSyntax::Hermes`]: `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`,
//!   one block per call (Hermes 2 Pro and 3, Qwen 2.5 and 3, and the many
//!   fine-tunes that copy them);
//! - [`ToolSyntax::MistralNemo`]: `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]`;
//! - [`ToolSyntax::Llama3`]: the whole answer one JSON object
//!   `{"name": …, "parameters": {…}}` (Llama 3.1 to 3.3; one call per answer,
//!   as their templates allow).
//!
//! The output is free text until the model opens a call (writes the marker,
//! or for Llama 3 starts its answer with `{`); from there a lazy
//! grammar ([`Constraint::Lazy`]) holds it to calls of the given functions
//! with arguments matching their schemas. With a call required the grammar
//! holds from the first token. [`ToolSyntax::parse`]
//! reads the answer back: the text before the marker, then the calls.

use serde_json::{json, Value};

use crate::backend::Constraint;
use crate::schema::{self, SchemaError};

/// How a model writes its tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSyntax {
    /// `<tool_call>` JSON `</tool_call>` blocks.
    Hermes,
    /// `[TOOL_CALLS]` and a JSON array of calls.
    MistralNemo,
    /// The answer is one call as bare JSON, its arguments under `parameters`.
    Llama3,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolFunction {
    /// Its name.
    pub name: String,
    /// The JSON Schema of its arguments (an object).
    pub parameters: Value,
}

/// What a request allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRules {
    /// The answer must be calls (no text before them).
    pub required: bool,
    /// More than one call per answer.
    pub parallel: bool,
}

/// A call read from the model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    /// The function.
    pub name: String,
    /// Its arguments (as the grammar let the model write them: an object).
    pub arguments: Value,
}

/// An answer that opened a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAnswer {
    /// The text before the first call, trimmed at its end.
    pub content: String,
    /// The calls, in order.
    pub calls: Vec<ParsedCall>,
}

/// Why an answer that opened a call could not be read as calls (it was
/// cut short, or written without the grammar).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the tool call at byte {at} of the answer is incomplete or malformed")]
pub struct ParseError {
    /// Where the unreadable part starts.
    pub at: usize,
}

/// The grammar's rule for one call's JSON (the schema's start rule).
const CALL_RULE: &str = "tool-call-json";

impl ToolSyntax {
    /// The syntax `template` (a chat template's source) writes tool calls
    /// in, or `None` when it shows no tools in a syntax known here.
    pub fn detect(template: &str) -> Option<ToolSyntax> {
        if !template.contains("tools") {
            return None;
        }
        if template.contains("<tool_call>") {
            Some(ToolSyntax::Hermes)
        } else if template.contains("[TOOL_CALLS]") && !template.contains("[ARGS]") {
            // Newer Mistral templates write `[TOOL_CALLS]name[ARGS]{…}`, a
            // syntax not known here (the envelope serves them).
            Some(ToolSyntax::MistralNemo)
        } else if template.contains("<|start_header_id|>ipython<|end_header_id|>") {
            // Llama 3.1+: tool answers come back in the `ipython` role.
            Some(ToolSyntax::Llama3)
        } else {
            None
        }
    }

    /// The text that opens the calls (for [`ToolSyntax::Llama3`], only at
    /// the start of the answer, after whitespace).
    pub fn opener(self) -> &'static str {
        match self {
            ToolSyntax::Hermes => "<tool_call>",
            ToolSyntax::MistralNemo => "[TOOL_CALLS]",
            // Any JSON object opening the answer: the grammar's object may
            // have space before `"name"`, which a literal trigger cannot
            // allow for (llama.cpp's own trigger is a regular expression).
            ToolSyntax::Llama3 => "{",
        }
    }

    /// The syntax's markers, which a vocabulary may hold as single control
    /// tokens (Mistral's `[TOOL_CALLS]`): the output must be able to hold
    /// them ([`GenerateRequest::preserved`](crate::backend::GenerateRequest)).
    pub fn markers(self) -> &'static [&'static str] {
        match self {
            ToolSyntax::Hermes => &["<tool_call>", "</tool_call>"],
            ToolSyntax::MistralNemo => &["[TOOL_CALLS]"],
            ToolSyntax::Llama3 => &[],
        }
    }

    /// Whether a call's id must be 9 letters or digits (Mistral's templates
    /// refuse a conversation whose calls have other ids).
    pub fn short_ids(self) -> bool {
        self == ToolSyntax::MistralNemo
    }

    /// Whether a call can only open the answer (no text before it).
    pub fn opens_the_answer(self) -> bool {
        self == ToolSyntax::Llama3
    }

    /// The text that closes one call's block, where each call has one.
    pub fn closer(self) -> Option<&'static str> {
        match self {
            ToolSyntax::Hermes => Some("</tool_call>"),
            ToolSyntax::MistralNemo | ToolSyntax::Llama3 => None,
        }
    }

    /// The key a call's arguments are written under.
    fn arguments_key(self) -> &'static str {
        match self {
            ToolSyntax::Llama3 => "parameters",
            ToolSyntax::Hermes | ToolSyntax::MistralNemo => "arguments",
        }
    }

    /// The grammar for calls of `functions` under `rules`: lazy (triggered
    /// by [`ToolSyntax::opener`]) unless a call is required.
    ///
    /// # Errors
    /// A function's `parameters` the grammar compiler cannot take, or no
    /// functions at all.
    pub fn constraint(
        self,
        functions: &[ToolFunction],
        rules: CallRules,
    ) -> Result<Constraint, SchemaError> {
        let key = self.arguments_key();
        let calls: Vec<Value> = functions
            .iter()
            .map(|f| {
                json!({
                    "type": "object",
                    "properties": {"name": {"const": f.name}, key: f.parameters},
                    "required": ["name", key],
                    "additionalProperties": false,
                })
            })
            .collect();
        let call = match calls.as_slice() {
            [] => {
                return Err(SchemaError::Invalid {
                    pointer: "#".into(),
                    keyword: "anyOf".into(),
                    reason: "lists no functions to call".into(),
                })
            }
            [one] => one.clone(),
            _ => json!({ "anyOf": calls }),
        };
        let json = schema::json_schema_to_gbnf_rule(&call, CALL_RULE)?;
        // More calls, when allowed, follow the first after a newline (Hermes)
        // or a comma (Mistral).
        let top = match (self, rules.parallel) {
            // Whitespace around the JSON as llama.cpp's grammars allow it:
            // the token that completes the marker may carry some.
            (ToolSyntax::Hermes, parallel) => format!(
                "root ::= tool-call-block{more}\n\
                 tool-call-block ::= \"<tool_call>\" tool-call-space {CALL_RULE} tool-call-space \"</tool_call>\"\n\
                 tool-call-space ::= [ \\t\\n]{{0,20}}\n",
                more = if parallel { " ( tool-call-space tool-call-block )*" } else { "" },
            ),
            (ToolSyntax::MistralNemo, parallel) => format!(
                "root ::= \"[TOOL_CALLS]\" \"[\" {CALL_RULE}{more} \"]\"\n",
                more = if parallel { format!(" ( \",\" \" \"? {CALL_RULE} )*") } else { String::new() },
            ),
            // Llama 3.x's templates allow one call per answer.
            (ToolSyntax::Llama3, _) => format!("root ::= {CALL_RULE}\n"),
        };
        let grammar = format!("{top}{json}");
        Ok(if rules.required {
            Constraint::Grammar(grammar)
        } else {
            Constraint::Lazy {
                grammar,
                triggers: vec![self.opener().to_owned()],
                at_start: self.opens_the_answer(),
            }
        })
    }

    /// Reads an answer: `Ok(None)` when it opened no call (all of it is
    /// text), else the text before the calls and the calls.
    ///
    /// # Errors
    /// [`ParseError`] when the calls are cut short or malformed.
    pub fn parse(self, text: &str) -> Result<Option<ParsedAnswer>, ParseError> {
        let start = if self.opens_the_answer() {
            let trimmed = text.trim_start();
            if !trimmed.starts_with(self.opener()) {
                return Ok(None);
            }
            text.len() - trimmed.len()
        } else {
            let Some(start) = text.find(self.opener()) else {
                return Ok(None);
            };
            start
        };
        let content = text[..start].trim_end().to_owned();
        let mut calls = Vec::new();
        let mut at = start;
        match self {
            ToolSyntax::Hermes => loop {
                let rest = text[at..].trim_start();
                at = text.len() - rest.len();
                if rest.is_empty() {
                    break;
                }
                let Some(body) = rest.strip_prefix("<tool_call>") else {
                    return Err(ParseError { at });
                };
                let (value, used) = first_json(body).ok_or(ParseError { at })?;
                let after = body[used..].trim_start();
                let Some(after) = after.strip_prefix("</tool_call>") else {
                    return Err(ParseError { at });
                };
                calls.push(call(value, "arguments").ok_or(ParseError { at })?);
                at = text.len() - after.len();
            },
            ToolSyntax::Llama3 => {
                let (value, used) = first_json(&text[start..]).ok_or(ParseError { at })?;
                if !text[start + used..].trim().is_empty() {
                    return Err(ParseError { at });
                }
                calls.push(call(value, "parameters").ok_or(ParseError { at })?);
            }
            ToolSyntax::MistralNemo => {
                let body = &text[start + self.opener().len()..];
                let (value, used) = first_json(body).ok_or(ParseError { at })?;
                let Value::Array(items) = value else {
                    return Err(ParseError { at });
                };
                if !body[used..].trim().is_empty() {
                    return Err(ParseError { at });
                }
                for item in items {
                    calls.push(call(item, "arguments").ok_or(ParseError { at })?);
                }
            }
        }
        if calls.is_empty() {
            return Err(ParseError { at: start });
        }
        Ok(Some(ParsedAnswer { content, calls }))
    }
}

/// The first JSON value in `text` (after spaces), and the bytes it took.
fn first_json(text: &str) -> Option<(Value, usize)> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let value = values.next()?.ok()?;
    Some((value, values.byte_offset()))
}

/// `{"name": "...", KEY: {...}}` as a call.
fn call(value: Value, key: &str) -> Option<ParsedCall> {
    let Value::Object(mut object) = value else {
        return None;
    };
    let Some(Value::String(name)) = object.remove("name") else {
        return None;
    };
    let arguments = object.remove(key)?;
    Some(ParsedCall { name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> ToolFunction {
        ToolFunction {
            name: "get_weather".into(),
            parameters: json!({
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            }),
        }
    }

    #[test]
    fn the_syntax_is_read_off_the_template() {
        let hermes = "{% if tools %}<tools>{{ tools }}</tools> wrap calls in <tool_call></tool_call>{% endif %}";
        assert_eq!(ToolSyntax::detect(hermes), Some(ToolSyntax::Hermes));
        let nemo = "{%- if tools %}[AVAILABLE_TOOLS]{{ tools|tojson }}{% endif %}[TOOL_CALLS]";
        assert_eq!(ToolSyntax::detect(nemo), Some(ToolSyntax::MistralNemo));
        let newer =
            "{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]{{ name }}[ARGS]{{ args }}";
        assert_eq!(ToolSyntax::detect(newer), None);
        assert_eq!(ToolSyntax::detect(super::super::CHATML_TEMPLATE), None);
        // A marker without any use of `tools` is not a tool template.
        assert_eq!(ToolSyntax::detect("<tool_call>"), None);
    }

    #[test]
    fn hermes_answers_are_read_as_text_then_calls() {
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Bergen\"}}</tool_call>";
        let answer = ToolSyntax::Hermes.parse(text).unwrap().unwrap();
        assert_eq!(answer.content, "Let me look.");
        assert_eq!(answer.calls.len(), 2);
        assert_eq!(answer.calls[1].name, "get_weather");
        assert_eq!(answer.calls[1].arguments, json!({"city": "Bergen"}));
        assert_eq!(ToolSyntax::Hermes.parse("Just text.").unwrap(), None);
        let cut = "<tool_call>\n{\"name\": \"get_weather\", \"argu";
        assert_eq!(ToolSyntax::Hermes.parse(cut), Err(ParseError { at: 0 }));
        let unclosed = "<tool_call>{\"name\": \"f\", \"arguments\": {}}";
        assert!(ToolSyntax::Hermes.parse(unclosed).is_err());
    }

    #[test]
    fn mistral_answers_are_an_array_of_calls() {
        let text = "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]";
        let answer = ToolSyntax::MistralNemo.parse(text).unwrap().unwrap();
        assert_eq!(answer.content, "");
        assert_eq!(answer.calls[0].arguments["city"], "Oslo");
        assert!(ToolSyntax::MistralNemo
            .parse("[TOOL_CALLS][{\"name\"")
            .is_err());
        assert!(ToolSyntax::MistralNemo.parse("[TOOL_CALLS][]").is_err());
    }

    #[test]
    fn llama3_answers_are_one_bare_call_at_the_start() {
        let llama =
            "{% if tools %}{{ tools }}{% endif %}<|start_header_id|>ipython<|end_header_id|>";
        assert_eq!(ToolSyntax::detect(llama), Some(ToolSyntax::Llama3));
        let text = "  {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}";
        let answer = ToolSyntax::Llama3.parse(text).unwrap().unwrap();
        assert_eq!(answer.content, "");
        assert_eq!(answer.calls[0].arguments, json!({"city": "Oslo"}));
        let spaced = "{ \"name\" :\n\"get_weather\", \"parameters\": {}\n}";
        assert_eq!(
            ToolSyntax::Llama3
                .parse(spaced)
                .unwrap()
                .unwrap()
                .calls
                .len(),
            1
        );
        // Text first is an answer, not a call; an object opening the answer
        // is a call (the grammar holds it from its `{`), whole or not.
        let later = "Sure: {\"name\": \"get_weather\", \"parameters\": {}}";
        assert_eq!(ToolSyntax::Llama3.parse(later).unwrap(), None);
        assert!(ToolSyntax::Llama3.parse("{\"city\": 1}").is_err());
        assert!(ToolSyntax::Llama3
            .parse("{\"name\": \"f\", \"arguments\": {}}")
            .is_err());
        let rules = CallRules {
            required: false,
            parallel: true,
        };
        let Constraint::Lazy {
            grammar,
            triggers,
            at_start,
        } = ToolSyntax::Llama3.constraint(&[weather()], rules).unwrap()
        else {
            panic!("auto calls get a lazy grammar");
        };
        assert!(at_start);
        assert_eq!(triggers, ["{"]);
        assert!(grammar.starts_with("root ::= tool-call-json\n"));
        assert!(grammar.contains("parameters"));
    }

    #[test]
    fn the_grammar_is_lazy_unless_a_call_is_required() {
        let auto = CallRules {
            required: false,
            parallel: false,
        };
        let Constraint::Lazy {
            grammar, triggers, ..
        } = ToolSyntax::Hermes.constraint(&[weather()], auto).unwrap()
        else {
            panic!("auto calls get a lazy grammar");
        };
        assert_eq!(triggers, ["<tool_call>"]);
        assert!(grammar.starts_with(
            "root ::= tool-call-block\ntool-call-block ::= \"<tool_call>\" tool-call-space"
        ));
        assert!(grammar.contains("tool-call-space ::= [ \\t\\n]{0,20}\n"));
        assert!(grammar.contains("tool-call-json ::= "));
        assert!(grammar.contains("get_weather"));
        let required = CallRules {
            required: true,
            parallel: true,
        };
        let Constraint::Grammar(grammar) = ToolSyntax::MistralNemo
            .constraint(&[weather()], required)
            .unwrap()
        else {
            panic!("a required call gets a grammar from the first token");
        };
        assert!(grammar.starts_with(
            "root ::= \"[TOOL_CALLS]\" \"[\" tool-call-json ( \",\" \" \"? tool-call-json )* \"]\"\n"
        ));
        assert!(ToolSyntax::Hermes.constraint(&[], auto).is_err());
    }
}
