//! Understanding a question: a typed [`Plan`] from a small grammar over a normalised token stream.
//!
//! 1. [`tokens`]: lower-case, punctuation and possessives out, hyphenated words split, and one-edit typos
//!    corrected towards the closed vocabulary only (the lexicon, months, and the tenant's own product and
//!    customer words), so that real words are never "corrected" into others.
//! 2. Intent: conversation, action and search are recognised first (they need no data words).
//! 3. [`periods`]: the time grammar takes the tokens that name periods.
//! 4. [`link`]: e-mails, customer names and product titles are linked against the tenant's catalogue; an
//!    ambiguous mention keeps its candidates.
//! 5. [`lexicon`]: the remaining tokens are read as terms (longest phrase first); the metric, ranking,
//!    breakdown, comparison and source follow from the terms by a few rules.
//! 6. Content words left over where a filter would stand ("sales of unicorn tears", "orders from Zelda
//!    Fitzgerald") become unresolved mentions: the answer says so and never drops the filter silently.

pub mod action;
pub mod followup;
pub mod lexicon;
pub mod link;
pub mod periods;
pub mod tokens;

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::period::{Kind, Period};
use lexicon::{Term, number_word};
pub use link::{Catalog, Mention, MentionKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Metrics,
    Search,
    Action,
    Conversation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Revenue,
    Orders,
    Aov,
    Customers,
    NewCustomers,
    ReturningCustomers,
    Refunds,
    Units,
    ProductSales,
    Discounts,
    FailedPayments,
    TopCustomers,
    TopProducts,
    TopProductsByUnits,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Revenue => "revenue",
            Self::Orders => "orders",
            Self::Aov => "aov",
            Self::Customers => "customers",
            Self::NewCustomers => "new_customers",
            Self::ReturningCustomers => "returning_customers",
            Self::Refunds => "refunds",
            Self::Units => "units",
            Self::ProductSales => "product_sales",
            Self::Discounts => "discounts",
            Self::FailedPayments => "failed_payments",
            Self::TopCustomers => "top_customers",
            Self::TopProducts => "top_products",
            Self::TopProductsByUnits => "top_products_by_units",
        }
    }
    pub fn is_money(self) -> bool {
        matches!(
            self,
            Self::Revenue
                | Self::Aov
                | Self::Refunds
                | Self::ProductSales
                | Self::Discounts
                | Self::TopCustomers
                | Self::TopProducts
        )
    }
    pub fn is_ranking(self) -> bool {
        matches!(
            self,
            Self::TopCustomers | Self::TopProducts | Self::TopProductsByUnits
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    Day,
    Week,
    Month,
    Quarter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conversation {
    Greeting,
    Thanks,
    Farewell,
    /// "how do you calculate revenue": the metric's definition.
    Definition,
    Capabilities,
    OutOfScope,
    Unintelligible,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Shopify,
    Stripe,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shopify => "shopify",
            Self::Stripe => "stripe",
        }
    }
}

/// What a ranking ranks, by what, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ranking {
    pub entity: RankedEntity,
    pub by: RankedBy,
    pub n: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankedEntity {
    Products,
    Customers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankedBy {
    ProductSales,
    Units,
    Spend,
}

/// How the answer compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// With the period just before the named one (metrics.md, Comparisons).
    PreviousPeriod,
    /// The first named period against the second.
    NamedPeriods,
}

/// A resolved customer filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerRef {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Filters {
    /// The exact product title.
    pub product: Option<String>,
    pub customer: Option<CustomerRef>,
    pub source: Option<Source>,
}

/// A search: the words to look for, and the kinds of record asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SearchSpec {
    /// The question's own words (as written, typos and all) without periods, names used as filters
    /// and the words that only frame a search ("find", "the order", "which", "mentioned").
    pub words: String,
    /// Record kinds asked for ("order", "charge", "refund", "customer", "product"); empty: any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<&'static str>,
}

