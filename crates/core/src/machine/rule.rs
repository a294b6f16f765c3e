//! When a cached entry answers a request as a semantic hit. The search and the local tier's
//! semantic copies both ask here, so a change to the rule cannot reach one and miss the other.

use crate::config::Config;
use crate::entry::Entry;
use crate::guards::{Query, Veto};

/// The rule under one request's configuration and query text.
pub(super) struct SemanticRule<'a> {
    cfg: &'a Config,
    query: Query<'a>,
}

impl<'a> SemanticRule<'a> {
    pub(super) fn new(cfg: &'a Config, query_text: &'a str) -> SemanticRule<'a> {
        SemanticRule {
            cfg,
            query: Query::new(query_text),
        }
    }

    /// The first stage, on the distance alone: the search calls it before decoding a
    /// candidate, and stops at the first candidate it refuses (they come nearest first).
    pub(super) fn near_enough(&self, distance: f64) -> bool {
        self.cfg.semantic_match && distance <= self.cfg.score_threshold
    }

    /// The second stage, on a candidate that is near enough: a guard's veto, if any.
    pub(super) fn veto(&self, entry: &Entry) -> Option<Veto> {
        self.query.check(&self.cfg.guards, &entry.prompt)
    }

    /// Both stages.
    pub(super) fn admits(&self, distance: f64, entry: &Entry) -> bool {
        self.near_enough(distance) && self.veto(entry).is_none()
    }
}
