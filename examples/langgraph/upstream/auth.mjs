// langgate adapter for the LangGraph JS server (@langchain/langgraph-api).
//
// langgate (in front of this server, as an Envoy ext_authz service or behind
// nginx/Traefik auth_request) authenticates every request and runs the
// authorization handlers of its policy. On allow, the proxy hands the decision
// to this server as request headers (docs/headers.md):
//
//   x-langgate-user-id      the identity
//   x-langgate-user         {"identity","display_name","is_authenticated","permissions"}
//   x-langgate-filters      filter object in LangGraph syntax, {} when none
//   x-langgate-events       {"resource:action": {"filters": {...}, "namespace_prefix": [...]}}:
//                           every event langgate authorized for this request, each
//                           with its own filters (and, for a store event, labels to
//                           put before its namespace)
//   x-langgate-metadata     object to merge into the metadata of what is written
//
// This file does not decide anything: it trusts ONLY those headers and makes the
// server enforce them, with the server's own machinery (filters → 404 / left
// out of searches, metadata → stamped on what is created or updated).
//
// SECURITY: the headers are not signed. Whoever can reach this server without
// going through the proxy can claim to be anyone. The server MUST only be
// reachable through the proxy: bind it to loopback or a private network, or
// restrict it with a NetworkPolicy / security group that admits the proxy only.
// Also set "disable_studio_auth": true in langgraph.json, otherwise a request
// carrying `x-auth-scheme: langsmith` skips authenticate() altogether (the
// proxy strips that header, and the "*" handler below refuses such requests,
// but routes that fire no event would still be served).
//
// Load it from langgraph.json:  "auth": {"path": "./auth.mjs:auth", "disable_studio_auth": true}
import { Auth, HTTPException } from "@langchain/langgraph-sdk/auth";
import { createHash } from "node:crypto";
import { compactVerify, decodeProtectedHeader, importJWK } from "jose";

// Where authenticate() leaves the decision on the user object. Handlers read
// `user.langgate_filters` / `user.langgate_metadata`; graph code sees them in
// config.configurable.langgraph_auth_user.
export const FILTERS = "langgate_filters";
export const EVENTS = "langgate_events";
export const METADATA = "langgate_metadata";
const SIGNED = "langgate_signed";

// Events whose `value.metadata` the JS server writes: threads:create (also the
// create of /copy), assistants:create, threads:create_run (the metadata of a
// thread the run creates, and of the run), threads:update and
// assistants:update (merged into the stored metadata).
const WRITES = new Set(["create", "update", "create_run"]);

// Routes LangGraph JS (@langchain/langgraph-api 1.5.1) serves without
// applying an authorization decision to them; whatever langgate decided, the
// server would not enforce it, so they are refused (403):
//   - the streaming protocol: /threads/{id}/commands runs every command with
//     the identity of the thread's FIRST caller (cached per thread), and
//     /threads/{id}/stream/events fires no event at all: bob could read
//     alice's state and follow her runs live;
//   - GET /runs/{run_id}/stream: the join applies no filter without a thread
//     id, so anyone holding a run id could follow that run;
//   - /internal/truncate: wipes every thread, assistant and store item.
// (The SDK streams runs over the legacy routes by default; those are enforced.)
const UNENFORCED = [
  [/^\/threads\/[^/]+\/commands\/?$/, "the streaming protocol"],
  [/^\/threads\/[^/]+\/stream\/events\/?$/, "the streaming protocol"],
  [/^\/runs\/[^/]+\/stream\/?$/, "joining a run without its thread"],
  [/^\/internal\//, "internal routes"],
];

function unenforced(url) {
  // Decode at least as much as the server's router (it decodes once; this
  // repeats), but never %2F, %3F, %23: an escaped "/" stays inside its segment
  // for the router too. Then collapse repeated slashes.
  let path = new URL(url).pathname;
  for (let i = 0; i < 4; i++) {
    const next = path.replace(/%([0-9A-Fa-f]{2})/g, (m, hex) => {
      const c = String.fromCharCode(Number.parseInt(hex, 16));
      return "/?#".includes(c) ? m : c;
    });
    if (next === path) break;
    path = next;
  }
  path = path.replace(/\/{2,}/g, "/");
  return UNENFORCED.find(([re]) => re.test(path))?.[1];
}

const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);

// A signed context (x-langgate-context) refused; the message is the verdict:
// malformed, algorithm, unknown_key, signature, expired, issuer, audience,
// request or value (the names of test/vectors/context.json).
export class ContextError extends Error {}

