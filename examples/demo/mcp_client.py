"""An MCP client of the demo: the official MCP Python SDK (pinned in
test/requirements.txt) over Streamable HTTP, with a bearer token.

    .cache/venv/bin/python examples/demo/mcp_client.py URL TOKEN [TOOL]

Lists the tools the token's user sees, then calls TOOL with a message and
prints the graph's answer, or the JSON-RPC error that refused the call.
"""

from __future__ import annotations

import asyncio
import re
import sys

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, token: str, tool: str | None) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        # mode="legacy": the server speaks the 2025 protocol (initialize).
        async with Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None) as client:
            tools = (await client.list_tools()).tools
            print("tools:", sorted(t.name for t in tools))
            if tool is None:
                return
            try:
                result = await client.call_tool(tool, {"messages": [{"role": "human", "content": "hello from MCP"}]})
            except MCPError as err:
                print(f"{tool}: refused ({err.code} {err.message})")
                return
            text = "".join(getattr(c, "text", "") for c in result.content)
            answer = re.search(r"echo: [^'\"]*", text)
            print(f"{tool}: {answer.group(0) if answer else text}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
