//! Unit tests of the `scope` guard.

use crate::guards::tests::veto;
use crate::guards::Veto;

#[test]
fn superlatives_and_quantifiers() {
    assert_eq!(
        veto(
            "Which hiking trail is the longest?",
            "Which hiking trail is the steepest?"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "Which is the quickest train to Lyon?",
            "Which is the fastest train to Lyon?"
        ),
        None
    );
    assert_eq!(
        veto(
            "What's the least expensive plan?",
            "What's the cheapest plan?"
        ),
        None
    );
    assert_eq!(
        veto(
            "What is the most popular dish in Peru?",
            "What is the most expensive dish in Peru?"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "Which bank has the best interest rate?",
            "Which bank offers the best rate of interest?"
        ),
        None
    );
    assert_eq!(
        veto("What do most people tip?", "What's the best tip?"),
        None
    );
    assert_eq!(
        veto(
            "Archive every chat in this workspace",
            "Archive the chat in this workspace"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "Archive all my chats in this workspace",
            "Archive my chats in this workspace"
        ),
        None
    );
    assert_eq!(
        veto(
            "Do all employees get a laptop?",
            "Does every employee get a laptop?"
        ),
        None
    );
    assert_eq!(
        veto(
            "How much do I pay every month?",
            "How much do I pay per month?"
        ),
        None
    );
    assert_eq!(veto("Is it free at all?", "Is it free?"), None);
}

#[test]
fn more_contrast_groups() {
    assert_eq!(
        veto(
            "Can a 10 kg bag go as hand luggage?",
            "Can a 10 kg bag go as a checked bag?"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "How long should I steam broccoli?",
            "How long should I roast broccoli?"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "Which tablets are under $800?",
            "Which tablets are over $800?"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "Which tablets are under $800?",
            "Which tablets cost less than $800?"
        ),
        None
    );
    assert_eq!(
        veto(
            "Is it safe to swim after eating?",
            "Is it dangerous to swim after eating?"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "Write a formal apology to a client",
            "Write a casual apology to a client"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto("Set up automatic updates", "Stop automatic updates"),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "What are the symptoms of shingles?",
            "How are shingles treated?"
        ),
        Some(Veto::Scope)
    );
}
