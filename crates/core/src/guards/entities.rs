//! The `entities` guard: names one side never mentions, and swapped sources and targets.

use super::features::{Features, Raw};
use super::lexicon::{is_determiner, is_function_word, singular};
use super::numbers::{
    currency_of_word, is_date_word, is_month, is_number_word, month_abbrev, starts_with_digit,
    units_of_word,
};

/// Names people usually type in lowercase; each is a name wherever it stands. Words that are
/// also common nouns or verbs ("rust", "swift", "go", "word", "windows") are left out.
#[rustfmt::skip]
pub(super) fn is_known_name(w: &str) -> bool {
    matches!(w,
        "python" | "java" | "javascript" | "typescript" | "kotlin" | "php" | "perl" | "haskell" |
        "golang" | "csharp" | "mysql" | "postgres" | "postgresql" | "sqlite" | "mongodb" | "redis" |
        "docker" | "kubernetes" | "linux" | "ubuntu" | "debian" | "fedora" | "macos" | "android" |
        "ios" | "iphone" | "ipad" | "macbook" | "chromebook" | "firefox" | "gmail" | "outlook" |
        "whatsapp" | "instagram" | "facebook" | "tiktok" | "youtube" | "netflix" | "spotify" |
        "paypal" | "venmo" | "powerpoint" | "photoshop" | "numpy" | "django" | "npm"
    )
}

/// All-caps words that are not names.
#[rustfmt::skip]
pub(super) fn is_not_acronym(w: &str) -> bool {
    matches!(w,
        "ok" | "okay" | "asap" | "fyi" | "btw" | "pls" | "am" | "pm" | "faq" | "diy" | "eta"
    )
}

fn is_sentence_start(prev: Option<char>) -> bool {
    matches!(
        prev,
        None | Some('.') | Some('!') | Some('?') | Some('\n') | Some(':') | Some('"')
    )
}

pub(super) fn is_entity(tok: &str, prev: Option<char>) -> bool {
    let mut chars = tok.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let letters = tok.chars().filter(|c| c.is_alphabetic()).count();
    let uppers = tok.chars().filter(|c| c.is_uppercase()).count();
    if letters == 0 || tok == "I" || tok.starts_with("I'") {
        return false;
    }
    // Acronyms (NASA, EU) and mixed case (iPhone, PayPal) are names wherever they stand.
    if uppers >= 2 {
        return true;
    }
    if first.is_lowercase() && uppers >= 1 {
        return true;
    }
    // A capitalised word counts only mid-sentence: sentence starts are capitalised anyway.
    first.is_uppercase() && !is_sentence_start(prev)
}

/// An all-caps word of letters ("BMI", "DMV"), which an expansion can spell out.
pub(super) fn is_acronym(tok: &str) -> bool {
    let letters = tok.chars().filter(|c| c.is_alphabetic()).count();
    letters >= 2 && tok.chars().all(|c| c.is_ascii_uppercase())
}

/// "BMI" is mentioned by "body mass index", "DMV" by "department of motor vehicles".
fn spelled_out(acronym: &str, words: &[String]) -> bool {
    let letters: Vec<char> = acronym.chars().collect();
    if !(3..=6).contains(&letters.len()) {
        return false;
    }
    (0..words.len()).any(|start| {
        let (mut k, mut j) = (0, start);
        while k < letters.len() && j < words.len() {
            let w = words[j].as_str();
            if w.starts_with(letters[k]) {
                k += 1;
            } else if k == 0 || !matches!(w, "of" | "and" | "the" | "for" | "on" | "in") {
                break;
            }
            j += 1;
        }
        k == letters.len()
    })
}

/// A name on one side that the other never mentions, in any case or number ("PDFs" / "pdf").
pub(super) fn missing_entity(a: &Features, b: &Features) -> bool {
    a.entities.iter().any(|(e, acronym)| {
        let one = singular(e);
        let mentioned = b.words.iter().any(|w| w == e || singular(w) == one)
            || (*acronym && spelled_out(e, &b.words))
            || currency_of_word(e).is_some_and(|c| b.currencies.contains(&c));
        !mentioned
    })
}

