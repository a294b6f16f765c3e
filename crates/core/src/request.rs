//! Recognising cacheable OpenAI-style requests and extracting what the cache needs from them.

use serde_json::{Map, Value};

/// Which API a request speaks; entries of one kind never serve the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    /// `/v1/chat/completions`, Azure `/openai/deployments/{d}/chat/completions`.
    Chat,
    /// Legacy `/v1/completions` with `prompt`.
    Legacy,
}

impl ApiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::Chat => "chat",
            ApiKind::Legacy => "legacy",
        }
    }
}

/// A request line the cache may handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub kind: ApiKind,
    /// Azure OpenAI deployment name, which stands for the model there.
    pub deployment: Option<String>,
}

/// Classifies a request by method and path; `None` means "not ours, pass through untouched".
pub fn classify(method: &str, path: &str) -> Option<Endpoint> {
    if !method.eq_ignore_ascii_case("POST") {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.trim_end_matches('/');
    let kind = if path.ends_with("/chat/completions") {
        ApiKind::Chat
    } else if path.ends_with("/completions") {
        ApiKind::Legacy
    } else {
        return None;
    };
    let deployment = path
        .strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.split('/').next())
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    Some(Endpoint { kind, deployment })
}

/// One chat message reduced to what determines the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Why a request cannot be cached. Each becomes a `bypass` with a counted reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCacheable {
    InvalidJson,
    NotAnObject,
    NoMessages,
    UnsupportedContent,
    MultipleChoices,
    MissingModel,
}

impl NotCacheable {
    pub fn reason(self) -> &'static str {
        match self {
            NotCacheable::InvalidJson => "invalid_json",
            NotCacheable::NotAnObject => "not_an_object",
            NotCacheable::NoMessages => "no_messages",
            NotCacheable::UnsupportedContent => "unsupported_content",
            NotCacheable::MultipleChoices => "multiple_choices",
            NotCacheable::MissingModel => "missing_model",
        }
    }
}

/// The parts of a request body the cache decides on.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    pub kind: ApiKind,
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub messages: Vec<Message>,
    /// Canonical JSON of every output-affecting parameter (see [`output_params`]).
    pub params: String,
    /// The whole body, for `vary_by` JSON pointers.
    pub body: Value,
}

/// Fields that never change the answer (or are handled separately), so they stay out of the
/// partition. Every other field is treated as output-affecting: an unknown new parameter then
/// splits the cache instead of serving a wrong answer.
const NOT_OUTPUT_AFFECTING: &[&str] = &[
    "messages",
    "prompt",
    "model",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
];

/// API defaults: a parameter given at its default is the same request as one that omits it.
const DEFAULTS: &[(&str, f64)] = &[
    ("temperature", 1.0),
    ("top_p", 1.0),
    ("n", 1.0),
    ("presence_penalty", 0.0),
    ("frequency_penalty", 0.0),
];

pub fn parse(endpoint: &Endpoint, body: &[u8]) -> Result<ParsedRequest, NotCacheable> {
    let body: Value = serde_json::from_slice(body).map_err(|_| NotCacheable::InvalidJson)?;
    let obj = body.as_object().ok_or(NotCacheable::NotAnObject)?;

    let n = obj.get("n").and_then(Value::as_f64).unwrap_or(1.0);
    if n != 1.0 || obj.get("best_of").and_then(Value::as_f64).unwrap_or(1.0) != 1.0 {
        return Err(NotCacheable::MultipleChoices);
    }
    let model = match (
        obj.get("model").and_then(Value::as_str),
        &endpoint.deployment,
    ) {
        (Some(m), Some(d)) => format!("{d}/{m}"),
        (Some(m), None) => m.to_string(),
        (None, Some(d)) => d.clone(),
        (None, None) => return Err(NotCacheable::MissingModel),
    };
    let messages = match endpoint.kind {
        ApiKind::Chat => chat_messages(obj.get("messages"))?,
        ApiKind::Legacy => legacy_prompt(obj.get("prompt"))?,
    };
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let params = output_params(obj);
    Ok(ParsedRequest {
        kind: endpoint.kind,
        model,
        stream,
        include_usage,
        messages,
        params,
        body,
    })
}

fn chat_messages(v: Option<&Value>) -> Result<Vec<Message>, NotCacheable> {
    let list = v
        .and_then(Value::as_array)
        .ok_or(NotCacheable::NoMessages)?;
    if list.is_empty() {
        return Err(NotCacheable::NoMessages);
    }
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        let m = m.as_object().ok_or(NotCacheable::NoMessages)?;
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or(NotCacheable::NoMessages)?;
        // `developer` is the newer name of `system`.
        let role = if role == "developer" { "system" } else { role };
        let mut content = match m.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => text_parts(parts)?,
            Some(_) => return Err(NotCacheable::UnsupportedContent),
        };
        // Tool calls and tool results determine what comes next: keep them verbatim.
        for key in ["tool_calls", "function_call", "tool_call_id", "name"] {
            if let Some(v) = m.get(key) {
                content.push_str(&format!("\n[{key}] {}", canonical_json(v)));
            }
        }
        out.push(Message {
            role: role.to_string(),
            content,
        });
    }
    Ok(out)
}

/// Only text parts can be compared; images or audio make the request uncacheable.
fn text_parts(parts: &[Value]) -> Result<String, NotCacheable> {
    let mut text = String::new();
    for p in parts {
        match (p.get("type").and_then(Value::as_str), p.get("text")) {
            (Some("text"), Some(Value::String(t))) => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(t);
            }
            _ => return Err(NotCacheable::UnsupportedContent),
        }
    }
    Ok(text)
}

