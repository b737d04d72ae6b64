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

async fn post(url: &str, body: &Value, token: Option<&str>) -> anyhow::Result<Value> {
    let mut req = reqwest::Client::new().post(url).json(body);
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

pub async fn ask(
    url: Option<&str>,
    query: &str,
    raw: bool,
    as_of: Option<&str>,
) -> anyhow::Result<()> {
    let path = session_file()?;
    let mut session: Value = serde_json::from_slice(
        &std::fs::read(&path).context("not logged in; run `smb login` first")?,
    )?;
    let base = url
        .map(str::to_string)
        .or_else(|| session["url"].as_str().map(str::to_string))
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let mut body = json!({"query": query});
    if let Some(a) = as_of {
        body["as_of"] = json!(a);
    }
    let token = session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let v = match post(&format!("{base}/v1/ai/query"), &body, Some(&token)).await {
        Ok(v) => v,
        Err(e) if e.to_string().contains("HTTP 401") => {
            // The access token expired: rotate the refresh token once and retry.
            let refreshed = post(
                &format!("{base}/v1/auth/refresh"),
                &json!({"refresh_token": session["refresh_token"]}),
                None,
            )
            .await?;
            session["access_token"] = refreshed["access_token"].clone();
            session["refresh_token"] = refreshed["refresh_token"].clone();
            write_private(&path, session.to_string().as_bytes())?;
            post(
                &format!("{base}/v1/ai/query"),
                &body,
                session["access_token"].as_str(),
            )
            .await?
        }
        Err(e) => return Err(e),
    };
    if raw {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", v["answer"].as_str().unwrap_or_default());
    }
    Ok(())
}
