//! The web app at `/`: the files `web/` builds (committed in `web/dist`, checked by CI to be what the sources
//! build), embedded in the binary at compile time, so `smb up` serves the app with no step of its own.
//!
//! `index.html` is never cached (it names the current assets); the assets carry a content hash in their
//! names and are cached for a year. Every response forbids framing and content sniffing, and its content
//! security policy lets the page load only its own scripts and styles and call only its own origin.

use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

#[derive(rust_embed::Embed)]
#[folder = "../web/dist"]
struct Assets;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn file(path: &str, cache: &'static str) -> Response {
    let Some(f) = Assets::get(path) else {
        return smb_core::Error::not_found("no such file in the web app").into_response();
    };
    let mut res = Response::new(Body::from(f.data.into_owned()));
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(f.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// `GET /`: the app's page.
pub async fn index() -> Response {
    file("index.html", "no-cache")
}

/// `GET /assets/{*path}`: a built script or stylesheet.
pub async fn asset(Path(path): Path<String>) -> Response {
    if path.contains("..") {
        return StatusCode::NOT_FOUND.into_response();
    }
    file(
        &format!("assets/{path}"),
        "public, max-age=31536000, immutable",
    )
}

/// The routes of the web app.
pub fn router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    use axum::routing::get;
    axum::Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}
