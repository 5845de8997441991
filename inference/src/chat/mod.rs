//! Chat messages, rendered into a prompt with the model's own template.
//!
//! # Layout
//! - [`jinja`]: the GGUF's `tokenizer.chat_template` run by a real Jinja
//!   engine (minijinja), bounded, with the variables llama.cpp's server
//!   passes; a model without a template gets llama.cpp's ChatML template.
//! - this file: the messages, and [`ChatTemplate`], which picks the path once
//!   per loaded model.
//!
//! **Fallback:** a template minijinja cannot compile is rendered by
//! llama.cpp's built-in matcher (`llama_chat_apply_template`, which
//! recognises the common templates by their text), and if llama.cpp does not
//! recognise it either, as ChatML; both with a warning. A template that
//! compiles but fails while rendering (it raised, or ran past its budget) is
//! an error naming the model, not a fallback: the template said no.
//!
//! When a chat is rendered as ChatML for a model that was not trained on it
//! (no template, or the fallback), `<|im_end|>` is added to the request's
//! stop strings: such a model does not know the marker as a token and would
//! otherwise write it as text until the length limit.
//!
//! The rendered text is tokenized with special tokens parsed, so the
//! template's control tokens become single tokens.

pub mod jinja;
pub mod tool_calls;

use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::{ApplyChatTemplateError, ChatTemplateError};

pub use jinja::{JinjaTemplate, RenderOptions, TemplateError, TemplateTokens, CHATML_TEMPLATE};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool's output.
    Tool,
}

impl Role {
    /// The role name chat templates use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    pub content: String,
    /// The calls an assistant message made (OpenAI's `tool_calls`), which a
    /// template that knows tools writes in the model's own call syntax.
    pub tool_calls: Vec<MessageToolCall>,
    /// The call a tool message answers (OpenAI's `tool_call_id`).
    pub tool_call_id: Option<String>,
}

/// A call an earlier assistant message made, as its template is shown it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageToolCall {
    /// The call's id, which the tool message answering it names.
    pub id: String,
    /// The function called.
    pub name: String,
    /// The arguments: a JSON object, or the client's text when it is not JSON.
    pub arguments: serde_json::Value,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A tool-output message.
    pub fn tool(content: impl Into<String>) -> Self {
        Self::new(Role::Tool, content)
    }
}

/// Which template rendered a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSource {
    /// The model's own Jinja template.
    Model,
    /// The model's template as llama.cpp's built-in matcher renders it (the
    /// Jinja engine could not compile it).
    BuiltIn,
    /// ChatML: the model has no template (as llama.cpp does), or neither
    /// the Jinja engine nor llama.cpp's matcher could use it.
    ChatMl,
}

/// A chat rendered into prompt text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedChat {
    /// The prompt, ending with an open assistant turn.
    pub text: String,
    /// Which template produced it.
    pub source: TemplateSource,
}

impl RenderedChat {
    /// A stop string the generation needs besides the model's end-of-turn
    /// tokens: ChatML's end marker when ChatML was used.
    pub fn extra_stop(&self) -> Option<&'static str> {
        (self.source == TemplateSource::ChatMl).then_some(CHATML_END)
    }
}

/// ChatML's end-of-turn marker.
pub const CHATML_END: &str = "<|im_end|>";

/// Why a chat could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// There are no messages.
    #[error("the chat has no messages")]
    Empty,
    /// A message contains a NUL byte, which llama.cpp cannot take.
    #[error("message {index} contains a NUL byte")]
    NulByte {
        /// The message's position.
        index: usize,
    },
    /// The messages are too long for llama.cpp's `i32` buffer lengths.
    #[error("the chat is {len} bytes; at most {max} can be rendered")]
    TooLong {
        /// Bytes in all messages.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The model's Jinja template refused or failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// llama.cpp failed to render a template it recognised.
    #[error("llama.cpp failed to apply the chat template: {0}")]
    Apply(String),
}

