"""examples/langgraph/upstream/auth.py against the real langgraph_sdk.

Run by TestAdapters with the Python of .cache/venv (langgraph-sdk from
test/requirements.txt):

    .cache/venv/bin/python test/e2e/adapter_test.py examples/langgraph/upstream/auth.py

It calls the adapter's authenticate() with the headers langgate sends (and
broken ones) and its handler with the server's own AuthContext type; the
adapter inside the real Python server is exercised by the end-to-end tests.
Prints OK and exits 0 when every check holds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import pathlib
import sys

from langgraph_sdk import Auth

HTTPException = Auth.exceptions.HTTPException

EVERY_EVENT = [
    *(f"threads:{a}" for a in ("create", "read", "update", "delete", "search", "create_run")),
    *(f"assistants:{a}" for a in ("create", "read", "update", "delete", "search")),
    *(f"store:{a}" for a in ("put", "get", "delete", "search", "list_namespaces")),
]


def load(path: str):
    spec = importlib.util.spec_from_file_location("lgauth", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def headers(identity="alice", filters=None, metadata=None, events=None, **extra):
    filters = {"owner": identity} if filters is None else filters
    h = {
        "x-langgate-user-id": identity,
        "x-langgate-user": json.dumps(
            {"identity": identity, "display_name": identity.title(), "is_authenticated": True, "permissions": ["p"]}
        ),
        "x-langgate-filters": json.dumps(filters),
        "x-langgate-metadata": json.dumps({"owner": identity} if metadata is None else metadata),
        "x-langgate-events": json.dumps({e: {"filters": filters} for e in EVERY_EVENT} if events is None else events),
    }
    h.update(extra)
    # The server passes lower-case bytes names and values.
    return {k.encode(): v.encode() for k, v in h.items() if v is not None}


def ctx(user, resource, action):
    return Auth.types.AuthContext(user=user, permissions=[], resource=resource, action=action)


async def status_of(coro) -> int | None:
    try:
        await coro
    except HTTPException as e:
        return e.status_code
    return None


async def main(path: str) -> None:
    m = load(path)
    u = await m.authenticate(method="POST", path="/threads", headers=headers())
    assert u["identity"] == "alice" and u["display_name"] == "Alice" and u["permissions"] == ["p"], u
    assert u["langgate_filters"] == {"owner": "alice"} and u["langgate_metadata"] == {"owner": "alice"}, u

    broken = {
        "no filters": headers(**{"x-langgate-filters": None}),
        "no metadata": headers(**{"x-langgate-metadata": None}),
        "no events": headers(**{"x-langgate-events": None}),
        "events an array": headers(**{"x-langgate-events": '["threads:read"]'}),
        "events with a list of filters": headers(**{"x-langgate-events": '{"threads:read": {"filters": []}}'}),
        "events without filters": headers(**{"x-langgate-events": '{"threads:read": {}}'}),
        "an empty namespace prefix": headers(
            **{"x-langgate-events": '{"store:put": {"filters": {}, "namespace_prefix": []}}'}
        ),
        "user id disagrees": headers(**{"x-langgate-user-id": "bob"}),
        "malformed user": headers(**{"x-langgate-user": "{"}),
        "filters an array": headers(**{"x-langgate-filters": "[]"}),
        "nothing": {},
        "studio scheme": {b"x-auth-scheme": b"langsmith"},
    }
    for name, h in broken.items():
        got = await status_of(m.authenticate(method="POST", path="/threads/search", headers=h))
        assert got == 401, f"{name}: {got}"
    anon = await m.authenticate(method="GET", path="/ok", headers={})
    assert anon["is_authenticated"] is False

    # Writes are stamped in place, langgate's keys last; reads are not.
    v = {"metadata": {"owner": "bob", "topic": "x"}}
    md = v["metadata"]
    assert await m.enforce(ctx=ctx(u, "threads", "create"), value=v) == {"owner": "alice"}
    assert v["metadata"] is md and md == {"owner": "alice", "topic": "x"}, v
    v = {}
    await m.enforce(ctx=ctx(u, "threads", "create_run"), value=v)
    assert v == {"metadata": {"owner": "alice"}}, v
    v = {"metadata": {"owner": "bob"}}
    await m.enforce(ctx=ctx(u, "threads", "search"), value=v)
    assert v == {"metadata": {"owner": "bob"}}, "reads are not stamped"

    # Each event gets its own filters; an event langgate did not grant is
    # refused with 403.
    g = await m.authenticate(
        method="POST",
        path="/threads/t/runs",
        headers=headers(
            events={
                "threads:create_run": {"filters": {"owner": "alice"}},
                "assistants:read": {"filters": {"team": "a"}},
            }
        ),
    )
    assert await m.enforce(ctx=ctx(g, "assistants", "read"), value={}) == {"team": "a"}
    assert await status_of(m.enforce(ctx=ctx(g, "threads", "delete"), value={})) == 403
    none = await m.authenticate(method="GET", path="/x", headers=headers(events={}))
    assert await status_of(m.enforce(ctx=ctx(none, "threads", "read"), value={})) == 403
    # A store namespace prefix is put before the client's namespace (a
    # listing without a prefix gets the prefix itself).
    grant = {"filters": {}, "namespace_prefix": ["alice"]}
    s = await m.authenticate(
        method="PUT", path="/store/items", headers=headers(events={"store:put": grant, "store:list_namespaces": grant})
    )
    v = {"namespace": ("notes",), "key": "k"}
    await m.enforce(ctx=ctx(s, "store", "put"), value=v)
    assert v["namespace"] == ("alice", "notes"), v
    v = {"namespace": None}
    await m.enforce(ctx=ctx(s, "store", "list_namespaces"), value=v)
    assert v["namespace"] == ("alice",), v
    # A grant's values: the server must act on what langgate read (403 on
    # anything else, in the unsigned mode), checked before the prefix.
    bound = {"filters": {}, "values": [{"/namespace": ["bob"], "/key": "k1"}]}
    b = await m.authenticate(method="GET", path="/store/items", headers=headers("bob", events={"store:get": bound}))
    assert await m.enforce(ctx=ctx(b, "store", "get"), value={"namespace": ("bob",), "key": "k1"}) is None
    for other in ({"namespace": ("alice", "notes"), "key": "k1"}, {"namespace": ("bob",), "key": "k2"}, {"key": "k1"}):
        assert await status_of(m.enforce(ctx=ctx(b, "store", "get"), value=other)) == 403, other
    for broken in ({"filters": {}, "values": {}}, {"filters": {}, "values": [1]}):
        got = await status_of(
            m.authenticate(method="GET", path="/store/items", headers=headers("bob", events={"store:get": broken}))
        )
        assert got == 401, f"malformed values {broken}: {got}"
    open_ = await m.authenticate(method="GET", path="/threads", headers=headers("carol", {}, {}))
    assert await m.enforce(ctx=ctx(open_, "threads", "read"), value={}) is None

    for stranger in (anon, {"identity": "langgraph-studio-user", "kind": "StudioUser"}):
        got = await status_of(m.enforce(ctx=ctx(stranger, "threads", "read"), value={}))
        assert got == 401, f"a user langgate did not decide on: {got}"
    signed_context_vectors(m)
    print("OK")


def signed_context_vectors(m) -> None:
    """auth.py's verify_context against the shared vectors."""
    path = pathlib.Path(__file__).parent.parent / "vectors" / "context.json"
    vectors = json.loads(path.read_text())
    assert len(vectors["cases"]) >= 10, "too few vectors"
    assert len(vectors["queries"]) >= 20, "too few queries"
    for q in vectors["queries"]:
        try:
            got, refused = m.canonical_query(q["raw"].encode()), False
        except ValueError:
            got, refused = "", True
        assert (got, refused) == (q["canonical"], q.get("refused", False)), f"canonical query of {q['raw']!r}: {got!r}"
    for case in vectors["cases"]:
        e = case["expect"]
        try:
            claims = m.verify_context(
                case["token"],
                vectors["jwks"],
                issuer=e["issuer"],
                audience=e["audience"],
                method=e["method"],
                path=e["path"],
                query=e.get("query", "").encode(),
                body_sha256=e.get("body_sha256"),
                now=e["now"],
            )
            verdict = "ok"
        except m.ContextError as err:
            verdict = str(err)
        assert verdict == case["verdict"], f"{case['name']}: {verdict}, want {case['verdict']}"
        if verdict == "ok" and case.get("event"):
            ev = case["event"]
            grant = m.context_event(claims, ev["resource"], ev["action"])
            assert (grant is not None) == ev["granted"], f"{case['name']}: grant {grant}"
            if grant is not None:
                assert grant.get("filters") == ev.get("filters"), f"{case['name']}: filters {grant.get('filters')}"
        for vc in case.get("values") or []:
            grant = m.context_event(claims, vc["resource"], vc["action"])
            # The server hands a store handler its namespace as a tuple.
            value = dict(vc["value"])
            if vc["resource"] == "store" and isinstance(value.get("namespace"), list):
                value["namespace"] = tuple(value["namespace"])
            got = "ok" if m.value_allowed(grant.get("values"), value, vc["resource"]) else "value"
            assert got == vc["verdict"], f"{case['name']}: value {vc['value']}: {got}, want {vc['verdict']}"


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