// canonicalQuery is the canonical form of a raw query string (no "?") that
// a signed context binds, as langgate computes it (routes.CanonicalQuery):
// the pairs in order, empty pieces skipped, name and value split at the
// first "=", "+" a space, percent-decoded as UTF-8, then every byte but
// A-Z a-z 0-9 - . _ ~ written as %XX, joined as name=value by "&". Throws
// (URIError) on a query langgate refuses (";", a malformed escape, invalid
// UTF-8).
export function canonicalQuery(raw) {
  const out = [];
  for (const piece of raw.split("&")) {
    if (piece === "") continue;
    if (piece.includes(";")) throw new URIError('a ";" in the query');
    const eq = piece.indexOf("=");
    const [name, value] = eq < 0 ? [piece, ""] : [piece.slice(0, eq), piece.slice(eq + 1)];
    out.push(`${canonicalPart(name)}=${canonicalPart(value)}`);
  }
  return out.join("&");
}

// decodeURIComponent throws on a malformed escape and on invalid UTF-8;
// encodeURIComponent leaves !'()* as they are.
const canonicalPart = (s) =>
  encodeURIComponent(decodeURIComponent(s.replaceAll("+", " "))).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );

// The server names a graph's own assistant uuid5(NAMESPACE_GRAPH, graph_id)
// (NAMESPACE_GRAPH of @langchain/langgraph-api) and hands handlers that id
// where the client sent the graph's.
const NAMESPACE_GRAPH = "6ba7b821-9dad-11d1-80b4-00c04fd430c8";
// A UUID: 32 hex digits in any case, hyphens anywhere ignored.
const uuidKey = (s) => {
  const h = typeof s === "string" ? s.replaceAll("-", "") : "";
  return /^[0-9a-f]{32}$/i.test(h) ? h.toLowerCase() : undefined;
};

function uuid5(namespace, name) {
  const h = createHash("sha1").update(Buffer.from(namespace.replaceAll("-", ""), "hex")).update(name, "utf8").digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  return h.subarray(0, 16).toString("hex");
}

// sameValue is JSON equality: numbers by value, a bool apart from numbers,
// lists element by element, objects by their keys and values; ids in any
// UUID spelling.
function sameValue(got, want, pointer = "") {
  if (want === null) return got === null || got === undefined;
  if (typeof want === "string" && typeof got === "string" && got !== want) {
    const g = uuidKey(got);
    const w = uuidKey(want);
    if (g !== undefined && w === undefined && pointer === "/assistant_id") return g === uuid5(NAMESPACE_GRAPH, want);
    return g !== undefined && g === w;
  }
  if (Array.isArray(want)) {
    return Array.isArray(got) && got.length === want.length && want.every((w, i) => sameValue(got[i], w));
  }
  if (isObject(want)) {
    if (!isObject(got)) return false;
    const keys = Object.keys(want);
    return keys.length === Object.keys(got).length && keys.every((k) => Object.hasOwn(got, k) && sameValue(got[k], want[k]));
  }
  return typeof got === typeof want && got === want;
}

const ABSENT = Symbol("absent");

function resolvePointer(value, pointer) {
  if (typeof pointer !== "string" || !pointer.startsWith("/")) return ABSENT;
  let cur = value;
  for (const raw of pointer.slice(1).split("/")) {
    const token = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    if (!isObject(cur) || !Object.hasOwn(cur, token)) return ABSENT;
    cur = cur[token];
  }
  return cur;
}

// valueAllowed reports whether the value the server hands an event's
// handler is one langgate authorized: the event binds no values, or one
// bound object (a JSON pointer into the value to what must be there; null:
// nothing) matches it (docs/headers.md, "What is bound"). A store
// namespace the server has as undefined or null is an empty one.
export function valueAllowed(values, value, resource = "") {
  if (values === undefined || values === null || (Array.isArray(values) && values.length === 0)) return true;
  if (!Array.isArray(values)) return false;
  return values.some(
    (bound) =>
      isObject(bound) &&
      Object.entries(bound).every(([pointer, want]) => {
        let got = resolvePointer(value, pointer);
        if (resource === "store" && pointer === "/namespace") {
          if (got === ABSENT || got === null || got === undefined) got = [];
          if (want === null) want = [];
        }
        return sameValue(got === ABSENT ? undefined : got, want, pointer);
      }),
  );
}

