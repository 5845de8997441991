//! OpenAI function calling, in one of two ways:
//!
//! - **The model's own syntax**, when its chat template shows tools in a
//!   syntax troupe knows ([`ToolSyntax`]: Hermes/Qwen `<tool_call>`, Mistral
//!   `[TOOL_CALLS]`): the tool definitions and earlier calls go through the
//!   template, the answer is free text until the model opens a call, and
//!   from there a lazy grammar holds it to calls of the given functions
//!   (as llama-server does). `parallel_tool_calls` allows several calls.
//! - **A JSON envelope** for every other model: the tool definitions go into
//!   the system prompt and the whole output is constrained by a JSON Schema,
//!   so even a weak model answers with a well-formed call. The model answers
//!   one JSON object: a call `{"name": "<function>", "arguments": {...}}`,
//!   or, with `tool_choice: "auto"` (the default), `{"content": "<text>"}`.
//!   One call per answer.
//!
//! `tool_choice: "required"` allows calls only; a named function allows a
//! call of that function only; `"none"` turns tools off (plain text). A
//! stream reads the answer as it comes (`tool_stream`).

use serde_json::{json, Value};
use troupe_inference::backend::Constraint;
use troupe_inference::chat::tool_calls::{CallRules, ToolFunction, ToolSyntax};
use troupe_inference::chat::MessageToolCall;

use super::error::ApiError;
use super::generation::response_id;
use super::openai::{FunctionCall, FunctionDefinition, ToolCall, ToolChoice, ToolDefinition};
use super::AppState;

/// Whether the model may, must or must not call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// No tools: plain generation.
    Off,
    /// The model calls or answers with text.
    Auto,
    /// The model must call.
    Required,
}

/// How a chat request uses tools.
#[derive(Debug, Clone)]
pub(super) struct ToolMode {
    choice: Choice,
    /// The functions the model may call.
    functions: Vec<FunctionDefinition>,
    /// Several calls per answer (the model's own syntax only).
    parallel: bool,
    /// The model's own call syntax; `None`: the JSON envelope.
    syntax: Option<ToolSyntax>,
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
    /// No tools.
    pub(super) const OFF: ToolMode = ToolMode {
        choice: Choice::Off,
        functions: Vec::new(),
        parallel: false,
        syntax: None,
    };

