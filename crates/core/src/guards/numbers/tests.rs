//! Unit tests of the `numbers` guard.

use super::*;
use crate::config::GuardsConfig;
use crate::guards::tests::{veto, words};
use crate::guards::{check, Veto};

#[test]
fn numbers_in_words_ordinals_and_frequencies() {
    assert_eq!(veto("Order forty-two pens", "Order 42 pens"), None);
    assert_eq!(
        veto(
            "The deposit is three hundred and fifty dollars",
            "The deposit is $350"
        ),
        None
    );
    assert_eq!(
        veto(
            "Budget of one thousand two hundred per team",
            "Budget of 1,200 per team"
        ),
        None
    );
    assert_eq!(
        veto(
            "Is a 2.5 million budget enough?",
            "Is a 2,500,000 budget enough?"
        ),
        None
    );
    assert_eq!(
        veto("Meet on the fifth floor", "Meet on the 5th floor"),
        None
    );
    assert_eq!(
        veto("Meet on the fifth floor", "Meet on the 6th floor"),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto("Remind me on the first of June", "Remind me on June 1"),
        None
    );
    assert_eq!(
        veto(
            "Water the fern twice a week",
            "Water the fern 2 times a week"
        ),
        None
    );
    assert_eq!(
        veto("Water the fern twice a week", "Water the fern once a week"),
        Some(Veto::Numbers)
    );
    // "once" as a conjunction is no number; "one" alone is a pronoun.
    assert_eq!(
        veto(
            "Once I sign in, where are my invoices?",
            "Where are my invoices once I have signed in?"
        ),
        None
    );
    assert_eq!(veto("Which one is lighter?", "Which is lighter?"), None);
    assert_eq!(
        number_phrase(&words(&["twenty", "five"]), 0),
        Some((25.0, 2))
    );
    assert_eq!(
        number_phrase(&words(&["five", "twenty"]), 0),
        Some((5.0, 1))
    );
    assert_eq!(
        number_phrase(&words(&["two", "hundred", "and", "ten", "apples"]), 0),
        Some((210.0, 4))
    );
    assert_eq!(
        number_phrase(&words(&["two", "hundred", "and", "apples"]), 0),
        Some((200.0, 2))
    );
    assert_eq!(number_phrase(&words(&["one", "apple"]), 0), None);
}

#[test]
fn units_and_currencies_must_agree() {
    assert_eq!(
        veto("Ship a 5 kg box to Oslo", "Ship a 5 lb box to Oslo"),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto(
            "Ship a 5 kg box to Oslo",
            "Ship a five kilogram box to Oslo"
        ),
        None
    );
    assert_eq!(veto("Ship a 5kg box", "Ship a 5 kg box"), None);
    assert_eq!(
        veto(
            "Is 30°C warm for a run?",
            "Is 30 degrees Celsius warm for a run?"
        ),
        None
    );
    assert_eq!(
        veto("Is 30°C warm for a run?", "Is 30°F warm for a run?"),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto("Is 30°C warm for a run?", "Is 30 degrees warm for a run?"),
        None
    );
    assert_eq!(
        veto(
            "Exchange 200 euros into pounds",
            "Exchange 200 pounds into euros"
        ),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto(
            "What's the yen to dollar rate?",
            "What's the euro to dollar rate?"
        ),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto("Can I pay $40 by card?", "Can I pay 40 dollars by card?"),
        None
    );
    assert_eq!(
        veto("Can I pay $40 by card?", "Can I pay 40 USD by card?"),
        None
    );
    assert_eq!(
        veto("Can I pay $40 by card?", "Can I pay €40 by card?"),
        Some(Veto::Numbers)
    );
    // A number with a unit on one side only is the same number.
    assert_eq!(veto("Send 40 to my sister", "Send $40 to my sister"), None);
    assert_eq!(
        veto(
            "Let the dough rest 10 minutes",
            "Let the dough rest 10 hours"
        ),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto("Is a 15% tip enough?", "Is a 15 percent tip enough?"),
        None
    );
    // "$HOME" is no money.
    assert_eq!(
        veto(
            "What is in $HOME on a Mac?",
            "What does $HOME hold on a Mac?"
        ),
        None
    );
}

#[test]
fn greetings_durations_weekday_ranges_and_small_talk() {
    assert_eq!(
        veto(
            "Good evening! Can you check my order status?",
            "Can you check my order status?"
        ),
        None
    );
    assert_eq!(
        veto(
            "Is support open Monday to Friday?",
            "Is support open on weekdays?"
        ),
        None
    );
    assert_eq!(
        veto(
            "Is the bakery open Sat-Sun?",
            "Is the bakery open at weekends?"
        ),
        None
    );
    assert_eq!(
        veto(
            "Is the bakery open Monday to Friday?",
            "Is the bakery open at weekends?"
        ),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto(
            "For how many years is a passport valid?",
            "How long is a passport valid for?"
        ),
        None
    );
    assert_eq!(
        veto("Renew my lease for 2 years", "Renew my lease for 2 months"),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto(
            "We ate out last night. Which receipts do I keep?",
            "We ate out yesterday. Which receipts do I keep?"
        ),
        None
    );
    // Relative days in earlier turns count only when both sides have them.
    assert_eq!(
        veto(
            "Which jacket should I pack?\nuser: Lovely and sunny today!",
            "Which jacket should I pack?"
        ),
        None
    );
    assert_eq!(
        veto(
            "Which jacket should I pack?\nuser: I fly to Oslo today",
            "Which jacket should I pack?\nuser: I fly to Oslo tomorrow"
        ),
        Some(Veto::Numbers)
    );
    assert_eq!(
        veto("Is the shop open today?", "Is the shop open?"),
        Some(Veto::Numbers)
    );
    // Days and months are the numbers guard's, not names.
    let only_entities = GuardsConfig {
        numbers: false,
        negation: false,
        entities: true,
        quoted: false,
        scope: false,
        substitution: false,
    };
    assert_eq!(
        check(
            &only_entities,
            "Deliver it by Monday",
            "Deliver it by Tuesday"
        ),
        None
    );
}

#[test]
fn times_parse() {
    assert_eq!(time_of("5pm", None), Some(17 * 60));
    assert_eq!(time_of("12am", None), Some(0));
    assert_eq!(time_of("17:30", None), Some(17 * 60 + 30));
    assert_eq!(time_of("5", Some("pm")), Some(17 * 60));
    assert_eq!(time_of("5", None), None);
}
