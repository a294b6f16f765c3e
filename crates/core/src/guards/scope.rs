//! The `scope` guard: contrast groups, superlatives and universal quantifiers.

use super::features::{Features, Raw};
use super::lexicon::{is_determiner, is_function_word, singular};
use super::negation::is_negation;
use super::numbers::{is_date_word, is_number_word, month_abbrev, starts_with_digit};

/// Groups of mutually exclusive alternatives; a member may be several words.
pub(super) const SCOPE_GROUPS: &[&[&[&str]]] = &[
    &[
        &["pros", "advantages", "benefits", "upsides"],
        &["cons", "disadvantages", "drawbacks", "downsides", "risks"],
    ],
    &[
        &["cheapest", "cheaper", "least expensive", "lowest price"],
        &[
            "most expensive",
            "priciest",
            "pricier",
            "more expensive",
            "highest price",
        ],
    ],
    &[&["best", "better"], &["worst", "worse"]],
    &[&["fastest", "faster", "quickest"], &["slowest", "slower"]],
    &[
        &["biggest", "largest", "bigger", "larger"],
        &["smallest", "smaller", "tiniest"],
    ],
    &[
        &["highest", "higher", "maximum", "max"],
        &["lowest", "lower", "minimum", "min"],
    ],
    &[
        &["increase", "raise", "increasing", "raising"],
        &[
            "decrease",
            "reduce",
            "decreasing",
            "reducing",
            "lower",
            "lowering",
        ],
    ],
    &[&["buy", "purchase", "buying"], &["sell", "selling"]],
    &[&["import", "importing"], &["export", "exporting"]],
    &[&["upload", "uploading"], &["download", "downloading"]],
    &[
        &["enable", "activate", "turn on", "switch on"],
        &["disable", "deactivate", "turn off", "switch off"],
    ],
    &[
        &["add", "adding", "insert"],
        &["remove", "delete", "removing", "deleting"],
    ],
    &[&["install", "installing"], &["uninstall", "uninstalling"]],
    &[&["subscribe"], &["unsubscribe"]],
    &[&["lock"], &["unlock"]],
    &[&["encrypt"], &["decrypt"]],
    &[
        &["log in", "login", "sign in", "signin"],
        &["log out", "logout", "sign out", "signout"],
    ],
    &[&["accept", "approve"], &["reject", "decline", "deny"]],
    &[
        &["allow", "permit", "whitelist", "allowlist"],
        &["block", "forbid", "blacklist", "denylist"],
    ],
    &[
        &["include", "including"],
        &["exclude", "excluding", "except"],
    ],
    &[&["before"], &["after"]],
    &[
        &["above", "over", "more than", "greater than"],
        &["below", "under", "less than", "fewer than"],
    ],
    &[
        &["arrival", "arrive", "arriving", "inbound"],
        &["departure", "depart", "departing", "outbound"],
    ],
    &[&["deposit"], &["withdraw", "withdrawal"]],
    &[&["credit"], &["debit"]],
    &[&["income", "revenue"], &["expense", "expenses", "cost"]],
    &[&["hot", "warm"], &["cold", "cool"]],
    &[&["domestic"], &["international"]],
    &[
        &["north", "northern"],
        &["south", "southern"],
        &["east", "eastern"],
        &["west", "western"],
    ],
    &[&["men", "male"], &["women", "female"]],
    &[
        &["adult", "adults"],
        &["child", "children", "kid", "kids"],
        &["teen", "teens", "teenager", "teenagers"],
        &["senior", "seniors", "elderly", "retiree", "retirees"],
    ],
    &[
        &["next", "upcoming", "following"],
        &["previous", "past", "prior"],
    ],
    &[
        &["all", "every", "entire"],
        &["last", "latest", "most recent"],
        &["first", "earliest"],
    ],
    &[
        &["summarize", "summarise", "summary", "tldr"],
        &["translate", "translation"],
        &["explain", "explanation"],
        &["rewrite", "rephrase", "paraphrase"],
        &["proofread", "correct"],
    ],
    &[&["open", "opening"], &["close", "closing", "closed"]],
    &[&["refund", "refunds"], &["exchange", "exchanges"]],
    &[
        &["this", "current"],
        &["next", "upcoming", "coming"],
        &["last", "previous", "past", "prior"],
    ],
    &[&["local"], &["remote"]],
    &[
        &["beginner", "beginners", "basic", "introductory", "intro"],
        &["intermediate"],
        &["advanced", "expert"],
    ],
    &[
        &["tweet"],
        &["press release"],
        &["email", "e-mail"],
        &["blog post", "blog"],
        &["essay"],
        &["poem", "haiku", "limerick"],
        &["song"],
        &["story"],
        &["letter"],
        &["slogan"],
        &["speech"],
    ],
    &[
        &["fix", "debug", "correct", "proofread"],
        &["explain", "describe", "explanation"],
        &["shorten", "condense"],
        &["expand", "lengthen", "elaborate"],
        &["translate"],
        &["summarize", "summarise"],
        &["optimize", "optimise"],
        &["test", "tests"],
        &["review", "critique"],
    ],
    &[
        &["find", "detect", "identify", "count"],
        &["remove", "delete", "drop", "eliminate"],
    ],
    &[
        &["best rated", "highest rated", "top rated"],
        &["lightest"],
        &["heaviest"],
        &["cheapest"],
        &["most expensive"],
        &["fastest"],
        &["smallest"],
        &["biggest", "largest"],
        &["newest"],
        &["oldest"],
        &["quietest"],
        &["most popular"],
    ],
    &[&["public"], &["private"]],
    &[&["free"], &["paid", "premium"]],
    &[&["online"], &["offline", "in person", "in-person"]],
    &[&["internal"], &["external"]],
    &[&["short", "shorter"], &["long", "longer"]],
    &[&["new"], &["used", "refurbished", "secondhand"]],
    &[&["personal"], &["business", "corporate"]],
    &[&["light mode"], &["dark mode"]],
    &[&["ascending"], &["descending"]],
    &[&["uppercase", "upper case"], &["lowercase", "lower case"]],
    &[&["read"], &["write"]],
    &[&["sync", "synchronous"], &["async", "asynchronous"]],
    &[&["vegetarian", "vegan"], &["meat"]],
    &[&["hot"], &["iced"]],
    &[
        &["start", "begin", "starting", "set up", "setting up"],
        &[
            "stop",
            "end",
            "ending",
            "stopping",
            "cancel",
            "cancelling",
            "canceling",
        ],
    ],
    &[
        &[
            "keep",
            "keeping",
            "preserve",
            "preserving",
            "retain",
            "retaining",
            "remember",
        ],
        &[
            "lose",
            "losing",
            "lost",
            "delete",
            "deleting",
            "erase",
            "erasing",
            "wipe",
            "wiping",
            "remove",
            "removing",
            "break",
            "breaking",
            "damage",
            "destroy",
            "overwrite",
            "forget",
        ],
    ],
    &[
        &["safe", "safer", "safely", "harmless"],
        &["dangerous", "unsafe", "harmful", "risky", "hazardous"],
    ],
    &[
        &["legal", "allowed", "permitted", "lawful"],
        &["illegal", "banned", "prohibited", "forbidden", "unlawful"],
    ],
    &[&["more"], &["less", "fewer"]],
    &[&["early", "earlier"], &["late", "later"]],
    &[
        &["send", "sending", "sent", "sender"],
        &["receive", "receiving", "received", "recipient", "receiver"],
    ],
    &[
        &["borrow", "borrowing", "borrower"],
        &["lend", "lending", "lender"],
    ],
    &[&["upgrade", "upgrading"], &["downgrade", "downgrading"]],
    &[&["push"], &["pull"]],
    &[&["join", "joining"], &["leave", "leaving", "quit"]],
    &[&["indoor", "indoors"], &["outdoor", "outdoors"]],
    &[&["incoming"], &["outgoing"]],
    &[&["raw"], &["cooked"]],
    &[&["fresh"], &["frozen", "canned", "dried"]],
    &[&["wet"], &["dry"]],
    &[&["manual", "manually"], &["automatic", "automatically"]],
    &[&["horizontal", "horizontally"], &["vertical", "vertically"]],
    &[&["full time"], &["part time"]],
    &[&["checking"], &["savings"]],
    &[&["positive"], &["negative"]],
    &[&["true"], &["false"]],
    &[
        &["pass", "passed", "passing"],
        &["fail", "failed", "failing"],
    ],
    &[&["inside"], &["outside"]],
    &[&["compress", "zip"], &["decompress", "unzip", "extract"]],
    &[&["merge", "merging", "combine"], &["split", "splitting"]],
    &[&["merge", "merging"], &["rebase", "rebasing"]],
    &[&["pause", "pausing"], &["resume", "unpause"]],
    &[
        &["hide", "hidden", "hiding"],
        &["unhide", "reveal", "visible"],
    ],
    &[&["formal"], &["casual", "informal"]],
    &[&["one way"], &["round trip"]],
    &[&["window seat", "window"], &["aisle seat", "aisle"]],
    &[&["economy"], &["business class"], &["first class"]],
    &[
        &["checked bag", "checked bags", "checked luggage"],
        &["carry on", "hand luggage", "cabin bag"],
    ],
    &[
        &["bake", "baking", "baked"],
        &["fry", "frying", "fried"],
        &["grill", "grilling", "grilled"],
        &["boil", "boiling", "boiled"],
        &["roast", "roasting", "roasted"],
        &["steam", "steaming", "steamed"],
    ],
    &[
        &["symptoms", "symptom", "signs"],
        &["treatment", "treat", "treated", "treating", "cure"],
        &["side effects"],
        &["prevention", "prevent"],
    ],
    &[&["pregnancy", "pregnant"], &["breastfeeding", "nursing"]],
    &[
        &["world", "worldwide"],
        &["country", "nationwide", "nationally"],
        &["state", "statewide"],
        &["city", "citywide"],
    ],
    &[
        &["sick leave", "sick day", "sick days"],
        &["vacation", "annual leave"],
        &[
            "parental leave",
            "maternity leave",
            "paternity leave",
            "maternity",
            "paternity",
        ],
    ],
    &[
        &["rent", "renting", "rental", "hire", "lease", "leasing"],
        &["buy", "buying", "purchase"],
    ],
    &[
        &["brief", "briefly", "concise", "one sentence"],
        &[
            "detailed",
            "in depth",
            "in detail",
            "comprehensive",
            "thorough",
        ],
    ],
    &[
        &["tourist", "tourists", "visitor", "visitors"],
        &["student", "students"],
        &["worker", "workers"],
    ],
    &[
        &["dog", "dogs", "puppy", "puppies"],
        &["cat", "cats", "kitten", "kittens"],
        &["rabbit", "rabbits"],
        &["horse", "horses"],
    ],
    &[&["breakfast"], &["lunch"], &["dinner", "supper"]],
];

