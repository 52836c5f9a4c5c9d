"""The bare anchors: the least a server does for the same job, with Ferry's JWT check.

`python -m bench.bare http PORT SECRET`: FastAPI under uvicorn, one `POST /hello` that checks
the bearer token and answers a small JSON body (what any authenticated request costs).
`python -m bench.bare ws PORT SECRET`: a `websockets` server that checks the token in the
handshake and then holds the connection, reading and dropping frames (an idle phone's cost).
"""

from __future__ import annotations

import asyncio
import sys
from http import HTTPStatus
from typing import Any

from bench.adapter import check_bearer


def serve_http(port: int, secret: str) -> None:
    import uvicorn
    from fastapi import FastAPI, Header, HTTPException

    app = FastAPI()

    @app.post("/hello")
    async def hello(authorization: str | None = Header(default=None)) -> dict[str, Any]:
        try:
            user = check_bearer(authorization, secret)
        except ValueError as error:
            raise HTTPException(status_code=401, detail=str(error)) from error
        return {"hello": user}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def serve_ws(port: int, secret: str) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.http11 import Request, Response

    def authenticate(connection: ServerConnection, request: Request) -> Response | None:
        try:
            check_bearer(request.headers.get("Authorization"), secret)
        except ValueError:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    async def hold(connection: ServerConnection) -> None:
        async for _ in connection:
            pass

    async with serve(
        hold, "127.0.0.1", port, process_request=authenticate, compression=None
    ) as server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    kind, port, secret = sys.argv[1:] if argv is None else argv
    if kind == "http":
        serve_http(int(port), secret)
    else:
        asyncio.run(serve_ws(int(port), secret))
    return 0


if __name__ == "__main__":
    sys.exit(main())
