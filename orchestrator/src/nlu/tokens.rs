//! The normalised token stream: lower case, punctuation out (but what dates, amounts and e-mails need),
//! possessives and apostrophes dropped, hyphenated words split, and one-edit typos corrected towards the
//! closed vocabulary only.

use super::lexicon::{self, MONTHS};
use super::link::{Catalog, singular};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tok {
    /// The normalised word.
    pub text: String,
    /// Written with a capital letter (names); the question's first word only when it is not a known word.
    pub capitalized: bool,
    /// The word as written, when a typo was corrected.
    pub corrected_from: Option<String>,
}

fn split_word(w: &str) -> Vec<String> {
    let w = w.trim_matches(|c| matches!(c, '.' | '-' | '/' | '\'' | '+' | '_'));
    if w.is_empty() {
        return vec![];
    }
    if w.contains('@') {
        return vec![w.to_string()];
    }
    let w = w
        .strip_suffix("'s")
        .or_else(|| w.strip_suffix("s'"))
        .map_or_else(|| w.to_string(), str::to_string);
    let w = w.replace('\'', "");
    // Dates (2025-03-14) keep their hyphens; words ("year-to-date", "best-selling") are split.
    if w.contains('-') && !w.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return w
            .split('-')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
    }
    // "5pm." or "q1." keep; a trailing dot from the sentence is gone already.
    if w.contains('.') && !w.chars().any(|c| c.is_ascii_digit()) {
        return w
            .split('.')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
    }
    vec![w]
}

/// Tokens of `query`, typos corrected against the lexicon and `catalog`.
pub fn tokenize(query: &str, catalog: &Catalog) -> Vec<Tok> {
    let cleaned: String = query
        .chars()
        .map(|c| match c {
            '\u{2019}' | '\u{2018}' => '\'',
            c if c.is_alphanumeric()
                || matches!(c, '-' | '@' | '.' | '$' | '_' | '+' | '/' | '\'') =>
            {
                c
            }
            _ => ' ',
        })
        .collect();
    let mut out = Vec::new();
    for (i, raw) in cleaned.split_whitespace().enumerate() {
        // The first word is capitalised anyway; it counts as a name only when it is no word we know.
        let cap = raw.chars().next().is_some_and(char::is_uppercase)
            && (i > 0 || !lexicon::is_known(&raw.to_lowercase()));
        for w in split_word(&raw.to_lowercase()) {
            // A capitalised word mid-sentence may be a name: only a direct one-edit typo is corrected
            // ("Floers", "Febuary"), never through a plural ("Hanks" is not a plural of "hand").
            let (text, corrected_from) = correct(&w, catalog, !(cap && i > 0));
            out.push(Tok {
                text,
                capitalized: cap,
                corrected_from,
            });
        }
    }
    out
}

/// Words typos are corrected towards: the lexicon's words, months and period words.
fn static_targets() -> &'static [String] {
    static T: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut v: Vec<String> = lexicon::PHRASES
            .iter()
            .flat_map(|(p, _)| p.split(' '))
            .chain(MONTHS.iter().copied())
            .chain(lexicon::PERIOD_WORDS.iter().copied())
            // Function words too ("recieved" → "received"): corrected, they stop being mistaken for names.
            .chain(lexicon::FILLER.iter().copied().filter(|w| w.len() >= 5))
            .filter(|w| w.len() >= 4)
            .map(str::to_string)
            .collect();
        v.sort();
        v.dedup();
        v
    })
}

/// One edit (two for long words) towards a single closest known word with the same first letter; known
/// and short words stay.
fn correct(w: &str, catalog: &Catalog, plurals: bool) -> (String, Option<String>) {
    // Short words are corrected towards the tenant's words only when their letters are swapped ("aira"
    // → "aria"): "pick" is not a typo of a product's "pack".
    let empty = Catalog::default();
    let names = if w.len() >= 5 { catalog } else { &empty };
    let (c, from) = correct_word(w, w.len(), names);
    if from.is_some() {
        return (c, from);
    }
    if w.len() == 4 {
        let (c, from) = correct_word(w, w.len(), catalog);
        if from.is_some() && same_letters(&c, w) {
            return (c, from);
        }
    }
    // A plural of a typo ("grnders"): correct its singular, with the word's own length rules; for a
    // capitalised word only when the letters are merely swapped ("Kettels", not "Hanks" → "hand").
    let one = singular(w);
    if one != w {
        let (c, from) = correct_word(&one, w.len(), names);
        if from.is_some() && (plurals || same_letters(&c, &one)) {
            return (c, Some(w.to_string()));
        }
    }
    (w.to_string(), None)
}

fn correct_word(w: &str, len: usize, catalog: &Catalog) -> (String, Option<String>) {
    if len < 3
        || !w.chars().all(|c| c.is_ascii_alphabetic())
        || lexicon::is_known(w)
        || catalog.knows(w)
    {
        return (w.to_string(), None);
    }
    let max = if len >= 8 { 2 } else { 1 };
    // A three-letter word is only a typo of a four-letter one ("wek", "mnth" → "week", "month").
    let min_target = if len == 3 { 4 } else { 0 };
    let mut best = usize::MAX;
    let mut cands: Vec<&str> = Vec::new();
    for t in static_targets()
        .iter()
        .map(String::as_str)
        .chain(catalog.words())
    {
        // Typos keep the first letter; without that rule real words turn into others ("tears" → "years").
        if t.len().abs_diff(w.len()) > max
            || t.len() < min_target
            || t.as_bytes()[0] != w.as_bytes()[0]
        {
            continue;
        }
        let d = strsim::osa_distance(w, t);
        if d == 0 || d > max || d > best {
            continue;
        }
        if d < best {
            best = d;
            cands.clear();
        }
        if !cands.iter().any(|c| singular(c) == singular(t)) {
            cands.push(t);
        }
    }
    // Between equally close words, swapped letters ("untis") are the likelier typo.
    if cands.len() > 1 {
        let anagrams: Vec<&str> = cands
            .iter()
            .copied()
            .filter(|c| same_letters(c, w))
            .collect();
        if anagrams.len() == 1 {
            cands = anagrams;
        }
    }
    // "faild": "failed" and "fail" mean the same.
    if cands.len() > 1
        && let Some(t0) = lexicon::term_of(cands[0])
        && cands.iter().all(|c| lexicon::term_of(c) == Some(t0))
    {
        cands.truncate(1);
    }
    match cands.as_slice() {
        [t] => (t.to_string(), Some(w.to_string())),
        _ => (w.to_string(), None),
    }
}

/// The same letters in another order: a typo that swapped letters.
fn same_letters(a: &str, b: &str) -> bool {
    let sorted = |x: &str| {
        let mut v: Vec<char> = x.chars().collect();
        v.sort_unstable();
        v
    };
    sorted(a) == sorted(b)
}
