"""LangGraph's own custom auth as the oracle for MCP and A2A through langgate.

The twin of differential.py for the server's agent protocols: the same
corpus runs against

  REFERENCE_URL  a LangGraph Python server with the seed's auth (seed_auth.py);
  LANGGATE_URL   the same server with langgate's adapter, behind Envoy and
                 langgate (the seed policy, its /mcp an OAuth protected
                 resource, MCP_RESOURCE);

as alice, bob and carol (TOKENS: their tokens, valid for both), with the
official MCP Python SDK for initialize, tools/list and tools/call and with
A2A JSON-RPC calls (message/send and message/stream, tasks/get,
tasks/cancel, ListTasks, GetExtendedAgentCard, the agent card). Every step
records what the client observes (which tools, whether a call succeeded and
what it answered, JSON-RPC error codes, which threads each user reaches
afterwards), with server ids replaced by the corpus's names; the two
records must be equal, except for the steps listed under "agents" in
differences.json, each with why.

Then, against langgate only, the SDK's OAuth discovery (RFC 9728, RFC 8707):
an unauthenticated initialize gets a 401 naming the resource metadata,
which the SDK fetches through Envoy, then the issuer's metadata, then a
client_credentials token for the resource, with which it lists its tools.

Prints one line per step (= or ≠) and exits 1 on an unlisted difference.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from typing import Any

import httpx
import httpx2
from mcp import Client, MCPError
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.auth.utils import extract_resource_metadata_from_www_auth
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken, ProtectedResourceMetadata
from oracle import compare, run_all

TOKENS: dict[str, str] = json.loads(os.environ["TOKENS"])
USERS = ("alice", "bob", "carol")
NIL = "00000000-0000-0000-0000-000000000000"


class Target:
    """One server: HTTP clients per user and the names of what they made."""

    def __init__(self, base: str, run: str) -> None:
        self.base = base.rstrip("/")
        self.run = run
        self.http = {
            u: httpx.AsyncClient(base_url=self.base, headers={"Authorization": f"Bearer {t}"}, timeout=60)
            for u, t in TOKENS.items()
        }
        self.http["anonymous"] = httpx.AsyncClient(base_url=self.base, timeout=60)
        self.ids: dict[str, str] = {}
        self.log: list[tuple[str, Any]] = []

    def id(self, name: str) -> str:
        return self.ids.get(name, NIL)

    def name_of(self, value: Any) -> Any:
        for name, v in self.ids.items():
            if v == value:
                return name
        return "?" if value else value

    def record(self, step: str, observation: Any) -> None:
        self.log.append((step, observation))

    async def close(self) -> None:
        for c in self.http.values():
            await c.aclose()


def mcp_client(t: Target, user: str) -> tuple[httpx2.AsyncClient, Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKENS[user]}"}, timeout=httpx2.Timeout(60, read=300))
    return http, Client(streamable_http_client(t.base + "/mcp", http_client=http), mode="legacy", cache=None)


def flat(err: BaseException) -> BaseException:
    """The first leaf of anyio's exception groups."""
    while isinstance(err, BaseExceptionGroup):
        err = err.exceptions[0]
    return err


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in (result.content or []))


async def mcp_steps(t: Target) -> None:
    run = t.run
    for u in USERS:
        http, client = mcp_client(t, u)
        try:
            async with client as c:
                t.record(f"{u} initializes MCP", {"ok": True, "protocol": c.protocol_version})
                tools = (await c.list_tools()).tools
                t.record(f"{u} lists MCP tools", sorted(x.name.replace(run, "{run}") for x in tools))
                for owner in ("alice", "bob"):
                    name = f"{owner}_tool_{run}"
                    try:
                        res = await c.call_tool(name, {"messages": [{"role": "human", "content": f"mcp from {u}"}]})
                        obs = {"is_error": res.is_error, "echoed": f"echo: mcp from {u}" in text_of(res)}
                    except MCPError as err:
                        obs = {"error": err.code}
                    t.record(f"{u} calls {owner}'s tool", obs)
                try:
                    await c.call_tool("agent", {"messages": []})
                    t.record(f"{u} calls the system assistant's tool", "ok")
                except MCPError as err:
                    t.record(f"{u} calls the system assistant's tool", {"error": err.code})
                try:
                    await c.call_tool("no_such_tool", {})
                    t.record(f"{u} calls an unknown tool", "ok")
                except MCPError as err:
                    t.record(f"{u} calls an unknown tool", {"error": err.code})
        except BaseException as err:  # noqa: BLE001 - the observation is the failure's kind
            e = flat(err)
            t.record(f"{u} initializes MCP", {"failed": type(e).__name__, "code": getattr(e, "code", None)})
        finally:
            await http.aclose()

    # What the SDK does not send: raw JSON-RPC. An unknown method and a bad
    # cursor are JSON-RPC errors on both (the HTTP status differs: 200 from
    # the server, 400 from langgate); a batch is a 400 on both.
    accept = {"accept": "application/json, text/event-stream"}
    for step, body in (
        ("alice asks for resources/list", {"jsonrpc": "2.0", "id": 7, "method": "resources/list"}),
        (
            "alice asks for tools/list with a bad cursor",
            {"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": {"cursor": "x"}},
        ),
    ):
        r = await t.http["alice"].post("/mcp", json=body, headers=accept)
        data = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
        t.record(step, {"code": (data or {}).get("error", {}).get("code"), "tools": "result" in (data or {})})
    r = await t.http["alice"].post("/mcp", json=[{"jsonrpc": "2.0", "id": 1, "method": "ping"}], headers=accept)
    t.record("alice sends a batch", r.status_code)
    r = await t.http["anonymous"].post(
        "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}, headers=accept
    )
    t.record("anonymous initializes MCP", r.status_code)


