//! What the guards compare, extracted once per text: tokens, facts, names, scope words.

use std::borrow::Cow;

use super::entities::{is_acronym, is_entity, is_known_name, is_not_acronym, roles};
use super::negation::{is_negation, is_privative};
use super::numbers::{
    currency_of_symbol, currency_of_word, facts_of, is_date_word, month_abbrev, starts_with_digit,
    Unit,
};
use super::quoted::quoted_strings;
use super::scope::{quantified, scope_members, superlatives};

pub(super) struct Features {
    /// Sorted numbers, times and date words, canonical strings.
    pub(super) facts: Vec<String>,
    /// Relative days ("today", "yesterday") in earlier turns, sorted.
    pub(super) context_days: Vec<String>,
    /// (number, units it is given in): "23 kg", "$500", "5km". A unit word may stand for
    /// several units ("pounds": weight or money).
    pub(super) units: Vec<Unit>,
    /// Currencies mentioned anywhere, sorted and deduplicated.
    pub(super) currencies: Vec<&'static str>,
    pub(super) negations: usize,
    pub(super) quoted: Vec<String>,
    /// Capitalised names, identifiers and well-known lowercase names, lowercased; `true` for
    /// an all-caps acronym (which an expansion on the other side also mentions).
    pub(super) entities: Vec<(String, bool)>,
    /// Every token, lowercased, for "does the other side mention it at all".
    pub(super) words: Vec<String>,
    /// The tokens with a negated privative ("without losing") folded into "keep", for the
    /// substitution diff.
    pub(super) meant: Vec<String>,
    /// (group, member) pairs found.
    pub(super) scope: Vec<(usize, usize)>,
    /// Superlatives ("cheapest", "most popular"), folded to one spelling, sorted.
    pub(super) superlatives: Vec<String>,
    /// Singular heads of nouns under a universal quantifier ("every account" -> "account").
    pub(super) quantified: Vec<String>,
    /// Whether "all" or "every" occurs at all.
    pub(super) universal: bool,
    /// Direction of travel or transfer: ("from", name) and ("to", name), sorted.
    pub(super) route: Vec<(String, String)>,
    /// Words in the source role ("from savings", "English into") and in the target role
    /// ("to checking", "into French") of a move, transfer or conversion.
    pub(super) sources: Vec<String>,
    pub(super) targets: Vec<String>,
    /// The whole text, lowercased with whitespace collapsed, for "is it mentioned at all".
    pub(super) lower: String,
}

/// Folds spellings that tokenisation would otherwise split or miss.
fn prenormalize(text: &str) -> Cow<'_, str> {
    // Every pattern has a '.', a '%', "United" or a non-ASCII character: a text with none of
    // them is returned as it is, without fourteen searches.
    let mut t = Cow::Borrowed(text);
    if !text
        .bytes()
        .any(|b| b == b'.' || b == b'%' || !b.is_ascii())
        && !text.contains("United")
    {
        return t;
    }
    for (from, to) in [
        ("a.m.", "am"),
        ("A.M.", "am"),
        ("p.m.", "pm"),
        ("P.M.", "pm"),
        ("U.S.A.", "US"),
        ("U.S.", "US"),
        ("U.K.", "UK"),
        ("United States", "US"),
        ("United Kingdom", "UK"),
        ("°F", " degrees fahrenheit"),
        ("°C", " degrees celsius"),
        ("℉", " degrees fahrenheit"),
        ("℃", " degrees celsius"),
        ("%", " percent"),
    ] {
        if t.contains(from) {
            t = Cow::Owned(t.replace(from, to));
        }
    }
    t
}

/// Different spellings of the same name, folded before comparing (token -> canonical).
fn alias(word: &str) -> Option<&'static str> {
    Some(match word {
        "usa" | "america" | "american" | "americans" => "us",
        "britain" | "british" => "uk",
        "usd" | "dollars" | "buck" | "bucks" => "dollar",
        "eur" | "euros" => "euro",
        "jpy" => "yen",
        _ => return None,
    })
}

/// A token lowercased without apostrophes ("Don't" -> "dont"), aliases folded.
fn plain_word(tok: &str) -> String {
    let plain: String = if tok.is_ascii() {
        // The common case, without the intermediate lowercase copy.
        tok.bytes()
            .filter(|b| *b != b'\'')
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect()
    } else {
        tok.to_lowercase().chars().filter(|c| *c != '\'').collect()
    };
    alias(&plain).map_or(plain, str::to_string)
}

/// Whether the lowercased token ends with "n't" ("Don't", "CAN'T"); tokens already carry ’ as '.
fn ends_with_nt(tok: &str) -> bool {
    if tok.is_ascii() {
        tok.len() >= 3 && tok[tok.len() - 3..].eq_ignore_ascii_case("n't")
    } else {
        tok.to_lowercase().ends_with("n't")
    }
}

/// A token and the last non-space character before it (sentence starts, hyphens, currency
/// symbols).
pub(super) type Raw = (String, Option<char>);

