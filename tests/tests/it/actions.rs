//! Actions (ops-copilot) end to end: a question proposes, nothing happens until an owner confirms, and a
//! confirmed e-mail arrives exactly once at a real SMTP server (aiosmtpd on loopback), also when two
//! confirmations race. Tasks, rejection, expiry of rights across tenants, and the audit log.

use std::time::Duration;

use serde_json::{Value, json};
use smb_tests::fake::{Dataset, FakeSaas, Sizes};
use smb_tests::smtp::Smtp;
use smb_tests::sync::{connect_shopify, sync};
use smb_tests::{App, Owner};

const AS_OF: &str = "2025-01-31T12:00:00-05:00";

async fn ask(app: &App, owner: &Owner, q: &str) -> Value {
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": q, "as_of": AS_OF})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200, "{q}: {b}");
    b
}

async fn synced_app(env: &[(&str, &str)]) -> (App, Owner, FakeSaas) {
    let fake = FakeSaas::start(Dataset::generate(Sizes {
        orders: 200,
        customers: 30,
        products: 5,
        charges: 0,
        stripe_customers: 0,
    }))
    .await;
    let app = App::start(env);
    let owner = app.owner("America/New_York").await;
    let c = connect_shopify(&app, &owner, &fake).await;
    sync(&app, &owner, &c).await;
    (app, owner, fake)
}