async def rpc(t: Target, user: str, assistant: str, method: str, params: dict) -> tuple[int, Any]:
    body = {"jsonrpc": "2.0", "id": secrets.token_hex(4), "method": method, "params": params}
    r = await t.http[user].post(f"/a2a/{t.id(assistant)}", json=body, headers={"accept": "application/json"})
    if not r.headers.get("content-type", "").startswith("application/json"):
        return r.status_code, None
    return r.status_code, r.json()


def outcome(data: Any) -> Any:
    """What an A2A answer says: its error code, or the task's state."""
    if not isinstance(data, dict):
        return data
    if "error" in data:
        return {"error": data["error"].get("code")}
    res = data.get("result") or {}
    task = res.get("task", res)  # v1 wraps the task; the v0.x aliases do not
    status = task.get("status") or {}
    return {"state": status.get("state"), "kind": task.get("kind")}


def message(text: str, **ids: str) -> dict:
    return {
        "message": {"role": "user", "messageId": secrets.token_hex(8), "parts": [{"kind": "text", "text": text}], **ids}
    }


async def a2a_steps(t: Target) -> None:
    # alice sends her assistant a message: a new task on a new context.
    status, data = await rpc(t, "alice", "A_alice", "message/send", message("a2a hi"))
    t.record("alice sends her agent a message", {"status": status, **(outcome(data) or {})})
    task = ((data or {}).get("result") or {}) if isinstance(data, dict) else {}
    if task.get("id"):
        t.ids["task_alice"], t.ids["ctx_alice"] = task["id"], task.get("contextId", "")
    status, data = await rpc(t, "bob", "A_alice", "message/send", message("a2a intrude"))
    t.record("bob sends alice's agent a message", {"status": status, **(outcome(data) or {})})
    status, data = await rpc(t, "bob", "A_bob", "message/send", message("a2a mine"))
    t.record("bob sends his agent a message", {"status": status, **(outcome(data) or {})})
    status, data = await rpc(t, "bob", "A_bob", "message/send", message("a2a on alice's", contextId=t.id("ctx_alice")))
    t.record("bob sends his agent a message on alice's context", {"status": status, **(outcome(data) or {})})
    status, data = await rpc(t, "alice", "A_alice", "message/send", message("a2a again", contextId=t.id("ctx_alice")))
    t.record("alice continues her context", {"status": status, **(outcome(data) or {})})
    for u in ("alice", "bob"):
        status, data = await rpc(t, u, "A_alice", "tasks/get", {"id": t.id("task_alice")})
        t.record(f"{u} gets alice's task", {"status": status, **(outcome(data) or {})})
        status, data = await rpc(t, u, "A_alice", "tasks/cancel", {"id": t.id("task_alice")})
        t.record(f"{u} cancels alice's task", {"status": status, **(outcome(data) or {})})
        status, data = await rpc(t, u, "A_alice", "ListTasks", {})
        tasks = ((data or {}).get("result") or {}).get("tasks") if isinstance(data, dict) else None
        t.record(
            f"{u} lists tasks", {"status": status, "count": len(tasks) if isinstance(tasks, list) else outcome(data)}
        )
        status, data = await rpc(t, u, "A_alice", "ListTasks", {"contextId": t.id("ctx_alice")})
        tasks = ((data or {}).get("result") or {}).get("tasks") if isinstance(data, dict) else None
        t.record(
            f"{u} lists alice's context's tasks",
            {"status": status, "count": len(tasks) if isinstance(tasks, list) else outcome(data)},
        )
        status, data = await rpc(t, u, "A_alice", "GetExtendedAgentCard", {})
        card = (data or {}).get("result") if isinstance(data, dict) else None
        t.record(
            f"{u} gets alice's extended card",
            {
                "status": status,
                "named": isinstance(card, dict) and bool(card.get("name")),
                **({"error": data["error"]["code"]} if isinstance(data, dict) and "error" in data else {}),
            },
        )
        r = await t.http[u].get(f"/a2a/{t.id('A_alice')}/.well-known/agent-card.json")
        t.record(f"{u} gets alice's agent card", r.status_code)
        # Streaming: the SSE events of the run, or the error event.
        body = {"jsonrpc": "2.0", "id": "s", "method": "message/stream", "params": message(f"a2a stream {u}")}
        r = await t.http[u].post(f"/a2a/{t.id('A_alice')}", json=body, headers={"accept": "text/event-stream"})
        t.record(
            f"{u} streams to alice's agent",
            {"status": r.status_code, "echoed": f"echo: a2a stream {u}" in r.text, "error": '"error"' in r.text},
        )
    status, data = await rpc(t, "alice", "A_alice", "message/send", {"message": "not an object"})
    t.record(
        "alice sends a malformed message",
        (data or {}).get("error", {}).get("code") if isinstance(data, dict) else status,
    )
    r = await t.http["anonymous"].post(
        f"/a2a/{t.id('A_alice')}", json={"jsonrpc": "2.0", "id": 1, "method": "GetExtendedAgentCard"}
    )
    t.record("anonymous calls alice's agent", r.status_code)


