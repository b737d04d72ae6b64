//! The JSON forms of messages that the HTTP routes show, in one place: the answer of `POST /v1/ai/query`
//! (its `result` keeps the shape the answer contract documents) and the actions of `/v1/actions`.
//!
//! Fields that do not apply are left out, as the contract says; a typed message cannot tell an empty list
//! from an absent one, so the few lists the contract shows even when empty (a ranking's `rows`, a metric's
//! `sources`, a search's `hits`) are written by what the result is.

use serde_json::{Map, Value, json};

use crate::common::v1::DateRange;
use crate::orchestrator::v1 as pb;
use pb::process_response::Result as Structured;

/// An action: the query result's `action`, and the `/v1/actions` routes.
pub fn action(a: &pb::Action) -> Value {
    let mut v = json!({
        "id": a.id,
        "type": a.r#type,
        "status": a.status,
        "params": a.params.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "preview": a.preview,
        "needs_owner": a.needs_owner,
        "proposed_by": a.proposed_by,
        "proposed_at": a.proposed_at,
        "expires_at": a.expires_at,
        "attempts": a.attempts,
    });
    for (k, val) in [
        ("decided_by", &a.decided_by),
        ("decided_at", &a.decided_at),
        ("finished_at", &a.finished_at),
        ("outcome", &a.outcome),
    ] {
        if !val.is_empty() {
            v[k] = json!(val);
        }
    }
    v
}

/// `metrics`, `search`, `action`, `conversation`; empty when unspecified.
pub fn intent_name(i: i32) -> &'static str {
    match pb::Intent::try_from(i).unwrap_or(pb::Intent::Unspecified) {
        pb::Intent::Metrics => "metrics",
        pb::Intent::Search => "search",
        pb::Intent::Action => "action",
        pb::Intent::Conversation => "conversation",
        pb::Intent::Unspecified => "",
    }
}

/// `mini-foundry`, `ops-copilot`, `assistant`; empty when unspecified.
pub fn module_name(m: i32) -> &'static str {
    match pb::Module::try_from(m).unwrap_or(pb::Module::Unspecified) {
        pb::Module::MiniFoundry => "mini-foundry",
        pb::Module::OpsCopilot => "ops-copilot",
        pb::Module::Assistant => "assistant",
        pb::Module::Unspecified => "",
    }
}

/// `day`, `week`, `month`, `quarter`; `None` when unspecified.
pub fn grain_name(g: i32) -> Option<&'static str> {
    match pb::Grain::try_from(g).unwrap_or(pb::Grain::Unspecified) {
        pb::Grain::Day => Some("day"),
        pb::Grain::Week => Some("week"),
        pb::Grain::Month => Some("month"),
        pb::Grain::Quarter => Some("quarter"),
        pb::Grain::Unspecified => None,
    }
}

/// The answer of `POST /v1/ai/query` (and the last event of its stream).
pub fn answer(r: &pb::ProcessResponse) -> Value {
    let mut out = json!({
        "answer": r.answer,
        "intent": intent_name(r.intent),
        "module": module_name(r.module),
        "result": result(r.result.as_ref(), r.llm.as_ref()),
        "response_time_ms": r.response_time_ms,
        "conversation_id": r.conversation_id,
    });
    if let Some(p) = &r.plan {
        out["plan"] = plan(p);
    }
    out
}

/// The answer's `result` object.
pub fn result(r: Option<&Structured>, llm: Option<&pb::LlmUsage>) -> Value {
    let mut v = match r {
        Some(Structured::Metrics(m)) => metrics(m),
        Some(Structured::Search(s)) => {
            let mut v = json!({
                "hits": s.hits.iter().map(hit).collect::<Vec<_>>(),
                "query": s.query,
            });
            if !s.mode.is_empty() {
                v["mode"] = json!(s.mode);
            }
            v
        }
        Some(Structured::Action(a)) => match &a.action {
            Some(a) => json!({ "action": action(a) }),
            None => json!({}),
        },
        Some(Structured::Conversation(_)) | None => json!({}),
    };
    if let Some(l) = llm {
        v["llm"] = json!({
            "provider": l.provider,
            "model": l.model,
            "fallback_used": l.fallback_used,
            "tokens_in": l.tokens_in,
            "tokens_out": l.tokens_out,
        });
    }
    v
}

