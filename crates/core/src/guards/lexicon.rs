//! Word classes and word forms several guards share: function words, determiners, singulars.
//!
//! The guards' word lists are `matches!` and `match` rather than slices searched with
//! `contains`: every token is looked up in several of them per text, and a match compiles to a
//! branch on length and bytes instead of a scan over every entry.

/// Function words: swapping one for another ("how do I" / "how can I") changes no answer.
#[rustfmt::skip]
pub(super) fn is_function_word(w: &str) -> bool {
    matches!(w,
        "a" | "an" | "the" | "i" | "me" | "my" | "mine" | "we" | "our" | "us" | "you" | "your" |
        "it" | "its" | "they" | "them" | "their" | "he" | "she" | "his" | "her" | "this" | "that" |
        "these" | "those" | "is" | "are" | "was" | "were" | "be" | "been" | "am" | "do" | "does" |
        "did" | "can" | "could" | "would" | "should" | "will" | "shall" | "may" | "might" | "must" |
        "have" | "has" | "had" | "what" | "whats" | "which" | "who" | "how" | "why" | "when" |
        "where" | "to" | "of" | "in" | "on" | "at" | "for" | "with" | "by" | "about" | "into" |
        "onto" | "and" | "or" | "but" | "so" | "if" | "then" | "please" | "pls" | "kindly" | "hi" |
        "hello" | "hey" | "thanks" | "just" | "quick" | "question" | "some" | "any" | "get" |
        "got" | "there" | "here" | "up" | "out" | "tell" | "show" | "give" | "im" | "ive" | "id" |
        "youre" | "s" | "t" | "ok" | "okay" | "per" | "each" | "every"
    )
}

/// Determiners and possessives skipped before the noun a role word or quantifier governs.
#[rustfmt::skip]
pub(super) fn is_determiner(w: &str) -> bool {
    matches!(w,
        "a" | "an" | "the" | "my" | "our" | "your" | "their" | "his" | "her" | "its" | "this" |
        "that" | "these" | "those" | "of" | "some"
    )
}

pub(super) fn singular(w: &str) -> String {
    if w.len() > 4 && w.ends_with("ies") {
        format!("{}y", &w[..w.len() - 3])
    } else if ["sses", "shes", "ches", "xes"]
        .iter()
        .any(|e| w.ends_with(e))
    {
        w[..w.len() - 2].to_string()
    } else if w.len() > 3 && w.ends_with('s') && !["ss", "us", "is"].iter().any(|e| w.ends_with(e))
    {
        w[..w.len() - 1].to_string()
    } else {
        w.to_string()
    }
}