fn legacy_prompt(v: Option<&Value>) -> Result<Vec<Message>, NotCacheable> {
    let prompt = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.len() == 1 => items[0]
            .as_str()
            .ok_or(NotCacheable::UnsupportedContent)?
            .to_string(),
        Some(Value::Array(_)) => return Err(NotCacheable::MultipleChoices),
        _ => return Err(NotCacheable::NoMessages),
    };
    Ok(vec![Message {
        role: "user".into(),
        content: prompt,
    }])
}

/// Canonical JSON of the output-affecting parameters: sorted keys, defaults dropped, numbers
/// normalised so `1` and `1.0` agree.
pub fn output_params(obj: &Map<String, Value>) -> String {
    let mut kept = Map::new();
    for (k, v) in obj {
        if NOT_OUTPUT_AFFECTING.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        if let Some((_, d)) = DEFAULTS.iter().find(|(name, _)| name == k) {
            if v.as_f64() == Some(*d) {
                continue;
            }
        }
        // `stop: "x"` and `stop: ["x"]` mean the same.
        if k == "stop" {
            if let Value::String(s) = v {
                kept.insert(k.clone(), Value::Array(vec![Value::String(s.clone())]));
                continue;
            }
        }
        kept.insert(k.clone(), v.clone());
    }
    canonical_json(&Value::Object(kept))
}

/// Serialises with sorted object keys and integral floats written as integers.
pub fn canonical_json(v: &Value) -> String {
    fn norm(v: &Value) -> Value {
        match v {
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                _ => v.clone(),
            },
            Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
            // serde_json's Map is a BTreeMap here (no preserve_order), so keys come out sorted.
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), norm(v))).collect())
            }
            _ => v.clone(),
        }
    }
    norm(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> Endpoint {
        classify("POST", "/v1/chat/completions").unwrap()
    }

    #[test]
    fn classifies_openai_azure_and_legacy_paths() {
        assert_eq!(chat().kind, ApiKind::Chat);
        let az = classify(
            "POST",
            "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        )
        .unwrap();
        assert_eq!(az.kind, ApiKind::Chat);
        assert_eq!(az.deployment.as_deref(), Some("gpt4o"));
        assert_eq!(
            classify("POST", "/v1/completions").unwrap().kind,
            ApiKind::Legacy
        );
        assert_eq!(classify("GET", "/v1/chat/completions"), None);
        assert_eq!(classify("POST", "/v1/embeddings"), None);
        assert_eq!(classify("POST", "/v1/models"), None);
    }

    #[test]
    fn parses_messages_model_stream_and_params() {
        let body = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},
            "temperature":0.2,"messages":[{"role":"developer","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"Hi"},{"type":"text","text":"there"}]}]}"#;
        let r = parse(&chat(), body).unwrap();
        assert_eq!(r.model, "gpt-4o");
        assert!(r.stream && r.include_usage);
        assert_eq!(r.messages[0].role, "system");
        assert_eq!(r.messages[1].content, "Hi\nthere");
        assert_eq!(r.params, r#"{"temperature":0.2}"#);
    }

    #[test]
    fn defaults_and_number_forms_do_not_split_the_partition() {
        let a = parse(
            &chat(),
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        let b = parse(
            &chat(),
            br#"{"model":"m","temperature":1.0,"top_p":1,"n":1,"user":"u1","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(a.params, b.params);
        let c = parse(&chat(), br#"{"model":"m","max_tokens":10.0,"stop":"\n","messages":[{"role":"user","content":"x"}]}"#)
            .unwrap();
        assert_eq!(c.params, r#"{"max_tokens":10,"stop":["\n"]}"#);
        let d = parse(&chat(), br#"{"model":"m","seed":7,"tools":[{"type":"function"}],"messages":[{"role":"user","content":"x"}]}"#)
            .unwrap();
        assert_ne!(a.params, d.params);
    }

    #[test]
    fn rejects_what_cannot_be_cached() {
        let e = |b: &[u8]| parse(&chat(), b).unwrap_err();
        assert_eq!(e(b"{nope"), NotCacheable::InvalidJson);
        assert_eq!(e(b"[1]"), NotCacheable::NotAnObject);
        assert_eq!(
            e(br#"{"model":"m","messages":[]}"#),
            NotCacheable::NoMessages
        );
        assert_eq!(
            e(br#"{"model":"m","n":2,"messages":[{"role":"user","content":"x"}]}"#),
            NotCacheable::MultipleChoices
        );
        assert_eq!(
            e(br#"{"messages":[{"role":"user","content":"x"}]}"#),
            NotCacheable::MissingModel
        );
        assert_eq!(
            e(br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#),
            NotCacheable::UnsupportedContent
        );
    }

    #[test]
    fn azure_deployment_stands_for_the_model_and_legacy_prompt_is_a_message() {
        let az = classify("POST", "/openai/deployments/dep1/chat/completions").unwrap();
        let r = parse(&az, br#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap();
        assert_eq!(r.model, "dep1");
        let lg = classify("POST", "/v1/completions").unwrap();
        let r = parse(&lg, br#"{"model":"davinci","prompt":"Say hi"}"#).unwrap();
        assert_eq!(
            r.messages,
            vec![Message {
                role: "user".into(),
                content: "Say hi".into()
            }]
        );
    }
}
