//! The `quoted` guard: quoted strings must appear on both sides.

use super::features::Features;

pub(super) fn missing_quote(a: &Features, b: &Features) -> bool {
    a.quoted.iter().any(|q| !b.lower.contains(q.as_str()))
}

pub(super) fn quoted_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let pairs = [('"', '"'), ('“', '”'), ('`', '`'), ('«', '»')];
    for (open, close) in pairs {
        let mut rest = text;
        while let Some(s) = rest.find(open) {
            let after = &rest[s + open.len_utf8()..];
            let Some(e) = after.find(close) else { break };
            let q = after[..e].trim().to_lowercase();
            if !q.is_empty() {
                out.push(q);
            }
            rest = &after[e + close.len_utf8()..];
        }
    }
    // Single quotes only when they open after a space and close before one: apostrophes in
    // "don't" or "customers' orders" are not quotes.
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        let opens = matches!(c, '\'' | '‘') && (i == 0 || chars[i - 1].1.is_whitespace());
        if opens {
            if let Some(j) = (i + 1..chars.len()).find(|&j| {
                matches!(chars[j].1, '\'' | '’')
                    && chars.get(j + 1).is_none_or(|(_, n)| !n.is_alphanumeric())
            }) {
                let q = text[pos + c.len_utf8()..chars[j].0].trim().to_lowercase();
                if !q.is_empty() {
                    out.push(q);
                }
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out.sort();
    out
}