async def after(t: Target) -> None:
    """Which threads each user reaches after the agents ran."""
    for u in USERS:
        r = await t.http[u].post("/threads/search", json={"limit": 100})
        rows = r.json() if r.is_success else []
        t.record(f"{u} searches threads afterwards", {"status": r.status_code, "count": len(rows)})
        r = await t.http[u].get(f"/threads/{t.id('ctx_alice')}")
        owner = ((r.json().get("metadata") or {}).get("owner")) if r.is_success else None
        t.record(f"{u} reads alice's A2A context", {"status": r.status_code, "owner": owner})
        r = await t.http[u].get(f"/threads/{t.id('ctx_alice')}/runs")
        t.record(
            f"{u} lists the runs on alice's A2A context",
            {"status": r.status_code, "count": len(r.json()) if r.is_success else None},
        )


async def corpus(t: Target) -> None:
    for owner in ("alice", "bob"):
        r = await t.http[owner].post(
            "/assistants", json={"graph_id": "agent", "name": f"{owner}_tool_{t.run}", "metadata": {"e2e_run": t.run}}
        )
        t.record(f"{owner} creates an assistant", r.status_code)
        if r.is_success:
            t.ids[f"A_{owner}"] = r.json()["assistant_id"]
    await mcp_steps(t)
    await a2a_steps(t)
    await after(t)


class Memory:
    """The OAuth provider's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def discovery(base: str) -> list[str]:
    """The SDK's OAuth discovery against langgate; the problems found."""
    problems = []
    resource, issuer = os.environ["MCP_RESOURCE"], os.environ["ISSUER"]
    url = base.rstrip("/") + "/mcp"
    async with httpx2.AsyncClient() as h:
        r = await h.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
            headers={"accept": "application/json, text/event-stream"},
        )
        meta = extract_resource_metadata_from_www_auth(r)
        want = base.rstrip("/") + "/.well-known/oauth-protected-resource/mcp"
        if r.status_code != 401 or meta != want:
            challenge = r.headers.get("www-authenticate")
            problems.append(f"unauthenticated initialize: {r.status_code} {challenge!r}, want 401 naming {want}")
        r = await h.get(want)
        try:
            prm = ProtectedResourceMetadata.model_validate_json(r.content)
            if str(prm.resource) != resource or [str(a).rstrip("/") for a in prm.authorization_servers] != [issuer]:
                problems.append(f"metadata {r.text}: want resource {resource}, authorization server {issuer}")
        except Exception as err:  # noqa: BLE001 - reported
            problems.append(f"GET {want}: {r.status_code} {r.text[:200]} ({err})")
        # A token for another audience is refused on the resource.
        r = await h.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={
                "authorization": "Bearer "
                + httpx.get(os.environ["TOKEN_URL"], params={"sub": "alice"}).json()["access_token"]
            },
        )
        if r.status_code != 401 or 'error="invalid_token"' not in r.headers.get("www-authenticate", ""):
            challenge = r.headers.get("www-authenticate")
            problems.append(f"a token for another audience: {r.status_code} {challenge!r}, want 401 invalid_token")
    # The whole flow, no hand configuration: the SDK's OAuth provider.
    provider = ClientCredentialsOAuthProvider(
        server_url=url, storage=Memory(), client_id="alice", client_secret="langgate-dev-secret", issuer=issuer
    )
    try:
        async with httpx2.AsyncClient(auth=provider, timeout=60) as http:
            async with Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None) as c:
                names = sorted(x.name for x in (await c.list_tools()).tools)
                print(f"= discovery: alice logged in through the metadata and sees {names}")
                if not any(n.startswith("alice_tool_") for n in names) or any(n.startswith("bob_tool_") for n in names):
                    problems.append(f"alice's tools after discovery: {names}")
    except BaseException as err:  # noqa: BLE001 - reported
        problems.append(f"the SDK's OAuth flow failed: {flat(err)!r}")
    return problems


def main() -> int:
    run = secrets.token_hex(4)
    targets = {
        "reference": Target(os.environ["REFERENCE_URL"], run),
        "langgate": Target(os.environ["LANGGATE_URL"], run),
    }
    asyncio.run(run_all(targets, corpus))
    bad = compare(targets["reference"].log, targets["langgate"].log, "agents")
    problems = asyncio.run(discovery(os.environ["LANGGATE_URL"]))
    for p in problems:
        print(f"✗ discovery: {p}")
    return 1 if bad or problems else 0


if __name__ == "__main__":
    sys.exit(main())
