// What the LangGraph JS server's own router did with each request: a
// custom HTTP app (langgraph.json "http.app") whose only content is a
// middleware. The server mounts it before its own routes, so the
// middleware wraps every route's handler; after the handler returns, Hono
// knows which route ran (routePath; "/*" when none did, the request was
// refused before a handler) and the parameters it parsed.
//
// With PATH_LOG set, one JSON line per request is appended to that file
// before the response leaves: {probe, method, raw, route, params, status}.
// raw is the request target exactly as the server received it. Used by
// TestPathDifferential (paths_test.go).
import { appendFileSync } from "node:fs";
import { Hono } from "hono";

const file = process.env.PATH_LOG;

export const app = new Hono();

app.use(async (c, next) => {
  await next();
  if (!file) return;
  const route = c.req.routePath;
  const line = {
    probe: c.req.header("x-e2e-probe") ?? "",
    method: c.req.method,
    raw: c.env?.incoming?.url ?? "",
    route: route === "/*" ? "" : route,
    params: route === "/*" ? {} : c.req.param(),
    status: c.res.status,
  };
  appendFileSync(file, `${JSON.stringify(line)}\n`);
});