/// Words ending in "-est" that are not superlatives.
const NOT_SUPERLATIVES: &[&str] = &[
    "interest",
    "request",
    "harvest",
    "suggest",
    "digest",
    "protest",
    "contest",
    "invest",
    "honest",
    "forest",
    "modest",
    "arrest",
    "manifest",
    "attest",
    "detest",
    "ingest",
    "congest",
    "conquest",
    "inquest",
    "midwest",
    "earnest",
    "bequest",
    "southwest",
    "northwest",
    "unrest",
    "pretest",
    "retest",
    "pytest",
    "behest",
    "tempest",
    "infest",
    "everest",
    "budapest",
    "bucharest",
    "unittest",
    "priest",
    "latest",
];

/// Words after "most" that do not make a superlative ("most people", "most likely").
const NOT_AFTER_MOST: &[&str] = &["people", "likely", "often", "time", "much", "recent"];

/// Spellings of one superlative.
const SUPERLATIVE_SYNONYMS: &[(&str, &str)] = &[
    ("quickest", "fastest"),
    ("largest", "biggest"),
    ("simplest", "easiest"),
    ("nearest", "closest"),
    ("priciest", "most expensive"),
    ("least expensive", "cheapest"),
    ("most affordable", "cheapest"),
    ("tiniest", "smallest"),
    ("farthest", "furthest"),
    ("most difficult", "hardest"),
    ("most effective", "best"),
    ("newest", "latest"),
];

