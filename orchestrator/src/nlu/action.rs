//! The parameters of an action request: who an e-mail goes to and what period it summarises, a task's
//! title and due date, which workflow and how often. Pure: text, today and the catalogue in, a request out.
//! Titles keep the user's own capitalisation, so they are cut from the question as written.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use serde::Serialize;

use super::link::{self, Catalog};
use super::{CustomerRef, Metric, Term, periods, scalar_metric, scan_terms, tokens};
use crate::period::{Kind, Period, add_months, month_end, month_start, week_start};

/// Who an e-mail is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Recipient {
    /// Nobody named.
    None,
    /// "me", "myself": the asking user.
    Me,
    Address(String),
    /// A customer named in the question, by name or e-mail.
    Customer(CustomerRef),
    /// Someone named without an address we know ("my accountant", "Bob").
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRequest {
    /// send_email | create_task | run_workflow | update_record (not supported)
    pub kind: &'static str,
    pub to: Recipient,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<NaiveDate>,
    /// weekly_summary | sync_all
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<&'static str>,
    /// daily | weekly | monthly
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cadence: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_period")]
    pub period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
}

fn ser_period<S: serde::Serializer>(p: &Option<Period>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => serde::Serialize::serialize(
            &serde_json::json!({"start": p.start.to_string(), "end": p.end.to_string()}),
            s,
        ),
        None => s.serialize_none(),
    }
}

/// Words that state a schedule, and the cadence each means.
fn cadence(text: &str) -> Option<&'static str> {
    let t = format!(" {text} ");
    let any = |ps: &[&str]| ps.iter().any(|p| t.contains(&format!(" {p} ")));
    if any(&[
        "every day",
        "each day",
        "every morning",
        "every evening",
        "every night",
        "daily",
        "each morning",
    ]) {
        Some("daily")
    } else if any(&[
        "every month",
        "each month",
        "monthly",
        "first of every month",
    ]) {
        Some("monthly")
    } else if any(&[
        "every week",
        "each week",
        "weekly",
        "every monday",
        "every tuesday",
        "every wednesday",
        "every thursday",
        "every friday",
        "every saturday",
        "every sunday",
        "on mondays",
        "on fridays",
        "mondays",
        "fridays",
    ]) {
        Some("weekly")
    } else {
        None
    }
}

/// "weekly summary" names the workflow; "every week" (or "schedule", "automatically") makes it recur.
fn scheduled(text: &str) -> bool {
    let t = format!(" {text} ");
    cadence(text).is_some()
        && ([
            " every ",
            " each ",
            " schedule ",
            " automatically ",
            " set up ",
            " on mondays ",
        ]
        .iter()
        .any(|p| t.contains(p))
            || !(t.contains(" weekly summary ")
                || t.contains(" weekly report ")
                || t.contains(" weekly digest ")
                || t.contains(" daily summary ")
                || t.contains(" monthly summary ")))
}

/// The request's parameters. `query` is the question as written, `text` its normalised form.
pub fn request(
    kind: &'static str,
    query: &str,
    today: NaiveDate,
    catalog: &Catalog,
) -> ActionRequest {
    let toks = tokens::tokenize(query, catalog);
    let words: Vec<String> = toks.iter().map(|t| t.text.clone()).collect();
    let text = words.join(" ");
    let caps: Vec<bool> = toks.iter().map(|t| t.capitalized).collect();
    let mut taken = vec![false; words.len()];
    let found = periods::find(&words, &caps, today);
    for f in &found {
        taken[f.from..f.to].iter_mut().for_each(|x| *x = true);
    }
    let mut terms: Vec<(Term, usize)> = Vec::new();
    scan_terms(&words, &mut taken, &mut terms, 2);
    let linked = link::link(&toks, &mut taken, catalog);
    scan_terms(&words, &mut taken, &mut terms, 1);
    let has = |t: Term| terms.iter().any(|(x, _)| *x == t);
    let mut req = ActionRequest {
        kind,
        to: Recipient::None,
        title: None,
        due: None,
        workflow: None,
        cadence: None,
        period: found.first().map(|f| f.period),
        metric: scalar_metric(&has),
    };
    match kind {
        "create_task" => {
            let (title, due) = task_title(query, today);
            req.title = Some(title);
            req.due = due;
            req.period = None;
            req.metric = None;
        }
        "send_email" | "run_workflow" => {
            req.to = recipient(query, &words, &toks, linked.customer.clone());
            if kind == "run_workflow" {
                let sync = words.iter().any(|w| {
                    matches!(
                        w.as_str(),
                        "sync" | "resync" | "refresh" | "syncs" | "syncing"
                    )
                }) || text.contains("pull the latest")
                    || text.contains("update my data");
                if sync && !text.contains("summary") && !text.contains("report") {
                    req.workflow = Some("sync_all");
                    req.period = None;
                    req.metric = None;
                } else {
                    req.workflow = Some("weekly_summary");
                    req.cadence = if scheduled(&text) {
                        cadence(&text)
                    } else {
                        None
                    };
                    if req.period.is_none() && req.cadence.is_none() {
                        // The last whole week.
                        let s = week_start(today) - Duration::days(7);
                        req.period = Some(Period::new(s, s + Duration::days(6), Kind::Week));
                    }
                }
            }
        }
        _ => {}
    }
    req
}

