//! Unit tests of `check` across the guards, and helpers the guards' tests share.

use super::*;

const ALL: GuardsConfig = GuardsConfig {
    numbers: true,
    negation: true,
    entities: true,
    quoted: true,
    scope: true,
    substitution: true,
};

pub(super) fn veto(a: &str, b: &str) -> Option<Veto> {
    let v = check(&ALL, a, b);
    assert_eq!(
        v,
        check(&ALL, b, a),
        "guards must be symmetric: {a:?} / {b:?}"
    );
    v
}

pub(super) fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_issue_examples_are_vetoed() {
    assert_eq!(
        veto("Refund my last order", "Don't refund my last order"),
        Some(Veto::Negation)
    );
    assert_eq!(
        veto(
            "What is the status of invoice 7731?",
            "What is the status of invoice 7713?"
        ),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto(
            "Is the pharmacy open on Saturday?",
            "Is the pharmacy open on Sunday?"
        ),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto("How do I reset my Kindle?", "How do I reset my Fitbit?"),
        Some(Veto::Entities)
    );
    assert_eq!(
        veto(
            "Which foods contain gluten?",
            "Which foods do not contain gluten?"
        ),
        Some(Veto::Negation)
    );
    assert_eq!(
        veto(
            "What are the pros of remote work?",
            "What are the cons of remote work?"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "Summarize this: 'hello world'",
            "Translate this: 'hello world'"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto("Cancel all my orders", "Cancel my last order"),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto("Search for \"blue shoes\"", "Search for \"red shoes\""),
        Some(Veto::Quoted)
    );
    assert_eq!(
        veto("Book a table at 7pm", "Book a table at 8pm"),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto("Flights in March", "Flights in May"),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto(
            "Which medications are safe in pregnancy?",
            "Which medications are unsafe in pregnancy?"
        ),
        Some(Veto::Negation)
    );
    assert_eq!(
        veto(
            "Which fares are refundable?",
            "Which fares are non-refundable?"
        ),
        Some(Veto::Negation)
    );
    assert_eq!(
        veto(
            "What should I eat before a blood test?",
            "What should I avoid before a blood test?"
        ),
        Some(Veto::Negation)
    );
    assert_eq!(
        veto(
            "Flights from Boston to Denver",
            "Flights from Denver to Boston"
        ),
        Some(Veto::Entities)
    );
    assert_eq!(
        veto(
            "Events in Austin this weekend",
            "Events in Austin next weekend"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto("Delete a local git branch", "Delete a remote git branch"),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "Write a tweet about our launch",
            "Write a press release about our launch"
        ),
        Some(Veto::Scope)
    );
    assert_eq!(
        veto(
            "Show my transactions this month",
            "Show all my transactions"
        ),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto(
            "How much does the Summit tent weigh?",
            "How much does the Summit backpack weigh?"
        ),
        Some(Veto::Substitution)
    );
}

#[test]
fn the_same_fact_written_differently_does_not_veto() {
    assert_eq!(
        veto("Book a table for 3 people", "Book a table for three people"),
        None
    );
    assert_eq!(
        veto(
            "Can I withdraw $1,200 today?",
            "can i withdraw 1200 dollars today"
        ),
        None
    );
    assert_eq!(veto("Meet at 5pm", "Meet at 17:00"), None);
    assert_eq!(veto("Meet at 5 pm", "Meet at 5pm"), None);
    assert_eq!(veto("Delivery on March 3", "Delivery on 3 March"), None);
    assert_eq!(
        veto("How do I reset my iPhone?", "how do i reset my iphone"),
        None
    );
    assert_eq!(
        veto(
            "What's the capital of France?",
            "Tell me the capital of France."
        ),
        None
    );
    assert_eq!(veto("I can't log in", "I cannot log in"), None);
    assert_eq!(
        veto(
            "May I return an item after 30 days?",
            "Can I return an item after 30 days?"
        ),
        None
    );
    assert_eq!(
        veto(
            "Don't forget: what's the customers' refund policy?",
            "What is the customers' refund policy? Don't forget."
        ),
        None
    );
    assert_eq!(
        veto(
            "What are the advantages of Rust?",
            "What are the benefits of Rust?"
        ),
        None
    );
    assert_eq!(
        veto(
            "Remind me at 9 a.m. tomorrow",
            "Remind me tomorrow at 09:00"
        ),
        None
    );
    assert_eq!(
        veto(
            "Squash my last 3 commits",
            "Combine the last three commits into one"
        ),
        None
    );
    assert_eq!(
        veto("Do US citizens need a visa?", "Do Americans need a visa?"),
        None
    );
    assert_eq!(
        veto(
            "Minimum age to rent a car in the US",
            "What's the minimum age to rent a car in the United States?"
        ),
        None
    );
    // The price of the substitution guard: a one-word synonym swap is vetoed (one upstream
    // call) unless the synonyms are listed ("rent" / "hire" are).
    assert_eq!(
        veto(
            "How do I clean a leather sofa?",
            "How do I clean a leather couch?"
        ),
        Some(Veto::Substitution)
    );
    assert_eq!(
        veto("Minimum age to rent a car", "Minimum age to hire a car"),
        None
    );
    assert_eq!(
        veto(
            "What does the static keyword mean?",
            "Explain what \"static\" means."
        ),
        None
    );
    assert_eq!(
        veto(
            "Explain APIs to a non-technical person",
            "Describe APIs to someone who isn't technical"
        ),
        None
    );
    assert_eq!(
        veto(
            "Can I take paracetamol now?",
            "Is it OK to take paracetamol now?"
        ),
        None
    );
    assert_eq!(
        veto(
            "How do I reset my password?",
            "How can I set a new one? I forgot my password."
        ),
        None
    );
}

#[test]
fn identical_text_is_never_vetoed_and_switches_work() {
    assert_eq!(veto("invoice 7731", "invoice 7731"), None);
    let off = GuardsConfig {
        numbers: false,
        negation: false,
        entities: false,
        quoted: false,
        scope: false,
        substitution: false,
    };
    assert_eq!(check(&off, "invoice 7731", "invoice 7713"), None);
    let only_neg = GuardsConfig {
        negation: true,
        ..off
    };
    assert_eq!(
        check(&only_neg, "refund it", "don't refund it"),
        Some(Veto::Negation)
    );
    assert_eq!(check(&only_neg, "invoice 7731", "invoice 7713"), None);
}

#[test]
fn a_query_compared_with_several_candidates_gives_each_verdict_of_check() {
    let query = Query::new("Refund my last order");
    for cached in [
        "Don't refund my last order",
        "Refund my last order",
        "Refund my most recent order",
        "Refund my first order",
        "Please refund my last order",
    ] {
        assert_eq!(
            query.check(&ALL, cached),
            check(&ALL, cached, "Refund my last order"),
            "{cached:?}"
        );
    }
    assert_eq!(query.check(&ALL, "Refund my last order"), None);
}
