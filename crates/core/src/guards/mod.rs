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

use crate::config::GuardsConfig;

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

/// Runs the enabled guards in a fixed order; the first that objects names the veto.
pub fn check(cfg: &GuardsConfig, cached: &str, query: &str) -> Option<Veto> {
    if cached == query {
        return None;
    }
    let a = Features::of(cached);
    let b = Features::of(query);
    if cfg.numbers
        && (a.facts != b.facts
            || (!a.context_days.is_empty()
                && !b.context_days.is_empty()
                && a.context_days != b.context_days)
            || unit_conflict(&a, &b)
            || unit_conflict(&b, &a)
            || currency_conflict(&a, &b))
    {
        return Some(Veto::Numbers);
    }
    if cfg.negation
        && ((a.negations > 0) != (b.negations > 0)
            || prefix_antonym(&a, &b)
            || prefix_antonym(&b, &a))
    {
        return Some(Veto::Negation);
    }
    if cfg.quoted && (missing_quote(&a, &b) || missing_quote(&b, &a)) {
        return Some(Veto::Quoted);
    }
    let routes_differ = !a.route.is_empty() && !b.route.is_empty() && a.route != b.route;
    if cfg.entities
        && (missing_entity(&a, &b)
            || missing_entity(&b, &a)
            || routes_differ
            || roles_swapped(&a, &b))
    {
        return Some(Veto::Entities);
    }
    if cfg.scope
        && (scope_conflict(&a.scope, &b.scope)
            || scope_conflict(&b.scope, &a.scope)
            || superlative_conflict(&a, &b)
            || superlative_conflict(&b, &a)
            || quantifier_conflict(&a, &b)
            || quantifier_conflict(&b, &a))
    {
        return Some(Veto::Scope);
    }
    // The alignment breaks ties one way: ask both ways so the verdict is symmetric.
    if cfg.substitution && (substituted(&a.meant, &b.meant) || substituted(&b.meant, &a.meant)) {
        return Some(Veto::Substitution);
    }
    None
}

/// Function words: swapping one for another ("how do I" / "how can I") changes no answer.
const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "the", "i", "me", "my", "mine", "we", "our", "us", "you", "your", "it", "its",
    "they", "them", "their", "he", "she", "his", "her", "this", "that", "these", "those", "is",
    "are", "was", "were", "be", "been", "am", "do", "does", "did", "can", "could", "would",
    "should", "will", "shall", "may", "might", "must", "have", "has", "had", "what", "whats",
    "which", "who", "how", "why", "when", "where", "whats", "to", "of", "in", "on", "at", "for",
    "with", "by", "about", "into", "onto", "and", "or", "but", "so", "if", "then", "please", "pls",
    "kindly", "hi", "hello", "hey", "thanks", "just", "quick", "question", "some", "any", "get",
    "got", "there", "here", "up", "out", "tell", "show", "give", "im", "ive", "id", "youre", "s",
    "t", "ok", "okay", "per", "each", "every",
];

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
fn substituted(a: &[String], b: &[String]) -> bool {
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
            !FUNCTION_WORDS.contains(w)
                && !(with_number && (UNIT_WORDS.contains(w) || UNITS.iter().any(|(u, _)| u == w)))
                && !NEGATIONS.contains(w)
                && !numeric(w)
                && !DATE_WORDS.contains(w)
                && !MONTH_ABBREV.iter().any(|(a, _)| a == w)
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

struct Features {
    /// Sorted numbers, times and date words, canonical strings.
    facts: Vec<String>,
    /// Relative days ("today", "yesterday") in earlier turns, sorted.
    context_days: Vec<String>,
    /// (number, units it is given in): "23 kg", "$500", "5km". A unit word may stand for
    /// several units ("pounds": weight or money).
    units: Vec<Unit>,
    /// Currencies mentioned anywhere, sorted and deduplicated.
    currencies: Vec<&'static str>,
    negations: usize,
    quoted: Vec<String>,
    /// Capitalised names, identifiers and well-known lowercase names, lowercased; `true` for
    /// an all-caps acronym (which an expansion on the other side also mentions).
    entities: Vec<(String, bool)>,
    /// Every token, lowercased, for "does the other side mention it at all".
    words: Vec<String>,
    /// The tokens with a negated privative ("without losing") folded into "keep", for the
    /// substitution diff.
    meant: Vec<String>,
    /// (group, member) pairs found.
    scope: Vec<(usize, usize)>,
    /// Superlatives ("cheapest", "most popular"), folded to one spelling, sorted.
    superlatives: Vec<String>,
    /// Singular heads of nouns under a universal quantifier ("every account" -> "account").
    quantified: Vec<String>,
    /// Whether "all" or "every" occurs at all.
    universal: bool,
    /// Direction of travel or transfer: ("from", name) and ("to", name), sorted.
    route: Vec<(String, String)>,
    /// Words in the source role ("from savings", "English into") and in the target role
    /// ("to checking", "into French") of a move, transfer or conversion.
    sources: Vec<String>,
    targets: Vec<String>,
    /// The whole text, lowercased with whitespace collapsed, for "is it mentioned at all".
    lower: String,
}

/// Folds spellings that tokenisation would otherwise split or miss.
fn prenormalize(text: &str) -> String {
    let mut t = text.to_string();
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
        t = t.replace(from, to);
    }
    t
}

