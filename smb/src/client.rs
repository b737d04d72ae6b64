//! Client commands: plain HTTP against the gateway's JSON API.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};

fn session_file() -> anyhow::Result<PathBuf> {
    let dir = dirs::config_dir()
        .context("no user config directory")?
        .join("smb");
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join("session.json"))
}

/// One JSON request; a non-2xx answer becomes the error message the gateway gave.
async fn request(
    method: &str,
    url: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> anyhow::Result<Value> {
    let mut req = reqwest::Client::new().request(method.parse()?, url);
    if let Some(b) = body {
        req = req.json(b);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}; is `smb up` running?"))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = v["error"]["message"].as_str().unwrap_or("request failed");
        bail!("{msg} (HTTP {})", status.as_u16());
    }
    Ok(v)
}

async fn post(url: &str, body: &Value, token: Option<&str>) -> anyhow::Result<Value> {
    request("POST", url, Some(body), token).await
}

pub async fn signup(
    url: &str,
    name: &str,
    email: &str,
    password: &str,
    tz: &str,
    currency: &str,
) -> anyhow::Result<()> {
    let body = json!({"tenant_name": name, "email": email, "password": password, "timezone": tz, "currency": currency});
    let v = post(&format!("{url}/v1/auth/signup"), &body, None).await?;
    println!(
        "tenant {} created; now run: smb login --email {email}",
        v["tenant_id"].as_str().unwrap_or("?")
    );
    Ok(())
}

pub async fn login(url: &str, email: &str, password: &str) -> anyhow::Result<()> {
    let v = post(
        &format!("{url}/v1/auth/login"),
        &json!({"email": email, "password": password}),
        None,
    )
    .await?;
    let path = session_file()?;
    let saved =
        json!({"url": url, "access_token": v["access_token"], "refresh_token": v["refresh_token"]});
    write_private(&path, saved.to_string().as_bytes())?;
    println!("logged in; tokens kept in {}", path.display());
    Ok(())
}

fn write_private(path: &PathBuf, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(data)
}

/// The saved session: the gateway URL and the tokens from `smb login`.
struct Session {
    path: PathBuf,
    v: Value,
    base: String,
}

impl Session {
    fn load(url: Option<&str>) -> anyhow::Result<Self> {
        let path = session_file()?;
        let v: Value = serde_json::from_slice(
            &std::fs::read(&path).context("not logged in; run `smb login` first")?,
        )?;
        let base = url
            .map(str::to_string)
            .or_else(|| v["url"].as_str().map(str::to_string))
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        Ok(Self { path, v, base })
    }

    fn save(&self) -> anyhow::Result<()> {
        Ok(write_private(&self.path, self.v.to_string().as_bytes())?)
    }

    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        request(
            method,
            &format!("{}{path}", self.base),
            body,
            self.v["access_token"].as_str(),
        )
        .await
    }

    /// One authenticated call; an expired access token is refreshed once (the refresh token rotates).
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        match self.send(method, path, body).await {
            Err(e) if e.to_string().contains("HTTP 401") => {
                let refreshed = post(
                    &format!("{}/v1/auth/refresh", self.base),
                    &json!({"refresh_token": self.v["refresh_token"]}),
                    None,
                )
                .await?;
                self.v["access_token"] = refreshed["access_token"].clone();
                self.v["refresh_token"] = refreshed["refresh_token"].clone();
                self.save()?;
                self.send(method, path, body).await
            }
            other => other,
        }
    }
}

pub async fn ask(
    url: Option<&str>,
    query: &str,
    raw: bool,
    as_of: Option<&str>,
    new_conversation: bool,
) -> anyhow::Result<()> {
    let mut session = Session::load(url)?;
    let mut body = json!({"query": query});
    if let Some(a) = as_of {
        body["as_of"] = json!(a);
    }
    // Questions continue the last conversation (follow-ups like "and the month before?") unless asked not to.
    if !new_conversation && let Some(c) = session.v["conversation_id"].as_str() {
        body["conversation_id"] = json!(c);
    }
    let v = session.call("POST", "/v1/ai/query", Some(&body)).await?;
    if let Some(c) = v["conversation_id"].as_str() {
        session.v["conversation_id"] = json!(c);
        session.save()?;
    }
    if raw {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", v["answer"].as_str().unwrap_or_default());
        if let Some(id) = v["result"]["action"]["id"].as_str() {
            println!("\nconfirm: smb confirm {id}    reject: smb reject {id}");
        }
        // No number for want of data: say how to get some from here.
        if v["result"]["sources"].as_array().is_some_and(Vec::is_empty)
            && v["result"].get("value").is_none()
        {
            let list = session.call("GET", "/v1/connectors", None).await?;
            if list["connectors"].as_array().is_some_and(Vec::is_empty) {
                println!("{CONNECT_HINT}");
            } else {
                println!("\nstart a sync with: smb sync ID   (smb connectors lists them)");
            }
        }
    }
    Ok(())
}

