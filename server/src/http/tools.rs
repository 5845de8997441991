//! OpenAI function calling on models without native tool support: the tool
//! definitions go into the system prompt and the output is constrained by a
//! JSON Schema, so even a weak model answers with a well-formed call.
//!
//! The model answers one JSON object:
//! - a call: `{"name": "<function>", "arguments": {...}}`, `arguments`
//!   matching that function's `parameters` schema;
//! - with `tool_choice: "auto"` (the default) it may instead answer the user
//!   directly: `{"content": "<text>"}`.
//!
//! `tool_choice: "required"` allows calls only; a named function allows a
//! call of that function only; `"none"` turns tools off (plain text). One
//! call per answer (`parallel_tool_calls` is not honoured). A stream reads
//! the envelope as it comes (`tool_stream`).

use serde_json::{json, Value};

use super::error::ApiError;
use super::generation::response_id;
use super::openai::{FunctionCall, FunctionDefinition, ToolCall, ToolChoice, ToolDefinition};

/// How a chat request uses tools.
#[derive(Debug, Clone)]
pub(super) enum ToolMode {
    /// No tools: plain generation.
    Off,
    /// The model calls one of `functions` or answers with text.
    Auto(Vec<FunctionDefinition>),
    /// The model must call one of `functions`.
    Required(Vec<FunctionDefinition>),
}

/// What the model answered, in OpenAI's terms.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Answer {
    /// Text for the user.
    pub content: Option<String>,
    /// The calls the model made.
    pub tool_calls: Option<Vec<ToolCall>>,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: &'static str,
}

impl ToolMode {
    /// The mode `tools` and `tool_choice` ask for.
    ///
    /// # Errors
    /// A 400 for a tool that is not a function, a duplicate or empty name,
    /// an unknown `tool_choice`, or a named function not among `tools`.
    pub(super) fn from_request(
        tools: Option<Vec<ToolDefinition>>,
        choice: Option<ToolChoice>,
    ) -> Result<ToolMode, ApiError> {
        let tools = tools.unwrap_or_default();
        let mut functions: Vec<FunctionDefinition> = Vec::with_capacity(tools.len());
        for (i, tool) in tools.into_iter().enumerate() {
            if tool.kind != "function" {
                return Err(ApiError::invalid(
                    Some("tools"),
                    format!(
                        "tools[{i}] has type {:?}; only \"function\" is supported",
                        tool.kind
                    ),
                ));
            }
            if tool.function.name.is_empty() {
                return Err(ApiError::invalid(
                    Some("tools"),
                    format!("tools[{i}] has an empty name"),
                ));
            }
            if functions.iter().any(|f| f.name == tool.function.name) {
                return Err(ApiError::invalid(
                    Some("tools"),
                    format!("function {:?} is defined twice", tool.function.name),
                ));
            }
            functions.push(tool.function);
        }
        let mode = match choice {
            None => "auto".to_string(),
            Some(ToolChoice::Mode(mode)) => mode,
            Some(ToolChoice::Named { function }) => {
                let Some(f) = functions.iter().find(|f| f.name == function.name) else {
                    return Err(ApiError::invalid(
                        Some("tool_choice"),
                        format!(
                            "tool_choice names function {:?}, which is not in tools",
                            function.name
                        ),
                    ));
                };
                return Ok(ToolMode::Required(vec![f.clone()]));
            }
        };
        match mode.as_str() {
            "none" => Ok(ToolMode::Off),
            _ if functions.is_empty() => {
                if mode == "required" {
                    Err(ApiError::invalid(
                        Some("tool_choice"),
                        "tool_choice is \"required\" but no tools are given",
                    ))
                } else {
                    Ok(ToolMode::Off)
                }
            }
            "auto" => Ok(ToolMode::Auto(functions)),
            "required" => Ok(ToolMode::Required(functions)),
            other => Err(ApiError::invalid(
                Some("tool_choice"),
                format!(
                    "tool_choice {other:?} is not one of none, auto, required or a named function"
                ),
            )),
        }
    }

    /// Whether tools are in play.
    pub(super) fn is_on(&self) -> bool {
        !matches!(self, ToolMode::Off)
    }

    /// The JSON Schema of an answer, or `None` when tools are off.
    pub(super) fn schema(&self) -> Option<Value> {
        let (functions, allow_text) = match self {
            ToolMode::Off => return None,
            ToolMode::Auto(f) => (f, true),
            ToolMode::Required(f) => (f, false),
        };
        let mut alternatives: Vec<Value> = functions
            .iter()
            .map(|f| {
                let parameters = f
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                json!({
                    "type": "object",
                    "properties": {
                        "name": {"const": f.name},
                        "arguments": parameters,
                    },
                    "required": ["name", "arguments"],
                })
            })
            .collect();
        if allow_text {
            alternatives.push(json!({
                "type": "object",
                "properties": {"content": {"type": "string"}},
                "required": ["content"],
            }));
        }
        Some(if alternatives.len() == 1 {
            alternatives.remove(0)
        } else {
            json!({ "anyOf": alternatives })
        })
    }