/// Words that frame a search without saying what to find.
const SEARCH_FRAME: &[&str] = &[
    "find",
    "search",
    "searching",
    "locate",
    "lookup",
    "look",
    "looking",
    "up",
    "for",
    "show",
    "me",
    "pull",
    "get",
    "give",
    "list",
    "bring",
    "which",
    "what",
    "where",
    "who",
    "whose",
    "whom",
    "when",
    "the",
    "a",
    "an",
    "that",
    "this",
    "those",
    "these",
    "one",
    "ones",
    "order",
    "orders",
    "purchase",
    "purchases",
    "record",
    "records",
    "mentioned",
    "mentioning",
    "mention",
    "mentions",
    "said",
    "say",
    "says",
    "saying",
    "about",
    "with",
    "from",
    "of",
    "in",
    "on",
    "my",
    "our",
    "i",
    "we",
    "us",
    "was",
    "were",
    "is",
    "are",
    "be",
    "been",
    "did",
    "do",
    "does",
    "had",
    "has",
    "have",
    "any",
    "some",
    "please",
    "can",
    "could",
    "you",
    "would",
    "there",
    "it",
    "its",
    "customer",
    "customers",
    "client",
    "clients",
    "someone",
    "somebody",
    "anyone",
    "person",
    "and",
    "or",
    "to",
    "at",
    "by",
    "all",
    "payment",
    "payments",
    "charge",
    "charges",
    "refund",
    "refunds",
    "product",
    "products",
    "shopify",
    "stripe",
    "again",
    "thing",
    "stuff",
    "want",
    "need",
    "know",
    "see",
    "remember",
    "think",
    "guy",
    "lady",
    "woman",
    "man",
    "got",
    "gets",
    "getting",
    "ordered",
    "bought",
    "buying",
    "but",
    "than",
    "then",
    "also",
    "just",
    "really",
    "very",
    "tell",
    "told",
];

fn search_spec(
    toks: &[tokens::Tok],
    period_taken: &[bool],
    customer_tok: &[bool],
    has: &dyn Fn(Term) -> bool,
) -> SearchSpec {
    let words: Vec<&str> = toks
        .iter()
        .enumerate()
        .filter(|(i, _)| !period_taken[*i] && !customer_tok[*i])
        .map(|(_, t)| t.corrected_from.as_deref().unwrap_or(&t.text))
        .filter(|w| !SEARCH_FRAME.contains(w))
        .collect();
    let text: Vec<&str> = toks.iter().map(|t| t.text.as_str()).collect();
    let said = |w: &[&str]| text.iter().any(|t| w.contains(t));
    let mut kinds = Vec::new();
    if said(&["refund", "refunds", "refunded"]) {
        kinds.push("refund");
    }
    if said(&["payment", "payments", "charge", "charges"])
        || has(Term::Stripe) && !said(&["order", "orders"])
    {
        kinds.push("charge");
    }
    if said(&["product", "products"]) {
        kinds.push("product");
    }
    // "the order where…", "which package…": orders (and the refunds and payments on them), not products
    // or customers.
    if kinds.is_empty()
        && said(&[
            "order",
            "orders",
            "purchase",
            "purchases",
            "package",
            "parcel",
            "delivery",
            "shipment",
        ])
        && !said(&["customer", "customers", "client", "who", "whose", "someone"])
    {
        kinds.extend(["order", "charge", "refund"]);
    }
    SearchSpec {
        words: words.join(" "),
        kinds,
    }
}

/// What the question asks, before any data is read: the typed plan `debug: true` returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The normalised, typo-corrected text (the cache key is built from it).
    pub normalized: String,
    pub intent: Intent,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// The action's parameters (intent `action`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<action::ActionRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    #[serde(serialize_with = "ser_periods")]
    pub periods: Vec<Period>,
    /// The user named no period (the default, the last 30 days, applies).
    pub default_period: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grain: Option<Grain>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranking: Option<Ranking>,
    pub filters: Filters,
    /// Mentions that name a product or customer the tenant does not have.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<Mention>,
    /// Mentions that fit several products or customers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ambiguous: Vec<Mention>,
    /// Typos corrected: (as written, as read).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub corrections: Vec<(String, String)>,
    /// What a search looks for (intent `search`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSpec>,
    /// A future period was named ("next month").
    pub future: bool,
    /// The question named a metric or a ranking itself (a follow-up without one keeps the previous).
    #[serde(skip)]
    pub metric_stated: bool,
}

