//! Deterministic guards that veto a semantic candidate.
//!
//! Embeddings place "refund my order" and "don't refund my order" close together, and "invoice
//! 7731" next to "invoice 7713". These cheap lexical checks compare the stored canonical prompt
//! with the new one and refuse the candidate when a fact differs. They are deliberately
//! asymmetric in cost: a wrong veto costs one upstream call, a wrong hit serves a wrong answer.
//! Every verdict is symmetric: swapping the cached and the new text gives the same answer.
//!
//! - `numbers`: the multiset of numbers, times, dates (weekdays, months, relative days) must be
//!   equal. "3" equals "three", "three hundred and fifty" equals "350", "3rd" equals "third",
//!   "$1,200" equals "1200 dollars", "5pm" equals "17:00", "Monday to Friday" equals
//!   "weekdays". A number given in units on both sides must share one ("5 kg" / "5 lb" differ),
//!   and currencies named on both sides must be the same. Greetings ("good morning") are no
//!   times; relative days in earlier turns (small talk) count only when both sides have them.
//! - `negation`: a negation on one side only ("don't", "not", "never", "without", "-free",
//!   "missing", ...), or a prefixed antonym ("safe" / "unsafe"). A negated privative ("without
//!   losing", "don't delete") means "keep" and is compared as such by `scope`.
//! - `entities`: a capitalised name, acronym, mixed-case identifier or well-known lowercase name
//!   ("python") on one side that the other side does not mention at all (any case or number; an
//!   acronym is also mentioned by its expansion); or source and target swapped ("from savings to
//!   checking" / "from checking to savings", "English into French" / "French into English").
//! - `quoted`: quoted strings must be identical (case-insensitive).
//! - `scope`: both sides use words from one contrast group but different members of it
//!   ("pros" / "cons", "cheapest" / "most expensive", "summarize" / "translate", "all" / "last");
//!   both sides ask for a superlative, and not the same one ("easiest" / "fastest"); or one side
//!   asks about all or every X and the other about one X.
//! - `substitution`: the two texts are the same but for one or two swapped content words
//!   ("tent" / "backpack"). A genuine paraphrase rewrites more than a word; a user who changes
//!   exactly one word of an otherwise identical question changed what they ask. Typos (a small
//!   edit distance), function words ("do" / "can"), listed synonyms, dates and numbers with
//!   their units (the numbers guard's business) are not substitutions.
//!
//! Each guard lives in a module of its own; `features` extracts once per text what they compare.

mod entities;
mod features;
mod lexicon;
mod negation;
mod numbers;
mod quoted;
mod scope;
mod substitution;

use crate::config::GuardsConfig;
use entities::{missing_entity, roles_swapped};
use features::Features;
use negation::prefix_antonym;
use numbers::{currency_conflict, unit_conflict};
use quoted::missing_quote;
use scope::{quantifier_conflict, scope_conflict, superlative_conflict};
use substitution::substituted;

/// The guard that vetoed a candidate, reported in the `x-semcache-veto` header and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Veto {
    Numbers,
    Negation,
    Entities,
    Quoted,
    Scope,
    Substitution,
}

impl Veto {
    pub fn name(self) -> &'static str {
        match self {
            Veto::Numbers => "numbers",
            Veto::Negation => "negation",
            Veto::Entities => "entities",
            Veto::Quoted => "quoted",
            Veto::Scope => "scope",
            Veto::Substitution => "substitution",
        }
    }
    pub const ALL: [Veto; 6] = [
        Veto::Numbers,
        Veto::Negation,
        Veto::Entities,
        Veto::Quoted,
        Veto::Scope,
        Veto::Substitution,
    ];
}

/// The new request's side of the comparison. Its features are extracted at most once per
/// request, however many candidates it is compared with (up to `top_k`), and not at all when
/// the only candidate has the same text.
pub struct Query<'a> {
    text: &'a str,
    features: std::cell::OnceCell<Features>,
}

impl<'a> Query<'a> {
    pub fn new(text: &'a str) -> Query<'a> {
        Query {
            text,
            features: std::cell::OnceCell::new(),
        }
    }

    /// Runs the enabled guards on a cached prompt against this query, as [`check`] does.
    pub fn check(&self, cfg: &GuardsConfig, cached: &str) -> Option<Veto> {
        if cached == self.text {
            return None;
        }
        let b = self.features.get_or_init(|| Features::of(self.text));
        verdict(cfg, &Features::of(cached), b)
    }
}

/// Runs the enabled guards in a fixed order; the first that objects names the veto.
pub fn check(cfg: &GuardsConfig, cached: &str, query: &str) -> Option<Veto> {
    Query::new(query).check(cfg, cached)
}

fn verdict(cfg: &GuardsConfig, a: &Features, b: &Features) -> Option<Veto> {
    if cfg.numbers
        && (a.facts != b.facts
            || (!a.context_days.is_empty()
                && !b.context_days.is_empty()
                && a.context_days != b.context_days)
            || unit_conflict(a, b)
            || unit_conflict(b, a)
            || currency_conflict(a, b))
    {
        return Some(Veto::Numbers);
    }
    if cfg.negation
        && ((a.negations > 0) != (b.negations > 0) || prefix_antonym(a, b) || prefix_antonym(b, a))
    {
        return Some(Veto::Negation);
    }
    if cfg.quoted && (missing_quote(a, b) || missing_quote(b, a)) {
        return Some(Veto::Quoted);
    }
    let routes_differ = !a.route.is_empty() && !b.route.is_empty() && a.route != b.route;
    if cfg.entities
        && (missing_entity(a, b) || missing_entity(b, a) || routes_differ || roles_swapped(a, b))
    {
        return Some(Veto::Entities);
    }
    if cfg.scope
        && (scope_conflict(&a.scope, &b.scope)
            || scope_conflict(&b.scope, &a.scope)
            || superlative_conflict(a, b)
            || superlative_conflict(b, a)
            || quantifier_conflict(a, b)
            || quantifier_conflict(b, a))
    {
        return Some(Veto::Scope);
    }
    // The alignment breaks ties one way: ask both ways so the verdict is symmetric.
    if cfg.substitution && (substituted(&a.meant, &b.meant) || substituted(&b.meant, &a.meant)) {
        return Some(Veto::Substitution);
    }
    None
}

#[cfg(test)]
mod tests;
