"""A trivial ASGI app that refuses everything with a small JSON 401: the floor for
tokenward's refusal path on the same server stack (granian, same settings).

It reads the request body (as tokenward must, to judge it) and answers a constant body
of the same size and shape as tokenward's ``proof_required`` refusal, with the same
headers. No challenge is minted, nothing is logged.

    python bench/refuse401.py --port 8091
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import orjson

_BODY = orjson.dumps(
    {
        "error": {
            "type": "tokenward",
            "code": "proof_required",
            "message": "This endpoint needs a fresh proof for every request; solve the "
            "attached challenge and send it in the Tokenward-Proof header.",
            "challenge": {
                "v": 1,
                "challenge": "A" * 110,  # a real challenge token is 110 base64url chars
                "difficulty": 2,
                "expires_at": 1_800_000_000,
            },
        }
    }
)
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"tokenward-request-id", b"000000000000000000000000"),
    (b"tokenward-decision", b"challenge"),
    (b"www-authenticate", b'Tokenward realm="tokenward", version="1"'),
]


async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 401, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def create_app() -> Any:
    return refuse


def main() -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    Granian(
        "refuse401:create_app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=1,
        loop=Loops.auto,
        websockets=False,
        log_level=LogLevels("warning"),
        log_access=False,
        backlog=2048,
        http=HTTPModes.http1,  # as tokenward.server.serve
        http1_settings=HTTP1Settings(header_read_timeout=10_000),
        working_dir=Path(here),
    ).serve()


if __name__ == "__main__":
    main()
