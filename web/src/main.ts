// The SMB Command web app: sign up or log in, ask questions, connect and sync sources, confirm actions.
// Every call goes through the SDK over grpc-web; nothing here talks to the JSON routes.

import { render } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { html } from "htm/preact";

import {
  type Action,
  type Connector,
  ConnectorType,
  Grain,
  type Hit,
  LocalStorageTokenStore,
  type MetricsResult,
  type ProcessResponse,
  SmbClient,
  SmbError,
  type SyncRun,
  SyncStatus,
} from "@smb-command/sdk";

import "./style.css";

const client = new SmbClient({
  baseUrl: window.location.origin,
  tokens: new LocalStorageTokenStore(),
});

type Page = "ask" | "connectors" | "actions";

function pageFromHash(): Page {
  const h = window.location.hash.replace(/^#\/?/, "");
  return h === "connectors" || h === "actions" ? h : "ask";
}

function message(e: unknown): string {
  return (e instanceof SmbError ? e : new SmbError("internal", String(e))).message;
}

/** An error shown where it happened, read out by screen readers. */
function Alert({ error }: { error: string | null }) {
  return error ? html`<div class="alert" role="alert">${error}</div>` : null;
}

// ---------------------------------------------------------------------------------------------------------
// Sign up and log in

function timeZones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (k: string) => string[] };
  return intl.supportedValuesOf?.("timeZone") ?? ["UTC"];
}

function AuthPage({ onSignedIn }: { onSignedIn: () => void }) {
  const [mode, setMode] = useState<"login" | "signup">("signup");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const local = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

  const submit = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    const get = (k: string) => String(f.get(k) ?? "").trim();
    setBusy(true);
    setError(null);
    try {
      if (mode === "signup") {
        await client.signup({
          businessName: get("business"),
          email: get("email"),
          password: String(f.get("password") ?? ""),
          timezone: get("timezone"),
        });
      } else {
        await client.login(get("email"), String(f.get("password") ?? ""));
      }
      onSignedIn();
    } catch (err) {
      setError(message(err));
    } finally {
      setBusy(false);
    }
  };

  return html`
    <main class="auth">
      <h1>SMB Command</h1>
      <p class="lede">Ask your business's numbers in plain words.</p>
      <div class="tabs" role="group" aria-label="Account">
        <button type="button" class=${mode === "signup" ? "tab on" : "tab"} aria-pressed=${mode === "signup"}
          onClick=${() => { setMode("signup"); setError(null); }}>Create an account</button>
        <button type="button" class=${mode === "login" ? "tab on" : "tab"} aria-pressed=${mode === "login"}
          onClick=${() => { setMode("login"); setError(null); }}>I have an account</button>
      </div>
      <form onSubmit=${submit} class="card">
        ${mode === "signup" &&
        html`<label for="business">Business name</label>
          <input id="business" name="business" required autocomplete="organization" />`}
        <label for="email">Email</label>
        <input id="email" name="email" type="email" required autocomplete="email" />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" required minlength=${mode === "signup" ? 8 : 1}
          autocomplete=${mode === "signup" ? "new-password" : "current-password"} />
        ${mode === "signup" &&
        html`<label for="timezone">Time zone</label>
          <select id="timezone" name="timezone">
            ${timeZones().map((z) => html`<option value=${z} selected=${z === local}>${z}</option>`)}
          </select>`}
        <${Alert} error=${error} />
        <button type="submit" class="primary" disabled=${busy}>${mode === "signup" ? "Sign up" : "Log in"}</button>
      </form>
    </main>
  `;
}

// ---------------------------------------------------------------------------------------------------------
// Ask

/** A figure: money in `currency` (set for money metrics), else a count. */
function formatValue(v: number, currency: string): string {
  if (currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(v);
    } catch {
      return `${v.toFixed(2)} ${currency}`;
    }
  }
  return new Intl.NumberFormat().format(v);
}

