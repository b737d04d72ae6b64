//! Local language-model servers speaking both wire formats: OpenAI chat completions
//! (`POST /v1/chat/completions`, tool calls, SSE streaming) and Anthropic Messages (`POST /v1/messages`,
//! tool use, SSE streaming). Each request takes the next scripted behaviour; when the script is empty the
//! server behaves well: a plan request gets `unsupported`, a phrasing request gets the given answer back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answer with this status (and `Retry-After` seconds, when given).
    Status(u16, Option<u32>),
    /// Wait this long, then behave well.
    Delay(Duration),
    /// Call the tool with these raw arguments.
    ToolArgs(String),
    /// Reply with this text.
    Text(String),
    /// Stream this text, then drop the connection without finishing.
    StreamDies(String),
    /// Behave well.
    Good,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Behaviour>,
    /// Every request body received.
    requests: Vec<Value>,
    /// What to do when the script is empty (default: behave well).
    always: Option<Behaviour>,
}

#[derive(Clone)]
pub struct FakeLlm {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeLlm {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, inner }
    }

    /// The next requests behave like this, in order.
    pub fn script(&self, b: Vec<Behaviour>) {
        self.inner.lock().unwrap().script.extend(b);
    }

    /// Every request behaves like this once the script is used up.
    pub fn always(&self, b: Behaviour) {
        self.inner.lock().unwrap().always = Some(b);
    }

    pub fn requests(&self) -> Vec<Value> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn reset(&self) {
        let mut i = self.inner.lock().unwrap();
        i.script.clear();
        i.requests.clear();
        i.always = None;
    }
}

fn next(inner: &Arc<Mutex<Inner>>, body: &Value) -> Behaviour {
    let mut i = inner.lock().unwrap();
    i.requests.push(body.clone());
    i.script
        .pop_front()
        .or_else(|| i.always.clone())
        .unwrap_or(Behaviour::Good)
}

/// The well-behaved reply: the answer given in the request, or `unsupported` for a plan.
fn good_text(body: &Value) -> String {
    let all = body.to_string();
    let user = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    match user.split_once("Answer: ") {
        Some((_, rest)) => rest.split('\n').next().unwrap_or("").to_string(),
        None if all.contains("SMB Command") => {
            "Hello! Ask me about your sales, orders or customers.".into()
        }
        None => "Here is your answer.".into(),
    }
}

fn wants_tool(body: &Value) -> bool {
    body.get("tools").is_some()
}

fn status(code: u16, retry_after: Option<u32>) -> Response<Body> {
    let mut r = Response::builder().status(StatusCode::from_u16(code).unwrap());
    if let Some(s) = retry_after {
        r = r.header("retry-after", s.to_string());
    }
    r.header("content-type", "application/json")
        .body(Body::from(
            json!({"error": {"message": "scripted failure", "type": "server_error"}}).to_string(),
        ))
        .unwrap()
}

fn sse(events: Vec<String>, finish: bool) -> Response<Body> {
    use futures::StreamExt;
    // A dying stream gets its text out first, then breaks the connection.
    let stream = futures::stream::iter(events.into_iter().map(Ok::<_, std::io::Error>)).chain(
        futures::stream::iter((!finish).then_some(())).then(|()| async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Err(std::io::Error::other("connection dropped"))
        }),
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn openai(State(inner): State<Arc<Mutex<Inner>>>, body: axum::Json<Value>) -> Response<Body> {
    let body = body.0;
    let mut b = next(&inner, &body);
    if let Behaviour::Delay(d) = b {
        tokio::time::sleep(d).await;
        b = Behaviour::Good;
    }
    let stream = body["stream"].as_bool().unwrap_or(false);
    let (text, args) = match b {
        Behaviour::Status(c, ra) => return status(c, ra),
        Behaviour::ToolArgs(a) => (None, Some(a)),
        Behaviour::Text(t) => (Some(t), None),
        Behaviour::StreamDies(t) if stream => {
            let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": t}, "finish_reason": null}]});
            return sse(vec![format!("data: {chunk}\n\n")], false);
        }
        _ if wants_tool(&body) => (
            None,
            Some(json!({"kind": "unsupported", "metric": "revenue", "start": "2025-01-01", "end": "2025-01-01", "compare": "none", "grain": "none", "rank_by": "none", "top_n": 5, "product": "", "customer": "", "source": "any"}).to_string()),
        ),
        _ => (Some(good_text(&body)), None),
    };
    let usage = json!({"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70});
    let tool_calls = args.as_ref().map(|a| {
        json!([{"id": "call_1", "type": "function", "function": {"name": "answer_plan", "arguments": a}}])
    });
    if !stream {
        let mut message = json!({"role": "assistant", "content": text});
        if let Some(tc) = tool_calls {
            message["tool_calls"] = tc;
        }
        let v = json!({"id": "c", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage});
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap();
    }
    let mut events = Vec::new();
    let text = text.unwrap_or_default();
    let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
    for w in words {
        let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake",
            "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]});
        events.push(format!("data: {c}\n\n"));
    }
    let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    events.push(format!("data: {c}\n\n"));
    let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake", "choices": [], "usage": usage});
    events.push(format!("data: {c}\n\n"));
    events.push("data: [DONE]\n\n".into());
    sse(events, true)
}

async fn anthropic(
    State(inner): State<Arc<Mutex<Inner>>>,
    body: axum::Json<Value>,
) -> Response<Body> {
    let body = body.0;
    let mut b = next(&inner, &body);
    if let Behaviour::Delay(d) = b {
        tokio::time::sleep(d).await;
        b = Behaviour::Good;
    }
    let stream = body["stream"].as_bool().unwrap_or(false);
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let (text, args) = match b {
        Behaviour::Status(c, ra) => return status(c, ra),
        Behaviour::ToolArgs(a) => (None, Some(a)),
        Behaviour::Text(t) => (Some(t), None),
        Behaviour::StreamDies(t) if stream => {
            return sse(
                vec![
                    ev("message_start", json!({"type": "message_start", "message": {"usage": {"input_tokens": 50}}})),
                    ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})),
                ],
                false,
            );
        }
        _ if wants_tool(&body) => (
            None,
            Some(json!({"kind": "unsupported", "metric": "revenue", "start": "2025-01-01", "end": "2025-01-01", "compare": "none", "grain": "none", "rank_by": "none", "top_n": 5, "product": "", "customer": "", "source": "any"}).to_string()),
        ),
        _ => (Some(good_text(&body)), None),
    };
    if !stream {
        let content = match (&text, &args) {
            (_, Some(a)) => {
                let input: Value = serde_json::from_str(a).unwrap_or(Value::String(a.clone()));
                json!([{"type": "tool_use", "id": "t1", "name": "answer_plan", "input": input}])
            }
            (Some(t), None) => json!([{"type": "text", "text": t}]),
            _ => json!([]),
        };
        let v = json!({"id": "m", "type": "message", "role": "assistant", "content": content,
            "model": "fake", "stop_reason": "end_turn", "usage": {"input_tokens": 40, "output_tokens": 15}});
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap();
    }
    let mut events = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"usage": {"input_tokens": 40}}}),
    )];
    for w in text.unwrap_or_default().split_inclusive(' ') {
        events.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
        ));
    }
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}}),
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    sse(events, true)
}
