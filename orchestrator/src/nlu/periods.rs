//! The time-expression grammar over the token stream: every form of `metrics.md` ("Time expressions") and
//! the everyday variants (WTD/MTD/QTD/YTD, "so far", prior/previous, ordinal quarters, "fortnight", numeric
//! dates, open and closed ranges). Each match reports the tokens it used, so that the rest of the grammar
//! only sees what is left.

use chrono::{Datelike, Duration, NaiveDate};

use super::lexicon::{month_index, number_word};
use crate::period::{Kind, Period, add_months, month_start, quarter_start, week_start};

/// A period found in the question, with the token range it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    pub period: Period,
    pub from: usize,
    pub to: usize,
    /// The period lies (at least partly) after today ("next month").
    pub future: bool,
}

fn year_of(w: &str) -> Option<i32> {
    w.parse::<i32>().ok().filter(|y| (1990..=2100).contains(y))
}

fn day_of(w: &str) -> Option<u32> {
    let w = ["st", "nd", "rd", "th"]
        .iter()
        .find_map(|s| w.strip_suffix(s))
        .unwrap_or(w);
    w.parse::<u32>().ok().filter(|d| (1..=31).contains(d))
}

/// The most recent `month`/`day` not after today (or in `year`).
fn month_day(month: u32, day: u32, year: Option<i32>, today: NaiveDate) -> Option<NaiveDate> {
    match year {
        Some(y) => NaiveDate::from_ymd_opt(y, month, day),
        // The most recent such day not after today (Feb 29 looks back to the last leap year).
        None => (0..8)
            .filter_map(|back| NaiveDate::from_ymd_opt(today.year() - back, month, day))
            .find(|d| *d <= today),
    }
}

/// A single date at `t[i..]`: `2025-05-03`, `5/3`, `5/3/2025`, `may 3 [2025]`, `may 3rd`, `3 may [2025]`,
/// `the 3rd of may`. Returns it and the number of tokens used.
pub fn date_at(t: &[String], i: usize, today: NaiveDate) -> Option<(NaiveDate, usize)> {
    let w = |k: usize| t.get(i + k).map_or("", String::as_str);
    let first = w(0);
    if let Ok(d) = NaiveDate::parse_from_str(first, "%Y-%m-%d") {
        return Some((d, 1));
    }
    if first.contains('/') {
        let parts: Vec<&str> = first.split('/').collect();
        let m = parts.first()?.parse::<u32>().ok()?;
        let d = parts.get(1)?.parse::<u32>().ok()?;
        let y = match parts.get(2) {
            Some(y) if y.len() == 2 => Some(2000 + y.parse::<i32>().ok()?),
            Some(y) => Some(year_of(y)?),
            None => None,
        };
        return month_day(m, d, y, today).map(|d| (d, 1));
    }
    if first == "the"
        && let Some(day) = day_of(w(1))
    {
        // "the 3rd of may [last year]"
        let k = if w(2) == "of" { 3 } else { 2 };
        if let Some(m) = month_index(w(k)) {
            let y = year_after(t, i + k + 1, today);
            return month_day(m, day, y.map(|y| y.0), today)
                .map(|d| (d, k + 1 + y.map_or(0, |y| y.1)));
        }
        // "since the 1st": that day of the most recent month that has it (an ordinal: "the 6" is a count).
        let ordinal = w(1).chars().any(|c| c.is_ascii_alphabetic());
        if ordinal
            && !matches!(
                w(2),
                "quarter" | "qtr" | "half" | "week" | "month" | "year" | "time" | "day"
            )
        {
            let this = NaiveDate::from_ymd_opt(today.year(), today.month(), day);
            let d = match this {
                Some(d) if d <= today => Some(d),
                _ => {
                    let prev = crate::period::add_months(month_start(today), -1);
                    NaiveDate::from_ymd_opt(prev.year(), prev.month(), day)
                }
            };
            return d.map(|d| (d, 2));
        }
        return None;
    }
    if let Some(m) = month_index(first)
        && let Some(day) = day_of(w(1))
    {
        // "may 3 2025" — but not "may 2025" (a month) nor "march 14 days" (handled by the caller's order).
        if w(1).len() <= 4 {
            let y = year_after(t, i + 2, today);
            return month_day(m, day, y.map(|y| y.0), today).map(|d| (d, 2 + y.map_or(0, |y| y.1)));
        }
    }
    if let Some(day) = day_of(first) {
        let k = if w(1) == "of" { 2 } else { 1 };
        if let Some(m) = month_index(w(k)) {
            let y = year_after(t, i + k + 1, today);
            return month_day(m, day, y.map(|y| y.0), today)
                .map(|d| (d, k + 1 + y.map_or(0, |y| y.1)));
        }
    }
    None
}

