//! Black-box tests of `smb up` over HTTP: auth flows, token attacks, bad input, limits, tenant isolation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use smb_tests::App;

#[tokio::test]
async fn signup_login_refresh_rotation_reuse_and_logout() {
    let app = App::start(&[]);
    let (login, email, password) = app.tenant("America/New_York").await;
    let access = login["access_token"].as_str().unwrap().to_string();
    let refresh = login["refresh_token"].as_str().unwrap().to_string();

    let (s, b, _) = app
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": "hi"})),
            Some(&access),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["intent"], "conversation");

    // Refresh rotates.
    let (s, r1) = app.refresh(&refresh).await;
    assert_eq!(s, 200, "{r1}");
    assert_ne!(r1["refresh_token"], refresh.as_str());
    // Reusing the rotated token revokes the whole session: the new tokens stop working too.
    let (s, _) = app.refresh(&refresh).await;
    assert_eq!(s, 401);
    let (s, _) = app.refresh(r1["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 401);
    let (s, _, _) = app
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": "hi"})),
            r1["access_token"].as_str(),
        )
        .await;
    assert_eq!(
        s, 401,
        "access tokens of a revoked session are rejected before they expire"
    );

    // Logout revokes at once.
    let (_, l2) = app.login(&email, &password).await;
    let t2 = l2["access_token"].as_str().unwrap();
    let (s, _, _) = app.call("POST", "/v1/auth/logout", None, Some(t2)).await;
    assert_eq!(s, 204);
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": "hi"})),
            Some(t2),
        )
        .await;
    assert_eq!(s, 401);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("log in"),
        "{b}"
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_email_answer_alike() {
    let app = App::start(&[]);
    let (_, email, _) = app.tenant("UTC").await;
    let (s1, b1) = app.login(&email, "wrong password!").await;
    let (s2, b2) = app.login("nobody@example.com", "wrong password!").await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(b1, b2);
}

#[tokio::test]
async fn token_attacks_are_rejected() {
    let app = App::start(&[]);
    let (login, _, _) = app.tenant("UTC").await;
    let good = login["access_token"].as_str().unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["tid"] = json!(uuid::Uuid::new_v4().to_string());
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let hs = {
        let h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"public-key"),
        )
        .unwrap()
    };
    for bad in [tampered.as_str(), none.as_str(), hs.as_str(), "garbage", ""] {
        let (s, b, _) = app.call("GET", "/v1/connectors", None, Some(bad)).await;
        assert_eq!(s, 401, "{bad}: {b}");
        assert!(b["error"]["code"].is_string());
    }
    let (s, _, _) = app.call("GET", "/v1/connectors", None, None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let app = App::start(&[]);
    let cases = [
        (json!({"email": "a@b.co"}), "missing field"),
        (
            json!({"tenant_name": "X", "email": "a@b.co", "password": 12345678, "timezone": "UTC", "currency": "USD"}),
            "invalid type",
        ),
        (
            json!({"tenant_name": "X", "email": "a@b.co", "password": "long enough pw", "timezone": "Mars/Base", "currency": "USD"}),
            "timezone",
        ),
        (
            json!({"tenant_name": "X", "email": "a@b.co", "password": "short", "timezone": "UTC", "currency": "USD"}),
            "at least 8",
        ),
        (
            json!({"tenant_name": "X", "email": "not-an-email", "password": "long enough pw", "timezone": "UTC", "currency": "USD"}),
            "email",
        ),
    ];
    for (body, needle) in cases {
        let (s, b, _) = app.call("POST", "/v1/auth/signup", Some(body), None).await;
        assert_eq!(s, 400, "{b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{b} lacks {needle}"
        );
    }
    let (login, email, _) = app.tenant("UTC").await;
    let (s, _, _) = app
        .call("POST", "/v1/auth/signup", Some(json!({"tenant_name": "X", "email": email, "password": "long enough pw", "timezone": "UTC", "currency": "USD"})), None)
        .await;
    assert_eq!(s, 409);
    let token = login["access_token"].as_str().unwrap();
    let big = "x".repeat(200 * 1024);
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": big})),
            Some(token),
        )
        .await;
    assert_eq!(s, 413, "{b}");
    for (q, as_of) in [("", None), ("revenue", Some("yesterday"))] {
        let mut body = json!({"query": q});
        if let Some(a) = as_of {
            body["as_of"] = json!(a);
        }
        let (s, b, _) = app
            .call("POST", "/v1/ai/query", Some(body), Some(token))
            .await;
        assert_eq!(s, 400, "{b}");
    }
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": "🙂🙂"})),
            Some(token),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let app = App::start(&[("SMB_GATEWAY__DEFAULT_RATE_LIMIT", "3")]);
    let (login, _, _) = app.tenant("UTC").await;
    let token = login["access_token"].as_str().unwrap();
    for _ in 0..3 {
        let (s, _, _) = app.call("GET", "/v1/connectors", None, Some(token)).await;
        assert_eq!(s, 200);
    }
    let (s, b, h) = app.call("GET", "/v1/connectors", None, Some(token)).await;
    assert_eq!(s, 429, "{b}");
    assert!(h.get("retry-after").is_some());
}