/// Renders `messages` as ChatML with an open assistant turn, the way
/// llama.cpp renders a chat for a model without a template.
pub fn render_chatml(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for message in messages {
        out.push_str("<|im_start|>");
        out.push_str(message.role.as_str());
        out.push('\n');
        out.push_str(&message.content);
        out.push_str(CHATML_END);
        out.push('\n');
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

/// How one loaded model's chats are rendered, chosen once at load.
#[derive(Debug)]
pub enum ChatTemplate {
    /// A Jinja template: the model's own, or llama.cpp's ChatML one for a
    /// model without a template.
    Jinja {
        /// The compiled template (boxed: it is large, `BuiltIn` is empty).
        template: Box<JinjaTemplate>,
        /// Whose template it is.
        source: TemplateSource,
        /// The tool-call syntax the template shows tools in, if any.
        tools: Option<tool_calls::ToolSyntax>,
    },
    /// The model's template could not be compiled: llama.cpp's built-in
    /// matcher renders it, or ChatML when llama.cpp does not recognise it.
    BuiltIn,
}

impl ChatTemplate {
    /// The template for `model`, whose file is `name` (named in errors).
    pub fn for_model(model: &LlamaModel, name: &str) -> Self {
        let vocab = model.vocab();
        let text = |token: llama_cpp_2::token::LlamaToken| {
            if token.0 < 0 {
                return String::new();
            }
            String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned()
        };
        let tokens = TemplateTokens {
            bos: text(vocab.bos()),
            eos: text(vocab.eos()),
            add_bos: vocab.should_add_bos(),
            add_eos: vocab.should_add_eos(),
        };
        let (source, origin) = match model.chat_template(None) {
            Ok(template) => match template.to_string() {
                Ok(source) => (source, TemplateSource::Model),
                Err(_) => {
                    tracing::warn!(
                        model = name,
                        "the chat template is not UTF-8; using llama.cpp's built-in templates"
                    );
                    return Self::BuiltIn;
                }
            },
            Err(_) => (CHATML_TEMPLATE.to_owned(), TemplateSource::ChatMl),
        };
        match JinjaTemplate::compile(name, &source, tokens) {
            Ok(template) => Self::Jinja {
                template: Box::new(template),
                source: origin,
                tools: tool_calls::ToolSyntax::detect(&source),
            },
            Err(error) => {
                tracing::warn!(%error, "using llama.cpp's built-in templates instead");
                Self::BuiltIn
            }
        }
    }

    /// The syntax the model calls tools in, when its template (compiled by
    /// the Jinja engine) shows tools in one troupe knows.
    pub fn tool_syntax(&self) -> Option<tool_calls::ToolSyntax> {
        match self {
            Self::Jinja { tools, .. } => *tools,
            Self::BuiltIn => None,
        }
    }

    /// Renders `messages` with an open assistant turn (see the module
    /// documentation for the fallbacks); `tools` (OpenAI tool definitions)
    /// go to a Jinja template, the fallbacks know none.
    ///
    /// # Errors
    /// See [`ChatError`].
    pub fn render(
        &self,
        model: &LlamaModel,
        messages: &[ChatMessage],
        tools: &[serde_json::Value],
    ) -> Result<RenderedChat, ChatError> {
        if messages.is_empty() {
            return Err(ChatError::Empty);
        }
        match self {
            Self::Jinja {
                template, source, ..
            } => {
                let options = RenderOptions {
                    add_generation_prompt: true,
                    tools: tools.to_vec(),
                };
                Ok(RenderedChat {
                    text: template.render(messages, &options)?,
                    source: *source,
                })
            }
            Self::BuiltIn => render_built_in(model, messages),
        }
    }
}

/// Renders `messages` with llama.cpp's built-in matcher, falling back to
/// ChatML when it does not recognise the model's template.
fn render_built_in(
    model: &LlamaModel,
    messages: &[ChatMessage],
) -> Result<RenderedChat, ChatError> {
    // llama-cpp-2 renders into a buffer twice the messages' size, whose
    // length must fit an i32.
    let len = messages
        .iter()
        .map(|m| m.content.len() + m.role.as_str().len())
        .sum();
    let max = (i32::MAX / 4) as usize;
    if len > max {
        return Err(ChatError::TooLong { len, max });
    }
    let mut chat = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let converted =
            LlamaChatMessage::new(message.role.as_str().to_owned(), message.content.clone())
                .map_err(|_| ChatError::NulByte { index })?;
        chat.push(converted);
    }
    let template = match model.chat_template(None) {
        Ok(template) => template,
        Err(ChatTemplateError::MissingTemplate) => return Ok(chatml(messages)),
        Err(error) => {
            tracing::warn!(%error, "model's chat template is unreadable; rendering the chat as ChatML");
            return Ok(chatml(messages));
        }
    };
    match model.apply_chat_template(&template, &chat, true) {
        Ok(text) => Ok(RenderedChat {
            text,
            source: TemplateSource::BuiltIn,
        }),
        // llama.cpp answers -1 when it does not recognise the template.
        Err(ApplyChatTemplateError::FfiError(code)) if code < 0 => {
            tracing::warn!(code, "llama.cpp does not recognise the model's chat template; rendering the chat as ChatML");
            Ok(chatml(messages))
        }
        Err(error) => Err(ChatError::Apply(error.to_string())),
    }
}

fn chatml(messages: &[ChatMessage]) -> RenderedChat {
    RenderedChat {
        text: render_chatml(messages),
        source: TemplateSource::ChatMl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_renders_every_turn_and_opens_the_assistant() {
        let text = render_chatml(&[
            ChatMessage::system("Be brief."),
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello."),
            ChatMessage::tool("{\"ok\":true}"),
        ]);
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>tool\n{\"ok\":true}<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }
}
