"""The Python client forms of the seed, as alice and bob, through a proxy
that asks langgate: the SDK (langgraph_sdk.get_client) and RemoteGraph
(langgraph.pregel.remote). Run by TestClientForms with the Python of
.cache/venv against each real server:

    LANGGRAPH_URL=http://127.0.0.1:8080 TOKEN_URL=http://127.0.0.1:43339/token \\
        .cache/venv/bin/python test/e2e/clients.py

Prints one "ok <check>" line per check and exits 1 on the first failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import urllib.parse
import urllib.request

import httpx
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client

BASE = os.environ["LANGGRAPH_URL"].rstrip("/")
TOKEN_URL = os.environ["TOKEN_URL"]
RUN = secrets.token_hex(6)


def token(sub: str) -> str:
    with urllib.request.urlopen(TOKEN_URL + "?" + urllib.parse.urlencode({"sub": sub})) as r:
        return json.load(r)["access_token"]


def ok(what: str) -> None:
    print("ok", what, flush=True)


def status(err: BaseException) -> int | None:
    if isinstance(err, httpx.HTTPStatusError):
        return err.response.status_code
    return getattr(err, "status_code", None)


async def expect_status(coro, want: int, what: str) -> None:
    try:
        got = await coro
    except Exception as e:
        if status(e) != want:
            raise AssertionError(f"{what}: want HTTP {want}, got {status(e)} ({e!r})") from e
        return
    raise AssertionError(f"{what}: want HTTP {want}, got success {str(got)[:200]}")


def human(text: str) -> dict:
    return {"messages": [{"role": "human", "content": text}]}


def last_text(state: dict) -> str:
    msg = state["messages"][-1]
    return msg["content"] if isinstance(msg, dict) else msg.content


async def main() -> None:
    tokens = {u: token(u) for u in ("alice", "bob")}
    headers = {u: {"Authorization": f"Bearer {t}"} for u, t in tokens.items()}
    alice = get_client(url=BASE, api_key=None, headers=headers["alice"])
    bob = get_client(url=BASE, api_key=None, headers=headers["bob"])

    # The SDK: alice's thread is hers, stamped, and invisible to bob.
    thread = await alice.threads.create(metadata={"e2e_run": RUN})
    assert thread["metadata"]["owner"] == "alice", thread
    result = await alice.runs.wait(thread["thread_id"], "agent", input=human("py-sdk"))
    assert last_text(result) == "echo: py-sdk", result
    ok("python sdk: alice runs the graph on her thread")
    await expect_status(bob.threads.get(thread["thread_id"]), 404, "bob reads alice's thread")
    found = await bob.threads.search(metadata={"e2e_run": RUN})
    assert found == [], found
    await expect_status(
        bob.runs.wait(thread["thread_id"], "agent", input=human("x")), 404, "bob runs on alice's thread"
    )
    ok("python sdk: bob neither sees nor runs alice's thread")
    await expect_status(get_client(url=BASE, api_key=None).threads.search(), 401, "no token")
    ok("python sdk: no token is a 401")
    await expect_status(alice.store.put_item(["bob", RUN], "k", {"v": 1}), 403, "alice writes bob's namespace")
    await alice.store.put_item(["alice", RUN], "k", {"v": 1})
    item = await alice.store.get_item(["alice", RUN], "k")
    assert item["value"] == {"v": 1}, item
    ok("python sdk: store namespaces")

    # RemoteGraph: the graph as a local runnable, over the same API.
    remote = RemoteGraph("agent", url=BASE, api_key=None, headers=headers["alice"])
    config = {"configurable": {"thread_id": thread["thread_id"]}}
    state = await remote.ainvoke(human("py-remote"), config=config)
    assert last_text(state) == "echo: py-remote", state
    ok("python RemoteGraph: alice invokes on her thread")
    intruder = RemoteGraph("agent", url=BASE, api_key=None, headers=headers["bob"])
    try:
        await intruder.ainvoke(human("x"), config=config)
    except Exception as e:  # noqa: BLE001
        assert status(e) == 404, repr(e)
    else:
        raise AssertionError("bob's RemoteGraph ran on alice's thread")
    ok("python RemoteGraph: bob cannot invoke on alice's thread")
    await alice.threads.delete(thread["thread_id"])


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as e:
        print("FAIL", e, flush=True)
        sys.exit(1)
