//! Test support for black-box tests: starts the real `smb` binary on port 0 with its own data directory and
//! talks to it over HTTP as a client would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub struct App {
    pub url: String,
    child: Child,
    dir: PathBuf,
    pub http: reqwest::Client,
}

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("SMB_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    target.join("debug").join("smb")
}

impl App {
    /// Starts `smb up` on 127.0.0.1:0 with `env` set, and waits for its address.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("smb-it-{}", uuid::Uuid::new_v4().simple()));
        let mut cmd = Command::new(binary());
        cmd.args(["up", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .expect("smb binary runs (build it with `cargo build -p smb`)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("smb prints its address");
        let url = line
            .trim()
            .strip_prefix("smb listening on ")
            .expect("address line")
            .to_string();
        Self {
            url,
            child,
            dir,
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    /// Signs up a new tenant and logs in; returns (login body, email, password).
    pub async fn tenant(&self, tz: &str) -> (Value, String, String) {
        let email = format!("owner-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery staple".to_string();
        let (s, b, _) = self
            .call("POST", "/v1/auth/signup", Some(json!({"tenant_name": "Test Co", "email": email, "password": password, "timezone": tz, "currency": "USD"})), None)
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, b, _) = self
            .call(
                "POST",
                "/v1/auth/login",
                Some(json!({"email": email, "password": password})),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        (b, email, password)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