fn ser_periods<S: serde::Serializer>(p: &[Period], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(p.len()))?;
    for x in p {
        seq.serialize_element(
            &serde_json::json!({"start": x.start.to_string(), "end": x.end.to_string()}),
        )?;
    }
    seq.end()
}

impl Plan {
    fn new(normalized: String) -> Self {
        Self {
            normalized,
            intent: Intent::Conversation,
            conversation: None,
            action: None,
            act: None,
            metric: None,
            periods: Vec::new(),
            default_period: false,
            comparison: None,
            grain: None,
            ranking: None,
            filters: Filters::default(),
            unresolved: Vec::new(),
            ambiguous: Vec::new(),
            corrections: Vec::new(),
            search: None,
            future: false,
            metric_stated: false,
        }
    }

    /// A plan with nothing in it yet (intent conversation), for plans built outside the grammar.
    pub fn empty(normalized: String) -> Self {
        Self::new(normalized)
    }
}

/// Understands `query` as asked on `today` (tenant-local), against the tenant's catalogue.
pub fn understand(query: &str, today: NaiveDate, catalog: &Catalog) -> Plan {
    let toks = tokens::tokenize(query, catalog);
    let words: Vec<String> = toks.iter().map(|t| t.text.clone()).collect();
    let text = words.join(" ");
    let mut plan = Plan::new(text.clone());
    plan.corrections = toks
        .iter()
        .filter(|t| t.corrected_from.is_some())
        .map(|t| (t.corrected_from.clone().unwrap_or_default(), t.text.clone()))
        .collect();
    if !text.chars().any(char::is_alphanumeric) {
        plan.conversation = Some(Conversation::Unintelligible);
        return plan;
    }
    if let Some(c) = intents::conversation(&text) {
        plan.conversation = Some(c);
        return plan;
    }
    if let Some(a) = intents::action(&text) {
        plan.intent = Intent::Action;
        plan.action = Some(a);
        plan.act = Some(action::request(a, query, today, catalog));
        return plan;
    }
    let searching = intents::search(&text);

    let mut taken = vec![false; words.len()];
    // Periods.
    let caps: Vec<bool> = toks.iter().map(|t| t.capitalized).collect();
    let found = periods::find(&words, &caps, today);
    for f in &found {
        taken[f.from..f.to].iter_mut().for_each(|x| *x = true);
        plan.future |= f.future;
    }
    // Long phrases of the lexicon first ("average ticket", "credit card"), so that the catalogue does not
    // take their words; then the catalogue; then single words.
    let mut terms: Vec<(Term, usize)> = Vec::new();
    let period_taken = taken.clone();
    scan_terms(&words, &mut taken, &mut terms, 2);
    let before_link = taken.clone();
    let linked = link::link(&toks, &mut taken, catalog);
    scan_terms(&words, &mut taken, &mut terms, 1);
    let has = |t: Term| terms.iter().any(|(x, _)| *x == t);

    // "top selling coffees": in a ranking, a lone plural is the kind of product, not one product.
    let ranking_words = has(Term::Rank) || has(Term::BestSellers) || has(Term::Most);
    plan.filters.product = linked
        .product
        .clone()
        .filter(|_| !(linked.product_by_plural && ranking_words));
    plan.filters.customer = linked.customer.clone();
    plan.ambiguous = linked.ambiguous.clone();
    plan.unresolved = linked.unresolved.clone();
    // A single first name shared by several customers is ambiguous, not unknown.
    for m in link::leftover_mentions(&toks, &taken, &terms, catalog) {
        if m.candidates.is_empty() {
            plan.unresolved.push(m);
        } else {
            plan.ambiguous.push(m);
        }
    }
    plan.filters.source = if has(Term::Stripe) {
        Some(Source::Stripe)
    } else if has(Term::Shopify) {
        Some(Source::Shopify)
    } else {
        None
    };

    if searching {
        plan.intent = Intent::Search;
        // In a search, product words are words to find ("the grinder arrived broken"), not a filter.
        plan.filters.product = None;
        plan.unresolved.clear();
        plan.ambiguous.clear();
        let customer_tok: Vec<bool> = (0..toks.len())
            .map(|i| {
                taken[i]
                    && !before_link[i]
                    && linked.customer.as_ref().is_some_and(|c| {
                        toks[i].text.contains('@')
                            || c.name
                                .to_lowercase()
                                .split_whitespace()
                                .any(|w| w == toks[i].text)
                    })
            })
            .collect();
        plan.search = Some(search_spec(&toks, &period_taken, &customer_tok, &has));
        plan.default_period = found.is_empty();
        plan.periods = found.iter().map(|f| f.period).take(1).collect();
        return plan;
    }

    // Ranking.
    let products_word = has(Term::Products) || has(Term::BestSellers);
    let customers_word = has(Term::Customers) || has(Term::Who) || has(Term::Spend);
    let rank = has(Term::Rank) || has(Term::Most) || has(Term::BestSellers) || has(Term::TopOne);
    let ranking_entity = if !(rank || has(Term::ByUnits) && products_word) {
        None
    } else if products_word || (has(Term::Items) && !customers_word) {
        Some(RankedEntity::Products)
    } else if customers_word && !has(Term::HowMany) {
        Some(RankedEntity::Customers)
    } else if has(Term::Most)
        && (has(Term::Revenue) || has(Term::Sell) || has(Term::Units))
        && !has(Term::HowMany)
    {
        // "what sold the most"
        Some(RankedEntity::Products)
    } else {
        None
    };
    // Leftover words alone ("the capital of France") do not make a question about the data.
    let entity_filter = plan.filters.product.is_some()
        || plan.filters.customer.is_some()
        || !plan.ambiguous.is_empty()
        || !linked.unresolved.is_empty();
    if let Some(entity) = ranking_entity.filter(|_| plan.filters.product.is_none()) {
        let by = match entity {
            RankedEntity::Customers => RankedBy::Spend,
            RankedEntity::Products if has(Term::ByUnits) || has(Term::Units) => RankedBy::Units,
            RankedEntity::Products => RankedBy::ProductSales,
        };
        let n = if has(Term::TopOne) {
            1
        } else {
            // metrics.md: 5 when no N is given, also for "my top customer" (the first row answers it).
            count_n(&words, &taken).unwrap_or(5)
        };
        plan.ranking = Some(Ranking { entity, by, n });
        plan.metric = Some(match (entity, by) {
            (RankedEntity::Customers, _) => Metric::TopCustomers,
            (_, RankedBy::Units) => Metric::TopProductsByUnits,
            _ => Metric::TopProducts,
        });
    } else {
        plan.metric = scalar_metric(&has);
    }

    plan.metric_stated = plan.metric.is_some();
    plan.grain = terms.iter().find_map(|(t, _)| match t {
        Term::Grain(g) => Some(*g),
        _ => None,
    });
    // "the busted grinder order", "allergy order", "dentist's order": a record described by words the
    // metrics grammar does not know, with nothing that asks for a number, is a search.
    let no_customer = vec![false; toks.len()];
    let asks_number = has(Term::HowMany)
        || has(Term::HowMuch)
        || !found.is_empty()
        || plan.ranking.is_some()
        || plan.grain.is_some()
        || !matches!(
            plan.metric,
            None | Some(Metric::Orders) | Some(Metric::Customers)
        );
    let describing = (0..toks.len()).any(|i| {
        let w = toks[i].text.as_str();
        // Capitalised unknown words are names (a filter the answer reports as unresolved).
        !period_taken[i]
            && !toks[i].capitalized
            && w.len() >= 3
            && !SEARCH_FRAME.contains(&w)
            && !lexicon::is_known(w)
            && !catalog.knows(w)
            && !catalog.is_name_word(w)
            && !w.contains('@')
            && !w.chars().any(|c| c.is_ascii_digit())
    });
    // …and names a record ("the allergy order", "package got wet"): unknown words alone ("who won the
    // super bowl") are not about the data.
    let record_word = toks.iter().any(|t| {
        matches!(
            t.text.as_str(),
            "order"
                | "orders"
                | "purchase"
                | "purchases"
                | "package"
                | "parcel"
                | "delivery"
                | "shipment"
                | "note"
                | "customer"
                | "client"
                | "buyer"
                | "payment"
                | "charge"
                | "refund"
        )
    });
    if !asks_number && describing && record_word {
        plan.intent = Intent::Search;
        plan.metric = None;
        plan.filters.product = None;
        plan.unresolved.clear();
        plan.ambiguous.clear();
        plan.search = Some(search_spec(&toks, &period_taken, &no_customer, &has));
        plan.default_period = true;
        return plan;
    }
    // A date alone ("favors for the wedding on the 14th") does not ask for a number.
    let asks_count =
        has(Term::HowMany) || has(Term::HowMuch) || plan.ranking.is_some() || plan.grain.is_some();
    if !asks_count && describing {
        // Maybe a record described without naming one ("who bought coffee for their wedding"): the
        // orchestrator tries these words as a search first, and answers with it if something is found.
        plan.search = Some(search_spec(&toks, &period_taken, &no_customer, &has));
    }
    if plan.metric.is_none() && found.is_empty() && !entity_filter && plan.grain.is_none() {
        plan.conversation = Some(Conversation::OutOfScope);
        // Not a question about numbers; it may still describe a record ("the cafe owner in Providence"):
        // the orchestrator tries these words as a search and answers with it if something is found.
        plan.search = Some(search_spec(&toks, &period_taken, &no_customer, &has));
        return plan;
    }
    // "how do you calculate revenue", "what counts as a new customer": the definition, not a number.
    if found.is_empty()
        && plan.metric.is_some()
        && [
            "how do you calculate",
            "how is",
            "how are",
            "how do you define",
            "how do you count",
            "what does",
            "what counts as",
            "what is a",
            "what is an",
            "define",
            "definition of",
            "meaning of",
        ]
        .iter()
        .any(|p| text.starts_with(p))
        && (text.contains("calculat")
            || text.contains("mean")
            || text.contains("count")
            || text.contains("defin"))
    {
        plan.conversation = Some(Conversation::Definition);
        return plan;
    }
    plan.intent = Intent::Metrics;
    let mut metric = plan.metric.unwrap_or(Metric::Revenue);
    // "revenue from customer X": the word "customer" names the filter, not the metric.
    if metric == Metric::Customers
        && (plan.filters.customer.is_some()
            || plan
                .unresolved
                .iter()
                .any(|m| m.kind == MentionKind::Customer))
        && (has(Term::Revenue) || has(Term::Spend) || has(Term::HowMuch))
    {
        metric = Metric::Revenue;
    }
    if plan.filters.product.is_some() {
        // Per product there are sales and units; other metrics stay as asked and the answer says they
        // cannot be split by product.
        metric = match metric {
            Metric::Units | Metric::Orders => Metric::Units,
            Metric::Revenue | Metric::ProductSales
                if has(Term::HowMany) || has(Term::Items) || has(Term::ByUnits) =>
            {
                Metric::Units
            }
            // "filters sold last week": a count; "how much kenya did we sell", "kenya sales": money.
            Metric::Revenue | Metric::ProductSales
                if has(Term::Sell) && !has(Term::HowMuch) && !has(Term::Revenue) =>
            {
                Metric::Units
            }
            Metric::Revenue | Metric::ProductSales => Metric::ProductSales,
            other => other,
        };
    }
    // A tenant without products (Stripe only) sells payments, not units: "how many classes did we sell".
    if catalog.products.is_empty() && metric == Metric::Units && plan.filters.product.is_none() {
        metric = Metric::Orders;
    }
    plan.metric = Some(metric);
    plan.periods = found.iter().map(|f| f.period).collect();
    // "are sales up this month?", "is revenue down this quarter"
    let first = words.first().map_or("", String::as_str);
    let up_down = matches!(
        first,
        "is" | "are" | "was" | "were" | "did" | "has" | "have"
    ) && words.iter().any(|w| matches!(w.as_str(), "up" | "down"));
    plan.comparison = if plan.periods.len() > 1 {
        Some(Comparison::NamedPeriods)
    } else if has(Term::Compare) || up_down {
        Some(Comparison::PreviousPeriod)
    } else {
        None
    };
    if plan.periods.is_empty() {
        plan.default_period = true;
        plan.periods = vec![Period::new(today - Duration::days(29), today, Kind::Days)];
    }
    plan
}

