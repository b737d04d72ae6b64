//! A source URL is a user's input: by default the platform refuses to fetch from private or local addresses
//! (loopback, private ranges, cloud metadata), and it never echoes what a remote server answered.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use serde_json::json;
use smb_tests::App;
use smb_tests::fake::{Dataset, FakeSaas, Sizes};

fn small() -> Sizes {
    Sizes {
        orders: 5,
        customers: 3,
        products: 2,
        charges: 0,
        stripe_customers: 0,
    }
}

#[tokio::test]
async fn private_and_local_sources_are_refused_by_default() {
    let fake = FakeSaas::start(Dataset::generate(small())).await;
    let app = App::start(&[("SMB_CONNECTORS__ALLOW_PRIVATE_NETWORKS", "false")]);
    let owner = app.owner("UTC").await;
    for url in [
        fake.url().to_string(),
        "http://169.254.169.254".to_string(),
        "http://10.0.0.7:8080".to_string(),
        "http://localhost:9".to_string(),
        "http://[::1]:9".to_string(),
    ] {
        let (s, b, _) = app
            .call(
                "POST",
                "/v1/connectors",
                Some(json!({"type": "shopify", "config": {"shop_url": url, "access_token": "shpat_northwind_test"}})),
                Some(&owner.token),
            )
            .await;
        assert_eq!(s, 422, "{url}: {b}");
        let m = b["error"]["message"].as_str().unwrap();
        assert!(m.contains("public internet"), "{url}: {m}");
    }
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/connectors",
            Some(json!({"type": "stripe", "config": {"api_base": fake.url(), "secret_key": "sk_test_x"}})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    // Nothing was stored.
    let (_, list, _) = app
        .call("GET", "/v1/connectors", None, Some(&owner.token))
        .await;
    assert_eq!(list["connectors"].as_array().unwrap().len(), 0, "{list}");
    // The fake was never asked.
    assert_eq!(fake.pages_served(), 0);
}

#[tokio::test]
async fn a_remote_error_body_is_never_echoed() {
    let secret = "internal-admin-token-7f3a";
    let router = Router::new().fallback(any(move || async move {
        (
            StatusCode::BAD_REQUEST,
            format!("{{\"errors\": \"{secret}\"}}"),
        )
    }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    let app = App::start(&[]);
    let owner = app.owner("UTC").await;
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/connectors",
            Some(
                json!({"type": "shopify", "config": {"shop_url": url, "access_token": "shpat_x"}}),
            ),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert!(!b.to_string().contains(secret), "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("HTTP 400"),
        "{b}"
    );
}