/** An amount in minor units (cents; yen are whole) in currency units, by the currency's own exponent. */
function fromMinor(minor: bigint, currency: string): number {
  let digits = 2;
  try {
    digits = new Intl.NumberFormat(undefined, { style: "currency", currency }).resolvedOptions()
      .maximumFractionDigits ?? 2;
  } catch {
    // An unknown code: cents.
  }
  return Number(minor) / 10 ** digits;
}

const SOURCE_NAMES: Record<string, string> = { shopify: "Shopify", stripe: "Stripe" };

/** A bucket's axis label: "Mar" for a month, "Q2" for a quarter, "05-12" for a day or a week. */
function tick(label: string, grain: Grain): string {
  const d = new Date(`${label}T12:00:00Z`);
  if (Number.isNaN(d.getTime())) return label;
  if (grain === Grain.MONTH) return d.toLocaleString(undefined, { month: "short", timeZone: "UTC" });
  if (grain === Grain.QUARTER) return `Q${Math.floor(d.getUTCMonth() / 3) + 1}`;
  return label.slice(5);
}

function Chart({ m, currency }: { m: MetricsResult; currency: string }) {
  const rows = m.rows;
  if (rows.length === 0) return null;
  const max = Math.max(...rows.map((r) => r.value), 0) || 1;
  const breakdown = m.grain !== Grain.UNSPECIFIED;
  const name = `${m.metric.replace(/_/g, " ")}${breakdown ? ` by ${Grain[m.grain].toLowerCase()}` : ""}`;
  if (!breakdown) {
    // A ranking: horizontal bars, the label beside each.
    return html`<figure class="chart ranking" aria-label=${name}>
      ${rows.map(
        (r) => html`<div class="hbar">
          <span class="hbar-label">${r.label}</span>
          <span class="hbar-track"><span class="bar" style=${`width:${(r.value / max) * 100}%`}></span></span>
          <span class="hbar-value">${formatValue(r.value, currency)}</span>
        </div>`,
      )}
    </figure>`;
  }
  const w = 600;
  const h = 220;
  const gap = 4;
  const bw = Math.max(2, (w - gap * rows.length) / rows.length);
  return html`<figure class="chart">
    <svg class="bars" viewBox=${`0 0 ${w} ${h + 24}`} role="img" aria-label=${`${name}: ${rows.length} bars`}>
      ${rows.map((r, i) => {
        const bh = (Math.max(r.value, 0) / max) * h;
        const x = i * (bw + gap);
        return html`<g>
          <rect class="bar" x=${x} y=${h - bh} width=${bw} height=${bh} data-label=${r.label}>
            <title>${r.label}: ${formatValue(r.value, currency)}</title>
          </rect>
          ${rows.length <= 16 &&
          html`<text x=${x + bw / 2} y=${h + 16} text-anchor="middle">${tick(r.label, m.grain)}</text>`}
        </g>`;
      })}
    </svg>
  </figure>`;
}

function Facts({ m }: { m: MetricsResult }) {
  const fresh = Object.entries(m.freshness);
  return html`<dl class="facts">
    ${m.definition && html`<dt>Definition</dt><dd>${m.definition}</dd>`}
    ${m.period && html`<dt>Period</dt><dd>${m.period.start} – ${m.period.end}</dd>`}
    ${m.timezone && html`<dt>Time zone</dt><dd>${m.timezone}</dd>`}
    ${m.sources.length > 0 &&
    html`<dt>Sources</dt><dd>${m.sources.map((s) => SOURCE_NAMES[s] ?? s).join(", ")}</dd>`}
    ${fresh.length > 0 &&
    html`<dt>Freshness</dt><dd>${fresh
      .map(([s, at]) => `${SOURCE_NAMES[s] ?? s} synced ${new Date(at).toLocaleString()}`)
      .join("; ")}</dd>`}
  </dl>`;
}