    /// Instructions for the system prompt, or `None` when tools are off.
    pub(super) fn instructions(&self) -> Option<String> {
        let (functions, allow_text) = match self {
            ToolMode::Off => return None,
            ToolMode::Auto(f) => (f, true),
            ToolMode::Required(f) => (f, false),
        };
        let mut text = String::from(
            "You can call functions. Answer with exactly one JSON object and nothing else.\n\
             To call a function: {\"name\": \"<function name>\", \"arguments\": {<arguments>}}\n",
        );
        if allow_text {
            text.push_str(
                "To answer the user directly instead: {\"content\": \"<your answer>\"}\n",
            );
        }
        text.push_str("\nFunctions:\n");
        for f in functions {
            let entry = json!({
                "name": f.name,
                "description": f.description,
                "parameters": f.parameters,
            });
            text.push_str(&entry.to_string());
            text.push('\n');
        }
        Some(text)
    }

    /// Reads the model's output. Output that is not a complete answer (the
    /// generation hit `max_tokens` mid-object) is returned as text with the
    /// engine's finish reason.
    pub(super) fn interpret(&self, text: String, finish_reason: &'static str) -> Answer {
        let plain = |text: String| Answer {
            content: Some(text),
            tool_calls: None,
            finish_reason,
        };
        if !self.is_on() {
            return plain(text);
        }
        let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(&text) else {
            return plain(text);
        };
        if let (Some(Value::String(name)), Some(arguments)) =
            (object.remove("name"), object.remove("arguments"))
        {
            return Answer {
                content: None,
                tool_calls: Some(vec![ToolCall {
                    id: response_id("call_"),
                    kind: "function".to_string(),
                    function: FunctionCall {
                        name,
                        arguments: arguments.to_string(),
                    },
                }]),
                finish_reason: "tool_calls",
            };
        }
        match object.remove("content") {
            Some(Value::String(content)) => plain(content),
            _ => plain(text),
        }
    }
}

/// How an earlier assistant turn's tool calls are shown to the model: the
/// same JSON it is asked to write, one call per line.
pub(super) fn render_calls(calls: &[ToolCall]) -> String {
    calls
        .iter()
        .map(|call| {
            // Arguments arrive as a JSON string; keep them as an object when they parse.
            let arguments = serde_json::from_str::<Value>(&call.function.arguments)
                .unwrap_or_else(|_| Value::String(call.function.arguments.clone()));
            json!({"name": call.function.name, "arguments": arguments}).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str) -> FunctionDefinition {
        FunctionDefinition {
            name: name.to_string(),
            description: None,
            parameters: Some(json!({
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            })),
        }
    }

    #[test]
    fn a_call_becomes_tool_calls_with_string_arguments() {
        let mode = ToolMode::Auto(vec![function("weather")]);
        let answer = mode.interpret(
            r#"{"name": "weather", "arguments": {"city": "Oslo"}}"#.to_string(),
            "stop",
        );
        assert_eq!(answer.finish_reason, "tool_calls");
        let calls = answer.tool_calls.unwrap();
        assert_eq!(calls[0].function.name, "weather");
        let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
        assert_eq!(args, json!({"city": "Oslo"}));
    }

    #[test]
    fn a_text_answer_and_a_truncated_one_are_content() {
        let mode = ToolMode::Auto(vec![function("weather")]);
        let answer = mode.interpret(r#"{"content": "hi"}"#.to_string(), "stop");
        assert_eq!(answer.content.as_deref(), Some("hi"));
        assert_eq!(answer.finish_reason, "stop");
        let cut = mode.interpret(r#"{"name": "wea"#.to_string(), "length");
        assert_eq!(cut.content.as_deref(), Some(r#"{"name": "wea"#));
        assert_eq!(cut.finish_reason, "length");
    }

    #[test]
    fn required_mode_has_no_text_alternative() {
        let mode = ToolMode::from_request(
            Some(vec![ToolDefinition {
                kind: "function".into(),
                function: function("weather"),
            }]),
            Some(ToolChoice::Mode("required".into())),
        )
        .unwrap();
        let schema = mode.schema().unwrap();
        assert_eq!(schema["properties"]["name"]["const"], "weather");
        assert!(!schema.to_string().contains("content"));
    }

    #[test]
    fn an_unknown_named_function_is_refused() {
        let err = ToolMode::from_request(
            Some(vec![ToolDefinition {
                kind: "function".into(),
                function: function("weather"),
            }]),
            Some(ToolChoice::Named {
                function: super::super::openai::NamedFunction {
                    name: "nope".into(),
                },
            }),
        )
        .unwrap_err();
        assert_eq!(err.param, Some("tool_choice"));
    }
}