    /// The mode `tools`, `tool_choice` and `parallel_tool_calls` ask for,
    /// in the JSON envelope until [`ToolMode::with_syntax`] says otherwise.
    ///
    /// # Errors
    /// A 400 for a tool that is not a function, a duplicate or empty name,
    /// an unknown `tool_choice`, or a named function not among `tools`.
    pub(super) fn from_request(
        tools: Option<Vec<ToolDefinition>>,
        choice: Option<ToolChoice>,
        parallel: bool,
    ) -> Result<ToolMode, ApiError> {
        let functions = functions(tools.unwrap_or_default())?;
        let mode = |choice, functions| ToolMode {
            choice,
            functions,
            parallel,
            syntax: None,
        };
        let name = match choice {
            None => "auto".to_string(),
            Some(ToolChoice::Mode(name)) => name,
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
                return Ok(mode(Choice::Required, vec![f.clone()]));
            }
        };
        match name.as_str() {
            "none" => Ok(ToolMode::OFF),
            _ if functions.is_empty() => {
                if name == "required" {
                    Err(ApiError::invalid(
                        Some("tool_choice"),
                        "tool_choice is \"required\" but no tools are given",
                    ))
                } else {
                    Ok(ToolMode::OFF)
                }
            }
            "auto" => Ok(mode(Choice::Auto, functions)),
            "required" => Ok(mode(Choice::Required, functions)),
            other => Err(ApiError::invalid(
                Some("tool_choice"),
                format!(
                    "tool_choice {other:?} is not one of none, auto, required or a named function"
                ),
            )),
        }
    }

    /// This mode for a model whose template shows tools in `syntax` (its
    /// [`ModelInfo::tool_syntax`](troupe_inference::backend::ModelInfo)).
    pub(super) fn with_syntax(mut self, syntax: Option<ToolSyntax>) -> ToolMode {
        self.syntax = syntax;
        self
    }

    /// Whether earlier calls and tool answers go to the template as
    /// structured messages (the template knows a call syntax), even when
    /// this request offers no tools.
    pub(super) fn renders_calls(&self) -> bool {
        self.syntax.is_some()
    }

    /// Whether tools are in play.
    pub(super) fn is_on(&self) -> bool {
        self.choice != Choice::Off
    }

    /// The model's own call syntax, when it is used.
    pub(super) fn syntax(&self) -> Option<ToolSyntax> {
        self.syntax.filter(|_| self.is_on())
    }

    /// The grammar the answer follows, or `None` when tools are off.
    ///
    /// # Errors
    /// A 400 naming `tools` when a function's parameters cannot be
    /// compiled into a grammar.
    pub(super) fn constraint(&self) -> Result<Option<Constraint>, ApiError> {
        let Some(syntax) = self.syntax() else {
            return Ok(self.schema().map(Constraint::JsonSchema));
        };
        let functions: Vec<ToolFunction> = self
            .functions
            .iter()
            .map(|f| ToolFunction {
                name: f.name.clone(),
                parameters: parameters(f),
            })
            .collect();
        let rules = CallRules {
            required: self.choice == Choice::Required,
            parallel: self.parallel,
        };
        syntax
            .constraint(&functions, rules)
            .map(Some)
            .map_err(|error| {
                ApiError::invalid(
                    Some("tools"),
                    format!("a function's parameters cannot be enforced: {error}"),
                )
            })
    }

    /// The markers of the model's own syntax, which the output must be able
    /// to hold where the vocabulary has them as control tokens.
    pub(super) fn preserved(&self) -> Vec<String> {
        self.syntax()
            .map(|syntax| syntax.markers().iter().map(|m| (*m).to_owned()).collect())
            .unwrap_or_default()
    }

    /// A call as OpenAI writes it: a fresh id (9 letters and digits where
    /// the model's template wants such ids back), the arguments as a JSON
    /// string.
    fn tool_call(&self, name: String, arguments: &Value) -> ToolCall {
        let id = response_id("call_");
        let id = if self.syntax().is_some_and(ToolSyntax::short_ids) {
            id[id.len() - 9..].to_owned()
        } else {
            id
        };
        ToolCall {
            id,
            kind: "function".to_string(),
            function: FunctionCall {
                name,
                arguments: arguments.to_string(),
            },
        }
    }

    /// The tool definitions the chat template is given (the model's own
    /// syntax only; the envelope puts them in the system prompt).
    pub(super) fn definitions(&self) -> Vec<Value> {
        if self.syntax().is_none() {
            return Vec::new();
        }
        self.functions
            .iter()
            .map(|f| {
                // In the order OpenAI documents and clients send (the
                // template writes the JSON as given, as llama-server does).
                let mut function = serde_json::Map::new();
                function.insert("name".into(), json!(f.name));
                if let Some(description) = &f.description {
                    function.insert("description".into(), json!(description));
                }
                function.insert("parameters".into(), parameters(f));
                json!({"type": "function", "function": function})
            })
            .collect()
    }

    /// The JSON Schema of an envelope answer, or `None` when tools are off.
    fn schema(&self) -> Option<Value> {
        let allow_text = match self.choice {
            Choice::Off => return None,
            Choice::Auto => true,
            Choice::Required => false,
        };
        let mut alternatives: Vec<Value> = self
            .functions
            .iter()
            .map(|f| {
                json!({
                    "type": "object",
                    "properties": {
                        "name": {"const": f.name},
                        "arguments": parameters(f),
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

    /// Instructions for the system prompt: the envelope only (the model's
    /// own syntax has its template describe the tools).
    pub(super) fn instructions(&self) -> Option<String> {
        if self.syntax().is_some() {
            return None;
        }
        let allow_text = match self.choice {
            Choice::Off => return None,
            Choice::Auto => true,
            Choice::Required => false,
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
        for f in &self.functions {
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
    /// generation hit `max_tokens` mid-call) is returned as text with the
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
        if let Some(syntax) = self.syntax() {
            return match syntax.parse(&text) {
                Ok(Some(answer)) => Answer {
                    content: Some(answer.content).filter(|c| !c.is_empty()),
                    tool_calls: Some(
                        answer
                            .calls
                            .into_iter()
                            .map(|call| self.tool_call(call.name, &call.arguments))
                            .collect(),
                    ),
                    finish_reason: "tool_calls",
                },
                Ok(None) | Err(_) => plain(text),
            };
        }
        let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(&text) else {
            return plain(text);
        };
        if let (Some(Value::String(name)), Some(arguments)) =
            (object.remove("name"), object.remove("arguments"))
        {
            return Answer {
                content: None,
                tool_calls: Some(vec![self.tool_call(name, &arguments)]),
                finish_reason: "tool_calls",
            };
        }
        match object.remove("content") {
            Some(Value::String(content)) => plain(content),
            _ => plain(text),
        }
    }
}

/// `mode` for `model`: the model's own call syntax when its chat template
/// has one (asking the host what the model is, which loads it if needed).
/// Asked only when tools are on or `history` holds calls or tool answers.
///
/// # Errors
/// The host's refusal (unknown model, a load that failed).
pub(super) async fn for_model(
    state: &AppState,
    model: &str,
    mode: ToolMode,
    history: bool,
) -> Result<ToolMode, ApiError> {
    if !mode.is_on() && !history {
        return Ok(mode);
    }
    let info = state.host.model_info(model).await?;
    Ok(mode.with_syntax(info.tool_syntax))
}

/// An earlier call from a request, as the chat template is shown it: the
/// arguments as an object when they parse as JSON.
pub(super) fn message_call(call: &ToolCall) -> MessageToolCall {
    MessageToolCall {
        id: call.id.clone(),
        name: call.function.name.clone(),
        arguments: serde_json::from_str(&call.function.arguments)
            .unwrap_or_else(|_| Value::String(call.function.arguments.clone())),
    }
}

/// A function's parameters, an empty object's schema when it has none.
fn parameters(f: &FunctionDefinition) -> Value {
    f.parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}))
}

/// The request's tools as functions.
///
/// # Errors
/// A 400 for a tool that is not a function, or an empty or duplicate name.
fn functions(tools: Vec<ToolDefinition>) -> Result<Vec<FunctionDefinition>, ApiError> {
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
        if let Some(kind) = tool
            .function
            .parameters
            .as_ref()
            .and_then(|p| p.get("type"))
            .filter(|kind| kind.as_str() != Some("object"))
        {
            return Err(ApiError::invalid(
                Some("tools"),
                format!(
                    "tools[{i}].function.parameters has type {kind}; it must be an object schema"
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
    Ok(functions)
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

    fn auto(names: &[&str]) -> ToolMode {
        let tools = names
            .iter()
            .map(|name| ToolDefinition {
                kind: "function".into(),
                function: function(name),
            })
            .collect();
        ToolMode::from_request(Some(tools), None, true).unwrap()
    }

    #[test]
    fn a_call_becomes_tool_calls_with_string_arguments() {
        let mode = auto(&["weather"]);
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
        let mode = auto(&["weather"]);
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
            false,
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
            false,
        )
        .unwrap_err();
        assert_eq!(err.param, Some("tool_choice"));
    }

    #[test]
    fn a_template_with_tools_gets_its_own_syntax_and_the_definitions() {
        let mode = auto(&["weather", "time"]).with_syntax(Some(ToolSyntax::Hermes));
        assert_eq!(mode.syntax(), Some(ToolSyntax::Hermes));
        assert_eq!(mode.instructions(), None);
        assert_eq!(mode.definitions().len(), 2);
        assert_eq!(mode.definitions()[1]["function"]["name"], "time");
        assert!(matches!(
            mode.constraint(),
            Ok(Some(Constraint::Lazy { .. }))
        ));
        let answer = mode.interpret(
            "Checking.\n<tool_call>\n{\"name\": \"time\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>".into(),
            "stop",
        );
        assert_eq!(answer.content.as_deref(), Some("Checking."));
        assert_eq!(answer.finish_reason, "tool_calls");
        assert_eq!(
            answer.tool_calls.unwrap()[0].function.arguments,
            r#"{"city":"Oslo"}"#
        );
        // A template without tools keeps the envelope.
        let envelope = auto(&["weather"]).with_syntax(None);
        assert_eq!(envelope.syntax(), None);
        assert!(envelope.instructions().is_some());
        assert!(envelope.definitions().is_empty());
        assert!(matches!(
            envelope.constraint(),
            Ok(Some(Constraint::JsonSchema(_)))
        ));
    }
}