function Rows({ m, currency }: { m: MetricsResult; currency: string }) {
  if (m.rows.length === 0) return null;
  return html`<div class="table-wrap"><table>
    <thead><tr><th scope="col">${m.grain !== Grain.UNSPECIFIED ? "From" : "Name"}</th>
      <th scope="col" class="num">Value</th></tr></thead>
    <tbody>${m.rows.map(
      (r) => html`<tr><td>${r.label}</td><td class="num">${formatValue(r.value, currency)}</td></tr>`,
    )}</tbody>
  </table></div>`;
}

function Hits({ hits }: { hits: Hit[] }) {
  if (hits.length === 0) return null;
  return html`<ol class="hits">
    ${hits.map(
      (h) => html`<li>
        <strong>${h.title}</strong> <span class="kind">${h.kind} · ${SOURCE_NAMES[h.source] ?? h.source}</span>
        ${h.snippet && html`<blockquote>${h.snippet}</blockquote>`}
        <span class="hit-facts">${[
          h.date,
          h.customer || h.customerEmail,
          h.total !== undefined && h.currency
            ? formatValue(fromMinor(h.total, h.currency), h.currency)
            : "",
          h.order ? `order ${h.order}` : "",
        ]
          .filter(Boolean)
          .join(" · ")}</span>
      </li>`,
    )}
  </ol>`;
}

function ActionCard({ action, onChanged }: { action: Action; onChanged: () => void }) {
  const [a, setA] = useState(action);
  const [error, setError] = useState<string | null>(null);
  const decide = async (confirm: boolean) => {
    setError(null);
    try {
      setA(confirm ? await client.actions.confirmAction({ id: a.id }) : await client.actions.rejectAction({ id: a.id }));
      onChanged();
    } catch (e) {
      setError(message(e));
    }
  };
  return html`<div class="action">
    <p><strong>${a.type.replace(/_/g, " ")}</strong> · <span class="status">${a.status.replace(/_/g, " ")}</span></p>
    <p>${a.preview}</p>
    ${a.outcome && html`<p class="outcome">${a.outcome}</p>`}
    <${Alert} error=${error} />
    ${(a.status === "pending_confirmation" || a.status === "failed" || a.status === "outcome_unknown") &&
    html`<div class="row">
      <button type="button" class="primary" onClick=${() => decide(true)}>Confirm</button>
      ${a.status === "pending_confirmation" &&
      html`<button type="button" onClick=${() => decide(false)}>Reject</button>`}
    </div>`}
  </div>`;
}

function Answer({ r, onChanged }: { r: ProcessResponse; onChanged: () => void }) {
  const res = r.result;
  const currency = res.case === "metrics" ? res.value.currency : "";
  return html`<section class="card answer" aria-label="Answer">
    <p class="answer-text">${r.answer}</p>
    ${res.case === "metrics" &&
    html`<${Facts} m=${res.value} /><${Chart} m=${res.value} currency=${currency} />
      <${Rows} m=${res.value} currency=${currency} />`}
    ${res.case === "search" && html`<${Hits} hits=${res.value.hits} />`}
    ${res.case === "action" && res.value.action &&
    html`<${ActionCard} action=${res.value.action} onChanged=${onChanged} />`}
  </section>`;
}

/** This sign-in's questions and answers (forgotten at log out). */
const session: {
  answer: ProcessResponse | null;
  history: { q: string; a: ProcessResponse }[];
  conversation: string;
} = { answer: null, history: [], conversation: "" };

const SUGGESTIONS = [
  "What was my revenue last month?",
  "Revenue by month this year",
  "Who were my top 5 customers this year?",
  "How many orders did I get this week?",
  "Average order value last quarter compared with the quarter before",
];