/// "most popular", not "most people", "most of" or "most users".
fn adjective_after_most(n: &str) -> bool {
    let plural = n.ends_with('s') && !n.ends_with("ous") && !n.ends_with("ss");
    let excluded = is_function_word(n)
        || NOT_AFTER_MOST.contains(&n)
        || starts_with_digit(n)
        || is_number_word(n);
    !plural && !excluded
}

/// Superlatives: "-est" adjectives, "best", "worst", "most/least" + adjective.
pub(super) fn superlatives(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let s = if matches!(w.as_str(), "most" | "least") {
            if i > 0 && words[i - 1] == "at" {
                continue;
            }
            match words.get(i + 1) {
                Some(n) if adjective_after_most(n) => format!("{w} {n}"),
                _ => continue,
            }
        } else if matches!(w.as_str(), "best" | "worst")
            || (w.len() >= 6
                && w.ends_with("est")
                && w.chars().all(|c| c.is_ascii_lowercase())
                && !NOT_SUPERLATIVES.contains(&w.as_str()))
        {
            w.clone()
        } else {
            continue;
        };
        let s = SUPERLATIVE_SYNONYMS
            .iter()
            .find(|(a, _)| *a == s)
            .map_or(s, |(_, c)| c.to_string());
        out.push(s);
    }
    out.sort();
    out.dedup();
    out
}