fn alias(word: &str) -> &str {
    ALIASES
        .iter()
        .find(|(a, _)| *a == word)
        .map_or(word, |(_, c)| c)
}

fn prefix_antonym(a: &Features, b: &Features) -> bool {
    a.words.iter().filter(|w| w.len() >= 4).any(|w| {
        NEGATING_PREFIXES.iter().any(|p| {
            let neg = format!("{p}{w}");
            b.words.contains(&neg) && !a.words.contains(&neg)
        })
    })
}

fn missing_quote(a: &Features, b: &Features) -> bool {
    a.quoted.iter().any(|q| !b.lower.contains(q.as_str()))
}

/// Ordinals are numbers too: "the third floor" / "the 3rd floor". "first" and "second" are
/// left out ("first time", "a second"), except next to a month.
const ORDINAL_WORDS: &[(&str, u32)] = &[
    ("third", 3),
    ("fourth", 4),
    ("fifth", 5),
    ("sixth", 6),
    ("seventh", 7),
    ("eighth", 8),
    ("ninth", 9),
    ("tenth", 10),
    ("eleventh", 11),
    ("twelfth", 12),
    ("thirteenth", 13),
    ("fourteenth", 14),
    ("fifteenth", 15),
    ("sixteenth", 16),
    ("seventeenth", 17),
    ("eighteenth", 18),
    ("nineteenth", 19),
    ("twentieth", 20),
    ("thirtieth", 30),
];

/// Units a number can be given in, by word (after aliases), as the set of units the word may
/// mean. Two numbers agree on units when their sets share one.
const UNITS: &[(&str, &[&str])] = &[
    ("dollar", &["usd"]),
    ("euro", &["eur"]),
    ("gbp", &["gbp"]),
    ("sterling", &["gbp"]),
    ("quid", &["gbp"]),
    ("yen", &["jpy"]),
    ("rupee", &["inr"]),
    ("rupees", &["inr"]),
    ("pound", &["lb", "gbp"]),
    ("pounds", &["lb", "gbp"]),
    ("lb", &["lb"]),
    ("lbs", &["lb"]),
    ("kg", &["kg"]),
    ("kgs", &["kg"]),
    ("kilo", &["kg"]),
    ("kilos", &["kg"]),
    ("kilogram", &["kg"]),
    ("kilograms", &["kg"]),
    ("g", &["g"]),
    ("gram", &["g"]),
    ("grams", &["g"]),
    ("mg", &["mg"]),
    ("milligram", &["mg"]),
    ("milligrams", &["mg"]),
    ("oz", &["oz"]),
    ("ounce", &["oz"]),
    ("ounces", &["oz"]),
    ("km", &["km"]),
    ("kms", &["km"]),
    ("kilometer", &["km"]),
    ("kilometers", &["km"]),
    ("kilometre", &["km"]),
    ("kilometres", &["km"]),
    ("mi", &["mi"]),
    ("mile", &["mi"]),
    ("miles", &["mi"]),
    ("meter", &["m"]),
    ("meters", &["m"]),
    ("metre", &["m"]),
    ("metres", &["m"]),
    ("cm", &["cm"]),
    ("centimeter", &["cm"]),
    ("centimeters", &["cm"]),
    ("centimetre", &["cm"]),
    ("centimetres", &["cm"]),
    ("mm", &["mm"]),
    ("millimeter", &["mm"]),
    ("millimeters", &["mm"]),
    ("ft", &["ft"]),
    ("foot", &["ft"]),
    ("feet", &["ft"]),
    ("inch", &["inch"]),
    ("inches", &["inch"]),
    ("ml", &["ml"]),
    ("milliliter", &["ml"]),
    ("milliliters", &["ml"]),
    ("millilitre", &["ml"]),
    ("millilitres", &["ml"]),
    ("liter", &["l"]),
    ("liters", &["l"]),
    ("litre", &["l"]),
    ("litres", &["l"]),
    ("gallon", &["gal"]),
    ("gallons", &["gal"]),
    ("cup", &["cup"]),
    ("cups", &["cup"]),
    ("tbsp", &["tbsp"]),
    ("tablespoon", &["tbsp"]),
    ("tablespoons", &["tbsp"]),
    ("tsp", &["tsp"]),
    ("teaspoon", &["tsp"]),
    ("teaspoons", &["tsp"]),
    ("mph", &["mph"]),
    ("kph", &["kph"]),
    ("fahrenheit", &["f"]),
    ("celsius", &["c"]),
    ("percent", &["pct"]),
    ("pct", &["pct"]),
    ("sec", &["s"]),
    ("secs", &["s"]),
    ("second", &["s"]),
    ("seconds", &["s"]),
    ("min", &["min"]),
    ("mins", &["min"]),
    ("minute", &["min"]),
    ("minutes", &["min"]),
    ("h", &["h"]),
    ("hr", &["h"]),
    ("hrs", &["h"]),
    ("hour", &["h"]),
    ("hours", &["h"]),
    ("day", &["d"]),
    ("days", &["d"]),
    ("week", &["wk"]),
    ("weeks", &["wk"]),
    ("month", &["mo"]),
    ("months", &["mo"]),
    ("year", &["yr"]),
    ("years", &["yr"]),
    ("yr", &["yr"]),
    ("yrs", &["yr"]),
    ("kb", &["kb"]),
    ("mb", &["mb"]),
    ("gb", &["gb"]),
    ("tb", &["tb"]),
    ("ghz", &["ghz"]),
    ("mhz", &["mhz"]),
];

