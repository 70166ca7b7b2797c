// LangGraph's custom-auth seed in JS, as a LangGraph JS user writes it: the
// twin of seed_auth.py, the reference langgate is compared with on the JS
// server (differential.py). The bearer token is verified with the identity
// provider (discovery, its JWKS, RS256, the audience) by jose; @auth.on
// stamps metadata.owner and filters by it; the store handler requires the
// namespace's first label to be the caller.
//
// SEED_OIDC_ISSUER and SEED_OIDC_AUDIENCE name the issuer and audience.
import { Auth, HTTPException } from "@langchain/langgraph-sdk/auth";
import { createRemoteJWKSet, jwtVerify } from "jose";

const ISSUER = process.env.SEED_OIDC_ISSUER;
const AUDIENCE = process.env.SEED_OIDC_AUDIENCE;
let jwks;

async function keys() {
  if (!jwks) {
    const doc = await (await fetch(`${ISSUER}/.well-known/openid-configuration`)).json();
    jwks = createRemoteJWKSet(new URL(doc.jwks_uri));
  }
  return jwks;
}

const denied = (status, detail) =>
  new HTTPException(status, { message: JSON.stringify({ detail }), headers: { "content-type": "application/json" } });

export const auth = new Auth()
  .authenticate(async (request) => {
    const header = request.headers.get("authorization");
    if (!header?.startsWith("Bearer ")) throw denied(401, "Invalid token");
    try {
      const { payload } = await jwtVerify(header.slice("Bearer ".length), await keys(), {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ["RS256"],
      });
      return {
        identity: payload.sub,
        display_name: payload.name ?? payload.sub,
        permissions: String(payload.scope ?? "").split(" ").filter(Boolean),
      };
    } catch {
      throw denied(401, "Invalid token");
    }
  })
  .on("*", ({ value, user }) => {
    const filters = { owner: user.identity };
    if (value && typeof value === "object") {
      value.metadata ??= {};
      Object.assign(value.metadata, filters);
    }
    return filters;
  })
  .on("store", ({ value, user }) => {
    const namespace = value?.namespace ?? [];
    if (namespace.length === 0 || namespace[0] !== user.identity) throw denied(403, "Not authorized");
  });
