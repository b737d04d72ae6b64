//! Signed webhooks from Shopify and Stripe: verified on the raw bytes in constant time before any parsing,
//! deduplicated by the source's event id, and accepted only once the delivery and its event are committed
//! (inbox row + outbox row, one transaction). Workers apply the events with the same idempotent upserts as
//! syncs; scheduled syncs remain the gap-filler for deliveries a source never made.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use smb_core::Error;
use smb_core::bus::{Message, topics};
use smb_core::crypto::Sealer;
use smb_core::ids::{ConnectorId, TenantId};
use smb_core::outbox::Outbox;
use smb_core::store::{Db, now_ms};
use smb_proto::connectors::v1 as pb;
use smb_proto::connectors::v1::webhooks_service_server::WebhooksService;
use tonic::{Request, Response, Status};

use crate::messages::RawMessage;
use crate::store;

/// Stripe's signature tolerance.
pub const STRIPE_TOLERANCE_SECS: i64 = 300;

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length")
}

/// `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body.
pub fn verify_shopify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&expected).is_ok()
}

#[derive(Debug, PartialEq, Eq)]
pub enum StripeCheck {
    Valid,
    BadSignature,
    /// Signed, but outside the tolerance (a replay or a skewed clock).
    Stale,
}

/// `Stripe-Signature: t=…,v1=…[,v1=…]` over `"{t}.{body}"`; any `v1` may match (secret rotation).
pub fn verify_stripe(secret: &[u8], body: &[u8], header: &str, now_secs: i64) -> StripeCheck {
    let mut t: Option<i64> = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse().ok(),
            Some(("v1", v)) => {
                if let Ok(b) = hex::decode(v) {
                    sigs.push(b);
                }
            }
            _ => {}
        }
    }
    let Some(t) = t else {
        return StripeCheck::BadSignature;
    };
    let mut m = mac(secret);
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    // Each candidate is compared in constant time; all are checked.
    let matched = sigs
        .iter()
        .fold(false, |acc, s| m.clone().verify_slice(s).is_ok() | acc);
    if !matched {
        StripeCheck::BadSignature
    } else if (now_secs - t).abs() > STRIPE_TOLERANCE_SECS {
        StripeCheck::Stale
    } else {
        StripeCheck::Valid
    }
}

/// The stream a Shopify topic changes (`None`: not processed).
pub fn shopify_stream(topic: &str) -> Option<&'static str> {
    match topic {
        "orders/create" | "orders/updated" | "orders/paid" | "orders/cancelled" => Some("orders"),
        "refunds/create" => Some("refunds"),
        "customers/create" | "customers/update" => Some("customers"),
        "products/create" | "products/update" => Some("products"),
        // Deletions carry only the id.
        "orders/delete" => Some("orders_deleted"),
        "customers/delete" => Some("customers_deleted"),
        "products/delete" => Some("products_deleted"),
        _ => None,
    }
}

/// The stream a Stripe event type changes (`None`: not processed).
pub fn stripe_stream(kind: &str) -> Option<&'static str> {
    match kind {
        "charge.succeeded" | "charge.updated" | "charge.refunded" | "charge.failed"
        | "charge.captured" => Some("charges"),
        "customer.created" | "customer.updated" => Some("customers"),
        "customer.deleted" => Some("customers_deleted"),
        _ => None,
    }
}

pub struct WebhooksServiceImpl {
    db: Db,
    sealer: Sealer,
    outbox: Outbox,
}

fn not_found() -> Error {
    Error::not_found(
        "no webhook endpoint for this connector; check the URL, and set config.webhook_secret on the connector",
    )
}

fn bad_signature() -> Error {
    Error::unauthenticated("webhook signature does not match; check the connector's webhook secret")
}

impl WebhooksServiceImpl {
    pub fn new(db: Db, sealer: Sealer, outbox: Outbox) -> Self {
        Self { db, sealer, outbox }
    }