/// Verbs of losing something: negated ("without losing", "don't delete") they ask to keep it.
const PRIVATIVES: &[&str] = &[
    "lose",
    "losing",
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
    "damaging",
    "destroy",
    "destroying",
    "overwrite",
    "overwriting",
    "forget",
    "forgetting",
];

/// Names people usually type in lowercase; each is a name wherever it stands. Words that are
/// also common nouns or verbs ("rust", "swift", "go", "word", "windows") are left out.
const KNOWN_NAMES: &[&str] = &[
    "python",
    "java",
    "javascript",
    "typescript",
    "kotlin",
    "php",
    "perl",
    "haskell",
    "golang",
    "csharp",
    "mysql",
    "postgres",
    "postgresql",
    "sqlite",
    "mongodb",
    "redis",
    "docker",
    "kubernetes",
    "linux",
    "ubuntu",
    "debian",
    "fedora",
    "macos",
    "android",
    "ios",
    "iphone",
    "ipad",
    "macbook",
    "chromebook",
    "firefox",
    "gmail",
    "outlook",
    "whatsapp",
    "instagram",
    "facebook",
    "tiktok",
    "youtube",
    "netflix",
    "spotify",
    "paypal",
    "venmo",
    "powerpoint",
    "photoshop",
    "numpy",
    "django",
    "npm",
];

const NUMBER_WORDS: &[(&str, u32)] = &[
    ("zero", 0),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
    ("hundred", 100),
    ("thousand", 1000),
    ("million", 1_000_000),
    ("billion", 1_000_000_000),
    ("dozen", 12),
    ("noon", 720),
    ("midnight", 0),
];

const DATE_WORDS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "today",
    "tomorrow",
    "yesterday",
    "tonight",
    "morning",
    "afternoon",
    "evening",
    "weekend",
    "weekday",
    "spring",
    "summer",
    "autumn",
    "winter",
    "christmas",
    "easter",
    "week",
    "month",
    "year",
];

const MONTH_ABBREV: &[(&str, &str)] = &[
    ("jan", "january"),
    ("feb", "february"),
    ("apr", "april"),
    ("jun", "june"),
    ("jul", "july"),
    ("aug", "august"),
    ("sep", "september"),
    ("sept", "september"),
    ("oct", "october"),
    ("nov", "november"),
    ("dec", "december"),
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
    ("weekends", "weekend"),
    ("weekdays", "weekday"),
    ("weekly", "week"),
    ("weeks", "week"),
    ("monthly", "month"),
    ("months", "month"),
    ("yearly", "year"),
    ("annual", "year"),
    ("annually", "year"),
    ("years", "year"),
];

const NEGATIONS: &[&str] = &[
    "not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without",
    "cannot", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont", "cant",
    "couldnt", "shouldnt", "wouldnt", "hasnt", "havent", "hadnt", "mustnt", "neednt", "aint",
    "non", "avoid", "avoiding", "unable", "missing", "lack", "lacks", "lacking",
];

/// Prefixes that turn a word into its opposite: "safe" / "unsafe", "refundable" / "nonrefundable".
const NEGATING_PREFIXES: &[&str] = &["un", "non", "in", "im", "il", "ir", "dis"];

