//! A cache entry as stored in Redis, and the responses rendered from it on a hit.
//!
//! The stored form is the assembled answer, not the upstream bytes, so an entry stored from a
//! stream can serve a non-stream request and the other way round, and every hit is rendered
//! fresh as a valid `chat.completion` (or SSE chunks) for the request at hand.

use std::cell::OnceCell;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::completion::Completion;
use crate::request::ApiKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Expiry, unix milliseconds. Checked on every read: an expired entry is never served.
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// Creation, unix milliseconds (for the `age` header).
    #[serde(rename = "t")]
    pub created_at: u64,
    /// The canonical guard text of the stored request, which the guards compare.
    #[serde(rename = "q")]
    pub prompt: String,
    #[serde(rename = "m")]
    pub model: String,
    #[serde(rename = "r")]
    pub content: String,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}

/// An entry and its JSON, serialised at most once however many tiers keep it (a store writes
/// both Redis and the local tier) and not at all when none does.
pub struct Encoded<'a> {
    pub entry: &'a Entry,
    json: OnceCell<String>,
}

impl<'a> Encoded<'a> {
    pub fn new(entry: &'a Entry) -> Self {
        Encoded {
            entry,
            json: OnceCell::new(),
        }
    }

    pub fn json(&self) -> &str {
        self.json.get_or_init(|| self.entry.to_json())
    }
}

