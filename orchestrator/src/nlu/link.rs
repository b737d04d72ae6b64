//! Entity linking against the tenant's catalogue and customers: products by any distinctive part of their
//! title (case, plural/singular, articles and size words optional), customers by full name or e-mail.
//! What cannot be linked is reported as a mention, never dropped.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::CustomerRef;
use super::lexicon::{self, Term};
use super::tokens::Tok;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MentionKind {
    Product,
    Customer,
}

/// A mention the catalogue could not resolve to exactly one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mention {
    pub kind: MentionKind,
    pub mention: String,
    /// For an ambiguous mention: what it could be.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
}

/// A product title and its words (normalised, singular; sizes and function words dropped).
#[derive(Debug, Clone)]
pub struct ProductName {
    pub title: String,
    words: Vec<String>,
    /// Size words of the title ("12oz", "$50").
    sizes: Vec<String>,
}

/// A customer's lower-case name and canonical key (the e-mail when known).
#[derive(Debug, Clone)]
pub struct CustomerName {
    pub name: String,
    pub key: String,
}

/// The tenant's products and customers, prepared once per data version.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub products: Vec<ProductName>,
    pub customers: Vec<CustomerName>,
    /// Every word of a product title or customer name (typo targets, and words never corrected).
    words: HashSet<String>,
    /// Lower-case full name → indices into `customers`.
    by_name: HashMap<String, Vec<usize>>,
    /// First name → distinct customer keys with that first name, and one full name for each.
    by_first: HashMap<String, Vec<(String, String)>>,
    /// Customer keys (e-mails), lower-case.
    keys: HashSet<String>,
    /// Words of customers' names that are no product's words.
    name_words: HashSet<String>,
}

/// The singular of a plural word, as far as product titles need.
pub fn singular(w: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if w.len() > 4
        && (w.ends_with("ches") || w.ends_with("shes") || w.ends_with("xes") || w.ends_with("sses"))
    {
        Cow::Borrowed(&w[..w.len() - 2])
    } else if w.len() > 4 && w.ends_with("ies") {
        Cow::Owned(format!("{}y", &w[..w.len() - 3]))
    } else if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        Cow::Borrowed(&w[..w.len() - 1])
    } else {
        Cow::Borrowed(w)
    }
}

/// Words of a title that name nothing by themselves.
const TITLE_STOP: &[&str] = &[
    "the", "a", "an", "of", "for", "and", "with", "over", "in", "on", "to", "by",
];

/// A size or amount in a title ("12oz", "2lb", "100ct", "$50"): optional when naming the product.
fn is_size(w: &str) -> bool {
    w.starts_with('$') || w.chars().next().is_some_and(|c| c.is_ascii_digit())
}

fn norm_words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '$'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

impl Catalog {
    /// `customers`: (lower-case name, key) pairs.
    pub fn new(titles: &[String], customers: Vec<(String, String)>) -> Self {
        let products: Vec<ProductName> = titles
            .iter()
            .map(|t| ProductName {
                title: t.clone(),
                sizes: norm_words(t).into_iter().filter(|w| is_size(w)).collect(),
                words: norm_words(t)
                    .into_iter()
                    .filter(|w| !is_size(w) && !TITLE_STOP.contains(&w.as_str()))
                    .map(|w| singular(&w).into_owned())
                    .collect(),
            })
            .collect();
        let mut words: HashSet<String> = products.iter().flat_map(|p| p.words.clone()).collect();
        let product_words = words.clone();
        let mut name_words = HashSet::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_first: HashMap<String, Vec<(String, String)>> = HashMap::new();
        let mut keys = HashSet::new();
        let customers: Vec<CustomerName> = customers
            .into_iter()
            .map(|(name, key)| CustomerName {
                name: norm_words(&name).join(" "),
                key,
            })
            .collect();
        for (i, c) in customers.iter().enumerate() {
            let entry = by_name.entry(c.name.clone()).or_default();
            // Several records (a Shopify customer and their orders) may carry one name and key.
            if !entry.iter().any(|&j| customers[j].key == c.key) {
                entry.push(i);
            }
            keys.insert(c.key.to_lowercase());
            for w in c.name.split(' ').filter(|w| w.len() >= 3) {
                words.insert(w.to_string());
                if !product_words.contains(w) {
                    name_words.insert(w.to_string());
                }
            }
            if let Some(first) = c.name.split(' ').next().filter(|_| c.name.contains(' ')) {
                let e = by_first.entry(first.to_string()).or_default();
                if !e.iter().any(|(k, _)| *k == c.key) {
                    e.push((c.key.clone(), title_case(&c.name)));
                }
            }
        }
        Self {
            products,
            customers,
            words,
            by_name,
            by_first,
            keys,
            name_words,
        }
    }

