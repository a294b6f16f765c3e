//! Chat completions and legacy completions (routed, at their OpenAI paths
//! and their Azure `/openai/deployments/{name}/...` twins, by `app`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::answers;
use crate::error::ApiError;
use crate::respond::{self, Ids};
use crate::sse::{self, StreamJob};
use crate::switches::Switches;
use crate::AppState;

const FINGERPRINT: &str = "fp_mock";

/// A request either endpoint goes on to answer.
struct Accepted<T> {
    switches: Switches,
    body: Map<String, Value>,
    model: String,
    /// `messages` or `prompt`.
    input: T,
    stream: bool,
    include_usage: bool,
}

/// What both endpoints do before answering, in this order (it decides which
/// error a request with several faults gets): switches, JSON body, model,
/// the endpoint's own `input`, stream flags; then the latency, then an
/// injected error.
async fn accept<T>(
    st: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    deployment: Option<&str>,
    input: impl FnOnce(&mut Map<String, Value>) -> Result<T, ApiError>,
) -> Result<Accepted<T>, ApiError> {
    let switches = Switches::from_headers(headers)?;
    let mut body = respond::json_object(body)?;
    let model = respond::model(&body, deployment)?;
    let input = input(&mut body)?;
    let (stream, include_usage) = respond::stream_flags(&body)?;

    respond::delay(switches.latency.unwrap_or_else(|| st.runtime.latency())).await;
    if let Some(e) = switches.injected_error() {
        return Err(e);
    }
    Ok(Accepted {
        switches,
        body,
        model,
        input,
        stream,
        include_usage,
    })
}

fn messages(body: &mut Map<String, Value>) -> Result<Vec<Value>, ApiError> {
    let msgs = match body.remove("messages") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request("'messages' is a required property"))
        }
        Some(Value::Array(m)) => m,
        Some(_) => return Err(ApiError::bad_request("'messages' must be an array")),
    };
    if msgs.is_empty() {
        return Err(ApiError::bad_request(
            "'messages' must contain at least one message",
        ));
    }
    for (i, m) in msgs.iter().enumerate() {
        if m.get("role").and_then(Value::as_str).is_none() {
            return Err(ApiError::bad_request(format!(
                "messages[{i}] must be an object with a string 'role'"
            )));
        }
    }
    Ok(msgs)
}

/// Name of the function a tool-call answer calls: the forced one, else the
/// first declared tool, else a stand-in.
fn tool_name(body: &Map<String, Value>) -> String {
    body.get("tool_choice")
        .and_then(|c| c.pointer("/function/name"))
        .or_else(|| {
            body.get("tools")
                .and_then(|t| t.pointer("/0/function/name"))
        })
        .and_then(Value::as_str)
        .unwrap_or("lookup")
        .to_owned()
}

/// Fields every chat response and chunk carries.
struct Envelope {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
}

impl Envelope {
    fn wrap(&self, choices: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(self.object));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        m.insert("system_fingerprint".into(), json!(FINGERPRINT));
        m.insert("choices".into(), choices);
        m
    }

    /// A whole (non-stream) response.
    fn response(&self, choices: Value, usage: Value) -> Value {
        let mut m = self.wrap(choices);
        m.insert("usage".into(), usage);
        Value::Object(m)
    }

    /// A whole stream, framed alike for both endpoints: a chunk per entry of
    /// `choices`, the usage chunk when asked for, then `[DONE]`.
    fn stream(&self, choices: Vec<Value>, include_usage: bool, usage: &Value) -> Vec<Bytes> {
        let mut events: Vec<Bytes> = choices
            .into_iter()
            .map(|c| sse::event(&self.chunk(c, include_usage)))
            .collect();
        if include_usage {
            events.push(sse::event(&self.usage_chunk(usage)));
        }
        events.push(Bytes::from_static(sse::DONE));
        events
    }

    /// A stream chunk; with `include_usage` every chunk but the last carries
    /// `"usage": null`, as OpenAI does.
    fn chunk(&self, choices: Value, include_usage: bool) -> Value {
        let mut m = self.wrap(choices);
        if include_usage {
            m.insert("usage".into(), Value::Null);
        }
        Value::Object(m)
    }

    fn usage_chunk(&self, usage: &Value) -> Value {
        let mut m = self.wrap(json!([]));
        m.insert("usage".into(), usage.clone());
        Value::Object(m)
    }
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": { "cached_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": 0 },
    })
}