function AskPage({
  connectors,
  onActionsChanged,
}: {
  connectors: Connector[] | null;
  onActionsChanged: () => void;
}) {
  const [query, setQuery] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // The session's answers outlive the page: back from Connectors, the last answer and the history are there.
  const [answer, setAnswer] = useState<ProcessResponse | null>(session.answer);
  const [history, setHistory] = useState(session.history);
  const conversation = useRef(session.conversation);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    session.answer = answer;
    session.history = history;
  }, [answer, history]);

  const ask = async (q: string) => {
    const text = q.trim();
    if (!text) {
      setError("Type a question first, for example \"What was my revenue last month?\"");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const r = await client.orchestrator.process({ query: text, conversationId: conversation.current });
      conversation.current = r.conversationId;
      session.conversation = r.conversationId;
      setAnswer(r);
      setHistory((h) => [{ q: text, a: r }, ...h].slice(0, 50));
      setQuery("");
      if (r.result.case === "action") onActionsChanged();
    } catch (e) {
      setError(message(e));
    } finally {
      setBusy(false);
      input.current?.focus();
    }
  };

  const noSource = connectors !== null && connectors.length === 0;
  return html`<main>
    <form class="ask" onSubmit=${(e: Event) => { e.preventDefault(); void ask(query); }}>
      <label for="question">Ask a question</label>
      <div class="row">
        <input id="question" ref=${input} value=${query} autocomplete="off"
          placeholder="What was my revenue last month?"
          onInput=${(e: Event) => setQuery((e.target as HTMLInputElement).value)} />
        <button type="submit" class="primary" disabled=${busy}>Ask</button>
      </div>
    </form>
    <${Alert} error=${error} />
    ${busy && html`<p class="muted" role="status">Working it out…</p>`}
    ${answer && html`<${Answer} r=${answer} onChanged=${onActionsChanged} />`}
    ${history.length === 0 &&
    html`<section class="card suggestions" aria-label="Suggested questions">
      ${noSource &&
      html`<p>No data source is connected yet. <a href="#/connectors">Connect Shopify or Stripe</a>, let the
        first sync finish, then ask.</p>`}
      <p>Try asking:</p>
      <ul>${SUGGESTIONS.map(
        (s) => html`<li><button type="button" class="link" onClick=${() => { setQuery(s); void ask(s); }}>${s}</button></li>`,
      )}</ul>
    </section>`}
    ${history.length > 0 &&
    html`<section class="history" aria-label="This session's questions">
      <h2>This session</h2>
      <ol>${history.map(
        (h) => html`<li><button type="button" class="link" onClick=${() => setAnswer(h.a)}>${h.q}</button></li>`,
      )}</ol>
    </section>`}
  </main>`;
}

// ---------------------------------------------------------------------------------------------------------
// Connectors

const STATUS_WORDS: Record<number, string> = {
  [SyncStatus.UNSPECIFIED]: "never synced",
  [SyncStatus.QUEUED]: "queued",
  [SyncStatus.RUNNING]: "running",
  [SyncStatus.SUCCEEDED]: "succeeded",
  [SyncStatus.FAILED]: "failed",
};

function typeName(t: ConnectorType): string {
  return t === ConnectorType.SHOPIFY ? "Shopify" : t === ConnectorType.STRIPE ? "Stripe" : "Source";
}