/// The recipient: an address written out, "me", a customer the catalogue knows, or someone named.
fn recipient(
    query: &str,
    words: &[String],
    toks: &[tokens::Tok],
    customer: Option<CustomerRef>,
) -> Recipient {
    if let Some(addr) = query
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | '(' | ')'))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .find(|w| is_address(w))
    {
        return Recipient::Address(addr.to_lowercase());
    }
    if let Some(c) = customer {
        return Recipient::Customer(c);
    }
    if words
        .iter()
        .any(|w| matches!(w.as_str(), "me" | "myself" | "my inbox"))
        || query.to_lowercase().contains("my inbox")
    {
        return Recipient::Me;
    }
    // "email my accountant …", "send Bob …": the words after the verb up to what is sent.
    const STOP: &[&str] = &[
        "a",
        "an",
        "the",
        "this",
        "last",
        "my",
        "our",
        "summary",
        "report",
        "revenue",
        "sales",
        "numbers",
        "figures",
        "recap",
        "update",
        "with",
        "about",
        "of",
        "on",
        "for",
        "weekly",
        "monthly",
        "daily",
        "every",
        "each",
        "today",
        "yesterday",
    ];
    let verb = words.iter().position(|w| {
        matches!(
            w.as_str(),
            "email" | "mail" | "send" | "message" | "text" | "notify" | "forward" | "to"
        )
    });
    if let Some(v) = verb {
        let mut name = Vec::new();
        let mut i = v + 1;
        // "my accountant", "our bookkeeper": a role.
        if matches!(words.get(i).map(String::as_str), Some("my" | "our")) {
            let role = words.get(i + 1).cloned().unwrap_or_default();
            if matches!(
                role.as_str(),
                "accountant"
                    | "bookkeeper"
                    | "partner"
                    | "manager"
                    | "team"
                    | "staff"
                    | "wife"
                    | "husband"
                    | "boss"
                    | "investor"
                    | "investors"
                    | "cofounder"
                    | "assistant"
            ) {
                return Recipient::Unknown(format!("{} {role}", words[i]));
            }
        }
        while let Some(t) = toks.get(i) {
            if !t.capitalized || STOP.contains(&t.text.as_str()) {
                break;
            }
            name.push(t.text.clone());
            i += 1;
        }
        if !name.is_empty() {
            return Recipient::Unknown(
                name.iter()
                    .map(|w| capitalise(w))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    Recipient::None
}

/// A plausible e-mail address (the mail server has the last word).
pub fn is_address(w: &str) -> bool {
    let Some((local, domain)) = w.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-'".contains(c))
}

fn capitalise(w: &str) -> String {
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Where a task's title starts: after the last of these in the question.
const TITLE_MARKERS: &[&str] = &[
    "create a task for me to ",
    "a task for me to ",
    "a reminder for me to ",
    "a task for us to ",
    "create a task to ",
    "create a task for ",
    "create a task: ",
    "create a task ",
    "create task to ",
    "create task: ",
    "create task ",
    "add a task to ",
    "add a task: ",
    "add a task for ",
    "add a task ",
    "add task to ",
    "add task: ",
    "add task ",
    "make a task to ",
    "make a task ",
    "new task: ",
    "new task to ",
    "new task ",
    "task to ",
    "task: ",
    "a reminder to ",
    "a reminder for ",
    "a reminder: ",
    "a reminder ",
    "reminder to ",
    "reminder: ",
    "remind me to ",
    "remind me that ",
    "remind me about ",
    "remind me ",
    "remind us to ",
    "remind ",
    "to my to-do list: ",
    "to my todo list: ",
    "to the to-do list: ",
    "to my to do list: ",
    "on my to-do list: ",
    "on my todo list: ",
    "on my list: ",
    "to-do: ",
    "todo: ",
    "to do: ",
    "add to-do ",
    "add todo ",
    "a to-do to ",
    "a todo to ",
    "a to-do: ",
    "a todo: ",
    "a to-do ",
    "a todo ",
    "make a note to ",
    "note to self: ",
    "note to self ",
];

/// The title as written (capitalised, due phrase removed) and the due date.
pub fn task_title(query: &str, today: NaiveDate) -> (String, Option<NaiveDate>) {
    let q = query.trim();
    let lower = q.to_lowercase();
    let start = TITLE_MARKERS
        .iter()
        .filter_map(|m| lower.find(m).map(|i| (i, i + m.len())))
        .min_by_key(|(i, end)| (*i, std::cmp::Reverse(*end)))
        .map_or(0, |(_, end)| end);
    let mut title = q[start..].trim().to_string();
    // "… to my to-do list": the list is where it goes, not what it says.
    for tail in [
        " to my to-do list",
        " to my todo list",
        " to my to do list",
        " to the to-do list",
        " on my to-do list",
        " on my todo list",
        " to my list",
        " on my list",
        " to my tasks",
        " as a task",
    ] {
        if let Some(i) = title.to_lowercase().rfind(tail)
            && i + tail.len() >= title.trim_end_matches(['.', '!', '?']).len()
        {
            title.truncate(i);
        }
    }
    // "put 'call the roaster' on my list": the verb that files it goes, and then the quotes.
    loop {
        let lower_title = title.to_lowercase();
        let Some(p) = [
            "please ",
            "can you ",
            "could you ",
            "pls ",
            "kindly ",
            "put ",
            "add ",
            "write down ",
            "jot down ",
            "note ",
            "me to ",
            "us to ",
        ]
        .into_iter()
        .find(|p| (start == 0 || p.ends_with("to ")) && lower_title.starts_with(p)) else {
            break;
        };
        title = title[p.len()..].to_string();
    }
    let mut title = title
        .trim()
        .trim_end_matches(['.', '!', '?', ','])
        .trim_matches(['"', '\'', '\u{201c}', '\u{201d}'])
        .trim()
        .to_string();
    // The due phrase: the earliest suffix that reads as a date.
    let mut due = None;
    let words: Vec<&str> = title.split_whitespace().collect();
    for i in 1..words.len() {
        if let Some(d) = due_date(&words[i..], today) {
            due = Some(d);
            title = words[..i].join(" ");
            break;
        }
    }
    let title = title
        .trim()
        .trim_end_matches([',', ';', '-'])
        .trim()
        .to_string();
    let title = if title.is_empty() {
        "Follow up".to_string()
    } else {
        capitalise(&title)
    };
    (title.chars().take(200).collect(), due)
}

fn weekday(w: &str) -> Option<Weekday> {
    Some(match w {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" | "tues" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" | "thurs" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// A due date written as the whole of `words` ("by Friday", "tomorrow", "on June 20", "next week",
/// "in 3 days", "by the end of the month").
fn due_date(words: &[&str], today: NaiveDate) -> Option<NaiveDate> {
    let w: Vec<String> = words
        .iter()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let mut rest: &[String] = &w;
    // A due phrase starts with one of these (or is a bare day word).
    let lead = rest.first()?.as_str();
    if matches!(lead, "by" | "on" | "due" | "before" | "until" | "for") {
        rest = &rest[1..];
    } else if !matches!(
        lead,
        "tomorrow" | "today" | "tonight" | "next" | "this" | "in" | "end" | "eod" | "eow"
    ) && weekday(lead).is_none()
    {
        return None;
    }
    let rest: Vec<&str> = rest
        .iter()
        .map(String::as_str)
        .filter(|w| !matches!(*w, "the" | "of"))
        .collect();
    let next_weekday = |wd: Weekday, skip_week: bool| {
        let mut d = today + Duration::days(1);
        while d.weekday() != wd {
            d += Duration::days(1);
        }
        if skip_week && d < week_start(today) + Duration::days(7) {
            d += Duration::days(7);
        }
        d
    };
    match rest.as_slice() {
        ["today" | "tonight" | "eod"] => Some(today),
        ["tomorrow"] => Some(today + Duration::days(1)),
        ["next", "week"] => Some(week_start(today) + Duration::days(7)),
        ["end", "week"] | ["eow"] | ["this", "week"] => Some(week_start(today) + Duration::days(6)),
        ["end", "month"] | ["this", "month"] => Some(month_end(today)),
        ["next", "month"] => Some(month_end(today) + Duration::days(1)),
        ["in", n, unit] => {
            let n: i64 = n.parse().ok().or_else(|| super::lexicon::number_word(n))?;
            let days = match unit.trim_end_matches('s') {
                "day" => n,
                "week" => 7 * n,
                _ => return None,
            };
            (0..=366)
                .contains(&days)
                .then(|| today + Duration::days(days))
        }
        ["next", d] => weekday(d).map(|wd| next_weekday(wd, true)),
        ["this", d] | [d] if weekday(d).is_some() => weekday(d).map(|wd| next_weekday(wd, false)),
        // "the 1st", "the 20th": the next such day of a month.
        [d] if d
            .trim_end_matches(['s', 't', 'n', 'd', 'r', 'h'])
            .parse::<u32>()
            .is_ok() =>
        {
            let n: u32 = d
                .trim_end_matches(['s', 't', 'n', 'd', 'r', 'h'])
                .parse()
                .ok()?;
            if !(1..=31).contains(&n) {
                return None;
            }
            let mut m = month_start(today);
            for _ in 0..13 {
                if let Some(x) = m.with_day(n)
                    && x >= today
                {
                    return Some(x);
                }
                m = add_months(m, 1);
            }
            None
        }
        _ => {
            // A written date ("June 20", "2025-06-20", "the 20th"): the period grammar reads it.
            let ws: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let caps = vec![false; ws.len()];
            let found = periods::find(&ws, &caps, today);
            let f = found.first()?;
            (found.len() == 1 && f.from == 0 && f.to == ws.len() && f.period.days() == 1)
                .then_some(f.period.start)
                .map(|d| {
                    // A due date lies ahead: "June 30" read as last year's, or "June 20" said in
                    // December, means the next one.
                    let mut d = d;
                    while d < today
                        && let Some(next) = d.with_year(d.year() + 1)
                    {
                        d = next;
                    }
                    d
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn task_titles_keep_the_words_and_lose_the_frame() {
        let today = d("2025-06-15"); // a Sunday
        let t = |q: &str| task_title(q, today);
        assert_eq!(
            t("Create a task to reorder Ethiopia Yirgacheffe beans"),
            ("Reorder Ethiopia Yirgacheffe beans".into(), None)
        );
        assert_eq!(
            t("remind me to call the roaster tomorrow"),
            ("Call the roaster".into(), Some(d("2025-06-16")))
        );
        assert_eq!(
            t("Add a task: restock paper filters by Friday."),
            ("Restock paper filters".into(), Some(d("2025-06-20")))
        );
        assert_eq!(
            t("please add \"email the landlord\" to my to-do list"),
            ("Email the landlord".into(), None)
        );
        assert_eq!(
            t("create a task to check the grinder stock in 3 days"),
            ("Check the grinder stock".into(), Some(d("2025-06-18")))
        );
        assert_eq!(
            t("Create a task to pay the roaster invoice by the end of the month"),
            ("Pay the roaster invoice".into(), Some(d("2025-06-30")))
        );
        assert_eq!(
            t("Can you create a task for me to order more 12oz bags next week"),
            ("Order more 12oz bags".into(), Some(d("2025-06-16")))
        );
        assert_eq!(
            t("put \"update the website photos\" on my to-do list"),
            ("Update the website photos".into(), None)
        );
        assert_eq!(
            t("make a task to reorder Colombian beans due June 30"),
            ("Reorder Colombian beans".into(), Some(d("2025-06-30")))
        );
        assert_eq!(
            t("add a reminder to pay the rent on the 1st"),
            ("Pay the rent".into(), Some(d("2025-07-01")))
        );
        assert_eq!(
            t("new task: order more cups on June 20"),
            ("Order more cups".into(), Some(d("2025-06-20")))
        );
        // "for" that is not a date stays in the title.
        assert_eq!(
            t("create a task for the summer menu"),
            ("The summer menu".into(), None)
        );
    }

    #[test]
    fn addresses() {
        assert!(is_address("ava.smith@example.com"));
        assert!(!is_address("ava@localhost"));
        assert!(!is_address("@example.com"));
        assert!(!is_address("a@b..com."));
    }
}