// The algorithms langgate signs with, and the key each one needs.
const KEY_TYPES = { EdDSA: ["OKP", "Ed25519"], ES256: ["EC", "P-256"] };

// verifyContext verifies langgate's signed auth context and returns its
// payload: the signature with the published key its kid names, the alg
// pinned to that key's own; then exp and iat, iss, aud, and the request it
// was issued for (method, langgate's normalized path, the query as
// received, in canonical form, and the body hash when it binds one and
// bodySha256 is given). Throws ContextError with the verdict.
export async function verifyContext(token, jwks, { issuer, audience, method, path, query = "", bodySha256, now }) {
  let header;
  try {
    if (typeof token !== "string" || token.split(".").length !== 3) throw new Error("not a compact JWS");
    header = decodeProtectedHeader(token);
  } catch {
    throw new ContextError("malformed");
  }
  const { alg, kid } = header;
  if (!Object.hasOwn(KEY_TYPES, alg)) throw new ContextError("algorithm");
  const jwk = kid ? (jwks?.keys ?? []).find((k) => k.kid === kid) : undefined;
  if (!jwk) throw new ContextError("unknown_key");
  if ((jwk.alg ?? alg) !== alg || jwk.kty !== KEY_TYPES[alg][0] || jwk.crv !== KEY_TYPES[alg][1]) {
    throw new ContextError("algorithm");
  }
  let claims;
  try {
    const { payload } = await compactVerify(token, await importJWK(jwk, alg), { algorithms: [alg] });
    claims = JSON.parse(new TextDecoder().decode(payload));
  } catch (err) {
    throw new ContextError(err?.code === "ERR_JWS_SIGNATURE_VERIFICATION_FAILED" ? "signature" : "malformed");
  }
  const t = now ?? Date.now() / 1000;
  if (!Number.isInteger(claims.exp) || t > claims.exp || t < (claims.iat ?? 0)) throw new ContextError("expired");
  if (claims.iss !== issuer) throw new ContextError("issuer");
  if (!Array.isArray(claims.aud) || !claims.aud.includes(audience)) throw new ContextError("audience");
  const r = claims.request ?? {};
  if (r.method !== method || r.path !== path || (r.body_sha256 && bodySha256 && r.body_sha256 !== bodySha256)) {
    throw new ContextError("request");
  }
  let canonical;
  try {
    canonical = canonicalQuery(query);
  } catch {
    throw new ContextError("request");
  }
  if (canonical !== (r.query ?? "")) throw new ContextError("request");
  return claims;
}

// The signed context: with LANGGATE_CONTEXT_JWKS set (langgate's JWKS URL,
// e.g. http://langgate:9090/.well-known/jwks.json, or a file), the adapter
// trusts only x-langgate-context, verified for this request, and ignores the
// unsigned headers. LANGGATE_CONTEXT_AUDIENCE is this server's audience
// (langgraph by default), LANGGATE_CONTEXT_ISSUER langgate's issuer.
const CONTEXT_JWKS = process.env.LANGGATE_CONTEXT_JWKS ?? "";
const CONTEXT_AUDIENCE = process.env.LANGGATE_CONTEXT_AUDIENCE ?? "langgraph";
const CONTEXT_ISSUER = process.env.LANGGATE_CONTEXT_ISSUER ?? "langgate";
const jwksCache = { keys: undefined, at: 0 };

// jwks returns langgate's keys, cached for 5 minutes; refresh asks again
// (an unknown kid after a rotation), at most every 10 seconds.
async function jwks(refresh) {
  const age = Date.now() - jwksCache.at;
  if (jwksCache.keys === undefined || age > 300_000 || (refresh && age > 10_000)) {
    jwksCache.keys = /^https?:\/\//.test(CONTEXT_JWKS)
      ? await (await fetch(CONTEXT_JWKS, { signal: AbortSignal.timeout(5000) })).json()
      : JSON.parse(await (await import("node:fs/promises")).readFile(CONTEXT_JWKS, "utf8"));
    jwksCache.at = Date.now();
  }
  return jwksCache.keys;
}