    pub async fn receive(
        &self,
        req: pb::ReceiveWebhookRequest,
    ) -> Result<pb::ReceiveWebhookResponse, Error> {
        let connector: ConnectorId = req.connector_id.parse().map_err(|_| not_found())?;
        let endpoint = store::webhook_endpoint(&self.db, connector.as_str())
            .await?
            .filter(|e| e.kind == req.source)
            .ok_or_else(not_found)?;
        let secret = self.sealer.open(&endpoint.secret_sealed)?;
        let header = |k: &str| req.headers.get(k).map(String::as_str).unwrap_or_default();
        let body = &req.body;

        // Verify first, on the raw bytes; only then parse.
        let (event_id, stream, record, version_ms, topic) = match req.source.as_str() {
            "shopify" => {
                if !verify_shopify(&secret, body, header("x-shopify-hmac-sha256")) {
                    return Err(bad_signature());
                }
                let id = header("x-shopify-webhook-id").trim().to_string();
                let topic = header("x-shopify-topic").trim().to_string();
                if id.is_empty() || topic.is_empty() {
                    return Err(Error::invalid(
                        "X-Shopify-Webhook-Id and X-Shopify-Topic headers are required",
                    ));
                }
                let record: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|_| Error::invalid("webhook body is not JSON"))?;
                (id, shopify_stream(&topic), record, None, topic)
            }
            "stripe" => {
                match verify_stripe(&secret, body, header("stripe-signature"), now_ms() / 1000) {
                    StripeCheck::Valid => {}
                    StripeCheck::BadSignature => return Err(bad_signature()),
                    StripeCheck::Stale => {
                        return Err(Error::invalid(format!(
                            "webhook timestamp is more than {STRIPE_TOLERANCE_SECS} s away from now; replays are refused"
                        )));
                    }
                }
                let event: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|_| Error::invalid("webhook body is not JSON"))?;
                let id = event["id"].as_str().unwrap_or_default().to_string();
                let kind = event["type"].as_str().unwrap_or_default().to_string();
                if id.is_empty() || kind.is_empty() || !event["data"]["object"].is_object() {
                    return Err(Error::invalid(
                        "a Stripe event needs id, type and data.object",
                    ));
                }
                let version = event["created"].as_i64().map(|c| c * 1000);
                (
                    id,
                    stripe_stream(&kind),
                    event["data"]["object"].clone(),
                    version,
                    kind,
                )
            }
            _ => return Err(not_found()),
        };
        let Some(stream) = stream else {
            return Ok(pb::ReceiveWebhookResponse {
                duplicate: false,
                event_id,
                ignored: true,
            });
        };
        let entity = match &record["id"] {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let msg = RawMessage::Webhook {
            tenant_id: endpoint.tenant_id.clone(),
            connector_id: connector.to_string(),
            source: req.source.clone(),
            stream: stream.to_string(),
            event_id: event_id.clone(),
            record,
            version_ms,
        };
        let message = Message {
            topic: topics::WEBHOOK_RECEIVED.into(),
            // One entity's changes stay in order.
            key: format!("{connector}:{stream}:{entity}"),
            payload: serde_json::to_string(&msg).map_err(|e| Error::internal("encode", e))?,
            traceparent: smb_core::telemetry::traceparent(),
        };
        let tenant: TenantId = endpoint.tenant_id.parse()?;
        let fresh = store::accept_webhook(
            &self.db,
            &tenant,
            connector.as_str(),
            &event_id,
            &topic,
            &self.outbox,
            &[message],
            now_ms(),
        )
        .await?;
        if fresh {
            self.outbox.poke();
        }
        Ok(pb::ReceiveWebhookResponse {
            duplicate: !fresh,
            event_id,
            ignored: false,
        })
    }
}

#[tonic::async_trait]
impl WebhooksService for WebhooksServiceImpl {
    async fn receive(
        &self,
        req: Request<pb::ReceiveWebhookRequest>,
    ) -> Result<Response<pb::ReceiveWebhookResponse>, Status> {
        // Counted by source and outcome; a rejection by its reason (bad signature, invalid, unknown
        // connector). The source is the caller's word: only the two known ones become labels.
        let source = match req.get_ref().source.as_str() {
            "shopify" => "shopify",
            "stripe" => "stripe",
            _ => "other",
        };
        let res = WebhooksServiceImpl::receive(self, req.into_inner()).await;
        let (outcome, reason) = match &res {
            Ok(r) if r.ignored => ("ignored", ""),
            Ok(r) if r.duplicate => ("duplicate", ""),
            Ok(_) => ("accepted", ""),
            Err(e) => (
                "rejected",
                match e.code {
                    smb_core::ErrorCode::Unauthenticated => "bad_signature",
                    smb_core::ErrorCode::InvalidArgument => "invalid",
                    smb_core::ErrorCode::NotFound => "unknown_connector",
                    other => other.as_str(),
                },
            ),
        };
        metrics::counter!("smb_webhooks_total", "source" => source, "outcome" => outcome, "reason" => reason)
            .increment(1);
        Ok(Response::new(res?))
    }
}

/// Header and body helpers for tests and benchmarks that sign as the sources do.
pub mod sign {
    use super::*;

    pub fn shopify(secret: &[u8], body: &[u8]) -> String {
        let mut m = mac(secret);
        m.update(body);
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    }

    pub fn stripe_v1(secret: &[u8], t: i64, body: &[u8]) -> String {
        let mut m = mac(secret);
        m.update(t.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        hex::encode(m.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shopify_signatures() {
        let body = br#"{"id":1}"#;
        let good = sign::shopify(b"secret", body);
        assert!(verify_shopify(b"secret", body, &good));
        assert!(!verify_shopify(b"other", body, &good));
        assert!(!verify_shopify(b"secret", br#"{"id":2}"#, &good));
        assert!(!verify_shopify(b"secret", body, "not base64!"));
        assert!(!verify_shopify(b"secret", body, ""));
    }

    #[test]
    fn stripe_signatures_tolerance_and_rotation() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_750_000_000;
        let v1 = sign::stripe_v1(b"whsec_new", now, body);
        let old = sign::stripe_v1(b"whsec_old", now, body);
        let h = format!("t={now},v1={v1}");
        assert_eq!(
            verify_stripe(b"whsec_new", body, &h, now),
            StripeCheck::Valid
        );
        // Rotation: the header carries one signature per active secret; ours may be any of them.
        let both = format!("t={now},v1={old},v1={v1}");
        assert_eq!(
            verify_stripe(b"whsec_new", body, &both, now),
            StripeCheck::Valid
        );
        assert_eq!(
            verify_stripe(b"whsec_old", body, &both, now),
            StripeCheck::Valid
        );
        assert_eq!(
            verify_stripe(b"whsec_x", body, &both, now),
            StripeCheck::BadSignature
        );
        assert_eq!(
            verify_stripe(b"whsec_new", body, &h, now + 301),
            StripeCheck::Stale
        );
        assert_eq!(
            verify_stripe(b"whsec_new", body, &h, now - 301),
            StripeCheck::Stale
        );
        assert_eq!(
            verify_stripe(b"whsec_new", body, &h, now + 300),
            StripeCheck::Valid
        );
        assert_eq!(
            verify_stripe(b"whsec_new", body, &format!("v1={v1}"), now),
            StripeCheck::BadSignature
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = format!("t={},v1={v1}", now + 1);
        assert_eq!(
            verify_stripe(b"whsec_new", body, &moved, now),
            StripeCheck::BadSignature
        );
    }
}