/// The scalar metric the terms ask for, by precedence.
pub(crate) fn scalar_metric(has: &dyn Fn(Term) -> bool) -> Option<Metric> {
    // "who" asks for people only about buying or paying ("who paid"), not "who won the super bowl".
    let people = has(Term::Customers)
        || has(Term::Who) && (has(Term::Orders) || has(Term::Spend) || has(Term::Sell));
    Some(if has(Term::Failed) {
        Metric::FailedPayments
    } else if has(Term::Aov)
        || has(Term::Average)
            && (has(Term::Orders)
                || has(Term::Revenue)
                || has(Term::Sell)
                || has(Term::Spend)
                || !people)
    {
        Metric::Aov
    } else if has(Term::New) && (people || has(Term::HowMany)) {
        Metric::NewCustomers
    } else if has(Term::Returning) && (people || has(Term::HowMany)) {
        Metric::ReturningCustomers
    } else if has(Term::Refunds) {
        Metric::Refunds
    } else if has(Term::Discounts) {
        Metric::Discounts
    } else if (has(Term::Units) || has(Term::Items) || has(Term::ByUnits)) && !people {
        Metric::Units
    } else if people {
        Metric::Customers
    } else if has(Term::Orders) && (has(Term::HowMany) || !has(Term::HowMuch)) {
        Metric::Orders
    } else if has(Term::Sell) && has(Term::HowMany) {
        // "how many did we sell"
        Metric::Units
    } else if has(Term::Revenue) || has(Term::Sell) || has(Term::HowMuch) || has(Term::Spend) {
        Metric::Revenue
    } else if has(Term::HowMany) {
        // "how many did Ava buy": a count of orders.
        Metric::Orders
    } else {
        return None;
    })
}

