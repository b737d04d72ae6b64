//! Edge gateway: one HTTP port serving JSON routes, grpc-web and native gRPC. It validates access tokens,
//! puts the caller (tenant, user) on the request as a typed value, applies rate and body limits, and calls
//! the services over their gRPC interfaces (in-process in `smb up`, over channels when split).
//!
//! Invariants: the gateway never touches the database; no handler runs for a protected route without a
//! validated token of a live session; errors leave as `{"error": {"code", "message"}}`.

pub mod authn;
pub mod body;
pub mod client;
pub mod edge;
pub mod json;
pub mod metrics;
pub mod ratelimit;
pub mod remote;
pub mod routes;
pub mod server;
pub mod web;

pub use server::{Gateway, Services};
