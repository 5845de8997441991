//! Chat messages, rendered into a prompt with the model's own template.
//!
//! Rendering uses llama.cpp's `llama_chat_apply_template` on the template
//! stored in the GGUF (`tokenizer.chat_template`). llama.cpp does not run
//! Jinja: it recognises the common templates (ChatML, Llama 2/3, Mistral,
//! Gemma, Phi, …) by their text and renders them natively.
//!
//! **Fallback:** when the file has no chat template, or llama.cpp does not
//! recognise it, the messages are rendered as ChatML
//! (`<|im_start|>{role}\n{content}<|im_end|>\n`, then
//! `<|im_start|>assistant\n`) and a warning is logged. ChatML is the most
//! common format among instruction-tuned GGUF models; for a model trained on
//! another format the output will be poorer, but the request still runs.
//!
//! The rendered text is tokenized with special tokens parsed, so the
//! template's control tokens become single tokens.

use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::{ApplyChatTemplateError, ChatTemplateError};

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
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
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
    /// The model's own template.
    Model,
    /// The ChatML fallback (the model has no template llama.cpp recognises).
    ChatMlFallback,
}

/// A chat rendered into prompt text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedChat {
    /// The prompt, ending with an open assistant turn.
    pub text: String,
    /// Which template produced it.
    pub source: TemplateSource,
}

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
    /// llama.cpp failed to render a template it recognised.
    #[error("llama.cpp failed to apply the chat template: {0}")]
    Apply(String),
}

/// Renders `messages` as ChatML with an open assistant turn: the fallback
/// used when a model has no template llama.cpp recognises.
pub fn render_chatml(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for message in messages {
        out.push_str("<|im_start|>");
        out.push_str(message.role.as_str());
        out.push('\n');
        out.push_str(&message.content);
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

/// Renders `messages` with `model`'s template, falling back to ChatML (see
/// the module documentation).
pub(crate) fn render(
    model: &LlamaModel,
    messages: &[ChatMessage],
) -> Result<RenderedChat, ChatError> {
    if messages.is_empty() {
        return Err(ChatError::Empty);
    }
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
        Err(ChatTemplateError::MissingTemplate) => {
            tracing::warn!("model has no chat template; rendering the chat as ChatML");
            return Ok(fallback(messages));
        }
        Err(error) => {
            tracing::warn!(%error, "model's chat template is unreadable; rendering the chat as ChatML");
            return Ok(fallback(messages));
        }
    };
    match model.apply_chat_template(&template, &chat, true) {
        Ok(text) => Ok(RenderedChat {
            text,
            source: TemplateSource::Model,
        }),
        // llama.cpp answers -1 when it does not recognise the template.
        Err(ApplyChatTemplateError::FfiError(code)) if code < 0 => {
            tracing::warn!(code, "llama.cpp does not recognise the model's chat template; rendering the chat as ChatML");
            Ok(fallback(messages))
        }
        Err(error) => Err(ChatError::Apply(error.to_string())),
    }
}

fn fallback(messages: &[ChatMessage]) -> RenderedChat {
    RenderedChat {
        text: render_chatml(messages),
        source: TemplateSource::ChatMlFallback,
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
