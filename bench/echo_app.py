"""The baseline of bench/bench_server.py: a bare Starlette JSON echo.

One route, ``POST /v1/orders``: ``await request.json()`` and return it as ``JSONResponse``. It
receives exactly the bytes the order benchmark sends (signature headers included, ignored), so
the difference between the two is what the sandbox does per order on top of parsing a JSON body
and answering with JSON: authentication, throttling, validation, the engine, events,
serialisation and FastAPI's routing.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PATH = "/v1/orders"


async def echo(request: Request) -> JSONResponse:
    data = await request.json()
    return JSONResponse(data)


app = Starlette(routes=[Route(PATH, echo, methods=["POST"])])
