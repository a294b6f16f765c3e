//! The canonical form of a prompt: what is hashed for the exact tier, what is embedded for the
//! semantic tier, and what is kept apart (the system prompt goes into the partition instead).
//!
//! Canonical form (documented in the README):
//! - whitespace runs collapse to one space, ends are trimmed; case and punctuation are kept
//!   (the embedding model is uncased anyway, and the exact tier must stay exact);
//! - system (and `developer`) messages are never embedded: unless `ignore_system_messages` is
//!   set they are hashed into the partition, so a different system prompt never shares entries;
//! - the embedded text is the final message, then the earlier turns from the most recent
//!   backwards, each as `role: text`. The final message comes first so the model's 256-word-piece
//!   window always sees it, and the context makes "yes, go ahead" about a flight differ from
//!   "yes, go ahead" about a hotel.

use crate::request::Message;

/// Each earlier turn contributes at most this many characters to the embedded text, so one long
/// assistant answer cannot drown the final question.
const CONTEXT_TURN_CHARS: usize = 400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Canonical system prompt ("" when there is none or it is ignored).
    pub system: String,
    /// Canonical dialog, role-tagged, for the exact tier.
    pub exact: String,
    /// Text sent to the embeddings endpoint.
    pub embed_text: String,
    /// What the guards compare: the final message, then the earlier *user* turns (most recent
    /// first). Assistant turns are left out: they restate the user's facts in other words, and
    /// their numbers and names would veto genuine rewordings of the same conversation.
    pub guard_text: String,
    /// Number of non-system messages.
    pub dialog_len: usize,
}

/// Collapses whitespace runs into one space and trims.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub fn canonical(messages: &[Message], ignore_system_messages: bool) -> Prompt {
    let mut system = String::new();
    let mut dialog: Vec<(&str, String)> = Vec::with_capacity(messages.len());
    for m in messages {
        if m.role == "system" {
            if !ignore_system_messages {
                if !system.is_empty() {
                    system.push('\n');
                }
                system.push_str(&normalize(&m.content));
            }
        } else {
            dialog.push((m.role.as_str(), normalize(&m.content)));
        }
    }
    let mut exact = String::new();
    for (role, text) in &dialog {
        // Length-prefixing role and text keeps ("a: b", "c") and ("a", "b: c") distinct, and
        // a crafted role cannot pose as a turn boundary.
        exact.push_str(&format!(
            "{}:{}:{}:{}\n",
            role.len(),
            role,
            text.len(),
            text
        ));
    }
    let mut embed_text = String::new();
    if let Some(((_, last), earlier)) = dialog.split_last() {
        embed_text.push_str(last);
        for (role, text) in earlier.iter().rev() {
            embed_text.push('\n');
            embed_text.push_str(role);
            embed_text.push_str(": ");
            embed_text.push_str(truncate_chars(text, CONTEXT_TURN_CHARS));
        }
    }
    let mut guard_text = String::new();
    if let Some(((_, last), earlier)) = dialog.split_last() {
        guard_text.push_str(last);
        for (role, text) in earlier.iter().rev().filter(|(r, _)| *r == "user") {
            guard_text.push('\n');
            guard_text.push_str(role);
            guard_text.push_str(": ");
            guard_text.push_str(text);
        }
    }
    Prompt {
        system,
        exact,
        embed_text,
        guard_text,
        dialog_len: dialog.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn whitespace_is_canonical_but_case_is_kept() {
        let a = canonical(&[m("user", "  What  is\n2+2? ")], false);
        let b = canonical(&[m("user", "What is 2+2?")], false);
        assert_eq!(a, b);
        let c = canonical(&[m("user", "what is 2+2?")], false);
        assert_ne!(a.exact, c.exact);
    }

    #[test]
    fn system_prompt_is_kept_apart_or_ignored() {
        let msgs = [m("system", "Answer in French."), m("user", "Hello")];
        let p = canonical(&msgs, false);
        assert_eq!(p.system, "Answer in French.");
        assert_eq!(p.embed_text, "Hello");
        assert_eq!(p.dialog_len, 1);
        assert_eq!(canonical(&msgs, true).system, "");
    }

    #[test]
    fn context_counts_and_the_final_message_comes_first() {
        let flight = [
            m("user", "Can you rebook my flight to Oslo?"),
            m("assistant", "I can move it to Friday."),
            m("user", "yes, go ahead"),
        ];
        let hotel = [
            m("user", "Please cancel my hotel in Rome."),
            m("assistant", "Shall I cancel it?"),
            m("user", "yes, go ahead"),
        ];
        let f = canonical(&flight, false);
        let h = canonical(&hotel, false);
        assert_ne!(f.exact, h.exact);
        assert!(f
            .embed_text
            .starts_with("yes, go ahead\nassistant: I can move it"));
        assert!(f
            .embed_text
            .ends_with("user: Can you rebook my flight to Oslo?"));
        assert_ne!(f.embed_text, h.embed_text);
        assert_eq!(
            f.guard_text,
            "yes, go ahead\nuser: Can you rebook my flight to Oslo?"
        );
    }

    #[test]
    fn exact_form_is_unambiguous() {
        let a = canonical(&[m("user", "a: b"), m("user", "c")], false);
        let b = canonical(&[m("user", "a"), m("user", "b: c")], false);
        assert_ne!(a.exact, b.exact);
    }

    #[test]
    fn a_crafted_role_cannot_pose_as_two_turns() {
        let honest = canonical(&[m("rr", "ab"), m("ss", "q")], false);
        let crafted = canonical(&[m("rr:2:ab\nss", "q")], false);
        assert_ne!(honest.exact, crafted.exact);
    }

    #[test]
    fn long_context_turns_are_clipped() {
        let long = "word ".repeat(500);
        let p = canonical(&[m("assistant", &long), m("user", "ok")], false);
        assert!(p.embed_text.chars().count() < 420 + 20);
    }
}