/// All-caps words that are not names.
const NOT_ACRONYMS: &[&str] = &[
    "ok", "okay", "asap", "fyi", "btw", "pls", "am", "pm", "faq", "diy", "eta",
];

/// Different spellings of the same name, folded before comparing (token -> canonical).
const ALIASES: &[(&str, &str)] = &[
    ("usa", "us"),
    ("america", "us"),
    ("american", "us"),
    ("americans", "us"),
    ("britain", "uk"),
    ("british", "uk"),
    ("usd", "dollar"),
    ("dollars", "dollar"),
    ("buck", "dollar"),
    ("bucks", "dollar"),
    ("eur", "euro"),
    ("euros", "euro"),
    ("jpy", "yen"),
];

/// Groups of mutually exclusive alternatives; a member may be several words.
const SCOPE_GROUPS: &[&[&[&str]]] = &[
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

fn is_sentence_start(prev: Option<char>) -> bool {
    matches!(
        prev,
        None | Some('.') | Some('!') | Some('?') | Some('\n') | Some(':') | Some('"')
    )
}

fn number_value(tok: &str) -> Option<String> {
    let t: String = tok.chars().filter(|c| *c != ',').collect();
    let f: f64 = t.parse().ok()?;
    Some(if f.fract() == 0.0 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    })
}

/// A number and the units it is given in.
type Unit = (String, &'static [&'static str]);

/// A token and the last non-space character before it (sentence starts, hyphens, currency
/// symbols).
type Raw = (String, Option<char>);