/// A minimal Shopify stand-in that accepts one token, for creating connectors.
async fn fake_shop() -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/admin/api/2024-10/shop.json",
        get(|h: axum::http::HeaderMap| async move {
            if h.get("x-shopify-access-token")
                .and_then(|v| v.to_str().ok())
                == Some("shpat_ok")
            {
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({"shop": {"name": "Test"}})),
                )
            } else {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"errors": "Invalid API key"})),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn tenants_cannot_see_each_others_connectors() {
    let app = App::start(&[]);
    let shop = fake_shop().await;
    let (a, _, _) = app.tenant("UTC").await;
    let (b, _, _) = app.tenant("UTC").await;
    let ta = a["access_token"].as_str().unwrap();
    let tb = b["access_token"].as_str().unwrap();
    let (s, body, _) = app
        .call(
            "POST",
            "/v1/connectors",
            Some(json!({"type": "shopify", "config": {"shop_url": shop, "access_token": "wrong"}})),
            Some(ta),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("401"),
        "{body}"
    );
    let (s, c, _) = app
        .call("POST", "/v1/connectors", Some(json!({"type": "shopify", "config": {"shop_url": shop, "access_token": "shpat_ok"}})), Some(ta))
        .await;
    assert_eq!(s, 201, "{c}");
    assert!(
        !c.to_string().contains("shpat_ok"),
        "credentials are never returned"
    );
    let id = c["id"].as_str().unwrap();
    for (m, p) in [
        ("GET", format!("/v1/connectors/{id}")),
        ("POST", format!("/v1/connectors/{id}/sync")),
        ("DELETE", format!("/v1/connectors/{id}")),
    ] {
        let (s, _, _) = app.call(m, &p, None, Some(tb)).await;
        assert_eq!(s, 404, "{m} {p}");
    }
    let (_, list, _) = app.call("GET", "/v1/connectors", None, Some(tb)).await;
    assert_eq!(list["connectors"].as_array().unwrap().len(), 0);
    let (_, list, _) = app.call("GET", "/v1/connectors", None, Some(ta)).await;
    assert_eq!(list["connectors"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = App::start(&[]);
    let (s, _, _) = app.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
    let (s, b, _) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(b["checks"]["database"], "ok");
}

#[tokio::test]
async fn signing_keys_rotate_without_logging_anyone_out() {
    let dir = std::env::temp_dir().join(format!("smb-it-{}", uuid::Uuid::new_v4().simple()));
    let app = App::start_in(dir.clone(), true, &[]);
    let owner = app.owner("UTC").await;
    let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    let old_kid = kid(&owner.token);
    app.kill();

    let bin = smb_tests::binary();
    let out = std::process::Command::new(&bin)
        .args(["rotate-keys", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let app = App::start_in(dir, false, &[]);
    // The token signed with the old key still works; new tokens carry the new key.
    let (s, b, _) = app
        .call("GET", "/v1/connectors", None, Some(&owner.token))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.login(&owner.email, &owner.password).await;
    assert_eq!(s, 200, "{b}");
    let new_kid = kid(b["access_token"].as_str().unwrap());
    assert_ne!(new_kid, old_kid);
}

#[cfg(unix)]
#[tokio::test]
async fn key_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::start(&[]);
    let _ = app.owner("UTC").await;
    let mut files = vec![app.dir.join("secret.key")];
    for e in std::fs::read_dir(app.dir.join("keys")).unwrap() {
        files.push(e.unwrap().path());
    }
    assert!(files.len() >= 2, "{files:?}");
    for f in files {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
}

/// Bad logins (each for a different account, so only the per-address limit applies) until refused.
async fn bad_logins_until_refused(
    app: &App,
    n: usize,
    xff: impl Fn(usize) -> Option<String>,
) -> Option<usize> {
    for i in 0..n {
        let mut req = app
            .http
            .post(format!("{}/v1/auth/login", app.url))
            .json(&json!({"email": format!("nobody-{i}-{}@example.com", uuid::Uuid::new_v4().simple()), "password": "wrong password here"}));
        if let Some(x) = xff(i) {
            req = req.header("x-forwarded-for", x);
        }
        let s = req.send().await.unwrap().status().as_u16();
        if s == 429 {
            return Some(i);
        }
        assert_eq!(s, 401);
    }
    None
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    // Not trusted: a client cannot spread its failures over made-up addresses.
    let app = App::start(&[]);
    let refused =
        bad_logins_until_refused(&app, 60, |i| Some(format!("203.0.113.{}", i % 200))).await;
    assert_eq!(
        refused,
        Some(50),
        "the 51st bad login from one peer is refused"
    );
    // Behind a trusted proxy (here: loopback), each forwarded client has its own count.
    let app = App::start(&[("SMB_GATEWAY__TRUSTED_PROXIES", "[\"127.0.0.1\"]")]);
    let refused =
        bad_logins_until_refused(&app, 60, |i| Some(format!("203.0.113.{}", i % 2))).await;
    assert_eq!(refused, None, "two clients, 30 failures each");
    let refused = bad_logins_until_refused(&app, 60, |_| Some("198.51.100.4".into())).await;
    assert_eq!(
        refused,
        Some(50),
        "one forwarded client, refused at its 51st"
    );
}

#[tokio::test]
async fn grpc_logins_are_limited_by_the_real_peer_address() {
    use smb_proto::auth::v1 as pb;
    use smb_proto::auth::v1::auth_service_client::AuthServiceClient;
    let app = App::start(&[]);
    let channel = tonic::transport::Channel::from_shared(app.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = AuthServiceClient::new(channel);
    let mut refused = None;
    for i in 0..60 {
        let r = c
            .login(pb::LoginRequest {
                email: format!("nobody-{i}-{}@example.com", uuid::Uuid::new_v4().simple()),
                password: "wrong password here".into(),
                // A client-chosen address is overwritten by the edge.
                client_addr: format!("198.51.100.{i}"),
            })
            .await;
        match r {
            Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                refused = Some(i);
                break;
            }
            Err(e) => assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}"),
            Ok(_) => panic!("a bad login succeeded"),
        }
    }
    assert_eq!(refused, Some(50), "the 51st bad login over gRPC is refused");
}

/// More requests than `gateway.max_in_flight` are shed at once with `503`, `Retry-After` and the JSON
/// error (never queued without bound, never a reset); health answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_are_shed_with_503() {
    let app = App::start(&[
        ("SMB_GATEWAY__MAX_IN_FLIGHT", "2"),
        ("SMB_GATEWAY__DEFAULT_RATE_LIMIT", "100000"),
    ]);
    let owner = app.owner("UTC").await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (http, url, token) = (app.http.clone(), app.url.clone(), owner.token.clone());
        tasks.push(tokio::spawn(async move {
            // Uncached: every question is new.
            let r = http
                .post(format!("{url}/v1/ai/query"))
                .bearer_auth(token)
                .json(&json!({"query": format!("how many orders in the last {} days", i + 2)}))
                .send()
                .await
                .unwrap();
            let retry = r.headers().get("retry-after").cloned();
            (
                r.status().as_u16(),
                retry,
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }));
    }
    let (s, _, _) = app.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
    let (mut ok, mut shed) = (0, 0);
    for t in tasks {
        let (s, retry, b) = t.await.unwrap();
        match s {
            200 => ok += 1,
            503 => {
                shed += 1;
                assert_eq!(b["error"]["code"], "unavailable", "{b}");
                assert!(
                    b["error"]["message"].as_str().unwrap().contains("busy"),
                    "{b}"
                );
                assert!(retry.is_some(), "Retry-After");
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert!(ok > 0 && shed > 0, "ok {ok}, shed {shed}");
}

/// A request with no answer within `gateway.request_timeout_ms` gets `504` and the JSON error.
#[tokio::test]
async fn a_request_past_the_gateway_timeout_gets_504() {
    let app = App::start(&[("SMB_GATEWAY__REQUEST_TIMEOUT_MS", "1")]);
    // Hashing a password alone takes longer than a millisecond.
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/auth/signup",
            Some(
                json!({"tenant_name": "Slow Co", "email": "slow@example.com",
                "password": "correct horse battery staple", "timezone": "UTC", "currency": "USD"}),
            ),
            None,
        )
        .await;
    assert_eq!(s, 504, "{b}");
    assert_eq!(b["error"]["code"], "timeout", "{b}");
    let (s, _, _) = app.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200, "health is outside the limits");
}
