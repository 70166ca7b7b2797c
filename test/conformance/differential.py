"""LangGraph's own custom auth as the oracle for langgate.

The same scenario corpus runs against two servers:

  REFERENCE_URL  a LangGraph server with the seed's auth (seed_auth.py, or its
                 JS twin), reached directly: LangGraph deciding for itself;
  LANGGATE_URL   the same server with langgate's adapter, reached through a
                 proxy that asks langgate (examples/langgraph/langgate.yaml).

Every step records what a client observes (the HTTP status, and for a success
the ids it returned, metadata.owner, search and count results, store results,
run output), with the server's random ids replaced by the names the corpus gave
them. The two records must be identical, except for the steps listed in
differences.json with a justification (each must be langgate being stricter,
never looser); a listed step that no longer differs is an error too, so the
list stays true.

    REFERENCE_URL=... LANGGATE_URL=... TOKEN_URL=.../token SERVER=python \\
        .cache/venv/bin/python test/conformance/differential.py

Prints one line per step (= or ≠) and exits 1 on an unlisted difference.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
import urllib.parse
import urllib.request
from typing import Any

import httpx
from oracle import compare, run_all

TOKEN_URL = os.environ["TOKEN_URL"]
SERVER = os.environ.get("SERVER", "python")
USERS = ("alice", "bob", "carol")


def token(sub: str) -> str:
    with urllib.request.urlopen(TOKEN_URL + "?" + urllib.parse.urlencode({"sub": sub})) as r:
        return json.load(r)["access_token"]


class Target:
    """One server: its clients per user and the names of what they made."""

    def __init__(self, base: str, tokens: dict[str, str], run: str) -> None:
        self.base = base.rstrip("/")
        self.run = run
        self.http = {
            u: httpx.AsyncClient(base_url=self.base, headers={"Authorization": f"Bearer {t}"}, timeout=30)
            for u, t in tokens.items()
        }
        self.http["anonymous"] = httpx.AsyncClient(base_url=self.base, timeout=30)
        self.http["forger"] = httpx.AsyncClient(
            base_url=self.base, headers={"Authorization": "Bearer not.a.token"}, timeout=30
        )
        self.ids: dict[str, str] = {}  # name → server id
        self.log: list[tuple[str, Any]] = []

    def name_of(self, value: str) -> str:
        for name, v in self.ids.items():
            if v == value:
                return name
        return "?"

    async def call(
        self, user: str, method: str, path: str, body: Any = None, params: dict | None = None
    ) -> httpx.Response:
        for name, v in self.ids.items():
            path = path.replace("{" + name + "}", v)
        # An object this server never returned (its creation failed): a
        # well-formed id of nothing, so the step still runs on both.
        path = re.sub(r"\{[A-Za-z_]+\}", "00000000-0000-0000-0000-000000000000", path)
        return await self.http[user].request(method, path, json=body, params=params)

    def record(self, step: str, observation: Any) -> None:
        self.log.append((step, observation))

    async def close(self) -> None:
        for c in self.http.values():
            await c.aclose()


def owner(obj: Any) -> Any:
    return (obj.get("metadata") or {}).get("owner") if isinstance(obj, dict) else None


def last_message(output: Any) -> Any:
    if isinstance(output, dict) and output.get("messages"):
        m = output["messages"][-1]
        return m.get("content") if isinstance(m, dict) else None
    return None


async def observe(
    t: Target,
    step: str,
    user: str,
    method: str,
    path: str,
    body: Any = None,
    params: dict | None = None,
    keep: str | None = None,
    view=None,
) -> Any:
    """Runs one request and records its status and, on success, view(json)."""
    r = await t.call(user, method, path, body, params)
    obs: dict[str, Any] = {"status": r.status_code}
    data: Any = None
    if r.is_success and r.content and r.headers.get("content-type", "").startswith("application/json"):
        data = r.json()
        if keep:
            key = keep.split(":")[1]
            t.ids[keep.split(":")[0]] = data[key]
        if view is not None:
            obs["seen"] = view(t, data)
    t.record(step, obs)
    return data


def names(key: str):
    def view(t: Target, rows: Any) -> Any:
        return sorted(t.name_of(r[key]) for r in rows) if isinstance(rows, list) else rows

    return view


def mine(key: str):
    """Search results among the corpus's own objects (system assistants and
    other runs' data are left out: they differ in id between servers)."""

    def view(t: Target, rows: Any) -> Any:
        if not isinstance(rows, list):
            return rows
        return sorted(n for n in (t.name_of(r[key]) for r in rows) if n != "?")

    return view


def with_owner(t: Target, obj: Any) -> Any:
    return {"owner": owner(obj), "topic": (obj.get("metadata") or {}).get("topic")}


def human(text: str) -> dict:
    return {"messages": [{"role": "human", "content": text}]}