fn range(r: &DateRange) -> Value {
    json!({"start": r.start, "end": r.end})
}

fn put_text(v: &mut Map<String, Value>, key: &str, text: &str) {
    if !text.is_empty() {
        v.insert(key.into(), json!(text));
    }
}

fn mentions(m: &[pb::Mention]) -> Value {
    m.iter()
        .map(|m| {
            let mut o = json!({"kind": m.kind, "mention": m.mention});
            if !m.candidates.is_empty() {
                o["candidates"] = json!(m.candidates);
            }
            o
        })
        .collect()
}

fn metrics(m: &pb::MetricsResult) -> Value {
    let mut v = Map::new();
    v.insert("metric".into(), json!(m.metric));
    if let Some(p) = &m.period {
        v.insert("period".into(), range(p));
    }
    put_text(&mut v, "timezone", &m.timezone);
    put_text(&mut v, "definition", &m.definition);
    put_text(&mut v, "product", &m.product);
    put_text(&mut v, "customer", &m.customer);
    put_text(&mut v, "source", &m.source);
    v.insert("sources".into(), json!(m.sources));
    if !m.freshness.is_empty() {
        let f: std::collections::BTreeMap<_, _> = m.freshness.iter().collect();
        v.insert("freshness".into(), json!(f));
    }
    if let Some(x) = m.value {
        v.insert("value".into(), json!(x));
    }
    if let Some(p) = &m.previous {
        v.insert(
            "previous".into(),
            json!({"period": p.period.as_ref().map(range), "value": p.value}),
        );
        v.insert("change_pct".into(), json!(p.change_pct));
    }
    let grain = grain_name(m.grain);
    if let Some(g) = grain {
        v.insert("grain".into(), json!(g));
    }
    if let Some(c) = &m.capped {
        v.insert("capped".into(), json!({"shown": c.shown, "total": c.total}));
    }
    if has_rows(m) {
        let rows: Vec<Value> = m
            .rows
            .iter()
            .map(|r| json!({"label": r.label, "value": r.value}))
            .collect();
        v.insert("rows".into(), Value::Array(rows));
    }
    if !m.other_currencies.is_empty() {
        // Named beside the sales in other currencies, to say which one the figures are in.
        put_text(&mut v, "currency", &m.currency);
        let rows: Vec<Value> = m
            .other_currencies
            .iter()
            .map(|c| json!({"currency": c.currency, "value": c.value}))
            .collect();
        v.insert("other_currencies".into(), Value::Array(rows));
    }
    if !m.unresolved.is_empty() {
        v.insert("unresolved".into(), mentions(&m.unresolved));
    }
    if !m.ambiguous.is_empty() {
        v.insert("ambiguous".into(), mentions(&m.ambiguous));
    }
    Value::Object(v)
}

/// Whether the result is a ranking or a breakdown: it always has its rows, none when nothing sold.
pub fn has_rows(m: &pb::MetricsResult) -> bool {
    !m.rows.is_empty() || m.grain != pb::Grain::Unspecified as i32 || m.metric.starts_with("top_")
}

fn hit(h: &pb::Hit) -> Value {
    let mut v = Map::new();
    for (k, t) in [
        ("kind", &h.kind),
        ("id", &h.id),
        ("title", &h.title),
        ("snippet", &h.snippet),
    ] {
        v.insert(k.into(), json!(t));
    }
    v.insert("score".into(), json!(h.score));
    v.insert("source".into(), json!(h.source));
    put_text(&mut v, "order", &h.order);
    put_text(&mut v, "order_id", &h.order_id);
    put_text(&mut v, "date", &h.date);
    if let Some(t) = h.total {
        v.insert("total".into(), json!(t));
    }
    put_text(&mut v, "currency", &h.currency);
    put_text(&mut v, "customer", &h.customer);
    put_text(&mut v, "customer_email", &h.customer_email);
    if !h.matched.is_empty() {
        v.insert("matched".into(), json!(h.matched));
    }
    if h.same_text > 0 {
        v.insert("same_text".into(), json!(h.same_text));
    }
    Value::Object(v)
}

