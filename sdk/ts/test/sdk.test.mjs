// The SDK against a real `smb up` (the binary from SMB_BIN, or the workspace's debug build): sign-up and
// login, a typed answer, a refresh when the access token has expired, and errors mapped to their codes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

import { Intent, MemoryTokenStore, Module, SmbClient, SmbError } from "../dist/index.js";

const bin = process.env.SMB_BIN ?? resolve(import.meta.dirname, "../../../target/debug/smb");
let server;
let dir;
let baseUrl;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "smb-sdk-"));
  // Access tokens live 1 s here (the server tolerates 5 s of clock skew), so the test sees one expire.
  server = spawn(bin, ["up", "--addr", "127.0.0.1:0", "--data-dir", dir], {
    // The server reads every SMB_* variable as configuration and refuses unknown ones: the test runner's
    // own (SMB_BIN, SMB_TEST_KAFKA, ...) are not passed on.
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SMB_"))),
      SMB_AUTH__ACCESS_TTL_SECS: "1",
      SMB_LOG: "warn",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: server.stdout });
  baseUrl = await new Promise((ok, fail) => {
    server.once("exit", (c) => fail(new Error(`smb up exited (${c}) before listening`)));
    lines.once("line", (l) => ok(l.replace("smb listening on ", "").trim()));
  });
  lines.on("line", () => {});
});

after(async () => {
  // Stopped cleanly before its data directory goes.
  if (server && server.exitCode === null) {
    const exited = once(server, "exit");
    server.kill("SIGTERM");
    await exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const unique = () => `owner-${Date.now()}-${Math.random().toString(16).slice(2)}@example.com`;

test("signs up, asks, and gets a typed answer", async () => {
  const smb = new SmbClient({ baseUrl, tokens: new MemoryTokenStore() });
  const t = await smb.signup({
    businessName: "Bean There",
    email: unique(),
    password: "correct horse battery",
    timezone: "America/New_York",
  });
  assert.ok(t.accessToken && t.refreshToken && t.tenantId);
  const r = await smb.orchestrator.process({ query: "What was my revenue last month?" });
  assert.equal(r.intent, Intent.METRICS);
  assert.equal(r.module, Module.MINI_FOUNDRY);
  assert.equal(r.result.case, "metrics");
  assert.equal(r.result.value.metric, "revenue");
  assert.match(r.answer, /connect/i, "a tenant with no source is told to connect one");
});

test("refreshes an expired access token and retries the call", async () => {
  const smb = new SmbClient({ baseUrl });
  await smb.signup({
    businessName: "Refreshing Co",
    email: unique(),
    password: "correct horse battery",
    timezone: "Europe/London",
  });
  const first = smb.tokens.get().accessToken;
  await new Promise((r) => setTimeout(r, 7500));
  const list = await smb.connectors.listConnectors({});
  assert.deepEqual(list.connectors, []);
  assert.notEqual(smb.tokens.get().accessToken, first, "the call went out with a new access token");
});

test("maps errors to their code with the server's message", async () => {
  const smb = new SmbClient({ baseUrl });
  await assert.rejects(smb.login(unique(), "wrong password"), (e) => {
    assert.ok(e instanceof SmbError);
    assert.equal(e.code, "unauthenticated");
    assert.ok(e.message.length > 0);
    return true;
  });
  await smb.signup({
    businessName: "Errors Inc",
    email: unique(),
    password: "correct horse battery",
    timezone: "UTC",
  });
  await assert.rejects(smb.orchestrator.process({ query: "   " }), (e) => {
    assert.ok(e instanceof SmbError);
    assert.equal(e.code, "invalid_argument");
    assert.match(e.message, /query is empty/);
    assert.deepEqual(Object.keys(e.toJSON()), ["code", "message"]);
    return true;
  });
  // Signed out, a call is refused as unauthenticated and the tokens are gone.
  await smb.logout();
  assert.equal(smb.signedIn, false);
  await assert.rejects(smb.connectors.listConnectors({}), (e) => e.code === "unauthenticated");
});
