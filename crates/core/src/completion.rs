//! An upstream answer reduced to what the cache stores, and the write gates that decide whether
//! it may be stored at all.

use serde_json::Value;

use crate::request::ApiKind;

/// A complete, clean answer: one choice, finished with `stop`, text only.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub model: String,
    pub content: String,
    pub finish_reason: String,
    pub usage: Option<Value>,
}

/// Why an upstream answer was not stored. Each is counted as `semcache.store_skipped.<reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gate {
    Status,
    ContentType,
    Encoded,
    TooLarge,
    InvalidJson,
    NotStop,
    ToolCalls,
    MultipleChoices,
    Incomplete,
    NoContent,
}

impl Gate {
    pub fn reason(self) -> &'static str {
        match self {
            Gate::Status => "status",
            Gate::ContentType => "content_type",
            Gate::Encoded => "encoded",
            Gate::TooLarge => "too_large",
            Gate::InvalidJson => "invalid_json",
            Gate::NotStop => "finish_reason",
            Gate::ToolCalls => "tool_calls",
            Gate::MultipleChoices => "multiple_choices",
            Gate::Incomplete => "incomplete",
            Gate::NoContent => "no_content",
        }
    }

    pub const ALL: [Gate; 10] = [
        Gate::Status,
        Gate::ContentType,
        Gate::Encoded,
        Gate::TooLarge,
        Gate::InvalidJson,
        Gate::NotStop,
        Gate::ToolCalls,
        Gate::MultipleChoices,
        Gate::Incomplete,
        Gate::NoContent,
    ];
}

pub(crate) fn has_tool_calls(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// Parses a non-streaming `chat.completion` / `text_completion` body and applies the gates.
pub fn from_json(kind: ApiKind, body: &[u8]) -> Result<Completion, Gate> {
    let v: Value = serde_json::from_slice(body).map_err(|_| Gate::InvalidJson)?;
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or(Gate::InvalidJson)?;
    if choices.len() != 1 {
        return Err(Gate::MultipleChoices);
    }
    let choice = &choices[0];
    let content = match kind {
        ApiKind::Chat => {
            let msg = choice.get("message").ok_or(Gate::InvalidJson)?;
            if has_tool_calls(msg.get("tool_calls")) || has_tool_calls(msg.get("function_call")) {
                return Err(Gate::ToolCalls);
            }
            msg.get("content").and_then(Value::as_str)
        }
        ApiKind::Legacy => choice.get("text").and_then(Value::as_str),
    }
    .ok_or(Gate::NoContent)?;
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    if finish_reason != "stop" {
        return Err(Gate::NotStop);
    }
    Ok(Completion {
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        content: content.to_string(),
        finish_reason: finish_reason.to_string(),
        usage: v.get("usage").filter(|u| u.is_object()).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_clean_chat_answer() {
        let c = from_json(
            ApiKind::Chat,
            br#"{"object":"chat.completion","model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!(c.content, "Paris.");
        assert_eq!(c.model, "m1");
        assert_eq!(c.usage.unwrap()["completion_tokens"], 2);
    }

    #[test]
    fn every_gate_refuses_its_case() {
        let chat = |b: &str| from_json(ApiKind::Chat, b.as_bytes()).unwrap_err();
        assert_eq!(chat("{\"choices\":[{"), Gate::InvalidJson);
        assert_eq!(chat(r#"{"error":{"message":"x"}}"#), Gate::InvalidJson);
        assert_eq!(chat(r#"{"choices":[]}"#), Gate::MultipleChoices);
        assert_eq!(
            chat(r#"{"choices":[{"message":{"content":"a"},"finish_reason":"length"}]}"#),
            Gate::NotStop
        );
        assert_eq!(
            chat(
                r#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"1"}]},"finish_reason":"tool_calls"}]}"#
            ),
            Gate::ToolCalls
        );
        assert_eq!(
            chat(r#"{"choices":[{"message":{"content":null},"finish_reason":"stop"}]}"#),
            Gate::NoContent
        );
    }

    #[test]
    fn legacy_text_completion() {
        let c = from_json(
            ApiKind::Legacy,
            br#"{"object":"text_completion","model":"d","choices":[{"text":" hi","index":0,"finish_reason":"stop"}]}"#,
        )
        .unwrap();
        assert_eq!(c.content, " hi");
    }
}
