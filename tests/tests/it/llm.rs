//! The language-model chain against local servers speaking the OpenAI and Anthropic wire formats: 429s,
//! 500s, timeouts, malformed tool arguments, invented numbers and streams that die. Every case ends in a
//! correct answer from the next link — the fallback, or the deterministic answer with the same numbers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smb_tests::fake::{Dataset, FakeSaas, Sizes};
use smb_tests::fake_llm::{Behaviour, FakeLlm};
use smb_tests::sync::{connect_shopify, sync};
use smb_tests::{App, Owner};

const AS_OF: &str = "2025-01-31T12:00:00-05:00";

async fn data() -> FakeSaas {
    FakeSaas::start(Dataset::generate(Sizes {
        orders: 200,
        customers: 30,
        products: 5,
        charges: 0,
        stripe_customers: 0,
    }))
    .await
}

fn env(primary: &FakeLlm, fallback: &FakeLlm, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("SMB_LLM__PRIMARY__KIND", "openai".to_string()),
        ("SMB_LLM__PRIMARY__BASE_URL", format!("{}/v1", primary.url)),
        ("SMB_LLM__PRIMARY__MODEL", "gpt-test".into()),
        ("SMB_LLM__PRIMARY__API_KEY", "sk-test".into()),
        ("SMB_LLM__FALLBACK__KIND", "anthropic".into()),
        ("SMB_LLM__FALLBACK__BASE_URL", fallback.url.clone()),
        ("SMB_LLM__FALLBACK__MODEL", "claude-test".into()),
        ("SMB_LLM__TIMEOUT_MS", "1500".into()),
        ("SMB_LLM__MAX_RETRIES", "2".into()),
        // The breaker has its own unit test; here every case reaches the providers.
        ("SMB_LLM__BREAKER_FAILURES", "1000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

async fn start(env: &[(String, String)], fake: &FakeSaas) -> (App, Owner) {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = App::start(&pairs);
    let owner = app.owner("America/New_York").await;
    let c = connect_shopify(&app, &owner, fake).await;
    sync(&app, &owner, &c).await;
    (app, owner)
}

async fn ask(app: &App, owner: &Owner, q: &str) -> Value {
    ask_in(app, owner, q, None).await
}

async fn ask_in(app: &App, owner: &Owner, q: &str, conversation: Option<&str>) -> Value {
    let mut body = json!({"query": q, "as_of": AS_OF});
    if let Some(c) = conversation {
        body["conversation_id"] = json!(c);
    }
    let (s, b, _) = app
        .call("POST", "/v1/ai/query", Some(body), Some(&owner.token))
        .await;
    assert_eq!(s, 200, "{q}: {b}");
    b
}

/// `POST /v1/ai/query` with `stream: true`: the text deltas and the final answer.
async fn ask_streamed(app: &App, owner: &Owner, q: &str) -> (String, Value) {
    let resp = app
        .http
        .post(format!("{}/v1/ai/query", app.url))
        .bearer_auth(&owner.token)
        .json(&json!({"query": q, "as_of": AS_OF, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = resp.text().await.unwrap();
    let (mut deltas, mut done) = (String::new(), Value::Null);
    for event in body.split("\n\n") {
        let name = event
            .lines()
            .find_map(|l| l.strip_prefix("event:"))
            .map(str::trim);
        let data: String = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        match name {
            Some("delta") => deltas.push_str(
                serde_json::from_str::<Value>(&data).unwrap()["text"]
                    .as_str()
                    .unwrap(),
            ),
            Some("done") => done = serde_json::from_str(&data).unwrap(),
            Some("error") => panic!("error event: {data}"),
            _ => {}
        }
    }
    (deltas, done)
}

/// Numbers in a text, as the platform checks them.
fn numbers(t: &str) -> Vec<String> {
    smb_orchestrator::llm::tasks::numbers(t)
}

#[tokio::test]
async fn every_failure_ends_in_a_correct_answer_from_the_next_link() {
    let fake = data().await;
    let (primary, fallback) = (FakeLlm::start().await, FakeLlm::start().await);
    let (app, owner) = start(&env(&primary, &fallback, &[]), &fake).await;
    let (plain, plain_owner) = start(&[], &fake).await;
    let deterministic = |q: &'static str| {
        let (plain, plain_owner) = (&plain, &plain_owner);
        async move { ask(plain, plain_owner, q).await }
    };

    // 1. A healthy primary phrases the answer; the numbers are the platform's.
    let q = "What was my revenue last month?";
    let d = deterministic(q).await;
    let b = ask(&app, &owner, q).await;
    assert_eq!(b["result"]["value"], d["result"]["value"]);
    assert_eq!(b["result"]["llm"]["provider"], "openai", "{b}");
    assert_eq!(b["result"]["llm"]["model"], "gpt-test");
    assert_eq!(b["result"]["llm"]["fallback_used"], false);
    assert_eq!(b["result"]["llm"]["tokens_in"], 50);
    assert_eq!(d["result"].get("llm"), None, "no provider, no llm field");

    // 2. 429 with Retry-After, then success: retried at the primary.
    primary.reset();
    primary.script(vec![Behaviour::Status(429, Some(0))]);
    let b = ask(&app, &owner, "how many orders did I get last month").await;
    assert_eq!(b["result"]["llm"]["provider"], "openai", "{b}");
    assert_eq!(b["result"]["llm"]["fallback_used"], false);
    assert_eq!(primary.requests().len(), 2, "one retry");

    // 3. 500s until the retries are spent: the fallback answers.
    primary.reset();
    primary.always(Behaviour::Status(500, None));
    let q = "what was my average order value last month";
    let d = deterministic(q).await;
    let b = ask(&app, &owner, q).await;
    assert_eq!(b["result"]["llm"]["provider"], "anthropic", "{b}");
    assert_eq!(b["result"]["llm"]["fallback_used"], true);
    assert_eq!(b["result"]["value"], d["result"]["value"]);
    assert_eq!(primary.requests().len(), 3, "first try and two retries");

    // 4. Invented numbers are refused; the fallback's text is used.
    primary.reset();
    primary.script(vec![Behaviour::Text(
        "You made $1,234,567.89 last month.".into(),
    )]);
    let q = "what were my refunds last month";
    let b = ask(&app, &owner, q).await;
    assert_eq!(b["result"]["llm"]["provider"], "anthropic", "{b}");
    assert!(!b["answer"].as_str().unwrap().contains("1,234,567.89"));

    // 5. Both fail (a primary slower than the deadline, a fallback that errors): the deterministic answer,
    //    within the deadline, with the same text and numbers.
    primary.reset();
    fallback.reset();
    primary.always(Behaviour::Delay(Duration::from_secs(5)));
    fallback.always(Behaviour::Status(500, None));
    let q = "how many new customers did I get last month";
    let d = deterministic(q).await;
    let t = Instant::now();
    let b = ask(&app, &owner, q).await;
    assert!(
        t.elapsed() < Duration::from_millis(3000),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(b["answer"], d["answer"], "{b}");
    assert_eq!(b["result"]["value"], d["result"]["value"]);
    assert_eq!(b["result"].get("llm"), None);

    // 6. Understanding: malformed tool arguments from the primary, a valid plan from the fallback.
    primary.reset();
    fallback.reset();
    primary.script(vec![Behaviour::ToolArgs(
        "{\"kind\": \"metric\", \"metric\":".into(),
    )]);
    fallback.script(vec![Behaviour::ToolArgs(
        json!({"kind": "metric", "metric": "revenue", "start": "2024-12-01", "end": "2024-12-31", "compare": "none", "grain": "none", "rank_by": "none", "top_n": 5, "product": "", "customer": "", "source": "any"}).to_string(),
    )]);
    let b = ask(&app, &owner, "how did the shop do over the festive season").await;
    let d = deterministic("revenue in December 2024").await;
    assert_eq!(b["intent"], "metrics", "{b}");
    assert_eq!(b["result"]["value"], d["result"]["value"], "{b}");
    assert_eq!(b["result"]["period"]["start"], "2024-12-01");
    assert_eq!(b["result"]["llm"]["fallback_used"], true);
    // A plan naming a product the shop does not have is refused by validation, and the grammar answers.
    primary.reset();
    fallback.reset();
    let bogus = json!({"kind": "metric", "metric": "revenue", "start": "2024-12-01", "end": "2024-12-31", "compare": "none", "grain": "none", "rank_by": "none", "top_n": 5, "product": "Moon Cheese", "customer": "", "source": "any"}).to_string();
    primary.script(vec![Behaviour::ToolArgs(bogus.clone())]);
    fallback.script(vec![Behaviour::ToolArgs(bogus)]);
    let b = ask(&app, &owner, "sales of Moon Cheese in december").await;
    assert!(
        b["result"].get("value").is_none(),
        "no unfiltered total: {b}"
    );

    // 7. Streaming: the primary's stream fails before its first token, the fallback streams.
    primary.reset();
    fallback.reset();
    primary.script(vec![Behaviour::StreamDies(String::new())]);
    let (deltas, done) = ask_streamed(&app, &owner, "what was my revenue in December 2024").await;
    assert_eq!(done["result"]["llm"]["provider"], "anthropic", "{done}");
    assert_eq!(deltas, done["answer"].as_str().unwrap());

    // 8. A stream that dies mid-way: the final answer is the deterministic one.
    primary.reset();
    fallback.reset();
    primary.script(vec![Behaviour::StreamDies("You made ".into())]);
    let q = "how many orders did I get in December 2024";
    let d = deterministic(q).await;
    let (deltas, done) = ask_streamed(&app, &owner, q).await;
    assert!(deltas.starts_with("You made "), "{deltas}");
    assert_eq!(done["answer"], d["answer"], "{done}");
    assert_eq!(
        numbers(done["answer"].as_str().unwrap()),
        numbers(d["answer"].as_str().unwrap())
    );

    // Without a provider, a streamed answer is one delta and the same answer.
    let (deltas, done) = ask_streamed(&plain, &plain_owner, q).await;
    assert_eq!(deltas, done["answer"].as_str().unwrap());
    assert_eq!(done["answer"], d["answer"]);
}

#[tokio::test]
async fn follow_ups_continue_the_conversation_and_budgets_are_kept() {
    let fake = data().await;
    let (primary, fallback) = (FakeLlm::start().await, FakeLlm::start().await);
    let (app, owner) = start(
        &env(
            &primary,
            &fallback,
            &[("SMB_LLM__MONTHLY_TOKEN_BUDGET", "100")],
        ),
        &fake,
    )
    .await;
    let first = ask(&app, &owner, "What was my revenue last month?").await;
    let conv = first["conversation_id"].as_str().unwrap().to_string();
    assert_eq!(conv.len(), 36, "{first}");
    let next = ask_in(&app, &owner, "and the month before?", Some(&conv)).await;
    assert_eq!(next["conversation_id"], conv.as_str());
    assert_eq!(next["result"]["metric"], "revenue", "{next}");
    assert_eq!(next["result"]["period"]["start"], "2024-11-01");
    assert_eq!(next["result"]["period"]["end"], "2024-11-30");
    let next = ask_in(&app, &owner, "what about orders?", Some(&conv)).await;
    assert_eq!(next["result"]["metric"], "orders", "{next}");
    assert_eq!(next["result"]["period"]["start"], "2024-11-01");
    // The same words outside the conversation are a question of their own.
    let alone = ask(&app, &owner, "and the month before?").await;
    assert_ne!(alone["conversation_id"], conv.as_str());
    // Another tenant cannot continue this conversation.
    let other = app.owner("UTC").await;
    let theirs = ask_in(&app, &other, "what about orders?", Some(&conv)).await;
    assert_ne!(
        theirs["result"]["period"]["start"], "2024-11-01",
        "{theirs}"
    );
    // A malformed id is a clear error.
    let (s, e, _) = app
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": "revenue", "conversation_id": "nope"})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 400, "{e}");

    // Budget: 100 tokens; the first answers used 70 each, so the tenant is now over it.
    let b = ask(&app, &owner, "how many refunds last month").await;
    assert!(
        b["answer"].as_str().unwrap().contains("AI allowance"),
        "{b}"
    );
    assert_eq!(b["result"].get("llm"), None);
}
