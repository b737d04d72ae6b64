//! The web app in a real browser (Debian's Chromium through playwright-core): `web/e2e/run.mjs` signs up,
//! connects this test's fake Shopify, syncs with visible progress, asks for last month's revenue and must see
//! the figure the oracle computes from the raw records, asks for revenue by month and must see one bar per
//! month so far this year, checks the phone layout and logs out. It prints the first render time and the
//! app's gzipped JavaScript (both bounded there) and saves screenshots under `target/e2e/`.
//!
//! Needs `web/node_modules` (`npm ci` in `web/`) and `/usr/bin/chromium` (or `CHROMIUM`); the test command
//! installs both.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::{Datelike, FixedOffset, TimeZone, Utc};
use smb_tests::App;
use smb_tests::fake::{Dataset, FakeSaas, SHOP_TOKEN, Sizes};
use smb_tests::oracle::{Books, Filter, M, P, V};

/// "$12,345.67", as the answers write dollars.
fn dollars(cents: i64) -> String {
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("${grouped}.{:02}", cents % 100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_up_connects_syncs_and_asks_in_the_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = root.join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run `npm ci` in web/ (scripts/test.sh does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install chromium` (scripts/test.sh does)"
    );

    // A shop whose orders run from the start of this year to two days ago (New York time).
    let tz = chrono_tz::America::New_York;
    let now = Utc::now();
    let today = now.with_timezone(&tz).date_naive();
    let zone = FixedOffset::west_opt(5 * 3600).unwrap();
    let mut t0 = zone.with_ymd_and_hms(today.year(), 1, 1, 9, 0, 0).unwrap();
    if (now - t0.with_timezone(&Utc)).num_days() < 60 {
        t0 = (now - chrono::Duration::days(300)).with_timezone(&zone);
    }
    let sizes = Sizes {
        orders: 400,
        customers: 40,
        products: 6,
        charges: 0,
        stripe_customers: 0,
    };
    let gap = (now - chrono::Duration::days(2) - t0.with_timezone(&Utc)) / sizes.orders as i32;
    let data = Dataset::generate_since(sizes, t0, gap);
    let books = Books::new(&data, tz);
    let last_month = P::LastMonth.span(today, books.first_day);
    let V::Money(cents) = books.scalar(M::Revenue, last_month, Filter::default()) else {
        panic!("revenue is money");
    };
    assert!(cents > 0, "the dataset has sales last month");
    let fake = FakeSaas::start(data).await;
    let app = App::start(&[("SMB_CONNECTORS__ALLOW_PRIVATE_NETWORKS", "true")]);

    let shots = root.join("target/e2e");
    let mut cmd = std::process::Command::new("node");
    cmd.arg("e2e/run.mjs")
        .current_dir(&web)
        .env("SMB_URL", &app.url)
        .env("SHOP_URL", fake.url())
        .env("SHOP_TOKEN", SHOP_TOKEN)
        .env("EXPECT_REVENUE", dollars(cents))
        .env("EXPECT_BARS", today.month().to_string())
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null());
    // The browser script bounds each of its steps; the fake Shopify keeps serving on this runtime meanwhile.
    let run = tokio::task::spawn_blocking(move || cmd.output());
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser test finishes within 5 minutes")
        .unwrap()
        .expect("node runs");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    println!("{out}");
    eprintln!("{err}");
    assert!(
        output.status.success(),
        "the browser test failed (screenshots in {}):\n{out}\n{err}",
        shots.display()
    );
    assert!(out.contains("first render:") && out.contains("javascript:"));
}

#[test]
fn dollars_are_written_as_the_answers_write_them() {
    assert_eq!(dollars(123_456_789), "$1,234,567.89");
    assert_eq!(dollars(99_905), "$999.05");
    assert_eq!(dollars(7), "$0.07");
}
