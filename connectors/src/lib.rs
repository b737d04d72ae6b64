//! Connectors service (`smb.connectors.v1`): connected sources of a tenant (Shopify, Stripe), their
//! encrypted credentials, and sync runs. A sync fetches pages from the source, publishes each page of raw
//! records to the bus and checkpoints the stream's cursor after every page; workers load them.
//!
//! Invariants: credentials are sealed at rest and never returned; at most one sync per connector runs at a
//! time (a lease in the store); a sync that dies resumes from the last checkpoint.
//! Boundary: sources are reached only through [`http::SourceClient`]; the canonical model is the workers'.

pub mod http;
pub mod messages;
pub mod scheduler;
pub mod service;
pub mod shopify;
pub mod source;
pub mod store;
pub mod stripe;
pub mod sync;
pub mod webhooks;

pub use service::ConnectorsServiceImpl;