/// "All time" starts at the first day with data; the handler fills it in. Until then, a far past date.
fn all_time(today: NaiveDate) -> Period {
    Period::new(
        NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid"),
        today,
        Kind::AllTime,
    )
}

fn to_date(unit: &str, today: NaiveDate) -> Option<Period> {
    Some(match unit {
        "week" | "wk" => Period::week_of(today).clip(today),
        "month" => Period::month_of(today).clip(today),
        "quarter" | "qtr" => Period::quarter_of(today).clip(today),
        "year" | "yr" => Period::year(today.year()).clip(today),
        _ => return None,
    })
}

fn quarter_word(w: &str) -> Option<u32> {
    match w {
        "q1" | "first" | "1st" => Some(1),
        "q2" | "second" | "2nd" => Some(2),
        "q3" | "third" | "3rd" => Some(3),
        "q4" | "fourth" | "4th" => Some(4),
        _ => None,
    }
}

/// A named period at `t[i..]` (relative words, month, quarter, year, to-date forms). Returns it, the tokens
/// used and whether it is in the future.
fn named_at(
    t: &[String],
    caps: &[bool],
    i: usize,
    today: NaiveDate,
) -> Option<(Period, usize, bool)> {
    let w = |k: usize| t.get(i + k).map_or("", String::as_str);
    let prev = if i > 0 { t[i - 1].as_str() } else { "" };
    match w(0) {
        "today" | "tonight" => return Some((Period::day(today), 1, false)),
        "yesterday" => return Some((Period::day(today - Duration::days(1)), 1, false)),
        "wtd" => return Some((to_date("week", today)?, 1, false)),
        "mtd" => return Some((to_date("month", today)?, 1, false)),
        "qtd" => return Some((to_date("quarter", today)?, 1, false)),
        "ytd" => return Some((to_date("year", today)?, 1, false)),
        "lifetime" | "ever" | "alltime" => return Some((all_time(today), 1, false)),
        "fortnight" | "fortnite" => {
            return Some((
                Period::new(today - Duration::days(13), today, Kind::Days),
                1,
                false,
            ));
        }
        _ => {}
    }
    if w(0) == "all" && w(1) == "time" {
        return Some((all_time(today), 2, false));
    }
    if w(0) == "since" && matches!(w(1), "forever" | "the") && w(2) == "beginning" {
        return Some((all_time(today), 3, false));
    }
    // the start / beginning of the year (month, quarter, week): this one, for "since"
    if matches!(w(0), "start" | "beginning") && w(1) == "of" {
        let k = if matches!(w(2), "the" | "this") { 3 } else { 2 };
        if let Some(p) = to_date(w(k), today) {
            return Some((p, k + 1, false));
        }
        // "the start of April": April, so that "since" takes its first day.
        return named_at(t, caps, i + k, today).map(|(p, n, f)| (p, k + n, f));
    }
    // week / month / quarter / year to date
    if w(1) == "to" && w(2) == "date" {
        return to_date(w(0), today).map(|p| (p, 3, false));
    }
    // the day before yesterday
    if w(0) == "day" && w(1) == "before" && w(2) == "yesterday" {
        return Some((Period::day(today - Duration::days(2)), 3, false));
    }
    // this / last / next / past / previous / prior <unit> | last N <units>
    if matches!(
        w(0),
        "this" | "current" | "last" | "past" | "previous" | "prior" | "next" | "the"
    ) {
        let rel = w(0);
        // "the last 3 months", "the past week"
        if rel == "the" {
            return named_at(t, caps, i + 1, today).map(|(p, n, f)| (p, n + 1, f));
        }
        let n1 = match w(1) {
            "couple" => Some(2),
            "few" => Some(3),
            other => number_word(other),
        };
        if let Some(n) = n1.filter(|n| (1..=1000).contains(n)) {
            let unit = w(2);
            let this_week = week_start(today);
            let p = match unit {
                "days" | "day" => Some(Period::new(
                    today - Duration::days(n - 1),
                    today,
                    Kind::Days,
                )),
                "weeks" | "week" | "wks" => Some(Period::new(
                    this_week - Duration::days(7 * n),
                    this_week - Duration::days(1),
                    Kind::Custom,
                )),
                "fortnights" | "fortnight" => Some(Period::new(
                    today - Duration::days(14 * n - 1),
                    today,
                    Kind::Days,
                )),
                "months" | "month" => {
                    let this = month_start(today);
                    Some(Period::new(
                        add_months(this, -(n as i32)),
                        this - Duration::days(1),
                        Kind::Months(n as i32),
                    ))
                }
                "quarters" | "quarter" => {
                    let this = quarter_start(today);
                    Some(Period::new(
                        add_months(this, -3 * n as i32),
                        this - Duration::days(1),
                        Kind::Months(3 * n as i32),
                    ))
                }
                "years" | "year" => Some(Period::new(
                    NaiveDate::from_ymd_opt(today.year() - n as i32, 1, 1)?,
                    NaiveDate::from_ymd_opt(today.year() - 1, 12, 31)?,
                    Kind::Months(12 * n as i32),
                )),
                _ => None,
            };
            if let Some(p) = p {
                return Some((p, 3, rel == "next"));
            }
        }
        // "the last couple of weeks", "past few days"
        if matches!(w(1), "couple" | "few") && w(2) == "of" {
            let n = if w(1) == "couple" { "2" } else { "3" };
            let mut shifted: Vec<String> = t.to_vec();
            shifted[i + 1] = n.to_string();
            shifted.remove(i + 2);
            return named_at(&shifted, caps, i, today).map(|(p, used, f)| (p, used + 1, f));
        }
        if matches!(rel, "last" | "past") && matches!(w(1), "fortnight" | "fortnite") {
            return Some((
                Period::new(today - Duration::days(13), today, Kind::Days),
                2,
                false,
            ));
        }
        let base: i64 = match rel {
            "this" | "current" => 0,
            "next" => 1,
            _ => -1,
        };
        let p = match w(1) {
            "day" => Some(Period::day(today + Duration::days(base))),
            "week" | "wk" => Some(Period::week_of(today + Duration::days(7 * base))),
            "month" => Some(Period::month_of(add_months(today, base as i32))),
            "quarter" | "qtr" => Some(Period::quarter_of(add_months(today, 3 * base as i32))),
            "year" | "yr" => Some(Period::year(today.year() + base as i32)),
            _ => None,
        }?;
        let p = if base == 0 { p.clip(today) } else { p };
        return Some((p, 2, base > 0));
    }
    // Q2 [2024], 2024 Q2, second quarter [of 2024], the 2nd quarter
    if let Some(y) = year_of(w(0))
        && let Some(q) = w(1).starts_with('q').then(|| quarter_word(w(1))).flatten()
    {
        return quarter(q, Some(y), today).map(|(p, f)| (p, 2, f));
    }
    if let Some(q) = quarter_word(w(0)) {
        let (used, ok) = if w(0).starts_with('q') {
            (1, true)
        } else {
            (2, matches!(w(1), "quarter" | "qtr"))
        };
        if ok {
            let (year, extra) =
                year_after(t, i + used, today).map_or((None, 0), |(y, n)| (Some(y), n));
            return quarter(q, year, today).map(|(p, f)| (p, used + extra, f));
        }
    }
    // March [2024], march of 2024
    if let Some(m) = month_index(w(0)) {
        let after = year_after(t, i + 1, today);
        let year = after.map(|(y, _)| y);
        // "may" is also a verb ("may I see…", "we may have…"): not a month before a pronoun or a verb,
        // nor after a pronoun, unless written "May" mid-sentence or followed by a year.
        if w(0) == "may"
            && year.is_none()
            && !caps.get(i).copied().unwrap_or(false)
            && (matches!(
                w(1),
                "i" | "we"
                    | "you"
                    | "be"
                    | "have"
                    | "need"
                    | "want"
                    | "see"
                    | "get"
                    | "not"
                    | "also"
                    | "ask"
                    | "show"
                    | "know"
                    | "help"
                    | "please"
                    | "look"
            ) || matches!(
                prev,
                "i" | "we" | "you" | "it" | "they" | "that" | "this" | "which"
            ) || i == 0 && w(1).is_empty())
        {
            return None;
        }
        let used = 1 + after.map_or(0, |(_, n)| n);
        let y = year.unwrap_or_else(|| {
            if m <= today.month() {
                today.year()
            } else {
                today.year() - 1
            }
        });
        let p = Period::month_of(NaiveDate::from_ymd_opt(y, m, 1)?);
        return Some((p.clip(today), used, p.start > today));
    }
    // 2024, fy2024
    if let Some(y) = year_of(w(0).trim_start_matches("fy")) {
        let p = Period::year(y);
        return Some((p.clip(today), 1, p.start > today));
    }
    None
}

