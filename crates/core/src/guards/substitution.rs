//! The `substitution` guard: the same text but for one or two swapped content words.

use super::lexicon::is_function_word;
use super::negation::is_negation;
use super::numbers::{
    is_date_word, is_month, is_number_word, month_abbrev, starts_with_digit, time_of, units_of_word,
};
use super::scope::SCOPE_GROUPS;

const UNIT_WORDS: &[&str] = &[
    "dollar", "dollars", "usd", "euro", "euros", "eur", "pound", "pounds", "gbp", "percent", "am",
    "pm", "oclock", "degree", "degrees",
];

/// Words longer than this many tokens per side are a rewrite, not a swap.
const MAX_SWAP_TOKENS: usize = 2;

/// Texts longer than this are not diffed (cost bound).
const MAX_DIFF_TOKENS: usize = 160;

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn is_typo(a: &str, b: &str) -> bool {
    let longest = a.chars().count().max(b.chars().count());
    let d = edit_distance(a, b);
    (longest >= 4 && d <= 1) || (longest >= 7 && d <= 2)
}

/// Two phrases listed as the same member of a contrast group ("advantages" / "benefits").
fn synonyms(a: &str, b: &str) -> bool {
    SCOPE_GROUPS
        .iter()
        .flat_map(|g| g.iter())
        .any(|member| member.contains(&a) && member.contains(&b))
}

/// True when the texts align token by token except for short replaced runs of content words.
pub(super) fn substituted(a: &[String], b: &[String]) -> bool {
    if a.len() > MAX_DIFF_TOKENS || b.len() > MAX_DIFF_TOKENS || a == b {
        return false;
    }
    // Longest common subsequence table.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u16; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let common = lcs[0][0] as usize;
    // Mostly the same words: everything but a couple of tokens per side is shared.
    // Otherwise the same words: at most the swapped tokens differ, and enough is shared.
    if n.saturating_sub(common) > MAX_SWAP_TOKENS
        || m.saturating_sub(common) > MAX_SWAP_TOKENS
        || common < 3
    {
        return false;
    }
    // Walk the alignment, collecting replaced runs (deleted from a, inserted in b, adjacent).
    let (mut i, mut j) = (0, 0);
    let mut del: Vec<&str> = Vec::new();
    let mut ins: Vec<&str> = Vec::new();
    let mut found = false;
    let mut flush = |del: &mut Vec<&str>, ins: &mut Vec<&str>| {
        // Numbers and dates are the numbers guard's business ("3" / "three", "Sat-Sun" /
        // "weekends" agree there), and so are units given with a number ("5 kg" / "five
        // kilograms"); a unit swapped on its own ("cups" / "liters") is a content word.
        let numeric = |w: &&str| {
            starts_with_digit(w) || is_number_word(w) || matches!(*w, "once" | "twice" | "times")
        };
        let with_number = del.iter().any(numeric) || ins.iter().any(numeric);
        let content = |w: &&str| {
            !is_function_word(w)
                && !(with_number && (UNIT_WORDS.contains(w) || units_of_word(w).is_some()))
                && !is_negation(w)
                && !numeric(w)
                && !is_date_word(w)
                && month_abbrev(w).is_none()
                && !is_month(w)
                && time_of(w, None).is_none()
        };
        if !del.is_empty()
            && !ins.is_empty()
            && del.len() <= MAX_SWAP_TOKENS
            && ins.len() <= MAX_SWAP_TOKENS
            && (del.iter().any(content) || ins.iter().any(content))
            && !is_typo(&del.concat(), &ins.concat())
            && !synonyms(&del.join(" "), &ins.join(" "))
        {
            found = true;
        }
        del.clear();
        ins.clear();
    };
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            flush(&mut del, &mut ins);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ins.push(&b[j]);
            j += 1;
        } else {
            del.push(&a[i]);
            i += 1;
        }
    }
    flush(&mut del, &mut ins);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guards::tests::veto;

    #[test]
    fn typos_fillers_and_function_words_are_not_substitutions() {
        assert_eq!(
            veto(
                "How do I reset my password?",
                "How can I reset my password?"
            ),
            None
        );
        assert_eq!(
            veto("How do I recieve a refund?", "How do I receive a refund?"),
            None
        );
        assert_eq!(
            veto(
                "Reset my router",
                "Hey, quick question: please reset my router"
            ),
            None
        );
        assert_eq!(
            veto(
                "Where is my parcel?",
                "Where is my parcel right now, please?"
            ),
            None
        );
        assert!(!substituted(&[], &[]));
    }
}