/// The debug `plan`: what the question was read as, and the steps run.
pub fn plan(p: &pb::Plan) -> Value {
    let mut read = Map::new();
    read.insert("normalized".into(), json!(p.normalized));
    read.insert("intent".into(), json!(intent_name(p.intent)));
    put_text(&mut read, "conversation", &p.conversation);
    put_text(&mut read, "action", &p.action);
    put_text(&mut read, "metric", &p.metric);
    read.insert(
        "periods".into(),
        p.periods.iter().map(range).collect::<Vec<_>>().into(),
    );
    read.insert("default_period".into(), json!(p.default_period));
    put_text(&mut read, "comparison", &p.comparison);
    if let Some(g) = grain_name(p.grain) {
        read.insert("grain".into(), json!(g));
    }
    if p.top_n > 0 {
        read.insert("ranking".into(), json!({"n": p.top_n}));
    }
    let mut filters = Map::new();
    put_text(&mut filters, "product", &p.product);
    put_text(&mut filters, "customer", &p.customer);
    put_text(&mut filters, "source", &p.source);
    read.insert("filters".into(), Value::Object(filters));
    if !p.corrections.is_empty() {
        read.insert("corrections".into(), json!(p.corrections));
    }
    if !p.unresolved.is_empty() {
        read.insert("unresolved".into(), mentions(&p.unresolved));
    }
    if !p.ambiguous.is_empty() {
        read.insert("ambiguous".into(), mentions(&p.ambiguous));
    }
    if !p.search_words.is_empty() || !p.search_kinds.is_empty() {
        read.insert(
            "search".into(),
            json!({"words": p.search_words, "kinds": p.search_kinds}),
        );
    }
    read.insert("future".into(), json!(p.future));
    let steps: Vec<Value> = p
        .steps
        .iter()
        .map(|s| {
            let mut o = s
                .details
                .as_ref()
                .map(struct_to_json)
                .unwrap_or_else(|| json!({}));
            o["step"] = json!(s.step);
            o
        })
        .collect();
    json!({"plan": read, "steps": steps})
}

/// A JSON object as a `google.protobuf.Struct` (anything else is wrapped as `{"value": …}`).
pub fn json_to_struct(v: Value) -> prost_types::Struct {
    match json_to_value(v).kind {
        Some(prost_types::value::Kind::StructValue(s)) => s,
        other => prost_types::Struct {
            fields: [("value".to_string(), prost_types::Value { kind: other })].into(),
        },
    }
}

fn json_to_value(v: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A `google.protobuf.Struct` as a JSON object.
pub fn struct_to_json(s: &prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => json!(b),
        // Whole numbers (counts, ids) read back as integers.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => json!(*n as i64),
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::ListValue(l)) => l.values.iter().map(value_to_json).collect(),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_round_trip_keeps_json() {
        let v = json!({"step": "fetch", "n": 5, "share": 0.25, "period": {"start": "2025-05-01"}, "kinds": ["order"], "none": null, "ok": true});
        assert_eq!(struct_to_json(&json_to_struct(v.clone())), v);
    }

    #[test]
    fn a_ranking_without_sales_keeps_empty_rows_and_an_absent_value_stays_out() {
        let m = pb::MetricsResult {
            metric: "top_customers".into(),
            ..Default::default()
        };
        let v = result(Some(&Structured::Metrics(m)), None);
        assert_eq!(v["rows"], json!([]));
        assert!(v.get("value").is_none());
        assert_eq!(v["sources"], json!([]));
    }

    #[test]
    fn a_comparison_from_zero_has_a_null_change() {
        let m = pb::MetricsResult {
            metric: "revenue".into(),
            value: Some(10.0),
            previous: Some(pb::Comparison {
                period: Some(DateRange {
                    start: "2025-04-01".into(),
                    end: "2025-04-30".into(),
                }),
                value: 0.0,
                change_pct: None,
            }),
            ..Default::default()
        };
        let v = result(Some(&Structured::Metrics(m)), None);
        assert_eq!(v["change_pct"], Value::Null);
        assert_eq!(v["previous"]["period"]["end"], "2025-04-30");
        assert!(v.get("rows").is_none());
    }
}