#[tokio::test]
async fn an_email_is_proposed_then_sent_exactly_once_when_two_confirms_race() {
    let smtp = Smtp::start();
    let url = smtp.url();
    let (app, owner, _fake) = synced_app(&[
        ("SMB_EMAIL__SMTP_URL", url.as_str()),
        ("SMB_EMAIL__FROM", "SMB Command <reports@example.com>"),
    ])
    .await;

    let b = ask(
        &app,
        &owner,
        "Email accountant@firm.example a summary of last month's revenue",
    )
    .await;
    assert_eq!(b["intent"], "action", "{b}");
    assert_eq!(b["module"], "ops-copilot");
    let action = &b["result"]["action"];
    assert_eq!(action["type"], "send_email", "{b}");
    assert_eq!(action["status"], "pending_confirmation");
    assert_eq!(action["params"]["to"], "accountant@firm.example");
    assert_eq!(action["params"]["period_start"], "2024-12-01");
    assert_eq!(action["params"]["period_end"], "2024-12-31");
    assert_eq!(
        action["needs_owner"], true,
        "an outside address needs an owner"
    );
    assert!(
        action["preview"]
            .as_str()
            .unwrap()
            .contains("not one of your users or customers"),
        "{action}"
    );
    // Nothing was sent by proposing.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(smtp.messages().is_empty());

    let id = action["id"].as_str().unwrap().to_string();
    let path = format!("/v1/actions/{id}/confirm");
    let (a, b) = tokio::join!(
        app.call("POST", &path, None, Some(&owner.token)),
        app.call("POST", &path, None, Some(&owner.token)),
    );
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    // Let any second send (there must be none) arrive.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let (s, got, _) = app
        .call(
            "GET",
            &format!("/v1/actions/{id}"),
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(got["status"], "executed", "{got}");
    assert_eq!(got["attempts"], 1);
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1, "exactly one e-mail arrives");
    let m = &mail[0];
    assert!(m.contains("accountant@firm.example"), "{m}");
    assert!(m.contains("Revenue:"), "a real summary: {m}");
    assert!(m.contains("December 2024"), "{m}");

    // Confirming again changes nothing.
    let (s, again, _) = app.call("POST", &path, None, Some(&owner.token)).await;
    assert_eq!(s, 200);
    assert_eq!(again["status"], "executed");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 1);

    // The audit log has who proposed, confirmed and executed.
    let (_, audit, _) = app.call("GET", "/v1/audit", None, Some(&owner.token)).await;
    let events: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == id.as_str())
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for e in [
        "action.proposed",
        "action.confirmed",
        "action.executed",
        "email.sent",
    ] {
        assert!(events.contains(&e), "{e} in {events:?}");
    }
    assert_eq!(
        events.iter().filter(|e| **e == "action.confirmed").count(),
        1
    );

    // Another tenant sees none of it.
    let other = app.owner("UTC").await;
    let (s, _, _) = app
        .call(
            "GET",
            &format!("/v1/actions/{id}"),
            None,
            Some(&other.token),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _, _) = app.call("POST", &path, None, Some(&other.token)).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn tasks_are_created_on_confirmation_and_completed() {
    let (app, owner, _fake) = synced_app(&[]).await;
    let b = ask(
        &app,
        &owner,
        "Create a task to reorder Ethiopia Yirgacheffe beans by Friday",
    )
    .await;
    let action = &b["result"]["action"];
    assert_eq!(action["type"], "create_task", "{b}");
    assert_eq!(
        action["params"]["title"],
        "Reorder Ethiopia Yirgacheffe beans"
    );
    // As of Friday 2025-01-31, "by Friday" is the next one.
    assert_eq!(action["params"]["due_date"], "2025-02-07", "{action}");
    let (_, tasks, _) = app.call("GET", "/v1/tasks", None, Some(&owner.token)).await;
    assert_eq!(
        tasks["tasks"].as_array().unwrap().len(),
        0,
        "nothing before confirming"
    );

    let id = action["id"].as_str().unwrap();
    let (s, done, _) = app
        .call(
            "POST",
            &format!("/v1/actions/{id}/confirm"),
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["status"], "executed");
    let (_, tasks, _) = app
        .call("GET", "/v1/tasks?status=open", None, Some(&owner.token))
        .await;
    let list = tasks["tasks"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{tasks}");
    assert_eq!(list[0]["title"], "Reorder Ethiopia Yirgacheffe beans");
    assert_eq!(list[0]["due_date"], "2025-02-07");
    let task = list[0]["id"].as_str().unwrap();
    let (s, t, _) = app
        .call(
            "PATCH",
            &format!("/v1/tasks/{task}"),
            Some(json!({"status": "done"})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["status"], "done");
    let (s, e, _) = app
        .call(
            "PATCH",
            &format!("/v1/tasks/{task}"),
            Some(json!({"status": "finished"})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 400, "{e}");

    // A rejected proposal cannot be confirmed afterwards.
    let b = ask(&app, &owner, "remind me to call the roaster tomorrow").await;
    let id = b["result"]["action"]["id"].as_str().unwrap().to_string();
    assert_eq!(b["result"]["action"]["params"]["title"], "Call the roaster");
    let (s, r, _) = app
        .call(
            "POST",
            &format!("/v1/actions/{id}/reject"),
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "rejected");
    let (s, e, _) = app
        .call(
            "POST",
            &format!("/v1/actions/{id}/confirm"),
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    let (_, tasks, _) = app.call("GET", "/v1/tasks", None, Some(&owner.token)).await;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1);
    let (_, pending, _) = app
        .call(
            "GET",
            "/v1/actions?status=rejected",
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(pending["actions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn without_a_mail_server_an_email_is_refused_and_nothing_changes() {
    let (app, owner, _fake) = synced_app(&[]).await;
    let b = ask(&app, &owner, "email me last week's numbers").await;
    let action = &b["result"]["action"];
    assert_eq!(action["type"], "send_email", "{b}");
    assert_eq!(action["params"]["to"], owner.email.as_str());
    assert_eq!(action["needs_owner"], false, "the owner's own address");
    let id = action["id"].as_str().unwrap();
    let (s, e, _) = app
        .call(
            "POST",
            &format!("/v1/actions/{id}/confirm"),
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("email.smtp_url"),
        "{e}"
    );
    let (_, a, _) = app
        .call(
            "GET",
            &format!("/v1/actions/{id}"),
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(a["status"], "pending_confirmation");

    // A recipient without an address is asked for, and nothing is proposed.
    let b = ask(&app, &owner, "email my accountant last month's summary").await;
    assert_eq!(b["intent"], "action");
    assert!(b["result"].get("action").is_none(), "{b}");
    assert!(b["answer"].as_str().unwrap().contains("address"), "{b}");

    // Unknown ids and malformed ids are clear errors.
    let (s, _, _) = app
        .call(
            "POST",
            "/v1/actions/not-a-uuid/confirm",
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _, _) = app
        .call(
            "POST",
            &format!("/v1/actions/{}/confirm", uuid::Uuid::new_v4()),
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn grpc_clients_stream_answers_and_confirm_actions() {
    use smb_proto::orchestrator::v1 as pb;
    use smb_proto::orchestrator::v1::actions_service_client::ActionsServiceClient;
    use smb_proto::orchestrator::v1::orchestrator_service_client::OrchestratorServiceClient;

    let (app, owner, _fake) = synced_app(&[]).await;
    let channel = tonic::transport::Channel::from_shared(app.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    fn with_token<T>(token: &str, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }
    let token = owner.token.clone();
    macro_rules! authed {
        ($m:expr) => {
            with_token(&token, $m)
        };
    }

    // A streamed answer over gRPC: deltas, then the whole response.
    let mut orch = OrchestratorServiceClient::new(channel.clone());
    let mut stream = orch
        .process_stream(authed!(pb::ProcessRequest {
            query: "create a task to call the roaster on Monday".into(),
            as_of: AS_OF.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let (mut text, mut done) = (String::new(), None);
    while let Some(chunk) = stream.message().await.unwrap() {
        match chunk.kind {
            Some(pb::process_chunk::Kind::Delta(d)) => text.push_str(&d),
            Some(pb::process_chunk::Kind::Done(r)) => done = Some(r),
            None => {}
        }
    }
    let done = done.expect("a final response");
    assert_eq!(text, done.answer);
    assert_eq!(done.intent(), pb::Intent::Action);
    // The result is typed: the proposed action itself, no JSON to parse.
    let Some(pb::process_response::Result::Action(pb::ActionResult {
        action: Some(action),
    })) = done.result
    else {
        panic!("an action result: {:?}", done.result);
    };
    let id = action.id.clone();
    assert_eq!(action.params["due_date"], "2025-02-03");

    // The same action confirmed over gRPC; its task listed over gRPC.
    let mut actions = ActionsServiceClient::new(channel);
    let a = actions
        .confirm_action(authed!(pb::ConfirmActionRequest { id: id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.status, "executed", "{a:?}");
    let tasks = actions
        .list_tasks(authed!(pb::ListTasksRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].title, "Call the roaster");
    assert_eq!(tasks[0].action_id, id);

    // Without a token: refused; with a forged tenant header: still the token's tenant only.
    let e = actions
        .list_actions(tonic::Request::new(pb::ListActionsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let other = app.owner("UTC").await;
    let mut forged = tonic::Request::new(pb::GetActionRequest { id: id.clone() });
    forged.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", other.token).parse().unwrap(),
    );
    forged
        .metadata_mut()
        .insert("x-smb-tenant-id", owner.tenant_id.parse().unwrap());
    let e = actions.get_action(forged).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
}

/// An SMTP server that takes a message's data and then never answers: the client cannot know whether the
/// message was delivered.
async fn smtp_that_hangs_after_data() -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 hang.example ESMTP\r\n").await;
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            // Data received; the reply never comes.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 hang.example\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    let _ = w.write_all(reply).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_send_that_breaks_off_is_outcome_unknown_and_can_be_retried() {
    let port = smtp_that_hangs_after_data().await;
    let url = format!("smtp://127.0.0.1:{port}");
    let (app, owner, _fake) = synced_app(&[
        ("SMB_EMAIL__SMTP_URL", url.as_str()),
        ("SMB_EMAIL__TIMEOUT_MS", "500"),
    ])
    .await;
    let b = ask(&app, &owner, "email me last month's numbers").await;
    let id = b["result"]["action"]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/actions/{id}/confirm");
    let (s, a, _) = app.call("POST", &path, None, Some(&owner.token)).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["status"], "outcome_unknown", "{a}");
    assert!(
        a["outcome"].as_str().unwrap().contains("may or may not"),
        "{a}"
    );
    // The user decides to retry: a second, explicit confirmation.
    let (s, a, _) = app.call("POST", &path, None, Some(&owner.token)).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["status"], "outcome_unknown");
    assert_eq!(a["attempts"], 2);
}

#[tokio::test]
async fn a_scheduled_summary_runs_once_when_due() {
    let smtp = Smtp::start();
    let url = smtp.url();
    let (app, owner, _fake) = synced_app(&[
        ("SMB_EMAIL__SMTP_URL", url.as_str()),
        ("SMB_ACTIONS__SCHEDULER_INTERVAL_SECS", "1"),
    ])
    .await;
    let b = ask(&app, &owner, "send me a summary every day").await;
    let action = &b["result"]["action"];
    assert_eq!(action["type"], "run_workflow", "{b}");
    assert_eq!(action["params"]["cadence"], "daily");
    let id = action["id"].as_str().unwrap();
    let (s, a, _) = app
        .call(
            "POST",
            &format!("/v1/actions/{id}/confirm"),
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert!(
        a["outcome"]
            .as_str()
            .unwrap()
            .starts_with("scheduled daily"),
        "{a}"
    );
    assert!(smtp.messages().is_empty(), "scheduling sends nothing");
    // Make the schedule due now (as if a day had passed).
    let db = smb_core::store::Db::open_sqlite(&app.dir.join("smb.db"), 1)
        .await
        .unwrap();
    if let smb_core::store::Db::Sqlite(pool) = &db {
        sqlx::query("UPDATE workflow_schedules SET next_run_at = 0")
            .execute(pool)
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    while smtp.messages().is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1, "one run, one e-mail");
    assert!(mail[0].contains(owner.email.as_str()));
    let (_, list, _) = app
        .call(
            "GET",
            "/v1/actions?status=executed",
            None,
            Some(&owner.token),
        )
        .await;
    assert!(
        list["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["proposed_by"] == "scheduler"),
        "{list}"
    );
}

#[tokio::test]
async fn members_propose_but_only_owners_confirm_connect_and_add_users() {
    let (app, owner, fake) = synced_app(&[]).await;
    let member_email = format!("member-{}@example.com", uuid::Uuid::new_v4().simple());
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/users",
            Some(json!({"email": member_email, "password": "another long password", "role": "member"})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert!(b["user_id"].as_str().is_some());
    let (s, e, _) = app
        .call(
            "POST",
            "/v1/users",
            Some(json!({"email": member_email, "password": "another long password", "role": "member"})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 409, "{e}");
    let (s, e, _) = app
        .call(
            "POST",
            "/v1/users",
            Some(json!({"email": "x@example.com", "password": "another long password", "role": "admin"})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 400, "{e}");

    let (s, login) = app.login(&member_email, "another long password").await;
    assert_eq!(s, 200, "{login}");
    assert_eq!(login["role"], "member");
    assert_eq!(login["tenant_id"], owner.tenant_id.as_str());
    let member = login["access_token"].as_str().unwrap().to_string();

    // A member proposes…
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": "create a task to clean the espresso machine", "as_of": AS_OF})),
            Some(&member),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let id = b["result"]["action"]["id"].as_str().unwrap().to_string();
    assert!(
        b["answer"]
            .as_str()
            .unwrap()
            .contains("an owner confirms it"),
        "{b}"
    );
    // …but cannot confirm, connect a source, or add users; each 403 says what is owner-only.
    let (s, e, _) = app
        .call(
            "POST",
            &format!("/v1/actions/{id}/confirm"),
            None,
            Some(&member),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("owner"));
    let (s, e, _) = app
        .call(
            "POST",
            "/v1/connectors",
            Some(json!({"type": "shopify", "config": {"shop_url": fake.url(), "access_token": "shpat_x"}})),
            Some(&member),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connect a source"),
        "{e}"
    );
    let (s, e, _) = app
        .call(
            "POST",
            "/v1/users",
            Some(json!({"email": "y@example.com", "password": "another long password", "role": "owner"})),
            Some(&member),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    // The member may reject their own proposal; the owner confirms another.
    let (s, r, _) = app
        .call(
            "POST",
            &format!("/v1/actions/{id}/reject"),
            None,
            Some(&member),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "rejected");
    let (_, audit, _) = app.call("GET", "/v1/audit", None, Some(&owner.token)).await;
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "action.rejected" && e["subject"] == id.as_str()),
        "{audit}"
    );
}
