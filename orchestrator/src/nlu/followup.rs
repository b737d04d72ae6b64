//! Follow-ups in a conversation: "and the month before?", "only Stripe", "what about orders?", "last
//! year?". An elliptical question keeps what the previous question asked and changes only what it names.

use super::{Conversation, Intent, Plan};

/// Whether `query` reads as a continuation of the previous question rather than a question of its own.
pub fn elliptical(query: &str) -> bool {
    let q = query.trim().to_lowercase();
    let q = q.trim_end_matches(['?', '.', '!']).trim();
    const STARTS: &[&str] = &[
        "and ",
        "what about",
        "how about",
        "only ",
        "just ",
        "same ",
        "vs ",
        "versus ",
        "compared to",
        "compare that",
        "but ",
        "now ",
        "then ",
        "and the",
        "the month before",
        "the week before",
        "the year before",
        "the quarter before",
        "the day before",
        "the one before",
        "the previous",
        "before that",
        "by ",
        "broken down",
        "break it down",
        "for ",
        "in ",
        "on ",
        "from ",
        "excluding",
        "without ",
        "with ",
    ];
    STARTS.iter().any(|s| q.starts_with(s) || q == s.trim()) || q.split_whitespace().count() <= 3
}

/// The previous plan with what `new` names replaced. `None` when the two do not combine (the previous was
/// not a question about numbers, or the new one is a whole question of another kind).
pub fn merge(prev: &Plan, new: &Plan) -> Option<Plan> {
    if prev.intent != Intent::Metrics {
        return None;
    }
    let data_like = new.intent == Intent::Metrics
        || new.intent == Intent::Conversation
            && matches!(
                new.conversation,
                Some(Conversation::OutOfScope) | Some(Conversation::Unintelligible) | None
            );
    if !data_like {
        return None;
    }
    let text = format!(" {} ", new.normalized);
    let mut m = prev.clone();
    m.normalized = new.normalized.clone();
    m.corrections = new.corrections.clone();
    m.unresolved = new.unresolved.clone();
    m.ambiguous = new.ambiguous.clone();
    let mut changed = false;
    if new.metric_stated {
        m.metric = new.metric;
        m.ranking = new.ranking;
        m.metric_stated = true;
        changed = true;
    }
    let before = [
        " before ",
        " previous ",
        " prior ",
        " preceding ",
        " earlier ",
    ]
    .iter()
    .any(|w| text.contains(w));
    if new.intent == Intent::Metrics && !new.default_period && !new.periods.is_empty() {
        m.periods = new.periods.clone();
        m.default_period = false;
        m.future = new.future;
        if new.comparison.is_some() {
            m.comparison = new.comparison;
        }
        changed = true;
    } else if before && let Some(p) = prev.periods.first() {
        m.periods = vec![p.previous()];
        m.comparison = None;
        m.default_period = false;
        changed = true;
    }
    if new.filters.source.is_some() {
        m.filters.source = new.filters.source;
        changed = true;
    } else if [" all sources ", " both ", " everything ", " any source "]
        .iter()
        .any(|w| text.contains(w))
    {
        m.filters.source = None;
        changed = true;
    }
    if new.filters.product.is_some() {
        m.filters.product = new.filters.product.clone();
        changed = true;
    }
    if new.filters.customer.is_some() {
        m.filters.customer = new.filters.customer.clone();
        changed = true;
    }
    if new.grain.is_some() {
        m.grain = new.grain;
        changed = true;
    }
    if new.comparison.is_some() && !changed {
        m.comparison = new.comparison;
        changed = true;
    }
    (changed || !new.unresolved.is_empty()).then_some(m)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::nlu::{Catalog, Metric, Source, understand};

    fn plan(q: &str) -> Plan {
        let today: NaiveDate = "2025-06-15".parse().unwrap();
        understand(q, today, &Catalog::new(&[], vec![]))
    }

    #[test]
    fn follow_ups_keep_what_they_do_not_name() {
        let prev = plan("What was my revenue last month?");
        let m = merge(&prev, &plan("and the month before?")).unwrap();
        assert_eq!(m.metric, Some(Metric::Revenue));
        assert_eq!(m.periods[0].start.to_string(), "2025-04-01");
        assert_eq!(m.periods[0].end.to_string(), "2025-04-30");

        let m = merge(&prev, &plan("only Stripe")).unwrap();
        assert_eq!(m.filters.source, Some(Source::Stripe));
        assert_eq!(m.periods[0].start.to_string(), "2025-05-01");

        let m = merge(&prev, &plan("what about orders?")).unwrap();
        assert_eq!(m.metric, Some(Metric::Orders));
        assert_eq!(m.periods[0].start.to_string(), "2025-05-01");

        let m = merge(&prev, &plan("and in March?")).unwrap();
        assert_eq!(m.metric, Some(Metric::Revenue));
        assert_eq!(m.periods[0].start.to_string(), "2025-03-01");

        assert!(elliptical("and the month before?"));
        assert!(elliptical("only Stripe"));
        assert!(!elliptical("What was my revenue last month?"));
        assert!(merge(&plan("hello"), &plan("only stripe")).is_none());
    }
}
