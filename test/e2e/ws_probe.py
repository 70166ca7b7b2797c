"""Opens the streaming protocol's WebSocket (GET /threads/{id}/stream/events
with Upgrade: websocket) through a proxy and prints the handshake's outcome:
"101" when upgraded, else the HTTP status the proxy or server answered.

    .cache/venv/bin/python test/e2e/ws_probe.py ws://127.0.0.1:8080/threads/T/stream/events [TOKEN]
"""

from __future__ import annotations

import asyncio
import sys

import websockets
from websockets.exceptions import InvalidStatus


async def main(url: str, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10):
            print(101)
    except InvalidStatus as e:
        print(e.response.status_code)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
