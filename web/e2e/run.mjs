// The web app end to end in Debian's Chromium, as a person uses it: sign up, connect Shopify (a refused
// token first, then the right one), sync with visible progress, set the webhook secret, ask for last
// month's revenue and see the exact figure, ask for revenue by month and see one bar per month, propose and
// confirm an action and find it on the Actions page, check the phone layout, log out.
//
// Run by the `web` integration test (tests/tests/it/web.rs), which starts `smb up` and a fake Shopify and
// passes: SMB_URL, SHOP_URL, SHOP_TOKEN, EXPECT_REVENUE (the figure as the answer writes it, e.g.
// "$1,234.56"), EXPECT_BARS (months so far this year), SHOTS (screenshot directory), CHROMIUM (optional).
// Prints the measured first render (against its 1 s goal, not asserted: the machine is shared) and the
// app's gzipped JavaScript size (asserted: at most 150 kB).

import { mkdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env("SMB_URL");
const shots = env("SHOTS");
mkdirSync(shots, { recursive: true });

const MAX_JS_GZIP = 150 * 1024;
const GOAL_FIRST_RENDER_MS = 1000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
let failed = false;
const context = await browser.newContext({
  viewport: { width: 1280, height: 900 },
  timezoneId: "America/New_York",
  locale: "en-US",
});
const page = await context.newPage();
const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
const step = (s) => console.log(`- ${s}`);

try {
  // First render: from navigation to the sign-up form on screen.
  const started = Date.now();
  await page.goto(`${base}/`);
  await page.getByLabel("Business name").waitFor();
  const firstRender = Date.now() - started;
  const paint = await page.evaluate(
    () => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? null,
  );
  console.log(`first render: ${firstRender} ms to the sign-up form (first contentful paint ${Math.round(paint ?? -1)} ms)`);

  // The app's JavaScript, gzipped as a server would send it.
  const scripts = await page.evaluate(() =>
    [...document.querySelectorAll("script[src]")].map((s) => s.src),
  );
  let js = 0;
  for (const src of scripts) js += gzipSync(Buffer.from(await (await fetch(src)).arrayBuffer()), { level: 9 }).length;
  console.log(`javascript: ${(js / 1024).toFixed(1)} kB gzipped in ${scripts.length} file(s)`);
  if (js > MAX_JS_GZIP) throw new Error(`the app's JavaScript is ${js} bytes gzipped, over ${MAX_JS_GZIP}`);
  // A timing is a figure, not a verdict: the tests run in parallel on a shared machine, so a busy moment
  // would fail a correct app. Printed against the goal (measured alone, it is well under it).
  console.log(`first render ${firstRender <= GOAL_FIRST_RENDER_MS ? "within" : "OVER"} the ${GOAL_FIRST_RENDER_MS} ms goal`);
  await shot("1-signup");

  step("sign up");
  await page.getByLabel("Business name").fill("Bean There Coffee");
  await page.getByLabel("Email").fill(`owner-${Date.now()}@example.com`);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByLabel("Time zone").selectOption("America/New_York");
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.getByRole("button", { name: "Log out" }).waitFor();
  // A new tenant is offered questions and pointed at the connectors.
  await page.getByRole("region", { name: "Suggested questions" }).getByText("Connect Shopify or Stripe").waitFor();

  step("connect Shopify: a refused token shows the server's reason");
  await page.getByRole("link", { name: "Connectors" }).click();
  await page.getByLabel("Shop URL").fill(env("SHOP_URL"));
  await page.getByLabel("Access token").fill("shpat_wrong");
  await page.getByRole("button", { name: "Connect Shopify" }).click();
  const alert = page.getByRole("alert");
  await alert.waitFor();
  const refused = await alert.innerText();
  console.log(`  refused: ${refused}`);
  // The server's own words, as it wrote them: no client-side prefix or code.
  if (!/^Shopify: the source rejected the credentials/.test(refused)) {
    throw new Error(`the alert does not show the server's reason as it is: ${refused}`);
  }
  await shot("2-refused");

  step("connect Shopify");
  await page.getByLabel("Access token").fill(env("SHOP_TOKEN"));
  await page.getByRole("button", { name: "Connect Shopify" }).click();
  await page.getByRole("button", { name: "Sync now" }).waitFor();

  step("sync now, with progress");
  await page.getByRole("button", { name: "Sync now" }).click();
  const progress = page.locator(".progress[role=status]");
  await progress.waitFor();
  const seen = new Set();
  for (const t0 = Date.now(); Date.now() - t0 < 120_000; ) {
    const text = (await progress.innerText()).replace(/\s+/g, " ").trim();
    if (!seen.has(text)) {
      seen.add(text);
      console.log(`  ${text}`);
    }
    if (/^(succeeded|failed)/.test(text)) break;
    await page.waitForTimeout(100);
  }
  const last = [...seen].at(-1) ?? "";
  if (!last.startsWith("succeeded")) throw new Error(`the sync did not succeed: ${last}`);
  await shot("3-synced");

  step("set the webhook secret, with the URL to paste into Shopify");
  await page.getByText("Webhooks (not set up)").click();
  const url = await page.getByLabel("Webhook URL").inputValue();
  if (!/\/webhooks\/shopify\/[0-9a-f-]{36}$/.test(url)) throw new Error(`webhook URL: ${url}`);
  await page.getByLabel("Webhook secret").fill("whsec_e2e_secret");
  await page.getByRole("button", { name: "Save webhook secret" }).click();
  await page.getByText("Webhook secret saved.").waitFor();
  await page.getByText("Webhooks (secret set)").waitFor();

  step("ask for last month's revenue");
  await page.getByRole("link", { name: "Ask" }).click();
  await page.getByLabel("Ask a question").fill("What was my revenue last month?");
  await page.getByRole("button", { name: "Ask", exact: true }).click();
  const answer = page.getByRole("region", { name: "Answer" });
  await answer.locator(".answer-text").waitFor();
  const text = await answer.locator(".answer-text").innerText();
  console.log(`  ${text}`);
  if (!text.includes(env("EXPECT_REVENUE"))) {
    throw new Error(`the answer does not show ${env("EXPECT_REVENUE")}: ${text}`);
  }
  for (const fact of ["Definition", "Period", "Time zone", "Sources", "Freshness"]) {
    await answer.getByText(fact, { exact: true }).waitFor();
  }
  await shot("4-revenue");

  step("ask for revenue by month");
  await page.getByLabel("Ask a question").fill("revenue by month this year");
  await page.getByRole("button", { name: "Ask", exact: true }).click();
  await answer.locator("svg.bars").waitFor();
  const bars = await answer.locator("svg.bars rect.bar").count();
  console.log(`  ${bars} bars`);
  if (bars !== Number(env("EXPECT_BARS"))) throw new Error(`${bars} bars, expected ${env("EXPECT_BARS")}`);
  await page.getByRole("region", { name: "This session's questions" }).getByText("What was my revenue last month?").waitFor();
  await shot("5-by-month");

  step("propose an action, confirm it, and find it on the Actions page");
  if (await page.getByRole("link", { name: "Actions" }).count()) throw new Error("Actions shown before any exists");
  await page.getByLabel("Ask a question").fill("create a task to reorder Amber Roast beans by Friday");
  await page.getByRole("button", { name: "Ask", exact: true }).click();
  await answer.getByRole("button", { name: "Confirm" }).click();
  await answer.locator(".action .status", { hasText: "executed" }).waitFor();
  await page.getByRole("link", { name: "Actions" }).click();
  await page.getByRole("heading", { name: "Done" }).waitFor();
  await page.locator(".action .status", { hasText: "executed" }).first().waitFor();
  await shot("6-actions");
  await page.getByRole("link", { name: "Ask" }).click();

  step("a phone screen (390 px)");
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`the page is ${overflow} px wider than a 390 px screen`);
  await shot("7-phone");

  step("log out");
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("button", { name: "Sign up" }).waitFor();
  console.log("ok");
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e instanceof Error ? e.message : e}`);
  await shot("failure").catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
