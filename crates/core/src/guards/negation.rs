//! The `negation` guard: negation words, negating prefixes and privatives.

use super::features::Features;

/// `b` has a prefixed antonym ("unsafe") of a word of `a` ("safe", at least 4 bytes) that `a`
/// does not have itself. Walks `b`'s words and strips the prefixes rather than building every
/// prefixed form of `a`'s words (an allocation per word and prefix).
pub(super) fn prefix_antonym(a: &Features, b: &Features) -> bool {
    b.words.iter().any(|neg| {
        NEGATING_PREFIXES.iter().any(|p| {
            neg.strip_prefix(p).is_some_and(|w| {
                w.len() >= 4 && a.words.iter().any(|x| x == w) && !a.words.contains(neg)
            })
        })
    })
}

/// Verbs of losing something: negated ("without losing", "don't delete") they ask to keep it.
#[rustfmt::skip]
pub(super) fn is_privative(w: &str) -> bool {
    matches!(w,
        "lose" | "losing" | "delete" | "deleting" | "erase" | "erasing" | "wipe" | "wiping" |
        "remove" | "removing" | "break" | "breaking" | "damage" | "damaging" | "destroy" |
        "destroying" | "overwrite" | "overwriting" | "forget" | "forgetting"
    )
}

#[rustfmt::skip]
pub(super) fn is_negation(w: &str) -> bool {
    matches!(w,
        "not" | "no" | "never" | "none" | "nothing" | "nobody" | "nowhere" | "neither" | "nor" |
        "without" | "cannot" | "dont" | "doesnt" | "didnt" | "isnt" | "arent" | "wasnt" | "werent" |
        "wont" | "cant" | "couldnt" | "shouldnt" | "wouldnt" | "hasnt" | "havent" | "hadnt" |
        "mustnt" | "neednt" | "aint" | "non" | "avoid" | "avoiding" | "unable" | "missing" |
        "lack" | "lacks" | "lacking"
    )
}

/// Prefixes that turn a word into its opposite: "safe" / "unsafe", "refundable" / "nonrefundable".
const NEGATING_PREFIXES: &[&str] = &["un", "non", "in", "im", "il", "ir", "dis"];

#[cfg(test)]
mod tests {
    use crate::guards::tests::veto;
    use crate::guards::Veto;

    #[test]
    fn double_negations_free_of_and_absence() {
        assert_eq!(
            veto(
                "Restart the router without losing my settings",
                "Restart the router but keep my settings"
            ),
            None
        );
        assert_eq!(
            veto("Don't delete my drafts", "Delete my drafts"),
            Some(Veto::Scope)
        );
        assert_eq!(
            veto("Which snacks are nut-free?", "Which snacks contain nuts?"),
            Some(Veto::Negation)
        );
        assert_eq!(
            veto("Which snacks are nut-free?", "Which snacks have no nuts?"),
            None
        );
        assert_eq!(
            veto(
                "The charger is missing from the box",
                "There's no charger in the box"
            ),
            None
        );
        assert_eq!(veto("I'm unable to print", "I can't print"), None);
    }
}
