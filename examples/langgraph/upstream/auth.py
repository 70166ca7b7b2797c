"""langgate adapter for the LangGraph Python server (langgraph-api).

The Python twin of auth.mjs: the same headers, checks and handler. (auth.mjs
also refuses a few routes that the JS server serves without enforcing a
decision; that list is specific to the JS server's code and is not repeated
here: see docs/langgraph.md, "Known gaps".)

langgate (in front of this server, as an Envoy ext_authz service or behind
nginx/Traefik auth_request) authenticates every request and runs the
authorization handlers of its policy. On allow, the proxy hands the decision to
this server as request headers (docs/headers.md):

    x-langgate-user-id      the identity
    x-langgate-user         {"identity","display_name","is_authenticated","permissions"}
    x-langgate-filters      filter object in LangGraph syntax, {} when none
    x-langgate-metadata     object to merge into the metadata of what is written
    x-langgate-events       {"resource:action": {"filters": {...}, "namespace_prefix": [...]}}:
                            every event langgate authorized for this request, each
                            with its own filters (and, for a store event, labels to
                            put before its namespace)

This file does not decide anything: it trusts ONLY those headers and makes the
server enforce them with its own machinery (filters: 404 / left out of
searches; metadata: stamped on what is created or updated).

SECURITY: the headers are not signed. Whoever can reach this server without
going through the proxy can claim to be anyone. The server MUST only be
reachable through the proxy: bind it to loopback or a private network, or
restrict it with a NetworkPolicy / security group that admits the proxy only.
Also set "disable_studio_auth": true in langgraph.json, otherwise a request
carrying `x-auth-scheme: langsmith` skips authenticate() altogether (the proxy
strips that header, and the handler below refuses such requests, but routes
that fire no event would still be served).

Load it from langgraph.json:
    "auth": {"path": "./auth.py:auth", "disable_studio_auth": true}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any

import jwt
from langgraph_sdk import Auth

# Where authenticate() leaves the decision on the user object; graph code sees
# them in config["configurable"]["langgraph_auth_user"].
FILTERS = "langgate_filters"
METADATA = "langgate_metadata"
EVENTS = "langgate_events"
SIGNED = "langgate_signed"

# Events whose value["metadata"] the server writes: threads/assistants create,
# threads create_run (a thread the run creates, and the run), threads and
# assistants update (merged into the stored metadata).
WRITES = frozenset({"create", "update", "create_run"})

auth = Auth()
_log = logging.getLogger("langgate.adapter")


class ContextError(Exception):
    """A signed context (x-langgate-context) refused; str() is the verdict:
    malformed, algorithm, unknown_key, signature, expired, issuer, audience,
    request or value (the names of test/vectors/context.json)."""


# RFC 3986's unreserved bytes: the only ones the canonical query leaves as
# they are.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _unescape_query(raw: bytes) -> bytes:
    raw = raw.replace(b"+", b" ")
    if _BAD_ESCAPE.search(raw):
        raise ValueError("malformed percent-encoding")
    out = urllib.parse.unquote_to_bytes(raw)
    out.decode("utf-8")  # strict: invalid UTF-8 has no canonical form
    return out


def canonical_query(raw: bytes | str) -> str:
    """The canonical form of a raw query string (no "?") that a signed
    context binds, as langgate computes it (routes.CanonicalQuery): the
    pairs in order, empty pieces skipped, name and value split at the first
    "=", "+" a space, percent-decoded as UTF-8, then every byte but A-Z a-z
    0-9 - . _ ~ written as %XX, joined as name=value by "&". Raises
    ValueError for a query langgate refuses (";", a malformed escape,
    invalid UTF-8)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    pairs = []
    for piece in raw.split(b"&"):
        if not piece:
            continue
        if b";" in piece:
            raise ValueError('a ";" in the query')
        name, _, value = piece.partition(b"=")
        pairs.append(
            "".join(chr(c) if c in _UNRESERVED else f"%{c:02X}" for c in _unescape_query(name))
            + "="
            + "".join(chr(c) if c in _UNRESERVED else f"%{c:02X}" for c in _unescape_query(value))
        )
    return "&".join(pairs)


# The server names a graph's own assistant uuid5(NAMESPACE_GRAPH, graph_id)
# (langgraph_api.graph.NAMESPACE_GRAPH) and hands handlers that id where the
# client sent the graph's.
NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


_HEX32 = re.compile(r"[0-9A-Fa-f]{32}")


def _as_uuid(v: Any) -> uuid.UUID | None:
    """A UUID, or a string of 32 hex digits (hyphens anywhere ignored)."""
    if isinstance(v, uuid.UUID):
        return v
    if isinstance(v, str) and _HEX32.fullmatch(v.replace("-", "")):
        return uuid.UUID(hex=v.replace("-", ""))
    return None