/// Reads lexicon phrases of at least `min_len` tokens over the tokens not yet taken, longest first.
pub(crate) fn scan_terms(
    words: &[String],
    taken: &mut [bool],
    out: &mut Vec<(Term, usize)>,
    min_len: usize,
) {
    let mut i = 0;
    while i < words.len() {
        if taken[i] {
            i += 1;
            continue;
        }
        // Candidates come longest first, so the first that fits is the longest match.
        let best = lexicon::phrases_starting(&words[i])
            .iter()
            .find(|(phrase, _)| {
                let n = phrase.len();
                n >= min_len
                    && i + n <= words.len()
                    && !taken[i..i + n].iter().any(|x| *x)
                    && phrase.iter().zip(&words[i..i + n]).all(|(p, w)| p == w)
            })
            .map(|(phrase, term)| (phrase.len(), *term));
        match best {
            Some((n, term)) => {
                out.push((term, i));
                taken[i..i + n].iter_mut().for_each(|x| *x = true);
                i += n;
            }
            None => i += 1,
        }
    }
}

/// The N of a ranking: a number (digits or a word) not used by a period.
fn count_n(words: &[String], taken: &[bool]) -> Option<usize> {
    words
        .iter()
        .zip(taken)
        .filter(|(_, t)| !**t)
        .find_map(|(w, _)| number_word(w).filter(|n| (1..=100).contains(n)))
        .map(|n| n as usize)
}

