"""What the LangGraph Python server's own router did with each request.

A custom HTTP app (langgraph.json "http.app") whose only content is an ASGI
middleware. The server applies a custom app's middleware around all of its
routes; when the response starts, Starlette has recorded in the scope which
route ran (absent, or the protected mount, when none did: the request was
refused before a handler) and the parameters it parsed.

With PATH_LOG set, one JSON line per request is appended to that file before
the response leaves: {probe, method, raw, route, params, status}. raw is the
request target exactly as the server received it. Used by
TestPathDifferential (paths_test.go).
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

FILE = os.environ.get("PATH_LOG", "")


def _route(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    if isinstance(route, str):
        # The server's own API routes record their template as a string.
        return route
    if route is None or type(route).__name__ == "Mount":
        return ""
    return getattr(route, "path", "") or ""


class RouteLog:
    """Appends the route that ran to PATH_LOG."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not FILE:
            return await self.app(scope, receive, send)

        async def logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                raw = scope.get("raw_path") or scope.get("path", "").encode()
                if scope.get("query_string"):
                    raw += b"?" + scope["query_string"]
                headers = dict(scope.get("headers") or [])
                route = _route(scope)
                line = {
                    "probe": headers.get(b"x-e2e-probe", b"").decode("latin-1"),
                    "method": scope.get("method", ""),
                    "raw": raw.decode("latin-1"),
                    "route": route,
                    "params": {k: str(v) for k, v in (scope.get("path_params") or {}).items()} if route else {},
                    "status": message["status"],
                }
                with open(FILE, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
            await send(message)

        await self.app(scope, receive, logged)


app = Starlette(middleware=[Middleware(RouteLog)])
