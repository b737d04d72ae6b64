//! Anthropic's Messages API (`POST /v1/messages`), with tool use and SSE streaming. Retries follow the same
//! [`Backoff`] as the OpenAI side: 429, 5xx (529 "overloaded" included) and connection failures.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use super::{Backoff, LlmError, LlmReply, LlmRequest, Provider, Role, parse_retry_after};

/// Largest reply body read (non-streaming).
const MAX_BODY: usize = 1024 * 1024;

pub struct Anthropic {
    http: reqwest013::Client,
    url: String,
    key: Option<String>,
    model: String,
    max_retries: u32,
}

impl Anthropic {
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        model: &str,
        max_retries: u32,
    ) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            http: reqwest013::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()?,
            url: format!("{}/v1/messages", base_url.trim_end_matches('/')),
            key: api_key,
            model: model.to_string(),
            max_retries,
        })
    }

    fn body(&self, req: &LlmRequest, stream: bool) -> Json {
        let messages: Vec<Json> = req
            .messages
            .iter()
            .map(|m| {
                json!({
                    "role": if m.role == Role::User { "user" } else { "assistant" },
                    "content": m.content,
                })
            })
            .collect();
        let mut body = json!({
            "model": self.model,
            "system": req.system,
            "messages": messages,
            "max_tokens": req.max_tokens,
            "temperature": 0,
        });
        if let Some(t) = &req.tool {
            body["tools"] =
                json!([{"name": t.name, "description": t.description, "input_schema": t.schema}]);
            body["tool_choice"] = json!({"type": "tool", "name": t.name});
        }
        if stream {
            body["stream"] = json!(true);
        }
        body
    }

    async fn send(&self, body: &Json, deadline: Instant) -> Result<reqwest013::Response, LlmError> {
        let mut backoff = Backoff::new(self.max_retries, deadline);
        loop {
            let mut rb = self
                .http
                .post(&self.url)
                .header("anthropic-version", "2023-06-01")
                .json(body);
            if let Some(k) = &self.key {
                rb = rb.header("x-api-key", k);
            }
            let (retry_after, msg) = match rb.send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => (
                    r.headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after),
                    format!("status {}", r.status()),
                ),
                Ok(r) => return Err(LlmError::Fatal(format!("status {}", r.status()))),
                Err(e) if e.is_connect() => (None, "connection failed".to_string()),
                Err(e) => return Err(LlmError::Fatal(e.to_string())),
            };
            match backoff.next(retry_after) {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    return Err(LlmError::Retryable {
                        msg,
                        retry_after: None,
                    });
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Provider for Anthropic {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn call(
        &self,
        req: &LlmRequest,
        deadline: Instant,
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<LlmReply, LlmError> {
        let resp = self
            .send(&self.body(req, deltas.is_some()), deadline)
            .await?;
        let mut reply = LlmReply::default();
        let Some(out) = deltas else {
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| LlmError::Fatal(e.to_string()))?;
            if bytes.len() > MAX_BODY {
                return Err(LlmError::Fatal("reply too large".into()));
            }
            let v: Json = serde_json::from_slice(&bytes)
                .map_err(|e| LlmError::Fatal(format!("reply: {e}")))?;
            for block in v["content"].as_array().into_iter().flatten() {
                match block["type"].as_str() {
                    Some("text") => reply.text.push_str(block["text"].as_str().unwrap_or("")),
                    Some("tool_use") => reply.tool_args = Some(block["input"].to_string()),
                    _ => {}
                }
            }
            reply.tokens_in = v["usage"]["input_tokens"].as_u64().unwrap_or(0);
            reply.tokens_out = v["usage"]["output_tokens"].as_u64().unwrap_or(0);
            return Ok(reply);
        };
        // Server-sent events: message_start (usage in), content_block_delta (text_delta | input_json_delta),
        // message_delta (usage out), message_stop.
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        let mut stopped = false;
        let broken = |reply: &LlmReply, m: String| {
            if reply.text.is_empty() {
                LlmError::Fatal(m)
            } else {
                LlmError::BrokenStream(m)
            }
        };
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| broken(&reply, e.to_string()))?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            if buf.len() > MAX_BODY {
                return Err(broken(&reply, "event too large".into()));
            }
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                let v: Json = serde_json::from_str(&data)
                    .map_err(|e| broken(&reply, format!("event: {e}")))?;
                match v["type"].as_str() {
                    Some("message_start") => {
                        reply.tokens_in =
                            v["message"]["usage"]["input_tokens"].as_u64().unwrap_or(0);
                    }
                    Some("content_block_delta") => {
                        let d = &v["delta"];
                        if let Some(t) = d["text"].as_str() {
                            reply.text.push_str(t);
                            let _ = out.send(t.to_string()).await;
                        }
                        if let Some(p) = d["partial_json"].as_str() {
                            reply.tool_args.get_or_insert_with(String::new).push_str(p);
                        }
                    }
                    Some("message_delta") => {
                        reply.tokens_out = v["usage"]["output_tokens"].as_u64().unwrap_or(0);
                    }
                    Some("message_stop") => stopped = true,
                    Some("error") => {
                        return Err(broken(&reply, v["error"]["message"].to_string()));
                    }
                    _ => {}
                }
            }
        }
        if !stopped {
            return Err(broken(
                &reply,
                "the stream ended before the answer did".into(),
            ));
        }
        Ok(reply)
    }
}