async def corpus(t: Target) -> None:
    run = t.run
    meta = lambda **kw: {"e2e_run": run, **kw}  # noqa: E731

    # Threads: create (a client's owner is overridden), read, search, count.
    for u in USERS:
        await observe(
            t,
            f"{u} creates a thread",
            u,
            "POST",
            "/threads",
            {"metadata": meta(topic=u, owner="spoof")},
            keep=f"T_{u}:thread_id",
            view=with_owner,
        )
    for u in USERS:
        for o in USERS:
            await observe(t, f"{u} reads {o}'s thread", u, "GET", f"/threads/{{T_{o}}}", view=with_owner)
        await observe(
            t,
            f"{u} searches threads",
            u,
            "POST",
            "/threads/search",
            {"metadata": {"e2e_run": run}, "limit": 100},
            view=names("thread_id"),
        )
        await observe(
            t, f"{u} counts threads", u, "POST", "/threads/count", {"metadata": {"e2e_run": run}}, view=lambda t, n: n
        )
    await observe(
        t, "bob updates alice's thread", "bob", "PATCH", "/threads/{T_alice}", {"metadata": {"topic": "bob's"}}
    )
    await observe(
        t,
        "alice updates her thread",
        "alice",
        "PATCH",
        "/threads/{T_alice}",
        {"metadata": {"topic": "updated", "owner": "bob"}},
        view=with_owner,
    )
    await observe(t, "bob copies alice's thread", "bob", "POST", "/threads/{T_alice}/copy")
    await observe(
        t,
        "alice copies her thread",
        "alice",
        "POST",
        "/threads/{T_alice}/copy",
        keep="T_alice_copy:thread_id",
        view=with_owner,
    )
    for u in ("alice", "bob"):
        await observe(
            t,
            f"{u} reads alice's state",
            u,
            "GET",
            "/threads/{T_alice}/state",
            view=lambda t, s: sorted(s.get("values") or {}),
        )
        await observe(
            t,
            f"{u} reads alice's history",
            u,
            "POST",
            "/threads/{T_alice}/history",
            {"limit": 5},
            view=lambda t, h: len(h),
        )

    await observe(t, "bob updates alice's state", "bob", "POST", "/threads/{T_alice}/state", {"values": {}})
    await observe(
        t,
        "alice updates her state",
        "alice",
        "POST",
        "/threads/{T_alice}/state",
        {"values": {"messages": [{"role": "human", "content": "set"}]}},
        view=lambda t, r: sorted(r),
    )

    # Runs: on one's own thread, on another's, stateless, streamed, listed.
    await observe(
        t,
        "alice runs on her thread",
        "alice",
        "POST",
        "/threads/{T_alice}/runs/wait",
        {"assistant_id": "agent", "input": human("hello")},
        view=lambda t, o: last_message(o),
    )
    await observe(
        t,
        "bob runs on alice's thread",
        "bob",
        "POST",
        "/threads/{T_alice}/runs/wait",
        {"assistant_id": "agent", "input": human("intrude")},
        view=lambda t, o: last_message(o),
    )
    await observe(
        t,
        "alice starts a background run",
        "alice",
        "POST",
        "/threads/{T_alice}/runs",
        {"assistant_id": "agent", "input": human("bg")},
        keep="R_alice:run_id",
        view=lambda t, r: r.get("status") is not None,
    )
    await observe(
        t,
        "alice joins her run",
        "alice",
        "GET",
        "/threads/{T_alice}/runs/{R_alice}/join",
        view=lambda t, o: last_message(o),
    )
    for u in ("alice", "bob"):
        await observe(t, f"{u} lists alice's runs", u, "GET", "/threads/{T_alice}/runs", view=lambda t, rs: len(rs))
        await observe(
            t,
            f"{u} reads alice's run",
            u,
            "GET",
            "/threads/{T_alice}/runs/{R_alice}",
            view=lambda t, r: r.get("status"),
        )
    await observe(
        t,
        "alice runs statelessly",
        "alice",
        "POST",
        "/runs/wait",
        {"assistant_id": "agent", "input": human("stateless")},
        view=lambda t, o: last_message(o),
    )
    r = await t.call(
        "alice",
        "POST",
        "/threads/{T_alice}/runs/stream",
        {"assistant_id": "agent", "input": human("streamed"), "stream_mode": "values"},
    )
    t.record("alice streams a run", {"status": r.status_code, "seen": "echo: streamed" in r.text})
    r = await t.call(
        "bob",
        "POST",
        "/threads/{T_alice}/runs/stream",
        {"assistant_id": "agent", "input": human("x"), "stream_mode": "values"},
    )
    t.record("bob streams a run on alice's thread", {"status": r.status_code, "leaks": "echo:" in r.text})

    # Assistants.
    await observe(
        t,
        "alice creates an assistant",
        "alice",
        "POST",
        "/assistants",
        {"graph_id": "agent", "metadata": meta(topic="asst"), "name": f"alice-{run}"},
        keep="A_alice:assistant_id",
        view=with_owner,
    )
    for u in ("alice", "bob"):
        await observe(t, f"{u} reads alice's assistant", u, "GET", "/assistants/{A_alice}", view=with_owner)
        await observe(
            t,
            f"{u} searches assistants",
            u,
            "POST",
            "/assistants/search",
            {"metadata": {"e2e_run": run}, "limit": 100},
            view=mine("assistant_id"),
        )
        await observe(
            t,
            f"{u} reads alice's assistant's graph",
            u,
            "GET",
            "/assistants/{A_alice}/graph",
            view=lambda t, g: sorted(g) if isinstance(g, dict) else g,
        )
    await observe(
        t,
        "bob runs alice's assistant on his thread",
        "bob",
        "POST",
        "/threads/{T_bob}/runs/wait",
        {"assistant_id": t.ids.get("A_alice", "00000000-0000-0000-0000-000000000000"), "input": human("borrow")},
        view=lambda t, o: last_message(o),
    )
    await observe(
        t, "bob updates alice's assistant", "bob", "PATCH", "/assistants/{A_alice}", {"metadata": {"topic": "bob"}}
    )
    await observe(t, "bob deletes alice's assistant", "bob", "DELETE", "/assistants/{A_alice}")

    # Crons.
    await observe(
        t,
        "alice schedules a cron on her thread",
        "alice",
        "POST",
        "/threads/{T_alice}/runs/crons",
        {"assistant_id": "agent", "schedule": "0 0 1 1 *", "input": human("cron")},
        keep="C_alice:cron_id",
        view=lambda t, c: t.name_of(c.get("thread_id", "")),
    )
    for u in ("alice", "bob"):
        await observe(t, f"{u} searches crons", u, "POST", "/runs/crons/search", {"limit": 100}, view=mine("cron_id"))
    await observe(t, "bob deletes alice's cron", "bob", "DELETE", "/runs/crons/{C_alice}")
    await observe(t, "alice deletes her cron", "alice", "DELETE", "/runs/crons/{C_alice}")

    # Store.
    await observe(
        t,
        "alice puts under her namespace",
        "alice",
        "PUT",
        "/store/items",
        {"namespace": ["alice", run], "key": "k", "value": {"v": 1}},
    )
    await observe(
        t,
        "alice puts under bob's namespace",
        "alice",
        "PUT",
        "/store/items",
        {"namespace": ["bob", run], "key": "k", "value": {"v": 1}},
    )
    for u in ("alice", "bob"):
        await observe(
            t,
            f"{u} gets alice's item",
            u,
            "GET",
            "/store/items",
            params={"namespace": f"alice.{run}", "key": "k"},
            view=lambda t, i: i.get("value"),
        )
        await observe(
            t,
            f"{u} searches alice's namespace",
            u,
            "POST",
            "/store/items/search",
            {"namespace_prefix": ["alice", run]},
            view=lambda t, r: sorted(i["key"] for i in r["items"]),
        )
        await observe(
            t,
            f"{u} lists namespaces under alice",
            u,
            "POST",
            "/store/namespaces",
            {"prefix": ["alice", run]},
            view=lambda t, r: r.get("namespaces"),
        )
    await observe(t, "alice lists namespaces with no prefix", "alice", "POST", "/store/namespaces", {})
    await observe(
        t, "bob deletes alice's item", "bob", "DELETE", "/store/items", {"namespace": ["alice", run], "key": "k"}
    )
    await observe(
        t, "alice deletes her item", "alice", "DELETE", "/store/items", {"namespace": ["alice", run], "key": "k"}
    )

    # Deletes and prunes.
    if SERVER == "python":
        await observe(
            t,
            "bob prunes alice's copy",
            "bob",
            "POST",
            "/threads/prune",
            {"thread_ids": [t.ids.get("T_alice_copy", "00000000-0000-0000-0000-000000000000")]},
            view=lambda t, r: r.get("pruned_count"),
        )
        await observe(
            t,
            "alice prunes her copy",
            "alice",
            "POST",
            "/threads/prune",
            {"thread_ids": [t.ids.get("T_alice_copy", "00000000-0000-0000-0000-000000000000")]},
            view=lambda t, r: r.get("pruned_count"),
        )
    await observe(t, "alice deletes bob's thread", "alice", "DELETE", "/threads/{T_bob}")
    await observe(t, "bob deletes his thread", "bob", "DELETE", "/threads/{T_bob}")
    await observe(t, "bob reads his deleted thread", "bob", "GET", "/threads/{T_bob}")

    # No credential, a bad one.
    await observe(t, "no token", "anonymous", "POST", "/threads/search", {})
    await observe(t, "a malformed token", "forger", "POST", "/threads/search", {})


def main() -> int:
    tokens = {u: token(u) for u in USERS}
    run = secrets.token_hex(6)
    targets = {
        "reference": Target(os.environ["REFERENCE_URL"], tokens, run),
        "langgate": Target(os.environ["LANGGATE_URL"], tokens, run),
    }
    asyncio.run(run_all(targets, corpus))
    return 1 if compare(targets["reference"].log, targets["langgate"].log, SERVER) else 0


if __name__ == "__main__":
    sys.exit(main())