impl Features {
    fn of(text: &str) -> Features {
        let text = &prenormalize(text);
        let quoted = quoted_strings(text);
        let lower = crate::prompt::normalize(&text.to_lowercase());
        let raw = tokens(text);
        // Lowercased, apostrophes dropped, aliases folded.
        let words: Vec<String> = raw
            .iter()
            .map(|(tok, _)| {
                let plain: String = tok.to_lowercase().chars().filter(|c| *c != '\'').collect();
                alias(&plain).to_string()
            })
            .collect();

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
            let negates = NEGATIONS.contains(&w) || raw[i].0.to_lowercase().ends_with("n't");
            if negates
                && words
                    .get(i + 1)
                    .is_some_and(|n| PRIVATIVES.contains(&n.as_str()))
            {
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
            let is_date = DATE_WORDS.contains(&plain.as_str())
                || MONTH_ABBREV.iter().any(|(a, _)| a == plain)
                || plain == "may";
            let named = is_entity(tok, *prev) && !NOT_ACRONYMS.contains(&plain.as_str());
            // Dates belong to the numbers guard: "Monday" is not a name.
            if (named && !is_date) || KNOWN_NAMES.contains(&plain.as_str()) {
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

fn is_number_word(w: &str) -> bool {
    NUMBER_WORDS.iter().any(|(n, _)| *n == w) || ORDINAL_WORDS.iter().any(|(n, _)| *n == w)
}

fn starts_with_digit(w: &str) -> bool {
    w.chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// Canonical string of a number: "1200", "3.5".
fn format_number(v: f64) -> String {
    let v = (v * 1e6).round() / 1e6;
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A number written in words or digits starting at `i`, and how many tokens it takes:
/// "three hundred (and) fifty" = 350, "twenty five" = 25, "one thousand" = 1000,
/// "1.2 million" = 1200000, "twelfth" = 12. "one" alone is a pronoun, not a number.
fn number_phrase(words: &[String], i: usize) -> Option<(f64, usize)> {
    let multiplier = |w: &str| match w {
        "hundred" => Some(100.0),
        "thousand" => Some(1e3),
        "million" => Some(1e6),
        "billion" => Some(1e9),
        "dozen" => Some(12.0),
        _ => None,
    };
    let first = words.get(i)?;
    if starts_with_digit(first) {
        let digits: String = first
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
            .collect();
        let mut v: f64 = number_value(digits.trim_end_matches(['.', ',']))?
            .parse()
            .ok()?;
        let mut used = 1;
        // "1.2 million", "2 dozen": only after a plain number, not "5km".
        if digits.len() == first.len() {
            while let Some(m) = words.get(i + used).and_then(|w| multiplier(w)) {
                v *= m;
                used += 1;
            }
        }
        return Some((v, used));
    }
    #[derive(PartialEq, Clone, Copy)]
    enum Last {
        None,
        Unit,
        Teen,
        Tens,
        Hundred,
        Big,
        And,
    }
    let (mut total, mut current, mut used, mut last) = (0.0f64, 0.0f64, 0, Last::None);
    while let Some(w) = words.get(i + used).map(String::as_str) {
        let next_is_multiplier = words
            .get(i + used + 1)
            .is_some_and(|n| multiplier(n).is_some());
        let small = NUMBER_WORDS
            .iter()
            .find(|(n, _)| *n == w && multiplier(w).is_none() && !matches!(w, "noon" | "midnight"))
            .map(|(_, v)| *v as f64)
            .or_else(|| (w == "one" && (last != Last::None || next_is_multiplier)).then_some(1.0));
        if let Some(v) = small {
            let ok = match last {
                Last::None | Last::Hundred | Last::Big | Last::And => true,
                Last::Tens => v < 10.0,
                Last::Unit | Last::Teen => false,
            };
            if !ok || w == "zero" && last != Last::None {
                break;
            }
            current += v;
            last = if v < 10.0 {
                Last::Unit
            } else if v < 20.0 {
                Last::Teen
            } else {
                Last::Tens
            };
        } else if let Some(m) = multiplier(w) {
            if matches!(last, Last::Hundred | Last::And) || (m < 1e3 && last == Last::Big) {
                break;
            }
            if m < 1e3 {
                current = current.max(1.0) * m;
                last = Last::Hundred;
            } else {
                total += current.max(1.0) * m;
                current = 0.0;
                last = Last::Big;
            }
        } else if w == "and"
            && matches!(last, Last::Hundred | Last::Big)
            && words
                .get(i + used + 1)
                .is_some_and(|n| NUMBER_WORDS.iter().any(|(w, v)| w == n && *v < 100))
        {
            last = Last::And;
        } else if let Some((_, v)) = ORDINAL_WORDS.iter().find(|(n, _)| *n == w) {
            let ok = match last {
                Last::None | Last::Hundred | Last::Big | Last::And => true,
                Last::Tens => *v < 10,
                Last::Unit | Last::Teen => false,
            };
            if ok {
                current += *v as f64;
                used += 1;
            }
            break;
        } else {
            break;
        }
        used += 1;
    }
    if last == Last::And {
        used -= 1;
    }
    (used > 0).then_some((total + current, used))
}

/// Numbers, times and dates (each with the index of its token), and the units numbers are
/// given in.
fn facts_of(raw: &[Raw], words: &[String]) -> (Vec<(usize, String)>, Vec<Unit>) {
    let mut facts = Vec::new();
    let mut units = Vec::new();
    let is_numeric = |j: usize| {
        words
            .get(j)
            .is_some_and(|w| starts_with_digit(w) || is_number_word(w) || w == "one")
    };
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let next = words.get(i + 1).map(String::as_str);
        let prev = i.checked_sub(1).map(|j| words[j].as_str());
        // "Monday to Friday", "Mon-Fri": weekdays; "Saturday and Sunday": the weekend.
        if let Some((fact, used)) = day_range(raw, words, i) {
            facts.push((i, fact.to_string()));
            i += used;
            continue;
        }
        if let Some(t) = time_of(w, next) {
            facts.push((i, format!("t{t}")));
            i += 1;
            continue;
        }
        if w == "noon" || w == "midnight" {
            facts.push((i, format!("t{}", if w == "noon" { 720 } else { 0 })));
            i += 1;
            continue;
        }
        // "the first of June", "June second": a day of the month.
        if matches!(w, "first" | "second")
            && (prev.is_some_and(is_month)
                || next == Some("of") && words.get(i + 2).is_some_and(|m| is_month(m)))
        {
            facts.push((i, if w == "first" { "1" } else { "2" }.into()));
            i += 1;
            continue;
        }
        // "twice a day", "once a week": a frequency ("once I log in" is not).
        if w == "twice"
            || w == "once"
                && next.is_some_and(|n| {
                    matches!(n, "a" | "an" | "per" | "every" | "each" | "daily")
                        || DATE_WORDS.contains(&n)
                })
        {
            facts.push((i, if w == "once" { "1" } else { "2" }.into()));
            i += 1;
            continue;
        }
        if let Some((v, used)) = number_phrase(words, i) {
            let value = format_number(v);
            let after = i + used;
            // The unit: a symbol before ("$500"), a suffix ("5km") or the next word.
            let suffix: String = w.chars().skip_while(|c| !c.is_alphabetic()).collect();
            let unit = currency_symbol_unit(raw[i].1)
                .or_else(|| {
                    (starts_with_digit(w) && !suffix.is_empty())
                        .then(|| unit_of(&suffix, None))
                        .flatten()
                })
                .or_else(|| {
                    words
                        .get(after)
                        .and_then(|u| unit_of(u, words.get(after + 1).map(String::as_str)))
                });
            if let Some(u) = unit {
                units.push((value.clone(), u));
            }
            facts.push((i, value));
            i += used;
            continue;
        }
        if w.chars().any(|c| c.is_ascii_digit()) {
            // Numbers inside identifiers ("v2.1", "INC20417").
            let digits: String = w
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if let Some(v) = number_value(digits.trim_end_matches('.')) {
                facts.push((i, v));
            }
        } else if matches!(w, "morning" | "afternoon" | "evening" | "night") && prev == Some("good")
        {
            // A greeting, not a time.
        } else if w == "night" && prev == Some("last") {
            facts.push((i, "yesterday".into()));
        } else if matches!(w, "weeks" | "months" | "years") {
            // A duration counts with its number ("2 years"); "how many years" asks for one.
            if i > 0 && is_numeric(i - 1) {
                facts.push((i, w.trim_end_matches('s').to_string()));
            }
        } else if DATE_WORDS.contains(&w) {
            facts.push((i, w.to_string()));
        } else if let Some((_, full)) = MONTH_ABBREV.iter().find(|(a, _)| *a == w) {
            facts.push((i, full.to_string()));
        } else if w == "may" && may_is_month(raw, i) {
            facts.push((i, "may".into()));
        }
        i += 1;
    }
    (facts, units)
}

fn is_month(w: &str) -> bool {
    const MONTHS: &[&str] = &[
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    MONTHS.contains(&w)
        || MONTH_ABBREV
            .iter()
            .any(|(a, full)| *a == w && MONTHS.contains(full))
}

fn day_range(raw: &[Raw], words: &[String], i: usize) -> Option<(&'static str, usize)> {
    let day = |j: usize| {
        words.get(j).map(|w| {
            MONTH_ABBREV
                .iter()
                .find(|(a, _)| a == w)
                .map_or(w.as_str(), |(_, full)| full)
        })
    };
    let (fact, end, joiners): (_, _, &[&str]) = match day(i)? {
        "monday" => (
            "weekday",
            "friday",
            &["to", "through", "thru", "till", "until"],
        ),
        "saturday" => ("weekend", "sunday", &["and", "to", "through", "thru", "or"]),
        _ => return None,
    };
    if day(i + 1) == Some(end) && matches!(raw[i + 1].1, Some('-' | '–' | '&' | '/')) {
        return Some((fact, 2));
    }
    if words
        .get(i + 1)
        .is_some_and(|j| joiners.contains(&j.as_str()))
        && day(i + 2) == Some(end)
    {
        return Some((fact, 3));
    }
    None
}

/// Units a word stands for after a number ("kg", "miles", "euros", "degrees Fahrenheit").
fn unit_of(word: &str, next: Option<&str>) -> Option<&'static [&'static str]> {
    if matches!(word, "degree" | "degrees" | "deg") {
        return Some(match next {
            Some("fahrenheit" | "f") => &["f"],
            Some("celsius" | "c" | "centigrade") => &["c"],
            _ => &["f", "c"],
        });
    }
    UNITS.iter().find(|(w, _)| *w == word).map(|(_, u)| *u)
}

fn currency_symbol_unit(prev: Option<char>) -> Option<&'static [&'static str]> {
    Some(match currency_of_symbol(prev)? {
        "usd" => &["usd"],
        "eur" => &["eur"],
        "gbp" => &["gbp"],
        "jpy" => &["jpy"],
        _ => &["inr"],
    })
}

fn currency_of_symbol(prev: Option<char>) -> Option<&'static str> {
    match prev? {
        '$' => Some("usd"),
        '€' => Some("eur"),
        '£' => Some("gbp"),
        '¥' => Some("jpy"),
        '₹' => Some("inr"),
        _ => None,
    }
}

/// Currency names ("pound" is left out: it is also a weight).
fn currency_of_word(w: &str) -> Option<&'static str> {
    match w {
        "dollar" => Some("usd"),
        "euro" => Some("eur"),
        "gbp" | "sterling" | "quid" => Some("gbp"),
        "yen" | "jpy" => Some("jpy"),
        "rupee" | "rupees" | "inr" => Some("inr"),
        _ => None,
    }
}

fn may_is_month(raw: &[(String, Option<char>)], i: usize) -> bool {
    let near_number = |j: Option<usize>| {
        j.and_then(|j| raw.get(j))
            .is_some_and(|(t, _)| t.chars().next().is_some_and(|c| c.is_ascii_digit()))
    };
    let prev_word = i
        .checked_sub(1)
        .and_then(|j| raw.get(j))
        .map(|(t, _)| t.to_lowercase());
    near_number(i.checked_sub(1))
        || near_number(Some(i + 1))
        || matches!(
            prev_word.as_deref(),
            Some(
                "in" | "of"
                    | "next"
                    | "last"
                    | "this"
                    | "early"
                    | "late"
                    | "mid"
                    | "since"
                    | "until"
                    | "by"
            )
        )
}

/// Minutes since midnight for "5pm", "5 pm", "17:00", "5:30am".
fn time_of(tok: &str, next: Option<&str>) -> Option<u32> {
    let (body, suffix) = if let Some(b) = tok.strip_suffix("am") {
        (b, Some(false))
    } else if let Some(b) = tok.strip_suffix("pm") {
        (b, Some(true))
    } else {
        match next {
            Some("am" | "a.m") => (tok, Some(false)),
            Some("pm" | "p.m") => (tok, Some(true)),
            _ => (tok, None),
        }
    };
    let (h, m) = match body.split_once(':') {
        Some((h, m)) => (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?),
        None if suffix.is_some() => (body.parse::<u32>().ok()?, 0),
        None => return None,
    };
    if m > 59 || h > 24 {
        return None;
    }
    let h = match suffix {
        Some(true) if h < 12 => h + 12,
        Some(false) if h == 12 => 0,
        _ => h,
    };
    Some(h * 60 + m)
}

fn is_entity(tok: &str, prev: Option<char>) -> bool {
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
fn is_acronym(tok: &str) -> bool {
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
fn missing_entity(a: &Features, b: &Features) -> bool {
    a.entities.iter().any(|(e, acronym)| {
        let one = singular(e);
        let mentioned = b.words.iter().any(|w| w == e || singular(w) == one)
            || (*acronym && spelled_out(e, &b.words))
            || currency_of_word(e).is_some_and(|c| b.currencies.contains(&c));
        !mentioned
    })
}

/// Determiners and possessives skipped before the noun a role word or quantifier governs.
const DETERMINERS: &[&str] = &[
    "a", "an", "the", "my", "our", "your", "their", "his", "her", "its", "this", "that", "these",
    "those", "of", "some",
];

/// Words in the source and target roles of a move: "from X", "X to/into Y" (X a name or a
/// unit: "English into French", "euros to dollars"). Numbers and dates are the numbers guard's.
fn roles(raw: &[Raw], words: &[String]) -> (Vec<String>, Vec<String>) {
    let content = |w: &str| {
        !w.is_empty()
            && !FUNCTION_WORDS.contains(&w)
            && !starts_with_digit(w)
            && !is_number_word(w)
            && !DATE_WORDS.contains(&w)
            && !MONTH_ABBREV.iter().any(|(a, _)| *a == w)
            && !is_month(w)
    };
    let object = |mut j: usize| {
        while words
            .get(j)
            .is_some_and(|w| DETERMINERS.contains(&w.as_str()))
        {
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
                        || KNOWN_NAMES.contains(&words[j].as_str())
                        || UNITS.iter().any(|(u, _)| *u == words[j])
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
fn roles_swapped(a: &Features, b: &Features) -> bool {
    let swapped = |a: &Features, b: &Features| {
        a.sources
            .iter()
            .any(|w| b.targets.contains(w) && !b.sources.contains(w) && !a.targets.contains(w))
    };
    swapped(a, b) || swapped(b, a)
}

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
    let excluded = FUNCTION_WORDS.contains(&n)
        || NOT_AFTER_MOST.contains(&n)
        || starts_with_digit(n)
        || is_number_word(n);
    !plural && !excluded
}

/// Superlatives: "-est" adjectives, "best", "worst", "most/least" + adjective.
fn superlatives(words: &[String]) -> Vec<String> {
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
fn superlative_conflict(a: &Features, b: &Features) -> bool {
    !b.superlatives.is_empty() && a.superlatives.iter().any(|s| !b.superlatives.contains(s))
}

fn singular(w: &str) -> String {
    if w.len() > 4 && w.ends_with("ies") {
        format!("{}y", &w[..w.len() - 3])
    } else if ["sses", "shes", "ches", "xes"]
        .iter()
        .any(|e| w.ends_with(e))
    {
        w[..w.len() - 2].to_string()
    } else if w.len() > 3 && w.ends_with('s') && !["ss", "us", "is"].iter().any(|e| w.ends_with(e))
    {
        w[..w.len() - 1].to_string()
    } else {
        w.to_string()
    }
}

/// Nouns that "every"/"all" makes periodic or idiomatic rather than a scope: "every month",
/// "all day", "all set".
const NOT_QUANTIFIED: &[&str] = &[
    "day", "night", "time", "hour", "minute", "second", "set", "right", "good", "around", "over",
    "along", "else", "together", "kind", "sort", "way",
];

/// The singular heads of noun phrases under "all"/"every" ("all my orders" -> "order", "every
/// account on my team" -> "account"), and whether a universal quantifier occurs at all.
fn quantified(raw: &[Raw], words: &[String]) -> (Vec<String>, bool) {
    let mut heads = Vec::new();
    let mut universal = false;
    for (i, w) in words.iter().enumerate() {
        if !matches!(w.as_str(), "all" | "every") || (i > 0 && words[i - 1] == "at") {
            continue;
        }
        universal = true;
        let mut j = i + 1;
        while words
            .get(j)
            .is_some_and(|w| DETERMINERS.contains(&w.as_str()))
        {
            j += 1;
        }
        // The head is the last of up to three adjacent content words: "all pending expense
        // reports" -> "reports".
        let mut head = None;
        let mut k = j;
        while k < words.len() && k < j + 3 {
            let n = words[k].as_str();
            if raw[k].1 != Some('a')
                || FUNCTION_WORDS.contains(&n)
                || starts_with_digit(n)
                || NEGATIONS.contains(&n)
            {
                break;
            }
            head = Some(singular(n));
            k += 1;
        }
        if let Some(h) = head {
            if !NOT_QUANTIFIED.contains(&h.as_str())
                && !DATE_WORDS.contains(&h.as_str())
                && !MONTH_ABBREV.iter().any(|(a, _)| *a == h)
            {
                heads.push(h);
            }
        }
    }
    (heads, universal)
}

/// One side asks about all or every X, the other about one X and never about all of them
/// ("reset the passwords of every account" / "reset the password of my account").
fn quantifier_conflict(a: &Features, b: &Features) -> bool {
    !b.universal && a.quantified.iter().any(|h| b.words.contains(h))
}

/// Same number, both sides give it a unit, and no unit is shared: "23 kg" / "23 lb",
/// "100 euros" / "100 pounds", "5 days" / "5 hours".
fn unit_conflict(a: &Features, b: &Features) -> bool {
    let units = |f: &Features, v: &str| -> Vec<&'static str> {
        f.units
            .iter()
            .filter(|(n, _)| n == v)
            .flat_map(|(_, u)| u.iter().copied())
            .collect()
    };
    a.units.iter().any(|(v, _)| {
        let (ua, ub) = (units(a, v), units(b, v));
        !ub.is_empty() && !ua.iter().any(|u| ub.contains(u))
    })
}

/// Both sides name currencies, and not the same ones ("euros to dollars" / "pounds to dollars").
fn currency_conflict(a: &Features, b: &Features) -> bool {
    !a.currencies.is_empty() && !b.currencies.is_empty() && a.currencies != b.currencies
}

fn quoted_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let pairs = [('"', '"'), ('“', '”'), ('`', '`'), ('«', '»')];
    for (open, close) in pairs {
        let mut rest = text;
        while let Some(s) = rest.find(open) {
            let after = &rest[s + open.len_utf8()..];
            let Some(e) = after.find(close) else { break };
            let q = after[..e].trim().to_lowercase();
            if !q.is_empty() {
                out.push(q);
            }
            rest = &after[e + close.len_utf8()..];
        }
    }
    // Single quotes only when they open after a space and close before one: apostrophes in
    // "don't" or "customers' orders" are not quotes.
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        let opens = matches!(c, '\'' | '‘') && (i == 0 || chars[i - 1].1.is_whitespace());
        if opens {
            if let Some(j) = (i + 1..chars.len()).find(|&j| {
                matches!(chars[j].1, '\'' | '’')
                    && chars.get(j + 1).is_none_or(|(_, n)| !n.is_alphanumeric())
            }) {
                let q = text[pos + c.len_utf8()..chars[j].0].trim().to_lowercase();
                if !q.is_empty() {
                    out.push(q);
                }
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out.sort();
    out
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

fn scope_members(words: &[String]) -> Vec<(usize, usize)> {
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
fn scope_conflict(a: &[(usize, usize)], b: &[(usize, usize)]) -> bool {
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
mod tests {
    use super::*;

    const ALL: GuardsConfig = GuardsConfig {
        numbers: true,
        negation: true,
        entities: true,
        quoted: true,
        scope: true,
        substitution: true,
    };

    fn veto(a: &str, b: &str) -> Option<Veto> {
        let v = check(&ALL, a, b);
        assert_eq!(
            v,
            check(&ALL, b, a),
            "guards must be symmetric: {a:?} / {b:?}"
        );
        v
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

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
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

    #[test]
    fn times_parse() {
        assert_eq!(time_of("5pm", None), Some(17 * 60));
        assert_eq!(time_of("12am", None), Some(0));
        assert_eq!(time_of("17:30", None), Some(17 * 60 + 30));
        assert_eq!(time_of("5", Some("pm")), Some(17 * 60));
        assert_eq!(time_of("5", None), None);
    }
}
