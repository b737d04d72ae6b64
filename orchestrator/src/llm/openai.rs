//! OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp) through `async-openai`, with our
//! retry policy as its tower middleware: 429/5xx/connection failures are retried with jittered backoff or
//! the server's Retry-After, within the question's deadline (a task-local, set per call).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::CreateChatCompletionRequest;
use futures::StreamExt;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use super::{Backoff, LlmError, LlmReply, LlmRequest, Provider, Role, parse_retry_after};

tokio::task_local! {
    /// The retry budget of the call in progress.
    static BACKOFF: std::cell::RefCell<Backoff>;
}

#[derive(Clone)]
struct RetryPolicy;

impl tower::retry::Policy<HttpRequestFactory, reqwest013::Response, OpenAIError> for RetryPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    fn retry(
        &mut self,
        _req: &mut HttpRequestFactory,
        result: &mut Result<reqwest013::Response, OpenAIError>,
    ) -> Option<Self::Future> {
        let retry_after = match result {
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
            Err(OpenAIError::Reqwest(e)) if e.is_connect() => None,
            _ => return None,
        };
        let delay = BACKOFF
            .try_with(|b| b.borrow_mut().next(retry_after))
            .ok()
            .flatten()?;
        tracing::debug!(?delay, "retrying the OpenAI-compatible provider");
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, req: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        Some(req.clone())
    }
}

pub struct OpenAi {
    client: Client<OpenAIConfig>,
    model: String,
    max_retries: u32,
}

impl OpenAi {
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        model: &str,
        max_retries: u32,
    ) -> anyhow::Result<Self> {
        // reqwest 0.13 under async-openai is built without a default TLS provider: install ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = OpenAIConfig::new().with_api_base(base_url.trim_end_matches('/'));
        if let Some(k) = api_key {
            config = config.with_api_key(k);
        }
        let http = reqwest013::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let service = tower::ServiceBuilder::new()
            .retry(RetryPolicy)
            .service(ReqwestService::new(http.clone()));
        let client = Client::build(http, config).with_http_service(service);
        Ok(Self {
            client,
            model: model.to_string(),
            max_retries,
        })
    }

    fn body(
        &self,
        req: &LlmRequest,
        stream: bool,
    ) -> Result<CreateChatCompletionRequest, LlmError> {
        let mut messages = vec![json!({"role": "system", "content": req.system})];
        for m in &req.messages {
            messages.push(json!({
                "role": if m.role == Role::User { "user" } else { "assistant" },
                "content": m.content,
            }));
        }
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_completion_tokens": req.max_tokens,
            "temperature": 0,
        });
        if let Some(t) = &req.tool {
            body["tools"] = json!([{
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.schema, "strict": true},
            }]);
            body["tool_choice"] = json!({"type": "function", "function": {"name": t.name}});
        }
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        serde_json::from_value(body).map_err(|e| LlmError::Fatal(format!("request: {e}")))
    }
}

fn error(e: OpenAIError) -> LlmError {
    match e {
        OpenAIError::ApiError(r)
            if r.status_code.as_u16() == 429 || r.status_code.is_server_error() =>
        {
            LlmError::Retryable {
                msg: r.to_string(),
                retry_after: None,
            }
        }
        other => LlmError::Fatal(other.to_string()),
    }
}

/// Text, tool arguments and usage out of a completion (or a stream chunk), read as JSON so that fields an
/// OpenAI-compatible server leaves out do not matter.
fn read(v: &Json, reply: &mut LlmReply) -> Option<String> {
    let choice = &v["choices"][0];
    let msg = if choice["delta"].is_object() {
        &choice["delta"]
    } else {
        &choice["message"]
    };
    let text = msg["content"].as_str().map(str::to_string);
    if let Some(calls) = msg["tool_calls"].as_array() {
        for c in calls {
            if let Some(a) = c["function"]["arguments"].as_str() {
                reply.tool_args.get_or_insert_with(String::new).push_str(a);
            }
        }
    }
    if let Some(u) = v["usage"].as_object() {
        reply.tokens_in = u.get("prompt_tokens").and_then(Json::as_u64).unwrap_or(0);
        reply.tokens_out = u
            .get("completion_tokens")
            .and_then(Json::as_u64)
            .unwrap_or(0);
    }
    text
}

#[async_trait::async_trait]
impl Provider for OpenAi {
    fn kind(&self) -> &'static str {
        "openai"
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
        let backoff = std::cell::RefCell::new(Backoff::new(self.max_retries, deadline));
        BACKOFF
            .scope(backoff, async {
                let mut reply = LlmReply::default();
                match deltas {
                    None => {
                        let resp = self
                            .client
                            .chat()
                            .create(self.body(req, false)?)
                            .await
                            .map_err(error)?;
                        let v = serde_json::to_value(&resp)
                            .map_err(|e| LlmError::Fatal(e.to_string()))?;
                        reply.text = read(&v, &mut reply).unwrap_or_default();
                    }
                    Some(out) => {
                        let mut stream = self
                            .client
                            .chat()
                            .create_stream(self.body(req, true)?)
                            .await
                            .map_err(error)?;
                        let mut finished = false;
                        while let Some(chunk) = stream.next().await {
                            let chunk = match chunk {
                                Ok(c) => c,
                                Err(e) if reply.text.is_empty() => return Err(error(e)),
                                Err(e) => return Err(LlmError::BrokenStream(e.to_string())),
                            };
                            let v = serde_json::to_value(&chunk)
                                .map_err(|e| LlmError::Fatal(e.to_string()))?;
                            finished |= !v["choices"][0]["finish_reason"].is_null();
                            if let Some(t) = read(&v, &mut reply)
                                && !t.is_empty()
                            {
                                reply.text.push_str(&t);
                                let _ = out.send(t).await;
                            }
                        }
                        if !finished {
                            return Err(if reply.text.is_empty() {
                                LlmError::Fatal("the stream ended before the answer".into())
                            } else {
                                LlmError::BrokenStream(
                                    "the stream ended before the answer did".into(),
                                )
                            });
                        }
                    }
                }
                Ok(reply)
            })
            .await
    }
}
