// Isolation scenarios: the real LangGraph JS SDK, as alice and bob, against a
// real LangGraph JS server reached ONLY through a proxy that asks langgate
// (examples/langgraph/langgate.yaml, the seed policy: owner isolation plus
// store namespaces), with examples/langgraph/upstream/auth.mjs in the server.
//
//   LANGGRAPH_URL=http://127.0.0.1:8080 \
//   TOKEN_URL=http://127.0.0.1:43339/token \
//   PROXY=envoy PROXY_BODY=1 \
//     node --test test/e2e/scenarios.mjs
//
// LANGGRAPH_URL  the proxy in front of the server (never the server itself)
// TOKEN_URL      GET ${TOKEN_URL}?sub=alice → {"access_token": "..."} (langgate's dev issuer)
// PROXY          envoy | envoy-http | nginx (reported in test names): Envoy with
//                ext_authz over gRPC, Envoy with ext_authz http_service, nginx
//                auth_request
// SERVER         js | python: the LangGraph server behind the proxy (default js)
// PROXY_BODY     1 when the proxy forwards request bodies to langgate; 0 (nginx)
//                when it does not: rules that read the body then fail closed,
//                so store put/delete/search/list_namespaces must be refused (403).
//
// Every run uses a random suffix (metadata e2e_run, store namespaces), so
// reruns against one server do not see each other's data.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Client } from "@langchain/langgraph-sdk";