impl Entry {
    /// `now_ms` in unix milliseconds, `ttl_seconds` as configured.
    pub fn new(c: Completion, prompt: &str, now_ms: u64, ttl_seconds: u64) -> Entry {
        Entry {
            expires_at: now_ms.saturating_add(ttl_seconds.saturating_mul(1000)),
            created_at: now_ms,
            prompt: prompt.to_string(),
            model: c.model,
            content: c.content,
            usage: c.usage.map(compact_usage),
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Option<Entry> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at > now_ms
    }

    /// Completion tokens the upstream would have generated again; counted as saved on a hit.
    pub fn completion_tokens(&self) -> u64 {
        self.usage
            .as_ref()
            .and_then(|u| u.get("completion_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }
}

/// The upstream's `usage` without its all-zero detail objects (`prompt_tokens_details:
/// {cached_tokens: 0, audio_tokens: 0}` and the like): about 130 bytes of every stored entry
/// that say nothing. The token counts, and any detail that is not zero, are kept.
fn compact_usage(usage: Value) -> Value {
    fn all_zero(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::Object(m) => m.values().all(all_zero),
            _ => false,
        }
    }
    match usage {
        Value::Object(mut m) => {
            m.retain(|_, v| !(v.is_object() && all_zero(v)));
            Value::Object(m)
        }
        other => other,
    }
}

/// What a hit renders for.
pub struct Render<'a> {
    pub kind: ApiKind,
    pub stream: bool,
    pub include_usage: bool,
    /// The model the client asked for; echoed when the stored entry has none.
    pub request_model: &'a str,
    pub id: &'a str,
    pub now: u64,
}

/// Words per replayed SSE chunk: streams look like a model's, not one giant chunk.
const WORDS_PER_CHUNK: usize = 4;

fn split_chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut words = 0;
    let mut in_word = false;
    for (i, ch) in text.char_indices() {
        let ws = ch.is_whitespace();
        if !ws && !in_word {
            if words == WORDS_PER_CHUNK {
                out.push(&text[start..i]);
                start = i;
                words = 0;
            }
            words += 1;
        }
        in_word = !ws;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

impl Entry {
    fn model<'a>(&'a self, r: &'a Render<'_>) -> &'a str {
        if self.model.is_empty() {
            r.request_model
        } else {
            &self.model
        }
    }

    fn usage_value(&self) -> Value {
        self.usage.clone().unwrap_or(Value::Null)
    }

    /// The body of a hit: `(content-type, body)`.
    pub fn render(&self, r: &Render<'_>) -> (&'static str, Vec<u8>) {
        if r.stream {
            ("text/event-stream", self.render_sse(r).into_bytes())
        } else {
            ("application/json", self.render_json(r).into_bytes())
        }
    }

    fn render_json(&self, r: &Render<'_>) -> String {
        let model = self.model(r);
        let v = match r.kind {
            ApiKind::Chat => json!({
                "id": format!("chatcmpl-sc{}", r.id),
                "object": "chat.completion",
                "created": r.now,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": self.content, "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop"
                }],
                "usage": self.usage_value(),
            }),
            ApiKind::Legacy => json!({
                "id": format!("cmpl-sc{}", r.id),
                "object": "text_completion",
                "created": r.now,
                "model": model,
                "choices": [{"text": self.content, "index": 0, "logprobs": null, "finish_reason": "stop"}],
                "usage": self.usage_value(),
            }),
        };
        v.to_string()
    }

    fn render_sse(&self, r: &Render<'_>) -> String {
        let model = self.model(r);
        let mut out = String::with_capacity(self.content.len() * 3 + 512);
        let mut event = |v: Value| {
            out.push_str("data: ");
            out.push_str(&v.to_string());
            out.push_str("\n\n");
        };
        let usage_field = |v: &mut Value| {
            // With include_usage, OpenAI sends `usage: null` on every chunk but the last.
            if r.include_usage {
                v["usage"] = Value::Null;
            }
        };
        match r.kind {
            ApiKind::Chat => {
                let id = format!("chatcmpl-sc{}", r.id);
                let chunk = |delta: Value, finish: Value| {
                    json!({
                        "id": id, "object": "chat.completion.chunk", "created": r.now, "model": model,
                        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
                    })
                };
                let mut first = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
                usage_field(&mut first);
                event(first);
                for piece in split_chunks(&self.content) {
                    let mut c = chunk(json!({ "content": piece }), Value::Null);
                    usage_field(&mut c);
                    event(c);
                }
                let mut fin = chunk(json!({}), json!("stop"));
                usage_field(&mut fin);
                event(fin);
                if r.include_usage {
                    event(json!({
                        "id": id, "object": "chat.completion.chunk", "created": r.now, "model": model,
                        "choices": [], "usage": self.usage_value()
                    }));
                }
            }
            ApiKind::Legacy => {
                let id = format!("cmpl-sc{}", r.id);
                let chunk = |text: &str, finish: Value| {
                    json!({
                        "id": id, "object": "text_completion", "created": r.now, "model": model,
                        "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]
                    })
                };
                for piece in split_chunks(&self.content) {
                    event(chunk(piece, Value::Null));
                }
                event(chunk("", json!("stop")));
                if r.include_usage {
                    event(json!({
                        "id": id, "object": "text_completion", "created": r.now, "model": model,
                        "choices": [], "usage": self.usage_value()
                    }));
                }
            }
        }
        out.push_str("data: [DONE]\n\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::Assembler;

    fn entry(content: &str) -> Entry {
        Entry {
            expires_at: 200,
            created_at: 100,
            prompt: "q".into(),
            model: "m1".into(),
            content: content.into(),
            usage: Some(json!({"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12})),
        }
    }

    fn render(kind: ApiKind, stream: bool, include_usage: bool) -> Render<'static> {
        Render {
            kind,
            stream,
            include_usage,
            request_model: "req",
            id: "abc",
            now: 150,
        }
    }

    #[test]
    fn stored_form_round_trips_and_expires() {
        let e = entry("Hi");
        assert_eq!(Entry::from_json(e.to_json().as_bytes()), Some(e.clone()));
        assert!(e.is_live(199) && !e.is_live(200));
        assert_eq!(e.completion_tokens(), 9);
        assert_eq!(Entry::from_json(b"{\"e\":1}"), None);
    }

    #[test]
    fn a_ttl_lasts_its_full_length_whatever_the_millisecond_of_the_store() {
        let c = || Completion {
            model: "m".into(),
            content: "a".into(),
            finish_reason: "stop".into(),
            usage: None,
        };
        // Stored 1 ms before a second boundary, with a 1 s TTL: live for the whole second.
        let e = Entry::new(c(), "q", 1_999, 1);
        assert!(e.is_live(2_998) && !e.is_live(2_999));
    }

    #[test]
    fn zero_usage_details_are_not_stored() {
        let c = Completion {
            model: "m".into(),
            content: "a".into(),
            finish_reason: "stop".into(),
            usage: Some(json!({
                "prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 7, "audio_tokens": 0}
            })),
        };
        let e = Entry::new(c, "q", 0, 1);
        assert_eq!(
            e.usage,
            Some(json!({
                "prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5,
                "completion_tokens_details": {"reasoning_tokens": 7, "audio_tokens": 0}
            }))
        );
    }

    #[test]
    fn json_hit_is_a_valid_chat_completion() {
        let (ct, body) =
            entry("Paris is the capital.").render(&render(ApiKind::Chat, false, false));
        assert_eq!(ct, "application/json");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Paris is the capital."
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 12);
    }

    #[test]
    fn replayed_stream_reassembles_to_the_same_text_in_several_chunks() {
        let text = "The quick brown fox jumps over the lazy dog.\n\nTwice:  the quick brown fox.";
        for kind in [ApiKind::Chat, ApiKind::Legacy] {
            let (ct, body) = entry(text).render(&render(kind, true, true));
            assert_eq!(ct, "text/event-stream");
            let s = String::from_utf8(body.clone()).unwrap();
            assert!(s.matches("data: ").count() >= 5, "{s}");
            assert!(s.ends_with("data: [DONE]\n\n"));
            let mut a = Assembler::new(kind, 1 << 20);
            a.feed(&body);
            let c = a.finish().unwrap();
            assert_eq!(c.content, text);
            assert_eq!(c.usage.unwrap()["completion_tokens"], 9);
        }
        let (_, body) = entry(text).render(&render(ApiKind::Chat, true, false));
        assert!(!String::from_utf8(body).unwrap().contains("\"usage\""));
    }

    #[test]
    fn split_keeps_every_character() {
        for t in [
            "",
            "one",
            "  lead and trail  ",
            "a b c d e f g h i",
            "émoji 🎉 ok yes no maybe",
        ] {
            assert_eq!(split_chunks(t).concat(), t);
        }
        assert_eq!(split_chunks("a b c d e f").len(), 2);
    }
}