/// The year that qualifies a month or quarter at `t[k..]`: "2024", "of 2024", "last year", "of this year".
fn year_after(t: &[String], k: usize, today: NaiveDate) -> Option<(i32, usize)> {
    let w = |j: usize| t.get(k + j).map_or("", String::as_str);
    let skip = usize::from(matches!(w(0), "of" | "in"));
    if let Some(y) = year_of(w(skip)) {
        return Some((y, skip + 1));
    }
    match (w(skip), w(skip + 1)) {
        ("last" | "previous" | "prior", "year") => Some((today.year() - 1, skip + 2)),
        ("this" | "current", "year") => Some((today.year(), skip + 2)),
        _ => None,
    }
}

fn quarter(q: u32, year: Option<i32>, today: NaiveDate) -> Option<(Period, bool)> {
    let start_of = |y: i32| NaiveDate::from_ymd_opt(y, (q - 1) * 3 + 1, 1);
    let y = year.unwrap_or_else(|| {
        if start_of(today.year()).is_some_and(|s| s <= today) {
            today.year()
        } else {
            today.year() - 1
        }
    });
    let p = Period::quarter_of(start_of(y)?);
    Some((p.clip(today), p.start > today))
}

/// A date or a named period at `t[i..]`, as a period.
fn any_at(
    t: &[String],
    caps: &[bool],
    i: usize,
    today: NaiveDate,
) -> Option<(Period, usize, bool)> {
    if let Some((d, n)) = date_at(t, i, today) {
        return Some((Period::day(d), n, d > today));
    }
    named_at(t, caps, i, today)
}