function env(name, allowed) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required (see the top of ${import.meta.url})`);
  if (allowed && !allowed.includes(v)) throw new Error(`${name} must be one of ${allowed.join(", ")}, not ${v}`);
  return v;
}
const BASE = env("LANGGRAPH_URL").replace(/\/$/, "");
const TOKEN_URL = env("TOKEN_URL");
const PROXY = env("PROXY", ["envoy", "envoy-http", "nginx"]);
const BODY = env("PROXY_BODY", ["0", "1"]) === "1";
const SERVER = process.env.SERVER || "js";
if (!["js", "python"].includes(SERVER)) throw new Error(`SERVER must be js or python, not ${SERVER}`);
const RUN = randomBytes(6).toString("hex");
const TIMEOUT = { timeout: 30_000 };

async function token(sub) {
  const u = new URL(TOKEN_URL);
  u.searchParams.set("sub", sub);
  const res = await fetch(u);
  assert.equal(res.status, 200, `token for ${sub}: HTTP ${res.status}`);
  const { access_token } = await res.json();
  assert.ok(typeof access_token === "string" && access_token.split(".").length === 3, `token for ${sub} is not a JWT`);
  return access_token;
}

function client(tok, headers = {}) {
  return new Client({
    apiUrl: BASE,
    apiKey: null, // never pick LANGGRAPH_API_KEY & co. from the environment
    defaultHeaders: tok ? { Authorization: `Bearer ${tok}`, ...headers } : headers,
    callerOptions: { maxRetries: 0 },
  });
}

// The promise must fail with exactly this HTTP status.
async function rejects(promise, status, what) {
  let value;
  try {
    value = await promise;
  } catch (err) {
    assert.equal(err?.status, status, `${what}: want HTTP ${status}, got ${err?.status ?? err}`);
    return err;
  }
  assert.fail(`${what}: want HTTP ${status}, got success: ${JSON.stringify(value)?.slice(0, 300)}`);
}

async function raw(method, path, { auth, headers = {}, body } = {}) {
  const h = { ...headers };
  if (auth) h.authorization = auth;
  if (body !== undefined) h["content-type"] = "application/json";
  const res = await fetch(BASE + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, text: await res.text() };
}

const ids = (rows, key) => rows.map((r) => r[key]);
const human = (content) => ({ messages: [{ role: "user", content }] });

let tokens; // {alice, bob}
let alice, bob; // SDK clients
// alice's world, created in before(): two threads (one whose client metadata
// claims owner "bob"), one assistant (client metadata claims owner "mallory").
const A = {};
const B = {};

describe(`langgate in front of LangGraph (${PROXY}, bodies ${BODY ? "forwarded" : "not forwarded"}, run ${RUN})`, () => {
  before(async () => {
    tokens = { alice: await token("alice"), bob: await token("bob") };
    alice = client(tokens.alice);
    bob = client(tokens.bob);
    A.thread = await alice.threads.create({ metadata: { e2e_run: RUN, topic: "plain" } });
    A.spoofThread = await alice.threads.create({ metadata: { e2e_run: RUN, topic: "spoof", owner: "bob" } });
    A.assistant = await alice.assistants.create({
      graphId: "agent",
      name: `alice-${RUN}`,
      metadata: { e2e_run: RUN, owner: "mallory" },
    });
    B.thread = await bob.threads.create({ metadata: { e2e_run: RUN, topic: "bob's" } });
    B.assistant = await bob.assistants.create({ graphId: "agent", name: `bob-${RUN}`, metadata: { e2e_run: RUN } });
  });

  test("no token and bad tokens are refused with 401", TIMEOUT, async () => {
    const [head, payload] = tokens.alice.split(".");
    const tampered = `${head}.${payload}.${"A".repeat(342)}`;
    for (const [name, auth] of [
      ["no Authorization header", undefined],
      ["not a JWT", "Bearer not-a-token"],
      ["alice's token with a forged signature", `Bearer ${tampered}`],
      ["a token without the Bearer scheme", tokens.alice],
    ]) {
      const r = await raw("POST", "/threads/search", { auth, body: { metadata: { e2e_run: RUN } } });
      assert.equal(r.status, 401, `${name}: want 401, got ${r.status} ${r.text.slice(0, 200)}`);
      assert.ok(!r.text.includes(A.thread.thread_id), `${name}: the response leaks alice's thread id`);
      const g = await raw("GET", `/threads/${A.thread.thread_id}`, { auth });
      assert.equal(g.status, 401, `${name}: GET alice's thread: want 401, got ${g.status}`);
    }
    // The SDK without a token.
    await rejects(client(undefined).threads.search({ metadata: { e2e_run: RUN } }), 401, "SDK threads.search without a token");
    await rejects(client("not-a-token").threads.get(A.thread.thread_id), 401, "SDK threads.get with a bad token");
  });

  test("public routes answer without a token", TIMEOUT, async () => {
    const info = await raw("GET", "/info");
    assert.equal(info.status, 200, `GET /info: ${info.status} ${info.text.slice(0, 200)}`);
    if (SERVER === "js") assert.equal(JSON.parse(info.text).context, "js");
    else assert.ok(JSON.parse(info.text).version, `GET /info of the Python server has a version: ${info.text.slice(0, 200)}`);
    const ok = await raw("GET", "/ok");
    assert.equal(ok.status, 200, `GET /ok: ${ok.status} ${ok.text.slice(0, 200)}`);
    assert.equal(JSON.parse(ok.text).ok, true, `GET /ok: ${ok.text.slice(0, 200)}`);
  });

  test("alice's threads and assistants are stamped metadata.owner = alice", TIMEOUT, async () => {
    for (const t of [A.thread, A.spoofThread]) {
      assert.equal(t.metadata.owner, "alice", `create response of thread ${t.thread_id}`);
      const got = await alice.threads.get(t.thread_id);
      assert.equal(got.thread_id, t.thread_id);
      assert.equal(got.metadata.owner, "alice", "client metadata must not override langgate's owner");
      assert.equal(got.metadata.e2e_run, RUN, "client metadata is kept");
    }
    assert.equal((await alice.threads.get(A.spoofThread.thread_id)).metadata.topic, "spoof");

    assert.equal(A.assistant.metadata.owner, "alice", "assistant create response");
    const asst = await alice.assistants.get(A.assistant.assistant_id);
    assert.equal(asst.assistant_id, A.assistant.assistant_id);
    assert.equal(asst.metadata.owner, "alice");
    assert.equal(asst.metadata.e2e_run, RUN);

    // An update cannot hand the thread or the assistant to someone else.
    const upd = await alice.threads.update(A.spoofThread.thread_id, { metadata: { owner: "bob", note: "updated" } });
    assert.equal(upd.metadata.owner, "alice");
    const again = await alice.threads.get(A.spoofThread.thread_id);
    assert.equal(again.metadata.owner, "alice");
    assert.equal(again.metadata.note, "updated");
    const aupd = await alice.assistants.update(A.assistant.assistant_id, { metadata: { owner: "bob" } });
    assert.equal(aupd.metadata.owner, "alice");

    // bob's own resources carry his name.
    assert.equal((await bob.threads.get(B.thread.thread_id)).metadata.owner, "bob");
    assert.equal((await bob.assistants.get(B.assistant.assistant_id)).metadata.owner, "bob");
  });

  test("bob's searches never include alice's threads or assistants", TIMEOUT, async () => {
    const aliceThreads = [A.thread.thread_id, A.spoofThread.thread_id];

    const bobThreads = await bob.threads.search({ metadata: { e2e_run: RUN }, limit: 100 });
    assert.deepEqual(ids(bobThreads, "thread_id"), [B.thread.thread_id], "bob sees exactly his own thread of this run");
    const bobAll = await bob.threads.search({ limit: 1000 });
    assert.ok(bobAll.length >= 1);
    for (const t of bobAll) {
      assert.equal(t.metadata.owner, "bob", `bob's unfiltered search returned ${t.thread_id} owned by ${t.metadata.owner}`);
      assert.ok(!aliceThreads.includes(t.thread_id));
    }
    assert.deepEqual(await bob.threads.search({ metadata: { owner: "alice" }, limit: 100 }), [], "asking for owner alice");
    assert.deepEqual(await bob.threads.search({ ids: aliceThreads, limit: 100 }), [], "asking for alice's ids");
    assert.equal(await bob.threads.count({ metadata: { e2e_run: RUN } }), 1, "bob's count");

    const aliceSees = ids(await alice.threads.search({ metadata: { e2e_run: RUN }, limit: 100 }), "thread_id").sort();
    assert.deepEqual(aliceSees, [...aliceThreads].sort(), "alice sees exactly her two threads of this run");

    const bobAssts = await bob.assistants.search({ metadata: { e2e_run: RUN }, limit: 100 });
    assert.deepEqual(ids(bobAssts, "assistant_id"), [B.assistant.assistant_id]);
    for (const a of await bob.assistants.search({ limit: 1000 })) {
      assert.equal(a.metadata.owner, "bob", `bob's unfiltered assistant search returned ${a.assistant_id}`);
    }
    assert.deepEqual(await bob.assistants.search({ metadata: { owner: "alice" }, limit: 100 }), []);
    const aliceAssts = await alice.assistants.search({ metadata: { e2e_run: RUN }, limit: 100 });
    assert.deepEqual(ids(aliceAssts, "assistant_id"), [A.assistant.assistant_id]);
  });

  test("bob gets not-found on alice's thread and assistant: read, update, delete, run", TIMEOUT, async () => {
    const tid = A.thread.thread_id;
    await rejects(bob.threads.get(tid), 404, "bob threads.get");
    await rejects(bob.threads.getState(tid), 404, "bob threads.getState");
    await rejects(bob.threads.getHistory(tid), 404, "bob threads.getHistory");
    await rejects(bob.threads.update(tid, { metadata: { hijacked: "bob" } }), 404, "bob threads.update");
    await rejects(bob.threads.delete(tid), 404, "bob threads.delete");
    await rejects(bob.runs.create(tid, "agent", { input: human("from bob") }), 404, "bob runs.create");
    await rejects(bob.runs.wait(tid, "agent", { input: human("from bob") }), 404, "bob runs.wait");
    await rejects(bob.runs.list(tid), 404, "bob runs.list");
    // The JS server answers a filtered-out copy source with 409 "Thread not found".
    await rejects(bob.threads.copy(tid), 409, "bob threads.copy");

    const aid = A.assistant.assistant_id;
    await rejects(bob.assistants.get(aid), 404, "bob assistants.get");
    await rejects(bob.assistants.getGraph(aid), 404, "bob assistants.getGraph");
    await rejects(bob.assistants.update(aid, { metadata: { hijacked: "bob" } }), 404, "bob assistants.update");
    await rejects(bob.assistants.delete(aid), 404, "bob assistants.delete");

    // Nothing happened to alice's thread or assistant.
    const t = await alice.threads.get(tid);
    assert.equal(t.metadata.owner, "alice");
    assert.equal(t.metadata.hijacked, undefined);
    assert.deepEqual(await alice.runs.list(tid), [], "bob's runs were not created");
    const a = await alice.assistants.get(aid);
    assert.equal(a.metadata.hijacked, undefined);
  });

  test("HEAD is authorized like GET: bob cannot probe alice's thread", TIMEOUT, async () => {
    // Servers answer HEAD with their GET handler; langgate must filter it
    // the same way, or HEAD becomes an existence oracle across users.
    const head = (tok, path) =>
      fetch(`${BASE}${path}`, { method: "HEAD", headers: { Authorization: `Bearer ${tok}` } });
    const tid = A.thread.thread_id;
    assert.equal((await head(tokens.alice, `/threads/${tid}`)).status, 200, "alice HEAD of her thread");
    assert.equal((await head(tokens.bob, `/threads/${tid}`)).status, 404, "bob HEAD of alice's thread");
  });

  test("alice runs the graph on her own thread and gets the echo", TIMEOUT, async () => {
    const tid = A.thread.thread_id;
    const text = `hello ${RUN}`;
    const out = await alice.runs.wait(tid, "agent", { input: human(text) });
    assert.equal(out.messages.at(-1).content, `echo: ${text}`);
    assert.equal(out.user, "alice", "graph code sees langgate's identity");
    const state = await alice.threads.getState(tid);
    assert.deepEqual(
      state.values.messages.map((m) => m.content),
      [text, `echo: ${text}`],
    );
    const runs = await alice.runs.list(tid);
    assert.equal(runs.length, 1);
    assert.equal(runs[0].metadata.owner, "alice", "the run carries the thread's owner");
    await rejects(bob.runs.get(tid, runs[0].run_id), 404, "bob runs.get on alice's run");

    // On her own assistant too.
    const out2 = await alice.runs.wait(tid, A.assistant.assistant_id, { input: human("again") });
    assert.equal(out2.messages.at(-1).content, "echo: again");
  });

  const ns = ["alice", RUN, "notes"];
  test(`store: alice ${BODY ? "writes, reads, searches and lists" : "reads; body-based store rules fail closed (403)"} under ["alice", …]`, TIMEOUT, async () => {
    if (BODY) {
      await alice.store.putItem(ns, "k1", { text: "alice's note", run: RUN });
      const item = await alice.store.getItem(ns, "k1");
      assert.deepEqual(item?.namespace, ns);
      assert.equal(item.key, "k1");
      assert.deepEqual(item.value, { text: "alice's note", run: RUN });
      const found = await alice.store.searchItems(["alice", RUN]);
      assert.deepEqual(found.items.map((i) => [i.namespace, i.key]), [[ns, "k1"]]);
      const listed = await alice.store.listNamespaces({ prefix: ["alice", RUN] });
      assert.deepEqual(listed.namespaces, [ns]);
      await alice.store.putItem(ns, "k2", { text: "to delete" });
      await alice.store.deleteItem(ns, "k2");
      assert.equal(await alice.store.getItem(ns, "k2"), null);
    } else {
      // nginx never forwards a body to langgate: the store rule reads
      // value.namespace from the body, so it cannot be evaluated → 403.
      await rejects(alice.store.putItem(ns, "k1", { text: "alice's note" }), 403, "alice putItem without a body for langgate");
      await rejects(alice.store.searchItems(["alice", RUN]), 403, "alice searchItems without a body for langgate");
      await rejects(alice.store.listNamespaces({ prefix: ["alice", RUN] }), 403, "alice listNamespaces without a body for langgate");
      await rejects(alice.store.deleteItem(ns, "k1"), 403, "alice deleteItem without a body for langgate");
      // GET /store/items takes the namespace from the query: allowed (nothing stored).
      assert.equal(await alice.store.getItem(ns, "k1"), null);
    }
    await rejects(alice.store.putItem(["bob", RUN], "k1", { text: "in bob's namespace" }), 403, "alice putItem under bob");
    await rejects(alice.store.getItem(["bob", RUN], "k1"), 403, "alice getItem under bob");
  });

  test('store: bob cannot reach ["alice", …]', TIMEOUT, async () => {
    await rejects(bob.store.getItem(ns, "k1"), 403, "bob getItem on alice's item");
    await rejects(bob.store.searchItems(["alice"]), 403, "bob searchItems under alice");
    await rejects(bob.store.listNamespaces({ prefix: ["alice"] }), 403, "bob listNamespaces under alice");
    await rejects(bob.store.listNamespaces(), 403, "bob listNamespaces with no prefix");
    await rejects(bob.store.putItem(ns, "k1", { text: "overwritten by bob" }), 403, "bob putItem on alice's item");
    await rejects(bob.store.deleteItem(ns, "k1"), 403, "bob deleteItem on alice's item");
    if (BODY) {
      const item = await alice.store.getItem(ns, "k1");
      assert.deepEqual(item?.value, { text: "alice's note", run: RUN }, "alice's item is intact");
      await bob.store.putItem(["bob", RUN], "k1", { text: "bob's note" });
      assert.deepEqual((await bob.store.getItem(["bob", RUN], "k1"))?.value, { text: "bob's note" });
    }
  });

  test("routes LangGraph JS cannot authorize per request are refused (403)", { ...TIMEOUT, skip: SERVER !== "js" && "the JS adapter's list" }, async () => {
    const tid = A.thread.thread_id;
    const run = (await alice.runs.create(tid, "agent", { input: human("bg") })).run_id;
    for (const [who, tok] of [["bob", tokens.bob], ["alice", tokens.alice]]) {
      const auth = `Bearer ${tok}`;
      for (const [method, path, body] of [
        // The streaming protocol: commands run as the thread's first caller; events fire no event.
        ["POST", `/threads/${tid}/commands`, { id: 1, method: "state.get", params: {} }],
        ["POST", `/threads/${tid}/stream/events`, { channels: ["values"] }],
        // Joining a run by id alone: no filter is applied.
        ["GET", `/runs/${run}/stream`],
        ["POST", "/internal/truncate", { threads: true }],
      ]) {
        const r = await raw(method, path, { auth, body });
        assert.equal(r.status, 403, `${who} ${method} ${path}: want 403, got ${r.status} ${r.text.slice(0, 200)}`);
        assert.ok(!r.text.includes("echo:"), `${who} ${method} ${path} leaks run output`);
      }
    }
    assert.equal((await alice.threads.get(tid)).thread_id, tid, "nothing was truncated");
  });

  // The Python server authorizes these routes per event (the streaming
  // protocol's commands fire the run and thread events of what they do),
  // and it serves no /internal/truncate: bob learns nothing of alice's run.
  test("the streaming protocol and run joins leak nothing across users (Python)", { ...TIMEOUT, skip: SERVER !== "python" && "Python server only" }, async () => {
    const tid = A.thread.thread_id;
    const run = (await alice.runs.create(tid, "agent", { input: human("secret-py") })).run_id;
    await alice.runs.join(tid, run);
    const auth = `Bearer ${tokens.bob}`;
    for (const [method, path, body] of [
      ["POST", `/threads/${tid}/commands`, { id: 1, method: "run.start", params: { assistant_id: "agent", input: human("x") } }],
      ["GET", `/runs/${run}/stream`],
      ["GET", `/threads/${tid}/runs/${run}/stream`],
      ["POST", "/internal/truncate", { threads: true }],
    ]) {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), 3000);
      let status, text;
      try {
        const res = await fetch(BASE + path, { method, signal: ctl.signal, headers: { authorization: auth, "content-type": "application/json" }, body: body && JSON.stringify(body) });
        status = res.status;
        text = await res.text();
      } catch (err) {
        status = "aborted";
        text = "";
      } finally {
        clearTimeout(timer);
      }
      console.log(`python probe: bob ${method} ${path} -> ${status} ${text.slice(0, 200)}`);
      assert.ok(!text.includes("secret-py"), `bob ${method} ${path} leaks alice's run: ${text.slice(0, 300)}`);
    }
    assert.equal((await alice.threads.get(tid)).thread_id, tid, "nothing was truncated");
  });

  // A known gap of LangGraph JS 1.5.1 (docs/langgraph.md, known gaps): a
  // run's filters are checked against its thread only, never its assistant,
  // so bob can run alice's assistant by id on his own thread. The Python
  // server checks the assistant's owner too. The test asserts each server's
  // behaviour today, so that a change is noticed: when LangGraph JS closes
  // the gap, this fails; expect 404 for it too and update the docs.
  test("bob running alice's assistant: refused by the Python server, run by LangGraph JS 1.5.1 (a known gap)", TIMEOUT, async () => {
    const mine = await bob.threads.create({ metadata: { e2e_run: `${RUN}-gap` } });
    B.more = [mine];
    const status = await bob.runs
      .create(mine.thread_id, A.assistant.assistant_id, { input: human("x") })
      .then(() => 200, (err) => err?.status);
    const want = SERVER === "python" ? 404 : 200;
    assert.equal(status, want, `bob ran alice's assistant: HTTP ${status}, want ${want} on the ${SERVER} server (docs/langgraph.md, known gaps)`);
  });

  test("forged x-langgate-* and x-auth-scheme headers from a client gain nothing", TIMEOUT, async () => {
    const forged = {
      "x-langgate-user-id": "alice",
      "x-langgate-user": JSON.stringify({ identity: "alice", display_name: "alice", is_authenticated: true, permissions: ["admin"] }),
      "x-langgate-permissions": '["admin"]',
      "x-langgate-filters": "{}",
      "x-langgate-metadata": '{"owner":"alice"}',
      "x-langgate-resource": "threads",
      "x-langgate-action": "read",
      "x-auth-scheme": "langsmith",
    };
    const mallory = client(tokens.bob, forged);
    const seen = await mallory.threads.search({ metadata: { e2e_run: RUN }, limit: 100 });
    assert.deepEqual(ids(seen, "thread_id"), [B.thread.thread_id], "bob with forged headers still sees only his own thread");
    await rejects(mallory.threads.get(A.thread.thread_id), 404, "forged threads.get of alice's thread");
    await rejects(mallory.assistants.get(A.assistant.assistant_id), 404, "forged assistants.get of alice's assistant");
    const made = await mallory.threads.create({ metadata: { e2e_run: `${RUN}-forged` } });
    B.forged = made;
    assert.equal(made.metadata.owner, "bob", "a thread created with forged headers belongs to bob");
    assert.equal((await bob.threads.get(made.thread_id)).metadata.owner, "bob");
    await rejects(alice.threads.get(made.thread_id), 404, "alice cannot see it either");
    await rejects(mallory.store.getItem(ns, "k1"), 403, "forged store getItem under alice");

    // Forged headers without a token: refused before reaching the server.
    const r = await raw("POST", "/threads/search", { headers: forged, body: { metadata: { e2e_run: RUN } } });
    assert.equal(r.status, 401, `forged headers without a token: want 401, got ${r.status} ${r.text.slice(0, 200)}`);
    const s = await raw("GET", `/threads/${A.thread.thread_id}`, { headers: { "x-auth-scheme": "langsmith" } });
    assert.equal(s.status, 401, `x-auth-scheme: langsmith without a token: want 401, got ${s.status}`);
  });

  after(async () => {
    // Best effort: leave the server as we found it. Failures here are not test failures.
    const del = [];
    if (alice) {
      for (const t of [A.thread, A.spoofThread]) if (t) del.push(alice.threads.delete(t.thread_id));
      if (A.assistant) del.push(alice.assistants.delete(A.assistant.assistant_id));
      if (BODY) del.push(alice.store.deleteItem(ns, "k1"));
    }
    if (bob) {
      for (const t of [B.thread, B.forged, ...(B.more ?? [])]) if (t) del.push(bob.threads.delete(t.thread_id));
      if (B.assistant) del.push(bob.assistants.delete(B.assistant.assistant_id));
      if (BODY) del.push(bob.store.deleteItem(["bob", RUN], "k1"));
    }
    await Promise.allSettled(del);
  });
});