function ConnectorCard({ c, onChanged }: { c: Connector; onChanged: () => void }) {
  const [run, setRun] = useState<SyncRun | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const source = c.type === ConnectorType.SHOPIFY ? "shopify" : "stripe";
  const webhookUrl = `${window.location.origin}/webhooks/${source}/${c.id}`;
  const syncing = run !== null && (run.status === SyncStatus.QUEUED || run.status === SyncStatus.RUNNING);

  const sync = async () => {
    setError(null);
    try {
      const { syncId } = await client.connectors.triggerSync({ connectorId: c.id });
      for (;;) {
        const r = await client.connectors.getSyncRun({ connectorId: c.id, syncId });
        setRun(r);
        if (r.status === SyncStatus.SUCCEEDED || r.status === SyncStatus.FAILED) break;
        await new Promise((ok) => setTimeout(ok, 400));
      }
      onChanged();
    } catch (e) {
      setError(message(e));
    }
  };

  const saveSecret = async (e: Event) => {
    e.preventDefault();
    const form = e.target as HTMLFormElement;
    const secret = String(new FormData(form).get("secret") ?? "");
    setError(null);
    setSaved(false);
    try {
      await client.connectors.updateConnector({ id: c.id, config: { webhook_secret: secret } });
      form.reset();
      setSaved(true);
      onChanged();
    } catch (err) {
      setError(message(err));
    }
  };

  const where = c.settings["shop_url"] ?? c.settings["api_base"] ?? "";
  return html`<li class="card connector" aria-label=${`${typeName(c.type)} ${where}`}>
    <h3>${typeName(c.type)} <span class="muted">${where}</span></h3>
    <p>Last sync: ${c.lastSyncAt ? `${new Date(c.lastSyncAt).toLocaleString()} — ` : ""}
      <span class="status">${STATUS_WORDS[c.lastSyncStatus] ?? "unknown"}</span></p>
    <div class="row">
      <button type="button" class="primary" disabled=${syncing} onClick=${sync}>Sync now</button>
    </div>
    ${run &&
    html`<p class="progress" role="status" aria-live="polite">
      <span class="status">${STATUS_WORDS[run.status]}</span>: ${Number(run.recordsSynced).toLocaleString()} records
      ${run.recordsFailed > 0 ? ` (${Number(run.recordsFailed)} rejected)` : ""}
      ${run.status === SyncStatus.SUCCEEDED ? ` in ${(Number(run.durationMs) / 1000).toFixed(1)} s` : ""}
      ${run.error ? ` — ${run.error}` : ""}
    </p>`}
    <details>
      <summary>Webhooks ${c.webhookConfigured ? "(secret set)" : "(not set up)"}</summary>
      <p>Paste this URL into ${typeName(c.type)}'s webhook settings, with the signing secret below:</p>
      <input class="url" readonly value=${webhookUrl} aria-label="Webhook URL"
        onFocus=${(e: Event) => (e.target as HTMLInputElement).select()} />
      <form onSubmit=${saveSecret} class="row">
        <label for=${`secret-${c.id}`}>Webhook secret</label>
        <input id=${`secret-${c.id}`} name="secret" type="password" required autocomplete="off" />
        <button type="submit">Save webhook secret</button>
      </form>
      ${saved && html`<p class="muted" role="status">Webhook secret saved.</p>`}
    </details>
    <${Alert} error=${error} />
  </li>`;
}

function ConnectorsPage({ connectors, onChanged }: { connectors: Connector[] | null; onChanged: () => void }) {
  const [error, setError] = useState<{ form: string; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  const connect = (type: ConnectorType, form: string, fields: Record<string, string>) => async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    const config: Record<string, string> = {};
    for (const [name, key] of Object.entries(fields)) {
      const v = String(f.get(name) ?? "").trim();
      if (v) config[key] = v;
    }
    setBusy(true);
    setError(null);
    try {
      await client.connectors.createConnector({ type, config });
      (e.target as HTMLFormElement).reset();
      onChanged();
    } catch (err) {
      setError({ form, text: message(err) });
    } finally {
      setBusy(false);
    }
  };

  return html`<main>
    <h2>Sources</h2>
    ${connectors === null && html`<p class="muted">Loading…</p>`}
    ${connectors?.length === 0 && html`<p>No source connected yet.</p>`}
    <ul class="connectors">${(connectors ?? []).map((c) => html`<${ConnectorCard} key=${c.id} c=${c} onChanged=${onChanged} />`)}</ul>
    <div class="grid">
      <form class="card" onSubmit=${connect(ConnectorType.SHOPIFY, "shopify", { shop: "shop_url", token: "access_token" })}>
        <h3>Add Shopify</h3>
        <label for="shop-url">Shop URL</label>
        <input id="shop-url" name="shop" required placeholder="https://your-shop.myshopify.com" />
        <label for="access-token">Access token</label>
        <input id="access-token" name="token" type="password" required autocomplete="off" />
        ${error?.form === "shopify" && html`<${Alert} error=${error.text} />`}
        <button type="submit" class="primary" disabled=${busy}>Connect Shopify</button>
      </form>
      <form class="card" onSubmit=${connect(ConnectorType.STRIPE, "stripe", { base: "api_base", key: "secret_key" })}>
        <h3>Add Stripe</h3>
        <label for="api-base">API base</label>
        <input id="api-base" name="base" placeholder="https://api.stripe.com" />
        <label for="secret-key">Secret key</label>
        <input id="secret-key" name="key" type="password" required autocomplete="off" />
        ${error?.form === "stripe" && html`<${Alert} error=${error.text} />`}
        <button type="submit" class="primary" disabled=${busy}>Connect Stripe</button>
      </form>
    </div>
  </main>`;
}