def _same(got: Any, want: Any, pointer: str = "") -> bool:
    """JSON equality of what the server hands a handler (tuples for lists,
    UUIDs for ids, in any spelling) with a bound value."""
    if want is None:
        return got is None
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(want, bool) and isinstance(got, bool) and got == want
    if isinstance(want, str):
        if isinstance(got, str) and got == want:
            return True
        g, w = _as_uuid(got), _as_uuid(want)
        if g is not None and w is None and pointer == "/assistant_id":
            return g == uuid.uuid5(NAMESPACE_GRAPH, want)
        return g is not None and g == w
    if isinstance(want, (int, float)):
        return isinstance(got, (int, float)) and got == want
    if isinstance(want, list):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_same(got[k], v) for k, v in want.items())
    return False


_ABSENT = object()


def _resolve(value: Any, pointer: str) -> Any:
    if not pointer.startswith("/"):
        return _ABSENT
    cur = value
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(cur, dict) or token not in cur:
            return _ABSENT
        cur = cur[token]
    return cur


def value_allowed(values: Any, value: Any, resource: str = "") -> bool:
    """Whether the value the server hands an event's handler is one that
    langgate authorized: the event binds no values, or one bound object
    (a JSON pointer into the value to what must be there; null: nothing)
    matches it (docs/headers.md, "What is bound"). A store namespace the
    server reads as None or () is an empty one."""
    if not values:
        return True
    for bound in values:
        if not isinstance(bound, dict):
            return False
        ok = True
        for pointer, want in bound.items():
            got = _resolve(value, pointer)
            if resource == "store" and pointer == "/namespace":
                got = () if got is _ABSENT or got is None else got
                want = [] if want is None else want
            if got is _ABSENT:
                got = None
            if not _same(got, want, pointer):
                ok = False
                break
        if ok:
            return True
    return False


# The algorithms langgate signs with, and the key each one needs.
_KEY_TYPES = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}