    /// Whether `w` (or its singular) is one of the catalogue's words.
    pub fn knows(&self, w: &str) -> bool {
        self.words.contains(w) || self.words.contains(singular(w).as_ref())
    }

    /// Whether `w` is a word of some customer's name and of no product's title.
    pub fn is_name_word(&self, w: &str) -> bool {
        self.name_words.contains(w)
    }

    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.words.iter().map(String::as_str)
    }

    pub fn product_titles(&self) -> impl Iterator<Item = &str> {
        self.products.iter().map(|p| p.title.as_str())
    }
}

/// What linking found.
#[derive(Debug, Default)]
pub struct Linked {
    pub product: Option<String>,
    /// The product was named only by a plural word ("coffees"): in a ranking that is a category.
    pub product_by_plural: bool,
    pub customer: Option<CustomerRef>,
    pub ambiguous: Vec<Mention>,
    pub unresolved: Vec<Mention>,
}

/// Links e-mails, customer names and product words among the tokens not yet `taken`, taking what it uses.
pub fn link(toks: &[Tok], taken: &mut [bool], catalog: &Catalog) -> Linked {
    let mut out = Linked::default();
    let words: Vec<&str> = toks.iter().map(|t| t.text.as_str()).collect();
    // E-mails.
    for (i, w) in words.iter().enumerate() {
        if taken[i] || !w.contains('@') {
            continue;
        }
        taken[i] = true;
        let key = w.trim_end_matches('.').to_lowercase();
        // Some records carry an e-mail under another case; the key is the lower-case address.
        if catalog.keys.contains(&key) {
            out.customer = Some(CustomerRef {
                name: key.clone(),
                key,
            });
        } else {
            out.unresolved.push(Mention {
                kind: MentionKind::Customer,
                mention: key,
                candidates: vec![],
            });
        }
    }
    // Full names, longest first (three words, then two).
    for n in [3usize, 2] {
        if out.customer.is_some() {
            break;
        }
        for i in 0..words.len().saturating_sub(n - 1) {
            if taken[i..i + n].iter().any(|x| *x) {
                continue;
            }
            let name = words[i..i + n].join(" ");
            let Some(ids) = catalog.by_name.get(&name) else {
                continue;
            };
            taken[i..i + n].iter_mut().for_each(|x| *x = true);
            if ids.len() == 1 {
                let c = &catalog.customers[ids[0]];
                out.customer = Some(CustomerRef {
                    name: title_case(&c.name),
                    key: c.key.clone(),
                });
            } else {
                out.ambiguous.push(Mention {
                    kind: MentionKind::Customer,
                    mention: title_case(&name),
                    candidates: ids
                        .iter()
                        .map(|&j| catalog.customers[j].key.clone())
                        .collect(),
                });
            }
            break;
        }
    }
    // Products: the title with the most matching words wins; a word of the lexicon ("monthly") counts only
    // beside a word of the title's own.
    let mut scores: Vec<(usize, usize, &ProductName, Vec<usize>)> = Vec::new();
    for p in &catalog.products {
        let mut strong = 0;
        let mut used = Vec::new();
        for pw in &p.words {
            let at = (0..words.len())
                .find(|&i| !taken[i] && !used.contains(&i) && word_matches(words[i], pw));
            if let Some(i) = at {
                used.push(i);
                if !lexicon::is_known(pw) {
                    strong += 1;
                }
            }
        }
        if strong > 0 {
            scores.push((used.len(), strong, p, used));
        }
    }
    scores.sort_by(|a, b| {
        (b.0, b.1)
            .cmp(&(a.0, a.1))
            .then_with(|| a.2.title.cmp(&b.2.title))
    });
    if let Some(best) = scores.first() {
        let tied: Vec<_> = scores
            .iter()
            .filter(|s| (s.0, s.1) == (best.0, best.1))
            .collect();
        // A word every tied title shares is not distinctive: "grinder" fits two grinders.
        let complete = tied.iter().find(|s| s.0 == s.2.words.len());
        match (tied.len(), complete) {
            (1, _) => {
                let first = best.3.iter().copied().min().unwrap_or(0);
                let last = best.3.iter().copied().max().unwrap_or(0);
                // Words between the matched ones belong to the name ("Conical Bur Grinder").
                for t in taken.iter_mut().take(last + 1).skip(first) {
                    *t = true;
                }
                // A misspelt word of the title right after it is the title's too ("french pres").
                let unmatched: Vec<&String> = best
                    .2
                    .words
                    .iter()
                    .filter(|pw| !best.3.iter().any(|&i| word_matches(words[i], pw)))
                    .collect();
                let next_at = last + 1;
                let next = toks
                    .get(next_at)
                    .filter(|_| !taken.get(next_at).copied().unwrap_or(true));
                let misspelt = next.is_some_and(|t| {
                    let w = t.text.as_str();
                    let bare = w.strip_suffix('s').unwrap_or(w);
                    unmatched.iter().any(|pw| {
                        strsim::osa_distance(w, pw) <= 1 || strsim::osa_distance(bare, pw) <= 1
                    })
                });
                // A word right after the name that is not the product's ("espresso machines"), or another
                // size ("gift card $100"), names something else.
                let other_word = !misspelt
                    && next.is_some_and(|t| {
                        let w = t.text.as_str();
                        w.len() >= 3
                            && w.chars().all(char::is_alphabetic)
                            && !lexicon::is_known(w)
                            && !lexicon::is_known(&singular(w))
                            && !catalog.knows(w)
                            && !GENERIC_NOUNS.contains(&w)
                    });
                let other_size = next.is_some_and(|t| {
                    is_size(&t.text) && !best.2.sizes.is_empty() && !best.2.sizes.contains(&t.text)
                });
                if misspelt {
                    taken[next_at] = true;
                }
                if other_word || other_size {
                    let mention = toks[first..=next_at]
                        .iter()
                        .map(|t| t.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" ");
                    taken[next_at] = true;
                    out.unresolved.push(Mention {
                        kind: MentionKind::Product,
                        mention,
                        candidates: vec![],
                    });
                } else {
                    out.product = Some(best.2.title.clone());
                    out.product_by_plural =
                        best.3.len() == 1 && best.3.iter().all(|&i| singular(words[i]) != words[i]);
                }
            }
            (_, Some(c)) if tied.iter().filter(|s| s.0 == s.2.words.len()).count() == 1 => {
                out.product = Some(c.2.title.clone());
            }
            _ => {
                let mention = best
                    .3
                    .iter()
                    .map(|&i| words[i])
                    .collect::<Vec<_>>()
                    .join(" ");
                out.ambiguous.push(Mention {
                    kind: MentionKind::Product,
                    mention,
                    candidates: tied.iter().map(|s| s.2.title.clone()).collect(),
                });
            }
        }
        for s in &tied {
            for &i in &s.3 {
                taken[i] = true;
            }
        }
    }
    out
}

