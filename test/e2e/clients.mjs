// The JS client forms the SDK scenarios (scenarios.mjs) do not cover:
// RemoteGraph (@langchain/langgraph/remote) and curl, as alice and bob,
// through a proxy that asks langgate. Run by TestClientForms:
//
//   LANGGRAPH_URL=http://127.0.0.1:8080 TOKEN_URL=http://127.0.0.1:43339/token \
//     node --test test/e2e/clients.mjs
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { RemoteGraph } from "@langchain/langgraph/remote";
import { Client } from "@langchain/langgraph-sdk";

const BASE = process.env.LANGGRAPH_URL.replace(/\/$/, "");
const TOKEN_URL = process.env.TOKEN_URL;
const tokens = {};
let thread;

async function token(sub) {
  const res = await fetch(`${TOKEN_URL}?sub=${sub}`);
  return (await res.json()).access_token;
}

const headersOf = (who) => ({ Authorization: `Bearer ${tokens[who]}` });
const lastText = (state) => {
  const m = state.messages.at(-1);
  return typeof m.content === "string" ? m.content : m.kwargs?.content;
};

before(async () => {
  tokens.alice = await token("alice");
  tokens.bob = await token("bob");
  const alice = new Client({ apiUrl: BASE, apiKey: null, defaultHeaders: headersOf("alice"), callerOptions: { maxRetries: 0 } });
  thread = await alice.threads.create();
});

test("JS RemoteGraph: alice invokes the graph on her thread, bob cannot", { timeout: 30_000 }, async () => {
  const config = { configurable: { thread_id: thread.thread_id } };
  const mine = new RemoteGraph({ graphId: "agent", url: BASE, apiKey: null, headers: headersOf("alice") });
  const state = await mine.invoke({ messages: [{ role: "user", content: "js-remote" }] }, config);
  assert.equal(lastText(state), "echo: js-remote");
  const theirs = new RemoteGraph({ graphId: "agent", url: BASE, apiKey: null, headers: headersOf("bob") });
  await assert.rejects(theirs.invoke({ messages: [{ role: "user", content: "x" }] }, config), (e) => e?.status === 404);
});

function curl(...args) {
  const out = execFileSync("curl", ["-sS", "-w", "\n%{http_code}", ...args], { encoding: "utf8" });
  const i = out.lastIndexOf("\n");
  return { body: out.slice(0, i), status: Number(out.slice(i + 1)) };
}

test("curl: the raw API as the seed's README shows it", () => {
  const url = `${BASE}/threads/${thread.thread_id}`;
  assert.equal(curl(url).status, 401, "no token");
  const mine = curl(url, "-H", `Authorization: Bearer ${tokens.alice}`);
  assert.equal(mine.status, 200, mine.body);
  assert.equal(JSON.parse(mine.body).metadata.owner, "alice");
  assert.equal(curl(url, "-H", `Authorization: Bearer ${tokens.bob}`).status, 404, "bob");
  const search = curl(`${BASE}/threads/search`, "-X", "POST", "-H", "Content-Type: application/json", "-H", `Authorization: Bearer ${tokens.bob}`, "-d", "{}");
  assert.equal(search.status, 200, search.body);
  assert.ok(!JSON.parse(search.body).some((t) => t.thread_id === thread.thread_id), "bob's search shows alice's thread");
});
