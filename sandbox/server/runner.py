"""Run the sandbox app on uvicorn inside the current event loop (tests, demo, benchmarks).

``async with serve(state) as url:`` binds 127.0.0.1 on a free port, waits until the server
accepts connections, and on exit stops it and everything it started (market loop, hub).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

import uvicorn

from .app import create_app
from .state import SandboxState


def tune_gc() -> None:
    """Fewer, cheaper collections for a long-running server: move everything alive at start-up
    out of the collector's sight and collect the young generation less often (the order path
    allocates many short-lived objects; the default threshold of 700 collects every few
    requests)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def uvicorn_config(
    state: SandboxState, host: str, port: int, *, background: bool = True
) -> uvicorn.Config:
    """uvicorn settings we run with: httptools, websockets, uvloop where available."""
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - Windows
        loop = "asyncio"
    return uvicorn.Config(
        create_app(state, background=background),
        host=host,
        port=port,
        loop=loop,
        http="httptools",
        ws="websockets-sansio",
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        ws_per_message_deflate=False,  # 2-3x the CPU per delivered message (measured)
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )


@contextlib.asynccontextmanager
async def serve(
    state: SandboxState, host: str = "127.0.0.1", port: int = 0, *, background: bool = True
) -> AsyncIterator[str]:
    """Serve ``state`` until the block exits; yields the base URL (``http://127.0.0.1:PORT``)."""
    server = uvicorn.Server(uvicorn_config(state, host, port, background=background))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises the startup error
                raise RuntimeError("the sandbox server stopped during startup")
            await asyncio.sleep(0.01)
        sock = server.servers[0].sockets[0]
        bound_port = sock.getsockname()[1]
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
