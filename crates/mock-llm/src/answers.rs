//! Deterministic answers: the same canonical request always gets the same
//! text, and any change of model or of any message changes it (the request
//! hash is part of the answer), so tests can tell which request an answer
//! belongs to.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Filler sentences; a few are picked by hash so answers have a realistic
/// length (~300-1000 bytes) and vary between requests.
const SENTENCES: [&str; 16] = [
    "This reply comes from the semcache mock upstream, which answers every question the same way every time.",
    "A real model would weigh the context of the whole conversation before choosing its words.",
    "Caching such replies saves both latency and tokens when users keep asking the same things.",
    "The mock never calls a model, so its words carry no meaning beyond the test that asked for them.",
    "Semantic caches compare the meaning of prompts rather than their exact bytes.",
    "Identical requests receive identical text, which keeps test assertions simple and exact.",
    "Streaming clients receive this text a few words at a time, as server-sent events.",
    "Usage figures below are estimates derived from word counts, not from a real tokenizer.",
    "Latency, truncation and failures can all be injected with x-mock request headers.",
    "Benchmarks use this server as a fast and predictable baseline upstream.",
    "Every conversation turn contributes to the request hash printed at the start of this answer.",
    "Changing the model name or any earlier message yields a different answer.",
    "The control endpoints report how many requests actually reached this upstream.",
    "A cache hit should never show up in those counters, which is how tests prove it happened.",
    "Tool calls, finish reasons and gzip encoding can be requested per request as well.",
    "Nothing here is random: run the same request twice and compare the bytes.",
];

/// Feeds a length-prefixed field, so `("ab","c")` and `("a","bc")` differ.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn value_canonical(h: &mut Sha256, v: Option<&Value>) {
    match v {
        None | Some(Value::Null) => field(h, b""),
        Some(Value::String(s)) => field(h, s.as_bytes()),
        Some(other) => field(h, other.to_string().as_bytes()),
    }
}

fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Hash of the canonical chat request: model and every message (role, name,
/// content, tool calls), but not `stream`, so a streamed answer equals the
/// non-streamed one.
pub fn chat_hash(model: &str, messages: &[Value]) -> String {
    let mut h = Sha256::new();
    field(&mut h, b"chat");
    field(&mut h, model.as_bytes());
    for m in messages {
        for key in ["role", "name", "content", "tool_calls", "tool_call_id"] {
            value_canonical(&mut h, m.get(key));
        }
    }
    hex16(&h.finalize())
}

/// Hash of one legacy-completions prompt.
pub fn completion_hash(model: &str, prompt: &str) -> String {
    let mut h = Sha256::new();
    field(&mut h, b"completion");
    field(&mut h, model.as_bytes());
    field(&mut h, prompt.as_bytes());
    hex16(&h.finalize())
}

/// Readable text of a message `content`: the string, or the text parts of a
/// multi-part content array.
pub fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The question an answer quotes: the last user message, else the last message.
pub fn last_question(messages: &[Value]) -> String {
    let pick = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .or_else(|| messages.last());
    content_text(pick.and_then(|m| m.get("content")))
}

/// At most `max` chars of `s`, whitespace collapsed, so a huge prompt still
/// gives an answer of bounded length.
fn quote(s: &str, max: usize) -> String {
    let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &collapsed[..cut]),
        None => collapsed,
    }
}

/// Appends distinct sentences chosen by the hash digits: four, or as many as it takes to reach
/// `min_bytes` (at most all sixteen; none repeats, so the text compresses like prose).
fn filler(hash: &str, min_bytes: usize, out: &mut String) {
    let digits: Vec<usize> = hash
        .chars()
        .filter_map(|c| c.to_digit(16))
        .map(|d| d as usize)
        .collect();
    let mut used = [false; SENTENCES.len()];
    let mut picked = 0;
    for d in digits {
        let mut i = d % SENTENCES.len();
        while used[i] {
            i = (i + 1) % SENTENCES.len();
        }
        used[i] = true;
        out.push(' ');
        out.push_str(SENTENCES[i]);
        picked += 1;
        if picked >= 4 && out.len() >= min_bytes {
            break;
        }
    }
}