const RANGE_JOIN: &[&str] = &["to", "and", "through", "thru", "until", "till", "-"];

/// Every period the tokens name, in order.
pub fn find(t: &[String], caps: &[bool], today: NaiveDate) -> Vec<Found> {
    // In a comparison ("compare Q1 to Q4", "March vs April") "to" and "and" separate two periods.
    let comparing = t.iter().any(|w| {
        matches!(
            w.as_str(),
            "compare"
                | "compared"
                | "comparing"
                | "comparison"
                | "vs"
                | "versus"
                | "against"
                | "than"
        )
    }) || t
        .windows(2)
        .any(|p| p[0] == "same" && matches!(p[1].as_str(), "period" | "time"));
    let mut out: Vec<Found> = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let w = t[i].as_str();
        // "vs last", "vs the previous": the period before the first one, of the same kind, whole.
        if comparing && let Some(first) = out.first().map(|f: &Found| f.period) {
            if matches!(w, "last" | "previous" | "prior" | "before")
                && !matches!(t.get(i + 1).map(String::as_str), Some("period" | "periods"))
                && !(w == "before" && i > 0 && matches!(t[i - 1].as_str(), "period" | "periods"))
                && named_at(t, caps, i, today).is_none()
            {
                out.push(Found {
                    period: whole_before(&first),
                    from: i,
                    to: i + 1,
                    future: false,
                });
                i += 1;
                continue;
            }
            // "the same period last year", "same time a year ago", "same days last month"
            if w == "same"
                && let Some((p, used)) = same_period(t, i + 1, &first)
            {
                out.push(Found {
                    period: p,
                    from: i,
                    to: i + 1 + used,
                    future: false,
                });
                i += 1 + used;
                continue;
            }
        }
        // from A to B / between A and B / A to B / A - B (A and B dates or named periods)
        let opener = matches!(w, "from" | "between");
        let a_at = if opener { i + 1 } else { i };
        // "may 1-7 [2025]": a day range within one month.
        if let Some(m) = month_index(w)
            && let Some((d1, d2)) = t.get(i + 1).and_then(|x| x.split_once('-'))
            && let (Some(d1), Some(d2)) = (day_of(d1), day_of(d2))
        {
            let y = year_after(t, i + 2, today);
            if let (Some(a), Some(b)) = (
                month_day(m, d1, y.map(|y| y.0), today),
                month_day(m, d2, y.map(|y| y.0), today),
            ) && a <= b
            {
                let used = 2 + y.map_or(0, |y| y.1);
                out.push(Found {
                    period: Period::new(a, b, Kind::Custom).clip(today),
                    from: i,
                    to: i + used,
                    future: a > today,
                });
                i += used;
                continue;
            }
        }
        if let Some((a, used_a, fa)) = any_at(t, caps, a_at, today) {
            let j = a_at + used_a;
            let join = t.get(j).map_or("", String::as_str);
            if RANGE_JOIN.contains(&join)
                && let Some((b, used_b, fb)) = any_at(t, caps, j + 1, today)
                // In a comparison "to"/"and" separate two named periods ("Q1 to Q4"), but two dates
                // still make a range ("May 1 to May 15 with April 1 to April 15").
                && (a.kind == Kind::Day
                    && b.kind == Kind::Day
                    && !matches!(t[a_at].as_str(), "today" | "yesterday")
                    && (opener || join != "and")
                    || !comparing && (opener || join != "and")
                    || comparing && w == "from")
            {
                // "from the 1st to the 15th of may": the start borrows the end's month.
                let a = if t[a_at] == "the" && used_a == 2 && b.kind == Kind::Day {
                    day_of(&t[a_at + 1])
                        .and_then(|d| NaiveDate::from_ymd_opt(b.start.year(), b.start.month(), d))
                        .map_or(a, Period::day)
                } else {
                    a
                };
                let (s, e) = if a.start <= b.end {
                    (a.start, b.end)
                } else {
                    (b.start, a.end)
                };
                out.push(Found {
                    period: Period::new(s, e, Kind::Custom).clip(today),
                    from: i,
                    to: j + 1 + used_b,
                    future: fa && fb,
                });
                i = j + 1 + used_b;
                continue;
            }
            if opener
                && w == "from"
                && let Some(m) = month_of_day_range(t, a_at, used_a, today)
            {
                out.push(m);
                i = m.to;
                continue;
            }
        }
        if (w == "since" || w == "after")
            && let Some((p, used, _)) = any_at(t, caps, i + 1, today)
        {
            let start = if w == "after" && p.kind == Kind::Day {
                p.end + Duration::days(1)
            } else {
                p.start
            };
            out.push(Found {
                period: Period::new(start, today, Kind::Custom),
                from: i,
                to: i + 1 + used,
                future: start > today,
            });
            i += 1 + used;
            continue;
        }
        let found = any_at(t, caps, i, today);
        if let Some((p, used, future)) = found {
            out.push(Found {
                period: p,
                from: i,
                to: i + used,
                future,
            });
            i += used;
            continue;
        }
        i += 1;
    }
    // "last 30 days vs previous 30 days": the second is the one before the first.
    if comparing && out.len() >= 2 && out[1].period == out[0].period {
        out[1].period = out[0].period.previous();
    }
    out
}