impl Features {
    pub(super) fn of(text: &str) -> Features {
        let text: &str = &prenormalize(text);
        let quoted = quoted_strings(text);
        let lower = crate::prompt::normalize(&text.to_lowercase());
        let raw = tokens(text);
        // Lowercased, apostrophes dropped, aliases folded.
        let words: Vec<String> = raw.iter().map(|(tok, _)| plain_word(tok)).collect();

        // The guard text is the final message, then the earlier user turns, one a line.
        let context_start = text
            .find('\n')
            .map_or(raw.len(), |n| tokens(&text[..n]).len());
        let (all_facts, units) = facts_of(&raw, &words);
        // Small talk in earlier turns ("it's so rainy today", "it worked yesterday") is not a
        // detail of the request: relative days there are compared only when both sides have them.
        let (days, rest): (Vec<_>, Vec<_>) = all_facts.into_iter().partition(|(i, f)| {
            *i >= context_start
                && matches!(
                    f.as_str(),
                    "today"
                        | "tomorrow"
                        | "yesterday"
                        | "tonight"
                        | "morning"
                        | "afternoon"
                        | "evening"
                )
        });
        let mut facts: Vec<String> = rest.into_iter().map(|(_, f)| f).collect();
        facts.sort();
        let mut context_days: Vec<String> = days.into_iter().map(|(_, f)| f).collect();
        context_days.sort();
        let mut currencies: Vec<&'static str> = words
            .iter()
            .filter_map(|w| currency_of_word(w))
            .chain(
                raw.iter()
                    .filter(|(tok, _)| starts_with_digit(tok))
                    .filter_map(|(_, prev)| currency_of_symbol(*prev)),
            )
            .collect();
        currencies.sort_unstable();
        currencies.dedup();

        // Negations; "without losing" / "don't delete" is a double negation that asks to keep
        // something, so it counts as "keep" rather than as a negation.
        let mut negations = 0;
        // The words as meant: a negated privative is one "keep"; "-free" is kept out of the
        // scope groups ("gluten-free" is not "free" as in "free or paid").
        let mut meant: Vec<String> = Vec::with_capacity(words.len());
        let mut scope_words: Vec<String> = Vec::with_capacity(words.len());
        let mut i = 0;
        while i < words.len() {
            let w = words[i].as_str();
            let negates = is_negation(w) || ends_with_nt(&raw[i].0);
            if negates && words.get(i + 1).is_some_and(|n| is_privative(n)) {
                meant.push("keep".into());
                scope_words.push("keep".into());
                i += 2;
                continue;
            }
            // "last night" is yesterday (as the numbers guard reads it).
            if w == "last" && words.get(i + 1).is_some_and(|n| n == "night") {
                meant.push("yesterday".into());
                scope_words.push("yesterday".into());
                i += 2;
                continue;
            }
            // "gluten-free", "fee-free": the hyphenated suffix means "without".
            let free_of = w == "free" && i > 0 && matches!(raw[i].1, Some('-' | '‑' | '–'));
            if negates || free_of {
                negations += 1;
            }
            meant.push(w.to_string());
            if !free_of {
                scope_words.push(w.to_string());
            }
            i += 1;
        }

        let mut entities = Vec::new();
        let mut route = Vec::new();
        for (i, ((tok, prev), plain)) in raw.iter().zip(&words).enumerate() {
            let is_date = is_date_word(plain) || month_abbrev(plain).is_some() || plain == "may";
            let named = is_entity(tok, *prev) && !is_not_acronym(plain);
            // Dates belong to the numbers guard: "Monday" is not a name.
            if (named && !is_date) || is_known_name(plain) {
                entities.push((plain.clone(), is_acronym(tok)));
            }
            if (plain == "from" || plain == "to") && i + 1 < raw.len() {
                let (next_tok, next_prev) = &raw[i + 1];
                if is_entity(next_tok, *next_prev) {
                    route.push((plain.clone(), words[i + 1].clone()));
                }
            }
        }
        route.sort();
        let (sources, targets) = roles(&raw, &words);
        let scope = scope_members(&scope_words);
        let superlatives = superlatives(&words);
        let (quantified, universal) = quantified(&raw, &words);
        Features {
            facts,
            context_days,
            units,
            currencies,
            negations,
            quoted,
            entities,
            words,
            meant,
            scope,
            superlatives,
            quantified,
            universal,
            route,
            sources,
            targets,
            lower,
        }
    }
}

/// Tokens: runs of alphanumerics plus inner '.', ',', ':' between digits and apostrophes, each
/// with the last significant character before it.
fn tokens(text: &str) -> Vec<Raw> {
    let mut raw: Vec<Raw> = Vec::new();
    let mut cur = String::new();
    let mut prev_sig: Option<char> = None;
    let mut cur_prev: Option<char> = None;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let keep = c.is_alphanumeric()
            || ((c == '.' || c == ',' || c == ':')
                && cur.chars().last().is_some_and(|p| p.is_ascii_digit())
                && next.is_some_and(|n| n.is_ascii_digit()))
            || ((c == '\'' || c == '’')
                && !cur.is_empty()
                && next.is_some_and(char::is_alphabetic));
        if keep {
            if cur.is_empty() {
                cur_prev = prev_sig;
            }
            cur.push(if c == '’' { '\'' } else { c });
            prev_sig = Some('a');
        } else {
            if !cur.is_empty() {
                raw.push((std::mem::take(&mut cur), cur_prev));
            }
            // Whitespace keeps the last significant character.
            if !c.is_whitespace() || c == '\n' {
                prev_sig = Some(c);
            }
        }
    }
    if !cur.is_empty() {
        raw.push((cur, cur_prev));
    }
    raw
}
