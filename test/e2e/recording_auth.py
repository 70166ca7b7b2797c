"""The shipped adapter (examples/langgraph/upstream/auth.py) with a record
of every event the LangGraph Python server hands it.

A test-only wrapper, loaded from langgraph.values.python.json: authenticate
and the handler are the adapter's own; around the handler, one JSON line
per event is appended to VALUE_LOG: {probe, event, value, accepted}, where
value is what the server handed the handler (before the adapter looked at
it; tuples as lists, UUIDs and other objects as strings) and accepted says
whether the adapter let the event run. Used by TestParserDifferential
(values_test.go).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import pathlib
from typing import Any

from langgraph_sdk import Auth

_spec = importlib.util.spec_from_file_location(
    "langgate_auth", pathlib.Path(__file__).parent.parent.parent / "examples/langgraph/upstream/auth.py"
)
adapter = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(adapter)

FILE = os.environ.get("VALUE_LOG", "")
PROBE = "e2e_probe"

auth = Auth()


@auth.authenticate
async def authenticate(method: str, path: str, headers: dict, scope: Any = None) -> dict[str, Any]:
    user = await adapter.authenticate(method=method, path=path, headers=headers, scope=scope)
    probe = headers.get(b"x-e2e-probe", b"").decode("latin-1")
    return {**user, PROBE: probe} if isinstance(user, dict) else user


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


@auth.on
async def enforce(ctx: Auth.types.AuthContext, value: Any) -> Any:
    seen = _plain(copy.deepcopy(value))
    accepted = False
    try:
        result = await adapter.enforce(ctx=ctx, value=value)
        accepted = True
        return result
    finally:
        if FILE:
            line = {
                "probe": adapter._user_field(ctx.user, PROBE) or "",
                "event": f"{ctx.resource}:{ctx.action}",
                "value": seen,
                "accepted": accepted,
            }
            with open(FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