/// `min_bytes` (the `x-mock-answer-bytes` switch, 0 by default) lengthens the answer.
pub fn chat_answer(question: &str, hash: &str, min_bytes: usize) -> String {
    let mut out = format!("Mock answer to: {} [{hash}].", quote(question, 160));
    filler(hash, min_bytes, &mut out);
    out
}

pub fn completion_answer(prompt: &str, hash: &str, min_bytes: usize) -> String {
    let mut out = format!(" Mock completion of: {} [{hash}].", quote(prompt, 160));
    filler(hash, min_bytes, &mut out);
    out
}

/// Deterministic token estimate: ceil(words * 1.3).
pub fn tokens(text: &str) -> u64 {
    let words = text.split_whitespace().count() as u64;
    (words * 13).div_ceil(10)
}

/// OpenAI-style prompt count: a few tokens of framing per message.
pub fn chat_prompt_tokens(messages: &[Value]) -> u64 {
    3 + messages
        .iter()
        .map(|m| 4 + tokens(&content_text(m.get("content"))))
        .sum::<u64>()
}

/// Splits `text` into pieces of `words` words each (trailing whitespace kept
/// with the piece), so the pieces concatenate back to `text` exactly.
pub fn word_chunks(text: &str, words: usize) -> Vec<&str> {
    let words = words.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut seen = 0;
    let mut prev_ws = true;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if prev_ws && !ws {
            if seen == words {
                out.push(&text[start..i]);
                start = i;
                seen = 0;
            }
            seen += 1;
        }
        prev_ws = ws;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Splits `text` into pieces of about `size` bytes on char boundaries (used
/// for streamed tool-call arguments).
pub fn byte_chunks(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size.max(1)).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_covers_every_message_and_the_model() {
        let a = vec![
            json!({"role":"system","content":"s"}),
            json!({"role":"user","content":"q"}),
        ];
        let b = vec![
            json!({"role":"system","content":"t"}),
            json!({"role":"user","content":"q"}),
        ];
        assert_eq!(chat_hash("m", &a), chat_hash("m", &a));
        assert_ne!(chat_hash("m", &a), chat_hash("m", &b));
        assert_ne!(chat_hash("m", &a), chat_hash("n", &a));
    }

    #[test]
    fn answer_length_is_realistic() {
        for q in ["", "hi", &"long question ".repeat(200)] {
            let a = chat_answer(q, &chat_hash("m", &[json!({"role":"user","content":q})]), 0);
            assert!((300..=1000).contains(&a.len()), "{} bytes: {a}", a.len());
        }
    }

    #[test]
    fn answer_bytes_lengthens_without_repeating_a_sentence() {
        let h = chat_hash("m", &[json!({"role":"user","content":"q"})]);
        let a = chat_answer("q", &h, 1000);
        assert!(a.len() >= 1000, "{} bytes", a.len());
        for s in SENTENCES {
            assert!(a.matches(s).count() <= 1, "{s} repeated");
        }
        assert_eq!(chat_answer("q", &h, 1000), a, "still deterministic");
        assert!(
            chat_answer("q", &h, 100_000).len() < 2000,
            "bounded by the sentences"
        );
    }

    #[test]
    fn chunks_concatenate_back() {
        let text = "one two  three four five\nsix seven ";
        let chunks = word_chunks(text, 2);
        assert_eq!(chunks.concat(), text);
        assert_eq!(chunks[0], "one two  ");
        assert_eq!(chunks.len(), 4);
        let s = "héllo wörld, ünïcode";
        assert_eq!(byte_chunks(s, 3).concat(), s);
    }

    #[test]
    fn token_estimate() {
        assert_eq!(tokens(""), 0);
        assert_eq!(tokens("a b c d e f g h i j"), 13);
        assert_eq!(tokens("a"), 2);
    }
}