def verify_context(
    token: str,
    jwks: dict,
    *,
    issuer: str,
    audience: str,
    method: str,
    path: str,
    query: bytes | str = b"",
    body_sha256: str | None = None,
    now: float | None = None,
) -> dict:
    """Verify langgate's signed auth context and return its payload.

    The signature must verify with the published key its kid names, with
    the alg pinned to that key's own (EdDSA with Ed25519, ES256 with
    P-256); then exp and iat, iss, aud, and the request it was issued for
    (method, langgate's normalized path, the query as received, in
    canonical form, and the body hash when it binds one and body_sha256 is
    given: the adapter cannot read the body before the server does, so the
    event values stand for it, value_allowed). Raises ContextError with
    the verdict.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise ContextError("malformed") from None
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in _KEY_TYPES:
        raise ContextError("algorithm")
    key = next((k for k in jwks.get("keys", []) if kid and k.get("kid") == kid), None)
    if key is None:
        raise ContextError("unknown_key")
    if key.get("alg", alg) != alg or (key.get("kty"), key.get("crv")) != _KEY_TYPES[alg]:
        raise ContextError("algorithm")
    try:
        claims = jwt.decode(
            token,
            jwt.PyJWK(key, algorithm=alg).key,
            algorithms=[alg],
            # The claims are checked below, with the verdicts of the shared vectors.
            options={"verify_exp": False, "verify_iat": False, "verify_aud": False, "verify_iss": False},
        )
    except jwt.InvalidSignatureError:
        raise ContextError("signature") from None
    except jwt.PyJWTError:
        raise ContextError("malformed") from None
    now = time.time() if now is None else now
    exp, iat = claims.get("exp"), claims.get("iat", 0)
    if not isinstance(exp, int) or now > exp or now < iat:
        raise ContextError("expired")
    if claims.get("iss") != issuer:
        raise ContextError("issuer")
    if audience not in (claims.get("aud") or []):
        raise ContextError("audience")
    request = claims.get("request") or {}
    bound_body = request.get("body_sha256")
    if (
        request.get("method") != method
        or request.get("path") != path
        or (bound_body and body_sha256 and bound_body != body_sha256)
    ):
        raise ContextError("request")
    try:
        canonical = canonical_query(query)
    except ValueError:
        raise ContextError("request") from None
    if canonical != request.get("query", ""):
        raise ContextError("request")
    return claims


# The signed context: with LANGGATE_CONTEXT_JWKS set (langgate's JWKS URL,
# e.g. http://langgate:9090/.well-known/jwks.json, or a file), the adapter
# trusts only x-langgate-context, verified for this request, and ignores the
# unsigned headers. LANGGATE_CONTEXT_AUDIENCE is this server's audience
# (langgraph by default), LANGGATE_CONTEXT_ISSUER langgate's issuer.
CONTEXT_JWKS = os.environ.get("LANGGATE_CONTEXT_JWKS", "")
CONTEXT_AUDIENCE = os.environ.get("LANGGATE_CONTEXT_AUDIENCE", "langgraph")
CONTEXT_ISSUER = os.environ.get("LANGGATE_CONTEXT_ISSUER", "langgate")
_jwks_cache: dict[str, Any] = {"keys": None, "at": 0.0}


def _fetch_jwks() -> dict:
    if CONTEXT_JWKS.startswith(("http://", "https://")):
        with urllib.request.urlopen(CONTEXT_JWKS, timeout=5) as r:
            return json.load(r)
    with open(CONTEXT_JWKS, encoding="utf-8") as f:
        return json.load(f)


async def _jwks(refresh: bool) -> dict:
    """langgate's keys, cached for 5 minutes; refresh asks again (an
    unknown kid after a rotation), at most every 10 seconds."""
    now = time.monotonic()
    age = now - _jwks_cache["at"]
    if _jwks_cache["keys"] is None or age > 300 or (refresh and age > 10):
        _jwks_cache["keys"] = await asyncio.to_thread(_fetch_jwks)
        _jwks_cache["at"] = now
    return _jwks_cache["keys"]


async def _signed_user(method: str, path: str, headers: Any, query: bytes) -> dict[str, Any]:
    token = _header(headers, "x-langgate-context")
    if token is None:
        raise _refuse("Missing x-langgate-context")
    check = {"issuer": CONTEXT_ISSUER, "audience": CONTEXT_AUDIENCE, "method": method, "path": path, "query": query}
    try:
        try:
            claims = verify_context(token, await _jwks(False), **check)
        except ContextError as err:
            if str(err) != "unknown_key":
                raise
            claims = verify_context(token, await _jwks(True), **check)
    except ContextError as err:
        _log.warning("langgate adapter: refused a signed context: %s", err)
        raise _refuse(f"Invalid x-langgate-context: {err}") from None
    user = claims.get("user") or {}
    if not isinstance(user.get("identity"), str) or not user["identity"]:
        raise _refuse("Invalid x-langgate-context: no identity")
    events, metadata = {}, {}
    for e in claims.get("events") or []:
        grant = {"filters": e.get("filters") or {}}
        if e.get("namespace_prefix"):
            grant["namespace_prefix"] = e["namespace_prefix"]
        if e.get("values"):
            grant["values"] = e["values"]
        events[f"{e.get('resource')}:{e.get('action')}"] = grant
        metadata.update(e.get("metadata") or {})
    extra = dict(user.get("fields") or {})
    if user.get("is_studio_user"):
        extra.update(kind="StudioUser", is_studio_user=True)
    return {
        **extra,
        "identity": user.get("identity", ""),
        "display_name": user.get("display_name") or user.get("identity", ""),
        "is_authenticated": True,
        "permissions": user.get("permissions") or [],
        FILTERS: {},
        METADATA: metadata,
        EVENTS: events,
        SIGNED: True,
    }


def context_event(claims: dict, resource: str, action: str) -> dict | None:
    """The signed context's grant of resource:action, or None (refuse)."""
    for event in claims.get("events") or []:
        if event.get("resource") == resource and event.get("action") == action:
            return event
    return None


def _refuse(detail: str) -> Exception:
    return Auth.exceptions.HTTPException(status_code=401, detail=detail)


def _header(headers: Any, name: str) -> str | None:
    # The server passes headers as a dict of lower-case bytes names to bytes
    # values; accept str keys and values too.
    value = headers.get(name.encode("latin-1"))
    if value is None:
        value = headers.get(name)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value or None


def _json_header(headers: Any, name: str) -> Any:
    raw = _header(headers, name)
    if raw is None:
        raise _refuse(f"Missing {name}")
    try:
        return json.loads(raw)
    except ValueError:
        raise _refuse(f"Malformed {name}") from None


def _user_field(user: Any, name: str) -> Any:
    try:
        return user[name]
    except (KeyError, TypeError, AttributeError):
        return getattr(user, name, None)


def _valid_grant(grant: Any) -> bool:
    if not isinstance(grant, dict) or not isinstance(grant.get("filters"), dict):
        return False
    prefix = grant.get("namespace_prefix")
    values = grant.get("values")
    return (
        prefix is None
        or (isinstance(prefix, list) and len(prefix) > 0 and all(isinstance(p, str) and p for p in prefix))
    ) and (values is None or (isinstance(values, list) and all(isinstance(v, dict) for v in values)))