/// Whole-word phrase containment.
pub fn contains_phrase(t: &str, p: &str) -> bool {
    let padded = format!(" {t} ");
    padded.contains(&format!(" {p} "))
}

mod intents {
    //! Conversation, action and search: recognised before any data words.
    use super::{Conversation, contains_phrase};

    fn has(t: &str, needles: &[&str]) -> bool {
        needles.iter().any(|n| contains_phrase(t, n))
    }

    pub fn conversation(t: &str) -> Option<Conversation> {
        const GREET: &[&str] = &[
            "hi",
            "hello",
            "hey",
            "hiya",
            "howdy",
            "good morning",
            "good afternoon",
            "good evening",
            "yo",
            "greetings",
            "hi there",
            "hello there",
            "hey there",
            "morning",
            "how are you",
            "how are you doing",
            "hows it going",
            "how is it going",
            "how are things",
            "whats up",
            "sup",
            "gday",
            "hey hey",
        ];
        const THANKS: &[&str] = &[
            "thanks",
            "thank you",
            "thx",
            "ty",
            "cheers",
            "thank",
            "much appreciated",
            "appreciate it",
            "great thanks",
            "ok thanks",
            "perfect thanks",
            "thanks a lot",
            "awesome thanks",
        ];
        let n = t.split_whitespace().count();
        // A greeting or thanks that goes on to ask something is a question, not small talk.
        let asks = has(
            t,
            &[
                "revenue",
                "sales",
                "orders",
                "how many",
                "how much",
                "customers",
                "top",
                "refunds",
                "what was",
                "what were",
                "show",
            ],
        );
        if GREET.contains(&t)
            || n <= 5 && !asks && GREET.iter().any(|g| t.starts_with(&format!("{g} ")))
        {
            return Some(Conversation::Greeting);
        }
        if matches!(
            t,
            "bye"
                | "goodbye"
                | "good bye"
                | "bye bye"
                | "see you"
                | "see ya"
                | "later"
                | "cya"
                | "thats all"
                | "that is all"
                | "im done"
                | "done"
        ) || (t.starts_with("bye ") || t.starts_with("goodbye ")) && n <= 4
        {
            return Some(Conversation::Farewell);
        }
        // Requests that are not about the data: writing, deleting, chit-chat ("the order where the
        // courier left it out in bad weather" is a search, though).
        let first = t.split_whitespace().next().unwrap_or("");
        if !search(t)
            && (matches!(
                first,
                "write" | "delete" | "remove" | "erase" | "wipe" | "drop" | "translate"
            ) || has(
                t,
                &[
                    "poem",
                    "joke",
                    "story",
                    "song",
                    "recipe",
                    "weather",
                    "write me",
                    "delete all",
                    "delete my",
                    "remove all",
                    "wipe my",
                    "erase my",
                    "can you delete",
                    "can you write",
                    "can you remove",
                ],
            ))
        {
            return Some(Conversation::OutOfScope);
        }
        if !asks
            && n <= 10
            && THANKS
                .iter()
                .any(|x| t == *x || t.starts_with(&format!("{x} ")))
        {
            return Some(Conversation::Thanks);
        }
        if has(
            t,
            &[
                "what can you do",
                "what do you do",
                "how can you help",
                "help",
                "what are you",
                "who are you",
                "what can i ask",
                "capabilities",
                "how does this work",
                "what should i ask",
                "what questions",
                "kind of questions",
                "sort of questions",
                "questions can i ask",
                "example questions",
                "how do i use",
                "what do you know",
            ],
        ) {
            return Some(Conversation::Capabilities);
        }
        None
    }

