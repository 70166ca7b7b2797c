// The adapter on its own, without langgate or a proxy: server.mjs is started
// here and sent the headers langgate would send (and broken ones), to check
// what examples/langgraph/upstream/auth.mjs accepts, refuses and enforces.
// Also: server.mjs's contract (READY line, SIGTERM) and the langgraph.json
// files against the CLI's own schema. auth.py is tested with the real
// langgraph_sdk by adapter_test.py, and inside the real Python server by the
// end-to-end tests.
//
//   node --test test/e2e/adapter.test.mjs
//
// The end-to-end scenarios through langgate are in scenarios.mjs.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@langchain/langgraph-sdk";
import { register } from "node:module";
import { getConfig } from "@langchain/langgraph-cli/dist/utils/config.mjs";

const here = dirname(fileURLToPath(import.meta.url));
// The adapter lives outside this Node project: load it through the same
// resolve hook as the server does (hooks.mjs), so its imports resolve here.
register("./hooks.mjs", import.meta.url, { data: { parentURL: import.meta.url } });
const { ContextError, canonicalQuery, contextEvent, valueAllowed, verifyContext } = await import(
  "../../examples/langgraph/upstream/auth.mjs"
);
const upstream = resolve(here, "../../examples/langgraph/upstream");

let server; // child process
let url;
let stdoutText = "";

