//! The split deployment as separate processes (`smb serve` auth, orchestrator, connectors, two workers
//! replicas, gateway) over PostgreSQL, Redis and the Kafka-compatible broker, driven through the gateway's
//! public port as a client would: signup, connecting the fake sources, syncs with a workers replica killed
//! mid-sync, questions (the same answers as `smb up`), and webhooks. The services' own ports trust nothing
//! but a verified access token: a forged tenant header gets `Unauthenticated`.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use smb_connectors::webhooks::sign;
use smb_proto::auth::v1 as auth_pb;
use smb_proto::auth::v1::auth_service_client::AuthServiceClient;
use smb_proto::connectors::v1 as conn_pb;
use smb_proto::connectors::v1::connectors_service_client::ConnectorsServiceClient;
use smb_proto::orchestrator::v1 as orch_pb;
use smb_proto::orchestrator::v1::actions_service_client::ActionsServiceClient;
use smb_proto::orchestrator::v1::orchestrator_service_client::OrchestratorServiceClient;
use smb_tests::fake::{Dataset, FakeSaas, Sizes};
use smb_tests::split::Split;
use smb_tests::sync::{
    canonical, connect, connect_shopify, connect_stripe, finished, sync, trigger,
};
use smb_tests::{App, Owner};
use tonic::Code;

use crate::orchestrator::{QUESTIONS, ask};

/// A request carrying `headers` as metadata.
fn with<T>(msg: T, headers: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    for (k, v) in headers {
        r.metadata_mut().insert(*k, v.parse().unwrap());
    }
    r
}

