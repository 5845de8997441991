//! Log probabilities as OpenAI writes them: `logprobs`/`top_logprobs` of
//! chat completions (`choices[].logprobs.content`) and the legacy
//! `logprobs: N` of completions (`tokens`, `token_logprobs`,
//! `top_logprobs`, `text_offset`). The engine reports one entry per token
//! of the text; a stream carries them all on its last choice chunk.

use serde_json::{json, Map, Value};
use troupe_inference::backend::{Logprob, TokenLogprob, MAX_TOP_LOGPROBS};

use super::error::ApiError;

/// What a chat request asks for: `None`, or the alternatives per token.
///
/// # Errors
/// `top_logprobs` above 20, or given without `logprobs: true` (as OpenAI
/// refuses them).
pub(super) fn chat_request(
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
) -> Result<Option<u8>, ApiError> {
    match (logprobs, top_logprobs) {
        (Some(true), top) => alternatives("top_logprobs", top.unwrap_or(0)).map(Some),
        (_, Some(_)) => Err(ApiError::invalid(
            Some("top_logprobs"),
            "top_logprobs needs logprobs: true",
        )),
        (_, None) => Ok(None),
    }
}

/// What a completion request's `logprobs: N` asks for.
///
/// # Errors
/// `N` above 20.
pub(super) fn completion_request(logprobs: Option<u32>) -> Result<Option<u8>, ApiError> {
    logprobs.map(|n| alternatives("logprobs", n)).transpose()
}

fn alternatives(param: &'static str, n: u32) -> Result<u8, ApiError> {
    u8::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_TOP_LOGPROBS)
        .ok_or_else(|| {
            ApiError::invalid(
                Some(param),
                format!("{param} is {n}; at most {MAX_TOP_LOGPROBS} alternatives per token"),
            )
        })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One token as chat's logprobs write it.
fn chat_token(t: &Logprob) -> Value {
    json!({ "token": text(&t.bytes), "logprob": t.logprob, "bytes": t.bytes })
}

/// `choices[].logprobs` of a chat answer.
pub(super) fn chat(entries: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut token = chat_token(&entry.chosen);
            token["top_logprobs"] = entry.top.iter().map(chat_token).collect();
            token
        })
        .collect();
    json!({ "content": content, "refusal": null })
}

/// `choices[].logprobs` of a completion, offsets counted in characters from
/// `offset` (the echoed prompt's length, else 0).
pub(super) fn completion(entries: &[TokenLogprob], offset: usize) -> Value {
    let mut tokens = Vec::with_capacity(entries.len());
    let mut token_logprobs = Vec::with_capacity(entries.len());
    let mut top_logprobs = Vec::with_capacity(entries.len());
    let mut text_offset = Vec::with_capacity(entries.len());
    let mut at = offset;
    for entry in entries {
        let token = text(&entry.chosen.bytes);
        text_offset.push(at);
        at += token.chars().count();
        tokens.push(token);
        token_logprobs.push(entry.chosen.logprob);
        let top: Map<String, Value> = entry
            .top
            .iter()
            .map(|t| (text(&t.bytes), json!(t.logprob)))
            .collect();
        top_logprobs.push(Value::Object(top));
    }
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    fn entry(bytes: &[u8], logprob: f32) -> TokenLogprob {
        let chosen = Logprob {
            token: Some(1),
            bytes: bytes.to_vec(),
            logprob,
        };
        TokenLogprob {
            top: vec![chosen.clone()],
            chosen,
        }
    }

    #[test]
    fn requests_are_checked_as_openai_checks_them() {
        assert_eq!(chat_request(None, None).unwrap(), None);
        assert_eq!(chat_request(Some(false), None).unwrap(), None);
        assert_eq!(chat_request(Some(true), None).unwrap(), Some(0));
        assert_eq!(chat_request(Some(true), Some(5)).unwrap(), Some(5));
        assert_eq!(
            chat_request(Some(true), Some(21)).unwrap_err().param,
            Some("top_logprobs")
        );
        assert_eq!(
            chat_request(None, Some(2)).unwrap_err().param,
            Some("top_logprobs")
        );
        assert_eq!(completion_request(Some(3)).unwrap(), Some(3));
        assert!(completion_request(Some(300)).is_err());
    }

    #[test]
    fn completion_offsets_count_characters() {
        let value = completion(&[entry(b"He", -0.5), entry("é!".as_bytes(), -1.0)], 3);
        assert_eq!(value["text_offset"], json!([3, 5]));
        assert_eq!(value["tokens"], json!(["He", "é!"]));
        assert_eq!(value["top_logprobs"][0]["He"], json!(-0.5));
        let chat = chat(&[entry(b"\xE2\x82", -2.0)]);
        assert_eq!(chat["content"][0]["bytes"], json!([0xE2, 0x82]));
    }
}
