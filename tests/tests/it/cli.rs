//! The command line as a shop owner uses it against `smb up`: sign up, log in, ask with nothing connected
//! (told how to connect), connect Shopify, list sources, sync with progress to the end, ask again; and a
//! source the server refuses, with the server's reason shown.

use std::process::{Output, Stdio};

use smb_tests::App;
use smb_tests::fake::{Dataset, FakeSaas, SHOP_TOKEN, Sizes};

struct Cli {
    url: String,
    config: std::path::PathBuf,
}

impl Cli {
    /// Runs `smb ARGS` with its own config directory (where `smb login` keeps the session).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out: Output = smb_tests::command(&[("SMB_URL", &self.url)])
            .env("XDG_CONFIG_HOME", &self.config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("smb runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "smb {args:?} failed: {out}{err}");
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sync_and_ask_from_the_command_line() {
    let fake = FakeSaas::start(Dataset::generate(Sizes::SMALL_SHOP)).await;
    let app = App::start(&[]);
    let cli = Cli {
        url: app.url.clone(),
        config: app.dir.join("cli-config"),
    };
    let pw = "a long password for the cli";
    cli.ok(&[
        "signup",
        "--tenant-name",
        "Cli Coffee",
        "--email",
        "owner@cli.example",
        "--password",
        pw,
        "--timezone",
        "UTC",
    ]);
    cli.ok(&["login", "--email", "owner@cli.example", "--password", pw]);

    // Nothing connected: the answer says so, and the CLI says how.
    let out = cli.ok(&["ask", "what was my revenue last month?"]);
    assert!(out.contains("smb connect shopify --shop-url"), "{out}");
    assert!(cli.ok(&["connectors"]).contains("no sources connected"));

    let out = cli.ok(&[
        "connect",
        "shopify",
        "--shop-url",
        fake.url(),
        "--access-token",
        SHOP_TOKEN,
    ]);
    assert!(out.contains("connected shopify as "), "{out}");
    let id = out
        .split("connected shopify as ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap()
        .to_string();
    assert!(!out.contains(SHOP_TOKEN), "the token is never echoed");
    let list = cli.ok(&["connectors"]);
    assert!(
        list.contains(&id) && list.contains("never synced"),
        "{list}"
    );

    let out = cli.ok(&["sync", &id]);
    let records = Sizes::SMALL_SHOP.shopify_records();
    assert!(out.contains(&format!("synced {records} records")), "{out}");
    let list = cli.ok(&["connectors"]);
    assert!(list.contains("last sync succeeded"), "{list}");
    let out = cli.ok(&["ask", "how many orders did I get in total?", "--new"]);
    assert!(!out.contains("smb connect"), "{out}");

    // A source the server refuses: the server's reason, and a failing exit.
    let (ok, out, err) = cli.run(&[
        "connect",
        "shopify",
        "--shop-url",
        fake.url(),
        "--access-token",
        "shpat_wrong",
    ]);
    assert!(!ok, "{out}");
    assert!(err.starts_with("smb: ") && err.contains("HTTP 4"), "{err}");
    // Unknown connector id: the server's 404, as it said it.
    let (ok, _, err) = cli.run(&["sync", "00000000-0000-0000-0000-000000000000"]);
    assert!(!ok);
    assert!(err.contains("HTTP 404"), "{err}");
}
