//! The `numbers` guard: numbers, times, dates, units and currencies must agree.

use super::features::{Features, Raw};

/// Ordinals are numbers too: "the third floor" / "the 3rd floor". "first" and "second" are
/// left out ("first time", "a second"), except next to a month.
fn ordinal_word(w: &str) -> Option<u32> {
    Some(match w {
        "third" => 3,
        "fourth" => 4,
        "fifth" => 5,
        "sixth" => 6,
        "seventh" => 7,
        "eighth" => 8,
        "ninth" => 9,
        "tenth" => 10,
        "eleventh" => 11,
        "twelfth" => 12,
        "thirteenth" => 13,
        "fourteenth" => 14,
        "fifteenth" => 15,
        "sixteenth" => 16,
        "seventeenth" => 17,
        "eighteenth" => 18,
        "nineteenth" => 19,
        "twentieth" => 20,
        "thirtieth" => 30,
        _ => return None,
    })
}

/// Units a number can be given in, by word (after aliases), as the set of units the word may
/// mean. Two numbers agree on units when their sets share one.
pub(super) fn units_of_word(w: &str) -> Option<&'static [&'static str]> {
    Some(match w {
        "dollar" => &["usd"],
        "euro" => &["eur"],
        "gbp" => &["gbp"],
        "sterling" => &["gbp"],
        "quid" => &["gbp"],
        "yen" => &["jpy"],
        "rupee" => &["inr"],
        "rupees" => &["inr"],
        "pound" => &["lb", "gbp"],
        "pounds" => &["lb", "gbp"],
        "lb" => &["lb"],
        "lbs" => &["lb"],
        "kg" => &["kg"],
        "kgs" => &["kg"],
        "kilo" => &["kg"],
        "kilos" => &["kg"],
        "kilogram" => &["kg"],
        "kilograms" => &["kg"],
        "g" => &["g"],
        "gram" => &["g"],
        "grams" => &["g"],
        "mg" => &["mg"],
        "milligram" => &["mg"],
        "milligrams" => &["mg"],
        "oz" => &["oz"],
        "ounce" => &["oz"],
        "ounces" => &["oz"],
        "km" => &["km"],
        "kms" => &["km"],
        "kilometer" => &["km"],
        "kilometers" => &["km"],
        "kilometre" => &["km"],
        "kilometres" => &["km"],
        "mi" => &["mi"],
        "mile" => &["mi"],
        "miles" => &["mi"],
        "meter" => &["m"],
        "meters" => &["m"],
        "metre" => &["m"],
        "metres" => &["m"],
        "cm" => &["cm"],
        "centimeter" => &["cm"],
        "centimeters" => &["cm"],
        "centimetre" => &["cm"],
        "centimetres" => &["cm"],
        "mm" => &["mm"],
        "millimeter" => &["mm"],
        "millimeters" => &["mm"],
        "ft" => &["ft"],
        "foot" => &["ft"],
        "feet" => &["ft"],
        "inch" => &["inch"],
        "inches" => &["inch"],
        "ml" => &["ml"],
        "milliliter" => &["ml"],
        "milliliters" => &["ml"],
        "millilitre" => &["ml"],
        "millilitres" => &["ml"],
        "liter" => &["l"],
        "liters" => &["l"],
        "litre" => &["l"],
        "litres" => &["l"],
        "gallon" => &["gal"],
        "gallons" => &["gal"],
        "cup" => &["cup"],
        "cups" => &["cup"],
        "tbsp" => &["tbsp"],
        "tablespoon" => &["tbsp"],
        "tablespoons" => &["tbsp"],
        "tsp" => &["tsp"],
        "teaspoon" => &["tsp"],
        "teaspoons" => &["tsp"],
        "mph" => &["mph"],
        "kph" => &["kph"],
        "fahrenheit" => &["f"],
        "celsius" => &["c"],
        "percent" => &["pct"],
        "pct" => &["pct"],
        "sec" => &["s"],
        "secs" => &["s"],
        "second" => &["s"],
        "seconds" => &["s"],
        "min" => &["min"],
        "mins" => &["min"],
        "minute" => &["min"],
        "minutes" => &["min"],
        "h" => &["h"],
        "hr" => &["h"],
        "hrs" => &["h"],
        "hour" => &["h"],
        "hours" => &["h"],
        "day" => &["d"],
        "days" => &["d"],
        "week" => &["wk"],
        "weeks" => &["wk"],
        "month" => &["mo"],
        "months" => &["mo"],
        "year" => &["yr"],
        "years" => &["yr"],
        "yr" => &["yr"],
        "yrs" => &["yr"],
        "kb" => &["kb"],
        "mb" => &["mb"],
        "gb" => &["gb"],
        "tb" => &["tb"],
        "ghz" => &["ghz"],
        "mhz" => &["mhz"],
        _ => return None,
    })
}