before(async () => {
  server = spawn(process.execPath, [join(here, "server.mjs")], {
    env: { ...process.env, PORT: "0", LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  server.stderr.on("data", (d) => (stderr += d));
  url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no READY line in 20s; stderr:\n${stderr}`)), 20_000);
    server.stdout.on("data", (d) => {
      stdoutText += d;
      const m = /^READY (http:\/\/127\.0\.0\.1:\d+)\n/.exec(stdoutText);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    server.on("exit", (code) => fail(new Error(`server exited with ${code} before READY; stderr:\n${stderr}`)));
  });
});

after(() => {
  if (server && server.exitCode === null) server.kill("SIGKILL");
});

// Every event of LangGraph's vocabulary.
const EVERY_EVENT = [
  ...["create", "read", "update", "delete", "search", "create_run"].map((a) => `threads:${a}`),
  ...["create", "read", "update", "delete", "search"].map((a) => `assistants:${a}`),
  ...["create", "read", "update", "delete", "search"].map((a) => `crons:${a}`),
  ...["put", "get", "delete", "search", "list_namespaces"].map((a) => `store:${a}`),
];

// The headers langgate sends on an allowed request (by default every event
// granted, each with the request's filters).
function lg(identity, { filters = { owner: identity }, metadata = { owner: identity }, permissions = [], events } = {}) {
  events ??= Object.fromEntries(EVERY_EVENT.map((e) => [e, { filters }]));
  return {
    "x-langgate-events": JSON.stringify(events),
    "x-langgate-user-id": identity,
    "x-langgate-user": JSON.stringify({ identity, display_name: identity, is_authenticated: true, permissions }),
    "x-langgate-permissions": JSON.stringify(permissions),
    "x-langgate-filters": JSON.stringify(filters),
    "x-langgate-metadata": JSON.stringify(metadata),
  };
}

async function call(method, path, headers = {}, body) {
  const h = { ...headers };
  if (body !== undefined) h["content-type"] = "application/json";
  const res = await fetch(url + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, type: res.headers.get("content-type"), text, json: () => JSON.parse(text) };
}

const sdk = (headers) => new Client({ apiUrl: url, apiKey: null, defaultHeaders: headers, callerOptions: { maxRetries: 0 } });

test("verifyContext reaches every shared vector's verdict (test/vectors/context.json)", async () => {
  const vectors = JSON.parse(readFileSync(join(here, "../vectors/context.json"), "utf8"));
  assert.ok(vectors.cases.length >= 10, "too few vectors");
  assert.ok(vectors.queries.length >= 20, "too few queries");
  for (const q of vectors.queries) {
    let got = "";
    let refused = false;
    try {
      got = canonicalQuery(q.raw);
    } catch (err) {
      if (!(err instanceof URIError)) throw err;
      refused = true;
    }
    assert.deepEqual([got, refused], [q.canonical, q.refused ?? false], `canonical query of ${JSON.stringify(q.raw)}`);
  }
  for (const c of vectors.cases) {
    const e = c.expect;
    let verdict = "ok";
    let claims;
    try {
      claims = await verifyContext(c.token, vectors.jwks, {
        issuer: e.issuer, audience: e.audience, method: e.method, path: e.path, query: e.query, bodySha256: e.body_sha256, now: e.now,
      });
    } catch (err) {
      if (!(err instanceof ContextError)) throw err;
      verdict = err.message;
    }
    assert.equal(verdict, c.verdict, c.name);
    if (verdict === "ok" && c.event) {
      const grant = contextEvent(claims, c.event.resource, c.event.action);
      assert.equal(grant !== undefined, c.event.granted, `${c.name}: grant`);
      if (grant) assert.deepEqual(grant.filters, c.event.filters, `${c.name}: filters`);
    }
    for (const v of c.values ?? []) {
      const grant = contextEvent(claims, v.resource, v.action);
      const got = valueAllowed(grant.values, v.value, v.resource) ? "ok" : "value";
      assert.equal(got, v.verdict, `${c.name}: value ${JSON.stringify(v.value)}`);
    }
  }
});

test("server.mjs prints exactly one READY line on stdout", () => {
  assert.match(stdoutText, /^READY http:\/\/127\.0\.0\.1:\d+\n$/);
});

test("refuses requests without langgate's headers, or with broken ones (401 JSON)", async () => {
  const good = lg("alice");
  const cases = {
    "no headers": {},
    "x-auth-scheme: langsmith (studio auth is disabled)": { "x-auth-scheme": "langsmith" },
    "x-langgate-user-id only": { "x-langgate-user-id": "alice" },
    "no x-langgate-user": { ...good, "x-langgate-user": "" },
    "malformed x-langgate-user": { ...good, "x-langgate-user": "{not json" },
    "x-langgate-user not an object": { ...good, "x-langgate-user": '"alice"' },
    "empty identity": { ...good, "x-langgate-user": '{"identity":""}', "x-langgate-user-id": "" },
    "user id disagrees": { ...good, "x-langgate-user-id": "bob" },
    "no user id": (({ "x-langgate-user-id": _, ...rest }) => rest)(good),
    "permissions not strings": { ...good, "x-langgate-user": '{"identity":"alice","permissions":[1]}' },
    "is_authenticated not a boolean": { ...good, "x-langgate-user": '{"identity":"alice","is_authenticated":"yes"}' },
    "no filters": (({ "x-langgate-filters": _, ...rest }) => rest)(good),
    "filters an array": { ...good, "x-langgate-filters": "[]" },
    "filters malformed": { ...good, "x-langgate-filters": "{" },
    "no metadata": (({ "x-langgate-metadata": _, ...rest }) => rest)(good),
    "metadata null": { ...good, "x-langgate-metadata": "null" },
    "no events": (({ "x-langgate-events": _, ...rest }) => rest)(good),
    "events an array": { ...good, "x-langgate-events": '["threads:search"]' },
    "events with non-object filters": { ...good, "x-langgate-events": '{"threads:search":{"filters":[]}}' },
    "events without filters": { ...good, "x-langgate-events": '{"threads:search":{}}' },
    "events with an empty namespace prefix": { ...good, "x-langgate-events": '{"store:put":{"filters":{},"namespace_prefix":[]}}' },
  };
  for (const [name, headers] of Object.entries(cases)) {
    const r = await call("POST", "/threads/search", headers, {});
    assert.equal(r.status, 401, `${name}: ${r.status} ${r.text}`);
    assert.equal(r.type, "application/json", name);
    assert.equal(typeof r.json().detail, "string", name);
  }
  // Authenticated routes that fire no event are refused too (truncate: always).
  assert.equal((await call("POST", "/internal/truncate", {}, {})).status, 403);
  assert.equal((await call("GET", "/threads/00000000-0000-0000-0000-000000000000", {})).status, 401);
  // The proxy's public routes.
  assert.equal((await call("GET", "/info")).status, 200);
  const ok = await call("GET", "/ok");
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.json(), { ok: true });
});

test("refuses an event langgate did not authorize (403) and applies each event's own filters", async () => {
  const alice = sdk(lg("alice"));
  const t = await alice.threads.create({ metadata: { topic: "grants" } });
  // Only threads:search granted: a read of the thread is an event langgate
  // did not authorize for this request.
  const searchOnly = sdk(lg("alice", { events: { "threads:search": { filters: { owner: "alice" } } } }));
  await assert.rejects(searchOnly.threads.get(t.thread_id), (e) => e.status === 403);
  assert.ok((await searchOnly.threads.search({ limit: 1000 })).some((x) => x.thread_id === t.thread_id));
  // The event's own filters win over x-langgate-filters.
  const own = sdk(lg("alice", { filters: {}, events: { "threads:read": { filters: { owner: "bob" } } } }));
  await assert.rejects(own.threads.get(t.thread_id), (e) => e.status === 404);
  // $or / $and: the JS server would skip them (match everything): refused.
  const or = sdk(lg("alice", { events: { "threads:read": { filters: { $or: [{ owner: "alice" }, { public: true }] } } } }));
  await assert.rejects(or.threads.get(t.thread_id), (e) => e.status === 403);
  // A store namespace prefix: put, get and delete under it; search and
  // list_namespaces refused (this server would ignore the rewrite there).
  const grants = { filters: {}, namespace_prefix: ["alice"] };
  const scoped = sdk(lg("alice", { events: { "store:put": grants, "store:get": grants, "store:search": grants } }));
  await scoped.store.putItem(["notes"], "k1", { v: 1 });
  const unscoped = sdk(lg("alice", { filters: {} }));
  assert.deepEqual((await unscoped.store.getItem(["alice", "notes"], "k1"))?.value, { v: 1 }, "stored under the prefix");
  assert.deepEqual((await scoped.store.getItem(["notes"], "k1"))?.value, { v: 1 }, "read back under the prefix");
  await assert.rejects(scoped.store.searchItems(["notes"]), (e) => e.status === 403);
  // No event granted (a route langgate maps to none): every event refused.
  assert.equal((await call("POST", "/threads/search", lg("alice", { events: {} }), {})).status, 403);
});

test("applies langgate's metadata on writes and its filters on reads", async () => {
  const alice = sdk(lg("alice"));
  const bob = sdk(lg("bob"));
  const t = await alice.threads.create({ metadata: { owner: "bob", topic: "x" } });
  assert.deepEqual(t.metadata, { owner: "alice", topic: "x" }, "langgate's keys win over the client's");
  assert.equal((await alice.threads.get(t.thread_id)).metadata.owner, "alice");
  await assert.rejects(bob.threads.get(t.thread_id), (e) => e.status === 404);
  assert.ok(!(await bob.threads.search({ limit: 1000 })).some((x) => x.thread_id === t.thread_id));
  assert.ok((await alice.threads.search({ limit: 1000 })).some((x) => x.thread_id === t.thread_id));
  // {} filters restrict nothing; {} metadata stamps nothing.
  const open = sdk(lg("carol", { filters: {}, metadata: {} }));
  assert.equal((await open.threads.get(t.thread_id)).thread_id, t.thread_id);
  const c = await open.threads.create({ metadata: { topic: "carol's" } });
  assert.deepEqual(c.metadata, { topic: "carol's" });
  // Metadata is created when the client sends none; updates are re-stamped.
  const r = await call("POST", "/threads", lg("alice"), {});
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json().metadata.owner, "alice");
  const u = await alice.threads.update(t.thread_id, { metadata: { owner: "mallory" } });
  assert.equal(u.metadata.owner, "alice");
  // The copy route keeps the owner; bob cannot copy alice's thread.
  const copy = await alice.threads.copy(t.thread_id);
  assert.equal(copy.metadata.owner, "alice");
  await assert.rejects(bob.threads.copy(t.thread_id), (e) => e.status === 409);
  // Assistants and runs.
  const a = await alice.assistants.create({ graphId: "agent", metadata: { owner: "bob" } });
  assert.equal(a.metadata.owner, "alice");
  await assert.rejects(bob.assistants.get(a.assistant_id), (e) => e.status === 404);
  const out = await alice.runs.wait(t.thread_id, a.assistant_id, { input: { messages: [{ role: "user", content: "hi" }] } });
  assert.equal(out.messages.at(-1).content, "echo: hi");
  assert.equal(out.user, "alice");
  await assert.rejects(bob.runs.wait(t.thread_id, "agent", { input: {} }), (e) => e.status === 404);
  // A stateless run creates a thread stamped with the owner.
  await alice.runs.wait(null, "agent", { input: { messages: [{ role: "user", content: "tmp" }] }, onCompletion: "keep" });
  const mine = await alice.threads.search({ metadata: { graph_id: "agent" }, limit: 1000 });
  assert.ok(mine.length >= 1 && mine.every((x) => x.metadata.owner === "alice"));
  // Operators pass through to the server.
  const tagged = sdk(lg("dave", { filters: { tags: { $contains: "blue" } }, metadata: { tags: ["blue", "red"] } }));
  const d = await tagged.threads.create({});
  assert.deepEqual(d.metadata.tags, ["blue", "red"]);
  assert.equal((await tagged.threads.get(d.thread_id)).thread_id, d.thread_id);
  const green = sdk(lg("dave", { filters: { tags: { $contains: "green" } }, metadata: {} }));
  await assert.rejects(green.threads.get(d.thread_id), (e) => e.status === 404);
});

test("refuses the routes LangGraph JS 1.5.1 serves without enforcing a decision (403)", async () => {
  const alice = sdk(lg("alice"));
  const t = await alice.threads.create({});
  const run = "01a21bea-dacb-76f4-afde-ef33bda4ea35";
  for (const [method, path, body] of [
    ["POST", `/threads/${t.thread_id}/commands`, { id: 1, method: "state.get", params: {} }],
    ["POST", `/threads/${t.thread_id}/%63ommands`, { id: 1, method: "state.get", params: {} }],
    ["POST", `//threads/${t.thread_id}/commands`, { id: 1, method: "state.get", params: {} }],
    ["POST", `/threads/${t.thread_id}/stream/events`, { channels: ["values"] }],
    ["GET", `/threads/${t.thread_id}/stream/events`],
    ["GET", `/runs/${run}/stream`],
    ["POST", "/internal/truncate", { threads: true }],
  ]) {
    const r = await call(method, path, lg("alice"), body);
    assert.equal(r.status, 403, `${method} ${path}: ${r.status} ${r.text.slice(0, 200)}`);
    assert.match(r.json().detail, /^Not available behind langgate/);
  }
  assert.equal((await alice.threads.get(t.thread_id)).thread_id, t.thread_id, "nothing was truncated");
  // The legacy streaming routes the SDK uses by default are enforced, and served.
  const chunks = [];
  for await (const c of alice.runs.stream(t.thread_id, "agent", { input: { messages: [{ role: "user", content: "s" }] } })) {
    chunks.push(c.event);
  }
  assert.ok(chunks.includes("values"), chunks.join(","));
});

test("SIGTERM stops the server with exit code 0", async () => {
  const code = await new Promise((ok) => {
    server.on("exit", (c) => ok(c));
    server.kill("SIGTERM");
  });
  assert.equal(code, 0);
});

test("langgraph.json files pass the CLI's schema and point at the adapter", () => {
  for (const [file, lang] of [
    [join(here, "langgraph.json"), "js"],
    [join(upstream, "langgraph.json"), "js"],
    [join(upstream, "langgraph.python.json"), "python"],
  ]) {
    const cfg = getConfig(readFileSync(file, "utf8"));
    assert.equal(cfg.auth.disable_studio_auth, true, file);
    assert.equal("python_version" in cfg, lang === "python", file);
    const adapter = resolve(dirname(file), cfg.auth.path.split(":")[0]);
    assert.equal(adapter, join(upstream, lang === "js" ? "auth.mjs" : "auth.py"), file);
    assert.equal(cfg.auth.path.split(":")[1], "auth", file);
  }
});


