//! The model's chat template, run by a real Jinja engine (minijinja).
//!
//! A GGUF file's `tokenizer.chat_template` is the Hugging Face Jinja template
//! the model was trained with. It is rendered here with what llama.cpp's
//! server and Hugging Face's `apply_chat_template` give it (`messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `tools`,
//! `raise_exception`, `strftime_now`, Python's string and dict methods,
//! `tojson` as Python's `json.dumps` writes it), with the same whitespace
//! rules (`trim_blocks`, `lstrip_blocks`), so the prompt is byte for byte
//! the one `llama-server --jinja` renders (the goldens in
//! `inference/tests/goldens/` check that).
//!
//! A template is code from a file the user downloaded, so it runs bounded:
//! minijinja's fuel charges every instruction and every byte it produces
//! and checks allocations before making them, so an endless loop or an
//! enormous output ends with [`TemplateError::Budget`] instead of a hang or
//! an out-of-memory kill; recursion is capped as well.

use std::fmt::Write as _;

use minijinja::value::{Kwargs, Rest};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value};
use serde::Serialize;

use super::ChatMessage;

/// Work one render may do, in minijinja fuel (one instruction, or 64 bytes
/// produced). Enough for a conversation of several MB through any real
/// template; an endless loop spends it in well under a second.
const FUEL: u64 = 8_000_000;

/// Deepest macro/include recursion a template may use.
const RECURSION_LIMIT: usize = 64;

/// The template's name inside its environment.
const NAME: &str = "chat_template";

/// The ChatML template llama.cpp uses for a model without one
/// (`CHATML_TEMPLATE_SRC` in llama.cpp's `common/chat.cpp`).
pub const CHATML_TEMPLATE: &str = "{%- for message in messages -%}\n  \
    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n\
    {%- endfor -%}\n\
    {%- if add_generation_prompt -%}\n  \
    {{- '<|im_start|>assistant\\n' -}}\n\
    {%- endif -%}";

/// The vocabulary's special tokens as the template sees them, and whether
/// tokenizing adds them (llama.cpp then strips them from the rendered text so
/// that they are not there twice).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateTokens {
    /// The BOS token's text (`""` when the vocabulary has none).
    pub bos: String,
    /// The EOS token's text (`""` when the vocabulary has none).
    pub eos: String,
    /// Tokenizing adds BOS at the start.
    pub add_bos: bool,
    /// Tokenizing adds EOS at the end.
    pub add_eos: bool,
}

/// Why a chat template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template is not Jinja that minijinja can compile.
    #[error("the chat template of {model} does not compile: {reason}")]
    Syntax {
        /// The model (its file name).
        model: String,
        /// minijinja's message, with the line.
        reason: String,
    },
    /// The template called `raise_exception`.
    #[error("the chat template of {model} refused the conversation: {message}")]
    Raised {
        /// The model (its file name).
        model: String,
        /// The template's message.
        message: String,
    },
    /// The template used more work or produced more output than a chat
    /// prompt can need.
    #[error("the chat template of {model} ran past its budget ({FUEL} units of work, {} MB of output); it is looping or producing far too much text", FUEL * 64 / 1_000_000)]
    Budget {
        /// The model (its file name).
        model: String,
    },
    /// Any other rendering error (an undefined function, a type error, …).
    #[error("the chat template of {model} failed: {reason}")]
    Render {
        /// The model (its file name).
        model: String,
        /// minijinja's message, with the line.
        reason: String,
    },
}

/// What a render is asked for besides the messages.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// End with the opening of the assistant's turn.
    pub add_generation_prompt: bool,
    /// OpenAI-style tool definitions (`[{"type": "function", "function":
    /// {...}}]`); given to the template only when not empty, as llama.cpp does.
    pub tools: Vec<serde_json::Value>,
}

/// A compiled chat template (see the module documentation).
#[derive(Debug)]
pub struct JinjaTemplate {
    env: Environment<'static>,
    model: String,
    tokens: TemplateTokens,
}