@auth.authenticate
async def authenticate(method: str, path: str, headers: dict, scope: Any = None) -> dict[str, Any]:
    # The proxy sends no langgate headers on its public routes; GET /ok is a
    # health check: an anonymous user without a decision, which the handler
    # below refuses.
    if _header(headers, "x-langgate-user") is None and method == "GET" and path == "/ok":
        return {"identity": "anonymous", "is_authenticated": False, "permissions": []}
    if CONTEXT_JWKS:
        # The raw query, as the server parses it (scope["query_string"]).
        query = (scope or {}).get("query_string", b"")
        return await _signed_user(method, path, headers, query)
    user = _json_header(headers, "x-langgate-user")
    if not isinstance(user, dict) or not isinstance(user.get("identity"), str) or not user["identity"]:
        raise _refuse("Malformed x-langgate-user")
    if _header(headers, "x-langgate-user-id") != user["identity"]:
        raise _refuse("x-langgate-user-id does not match x-langgate-user")
    permissions = user.get("permissions")
    if permissions is None:
        permissions = []
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise _refuse("Malformed permissions in x-langgate-user")
    display_name = user.get("display_name")
    if display_name is not None and not isinstance(display_name, str):
        raise _refuse("Malformed display_name in x-langgate-user")
    is_authenticated = user.get("is_authenticated")
    if is_authenticated is not None and not isinstance(is_authenticated, bool):
        raise _refuse("Malformed is_authenticated in x-langgate-user")
    # Both are always sent on an allowed request ({} when empty): a missing one
    # means the request did not come through langgate. Fail closed.
    filters = _json_header(headers, "x-langgate-filters")
    metadata = _json_header(headers, "x-langgate-metadata")
    if not isinstance(filters, dict):
        raise _refuse("Malformed x-langgate-filters")
    if not isinstance(metadata, dict):
        raise _refuse("Malformed x-langgate-metadata")
    events = _json_header(headers, "x-langgate-events")
    if not isinstance(events, dict) or not all(_valid_grant(g) for g in events.values()):
        raise _refuse("Malformed x-langgate-events")
    # Extra user fields of langgate's user mapping (role, org, ...), as an
    # authenticate function returns them: graph code reads them in
    # config["configurable"]["langgraph_auth_user"].
    extra = {
        k: v
        for k, v in user.items()
        if k not in ("identity", "display_name", "is_authenticated", "permissions") and not k.startswith("langgate_")
    }
    return {
        **extra,
        "identity": user["identity"],
        "display_name": display_name if display_name is not None else user["identity"],
        "is_authenticated": True if is_authenticated is None else is_authenticated,
        "permissions": permissions,
        FILTERS: filters,
        METADATA: metadata,
        EVENTS: events,
    }


# The only handler: langgate already allowed the request; apply its result.
@auth.on
async def enforce(ctx: Auth.types.AuthContext, value: Any) -> dict[str, Any] | None:
    filters = _user_field(ctx.user, FILTERS)
    metadata = _user_field(ctx.user, METADATA)
    events = _user_field(ctx.user, EVENTS)
    # Not authenticated by the function above (the studio user of
    # `x-auth-scheme: langsmith`, or the anonymous /ok user): refuse.
    if not isinstance(filters, dict) or not isinstance(metadata, dict) or not isinstance(events, dict):
        raise _refuse("Request did not come through langgate")
    # The server may fire only what langgate authorized for this request: a
    # route langgate maps to other events (or to none) never runs this one.
    event = f"{ctx.resource}:{ctx.action}"
    if event not in events:
        _log.warning("langgate adapter: refused %s, which langgate did not authorize (it authorized %s)", event, events)
        raise Auth.exceptions.HTTPException(
            status_code=403, detail=f"langgate did not authorize {event} for this request"
        )
    grant = events[event]
    # What the server is about to act on must be what langgate read and
    # authorized (a store namespace and key, an id, what a rule read): a
    # request the server reads otherwise than langgate did runs nothing.
    if not value_allowed(grant.get("values"), value, ctx.resource):
        _log.warning("langgate adapter: refused %s on a value langgate did not authorize", event)
        if _user_field(ctx.user, SIGNED):
            raise _refuse("Invalid x-langgate-context: value")
        raise Auth.exceptions.HTTPException(status_code=403, detail=f"langgate did not authorize {event} on this value")
    if ctx.action in WRITES and isinstance(value, dict) and metadata:
        current = value.get("metadata")
        if isinstance(current, dict):
            # In place, and langgate's keys last: a client cannot override them.
            current.update(metadata)
        else:
            value["metadata"] = dict(metadata)
    prefix = grant.get("namespace_prefix")
    if prefix and ctx.resource == "store" and isinstance(value, dict):
        # LangGraph's documented store pattern: the handler rewrites the
        # namespace (the server reads it back after the handler ran).
        value["namespace"] = (*prefix, *(value.get("namespace") or ()))
    # This event's own filters (its handler's, in langgate).
    return grant["filters"] or None
