// Prints, as JSON lines {"method", "path"}, every route the LangGraph JS API
// server (@langchain/langgraph-api, the pinned version) registers: its
// router's own table, read from the Hono apps server.mjs mounts (the JS
// server publishes no OpenAPI document). Used by TestRouteTableCoversServers.
//
//   node test/e2e/routes.mjs
const dist = new URL("./node_modules/@langchain/langgraph-api/dist/", import.meta.url);
const load = (path) => import(new URL(path, dist).href);
const { default: meta } = await load("api/meta.mjs");
const { default: assistants } = await load("api/assistants.mjs");
const { default: runs } = await load("api/runs.mjs");
const { default: threads } = await load("api/threads.mjs");
const { default: store } = await load("api/store.mjs");
const { default: protocol } = await load("api/protocol.mjs");
const { api: ui } = await load("ui/load.mjs");

const upgrade = () => async () => {};
const apps = [meta, assistants, runs, threads, store, protocol(upgrade, {}), ui];
const seen = new Set();
// server.mjs registers this one on the root app itself.
const out = [{ method: "POST", path: "/internal/truncate" }];
for (const app of apps) {
  for (const r of app.routes) {
    if (r.method === "ALL") continue; // middleware
    out.push({ method: r.method, path: r.path });
  }
}
for (const r of out) {
  const key = `${r.method} ${r.path}`;
  if (seen.has(key)) continue;
  seen.add(key);
  console.log(JSON.stringify(r));
}