/// A question's word names a title's word: the same word, its plural, or the same stem with another
/// ending ("ethiopian" / "ethiopia", "mexican" / "mexico").
fn word_matches(w: &str, pw: &str) -> bool {
    if singular(w) == pw {
        return true;
    }
    let common = w
        .chars()
        .zip(pw.chars())
        .take_while(|(a, b)| a == b)
        .count();
    common >= 5 && w.len() - common <= 3 && pw.len() - common <= 2
}

fn title_case(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prepositions after which a content word is a filter ("sales of X", "orders from X").
const FILTER_PREPS: &[&str] = &[
    "of",
    "for",
    "from",
    "on",
    "about",
    "with",
    "by",
    "to",
    "bought",
    "buy",
    "buying",
    "purchased",
    "ordered",
];

/// Generic nouns that may follow a product's name without naming another product ("kenya beans").
const GENERIC_NOUNS: &[&str] = &[
    "beans", "bean", "roast", "product", "products", "item", "items",
];
/// Words skipped when looking back from a mention for its preposition.
const SKIP: &[&str] = &[
    "the", "my", "our", "a", "an", "those", "that", "this", "these",
];

/// Verbs whose subject is a customer: "how much did john doe spend", "did Tom Hanks place".
const CUSTOMER_VERBS: &[&str] = &[
    "spend",
    "spent",
    "pay",
    "paid",
    "buy",
    "bought",
    "order",
    "ordered",
    "place",
    "placed",
    "purchase",
    "purchased",
    "owe",
    "owes",
];

/// Content words nobody claimed, where a product or customer would stand: unresolved mentions (or, for a
/// lone first name several customers share, a mention with candidates).
pub fn leftover_mentions(
    toks: &[Tok],
    taken: &[bool],
    terms: &[(Term, usize)],
    catalog: &Catalog,
) -> Vec<Mention> {
    let has_products = !catalog.products.is_empty();
    let content = |i: usize| {
        let w = toks[i].text.as_str();
        !taken[i]
            && w.len() >= 2
            && w.chars().any(|c| c.is_alphabetic())
            && !lexicon::is_known(w)
            && !lexicon::is_known(&singular(w))
            && !is_size(w)
    };
    // The term read at token `i`, if any.
    let term_at = |i: usize| terms.iter().find(|(_, at)| *at == i).map(|(t, _)| *t);
    let selling = terms.iter().any(|(t, _)| *t == Term::Sell);
    let ordering = terms
        .iter()
        .any(|(t, _)| matches!(t, Term::Orders | Term::Customers));
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if !content(i) {
            i += 1;
            continue;
        }
        // A span is content words written alike: "Zelda Fitzgerald pay" is a name, then a verb.
        let start = i;
        while i < toks.len() && content(i) && toks[i].capitalized == toks[start].capitalized {
            i += 1;
        }
        // What stands before the span, skipping articles and possessives.
        let mut k = start;
        while k > 0
            && (SKIP.contains(&toks[k - 1].text.as_str())
                || toks[k - 1].text.chars().all(|c| c.is_ascii_digit()))
        {
            k -= 1;
        }
        let prep = (k > 0).then(|| toks[k - 1].text.as_str());
        let after_metric = term_at(i).is_some_and(Term::is_quantity);
        // "how many dragon fruit smoothies did we sell" (a shop with products; "how many classes" at a
        // studio counts payments)
        let counted = (has_products || selling) && k > 0 && toks[k - 1].text == "many";
        let capitalized = toks[start..i].iter().all(|t| t.capitalized);
        // "did john doe spend": the subject of a buying verb is a customer.
        let subject = matches!(prep, Some("did" | "does" | "has" | "have" | "do"))
            && toks
                .get(i)
                .is_some_and(|t| CUSTOMER_VERBS.contains(&t.text.as_str()));
        // "aria roberts total spend": a name opening the question, before what is asked.
        let opening = k == 0
            && term_at(i).is_some_and(|t| {
                t.is_quantity() || matches!(t, Term::Spend | Term::Aov | Term::Discounts)
            });
        if !(prep.is_some_and(|p| FILTER_PREPS.contains(&p))
            || after_metric
            || counted
            || capitalized
            || subject
            || opening)
        {
            continue;
        }
        let span: Vec<&str> = toks[start..i].iter().map(|t| t.text.as_str()).collect();
        let text = span.join(" ");
        let first_name = catalog.by_first.get(span[0]);
        // "how much did ruby spend": one of several customers of that first name.
        if span.len() == 1
            && let Some(people) = first_name
            && (subject || capitalized || matches!(prep, Some("from" | "by" | "for")))
        {
            out.push(Mention {
                kind: MentionKind::Customer,
                mention: title_case(&text),
                candidates: people.iter().take(6).map(|(_, n)| n.clone()).collect(),
            });
            continue;
        }
        // "orders from zachary quinn": orders come from people.
        let orders_from = matches!(prep, Some("from" | "by")) && span.len() >= 2 && ordering;
        let person_like = subject
            || orders_from
            || first_name.is_some()
            || span.iter().any(|w| catalog.is_name_word(w))
            || capitalized && (span.len() >= 2 || matches!(prep, Some("from" | "by"))) && !counted;
        let customer_word_near =
            start >= 2 && matches!(toks[start - 1].text.as_str(), "customer" | "client");
        out.push(Mention {
            kind: if person_like || customer_word_near {
                MentionKind::Customer
            } else {
                MentionKind::Product
            },
            mention: if capitalized { title_case(&text) } else { text },
            candidates: vec![],
        });
    }
    out
}