    pub fn action(t: &str) -> Option<&'static str> {
        // "please email…", "can you send…": the request starts after the politeness.
        let mut rest = t;
        loop {
            let before = rest;
            for p in [
                "please ",
                "can you ",
                "could you ",
                "would you ",
                "will you ",
                "pls ",
                "plz ",
                "kindly ",
                "go ahead and ",
                "i want you to ",
                "i need you to ",
                "id like you to ",
                "i would like you to ",
                "lets ",
                "let us ",
                "hey ",
                "ok ",
                "okay ",
                "now ",
                "also ",
                "and ",
            ] {
                if let Some(r) = rest.strip_prefix(p) {
                    rest = r;
                }
            }
            if rest == before {
                break;
            }
        }
        let t = rest;
        let first = t.split_whitespace().next().unwrap_or("");
        let second = t.split_whitespace().nth(1).unwrap_or("");
        // A question about syncing or e-mail ("when did the last sync run?") asks, it does not act.
        let asking = matches!(
            first,
            "when"
                | "what"
                | "how"
                | "did"
                | "has"
                | "have"
                | "is"
                | "was"
                | "why"
                | "which"
                | "who"
        );
        if !asking
            && (matches!(first, "sync" | "resync" | "refresh")
                || has(
                    t,
                    &[
                        "sync all",
                        "sync everything",
                        "sync my",
                        "sync the",
                        "run a sync",
                        "start a sync",
                        "trigger a sync",
                        "kick off a sync",
                        "do a sync",
                        "refresh my data",
                        "refresh all",
                        "refresh everything",
                        "pull the latest",
                        "update my data",
                        "run sync all",
                        "run the sync",
                    ],
                ))
        {
            return Some("run_workflow");
        }
        let summary = has(
            t,
            &[
                "weekly summary",
                "weekly report",
                "weekly digest",
                "weekly recap",
                "weekly email",
                "weekly update",
                "daily summary",
                "daily report",
                "daily digest",
                "monthly summary",
                "monthly report",
                "summary",
                "report",
                "digest",
                "recap",
                "numbers",
                "figures",
                "key figures",
                "kpis",
            ],
        );
        let recurring = has(
            t,
            &[
                "every day",
                "every week",
                "every month",
                "every monday",
                "every friday",
                "every morning",
                "each week",
                "each month",
                "each day",
                "on mondays",
            ],
        );
        let workflow_verb = matches!(
            first,
            "run" | "start" | "trigger" | "kick" | "generate" | "schedule" | "set" | "setup"
        );
        if !asking
            && !t.contains('@')
            && summary
            && (recurring
                || workflow_verb
                || has(t, &["weekly summary", "weekly report", "weekly digest"])
                    && matches!(first, "send" | "email" | "mail"))
            && !has(t, &["my accountant", "my bookkeeper", "my partner"])
        {
            return Some("run_workflow");
        }
        if matches!(
            first,
            "email" | "send" | "mail" | "message" | "text" | "notify" | "forward" | "e"
        ) && !(first == "send" && matches!(second, "a" | "the") && has(t, &["refund"]))
            || has(
                t,
                &[
                    "send an email",
                    "send a mail",
                    "email to",
                    "send a summary",
                    "shoot an email",
                    "drop an email",
                    "fire off an email",
                    "write an email",
                ],
            )
        {
            return Some("send_email");
        }
        if has(
            t,
            &[
                "create a task",
                "add a task",
                "make a task",
                "remind me",
                "create task",
                "add task",
                "todo",
                "to do",
                "set a reminder",
                "create a reminder",
                "add a reminder",
                "make a note",
                "reminder to",
                "new task",
                "note to self",
                "to my list",
                "on my list",
                "to my tasks",
                "as a task",
                "a task for",
                "a task to",
            ],
        ) || first == "remind"
        {
            return Some("create_task");
        }
        // "refund order #1001", not "refund total"
        if matches!(
            first,
            "refund" | "cancel" | "issue" | "schedule" | "update" | "tag" | "archive"
        ) && !has(
            t,
            &["how much", "how many", "total", "totals", "amount", "sum"],
        ) && (matches!(
            second,
            "order"
                | "the"
                | "this"
                | "that"
                | "an"
                | "a"
                | "all"
                | "customer"
                | "charge"
                | "payment"
        ) || second.chars().any(|c| c.is_ascii_digit()))
        {
            return Some("update_record");
        }
        None
    }

    pub fn search(t: &str) -> bool {
        let first = t.split_whitespace().next().unwrap_or("");
        // "which customer spent the most" is a ranking, not a search.
        let ranking = has(
            t,
            &[
                "most", "top", "best", "biggest", "how many", "how much", "highest",
            ],
        );
        // "show me the allergy order": one order described by its words.
        let described = (t.starts_with("show me the ") || t.starts_with("pull up the "))
            && (t.ends_with(" order") || t.ends_with(" orders"));
        matches!(first, "find" | "search" | "locate" | "lookup")
            || described
            || !ranking
                && has(
                    t,
                    &[
                        "look up",
                        "which order",
                        "which orders",
                        "the order where",
                        "the order for",
                        "the order that",
                        "order with",
                        "orders that mentioned",
                        "which customer",
                        "show me the order",
                        "where the",
                        "mentioned",
                        "mentioning",
                        "mentions",
                        "that mention",
                        "complained",
                        "complaining",
                        "asked for",
                        "asked about",
                        "needs their",
                        "wants their",
                        "the customer who",
                        "the customer that",
                        "the one who",
                        "the one that",
                        "the one where",
                        "the one with",
                        "the one about",
                        "the one for",
                        "the one from",
                        "someone who",
                        "somebody who",
                        "the person who",
                        "the guy who",
                        "the lady who",
                    ],
                )
    }
}

#[cfg(test)]
mod tests;