/// Both sides ask for a superlative, and not the same one ("easiest" / "fastest").
pub(super) fn superlative_conflict(a: &Features, b: &Features) -> bool {
    !b.superlatives.is_empty() && a.superlatives.iter().any(|s| !b.superlatives.contains(s))
}

/// Nouns that "every"/"all" makes periodic or idiomatic rather than a scope: "every month",
/// "all day", "all set".
const NOT_QUANTIFIED: &[&str] = &[
    "day", "night", "time", "hour", "minute", "second", "set", "right", "good", "around", "over",
    "along", "else", "together", "kind", "sort", "way",
];

/// The singular heads of noun phrases under "all"/"every" ("all my orders" -> "order", "every
/// account on my team" -> "account"), and whether a universal quantifier occurs at all.
pub(super) fn quantified(raw: &[Raw], words: &[String]) -> (Vec<String>, bool) {
    let mut heads = Vec::new();
    let mut universal = false;
    for (i, w) in words.iter().enumerate() {
        if !matches!(w.as_str(), "all" | "every") || (i > 0 && words[i - 1] == "at") {
            continue;
        }
        universal = true;
        let mut j = i + 1;
        while words.get(j).is_some_and(|w| is_determiner(w)) {
            j += 1;
        }
        // The head is the last of up to three adjacent content words: "all pending expense
        // reports" -> "reports".
        let mut head = None;
        let mut k = j;
        while k < words.len() && k < j + 3 {
            let n = words[k].as_str();
            if raw[k].1 != Some('a')
                || is_function_word(n)
                || starts_with_digit(n)
                || is_negation(n)
            {
                break;
            }
            head = Some(singular(n));
            k += 1;
        }
        if let Some(h) = head {
            if !NOT_QUANTIFIED.contains(&h.as_str())
                && !is_date_word(&h)
                && month_abbrev(&h).is_none()
            {
                heads.push(h);
            }
        }
    }
    (heads, universal)
}

/// One side asks about all or every X, the other about one X and never about all of them
/// ("reset the passwords of every account" / "reset the password of my account").
pub(super) fn quantifier_conflict(a: &Features, b: &Features) -> bool {
    !b.universal && a.quantified.iter().any(|h| b.words.contains(h))
}

/// The scope phrases by first word: first word -> (group, member, phrase).
type ScopeIndex = std::collections::BTreeMap<&'static str, Vec<(usize, usize, &'static str)>>;

fn scope_index() -> &'static ScopeIndex {
    static INDEX: std::sync::OnceLock<ScopeIndex> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = ScopeIndex::new();
        for (g, group) in SCOPE_GROUPS.iter().enumerate() {
            for (m, member) in group.iter().enumerate() {
                for phrase in member.iter() {
                    let first = phrase.split(' ').next().unwrap_or(phrase);
                    index.entry(first).or_default().push((g, m, *phrase));
                }
            }
        }
        index
    })
}

pub(super) fn scope_members(words: &[String]) -> Vec<(usize, usize)> {
    let index = scope_index();
    let mut found = Vec::new();
    for (k, w) in words.iter().enumerate() {
        for &(g, m, phrase) in index.get(w.as_str()).map_or(&[][..], Vec::as_slice) {
            let rest_matches = phrase
                .split(' ')
                .enumerate()
                .skip(1)
                .all(|(o, part)| words.get(k + o).is_some_and(|x| x == part));
            if rest_matches {
                found.push((g, m));
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Both sides touch the same contrast group, and what one says the other never does.
pub(super) fn scope_conflict(a: &[(usize, usize)], b: &[(usize, usize)]) -> bool {
    a.iter().any(|&(g, m)| {
        let other: Vec<usize> = b
            .iter()
            .filter(|(bg, _)| *bg == g)
            .map(|(_, bm)| *bm)
            .collect();
        !other.is_empty() && !other.contains(&m)
    })
}

#[cfg(test)]
mod tests;