fn number_word(w: &str) -> Option<u32> {
    Some(match w {
        "zero" => 0,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        "hundred" => 100,
        "thousand" => 1000,
        "million" => 1_000_000,
        "billion" => 1_000_000_000,
        "dozen" => 12,
        "noon" => 720,
        "midnight" => 0,
        _ => return None,
    })
}

#[rustfmt::skip]
fn in_date_words(w: &str) -> bool {
    matches!(w,
        "monday" | "tuesday" | "wednesday" | "thursday" | "friday" | "saturday" | "sunday" |
        "today" | "tomorrow" | "yesterday" | "tonight" | "morning" | "afternoon" | "evening" |
        "weekend" | "weekday" | "spring" | "summer" | "autumn" | "winter" | "christmas" | "easter" |
        "week" | "month" | "year"
    )
}

pub(super) fn month_abbrev(w: &str) -> Option<&'static str> {
    Some(match w {
        "jan" => "january",
        "feb" => "february",
        "apr" => "april",
        "jun" => "june",
        "jul" => "july",
        "aug" => "august",
        "sep" => "september",
        "sept" => "september",
        "oct" => "october",
        "nov" => "november",
        "dec" => "december",
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        "sun" => "sunday",
        "weekends" => "weekend",
        "weekdays" => "weekday",
        "weekly" => "week",
        "weeks" => "week",
        "monthly" => "month",
        "months" => "month",
        "yearly" => "year",
        "annual" => "year",
        "annually" => "year",
        "years" => "year",
        _ => return None,
    })
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
pub(super) type Unit = (String, &'static [&'static str]);

pub(super) fn is_number_word(w: &str) -> bool {
    number_word(w).is_some() || ordinal_word(w).is_some()
}

pub(super) fn starts_with_digit(w: &str) -> bool {
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
        let small = number_word(w)
            .filter(|_| multiplier(w).is_none() && !matches!(w, "noon" | "midnight"))
            .map(f64::from)
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
                .is_some_and(|n| number_word(n).is_some_and(|v| v < 100))
        {
            last = Last::And;
        } else if let Some(v) = ordinal_word(w) {
            let ok = match last {
                Last::None | Last::Hundred | Last::Big | Last::And => true,
                Last::Tens => v < 10,
                Last::Unit | Last::Teen => false,
            };
            if ok {
                current += f64::from(v);
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
pub(super) fn facts_of(raw: &[Raw], words: &[String]) -> (Vec<(usize, String)>, Vec<Unit>) {
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
                    matches!(n, "a" | "an" | "per" | "every" | "each" | "daily") || is_date_word(n)
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
        } else if is_date_word(w) {
            facts.push((i, w.to_string()));
        } else if let Some(full) = month_abbrev(w) {
            facts.push((i, full.to_string()));
        } else if w == "may" && may_is_month(raw, i) {
            facts.push((i, "may".into()));
        }
        i += 1;
    }
    (facts, units)
}

#[rustfmt::skip]
fn is_month_name(w: &str) -> bool {
    matches!(w,
        "january" | "february" | "march" | "april" | "may" | "june" | "july" | "august" |
        "september" | "october" | "november" | "december"
    )
}

/// A date word: one of `DATE_WORDS` or a month name, except "may" (far more often the verb).
pub(super) fn is_date_word(w: &str) -> bool {
    in_date_words(w) || (w != "may" && is_month_name(w))
}

pub(super) fn is_month(w: &str) -> bool {
    is_month_name(w) || month_abbrev(w).is_some_and(is_month_name)
}

fn day_range(raw: &[Raw], words: &[String], i: usize) -> Option<(&'static str, usize)> {
    let day = |j: usize| words.get(j).map(|w| month_abbrev(w).unwrap_or(w.as_str()));
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
    units_of_word(word)
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

pub(super) fn currency_of_symbol(prev: Option<char>) -> Option<&'static str> {
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
pub(super) fn currency_of_word(w: &str) -> Option<&'static str> {
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
pub(super) fn time_of(tok: &str, next: Option<&str>) -> Option<u32> {
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

/// Same number, both sides give it a unit, and no unit is shared: "23 kg" / "23 lb",
/// "100 euros" / "100 pounds", "5 days" / "5 hours".
pub(super) fn unit_conflict(a: &Features, b: &Features) -> bool {
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
pub(super) fn currency_conflict(a: &Features, b: &Features) -> bool {
    !a.currencies.is_empty() && !b.currencies.is_empty() && a.currencies != b.currencies
}

#[cfg(test)]
mod tests;
