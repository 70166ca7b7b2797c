"""LangGraph's custom-auth seed, written as a LangGraph user writes it: the
reference langgate is compared with (differential.py).

- authenticate: the bearer token verified with the identity provider (the
  test's dev OIDC issuer: discovery, its JWKS, RS256, the audience), else
  401 {"detail": "Invalid token"};
- @auth.on: stamp metadata.owner = identity on what is written, and filter
  every read and search by it;
- @auth.on.store(): the namespace's first label must be the caller's
  identity, else 403 "Not authorized".

SEED_OIDC_ISSUER and SEED_OIDC_AUDIENCE name the issuer and audience.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request

import jwt
from langgraph_sdk import Auth

ISSUER = os.environ["SEED_OIDC_ISSUER"]
AUDIENCE = os.environ["SEED_OIDC_AUDIENCE"]

auth = Auth()
_jwks: jwt.PyJWKClient | None = None


def _keys() -> jwt.PyJWKClient:
    global _jwks
    if _jwks is None:
        with urllib.request.urlopen(ISSUER + "/.well-known/openid-configuration") as r:
            _jwks = jwt.PyJWKClient(json.load(r)["jwks_uri"])
    return _jwks


def _verify(token: str) -> dict:
    key = _keys().get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    if not authorization or not authorization.startswith("Bearer "):
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    try:
        # PyJWKClient fetches over the network: off the event loop.
        claims = await asyncio.to_thread(_verify, authorization[len("Bearer ") :])
    except Exception:  # noqa: BLE001 - whatever fails the verification, the answer is 401
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token") from None
    return {
        "identity": claims["sub"],
        "display_name": claims.get("name", claims["sub"]),
        "permissions": claims.get("scope", "").split(),
    }


@auth.on
async def add_owner(ctx: Auth.types.AuthContext, value: dict) -> dict:
    filters = {"owner": ctx.user.identity}
    metadata = value.setdefault("metadata", {})
    if metadata is None:
        metadata = value["metadata"] = {}
    metadata.update(filters)
    return filters


@auth.on.store()
async def authorize_store(ctx: Auth.types.AuthContext, value: dict) -> None:
    namespace = value.get("namespace") or ()
    if not namespace or namespace[0] != ctx.user.identity:
        raise Auth.exceptions.HTTPException(status_code=403, detail="Not authorized")