impl JinjaTemplate {
    /// Compiles `source`, the template of `model` (named in errors).
    ///
    /// # Errors
    /// [`TemplateError::Syntax`] when minijinja cannot compile it.
    pub fn compile(
        model: &str,
        source: &str,
        tokens: TemplateTokens,
    ) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        // Hugging Face and llama.cpp both render with these two on.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|error| syntax_error(model, &error))?;
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // `message.tool_calls.x` on a message without tool calls is
        // undefined, not an error: templates test such paths freely.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|error| syntax_error(model, &error))?;
        Ok(Self {
            env,
            model: model.to_owned(),
            tokens,
        })
    }

    /// The special tokens the template renders with.
    pub fn tokens(&self) -> &TemplateTokens {
        &self.tokens
    }

    /// Renders `messages`, then strips a leading BOS / trailing EOS text
    /// that tokenizing will add anyway (as llama.cpp does).
    ///
    /// # Errors
    /// See [`TemplateError`]: the template raised, ran past its budget or
    /// failed.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        options: &RenderOptions,
    ) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|error| self.render_error(&error))?;
        let context = Context {
            messages: messages.iter().map(MessageJson::from).collect(),
            bos_token: &self.tokens.bos,
            eos_token: &self.tokens.eos,
            enable_thinking: false,
            tools: (!options.tools.is_empty()).then_some(&options.tools),
            add_generation_prompt: options.add_generation_prompt.then_some(true),
            date_string: chrono::Local::now().format("%d %b %Y").to_string(),
            datetime: chrono::Local::now().format("%b %d %Y").to_string(),
            // llama-server's default template kwargs.
            preserve_reasoning: true,
            preserve_thinking: true,
            clear_thinking: false,
            truncate_history_thinking: false,
            drop_thinking: false,
        };
        let mut text = template
            .render(Value::from(minijinja::value::Serde(&context)))
            .map_err(|error| self.render_error(&error))?;
        let tokens = &self.tokens;
        if tokens.add_bos && !tokens.bos.is_empty() && text.starts_with(&tokens.bos) {
            text.drain(..tokens.bos.len());
        }
        if tokens.add_eos && !tokens.eos.is_empty() && text.ends_with(&tokens.eos) {
            text.truncate(text.len() - tokens.eos.len());
        }
        Ok(text)
    }

    fn render_error(&self, error: &Error) -> TemplateError {
        let model = self.model.clone();
        match error.kind() {
            ErrorKind::OutOfFuel => TemplateError::Budget { model },
            ErrorKind::InvalidOperation
                if error.detail().is_some_and(|d| d.starts_with(RAISED)) =>
            {
                let message = error.detail().unwrap_or_default()[RAISED.len()..].to_owned();
                TemplateError::Raised { model, message }
            }
            _ => TemplateError::Render {
                model,
                reason: describe(error),
            },
        }
    }
}

/// A message as llama.cpp hands it to the template (`role`, `content`,
/// and `tool_calls` / `tool_call_id` where the message has them).
#[derive(Serialize)]
struct MessageJson<'a> {
    role: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> From<&'a ChatMessage> for MessageJson<'a> {
    fn from(message: &'a ChatMessage) -> Self {
        Self {
            role: message.role.as_str(),
            content: &message.content,
            // llama.cpp's shape: the function's name and its arguments as
            // an object, then the id.
            tool_calls: message
                .tool_calls
                .iter()
                .map(|call| {
                    serde_json::json!({
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                        "id": call.id,
                    })
                })
                .collect(),
            tool_call_id: message.tool_call_id.as_deref(),
        }
    }
}

/// The template's variables, in llama.cpp's order.
#[derive(Serialize)]
struct Context<'a> {
    messages: Vec<MessageJson<'a>>,
    bos_token: &'a str,
    eos_token: &'a str,
    enable_thinking: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a Vec<serde_json::Value>>,
    datetime: String,
    date_string: String,
    preserve_reasoning: bool,
    preserve_thinking: bool,
    clear_thinking: bool,
    truncate_history_thinking: bool,
    drop_thinking: bool,
    /// Undefined (not false) when not asked for, as in llama.cpp.
    #[serde(skip_serializing_if = "Option::is_none")]
    add_generation_prompt: Option<bool>,
}

/// Marks a `raise_exception` error among minijinja's invalid operations.
const RAISED: &str = "raise_exception: ";

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{message}"),
    ))
}

fn strftime_now(format: String) -> Result<String, Error> {
    let mut out = String::new();
    // chrono reports an invalid specifier as a formatting error instead of
    // panicking only when written through `write!`.
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        )
    })?;
    Ok(out)
}

/// `tojson` as Hugging Face defines it: Python's `json.dumps(value,
/// ensure_ascii=False, indent=indent)`, keys in their order, `", "` and
/// `": "` between items (`","` before a newline when indented).
fn tojson(value: Value, _rest: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    // `ensure_ascii`, `separators` and `sort_keys` are accepted as
    // Hugging Face's filter accepts them; only the defaults are supported.
    for key in ["ensure_ascii", "separators", "sort_keys"] {
        let _: Option<Value> = kwargs.get(key)?;
    }
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value).map_err(|error| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: cannot serialise: {error}"),
        )
    })?;
    let mut out = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, PythonFormatter::new(indent));
    json.serialize(&mut serializer).map_err(|error| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: cannot serialise: {error}"),
        )
    })?;
    // serde_json writes only UTF-8.
    Ok(Value::from(String::from_utf8(out).unwrap_or_default()))
}

/// serde_json's output shaped like Python's `json.dumps`.
struct PythonFormatter {
    indent: Option<usize>,
    depth: usize,
    has_items: bool,
}

