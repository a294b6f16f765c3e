//! Incremental Server-Sent Events parsing and assembly of a streamed completion.
//!
//! Chunks arrive as the upstream sends them and pass through untouched; this only reads a copy.
//! Events may be split anywhere, lines may end in LF, CRLF or CR, comments are skipped, and the
//! stream counts as complete only when `data: [DONE]` was seen.

use serde_json::Value;

use crate::completion::{has_tool_calls, Completion, Gate};
use crate::request::ApiKind;

#[derive(Debug)]
pub struct Assembler {
    kind: ApiKind,
    max_bytes: usize,
    line: Vec<u8>,
    /// A CR ended the previous chunk: a following LF belongs to it.
    pending_cr: bool,
    data: Vec<u8>,
    has_data: bool,
    model: String,
    content: String,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
    failed: Option<Gate>,
    seen_bytes: usize,
}

impl Assembler {
    pub fn new(kind: ApiKind, max_bytes: usize) -> Self {
        Assembler {
            kind,
            max_bytes,
            line: Vec::new(),
            pending_cr: false,
            data: Vec::new(),
            has_data: false,
            model: String::new(),
            content: String::new(),
            finish_reason: None,
            usage: None,
            done: false,
            failed: None,
            seen_bytes: 0,
        }
    }

    /// Whether the answer can no longer be stored; feeding then costs nothing.
    pub fn failed(&self) -> Option<Gate> {
        self.failed
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.seen_bytes += chunk.len();
        if self.seen_bytes > self.max_bytes {
            self.fail(Gate::TooLarge);
            return;
        }
        for &b in chunk {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(),
                b'\r' => {
                    self.end_line();
                    self.pending_cr = true;
                }
                _ => self.line.push(b),
            }
            if self.failed.is_some() {
                return;
            }
        }
    }

    fn fail(&mut self, gate: Gate) {
        if self.failed.is_none() {
            self.failed = Some(gate);
        }
        self.line = Vec::new();
        self.data = Vec::new();
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
    }

    fn dispatch(&mut self) {
        if !self.has_data {
            return;
        }
        let data = std::mem::take(&mut self.data);
        self.has_data = false;
        if self.done {
            // Anything after [DONE] means this is not the stream we understand.
            self.fail(Gate::InvalidJson);
            return;
        }
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&data) else {
            self.fail(Gate::InvalidJson);
            return;
        };
        if v.get("error").is_some() {
            self.fail(Gate::InvalidJson);
            return;
        }
        if let Some(m) = v.get("model").and_then(Value::as_str) {
            if self.model.is_empty() {
                self.model = m.to_string();
            }
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let Some(choices) = v.get("choices").and_then(Value::as_array) else {
            return;
        };
        for c in choices {
            if c.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                self.fail(Gate::MultipleChoices);
                return;
            }
            let text = match self.kind {
                ApiKind::Chat => {
                    let delta = c.get("delta");
                    if delta.is_some_and(|d| {
                        has_tool_calls(d.get("tool_calls"))
                            || has_tool_calls(d.get("function_call"))
                    }) {
                        self.fail(Gate::ToolCalls);
                        return;
                    }
                    delta.and_then(|d| d.get("content")).and_then(Value::as_str)
                }
                ApiKind::Legacy => c.get("text").and_then(Value::as_str),
            };
            if let Some(t) = text {
                self.content.push_str(t);
            }
            if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(f.to_string());
            }
        }
    }

    /// Called at the end of the response stream: the assembled answer, or why not to store it.
    pub fn finish(mut self) -> Result<Completion, Gate> {
        if let Some(g) = self.failed {
            return Err(g);
        }
        // A final event without its blank line still counts once the stream has ended cleanly.
        if !self.line.is_empty() {
            self.end_line();
        }
        self.dispatch();
        // A stream cut off mid-event is incomplete, whatever the fragment looks like.
        if !self.done {
            return Err(Gate::Incomplete);
        }
        if let Some(g) = self.failed {
            return Err(g);
        }
        match self.finish_reason.as_deref() {
            Some("stop") => {}
            Some("tool_calls") | Some("function_call") => return Err(Gate::ToolCalls),
            Some(_) => return Err(Gate::NotStop),
            None => return Err(Gate::Incomplete),
        }
        Ok(Completion {
            model: self.model,
            content: self.content,
            finish_reason: "stop".into(),
            usage: self.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n"
    );

    fn assemble(chunks: &[&[u8]]) -> Result<Completion, Gate> {
        let mut a = Assembler::new(ApiKind::Chat, 1 << 20);
        for c in chunks {
            a.feed(c);
        }
        a.finish()
    }

    #[test]
    fn assembles_content_usage_and_model() {
        let c = assemble(&[STREAM.as_bytes()]).unwrap();
        assert_eq!(c.content, "Hello");
        assert_eq!(c.model, "m1");
        assert_eq!(c.usage.unwrap()["total_tokens"], 5);
    }

    #[test]
    fn any_split_point_and_crlf_give_the_same_answer() {
        let whole = assemble(&[STREAM.as_bytes()]).unwrap();
        let crlf = STREAM.replace('\n', "\r\n");
        let cr = STREAM.replace('\n', "\r");
        for s in [STREAM.to_string(), crlf, cr] {
            let b = s.as_bytes();
            for cut in 0..b.len() {
                assert_eq!(
                    assemble(&[&b[..cut], &b[cut..]]).unwrap(),
                    whole,
                    "cut at {cut}"
                );
            }
            let bytes: Vec<&[u8]> = b.chunks(1).collect();
            assert_eq!(assemble(&bytes).unwrap(), whole);
        }
    }

    #[test]
    fn incomplete_or_unclean_streams_are_refused() {
        let no_done = STREAM.replace("data: [DONE]\n\n", "");
        assert_eq!(assemble(&[no_done.as_bytes()]), Err(Gate::Incomplete));
        let cut = &STREAM.as_bytes()[..STREAM.len() / 2];
        assert_eq!(assemble(&[cut]), Err(Gate::Incomplete));
        let length = STREAM.replace("\"stop\"", "\"length\"");
        assert_eq!(assemble(&[length.as_bytes()]), Err(Gate::NotStop));
        let tools = STREAM.replace(
            "{\"content\":\"Hel\"}",
            "{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"f\"}}]}",
        );
        assert_eq!(assemble(&[tools.as_bytes()]), Err(Gate::ToolCalls));
        let bad = STREAM.replace("{\"content\":\"lo\"}", "{\"content\":");
        assert_eq!(assemble(&[bad.as_bytes()]), Err(Gate::InvalidJson));
        let two = STREAM.replace(
            "\"index\":0,\"delta\":{\"content\":\"lo\"}",
            "\"index\":1,\"delta\":{\"content\":\"lo\"}",
        );
        assert_eq!(assemble(&[two.as_bytes()]), Err(Gate::MultipleChoices));
        let mut small = Assembler::new(ApiKind::Chat, 10);
        small.feed(STREAM.as_bytes());
        assert_eq!(small.finish(), Err(Gate::TooLarge));
    }

    #[test]
    fn multi_line_data_fields_join_with_newlines() {
        let s = "data: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        assert_eq!(assemble(&[s.as_bytes()]).unwrap().content, "x");
    }
}
