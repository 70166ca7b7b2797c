// The real LangGraph JS API server (@langchain/langgraph-api, the server
// `langgraphjs dev` runs) with the e2e graph and langgate's adapter.
//
//   PORT=2024 node test/e2e/server.mjs [path/to/langgraph.json]
//
// - binds 127.0.0.1:$PORT (PORT unset or 0: a free port);
// - reads langgraph.json (default: the one next to this file) and validates
//   it with the CLI's own schema, as `langgraphjs dev` does;
// - storage is in memory, persisted only to a fresh temporary directory that
//   is removed on exit: every start is empty;
// - stdout carries exactly one line, `READY http://127.0.0.1:<port>`, once the
//   server answers HTTP; the server's logs go to stderr (JSON lines, LOG_LEVEL
//   default "info");
// - SIGTERM/SIGINT: flush, close, remove the temporary directory, exit 0.
//   Startup failure: exit 1.
//
// Unlike `langgraphjs dev`: no file watching, no browser, no tunnel, no
// child process, no IPC with a parent CLI.
import { register } from "node:module";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// Keep stdout for the READY line: anything else written there goes to stderr.
const stdout = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
process.env.LOG_JSON ??= "true";
process.env.LOG_LEVEL ??= "info";
process.env.NODE_ENV ??= "development";

register("./hooks.mjs", import.meta.url, { data: { parentURL: import.meta.url } });

const here = dirname(fileURLToPath(import.meta.url));
const configPath = resolve(process.argv[2] ?? join(here, "langgraph.json"));
const configDir = dirname(configPath);
const port = Number.parseInt(process.env.PORT || "0", 10);
const nWorkers = Number.parseInt(process.env.N_WORKERS || "4", 10);

let dataDir;
let cleanup;
let stopping = false;

async function stop(code) {
  if (stopping) return;
  stopping = true;
  const timeout = new Promise((r) => setTimeout(r, 3000).unref());
  try {
    await Promise.race([cleanup?.(), timeout]);
  } catch (err) {
    console.error("cleanup failed:", err);
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  process.exit(code);
}
process.on("SIGTERM", () => stop(0));
process.on("SIGINT", () => stop(0));

try {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad PORT ${process.env.PORT}`);
  const { getConfig } = await import("@langchain/langgraph-cli/dist/utils/config.mjs");
  const config = getConfig(readFileSync(configPath, "utf8"));

  // Paths in langgraph.json are relative to it; the server resolves them
  // against its cwd, which here is the temporary data directory.
  const abs = (spec) => {
    const i = spec.lastIndexOf(":");
    return `${resolve(configDir, spec.slice(0, i))}${spec.slice(i)}`;
  };
  const graphs = Object.fromEntries(
    Object.entries(config.graphs).map(([id, g]) => [id, typeof g === "string" ? abs(g) : { ...g, path: abs(g.path) }]),
  );
  const auth = config.auth?.path ? { ...config.auth, path: abs(config.auth.path) } : config.auth;
  if (config.http?.app) config.http.app = abs(config.http.app);

  dataDir = mkdtempSync(join(tmpdir(), "langgate-e2e-langgraph-"));
  const { startServer } = await import("@langchain/langgraph-api/server");
  const started = await startServer({ port, nWorkers, host: "127.0.0.1", cwd: dataDir, graphs, auth, http: config.http });
  cleanup = started.cleanup;
  const url = `http://127.0.0.1:${started.host.slice(started.host.lastIndexOf(":") + 1)}`;
  process.env.LANGGRAPH_API_URL = url;

  // Answering requests: /info is the one route the server never authenticates.
  const res = await fetch(`${url}/info`);
  if (!res.ok) throw new Error(`GET ${url}/info: ${res.status}`);
  await res.arrayBuffer();
  if (stopping) await new Promise(() => {});
  stdout(`READY ${url}\n`);
} catch (err) {
  console.error("server failed to start:", err);
  await stop(1);
}