const CONNECT_HINT: &str = "\nconnect a source first:\n  smb connect shopify --shop-url https://your-store.myshopify.com --access-token shpat_...\n  smb connect stripe --secret-key sk_live_...";

/// `smb connect shopify|stripe …`: creates the connector; its secrets are never shown again.
pub async fn connect(url: Option<&str>, body: &Value) -> anyhow::Result<()> {
    let mut session = Session::load(url)?;
    let v = session.call("POST", "/v1/connectors", Some(body)).await?;
    let id = v["id"].as_str().unwrap_or("?");
    println!(
        "connected {} as {id}; sync it now with: smb sync {id}",
        v["type"].as_str().unwrap_or("source")
    );
    Ok(())
}

/// `smb connectors`: each source with its last sync.
pub async fn connectors(url: Option<&str>) -> anyhow::Result<()> {
    let mut session = Session::load(url)?;
    let v = session.call("GET", "/v1/connectors", None).await?;
    let list = v["connectors"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no sources connected{CONNECT_HINT}");
    }
    for c in &list {
        let last = match (c["last_sync_at"].as_str(), c["last_sync_status"].as_str()) {
            (Some(at), Some(status)) => format!("last sync {status} at {at}"),
            _ => "never synced".to_string(),
        };
        println!(
            "{}  {:<8} {}{}",
            c["id"].as_str().unwrap_or("?"),
            c["type"].as_str().unwrap_or("?"),
            last,
            if c["webhook_configured"] == true {
                "  (webhooks on)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `smb sync ID`: starts a sync and follows it (records so far, status) until it succeeds or fails.
pub async fn sync(url: Option<&str>, id: &str) -> anyhow::Result<()> {
    let mut session = Session::load(url)?;
    let started = session
        .call("POST", &format!("/v1/connectors/{id}/sync"), None)
        .await?;
    let sync_id = started["sync_id"]
        .as_str()
        .context("the gateway answered without a sync id")?
        .to_string();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .expect("static template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    loop {
        let run = session
            .call("GET", &format!("/v1/connectors/{id}/syncs/{sync_id}"), None)
            .await?;
        let status = run["status"].as_str().unwrap_or("unknown");
        let records = run["records_synced"].as_i64().unwrap_or(0);
        bar.set_message(format!("{status}: {records} records"));
        match status {
            "succeeded" => {
                let failed = run["records_failed"].as_i64().unwrap_or(0);
                let msg = format!(
                    "synced {records} records in {:.1} s{}",
                    run["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                    if failed > 0 {
                        format!(" ({failed} rejected)")
                    } else {
                        String::new()
                    }
                );
                // Not a terminal (a script, a pipe): the bar draws nothing, so the outcome is printed.
                if bar.is_hidden() {
                    println!("{msg}");
                }
                bar.finish_with_message(msg);
                return Ok(());
            }
            "failed" => {
                bar.abandon_with_message(format!("failed after {records} records"));
                bail!(
                    "sync {sync_id} failed: {}",
                    run["error"].as_str().unwrap_or("no reason given")
                );
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(300)).await,
        }
    }
}

fn print_action(a: &Value) {
    println!(
        "{}  {:<13} {:<21} {}",
        a["id"].as_str().unwrap_or("?"),
        a["type"].as_str().unwrap_or("?"),
        a["status"].as_str().unwrap_or("?"),
        a["preview"].as_str().unwrap_or("")
    );
    if let Some(o) = a["outcome"].as_str() {
        println!("    {o}");
    }
}

/// `smb actions`: proposals and what became of them, newest first.
pub async fn actions(url: Option<&str>, status: Option<&str>) -> anyhow::Result<()> {
    let mut session = Session::load(url)?;
    let path = match status {
        Some(s) => format!("/v1/actions?status={s}"),
        None => "/v1/actions".into(),
    };
    let v = session.call("GET", &path, None).await?;
    let list = v["actions"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no actions");
    }
    for a in &list {
        print_action(a);
    }
    Ok(())
}

/// `smb confirm ID` / `smb reject ID`.
pub async fn decide(url: Option<&str>, id: &str, confirm: bool) -> anyhow::Result<()> {
    let mut session = Session::load(url)?;
    let verb = if confirm { "confirm" } else { "reject" };
    let v = session
        .call("POST", &format!("/v1/actions/{id}/{verb}"), None)
        .await?;
    print_action(&v);
    Ok(())
}

/// `smb tasks`: open and done tasks.
pub async fn tasks(url: Option<&str>, status: Option<&str>) -> anyhow::Result<()> {
    let mut session = Session::load(url)?;
    let path = match status {
        Some(s) => format!("/v1/tasks?status={s}"),
        None => "/v1/tasks".into(),
    };
    let v = session.call("GET", &path, None).await?;
    let list = v["tasks"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no tasks");
    }
    for t in &list {
        println!(
            "{}  [{}] {}{}",
            t["id"].as_str().unwrap_or("?"),
            if t["status"] == "done" { "x" } else { " " },
            t["title"].as_str().unwrap_or(""),
            t["due_date"]
                .as_str()
                .map(|d| format!(" (due {d})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
