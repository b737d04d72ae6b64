//! Shared runtime of SMB Command: configuration, newtype ids, the error-code table, and the ports every
//! service builds on (relational store, cache, event bus) with both of their adapters.
//!
//! Nothing in here knows about a particular service's domain; services depend on this crate, never the
//! other way round.

pub mod bus;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod error;
pub mod ids;
pub mod kafka;
pub mod outbox;
pub mod store;
pub mod telemetry;
pub mod tenant;

pub use error::{Error, ErrorCode, Result};