/// What the assistant says: text, or one tool call.
enum Reply {
    Text(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
}

pub async fn chat(
    st: Arc<AppState>,
    headers: &HeaderMap,
    body: &Bytes,
    deployment: Option<&str>,
) -> Result<Response, ApiError> {
    let Accepted {
        switches,
        body: req,
        model,
        input: msgs,
        stream,
        include_usage,
    } = accept(&st, headers, body, deployment, messages).await?;

    let ids = Ids::new(&st, answers::chat_hash(&model, &msgs));
    let question = answers::last_question(&msgs);
    let reply = if switches.tool_calls {
        Reply::ToolCall {
            id: format!("call_{}", ids.hash),
            name: tool_name(&req),
            arguments: json!({ "query": question, "request": ids.hash }).to_string(),
        }
    } else {
        Reply::Text(answers::chat_answer(
            &question,
            &ids.hash,
            switches.answer_bytes,
        ))
    };
    let completion_tokens = match &reply {
        Reply::Text(t) => answers::tokens(t),
        Reply::ToolCall {
            name, arguments, ..
        } => answers::tokens(name) + answers::tokens(arguments) + 3,
    };
    let usage = usage(answers::chat_prompt_tokens(&msgs), completion_tokens);
    let finish_reason = switches.finish_reason.clone().unwrap_or_else(|| {
        match reply {
            Reply::Text(_) => "stop",
            Reply::ToolCall { .. } => "tool_calls",
        }
        .to_owned()
    });
    let env = Envelope {
        id: ids.id("chatcmpl"),
        object: if stream {
            "chat.completion.chunk"
        } else {
            "chat.completion"
        },
        created: respond::unix_now(),
        model,
    };

    if !stream {
        respond::hold(&st, &switches).await;
        let message = match &reply {
            Reply::Text(t) => json!({ "role": "assistant", "content": t, "refusal": null }),
            Reply::ToolCall {
                id,
                name,
                arguments,
            } => json!({
                "role": "assistant",
                "content": null,
                "refusal": null,
                "tool_calls": [{
                    "id": id, "type": "function",
                    "function": { "name": name, "arguments": arguments },
                }],
            }),
        };
        let body = env.response(
            json!([{
                "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason,
            }]),
            usage,
        );
        return Ok(respond::json(&st, &ids, &switches, &body));
    }

    let choice = |delta: Value, finish: Option<&str>| json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]);
    let mut events = Vec::new();
    let pieces: Vec<Value> = match &reply {
        Reply::Text(t) => {
            events.push(choice(json!({ "role": "assistant", "content": "" }), None));
            answers::word_chunks(t, st.cfg.words_per_chunk)
                .into_iter()
                .map(|p| json!({ "content": p }))
                .collect()
        }
        Reply::ToolCall {
            id,
            name,
            arguments,
        } => {
            events.push(choice(
                json!({
                    "role": "assistant", "content": null,
                    "tool_calls": [{
                        "index": 0, "id": id, "type": "function",
                        "function": { "name": name, "arguments": "" },
                    }],
                }),
                None,
            ));
            answers::byte_chunks(arguments, 16)
                .into_iter()
                .map(|p| json!({ "tool_calls": [{ "index": 0, "function": { "arguments": p } }] }))
                .collect()
        }
    };
    let n_pieces = pieces.len();
    events.extend(pieces.into_iter().map(|d| choice(d, None)));
    events.push(choice(json!({}), Some(&finish_reason)));
    let job = StreamJob {
        events: env.stream(events, include_usage, &usage),
        // After the role chunk and the first content chunk.
        hold: switches.hold.clone().map(|t| (n_pieces.min(1), t)),
        cut_after: switches.truncate.map(|n| 1 + n.min(n_pieces)),
        chunk_delay: st.runtime.chunk_delay(),
    };
    Ok(respond::event_stream(st, &ids, job))
}

/// Legacy `prompt`: a string, an array of strings, or token arrays (kept as
/// their JSON text).
fn prompts(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "'prompt' must be a string, an array of strings, or an array of token arrays",
        )
    };
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(t) if t.iter().all(Value::is_u64) => Some(v.to_string()),
        _ => None,
    };
    match body.get("prompt") {
        None | Some(Value::Null) => Err(ApiError::bad_request("'prompt' is a required property")),
        Some(Value::Array(items)) if items.is_empty() => Err(bad()),
        Some(v @ Value::Array(items)) if items.iter().all(Value::is_u64) => Ok(vec![v.to_string()]),
        Some(Value::Array(items)) => items.iter().map(one).collect::<Option<_>>().ok_or_else(bad),
        Some(v) => Ok(vec![one(v).ok_or_else(bad)?]),
    }
}

pub async fn completions(
    st: Arc<AppState>,
    headers: &HeaderMap,
    body: &Bytes,
    deployment: Option<&str>,
) -> Result<Response, ApiError> {
    let Accepted {
        switches,
        model,
        input: prompts,
        stream,
        include_usage,
        ..
    } = accept(&st, headers, body, deployment, |req| prompts(req)).await?;

    let hashes: Vec<String> = prompts
        .iter()
        .map(|p| answers::completion_hash(&model, p))
        .collect();
    let texts: Vec<String> = prompts
        .iter()
        .zip(&hashes)
        .map(|(p, h)| answers::completion_answer(p, h, switches.answer_bytes))
        .collect();
    let ids = Ids::new(&st, hashes.first().cloned().unwrap_or_default());
    let usage = usage(
        prompts.iter().map(|p| answers::tokens(p).max(1)).sum(),
        texts.iter().map(|t| answers::tokens(t)).sum(),
    );
    let finish_reason = switches
        .finish_reason
        .clone()
        .unwrap_or_else(|| "stop".to_owned());
    let env = Envelope {
        id: ids.id("cmpl"),
        object: "text_completion",
        created: respond::unix_now(),
        model,
    };

    if !stream {
        respond::hold(&st, &switches).await;
        let choices: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({ "text": t, "index": i, "logprobs": null, "finish_reason": finish_reason })
            })
            .collect();
        let body = env.response(Value::Array(choices), usage);
        return Ok(respond::json(&st, &ids, &switches, &body));
    }

    let choice = |text: &str, i: usize, finish: Option<&str>| json!([{ "text": text, "index": i, "logprobs": null, "finish_reason": finish }]);
    let mut events: Vec<Value> = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        for piece in answers::word_chunks(t, st.cfg.words_per_chunk) {
            events.push(choice(piece, i, None));
        }
    }
    let n_pieces = events.len();
    for i in 0..texts.len() {
        events.push(choice("", i, Some(&finish_reason)));
    }
    let job = StreamJob {
        events: env.stream(events, include_usage, &usage),
        // Legacy streams have no role chunk: hold after the first text chunk.
        hold: switches.hold.clone().map(|t| (0, t)),
        cut_after: switches.truncate.map(|n| n.min(n_pieces)),
        chunk_delay: st.runtime.chunk_delay(),
    };
    Ok(respond::event_stream(st, &ids, job))
}
