//! Outgoing e-mail over SMTP (lettre). One message per call, with the action's id as its Message-ID, so a
//! retried send of the same action is recognisable as the same message by the receiving side.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How a send ended when it did not succeed.
#[derive(Debug)]
pub enum SendError {
    /// Certainly not delivered (no connection, or the server refused it): safe to retry.
    NotSent(String),
    /// The connection broke or timed out after the message may have been handed over: nobody knows.
    Unknown(String),
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// lettre's own timeout covers connecting only; every exchange is bounded by this too.
    timeout: Duration,
}

impl Mailer {
    /// `url`: `smtp://host:port` (plain, for a relay on loopback), `smtp://host?tls=required` (STARTTLS) or
    /// `smtps://user:pass@host` (TLS).
    pub fn new(url: &str, from: &str, timeout: Duration) -> anyhow::Result<Self> {
        // lettre's rustls needs a process-wide crypto provider; ring is the one the workspace builds.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("email.smtp_url is not a valid SMTP URL: {e}"))?
            .timeout(Some(timeout))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("email.from is not a valid address ({from:?}): {e}"))?;
        Ok(Self {
            transport,
            from,
            timeout,
        })
    }

    /// Sends one plain-text message.
    pub async fn send(
        &self,
        message_id: &str,
        to: &str,
        subject: &str,
        body: String,
    ) -> Result<(), SendError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| SendError::NotSent(format!("the address {to:?} is not valid: {e}")))?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{message_id}@smb-command>")))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| SendError::NotSent(format!("the message could not be built: {e}")))?;
        // A server that cannot be reached has certainly not received anything.
        match tokio::time::timeout(self.timeout, self.transport.test_connection()).await {
            Ok(Ok(true)) => {}
            _ => {
                return Err(SendError::NotSent(
                    "the mail server could not be reached".into(),
                ));
            }
        }
        match tokio::time::timeout(self.timeout, self.transport.send(msg)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() || e.is_transient() => Err(SendError::NotSent(format!(
                "the mail server refused the message: {e}"
            ))),
            Ok(Err(e)) => Err(SendError::Unknown(format!(
                "the connection to the mail server failed mid-send: {e}"
            ))),
            Err(_) => Err(SendError::Unknown(format!(
                "the mail server did not answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}