/// The claims of an access token (read, not verified).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_trust_a_verified_token_and_no_header() {
    let split = Split::start(&smb_tests::kafka(), 0, &[]).await;
    let owner = split.gateway.owner("UTC").await;
    let other = split.gateway.owner("UTC").await;
    let c = claims(&owner.token);
    let user = c["sub"].as_str().unwrap().to_string();
    let sid = c["sid"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {}", owner.token);
    // What the gateway used to send, and what any pod in the cluster could: the caller as headers.
    let forged: Vec<(&'static str, &str)> = vec![
        ("x-smb-tenant-id", &owner.tenant_id),
        ("x-smb-user-id", &user),
        ("x-smb-role", "owner"),
    ];

    let mut orch = OrchestratorServiceClient::connect(split.orchestrator_url.clone())
        .await
        .unwrap();
    let q = || orch_pb::ProcessRequest {
        query: "how many orders this month".into(),
        ..Default::default()
    };
    let e = orch.process(with(q(), &forged)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // A token whose signature was tampered with is no better.
    let mut bad = owner.token.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let e = orch
        .process(with(q(), &[("authorization", &format!("Bearer {bad}"))]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // The owner's own token works against the service directly.
    let r = orch
        .process(with(q(), &[("authorization", &bearer)]))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.answer.is_empty(), "{r:?}");

    let mut actions = ActionsServiceClient::connect(split.orchestrator_url.clone())
        .await
        .unwrap();
    let e = actions
        .list_actions(with(orch_pb::ListActionsRequest::default(), &forged))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    let mut conns = ConnectorsServiceClient::connect(split.connectors_url.clone())
        .await
        .unwrap();
    let e = conns
        .list_connectors(with(conn_pb::ListConnectorsRequest {}, &forged))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = conns
        .create_connector(with(
            conn_pb::CreateConnectorRequest {
                r#type: conn_pb::ConnectorType::Shopify as i32,
                config: [
                    (
                        "shop_url".to_string(),
                        "https://x.myshopify.com".to_string(),
                    ),
                    ("access_token".to_string(), "t".to_string()),
                ]
                .into(),
            },
            &forged,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // The auth service's internal questions are answered only to the holder of the token concerned.
    let mut auth = AuthServiceClient::connect(split.auth_url.clone())
        .await
        .unwrap();
    let check = |h: &[(&'static str, &str)]| {
        with(
            auth_pb::CheckSessionRequest {
                session_id: sid.clone(),
            },
            h,
        )
    };
    let e = auth.check_session(check(&forged)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let other_bearer = format!("Bearer {}", other.token);
    let e = auth
        .check_session(check(&[("authorization", &other_bearer)]))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::Unauthenticated,
        "another session's token: {e:?}"
    );
    assert!(
        auth.check_session(check(&[("authorization", &bearer)]))
            .await
            .unwrap()
            .into_inner()
            .active
    );
    let tenant = |id: &str, h: &[(&'static str, &str)]| {
        with(
            auth_pb::GetTenantRequest {
                tenant_id: id.to_string(),
            },
            h,
        )
    };
    let e = auth
        .get_tenant(tenant(&owner.tenant_id, &forged))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = auth
        .get_tenant(tenant(
            &owner.tenant_id,
            &[("authorization", &other_bearer)],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "another tenant: {e:?}");
    let e = auth
        .logout(with(
            auth_pb::LogoutRequest {
                session_id: sid.clone(),
                tenant_id: owner.tenant_id.clone(),
            },
            &forged,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let (s, _, _) = split
        .gateway
        .call("GET", "/v1/connectors", None, Some(&owner.token))
        .await;
    assert_eq!(s, 200, "the session outlived the forged logout");

    // A logged-out session's token stops working at the services too, not only at the gateway.
    let (s, _, _) = split
        .gateway
        .call("POST", "/v1/auth/logout", None, Some(&owner.token))
        .await;
    assert_eq!(s, 204);
    let e = orch
        .process(with(q(), &[("authorization", &bearer)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    split.stop().await;
}

/// Each service holds only the secrets it needs: the signing keys live with auth alone, the credential key
/// with connectors and workers; the orchestrator holds neither, and its database role reads the identity
/// tables but cannot write them (nor can any service but auth) — and it still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_hold_only_their_own_secrets() {
    let split = Split::start(&smb_tests::kafka(), 1, &[]).await;
    let owner = split.gateway.owner("UTC").await;
    let fake = FakeSaas::start(Dataset::generate(Sizes {
        orders: 20,
        customers: 5,
        products: 3,
        charges: 0,
        stripe_customers: 0,
    }))
    .await;
    let shop = connect_shopify(&split.gateway, &owner, &fake).await;
    assert_eq!(
        sync(&split.gateway, &owner, &shop).await["status"],
        "succeeded"
    );
    let a = ask(&split.gateway, &owner, "how many orders all time").await;
    assert_eq!(a["result"]["value"], 20.0, "{a}");

    let files = |service: &str| -> Vec<String> {
        let d = split.dir.join(service);
        let mut out = Vec::new();
        let mut stack = vec![d.clone()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path.strip_prefix(&d).unwrap().display().to_string());
                }
            }
        }
        out
    };
    let signing = |f: &String| f.starts_with("keys");
    assert!(
        files("auth").iter().any(signing),
        "auth keeps its keys: {:?}",
        files("auth")
    );
    for service in ["orchestrator", "connectors", "workers", "gateway"] {
        let f = files(service);
        assert!(
            !f.iter().any(signing),
            "{service} holds signing keys: {f:?}"
        );
        assert!(
            !f.iter().any(|f| f == "secret.key"),
            "{service} made a credential key: {f:?}"
        );
    }

    // The role the other services connect as: identity tables read-only, the rest writable.
    let pg = smb_core::store::Db::open_postgres(&split.pg.as_ref().unwrap().service_url, None, 2)
        .await
        .unwrap();
    let smb_core::store::Db::Postgres(pool) = &pg else {
        unreachable!()
    };
    for (table, right, allowed) in [
        ("users", "SELECT", true),
        ("tenants", "SELECT", true),
        ("users", "INSERT", false),
        ("users", "UPDATE", false),
        ("sessions", "INSERT", false),
        ("sessions", "DELETE", false),
        ("refresh_tokens", "UPDATE", false),
        ("tenants", "INSERT", false),
        ("orders", "INSERT", true),
        ("actions", "UPDATE", true),
    ] {
        let (has,): (bool,) = sqlx::query_as("SELECT has_table_privilege(current_user, $1, $2)")
            .bind(table)
            .bind(right)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(has, allowed, "{right} on {table}");
    }
    let e = sqlx::query("UPDATE users SET role = 'owner'")
        .execute(pool)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("permission denied"), "{e}");
    pg.close().await;
    split.stop().await;
}

const SIZES: Sizes = Sizes {
    orders: 900,
    customers: 60,
    products: 8,
    charges: 400,
    stripe_customers: 30,
};

async fn answers(app: &App, owner: &Owner) -> Vec<Value> {
    let mut out = Vec::new();
    for q in QUESTIONS {
        let mut b = ask(app, owner, q).await;
        // Synced moments apart: freshness differs, everything else must not.
        b["result"].as_object_mut().map(|o| o.remove("freshness"));
        out.push(json!({"answer": b["answer"], "result": b["result"], "intent": b["intent"]}));
    }
    out
}

/// Where a deployment that stalled stands: the events not yet relayed to the broker, the connectors' leases
/// and what every process logged last.
async fn stuck(split: &Split) -> String {
    type Leases = Vec<(String, Option<String>)>;
    let r: Result<(i64, Leases), smb_core::Error> = async {
        Ok(smb_core::with_global!(split.db(), read, |tx| {
            let (outbox,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
                .fetch_one(&mut *tx)
                .await?;
            let leases: Leases =
                sqlx::query_as("SELECT connector_id::text, lease_owner FROM connector_schedule")
                    .fetch_all(&mut *tx)
                    .await?;
            (outbox, leases)
        }))
    }
    .await;
    let state = match r {
        Ok((outbox, leases)) => format!("outbox: {outbox} events not relayed; leases: {leases:?}"),
        Err(e) => format!("(the database could not be read: {e})"),
    };
    format!(
        "{state}\nthe processes said (last lines):{}",
        split.tails(40)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_deployment_syncs_answers_and_loses_nothing_when_a_worker_dies() {
    let fake = FakeSaas::start(Dataset::generate(SIZES)).await;

    // The reference: the same sources on `smb up`.
    let (reference, expected, runs) = {
        let app = App::start(&[]);
        let owner = app.owner("America/New_York").await;
        let mut runs = Vec::new();
        for c in [
            connect_shopify(&app, &owner, &fake).await,
            connect_stripe(&app, &owner, &fake).await,
        ] {
            let run = sync(&app, &owner, &c).await;
            assert_eq!(run["status"], "succeeded", "{run}");
            runs.push(run["records_synced"].clone());
        }
        let db = smb_core::store::Db::open_sqlite(&app.dir.join("smb.db"), 2)
            .await
            .unwrap();
        (
            canonical(&db, &owner.tenant_id).await,
            answers(&app, &owner).await,
            runs,
        )
    };
    let _ = fake.take_log().await;

    let mut split = Split::start(
        &smb_tests::kafka(),
        2,
        &[("SMB_SERVER__SHUTDOWN_GRACE_SECS", "2")],
    )
    .await;
    let app = &split.gateway;
    let owner = app.owner("America/New_York").await;
    const SECRET: &str = "whsec_split_0123456789";
    let shop = connect(
        app,
        &owner,
        json!({"type": "shopify", "config": {"shop_url": fake.url(), "access_token": smb_tests::fake::SHOP_TOKEN, "webhook_secret": SECRET}}),
    )
    .await;
    let stripe = connect_stripe(app, &owner, &fake).await;

    // Hold the sources after a few pages, kill one workers replica, let the syncs run on.
    fake.hold_after(4).await;
    let ids = [
        trigger(app, &owner, &shop).await,
        trigger(app, &owner, &stripe).await,
    ];
    assert!(
        fake.wait_held(Duration::from_secs(60)).await,
        "no sync started"
    );
    // Kill the replica running the sync: the lease owner is "<pid>-<random>".
    let owner_pid = {
        let (lease_owner,): (String,) = async {
            Ok::<_, smb_core::Error>(smb_core::with_global!(split.db(), read, |tx| {
                sqlx::query_as(
                    "SELECT lease_owner FROM connector_schedule WHERE lease_owner IS NOT NULL LIMIT 1",
                )
                .fetch_one(&mut *tx)
                .await?
            }))
        }
        .await
        .unwrap();
        lease_owner
            .split('-')
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let victim = split
        .worker_with_pid(owner_pid)
        .expect("a workers replica holds the sync's lease");
    // SIGTERM with a 2 s grace: the replica exits with its run cut short at the held page. (SIGKILL is the
    // harder case, but on tansu 0.6 a SIGKILLed consumer's partitions were at times never handed to the
    // living members, even after a new member joined, so the pipeline stalled; see the README.)
    split.terminate_worker(victim);
    fake.release().await;
    // The other replica takes the run over once its lease (5 s here) has lapsed; the replica comes back
    // as a Deployment would bring it back.
    tokio::time::sleep(Duration::from_secs(6)).await;
    split.restart_worker(victim);
    let app = &split.gateway;
    for ((c, id), expected) in [(&shop, &ids[0]), (&stripe, &ids[1])]
        .into_iter()
        .zip(&runs)
    {
        let run = match finished(app, &owner, c, id, Duration::from_secs(240)).await {
            Ok(run) => run,
            Err(run) => panic!(
                "sync {id} did not finish in 240 s: {run}\n{}",
                stuck(&split).await
            ),
        };
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(&run["records_synced"], expected, "counted once: {run}");
    }
    let got = canonical(split.db(), &owner.tenant_id).await;
    assert_eq!(got, reference, "nothing lost, nothing twice");
    assert_eq!(answers(app, &owner).await, expected);

    // A signed webhook through the gateway reaches the canonical tables through the surviving replica.
    let order = json!({"id": 990_001u64, "name": "#990001", "email": "hook@example.com",
        "created_at": "2025-01-20T10:00:00-05:00", "updated_at": "2025-01-20T10:00:00-05:00",
        "cancelled_at": null, "test": false, "currency": "USD", "financial_status": "paid",
        "total_price": "12.00", "total_discounts": "0.00", "customer": {"id": 990_002u64, "email": "hook@example.com"},
        "line_items": [{"id": 990_003u64, "product_id": 9, "title": "Amber Roast", "quantity": 1, "price": "12.00"}],
        "refunds": []});
    let raw = serde_json::to_vec(&order).unwrap();
    let r = app
        .http
        .post(format!("{}/webhooks/shopify/{shop}", app.url))
        .header(
            "x-shopify-hmac-sha256",
            sign::shopify(SECRET.as_bytes(), &raw),
        )
        .header("x-shopify-webhook-id", "split-hook-1")
        .header("x-shopify-topic", "orders/create")
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let start = Instant::now();
    loop {
        let now = canonical(split.db(), &owner.tenant_id).await;
        if now.orders == reference.orders + 1 {
            break;
        }
        // Generous: on a loaded machine the broker may still be settling the replica's return.
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "the webhook's order never arrived: {now:?}\n{}",
            stuck(&split).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    split.stop().await;
}