/// Words in the source and target roles of a move: "from X", "X to/into Y" (X a name or a
/// unit: "English into French", "euros to dollars"). Numbers and dates are the numbers guard's.
pub(super) fn roles(raw: &[Raw], words: &[String]) -> (Vec<String>, Vec<String>) {
    let content = |w: &str| {
        !w.is_empty()
            && !is_function_word(w)
            && !starts_with_digit(w)
            && !is_number_word(w)
            && !is_date_word(w)
            && month_abbrev(w).is_none()
            && !is_month(w)
    };
    let object = |mut j: usize| {
        while words.get(j).is_some_and(|w| is_determiner(w)) {
            j += 1;
        }
        words.get(j).filter(|w| content(w)).cloned()
    };
    let (mut sources, mut targets) = (Vec::new(), Vec::new());
    for (i, w) in words.iter().enumerate() {
        match w.as_str() {
            "from" => sources.extend(object(i + 1)),
            "to" | "into" => {
                targets.extend(object(i + 1));
                // "English into French", "euros to dollars": the name or unit right before.
                let named = |j: usize| {
                    is_entity(&raw[j].0, raw[j].1)
                        || is_known_name(&words[j])
                        || units_of_word(&words[j]).is_some()
                        || currency_of_word(&words[j]).is_some()
                };
                if i > 0 && raw[i].1 == Some('a') && content(&words[i - 1]) && named(i - 1) {
                    sources.push(words[i - 1].clone());
                }
            }
            _ => {}
        }
    }
    sources.sort();
    sources.dedup();
    targets.sort();
    targets.dedup();
    (sources, targets)
}

/// One side moves something from X, the other to X ("from checking to savings" / "from
/// savings to checking", "English into French" / "French into English").
pub(super) fn roles_swapped(a: &Features, b: &Features) -> bool {
    let swapped = |a: &Features, b: &Features| {
        a.sources
            .iter()
            .any(|w| b.targets.contains(w) && !b.sources.contains(w) && !a.targets.contains(w))
    };
    swapped(a, b) || swapped(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guards::tests::{veto, words};
    use crate::guards::Veto;

    #[test]
    fn acronyms_plurals_and_lowercase_names() {
        assert_eq!(
            veto(
                "What does the DMV need for a licence renewal?",
                "What does the department of motor vehicles need for a licence renewal?"
            ),
            None
        );
        assert_eq!(
            veto(
                "How do I merge PDFs?",
                "How can I combine several pdf files?"
            ),
            None
        );
        assert_eq!(
            veto(
                "How do I sort a list in python?",
                "How do I sort a list in kotlin?"
            ),
            Some(Veto::Entities)
        );
        assert_eq!(
            veto("How do I sort a list in python?", "Python: sort a list"),
            None
        );
        assert!(!spelled_out("us", &words(&["use", "something"])));
    }

    #[test]
    fn swapped_roles_are_vetoed() {
        assert_eq!(
            veto(
                "Move $50 from my savings to my checking",
                "Move $50 from my checking into my savings"
            ),
            Some(Veto::Entities)
        );
        assert_eq!(
            veto(
                "Translate Greek into Turkish",
                "Translate Turkish into Greek"
            ),
            Some(Veto::Entities)
        );
        assert_eq!(
            veto("How many cups is a liter", "How many liters is a cup"),
            Some(Veto::Substitution)
        );
        assert_eq!(
            veto(
                "How do I switch from Android to iPhone?",
                "Switching to iPhone from Android - how?"
            ),
            None
        );
        // "to" before a verb is no target.
        assert_eq!(
            veto(
                "Best way for an adult to learn to swim",
                "How can an adult learn to swim?"
            ),
            None
        );
        // One side naming a place as both source and target is no swap.
        assert_eq!(
            veto(
                "Trains from Leeds to Leeds airport",
                "Trains to Leeds airport from Leeds"
            ),
            None
        );
    }
}
