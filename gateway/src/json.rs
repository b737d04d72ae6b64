//! The JSON body extractor: reads the body under the configured limit and parses it, answering `413` for
//! an oversized body and `400` naming the problem for malformed JSON, a missing field or a wrong type.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use smb_core::{Error, ErrorCode};

pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    Error::new(
                        ErrorCode::PayloadTooLarge,
                        "request body is too large; send a smaller body",
                    )
                } else {
                    Error::invalid("could not read the request body")
                }
            })?;
        let bytes = if bytes.is_empty() {
            axum::body::Bytes::from_static(b"{}")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Data => format!("invalid request body: {e}"),
                _ => "request body is not valid JSON".to_string(),
            };
            Error::invalid(what)
        })
    }
}
