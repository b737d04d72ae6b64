// Asks one question as a signed-in user and prints the typed result.
// Usage: node examples/ask.mjs BASE_URL EMAIL PASSWORD "What was my revenue last month?"
import { SmbClient, SmbError } from "../dist/index.js";

const [baseUrl, email, password, ...words] = process.argv.slice(2);
if (!baseUrl || !email || !password || words.length === 0) {
  console.error('usage: node examples/ask.mjs BASE_URL EMAIL PASSWORD "question"');
  process.exit(2);
}
const smb = new SmbClient({ baseUrl });
try {
  await smb.login(email, password);
  const r = await smb.orchestrator.process({ query: words.join(" ") });
  console.log(r.answer);
  switch (r.result.case) {
    case "metrics": {
      const m = r.result.value;
      console.log(`${m.metric} ${m.period?.start}..${m.period?.end} (${m.timezone}): ${m.value ?? ""}`);
      for (const row of m.rows) console.log(`  ${row.label}\t${row.value}`);
      break;
    }
    case "search":
      for (const h of r.result.value.hits) console.log(`  ${h.kind} ${h.title}: ${h.snippet}`);
      break;
    case "action":
      console.log(`  proposed: ${r.result.value.action?.type} (${r.result.value.action?.status})`);
      break;
  }
} catch (e) {
  const err = e instanceof SmbError ? e : new SmbError("internal", String(e));
  console.error(`${err.code}: ${err.message}`);
  process.exit(1);
}
