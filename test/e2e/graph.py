"""The graphs the e2e Python server serves, twins of graph.mjs.

"agent" is deterministic, with no LLM: it answers the last input message with
"echo: <its content>" and records in `user` the identity the server handed to
graph code (from langgate's x-langgate-user, via the adapter's authenticate()),
and in `role` the user's extra field of that name, if any.
"slow" takes three steps, 300 ms apart, so a client streaming its run sees the
first update long before the last.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    user: str
    role: str


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content)
    return ""


def echo(state: State, config: RunnableConfig) -> State:
    messages = state.get("messages") or []
    last = _text(messages[-1].content) if messages else ""
    configurable = config.get("configurable") or {}
    user = configurable.get("langgraph_auth_user_id", "")
    # An extra field of the user (langgate's user.fields), as graph code
    # reads it.
    try:
        role = configurable["langgraph_auth_user"]["role"]
    except (KeyError, TypeError):
        role = ""
    return {"messages": [AIMessage(content=f"echo: {last}")], "user": user, "role": role or ""}


graph = StateGraph(State).add_node("echo", echo).add_edge(START, "echo").add_edge("echo", END).compile()


class Steps(TypedDict, total=False):
    step: int


async def _step(n: int) -> Steps:
    await asyncio.sleep(0.3)
    return {"step": n}


async def one(_: Steps) -> Steps:
    return await _step(1)


async def two(_: Steps) -> Steps:
    return await _step(2)


async def three(_: Steps) -> Steps:
    return await _step(3)


slow = (
    StateGraph(Steps)
    .add_node("one", one)
    .add_node("two", two)
    .add_node("three", three)
    .add_edge(START, "one")
    .add_edge("one", "two")
    .add_edge("two", "three")
    .add_edge("three", END)
    .compile()
)