/// The whole period of the same kind before `p` ("this month vs last": all of last month).
fn whole_before(p: &Period) -> Period {
    match p.kind {
        Kind::Day => Period::day(p.start - Duration::days(1)),
        Kind::Week => Period::week_of(p.start - Duration::days(7)),
        Kind::Month => Period::month_of(add_months(p.start, -1)),
        Kind::Quarter => Period::quarter_of(add_months(p.start, -3)),
        Kind::Year => Period::year(p.start.year() - 1),
        _ => p.previous(),
    }
}

/// After "same": `period|time|days|point` then `last year`, `a year ago`, `the year before`, `last month`….
/// Returns `p` shifted back by that unit, and the tokens used.
fn same_period(t: &[String], k: usize, p: &Period) -> Option<(Period, usize)> {
    let w = |j: usize| t.get(k + j).map_or("", String::as_str);
    if !matches!(
        w(0),
        "period" | "time" | "days" | "point" | "dates" | "month" | "week" | "quarter" | "day"
    ) {
        return None;
    }
    let (unit, used) = match (w(1), w(2), w(3)) {
        ("last" | "previous" | "prior", u, _) => (u, 3),
        ("a" | "one", u, "ago") => (u, 4),
        ("the", u, "before") => (u, 4),
        ("in" | "of", "last" | "previous" | "prior", u) => (u, 4),
        _ => return None,
    };
    let shift = |months: i32| {
        Period::new(
            add_months(p.start, months),
            add_months(p.end, months),
            Kind::Custom,
        )
    };
    let q = match unit {
        "year" | "yr" => shift(-12),
        "quarter" => shift(-3),
        "month" => shift(-1),
        "week" => Period::new(
            p.start - Duration::days(7),
            p.end - Duration::days(7),
            Kind::Custom,
        ),
        _ => return None,
    };
    Some((q, used))
}

/// "from may 3 to 9": a day range within one month.
fn month_of_day_range(t: &[String], a_at: usize, used_a: usize, today: NaiveDate) -> Option<Found> {
    let (a, _) = date_at(t, a_at, today)?;
    let j = a_at + used_a;
    if !RANGE_JOIN.contains(&t.get(j)?.as_str()) {
        return None;
    }
    let day = day_of(t.get(j + 1)?)?;
    let b = NaiveDate::from_ymd_opt(a.year(), a.month(), day)?;
    (b >= a).then(|| Found {
        period: Period::new(a, b, Kind::Custom).clip(today),
        from: a_at - 1,
        to: j + 2,
        future: a > today,
    })
}
