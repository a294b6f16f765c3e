//! Deterministic guards that veto a semantic candidate.
//!
//! Embeddings place "refund my order" and "don't refund my order" close together, and "invoice
//! 7731" next to "invoice 7713". These cheap lexical checks compare the stored canonical prompt
//! with the new one and refuse the candidate when a fact differs. They are deliberately
//! asymmetric in cost: a wrong veto costs one upstream call, a wrong hit serves a wrong answer.
//!
//! - `numbers`: the multiset of numbers, times, dates (weekdays, months, relative days) must be
//!   equal. "3" equals "three", "$1,200" equals "1200 dollars", "5pm" equals "17:00".
//! - `negation`: a negation on one side only ("don't", "not", "never", "without", ...).
//! - `entities`: a capitalised name, acronym or mixed-case identifier on one side that the other
//!   side does not mention at all (any case).
//! - `quoted`: quoted strings must be identical (case-insensitive).
//! - `scope`: both sides use words from one contrast group but different members of it
//!   ("pros" / "cons", "cheapest" / "most expensive", "summarize" / "translate", "all" / "last").
//! - `substitution`: the two texts are the same but for one or two swapped content words
//!   ("tent" / "backpack"). A genuine paraphrase rewrites more than a word; a user who changes
//!   exactly one word of an otherwise identical question changed what they ask. Typos (a small
//!   edit distance) and function words ("do" / "can") are not substitutions.

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
    if cfg.numbers && a.facts != b.facts {
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
    if cfg.entities && (missing_entity(&a, &b) || missing_entity(&b, &a) || routes_differ) {
        return Some(Veto::Entities);
    }
    if cfg.scope && (scope_conflict(&a.scope, &b.scope) || scope_conflict(&b.scope, &a.scope)) {
        return Some(Veto::Scope);
    }
    // The alignment breaks ties one way: ask both ways so the verdict is symmetric.
    if cfg.substitution && (substituted(&a.words, &b.words) || substituted(&b.words, &a.words)) {
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
    "t",
];

const UNIT_WORDS: &[&str] = &[
    "dollar", "dollars", "usd", "euro", "euros", "eur", "pound", "pounds", "gbp", "percent", "am",
    "pm", "oclock",
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
        // Numbers and units are the numbers guard's business ("3" / "three" agree there).
        let content = |w: &&str| {
            !FUNCTION_WORDS.contains(w)
                && !UNIT_WORDS.contains(w)
                && !NEGATIONS.contains(w)
                && !w.chars().next().is_some_and(|c| c.is_ascii_digit())
                && !NUMBER_WORDS.iter().any(|(n, _)| n == w)
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
    negations: usize,
    quoted: Vec<String>,
    /// Capitalised names and identifiers, lowercased.
    entities: Vec<String>,
    /// Every token, lowercased, for "does the other side mention it at all".
    words: Vec<String>,
    /// (group, member) pairs found.
    scope: Vec<(usize, usize)>,
    /// Direction of travel or transfer: ("from", name) and ("to", name), sorted.
    route: Vec<(String, String)>,
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
    "weekdays",
    "weekends",
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
    "non", "avoid", "avoiding",
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
        &["decrease", "reduce", "decreasing", "reducing"],
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
    &[&["include", "including"], &["exclude", "excluding"]],
    &[&["before"], &["after"]],
    &[&["above"], &["below"]],
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
    &[&["adult", "adults"], &["child", "children", "kid", "kids"]],
    &[
        &["next", "upcoming", "following"],
        &["previous", "past", "prior"],
    ],
    &[
        &["all", "every", "each", "entire"],
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
    &[
        &["start", "begin", "starting"],
        &["stop", "end", "ending", "stopping"],
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
        &["poem"],
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

impl Features {
    fn of(text: &str) -> Features {
        let text = &prenormalize(text);
        let quoted = quoted_strings(text);
        let lower = crate::prompt::normalize(&text.to_lowercase());
        // Tokens: runs of alphanumerics plus inner '.', ',', ':' between digits and apostrophes.
        let mut raw: Vec<(String, Option<char>)> = Vec::new();
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
            } else {
                if !cur.is_empty() {
                    raw.push((std::mem::take(&mut cur), cur_prev));
                }
                if !c.is_whitespace() || c == '\n' {
                    prev_sig = Some(c);
                } else if prev_sig.is_none() || raw.last().is_some() {
                    // whitespace keeps the last significant character
                }
            }
            if keep {
                prev_sig = Some('a');
            }
        }
        if !cur.is_empty() {
            raw.push((cur, cur_prev));
        }

        let mut facts = Vec::new();
        let mut negations = 0;
        let mut entities = Vec::new();
        let mut words = Vec::with_capacity(raw.len());
        let mut route = Vec::new();
        for (i, (tok, prev)) in raw.iter().enumerate() {
            let lower = tok.to_lowercase();
            let plain: String = lower.chars().filter(|c| *c != '\'').collect();
            let plain = alias(&plain).to_string();
            words.push(plain.clone());
            let next = raw.get(i + 1).map(|(t, _)| t.to_lowercase());
            // Times: 5pm, 5 pm, 17:00, 5:30pm.
            if let Some(t) = time_of(&plain, next.as_deref()) {
                facts.push(format!("t{t}"));
            } else if plain.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                // Numbers, also inside identifiers ("INV-7731", "v2.1", "3rd").
                let digits: String = plain
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
                    .collect();
                if let Some(v) = number_value(&digits) {
                    facts.push(v);
                }
            } else if let Some((_, v)) = NUMBER_WORDS.iter().find(|(w, _)| *w == plain) {
                let is_time = *v == 720 && plain == "noon" || plain == "midnight";
                facts.push(if is_time {
                    format!("t{v}")
                } else {
                    v.to_string()
                });
            } else if plain.chars().any(|c| c.is_ascii_digit()) {
                let digits: String = plain
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                if let Some(v) = number_value(digits.trim_end_matches('.')) {
                    facts.push(v);
                }
            } else if DATE_WORDS.contains(&plain.as_str()) {
                facts.push(plain.clone());
            } else if let Some((_, full)) = MONTH_ABBREV.iter().find(|(a, _)| *a == plain) {
                facts.push(full.to_string());
            } else if plain == "may" && may_is_month(&raw, i) {
                facts.push("may".into());
            }
            if NEGATIONS.contains(&plain.as_str())
                || plain.ends_with("n't")
                || lower.ends_with("n't")
            {
                negations += 1;
            }
            if is_entity(tok, *prev) && !NOT_ACRONYMS.contains(&plain.as_str()) {
                entities.push(plain.clone());
            }
            if (plain == "from" || plain == "to") && i + 1 < raw.len() {
                let (next_tok, next_prev) = &raw[i + 1];
                if is_entity(next_tok, *next_prev) {
                    route.push((plain.clone(), alias(&next_tok.to_lowercase()).to_string()));
                }
            }
        }
        route.sort();
        facts.sort();
        let scope = scope_members(&words);
        Features {
            facts,
            negations,
            quoted,
            entities,
            words,
            scope,
            route,
            lower,
        }
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

fn missing_entity(a: &Features, b: &Features) -> bool {
    a.entities.iter().any(|e| !b.words.iter().any(|w| w == e))
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

fn scope_members(words: &[String]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (g, group) in SCOPE_GROUPS.iter().enumerate() {
        for (m, member) in group.iter().enumerate() {
            let hit = member.iter().any(|phrase| {
                let parts: Vec<&str> = phrase.split(' ').collect();
                words
                    .windows(parts.len())
                    .any(|w| w.iter().zip(&parts).all(|(a, b)| a == b))
            });
            if hit {
                found.push((g, m));
            }
        }
    }
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
        // The price of the substitution guard: a one-word synonym swap is vetoed (one upstream call).
        assert_eq!(
            veto("Minimum age to rent a car", "Minimum age to hire a car"),
            Some(Veto::Substitution)
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
    fn times_parse() {
        assert_eq!(time_of("5pm", None), Some(17 * 60));
        assert_eq!(time_of("12am", None), Some(0));
        assert_eq!(time_of("17:30", None), Some(17 * 60 + 30));
        assert_eq!(time_of("5", Some("pm")), Some(17 * 60));
        assert_eq!(time_of("5", None), None);
    }
}