async function signedUser(request) {
  const token = request.headers.get("x-langgate-context");
  if (!token) throw refuse("Missing x-langgate-context");
  const url = new URL(request.url);
  const check = {
    issuer: CONTEXT_ISSUER,
    audience: CONTEXT_AUDIENCE,
    method: request.method,
    path: url.pathname,
    query: url.search.slice(1),
    bodySha256: await bodyDigest(request),
  };
  let claims;
  try {
    try {
      claims = await verifyContext(token, await jwks(false), check);
    } catch (err) {
      if (!(err instanceof ContextError) || err.message !== "unknown_key") throw err;
      claims = await verifyContext(token, await jwks(true), check);
    }
  } catch (err) {
    if (!(err instanceof ContextError)) throw err;
    console.warn(`langgate adapter: refused a signed context: ${err.message}`);
    throw refuse(`Invalid x-langgate-context: ${err.message}`);
  }
  const user = claims.user ?? {};
  if (typeof user.identity !== "string" || user.identity === "") throw refuse("Invalid x-langgate-context: no identity");
  const events = {};
  const metadata = {};
  for (const e of claims.events ?? []) {
    const grant = { filters: e.filters ?? {} };
    if (e.namespace_prefix?.length) grant.namespace_prefix = e.namespace_prefix;
    if (e.values?.length) grant.values = e.values;
    events[`${e.resource}:${e.action}`] = grant;
    Object.assign(metadata, e.metadata ?? {});
  }
  const extra = { ...(user.fields ?? {}) };
  if (user.is_studio_user) Object.assign(extra, { kind: "StudioUser", is_studio_user: true });
  return {
    ...extra,
    identity: user.identity,
    display_name: user.display_name || user.identity,
    is_authenticated: true,
    permissions: user.permissions ?? [],
    [FILTERS]: {},
    [METADATA]: metadata,
    [EVENTS]: events,
    [SIGNED]: true,
  };
}

// bodyDigest is the hex SHA-256 of the request's body, read from a clone
// (the server reads the original), or undefined when there is none to
// read or it is over 1 MiB (langgate binds no longer one).
async function bodyDigest(request) {
  if (request.body === null || request.bodyUsed) return undefined;
  const data = new Uint8Array(await request.clone().arrayBuffer());
  if (data.length > 1 << 20) return undefined;
  const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(sum, (b) => b.toString(16).padStart(2, "0")).join("");
}

// contextEvent is the signed context's grant of resource:action, or
// undefined (refuse the event).
export function contextEvent(claims, resource, action) {
  return (claims.events ?? []).find((e) => e.resource === resource && e.action === action);
}

const validGrant = (g) =>
  isObject(g) &&
  isObject(g.filters) &&
  (g.namespace_prefix === undefined ||
    (Array.isArray(g.namespace_prefix) &&
      g.namespace_prefix.length > 0 &&
      g.namespace_prefix.every((p) => typeof p === "string" && p !== ""))) &&
  (g.values === undefined || (Array.isArray(g.values) && g.values.every(isObject)));

function refuse(detail, status = 401) {
  return new HTTPException(status, {
    message: JSON.stringify({ detail }),
    headers: { "content-type": "application/json" },
  });
}

function jsonHeader(headers, name) {
  const raw = headers.get(name);
  if (!raw) throw refuse(`Missing ${name}`);
  try {
    return JSON.parse(raw);
  } catch {
    throw refuse(`Malformed ${name}`);
  }
}

