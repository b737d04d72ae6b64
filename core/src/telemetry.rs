//! Structured logging to stderr (stdout is the program's own output): `SMB_LOG` sets the filter (default
//! `info`; the embedded search engine's own chatter only from `error`), `SMB_LOG_FORMAT=json` switches to JSON.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("SMB_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,qdrant_edge=error"));
    let json = std::env::var("SMB_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