// ---------------------------------------------------------------------------------------------------------
// Actions

function ActionsPage({ actions, onChanged }: { actions: Action[]; onChanged: () => void }) {
  const pending = actions.filter((a) => a.status === "pending_confirmation");
  const rest = actions.filter((a) => a.status !== "pending_confirmation");
  return html`<main>
    <h2>Waiting for you</h2>
    ${pending.length === 0 && html`<p class="muted">Nothing to confirm.</p>`}
    ${pending.map((a) => html`<div class="card" key=${a.id}><${ActionCard} action=${a} onChanged=${onChanged} /></div>`)}
    <h2>Done</h2>
    ${rest.length === 0 && html`<p class="muted">No action has been decided yet.</p>`}
    ${rest.map((a) => html`<div class="card" key=${a.id}><${ActionCard} action=${a} onChanged=${onChanged} /></div>`)}
  </main>`;
}

// ---------------------------------------------------------------------------------------------------------
// The app

function App() {
  const [signedIn, setSignedIn] = useState(client.signedIn);
  const [page, setPage] = useState<Page>(pageFromHash());
  const [connectors, setConnectors] = useState<Connector[] | null>(null);
  const [actions, setActions] = useState<Action[]>([]);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const on = () => setPage(pageFromHash());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);

  const signedOut = useCallback((e: unknown) => {
    if (e instanceof SmbError && e.code === "unauthenticated") {
      client.tokens.set(null);
      setSignedIn(false);
      return true;
    }
    return false;
  }, []);

  const loadConnectors = useCallback(async () => {
    try {
      setConnectors((await client.connectors.listConnectors({})).connectors);
    } catch (e) {
      if (!signedOut(e)) setError(message(e));
    }
  }, [signedOut]);

  const loadActions = useCallback(async () => {
    try {
      setActions((await client.actions.listActions({ limit: 100 })).actions);
    } catch (e) {
      if (!signedOut(e)) setError(message(e));
    }
  }, [signedOut]);

  useEffect(() => {
    if (!signedIn) return;
    setError(null);
    void loadConnectors();
    void loadActions();
  }, [signedIn, loadConnectors, loadActions]);

  if (!signedIn) return html`<${AuthPage} onSignedIn=${() => setSignedIn(true)} />`;

  const logout = async () => {
    await client.logout();
    Object.assign(session, { answer: null, history: [], conversation: "" });
    setSignedIn(false);
    setConnectors(null);
    setActions([]);
    window.location.hash = "";
  };
  const link = (p: Page, label: string) =>
    html`<a href=${`#/${p}`} aria-current=${page === p ? "page" : undefined}>${label}</a>`;
  return html`
    <header>
      <span class="brand">SMB Command</span>
      <nav aria-label="Main">
        ${link("ask", "Ask")} ${link("connectors", "Connectors")}
        ${actions.length > 0 && link("actions", "Actions")}
      </nav>
      <button type="button" onClick=${logout}>Log out</button>
    </header>
    <${Alert} error=${error} />
    ${page === "ask" &&
    html`<${AskPage} connectors=${connectors} onActionsChanged=${loadActions} />`}
    ${page === "connectors" && html`<${ConnectorsPage} connectors=${connectors} onChanged=${loadConnectors} />`}
    ${page === "actions" && html`<${ActionsPage} actions=${actions} onChanged=${loadActions} />`}
  `;
}

const root = document.getElementById("app");
if (root) {
  root.textContent = "";
  render(html`<${App} />`, root);
}