impl PythonFormatter {
    fn new(indent: Option<usize>) -> Self {
        Self {
            indent,
            depth: 0,
            has_items: false,
        }
    }

    fn newline<W: ?Sized + std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        if let Some(indent) = self.indent {
            writer.write_all(b"\n")?;
            for _ in 0..indent * self.depth {
                writer.write_all(b" ")?;
            }
        }
        Ok(())
    }

    fn separator<W: ?Sized + std::io::Write>(
        &self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        match (first, self.indent) {
            (true, _) => {}
            (false, Some(_)) => writer.write_all(b",")?,
            (false, None) => writer.write_all(b", ")?,
        }
        self.newline(writer)
    }

    fn open<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        c: &[u8],
    ) -> std::io::Result<()> {
        self.depth += 1;
        self.has_items = false;
        writer.write_all(c)
    }

    fn close<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        c: &[u8],
    ) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_items {
            self.newline(writer)?;
        }
        self.has_items = true;
        writer.write_all(c)
    }
}

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.open(writer, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.close(writer, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.separator(writer, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_items = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.open(writer, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.close(writer, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_items = true;
        Ok(())
    }
}

fn syntax_error(model: &str, error: &Error) -> TemplateError {
    TemplateError::Syntax {
        model: model.to_owned(),
        reason: describe(error),
    }
}

/// minijinja's message with the line it points at.
fn describe(error: &Error) -> String {
    match error.line() {
        Some(line) => format!("{error} (line {line})"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(source: &str) -> JinjaTemplate {
        JinjaTemplate::compile("m.gguf", source, TemplateTokens::default()).expect("compiles")
    }

    fn render(source: &str, messages: &[ChatMessage]) -> Result<String, TemplateError> {
        compile(source).render(
            messages,
            &RenderOptions {
                add_generation_prompt: true,
                ..RenderOptions::default()
            },
        )
    }

    #[test]
    fn chatml_default_renders_like_llama_cpp() {
        let text = render(
            CHATML_TEMPLATE,
            &[ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
        )
        .expect("renders");
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn tojson_writes_like_python() {
        let source = "{{ {'a': [1, 2.5, 'é'], 'b': {'c': none, 'd': true}} | tojson }}\n\
                      {{ [1, {'x': []}] | tojson(indent=2) }}";
        let text = render(source, &[ChatMessage::user("x")]).expect("renders");
        assert_eq!(
            text,
            "{\"a\": [1, 2.5, \"é\"], \"b\": {\"c\": null, \"d\": true}}\n\
             [\n  1,\n  {\n    \"x\": []\n  }\n]"
        );
    }

    #[test]
    fn python_methods_and_undefined_paths_work() {
        let source = "{% for m in messages %}{{ m.content.strip().upper() }}\
                      {% if m.tool_calls.first %}!{% endif %}{% endfor %}";
        let text = render(source, &[ChatMessage::user("  hi ")]).expect("renders");
        assert_eq!(text, "HI");
    }

    #[test]
    fn bos_text_is_stripped_when_tokenizing_adds_it() {
        let tokens = TemplateTokens {
            bos: "<s>".into(),
            eos: "</s>".into(),
            add_bos: true,
            add_eos: false,
        };
        let template = JinjaTemplate::compile(
            "m.gguf",
            "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}",
            tokens,
        )
        .expect("compiles");
        let text = template
            .render(&[ChatMessage::user("hi")], &RenderOptions::default())
            .expect("renders");
        assert_eq!(text, "hi</s>");
    }

    #[test]
    fn raise_exception_is_an_error_naming_the_model() {
        let error = render(
            "{{ raise_exception('Conversation roles must alternate') }}",
            &[ChatMessage::user("x")],
        )
        .expect_err("raises");
        assert_eq!(
            error,
            TemplateError::Raised {
                model: "m.gguf".into(),
                message: "Conversation roles must alternate".into()
            }
        );
        assert!(error.to_string().contains("m.gguf"), "{error}");
    }

    #[test]
    fn endless_loops_and_huge_outputs_end_on_the_budget() {
        for source in [
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
            "{% set s = 'x' * 90000000 %}{% for i in range(1000) %}{{ s }}{% endfor %}",
            "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(64) %}\
             {% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        ] {
            let error = render(source, &[ChatMessage::user("x")]).expect_err(source);
            assert!(
                matches!(
                    error,
                    TemplateError::Budget { .. } | TemplateError::Render { .. }
                ),
                "{source}: {error:?}"
            );
            assert!(error.to_string().contains("m.gguf"), "{error}");
        }
    }

    #[test]
    fn syntax_errors_name_the_model_and_line() {
        let error = JinjaTemplate::compile("m.gguf", "{% for %}", TemplateTokens::default())
            .expect_err("does not compile");
        let text = error.to_string();
        assert!(text.contains("m.gguf") && text.contains("line 1"), "{text}");
    }
}