export const auth = new Auth()
  .authenticate(async (request) => {
    const h = request.headers;
    const route = unenforced(request.url);
    if (route) throw refuse(`Not available behind langgate: ${route}`, 403);
    // The proxy sends no langgate headers on its public routes. The server
    // still authenticates GET /ok (a health check); let exactly that through
    // as an anonymous user without a decision, which every handler refuses.
    if (!h.get("x-langgate-user") && request.method === "GET" && new URL(request.url).pathname === "/ok") {
      return { identity: "anonymous", is_authenticated: false, permissions: [] };
    }
    if (CONTEXT_JWKS) return signedUser(request);
    const id = h.get("x-langgate-user-id");
    const user = jsonHeader(h, "x-langgate-user");
    if (!isObject(user) || typeof user.identity !== "string" || user.identity === "") {
      throw refuse("Malformed x-langgate-user");
    }
    if (id == null || id !== user.identity) throw refuse("x-langgate-user-id does not match x-langgate-user");
    const permissions = user.permissions ?? [];
    if (!Array.isArray(permissions) || !permissions.every((p) => typeof p === "string")) {
      throw refuse("Malformed permissions in x-langgate-user");
    }
    if (user.display_name != null && typeof user.display_name !== "string") {
      throw refuse("Malformed display_name in x-langgate-user");
    }
    if (user.is_authenticated != null && typeof user.is_authenticated !== "boolean") {
      throw refuse("Malformed is_authenticated in x-langgate-user");
    }
    // Both are always sent on an allowed request ({} when empty): a missing
    // one means the request did not come through langgate. Fail closed.
    const filters = jsonHeader(h, "x-langgate-filters");
    const metadata = jsonHeader(h, "x-langgate-metadata");
    if (!isObject(filters)) throw refuse("Malformed x-langgate-filters");
    if (!isObject(metadata)) throw refuse("Malformed x-langgate-metadata");
    const events = jsonHeader(h, "x-langgate-events");
    if (!isObject(events) || !Object.values(events).every(validGrant)) {
      throw refuse("Malformed x-langgate-events");
    }
    // Extra user fields of langgate's user mapping (role, org, ...), as an
    // authenticate function returns them: graph code reads them in
    // config.configurable.langgraph_auth_user.
    const extra = Object.fromEntries(
      Object.entries(user).filter(
        ([k]) => !["identity", "display_name", "is_authenticated", "permissions"].includes(k) && !k.startsWith("langgate_"),
      ),
    );
    return {
      ...extra,
      identity: user.identity,
      display_name: user.display_name ?? user.identity,
      is_authenticated: user.is_authenticated ?? true,
      permissions,
      [FILTERS]: filters,
      [METADATA]: metadata,
      [EVENTS]: events,
    };
  })
  // The only handler: langgate already allowed the request; apply its result.
  .on("*", ({ resource, action, value, user }) => {
    const filters = user?.[FILTERS];
    const metadata = user?.[METADATA];
    const events = user?.[EVENTS];
    // Not authenticated by the function above (the studio user of
    // `x-auth-scheme: langsmith`, or the anonymous /ok user): refuse.
    if (!isObject(filters) || !isObject(metadata) || !isObject(events)) {
      throw refuse("Request did not come through langgate");
    }
    // The server may fire only what langgate authorized for this request: a
    // route langgate maps to other events (or to none) never runs this one.
    const event = `${resource}:${action}`;
    if (!Object.hasOwn(events, event)) {
      console.warn(`langgate adapter: refused ${event}, which langgate did not authorize (it authorized ${JSON.stringify(events)})`);
      throw refuse(`langgate did not authorize ${event} for this request`, 403);
    }
    const grant = events[event];
    // What the server is about to act on must be what langgate read and
    // authorized (a store namespace and key, an id, what a rule read): a
    // request the server reads otherwise than langgate did runs nothing.
    if (!valueAllowed(grant.values, value, resource)) {
      console.warn(`langgate adapter: refused ${event} on a value langgate did not authorize`);
      if (user[SIGNED]) throw refuse("Invalid x-langgate-context: value");
      throw refuse(`langgate did not authorize ${event} on this value`, 403);
    }
    if (WRITES.has(action) && isObject(value) && Object.keys(metadata).length > 0) {
      if (isObject(value.metadata)) {
        // In place (the copy route only keeps in-place changes), and
        // langgate's keys last: a client cannot override them.
        Object.assign(value.metadata, metadata);
      } else {
        value.metadata = { ...metadata };
      }
    }
    if (grant.namespace_prefix && resource === "store" && isObject(value)) {
      // LangGraph's documented store pattern: the handler rewrites the
      // namespace. LangGraph JS 1.5.1 reads the rewritten namespace back
      // for put, get and delete only; search and list_namespaces would run
      // on the client's: refuse them rather than search outside the prefix.
      if (action === "search" || action === "list_namespaces") {
        console.warn(`langgate adapter: refused ${event}: this server ignores a rewritten namespace there`);
        throw refuse("This server cannot scope a store search to a namespace prefix", 403);
      }
      value.namespace = [...grant.namespace_prefix, ...(value.namespace ?? [])];
    }
    // This event's own filters (its handler's, in langgate).
    const own = grant.filters;
    // LangGraph JS (1.5.1) matches filters key by key and skips a key whose
    // value it does not understand, so $or / $and (which the Python server
    // enforces) would match everything here: refuse instead.
    if (Object.keys(own).some((k) => k === "$or" || k === "$and")) {
      console.warn(`langgate adapter: refused ${event}: its filters use $or/$and, which this server cannot enforce`);
      throw refuse("This server cannot enforce $or/$and filters", 403);
    }
    return Object.keys(own).length > 0 ? own : undefined;
  });
