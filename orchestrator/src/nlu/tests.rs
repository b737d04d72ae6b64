use chrono::NaiveDate;

use super::*;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn catalog() -> Catalog {
    let titles: Vec<String> = [
        "Ethiopia Yirgacheffe 12oz",
        "Kenya AA Nyeri 12oz",
        "House Espresso Blend 12oz",
        "Holiday Blend 12oz",
        "Conical Burr Grinder",
        "Hand Grinder",
        "Pour-Over Dripper",
        "Gooseneck Kettle",
        "Gift Card $50",
        "French Press 34oz",
        "Cold Brew Pitcher Packs",
        "Monthly Subscription Box",
        "Barista Workshop Ticket",
        "Paper Filters 100ct",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Catalog::new(
        &titles,
        vec![
            ("ava smith".into(), "ava.smith@example.com".into()),
            ("lucas flores".into(), "lucas.flores@example.com".into()),
            ("olivia adams".into(), "olivia.adams@example.com".into()),
        ],
    )
}

fn plan(q: &str, today: &str) -> Plan {
    understand(q, d(today), &catalog())
}

fn period(q: &str, today: &str) -> (String, String) {
    let p = plan(q, today);
    (p.periods[0].start.to_string(), p.periods[0].end.to_string())
}

#[test]
fn time_expressions() {
    let t = "2025-06-15"; // a Sunday
    let cases = [
        ("revenue last week", "2025-06-02", "2025-06-08"),
        ("revenue this week", "2025-06-09", "2025-06-15"),
        ("revenue wtd", "2025-06-09", "2025-06-15"),
        ("revenue week-to-date", "2025-06-09", "2025-06-15"),
        ("revenue last month", "2025-05-01", "2025-05-31"),
        ("revenue prior month", "2025-05-01", "2025-05-31"),
        ("revenue the previous month", "2025-05-01", "2025-05-31"),
        ("sales so far this month", "2025-06-01", "2025-06-15"),
        ("sales MTD", "2025-06-01", "2025-06-15"),
        ("whats the avg ticket QTD", "2025-04-01", "2025-06-15"),
        ("revenue last quarter", "2025-01-01", "2025-03-31"),
        ("revenue in Q3", "2024-07-01", "2024-09-30"),
        ("revenue in Q2", "2025-04-01", "2025-06-15"),
        (
            "revenue in the second quarter of 2024",
            "2024-04-01",
            "2024-06-30",
        ),
        ("revenue in the 1st quarter", "2025-01-01", "2025-03-31"),
        ("revenue in the last 14 days", "2025-06-02", "2025-06-15"),
        (
            "revenue over the past fortnight",
            "2025-06-02",
            "2025-06-15",
        ),
        ("revenue in the last 3 months", "2025-03-01", "2025-05-31"),
        ("revenue in the last 3 weeks", "2025-05-19", "2025-06-08"),
        ("revenue in March 2024", "2024-03-01", "2024-03-31"),
        ("revenue in March", "2025-03-01", "2025-03-31"),
        ("revenue in July", "2024-07-01", "2024-07-31"),
        ("revenue in 2024", "2024-01-01", "2024-12-31"),
        ("revenue on 2024-04-06", "2024-04-06", "2024-04-06"),
        ("revenue on 3/14", "2025-03-14", "2025-03-14"),
        ("revenue on 3/14/2024", "2024-03-14", "2024-03-14"),
        ("revenue on 14 March 2024", "2024-03-14", "2024-03-14"),
        ("revenue on March 14th", "2025-03-14", "2025-03-14"),
        ("revenue on May 3", "2025-05-03", "2025-05-03"),
        ("revenue ytd", "2025-01-01", "2025-06-15"),
        ("revenue year to date", "2025-01-01", "2025-06-15"),
        ("revenue", "2025-05-17", "2025-06-15"),
        ("how much did I make yesterday", "2025-06-14", "2025-06-14"),
        ("sales between 3/1 and 3/15", "2025-03-01", "2025-03-15"),
        ("sales from March to May", "2025-03-01", "2025-05-31"),
        ("takings since April 1", "2025-04-01", "2025-06-15"),
        ("revenue all time", "1970-01-01", "2025-06-15"),
    ];
    for (q, s, e) in cases {
        assert_eq!(period(q, t), (s.to_string(), e.to_string()), "{q}");
    }
    assert_eq!(
        period("revenue from July 9 to July 14", "2024-11-04"),
        ("2024-07-09".into(), "2024-07-14".into())
    );
    assert_eq!(
        period("customers since January 1", "2025-01-02"),
        ("2025-01-01".into(), "2025-01-02".into())
    );
}

#[test]
fn metrics_from_everyday_words() {
    let t = "2025-06-15";
    let m = |q: &str| plan(q, t).metric;
    let cases = [
        ("What's my revnue last month?", Metric::Revenue),
        ("what did we take in last week", Metric::Revenue),
        ("takings in may", Metric::Revenue),
        ("how'd we do last month", Metric::Revenue),
        ("how many ordres today", Metric::Orders),
        ("number of transactions this week", Metric::Orders),
        ("how many purchases in march", Metric::Orders),
        ("AOV in Q2", Metric::Aov),
        ("average basket size last month", Metric::Aov),
        ("whats the avg ticket QTD", Metric::Aov),
        ("How many units did I sell last week?", Metric::Units),
        ("how many items went out in june", Metric::Units),
        ("How many customers paid yesterday?", Metric::Customers),
        (
            "how many different people bought from us",
            Metric::Customers,
        ),
        ("How many payments did I receive last year?", Metric::Orders),
        ("new custmers this month", Metric::NewCustomers),
        ("first-time buyers in 2024", Metric::NewCustomers),
        (
            "how many repeat customers this year",
            Metric::ReturningCustomers,
        ),
        ("how much money back did we give in june", Metric::Refunds),
        ("refunds last month", Metric::Refunds),
        (
            "How much did I give away in discounts in 2024?",
            Metric::Discounts,
        ),
        ("declined cards this week", Metric::FailedPayments),
        ("failed payments in may", Metric::FailedPayments),
    ];
    for (q, want) in cases {
        assert_eq!(m(q), Some(want), "{q}");
    }
}

#[test]
fn rankings_with_and_without_top() {
    let t = "2025-06-15";
    let r = |q: &str| {
        let p = plan(q, t);
        (p.metric, p.ranking.map(|r| r.n))
    };
    assert_eq!(
        r("which 10 products made the most money during 2024?"),
        (Some(Metric::TopProducts), Some(10))
    );
    assert_eq!(
        r("my 10 best customers this year"),
        (Some(Metric::TopCustomers), Some(10))
    );
    assert_eq!(
        r("who spent the most last month"),
        (Some(Metric::TopCustomers), Some(5))
    );
    assert_eq!(
        r("biggest spenders in 2024"),
        (Some(Metric::TopCustomers), Some(5))
    );
    assert_eq!(
        r("best sellers this quarter"),
        (Some(Metric::TopProducts), Some(5))
    );
    assert_eq!(
        r("top three products by units sold"),
        (Some(Metric::TopProductsByUnits), Some(3))
    );
    assert_eq!(
        r("most popular products last month"),
        (Some(Metric::TopProductsByUnits), Some(5))
    );
    assert_eq!(
        r("Who were my top 3 customers in the last 3 weeks?"),
        (Some(Metric::TopCustomers), Some(3))
    );
}

#[test]
fn breakdowns_and_comparisons() {
    let t = "2025-06-15";
    assert_eq!(
        plan("Revenue by quarter this year", t).grain,
        Some(Grain::Quarter)
    );
    assert_eq!(plan("daily orders this week", t).grain, Some(Grain::Day));
    assert_eq!(plan("sales per month in 2024", t).grain, Some(Grain::Month));
    assert_eq!(
        plan("How did revenue in 2024 compare to the previous period?", t).comparison,
        Some(Comparison::PreviousPeriod)
    );
    let p = plan("how does this month stack up against last month", t);
    assert_eq!(p.comparison, Some(Comparison::NamedPeriods));
    assert_eq!(p.periods.len(), 2);
    assert_eq!(
        plan("revenue this month, up or down?", t).comparison,
        Some(Comparison::PreviousPeriod)
    );
}

#[test]
fn products_and_customers_are_linked() {
    let t = "2025-06-15";
    let p = plan("sales of the kenya in the prior month", t);
    assert_eq!(p.filters.product.as_deref(), Some("Kenya AA Nyeri 12oz"));
    assert_eq!(p.metric, Some(Metric::ProductSales));
    let p = plan("How many House Espresso Blend did I sell in March 2024?", t);
    assert_eq!(
        p.filters.product.as_deref(),
        Some("House Espresso Blend 12oz")
    );
    assert_eq!(p.metric, Some(Metric::Units));
    let p = plan("how many gooseneck kettles did we sell", t);
    assert_eq!(p.filters.product.as_deref(), Some("Gooseneck Kettle"));
    let p = plan("revenue from the monthly subscription box by month", t);
    assert_eq!(
        p.filters.product.as_deref(),
        Some("Monthly Subscription Box")
    );
    assert_eq!(p.grain, Some(Grain::Month));
    let p = plan("grinder sales last month", t);
    assert_eq!(p.filters.product, None);
    assert_eq!(p.ambiguous.len(), 1);
    assert_eq!(p.ambiguous[0].candidates.len(), 2);
    let p = plan("how many orders did we get from Ava Smith", t);
    assert_eq!(
        p.filters.customer.as_ref().map(|c| c.key.as_str()),
        Some("ava.smith@example.com")
    );
    assert_eq!(p.metric, Some(Metric::Orders));
    let p = plan("how much did ava.smith@example.com spend in 2024", t);
    assert!(p.filters.customer.is_some());
    let p = plan("average ticket this month", t);
    assert_eq!(p.filters.product, None, "'ticket' is a word of the lexicon");
    assert_eq!(p.metric, Some(Metric::Aov));
}

#[test]
fn unknown_mentions_are_reported() {
    let t = "2025-06-15";
    let p = plan("sales of unicorn tears last month", t);
    assert_eq!(p.unresolved.len(), 1, "{p:?}");
    assert_eq!(p.unresolved[0].kind, MentionKind::Product);
    assert_eq!(p.unresolved[0].mention, "unicorn tears");
    let p = plan("how many orders from Zelda Fitzgerald this year", t);
    assert_eq!(p.unresolved.len(), 1, "{p:?}");
    assert_eq!(p.unresolved[0].kind, MentionKind::Customer);
    let p = plan("revenue from nobody@nowhere.com", t);
    assert_eq!(p.unresolved[0].kind, MentionKind::Customer);
    // Ordinary words are not mentions.
    for q in [
        "What was my revenue last month?",
        "how much did we make on the website this week",
        "How many customers bought something in the last 3 months?",
        "Show me daily orders this week",
        "How did revenue in the last 30 days compare to the previous period?",
    ] {
        let p = plan(q, t);
        assert!(p.unresolved.is_empty(), "{q}: {:?}", p.unresolved);
    }
}

#[test]
fn intents() {
    let today = d("2025-06-15");
    let c = catalog();
    assert_eq!(understand("hi", today, &c).intent, Intent::Conversation);
    assert_eq!(
        understand("thanks!", today, &c).intent,
        Intent::Conversation
    );
    assert_eq!(
        understand("What can you do?", today, &c).conversation,
        Some(Conversation::Capabilities)
    );
    assert_eq!(
        understand("Find the order where the grinder arrived broken", today, &c).intent,
        Intent::Search
    );
    assert_eq!(
        understand(
            "Email ava@x.com a summary of last month's revenue",
            today,
            &c
        )
        .intent,
        Intent::Action
    );
    assert_eq!(
        understand("Create a task to reorder beans", today, &c).intent,
        Intent::Action
    );
    assert_eq!(
        understand("what is the capital of France", today, &c).conversation,
        Some(Conversation::OutOfScope)
    );
    assert_eq!(
        understand("which customer spent the most this year", today, &c).metric,
        Some(Metric::TopCustomers)
    );
}

#[test]
fn regressions_from_everyday_phrasings() {
    let t = "2025-06-15";
    let p = plan("How does May compare with April?", t);
    assert_eq!(p.comparison, Some(Comparison::NamedPeriods));
    assert_eq!(
        (
            p.periods[0].start.to_string(),
            p.periods[1].start.to_string()
        ),
        ("2025-05-01".into(), "2025-04-01".into())
    );
    let p = plan("How many different people bought from us in April?", t);
    assert_eq!((p.metric, p.comparison), (Some(Metric::Customers), None));
    assert_eq!(period("top ten customers ever", t).0, "1970-01-01");
    assert_eq!(
        period("how many ordres last wek", t),
        ("2025-06-02".into(), "2025-06-08".into())
    );
    // "may" the verb is not a month.
    assert!(plan("may I see revenue", t).default_period);
}

#[test]
fn counts_without_a_metric_word() {
    let t = "2025-06-15";
    assert_eq!(
        plan("How many did we sell last week", t).metric,
        Some(Metric::Units)
    );
    assert_eq!(
        plan("How many classes did Lucas Flores buy in 2024", t).metric,
        Some(Metric::Orders)
    );
    assert_eq!(
        plan("how much did we sell in May", t).metric,
        Some(Metric::Revenue)
    );
    assert_eq!(
        plan("what sold the most last month", t).metric,
        Some(Metric::TopProducts)
    );
}

#[test]
fn qualified_quarters_and_compared_periods() {
    let t = "2025-06-15";
    assert_eq!(
        period("What did we turn over in Q4 last year?", t),
        ("2024-10-01".into(), "2024-12-31".into())
    );
    assert!(
        plan("What did we turn over in Q4 last year?", t)
            .comparison
            .is_none()
    );
    assert_eq!(
        period("sales in march of last year", t),
        ("2024-03-01".into(), "2024-03-31".into())
    );
    let p = plan("Compare revenue in Q1 2025 to Q4 2024", t);
    assert_eq!(p.periods.len(), 2);
    assert_eq!(p.periods[1].start.to_string(), "2024-10-01");
    let p = plan("compare sales between March and April", t);
    assert_eq!(p.periods.len(), 2);
    assert_eq!(
        period("sales from March to May", t),
        ("2025-03-01".into(), "2025-05-31".into())
    );
}

#[test]
fn everyday_comparisons_and_dates() {
    let t = "2025-06-15";
    let two = |q: &str| {
        let p = plan(q, t);
        assert_eq!(p.comparison, Some(Comparison::NamedPeriods), "{q}: {p:?}");
        (p.periods[1].start.to_string(), p.periods[1].end.to_string())
    };
    assert_eq!(
        two("sales this month vs last"),
        ("2025-05-01".into(), "2025-05-31".into())
    );
    assert_eq!(
        two("ytd sales vs same period last year"),
        ("2024-01-01".into(), "2024-06-15".into())
    );
    assert_eq!(
        two("aov mtd vs same time last month"),
        ("2025-05-01".into(), "2025-05-15".into())
    );
    assert_eq!(
        two("did we sell more units last week than the week before"),
        ("2025-05-26".into(), "2025-06-01".into())
    );
    assert_eq!(
        two("how does may compare with april for revenue"),
        ("2025-04-01".into(), "2025-04-30".into())
    );
    assert_eq!(
        period("how much money have we made since the start of the year", t),
        ("2025-01-01".into(), "2025-06-15".into())
    );
    assert_eq!(
        period("how many orders came in since the 1st", t),
        ("2025-06-01".into(), "2025-06-15".into())
    );
    let p = plan("how many orders did we get on the 4th of July last year", t);
    assert_eq!(
        (p.periods.len(), p.periods[0].start.to_string()),
        (1, "2024-07-04".into())
    );
}

#[test]
fn everyday_rankings_mentions_and_small_talk() {
    let t = "2025-06-15";
    let p = plan("whats selling best this week", t);
    assert_eq!(p.metric, Some(Metric::TopProducts));
    let p = plan("who was my number one customer this year", t);
    assert_eq!(
        (p.metric, p.ranking.map(|r| r.n)),
        (Some(Metric::TopCustomers), Some(1))
    );
    for q in [
        "how many espresso machines did we sell in 2024",
        "sales of the Gift Card $100 this year",
        "Bob Loblaw total orders",
        "top customers who bought unicorn tears",
        "Emily Dickinson spend all time",
        "how much did Zelda Fitzgerald pay in May",
    ] {
        let p = plan(q, t);
        assert!(!p.unresolved.is_empty(), "{q}: {p:?}");
        assert_eq!(p.filters.product, None, "{q}");
    }
    assert_eq!(
        plan("faild payments last week", t).metric,
        Some(Metric::FailedPayments)
    );
    let p = plan("refunds on the kenya last year", t);
    assert_eq!(p.metric, Some(Metric::Refunds), "not product sales");
    for q in [
        "thank you so much, that's really helpful",
        "what kind of questions can I ask?",
        "who won the super bowl",
        "how are you today?",
    ] {
        assert_eq!(plan(q, t).intent, Intent::Conversation, "{q}");
    }
    let p = plan("what are the 6 best selling products of all time", t);
    assert_eq!(p.ranking.map(|r| r.n), Some(6));
    assert_eq!(p.periods[0].start.to_string(), "1970-01-01");
    let p = plan("how much did the studio take in last month", t);
    assert!(p.unresolved.is_empty(), "{p:?}");
    assert_eq!(p.metric, Some(Metric::Revenue));
}

#[test]
fn third_probe_regressions() {
    let t = "2025-06-15";
    for q in [
        "how much did john doe spend this year",
        "orders from zachary quinn last month",
        "how many orders did Tom Hanks place",
    ] {
        let p = plan(q, t);
        assert_eq!(
            p.unresolved.first().map(|m| m.kind),
            Some(MentionKind::Customer),
            "{q}: {p:?}"
        );
    }
    let p = plan("how much did lucas spend", t);
    assert_eq!(p.filters.customer, None);
    let p = plan("how much did ava spend", t);
    assert!(p.unresolved.is_empty() || !p.ambiguous.is_empty(), "{p:?}");
    assert_eq!(
        period("revenue from the 1st to the 15th of May", t),
        ("2025-05-01".into(), "2025-05-15".into())
    );
    let p = plan("compare revenue between May 1-7 and May 8-14", t);
    assert_eq!(p.periods.len(), 2, "{p:?}");
    assert_eq!(p.periods[1].start.to_string(), "2025-05-08");
    assert_eq!(
        period("sales 2/29", t),
        ("2024-02-29".into(), "2024-02-29".into())
    );
    assert_eq!(
        period("orders past fortnite", t),
        ("2025-06-02".into(), "2025-06-15".into())
    );
    let p = plan("sales last 30 days vs previous 30 days", t);
    assert_eq!(p.periods[1].start.to_string(), "2025-04-17");
    assert_eq!(
        plan("is aov going up", t).comparison,
        Some(Comparison::PreviousPeriod)
    );
    assert_eq!(
        plan("how do you calculate revenue", t).conversation,
        Some(Conversation::Definition)
    );
    assert_eq!(
        plan("can you write me a poem about coffee", t).conversation,
        Some(Conversation::OutOfScope)
    );
    assert_eq!(
        plan("filters sold last week", t).metric,
        Some(Metric::Units)
    );
    assert_eq!(
        plan("how much did the Kenay make in may", t)
            .filters
            .product
            .as_deref(),
        Some("Kenya AA Nyeri 12oz")
    );
}

#[test]
fn fourth_probe_regressions() {
    let t = "2025-06-15";
    assert_eq!(
        plan("How many new customers did we pick up in Q3?", t)
            .filters
            .product,
        None
    );
    assert!(
        plan(
            "How many customers came back for another order this month?",
            t
        )
        .unresolved
        .is_empty()
    );
    assert!(
        plan("can you check revenue for last week", t)
            .unresolved
            .is_empty()
    );
    assert_eq!(
        period("revenue since the start of May", t),
        ("2025-05-01".into(), "2025-06-15".into())
    );
    let p = plan(
        "Compare revenue May 1 to May 15 with April 1 to April 15",
        t,
    );
    assert_eq!(
        (
            p.periods[0].end.to_string(),
            p.periods[1].start.to_string(),
            p.periods[1].end.to_string()
        ),
        (
            "2025-05-15".into(),
            "2025-04-01".into(),
            "2025-04-15".into()
        )
    );
    assert_eq!(
        plan("are sales up this month?", t).comparison,
        Some(Comparison::PreviousPeriod)
    );
    let p = plan("orders in the last 3 months vs the previous period", t);
    let prev = p.periods[0].previous();
    assert_eq!(prev.start.to_string(), "2024-12-01");
    assert_eq!(
        plan(
            "Please email a revenue summary for Q1 to bob@example.com",
            t
        )
        .intent,
        Intent::Action
    );
    assert_eq!(
        plan("set a reminder to check refunds on Friday", t).action,
        Some("create_task")
    );
    assert_eq!(plan("Refund total", t).metric, Some(Metric::Refunds));
    assert_eq!(
        plan("orders mentioning an allergy", t).intent,
        Intent::Search
    );
    assert_eq!(
        plan("french pres units last year", t)
            .filters
            .product
            .as_deref(),
        Some("French Press 34oz")
    );
    assert_eq!(
        plan("rank my products by revenue last month", t).metric,
        Some(Metric::TopProducts)
    );
    assert_eq!(
        plan("Who was my top customer last month?", t)
            .ranking
            .map(|r| r.n),
        Some(5)
    );
    assert!(!plan("blend revenue in may", t).ambiguous.is_empty());
}

#[test]
fn searches_keep_the_describing_words_and_drop_the_framing() {
    let t = NaiveDate::from_ymd_opt(2025, 6, 15).unwrap();
    let c = Catalog::new(
        &[
            "Conical Burr Grinder".to_string(),
            "Kenya AA Nyeri 12oz".to_string(),
        ],
        vec![("Ruby Taylor".into(), "ruby.taylor@example.com".into())],
    );
    let spec = |q: &str| {
        let p = understand(q, t, &c);
        assert_eq!(p.intent, Intent::Search, "{q}: {p:?}");
        p.search.expect("a search spec")
    };
    assert_eq!(
        spec("Find the order where the grinder arrived broken").words,
        "grinder arrived broken"
    );
    assert_eq!(spec("Which order mentioned a wedding?").words, "wedding");
    assert_eq!(spec("the one for a marriage").words, "marriage");
    let s = spec("dentist's order");
    assert_eq!(s.words, "dentist");
    assert_eq!(s.kinds, ["order", "charge", "refund"]);
    // Typos stay as written: the index, not the metrics vocabulary, decides what they match.
    assert_eq!(spec("find the ordr with the grindr").words, "ordr grindr");
    // A customer named is a filter, a period is a range; neither is a search word.
    let p = understand("find Ruby Taylor's order about the grinder in 2024", t, &c);
    assert_eq!(p.intent, Intent::Search);
    assert_eq!(p.search.unwrap().words, "grinder");
    assert_eq!(
        p.filters.customer.map(|c| c.key),
        Some("ruby.taylor@example.com".to_string())
    );
    assert!(!p.default_period);
    assert_eq!(spec("find the refunds that say damaged").kinds, ["refund"]);
    // Not searches: numbers asked for, or nothing about the data.
    assert_eq!(
        understand("how many grinder orders last week", t, &c).intent,
        Intent::Metrics
    );
    assert_eq!(
        understand("who won the super bowl", t, &c).intent,
        Intent::Conversation
    );
}

#[test]
fn action_requests_in_many_phrasings() {
    use super::action::Recipient;
    let addr = |s: &str| Recipient::Address(s.into());
    // (question, kind, recipient, period start, title, due, workflow, cadence)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<Recipient>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );
    let ava = || {
        Some(Recipient::Customer(CustomerRef {
            name: "Ava Smith".into(),
            key: "ava.smith@example.com".into(),
        }))
    };
    let cases: Vec<Case> = vec![
        (
            "Email ava.smith@example.com a summary of last month's revenue",
            "send_email",
            Some(addr("ava.smith@example.com")),
            Some("2025-05-01"),
            None,
            None,
            None,
            None,
        ),
        (
            "emial ava.smith@example.com the revenue report for last month",
            "send_email",
            Some(addr("ava.smith@example.com")),
            Some("2025-05-01"),
            None,
            None,
            None,
            None,
        ),
        (
            "Send Ava Smith last week's numbers",
            "send_email",
            ava(),
            Some("2025-06-02"),
            None,
            None,
            None,
            None,
        ),
        (
            "please send a summary of Q1 to Bookkeeper@Acme.io",
            "send_email",
            Some(addr("bookkeeper@acme.io")),
            Some("2025-01-01"),
            None,
            None,
            None,
            None,
        ),
        (
            "can you email me yesterday's sales",
            "send_email",
            Some(Recipient::Me),
            Some("2025-06-14"),
            None,
            None,
            None,
            None,
        ),
        (
            "Shoot an email to ava.smith@example.com with May's revenue",
            "send_email",
            Some(addr("ava.smith@example.com")),
            Some("2025-05-01"),
            None,
            None,
            None,
            None,
        ),
        (
            "send my accountant last month's numbers",
            "send_email",
            Some(Recipient::Unknown("my accountant".into())),
            Some("2025-05-01"),
            None,
            None,
            None,
            None,
        ),
        (
            "Create a task to reorder Ethiopia Yirgacheffe beans",
            "create_task",
            None,
            None,
            Some("Reorder Ethiopia Yirgacheffe beans"),
            None,
            None,
            None,
        ),
        (
            "creat a task to check grinder inventory",
            "create_task",
            None,
            None,
            Some("Check grinder inventory"),
            None,
            None,
            None,
        ),
        (
            "remind me to call the roaster tomorrow",
            "create_task",
            None,
            None,
            Some("Call the roaster"),
            Some("2025-06-16"),
            None,
            None,
        ),
        (
            "add a task: restock paper filters by Friday",
            "create_task",
            None,
            None,
            Some("Restock paper filters"),
            Some("2025-06-20"),
            None,
            None,
        ),
        (
            "put \"update the website photos\" on my to-do list",
            "create_task",
            None,
            None,
            Some("Update the website photos"),
            None,
            None,
            None,
        ),
        (
            "add a reminder to pay the rent on the 1st",
            "create_task",
            None,
            None,
            Some("Pay the rent"),
            Some("2025-07-01"),
            None,
            None,
        ),
        (
            "sync all my connectors",
            "run_workflow",
            None,
            None,
            None,
            None,
            Some("sync_all"),
            None,
        ),
        (
            "refresh my data now",
            "run_workflow",
            None,
            None,
            None,
            None,
            Some("sync_all"),
            None,
        ),
        (
            "please sync everything",
            "run_workflow",
            None,
            None,
            None,
            None,
            Some("sync_all"),
            None,
        ),
        (
            "run the weekly summary",
            "run_workflow",
            None,
            Some("2025-06-02"),
            None,
            None,
            Some("weekly_summary"),
            None,
        ),
        (
            "send me the weekly summary every Monday",
            "run_workflow",
            Some(Recipient::Me),
            None,
            None,
            None,
            Some("weekly_summary"),
            Some("weekly"),
        ),
        (
            "email me a summary every week",
            "run_workflow",
            Some(Recipient::Me),
            None,
            None,
            None,
            Some("weekly_summary"),
            Some("weekly"),
        ),
        (
            "set up a daily report to my inbox",
            "run_workflow",
            Some(Recipient::Me),
            None,
            None,
            None,
            Some("weekly_summary"),
            Some("daily"),
        ),
        (
            "schedule a monthly summary for me",
            "run_workflow",
            Some(Recipient::Me),
            None,
            None,
            None,
            Some("weekly_summary"),
            Some("monthly"),
        ),
        (
            "refund order #1001",
            "update_record",
            None,
            None,
            None,
            None,
            None,
            None,
        ),
    ];
    for (q, kind, to, start, title, due, workflow, cadence) in cases {
        let p = plan(q, "2025-06-15");
        assert_eq!(p.intent, Intent::Action, "{q}");
        let a = p.act.as_ref().unwrap_or_else(|| panic!("{q}: no request"));
        assert_eq!(a.kind, kind, "{q}");
        if let Some(to) = to {
            assert_eq!(a.to, to, "{q}");
        }
        assert_eq!(
            a.period.map(|p| p.start.to_string()).as_deref(),
            start,
            "{q}"
        );
        assert_eq!(a.title.as_deref(), title, "{q}");
        assert_eq!(a.due.map(|d| d.to_string()).as_deref(), due, "{q}");
        assert_eq!(a.workflow, workflow, "{q}");
        assert_eq!(a.cadence, cadence, "{q}");
    }
    // Questions about e-mail or syncing ask; they do not act.
    for q in [
        "when was the last sync",
        "how many emails did customers send",
        "what was my revenue last month",
        "how much did ava smith spend",
    ] {
        assert_ne!(plan(q, "2025-06-15").intent, Intent::Action, "{q}");
    }
}
