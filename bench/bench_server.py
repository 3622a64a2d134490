"""Order placement over HTTP against a bare Starlette JSON echo, and WebSocket book fan-out.

    .venv/bin/python bench/bench_server.py [--duration S] [--conns 1,16,64] [--threads T]
                                           [--repeat R] [--ws-subscribers N] [--ws-procs P]
                                           [--ws-rate R] [--ws-seconds S] [--ws-grace S]
                                           [--no-http] [--no-ws] [--quick]
                                           [--profile [--profile-requests N]]

Servers run in their own processes, pinned to CPU 0 (``os.sched_setaffinity``); this process,
wrk and the WebSocket clients are pinned to CPU 1. Everything is on 127.0.0.1. The "other"
figures are the share of CPU 0 that other processes used meanwhile (noise on a shared machine).

HTTP. Two servers on the same uvicorn options (the sandbox's ``runner.uvicorn_config``: uvloop,
httptools, one worker): the sandbox (simulation off, throttle limits of 10**9, a 300 s auth
window, a bench account with 1e9 USDT) and ``bench/echo_app.py``, a bare Starlette route that
does ``await request.json()`` and returns ``JSONResponse``. Both get the same raw requests:
``POST /v1/orders`` with an IOC LIMIT BUY of 0.002 BTC-PERP (the smallest multiple of the 0.001
lot that clears the 100 USDT minimum notional) at 59,000 (mark 60,000, band 5%), a unique
``client_order_id`` and its own HMAC signature. On the empty book each order is authenticated,
throttled, validated, margin-checked, matched against nothing and expires: a full round trip
through the order path that leaves no resting state. A replayed signature would be refused, so
the requests are generated and signed right before each run, written to a file, and replayed by
wrk (``bench/wrk_orders.lua``), every request once; each wrk thread gets its own slice. The pool
is sized from the echo's rate at the same concurrency (x1.5); a run that would have needed more
is repeated with a larger pool. The echo replays a fixed pool of the same requests in a loop.
Per concurrency (1 = sequential keep-alive, then 16 and 64 connections; ``--repeat`` runs each,
echo and orders alternating, the best kept): req/s, p50/p99 latency (wrk), non-2xx responses
(a run with more than 0.1% is flagged), the server's CPU per request (``/proc/<pid>/stat``
utime+stime over the run / requests) and the ratio orders/echo.

WebSocket. A fresh sandbox; ``--ws-procs`` processes hold ``--ws-subscribers`` clients in all
(the ``websockets`` sans-I/O protocol on asyncio transports, no compression), each subscribed
to ``book:BTC-PERP``, recording the arrival time (CLOCK_MONOTONIC, shared by all processes) of
every diff by its price level. A driver (here, one keep-alive connection) sends ``--ws-rate``
ops/s: POST_ONLY BUY orders at distinct prices (each opens one level: one diff), and once 50
are open it alternates with cancelling the oldest by client id (each empties one level: one
diff), recording the send time per (price, placed/removed). Latency = diff received - order
sent, so it includes the HTTP order round trip, which is also reported alone. Delivered
messages/s = diffs received by all clients / (last arrival - first send). The server's CPU per
delivery gives its ceiling (deliveries/s on one full core); the clients' CPU shows whether the
load side kept up.

``--profile`` runs the order path in-process (direct ASGI calls on the sandbox app, no sockets)
and prints the CPU per request of the sandbox and the echo app, the order path's stages timed
inside real requests (auth, throttle, validation, conversions, engine, events, serialisation;
the framework is the rest), the garbage collector's share, then the top functions (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import inspect
import json
import math
import multiprocessing
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from perpbot.signing import signed_headers

HOST = "127.0.0.1"
SYMBOL = "BTC-PERP"
CHANNEL = f"book:{SYMBOL}"
ORDER_PATH = "/v1/orders"
IOC_PRICE = "59000"  # mark 60,000 on an empty book without simulation; the band is +-5%
ORDER_QTY = "0.002"  # 0.001 BTC lots; 0.002 x 59,000 = 118 >= the 100 USDT minimum notional
TICKS_PER_UNIT = 10  # BTC-PERP tick 0.1
WS_FIRST_TICK = 599_999  # 59,999.9: the driver's resting bids go down from here
WS_LOWEST_TICK = 570_100  # stay inside the band (57,000)
WS_WINDOW = 50  # open orders kept by the driver (the engine allows 200 per account and market)

HTTP_ACCOUNT = ("bench-http-key", "bench-http-secret-0123456789", "bench-http")
WS_ACCOUNT = ("bench-ws-key", "bench-ws-secret-0123456789", "bench-ws")
DEPOSIT = "1000000000"
HUGE_LIMIT = 10**9
AUTH_WINDOW_MS = 300_000

SERVER_CPU = 0
LOAD_CPU = 1
READY_TIMEOUT_S = 30.0
NON2XX_FLAG = 0.001  # flag a run with more than 0.1% non-2xx responses
ECHO_POOL = 20_000  # requests per wrk thread for the echo (replayed in a loop)
WARMUP_REQUESTS = 300
WRK_SCRIPT = Path(__file__).resolve().with_name("wrk_orders.lua")
REPO_ROOT = Path(__file__).resolve().parents[1]

# Reference figures (../shared/reference/performance-anchors.md, 2 vCPU, same method).
ANCHOR_HTTP = (
    "anchors (performance-anchors.md, same method): Starlette request.json() -> JSONResponse "
    "~24,000 req/s @16, ~26,000 @64, p50 0.64 ms @16, ~39 µs CPU/req; FastAPI with a pydantic "
    "body and response model ~10,600 req/s (0.44x of that echo), ~94 µs CPU/req"
)
ANCHOR_WS = (
    "anchors (performance-anchors.md): websockets.broadcast() ~0.5 M frames/s, Starlette "
    "send_text loop ~0.3 M/s from one core (sustainable with low latency: 25-40% of that); "
    "p99 delivery ~0.6 ms at 100 clients, ~6 ms at 1,000"
)


class ServerStartError(RuntimeError):
    """A server process did not come up (the message has the end of its log)."""


# -- affinity ----------------------------------------------------------------------------------
def cpus_available() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def cpu_busy_seconds(cpu: int | None) -> float:
    """Non-idle time of ``cpu`` (all processes, /proc/stat); NaN if unknown."""
    if cpu is None:
        return math.nan
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{cpu} "):
                ticks = [int(x) for x in line.split()[1:]]
                busy = sum(ticks[:8]) - ticks[3] - ticks[4]  # minus idle and iowait
                return busy / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass
    return math.nan


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of process ``pid`` so far (/proc/<pid>/stat); NaN if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(cpu: int | None, pid: int = 0) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, {cpu})


# -- the server processes --------------------------------------------------------------------
def bench_settings() -> Any:
    """Sandbox settings of the benchmark: no simulation, no effective throttling."""
    from sandbox.config import AccountSeed, SandboxSettings

    limits = {k: HUGE_LIMIT for k in ("weight_limit", "key_weight_limit")}
    limits |= {k: HUGE_LIMIT for k in ("order_limit", "order_limit_long")}
    accounts = tuple(
        AccountSeed(key, secret, DEPOSIT, account)
        for key, secret, account in (HTTP_ACCOUNT, WS_ACCOUNT)
    )
    return SandboxSettings(
        host=HOST,
        port=0,
        simulate=False,
        accounts=accounts,
        limits=limits,
        auth_window_ms=AUTH_WINDOW_MS,
    )


def echo_config(host: str, port: int) -> Any:
    """uvicorn settings of the echo: the sandbox's own ``uvicorn_config`` with the app swapped,
    so the two servers cannot drift apart in their options."""
    from bench.echo_app import app
    from sandbox.config import SandboxSettings
    from sandbox.server.runner import uvicorn_config
    from sandbox.server.state import SandboxState

    config = uvicorn_config(
        SandboxState(SandboxSettings(simulate=False)), host, port, background=False
    )
    config.app = app
    return config


@contextlib.asynccontextmanager
async def _serve_config(config: Any) -> AsyncIterator[str]:
    """``sandbox.server.runner.serve`` for a ready-made uvicorn config."""
    import uvicorn

    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped during startup")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{config.host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop


def child_main(kind: str, cpu: int | None) -> int:
    """A server process: serve until SIGTERM/SIGINT; print ``READY <url>`` once it listens."""
    pin(cpu)

    parent = os.getppid()

    async def orphaned(stop: asyncio.Event) -> None:
        while os.getppid() == parent:  # the benchmark was killed: do not outlive it
            await asyncio.sleep(0.5)
        stop.set()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        watch = asyncio.create_task(orphaned(stop))
        from sandbox.server.runner import tune_gc

        if kind == "sandbox":
            from sandbox.server.runner import serve
            from sandbox.server.state import SandboxState

            cm = serve(SandboxState(bench_settings()), HOST, 0)
        else:
            cm = _serve_config(echo_config(HOST, 0))
        async with cm as url:
            tune_gc()  # as perpbot-sandbox does once it has started (both servers get it)
            print(f"READY {url}", flush=True)
            await stop.wait()
        watch.cancel()

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run())
    return 0


class ServerProc:
    """One server in a subprocess (this script with ``--child``), pinned to ``cpu``."""

    def __init__(self, kind: str, cpu: int | None, logdir: Path) -> None:
        self.kind = kind
        self.cpu = cpu
        self.log_path = logdir / f"{kind}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", self.kind]
        if self.cpu is not None:
            cmd += ["--cpu", str(self.cpu)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT
            )
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            text = self.log_path.read_text(errors="replace")
            match = re.search(r"^READY (http://\S+)$", text, re.M)
            if match:
                self.url = match.group(1)
                self.port = int(self.url.rsplit(":", 1)[1])
                break
            if rc is not None:
                raise ServerStartError(f"{self.kind} server exited with {rc}:\n{text[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.kind} server not ready in {timeout:.0f} s:\n{text[-2000:]}"
                )
            time.sleep(0.05)
        self._check_answers()

    def _check_answers(self) -> None:
        try:
            if self.kind == "sandbox":
                with urllib.request.urlopen(self.url + "/v1/time", timeout=5) as r:
                    ok = r.status == 200 and "server_ts" in json.loads(r.read())
            else:
                req = urllib.request.Request(
                    self.url + ORDER_PATH,
                    data=b'{"ping":1}',
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=5) as r:
                    ok = r.status == 200 and json.loads(r.read()) == {"ping": 1}
        except OSError as exc:
            self.stop()
            raise ServerStartError(f"{self.kind} server does not answer: {exc}") from exc
        if not ok:
            self.stop()
            raise ServerStartError(f"{self.kind} server answered unexpectedly")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def affinity(self) -> set[int] | None:
        if not hasattr(os, "sched_getaffinity"):
            return None
        try:
            return set(os.sched_getaffinity(self.pid))
        except OSError:
            return None

    def cpu_seconds(self) -> float:
        """user + system CPU time of the server process so far (all its threads)."""
        return process_cpu_seconds(self.pid)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> ServerProc:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- requests ----------------------------------------------------------------------------------
def order_body(client_order_id: str, price: str = IOC_PRICE, tif: str = "IOC") -> bytes:
    return orjson.dumps(
        {
            "market": SYMBOL,
            "side": "BUY",
            "type": "LIMIT",
            "qty": ORDER_QTY,
            "price": price,
            "tif": tif,
            "client_order_id": client_order_id,
        }
    )


def raw_request(
    method: str, path: str, body: bytes, host: str, account: tuple[str, str, str], ts_ms: int
) -> bytes:
    """One signed HTTP/1.1 keep-alive request, byte for byte."""
    key, secret, _ = account
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [
        f"{k}: {v}" for k, v in signed_headers(key, secret, method, path, body, ts_ms).items()
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def order_requests(prefix: str, n: int, host: str) -> Iterator[bytes]:
    """``n`` uniquely signed IOC order requests (client ids ``<prefix>-<i>``)."""
    ts = int(time.time() * 1000)
    for i in range(n):
        body = order_body(f"{prefix}-{i}")
        yield raw_request("POST", ORDER_PATH, body, host, HTTP_ACCOUNT, ts)


def write_pool(path_prefix: Path, threads: int, per_thread: int, prefix: str, host: str) -> int:
    """Files ``<path_prefix>.1`` .. ``.<threads>`` of ``per_thread`` requests each."""
    for k in range(1, threads + 1):
        with open(f"{path_prefix}.{k}", "wb") as f:
            for raw in order_requests(f"{prefix}t{k}", per_thread, host):
                f.write(b"%d\n" % len(raw))
                f.write(raw)
    return threads * per_thread


class RawHttp:
    """A minimal blocking HTTP/1.1 keep-alive client: send bytes, read one response."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def roundtrip(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv()
        head, rest = buf[:end], buf[end + 4 :]
        status = int(head[9:12])
        match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
        if match is None:
            raise RuntimeError(f"response without content-length: {head[:200]!r}")
        length = int(match.group(1))
        while len(rest) < length:
            rest += self._recv()
        self.buf = rest[length:]
        return status, rest[:length]

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


def warm_up(server: ServerProc, n: int) -> None:
    """A few sequential requests, so the timed runs do not pay for first-call costs."""
    http = RawHttp(HOST, server.port)
    try:
        for raw in order_requests(f"warm{time.monotonic_ns()}", n, f"{HOST}:{server.port}"):
            status, body = http.roundtrip(raw)
            if status != 200:
                raise RuntimeError(
                    f"warm-up request to {server.kind} failed: {status} {body[:300]!r}"
                )
    finally:
        http.close()


# -- wrk ---------------------------------------------------------------------------------------
@dataclass
class WrkRun:
    app: str
    conns: int
    threads: int
    seconds: float
    requests: int
    non2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU per request
    pool: int
    overflow: int
    other_load: float  # share of the server's CPU busy with other processes during the run
    attempts: int = 1
    all_rps: list[float] = field(default_factory=list)
    flagged_runs: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def flagged(self) -> bool:
        bad = self.non2xx + self.socket_errors
        return self.overflow > 0 or bad > NON2XX_FLAG * max(1, self.requests)


def run_wrk(
    wrk: str,
    server: ServerProc,
    app: str,
    conns: int,
    threads: int,
    duration: int,
    pool_prefix: Path,
    wrap: bool,
    server_cpu: int | None,
) -> WrkRun:
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{conns}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(WRK_SCRIPT),
        server.url + ORDER_PATH,
        "--",
        str(pool_prefix),
        "1" if wrap else "0",
    ]
    cpu0, busy0, w0 = server.cpu_seconds(), cpu_busy_seconds(server_cpu), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, check=False)
    cpu1, busy1, w1 = server.cpu_seconds(), cpu_busy_seconds(server_cpu), time.monotonic()
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    r = json.loads(line.removeprefix("WRKJSON "))
    requests = int(r["requests"])
    return WrkRun(
        app=app,
        conns=conns,
        threads=threads,
        seconds=r["duration_us"] / 1e6,
        requests=requests,
        non2xx=int(r["status"]),
        socket_errors=int(r["connect"] + r["read"] + r["write"] + r["timeout"]),
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        cpu_us=(cpu1 - cpu0) / requests * 1e6 if requests else math.nan,
        pool=int(r["pool"]),
        overflow=int(r["overflow"]),
        other_load=max(0.0, (busy1 - busy0) - (cpu1 - cpu0)) / (w1 - w0),
    )


def http_phase(
    args: argparse.Namespace, wrk: str, tmp: Path, cpus: tuple[int | None, int | None]
) -> list[tuple[WrkRun, WrkRun]]:
    """Per concurrency: ``--repeat`` x (echo run, orders run); the best run of each is kept."""
    server_cpu, _ = cpus
    rows: list[tuple[WrkRun, WrkRun]] = []
    echo = ServerProc("echo", server_cpu, tmp)
    sandbox = ServerProc("sandbox", server_cpu, tmp)
    try:
        echo.start()
        sandbox.start()
        print(
            f"servers: sandbox pid {sandbox.pid} (CPUs {_fmt_cpus(sandbox.affinity())}), "
            f"echo pid {echo.pid} (CPUs {_fmt_cpus(echo.affinity())}); "
            f"wrk on CPUs {_fmt_cpus(cpus_available())}"
        )
        warm_up(echo, WARMUP_REQUESTS)
        warm_up(sandbox, WARMUP_REQUESTS)
        max_threads = max(min(args.threads, c) for c in args.conns)
        echo_prefix = tmp / "echo"
        write_pool(echo_prefix, max_threads, args.echo_pool, "echo", f"{HOST}:{echo.port}")
        for conns in args.conns:
            threads = min(args.threads, conns)
            runs: dict[str, list[WrkRun]] = {"echo": [], "orders": []}
            for _ in range(args.repeat):
                e = run_wrk(
                    wrk, echo, "echo", conns, threads, args.duration, echo_prefix, True, server_cpu
                )
                runs["echo"].append(e)
                runs["orders"].append(
                    _orders_run(args, wrk, sandbox, conns, threads, e.rps, tmp, server_cpu)
                )
            best = [max(runs[app], key=lambda r: r.rps) for app in ("echo", "orders")]
            for app, run in zip(("echo", "orders"), best, strict=True):
                run.all_rps = [r.rps for r in runs[app]]
                run.flagged_runs = sum(r.flagged for r in runs[app])
            rows.append((best[0], best[1]))
            print(f"  {conns:>3} conns: echo {best[0].rps:,.0f}, orders {best[1].rps:,.0f} req/s")
    finally:
        sandbox.stop()
        echo.stop()
    return rows


def _orders_run(
    args: argparse.Namespace,
    wrk: str,
    sandbox: ServerProc,
    conns: int,
    threads: int,
    echo_rps: float,
    tmp: Path,
    server_cpu: int | None,
) -> WrkRun:
    """One orders run with a fresh pool (1.5x what the echo's rate would need; bigger and once
    more if a thread ran out)."""
    per_thread = math.ceil(echo_rps * args.duration * 1.5 / threads) + 1000
    for attempt in range(1, 4):
        tag = f"o{time.monotonic_ns()}"
        prefix = tmp / tag
        write_pool(prefix, threads, per_thread, tag, f"{HOST}:{sandbox.port}")
        try:
            run = run_wrk(
                wrk, sandbox, "orders", conns, threads, args.duration, prefix, False, server_cpu
            )
        finally:
            for k in range(1, threads + 1):
                Path(f"{prefix}.{k}").unlink(missing_ok=True)
        run.attempts = attempt
        if run.overflow == 0:
            break
        per_thread *= 3
    return run


# -- WebSocket fan-out -------------------------------------------------------------------------
def ws_client_proc(url: str, n: int, conn: Connection, max_seconds: float) -> None:
    """A process holding ``n`` subscribers; talks to the parent over ``conn`` (see ws_phase).
    Ctrl+C is left to the parent, which stops it through ``conn`` or terminates it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_ws_clients(url, n, conn, max_seconds))
    finally:
        conn.close()


class _Subscriber(asyncio.Protocol):
    """One WebSocket subscriber: the ``websockets`` sans-I/O client protocol on an asyncio
    transport (handshake, framing, pings and close by the library; no compression). The
    library's asyncio client costs about three times more CPU per message, which on two CPUs
    would make the clients, not the server, the bottleneck."""

    def __init__(self, url: str, shared: _Subscribers) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.proto = ClientProtocol(parse_uri(url), max_size=None)
        self.shared = shared
        self.transport: asyncio.Transport | None = None
        self.last_seq = -1
        self.subscribed = False
        self.partial: list[bytes] = []
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        self.proto.send_request(self.proto.connect())
        self.flush()

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in self.proto.data_to_send():
            if chunk:
                transport.write(chunk)
            else:  # the protocol asks for the connection to be closed
                transport.close()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        t = time.monotonic_ns()
        proto = self.proto
        proto.receive_data(data)
        for event in proto.events_received():
            if isinstance(event, Response):
                if proto.handshake_exc is None:
                    proto.send_text(self.shared.subscribe)
            elif isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.CONT):
                self.partial.append(bytes(event.data))
                if event.fin:
                    payload = b"".join(self.partial)
                    self.partial.clear()
                    self.shared.message(self, payload, t)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.done.done():
            self.done.set_result(None)
        self.shared.lost(self)


class _Subscribers:
    """What the subscribers of one client process share: the arrival records and counters."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.subscribe = orjson.dumps({"op": "subscribe", "channels": [CHANNEL]})
        self.records: list[tuple[str, bool, int]] = []
        self.counts = {"subscribed": 0, "failed": 0, "dropped": 0, "gaps": 0, "updates": 0}
        self.close_codes: Counter[int | None] = Counter()
        self.all_subscribed = asyncio.Event()
        self.stopping = False

    def settled(self) -> None:
        if self.counts["subscribed"] + self.counts["failed"] >= self.n:
            self.all_subscribed.set()

    def message(self, client: _Subscriber, payload: bytes, t: int) -> None:
        msg = orjson.loads(payload)
        if msg.get("channel") != CHANNEL:
            return
        seq = msg["seq"]
        if msg["type"] == "update":
            if seq != client.last_seq + 1:
                self.counts["gaps"] += 1
            self.counts["updates"] += 1
            data = msg["data"]
            append = self.records.append
            for price, qty in data["bids"]:
                append((price, qty == "0", t))
            for price, qty in data["asks"]:
                append((price, qty == "0", t))
        elif msg["type"] == "snapshot" and not client.subscribed:
            client.subscribed = True
            self.counts["subscribed"] += 1
            self.settled()
        client.last_seq = seq

    def lost(self, client: _Subscriber) -> None:
        if self.stopping:
            return
        if not client.subscribed:
            self.counts["failed"] += 1
            self.settled()
            return
        self.counts["dropped"] += 1
        rcvd = client.proto.close_rcvd
        self.close_codes[rcvd.code if rcvd is not None else None] += 1


async def _ws_clients(url: str, n: int, conn: Connection, max_seconds: float) -> None:
    from websockets.uri import parse_uri

    loop = asyncio.get_running_loop()
    uri = parse_uri(url)
    shared = _Subscribers(n)
    clients: list[_Subscriber] = []
    limit = asyncio.Semaphore(50)

    async def open_one() -> None:
        async with limit:
            try:
                _, client = await loop.create_connection(
                    lambda: _Subscriber(url, shared), uri.host, uri.port
                )
                clients.append(client)
            except OSError:
                shared.counts["failed"] += 1
                shared.settled()

    cpu0 = time.process_time()
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)
    try:
        async with asyncio.timeout(max_seconds):
            await asyncio.gather(*(open_one() for _ in range(n)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(READY_TIMEOUT_S):
                    await shared.all_subscribed.wait()
            conn.send(
                {"subscribed": shared.counts["subscribed"], "failed": shared.counts["failed"]}
            )
            await stop.wait()
            conn.recv()  # "stop"
    except (TimeoutError, EOFError):  # EOFError: the parent is gone
        pass
    finally:
        loop.remove_reader(conn.fileno())
        os.set_blocking(conn.fileno(), True)  # the loop made it non-blocking; results are big
        shared.stopping = True
        from websockets.protocol import State

        for client in clients:
            if client.transport is not None and client.proto.state is State.OPEN:
                client.proto.send_close(1000)
                client.flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.gather(*(c.done for c in clients))
        for client in clients:
            if client.transport is not None:
                client.transport.abort()
    with contextlib.suppress(OSError):
        _send_results(conn, shared, cpu0)


def _send_results(conn: Connection, shared: _Subscribers, cpu0: float) -> None:
    conn.send(
        {
            "records": shared.records,
            **shared.counts,
            "close_codes": dict(shared.close_codes),
            "cpu_s": time.process_time() - cpu0,
        }
    )


@dataclass
class WsResult:
    subscribers: int
    procs: int
    rate: float
    ops: int
    places: int
    cancels: int
    http_failures: int
    first_error: str
    subscribed: int
    failed: int
    dropped: int
    close_codes: dict[Any, int]
    gaps: int
    expected: int
    delivered: int
    span_s: float
    latency_ms: dict[str, float]
    rtt_ms: dict[str, float]
    server_cpu_s: float
    other_cpu_s: float  # other processes on the server's CPU
    client_cpu_s: float  # all client processes together
    drive_s: float

    @property
    def msgs_per_s(self) -> float:
        return self.delivered / self.span_s if self.span_s > 0 else 0.0


def _price_str(ticks: int) -> str:
    whole, frac = divmod(ticks, TICKS_PER_UNIT)
    return f"{whole}.{frac}" if frac else str(whole)


def _percentiles(values: list[int], scale: float) -> dict[str, float]:
    if not values:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    values.sort()

    def pick(q: float) -> float:
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))] / scale

    return {"p50": pick(0.50), "p99": pick(0.99), "max": values[-1] / scale}


def drive(port: int, rate: float, seconds: float) -> dict[str, Any]:
    """Place and cancel resting orders at ``rate`` ops/s; each op changes exactly one level."""
    host = f"{HOST}:{port}"
    http = RawHttp(HOST, port)
    n_ops = max(1, round(rate * seconds))
    if n_ops // 2 + WS_WINDOW > WS_FIRST_TICK - WS_LOWEST_TICK:
        raise SystemExit("--ws-rate x --ws-seconds needs more price levels than the band holds")
    sends: dict[tuple[int, bool], int] = {}
    rtts: list[int] = []
    open_orders: deque[tuple[str, int]] = deque()
    tick = WS_FIRST_TICK
    failures = places = cancels = 0
    first_error = ""
    interval = 1e9 / rate
    t0 = time.monotonic_ns()
    try:
        for k in range(n_ops):
            target = t0 + k * interval
            while (wait := target - time.monotonic_ns()) > 0:
                time.sleep(wait / 1e9)
            ts_ms = int(time.time() * 1000)
            if len(open_orders) >= WS_WINDOW:
                cid, ticks = open_orders.popleft()
                path = f"{ORDER_PATH}/by-client-id/{cid}"
                raw = raw_request("DELETE", path, b"", host, WS_ACCOUNT, ts_ms)
                key = (ticks, True)
                cancels += 1
            else:
                cid, ticks = f"ws{t0}-{k}", tick
                tick -= 1
                body = order_body(cid, _price_str(ticks), "POST_ONLY")
                raw = raw_request("POST", ORDER_PATH, body, host, WS_ACCOUNT, ts_ms)
                open_orders.append((cid, ticks))
                key = (ticks, False)
                places += 1
            sent = time.monotonic_ns()
            status, resp = http.roundtrip(raw)
            rtts.append(time.monotonic_ns() - sent)
            sends[key] = sent
            if status != 200:
                failures += 1
                first_error = first_error or f"{status} {resp[:200]!r}"
    finally:
        http.close()
    return {
        "sends": sends,
        "rtts": rtts,
        "ops": n_ops,
        "places": places,
        "cancels": cancels,
        "failures": failures,
        "first_error": first_error,
        "first_send": t0,
        "seconds": (time.monotonic_ns() - t0) / 1e9,
    }


def ws_phase(args: argparse.Namespace, tmp: Path, cpus: tuple[int | None, int | None]) -> WsResult:
    server_cpu, _ = cpus
    n_total, n_procs = args.ws_subscribers, max(1, min(args.ws_procs, args.ws_subscribers))
    sizes = [n_total // n_procs + (1 if i < n_total % n_procs else 0) for i in range(n_procs)]
    ctx = multiprocessing.get_context("spawn")
    procs: list[Any] = []
    pipes: list[Connection] = []
    server = ServerProc("sandbox", server_cpu, tmp)
    max_seconds = READY_TIMEOUT_S + args.ws_seconds + 60
    try:
        server.start()
        ws_url = server.url.replace("http", "ws", 1) + "/v1/ws"
        for size in sizes:
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=ws_client_proc, args=(ws_url, size, child, max_seconds), daemon=True
            )
            p.start()
            child.close()
            procs.append(p)
            pipes.append(parent)
        subscribed = failed = 0
        for pipe in pipes:
            if not pipe.poll(READY_TIMEOUT_S + 10):
                raise RuntimeError("a WebSocket client process did not report in time")
            ready = pipe.recv()
            subscribed += ready["subscribed"]
            failed += ready["failed"]
        # A few untimed ops (far away on the ask side, not counted) warm the path up.
        warm = RawHttp(HOST, server.port)
        try:
            for i in range(20):
                body = order_body(f"wsw{i}", _price_str(620_000 + i), "POST_ONLY")
                body = body.replace(b'"BUY"', b'"SELL"')
                warm.roundtrip(
                    raw_request(
                        "POST",
                        ORDER_PATH,
                        body,
                        f"{HOST}:{server.port}",
                        WS_ACCOUNT,
                        int(time.time() * 1000),
                    )
                )
        finally:
            warm.close()
        time.sleep(0.2)
        cpu0, busy0 = server.cpu_seconds(), cpu_busy_seconds(server_cpu)
        clients0 = sum(process_cpu_seconds(p.pid) for p in procs)
        d = drive(server.port, args.ws_rate, args.ws_seconds)
        time.sleep(args.ws_grace)
        cpu1, busy1 = server.cpu_seconds(), cpu_busy_seconds(server_cpu)
        clients1 = sum(process_cpu_seconds(p.pid) for p in procs)
        for pipe in pipes:
            pipe.send("stop")
        results = []
        for pipe in pipes:
            if not pipe.poll(30):
                raise RuntimeError("a WebSocket client process did not report its results")
            results.append(pipe.recv())
    finally:
        server.stop()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        for pipe in pipes:
            pipe.close()

    sends: dict[tuple[int, bool], int] = d["sends"]
    latencies: list[int] = []
    last_arrival = d["first_send"]
    ticks_of: dict[str, int] = {}
    for res in results:
        for price, removed, t in res["records"]:
            ticks = ticks_of.get(price)
            if ticks is None:
                ticks = ticks_of[price] = int(Decimal(price) * TICKS_PER_UNIT)
            sent = sends.get((ticks, removed))
            if sent is None:
                continue  # a warm-up diff
            latencies.append(t - sent)
            last_arrival = max(last_arrival, t)
    codes: Counter[Any] = Counter()
    for res in results:
        codes.update(res["close_codes"])
    return WsResult(
        subscribers=n_total,
        procs=n_procs,
        rate=args.ws_rate,
        ops=d["ops"],
        places=d["places"],
        cancels=d["cancels"],
        http_failures=d["failures"],
        first_error=d["first_error"],
        subscribed=subscribed,
        failed=failed,
        dropped=sum(r["dropped"] for r in results),
        close_codes=dict(codes),
        gaps=sum(r["gaps"] for r in results),
        expected=d["ops"] * subscribed,
        delivered=len(latencies),
        span_s=(last_arrival - d["first_send"]) / 1e9,
        latency_ms=_percentiles(latencies, 1e6),
        rtt_ms=_percentiles(list(d["rtts"]), 1e6),
        server_cpu_s=cpu1 - cpu0,
        other_cpu_s=max(0.0, (busy1 - busy0) - (cpu1 - cpu0)),
        client_cpu_s=clients1 - clients0,
        drive_s=d["seconds"] + args.ws_grace,
    )


# -- in-process profile of the order path ----------------------------------------------------
def _asgi_requests(n: int, tag: str) -> list[tuple[dict[str, Any], bytes]]:
    ts = int(time.time() * 1000)
    out = []
    for i in range(n):
        body = order_body(f"{tag}-{i}")
        headers = signed_headers(HTTP_ACCOUNT[0], HTTP_ACCOUNT[1], "POST", ORDER_PATH, body, ts)
        raw_headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": ORDER_PATH,
            "raw_path": ORDER_PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
            "client": (HOST, 50000),
            "server": (HOST, 8000),
            "state": {},
        }
        out.append((scope, body))
    return out


async def _drive_asgi(app: Any, requests: Sequence[tuple[dict[str, Any], bytes]]) -> int:
    failures = 0
    for scope, body in requests:
        sent = False
        statuses: list[int] = []

        async def receive(body: bytes = body) -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any], statuses: list[int] = statuses) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [200]:
            failures += 1
    return failures


def _asgi_cpu_us(app: Any, n: int, tag: str, runner: asyncio.Runner) -> tuple[float, int]:
    """CPU µs per request of ``n`` orders through ``app`` (and how many failed)."""
    batch = _asgi_requests(n, tag)
    t0 = time.process_time()
    failures = runner.run(_drive_asgi(app, batch))
    return (time.process_time() - t0) / n * 1e6, failures


@contextlib.contextmanager
def _instrumented(totals: dict[str, int]) -> Iterator[None]:
    """Time the order path's stages inside real requests: wrap (in this process only) the
    functions they are made of, adding their inclusive wall ns to ``totals``."""
    from fastapi import Request

    from perpbot import models as m
    from sandbox.engine import Instrument
    from sandbox.engine.exchange import Exchange
    from sandbox.server import routes, wire
    from sandbox.server.auth import Authenticator
    from sandbox.server.core import SandboxCore
    from sandbox.server.publish import Publisher
    from sandbox.server.records import Records
    from sandbox.server.state import SandboxState
    from sandbox.server.throttle import Throttle

    clock = time.perf_counter_ns
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: str, kind: str = "plain") -> None:
        original = inspect.getattr_static(owner, name)
        func = original.__func__ if kind == "classmethod" else original

        if kind == "async":

            async def timed_async(*a: Any, **k: Any) -> Any:
                t0 = clock()
                try:
                    return await func(*a, **k)
                finally:
                    totals[label] = totals.get(label, 0) + clock() - t0

            replacement: Any = timed_async
        else:

            def timed(*a: Any, **k: Any) -> Any:
                t0 = clock()
                try:
                    return func(*a, **k)
                finally:
                    totals[label] = totals.get(label, 0) + clock() - t0

            replacement = classmethod(timed) if kind == "classmethod" else timed
        patched.append((owner, name, original if name in vars(owner) else None))
        setattr(owner, name, replacement)

    wrap(Throttle, "check", "throttle")
    wrap(Request, "body", "body read", "async")
    wrap(Authenticator, "verify", "auth")
    wrap(m.OrderRequest, "model_validate_json", "validation", "classmethod")
    wrap(Instrument, "qty_to_lots", "decimal -> units")
    wrap(Instrument, "price_to_ticks", "decimal -> units")
    wrap(SandboxState, "apply", "state.apply")
    wrap(SandboxCore, "now_ms", "  sim clock (SimClock, Fraction)")
    wrap(Exchange, "submit", "  engine (Exchange.submit)")
    wrap(Records, "apply", "  records (histories)")
    wrap(Publisher, "__call__", "  publisher (WS messages)")
    wrap(wire, "order_json", "order JSON (wire.order_json)")
    wrap(routes, "_json", "orjson + Response (_json)")
    try:
        yield
    finally:
        for owner, name, original in reversed(patched):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


STAGE_ORDER = [
    "throttle",
    "body read",
    "auth",
    "validation",
    "decimal -> units",
    "state.apply",
    "  sim clock (SimClock, Fraction)",
    "  engine (Exchange.submit)",
    "  records (histories)",
    "  publisher (WS messages)",
    "order JSON (wire.order_json)",
    "orjson + Response (_json)",
]


def profile_orders(n: int, rounds: int = 3, top: int = 30) -> None:
    """Where the CPU of one order goes, in-process (direct ASGI calls, no sockets): the whole
    app per request (sandbox and echo; GC on and off), the order path's stages timed inside
    real requests, then the top functions under cProfile. Each figure is the best of
    ``rounds`` runs of ``n`` requests, the configurations alternating (a shared machine is
    noisy)."""
    import gc

    from bench.echo_app import app as echo_app
    from sandbox.server.app import create_app
    from sandbox.server.state import SandboxState

    def fresh_app() -> Any:
        app = create_app(SandboxState(bench_settings()), background=False)
        runner.run(_drive_asgi(app, _asgi_requests(500, "warm")))
        return app

    best: dict[str, float] = {}
    best_totals: dict[str, int] = {}
    failures = 0

    def keep(name: str, us: float) -> bool:
        if us < best.get(name, math.inf):
            best[name] = us
            return True
        return False

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_drive_asgi(echo_app, _asgi_requests(500, "warm")))
        for r in range(rounds):
            keep("echo", _asgi_cpu_us(echo_app, n, f"echo{r}", runner)[0])
            us, fail = _asgi_cpu_us(fresh_app(), n, f"gc{r}", runner)
            keep("gc on", us)
            failures += fail
            app = fresh_app()
            gc.disable()
            try:
                us, fail = _asgi_cpu_us(app, n, f"nogc{r}", runner)
                keep("gc off", us)
                failures += fail
                app = fresh_app()
                totals: dict[str, int] = {}
                with _instrumented(totals):
                    batch = _asgi_requests(n, f"instr{r}")
                    t0 = time.process_time()
                    failures += runner.run(_drive_asgi(app, batch))
                    if keep("instrumented", (time.process_time() - t0) / n * 1e6):
                        best_totals = totals
            finally:
                gc.enable()

    full_us, nogc_us, instr_us = best["gc on"], best["gc off"], best["instrumented"]
    print(
        f"order path in-process (direct ASGI calls, no sockets, no uvicorn): CPU per request, "
        f"best of {rounds} x {n:,} requests, {failures} failed"
    )
    print(f"  {'sandbox app, POST /v1/orders (IOC order)':<54}{full_us:>8.1f} µs")
    print(f"  {'  with the garbage collector off':<54}{nogc_us:>8.1f} µs")
    print(f"  {'echo app (Starlette request.json -> JSONResponse)':<54}{best['echo']:>8.1f} µs")
    print()
    print(f"  {'stage, timed inside the requests (GC off)':<54}{'µs/req':>8}{'share':>8}")
    accounted = 0.0
    for label in STAGE_ORDER:
        us = best_totals.get(label, 0) / n / 1000
        if not label.startswith(" "):
            accounted += us
        print(f"  {label:<54}{us:>8.1f}{us / instr_us:>8.1%}")
    rest = instr_us - accounted
    label = "FastAPI/Starlette/middleware/handler glue (rest)"
    print(f"  {label:<54}{rest:>8.1f}{rest / instr_us:>8.1%}")
    print(f"  {'total (instrumented run, GC off)':<54}{instr_us:>8.1f}{1:>8.0%}")
    print(
        f"instrumented - GC off: {instr_us - nogc_us:+.0f} µs/req (the wrappers, within the "
        f"run-to-run noise); garbage collector: {full_us - nogc_us:.0f} µs/req (on - off)"
    )
    print("uvicorn + httptools + the event loop come on top: a wrk run's server CPU µs/req minus")
    print("the app's figure above")

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        app = fresh_app()
        batch = _asgi_requests(n, "profiled")
        profiler = cProfile.Profile()
        profiler.enable()
        runner.run(_drive_asgi(app, batch))
        profiler.disable()
    print()
    print(f"cProfile of {n:,} orders through the sandbox app (profiler overhead included)")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)


# -- report ------------------------------------------------------------------------------------
def _fmt_cpus(cpus: set[int] | None) -> str:
    cpus = cpus if cpus is not None else cpus_available()
    return ",".join(str(c) for c in sorted(cpus))


def print_http(rows: list[tuple[WrkRun, WrkRun]], duration: int, repeat: int) -> None:
    print()
    best = f", best of {repeat}" if repeat > 1 else ""
    print(
        f"HTTP POST {ORDER_PATH} (IOC order, {len(order_body('o0000000000000000t1-0'))}-byte "
        f"body), one uvicorn worker each, wrk {duration} s per run{best}"
    )
    print(
        f"{'conns':>5}  {'app':<7}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'CPU µs/req':>11}"
        f"{'non-2xx':>8}{'errors':>7}{'requests':>9}{'other':>6}  ratio"
    )
    for e, o in rows:
        for run in (e, o):
            ratio = f"{o.rps / e.rps:.3f}x" if run is o and e.rps else ""
            flag = "  FLAGGED" if run.flagged else ""
            print(
                f"{run.conns:>5}  {run.app:<7}{run.rps:>9,.0f}{run.p50_ms:>8.3f}{run.p99_ms:>8.3f}"
                f"{run.cpu_us:>11.1f}{run.non2xx:>8,}{run.socket_errors:>7,}{run.requests:>9,}"
                f"{run.other_load:>6.0%}  {ratio}{flag}"
            )
    if repeat > 1:
        for e, o in rows:
            for run in (e, o):
                rates = " ".join(f"{x:,.0f}" for x in run.all_rps)
                print(f"  runs {run.app} @{run.conns}: {rates} req/s")
    for e, o in rows:
        if o.attempts > 1:
            print(f"note: orders @{o.conns}: request pool of {o.pool:,}, attempt {o.attempts}")
        for run in (e, o):
            if run.flagged or run.flagged_runs:
                print(
                    f"FLAGGED: {run.app} @{run.conns}: {run.non2xx:,} non-2xx + "
                    f"{run.socket_errors:,} socket errors of {run.requests:,} requests "
                    f"(limit {NON2XX_FLAG:.1%}), request pool exhausted {run.overflow:,} times; "
                    f"{run.flagged_runs} flagged run(s)"
                )
    for e, o in rows:
        if o.conns > 1 and e.rps:
            share = o.rps / e.rps
            verdict = "meets" if share >= 0.5 else "BELOW"
            print(f"ratio orders/echo @{o.conns} conns: {share:.3f}x ({verdict} the 0.5x goal)")
    print("req/s, latency: wrk on the other CPU; CPU µs/req: the server process's utime+stime")
    print("over the run / requests; other: share of the server's CPU used by other processes")
    print("(noise); orders: every request uniquely signed and sent once, the echo loops a pool")
    print(ANCHOR_HTTP)


def print_ws(r: WsResult) -> None:
    print()
    print(
        f"WebSocket fan-out: {r.subscribers} subscribers to {CHANNEL} in {r.procs} client "
        f"process(es) (websockets sans-I/O client, no compression); driver {r.rate:g} ops/s "
        f"over one keep-alive HTTP connection"
    )
    offered = r.rate * r.subscribers
    rows = [
        ("clients subscribed / failed", f"{r.subscribed} / {r.failed}"),
        ("clients dropped (close codes)", f"{r.dropped} {r.close_codes or ''}".strip()),
        (
            "ops (place / cancel), HTTP non-200",
            f"{r.ops:,} ({r.places:,} / {r.cancels:,}), {r.http_failures}",
        ),
        ("diffs delivered / expected", f"{r.delivered:,} / {r.expected:,} (seq gaps {r.gaps})"),
        ("delivered messages/s", f"{r.msgs_per_s:,.0f} (offered {offered:,.0f})"),
        (
            "latency order sent -> diff received",
            f"p50 {r.latency_ms['p50']:.2f} ms  p99 {r.latency_ms['p99']:.2f} ms  "
            f"max {r.latency_ms['max']:.2f} ms",
        ),
        (
            "HTTP order round trip alone",
            f"p50 {r.rtt_ms['p50']:.2f} ms  p99 {r.rtt_ms['p99']:.2f} ms  "
            f"max {r.rtt_ms['max']:.2f} ms",
        ),
        (
            "server CPU over the run",
            f"{r.server_cpu_s / r.drive_s:.0%} of one core, "
            f"{r.server_cpu_s / max(1, r.ops) * 1e6:,.0f} µs/op, "
            f"{r.server_cpu_s / max(1, r.delivered) * 1e6:.2f} µs/delivery; other processes "
            f"{r.other_cpu_s / r.drive_s:.0%}",
        ),
        (
            "client processes' CPU over the run",
            f"{r.client_cpu_s / r.drive_s:.0%} of one core, "
            f"{r.client_cpu_s / max(1, r.delivered) * 1e6:.1f} µs/message received",
        ),
    ]
    per_delivery = r.server_cpu_s / max(1, r.delivered)
    if per_delivery > 0:
        ceiling = 1 / per_delivery
        rows.append(
            (
                "server ceiling (1 core / CPU per delivery)",
                f"~{ceiling:,.0f} deliveries/s, ~{ceiling / max(1, r.subscribed):,.0f} diffs/s "
                f"to {r.subscribed} subscribers (HTTP share included)",
            )
        )
    for label, value in rows:
        print(f"  {label:<44}{value}")
    if r.first_error:
        print(f"  first HTTP error: {r.first_error}")
    print("latency includes the HTTP order round trip (the diff is published before the response")
    print("is written); fan-out share ~ latency - round trip")
    print(ANCHOR_WS)


def summary_line(rows: list[tuple[WrkRun, WrkRun]], ws: WsResult | None) -> str:
    parts = []
    for e, o in rows:
        ratio = o.rps / e.rps if e.rps else math.nan
        parts.append(f"@{o.conns} {o.rps:,.0f} vs {e.rps:,.0f} req/s ({ratio:.2f}x)")
    text = "summary: " + ("orders vs echo " + "; ".join(parts) if parts else "")
    multi = [o.rps / e.rps for e, o in rows if o.conns > 1 and e.rps]
    if multi:
        text += f"; goal 0.5x {'met' if min(multi) >= 0.5 else 'NOT met'}"
    seq = [o for _, o in rows if o.conns == 1]
    if seq:
        text += f"; sequential p50/p99 {seq[0].p50_ms:.2f}/{seq[0].p99_ms:.2f} ms"
    if ws is not None:
        text += (
            f"{'; ' if parts else ''}WS {ws.subscribers} subs {ws.msgs_per_s:,.0f} msg/s "
            f"p99 {ws.latency_ms['p99']:.1f} ms, {ws.dropped} dropped"
        )
    return text


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--conns", type=_int_list, default=[1, 16, 64], help="e.g. 1,16,64")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (at most conns)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting (best kept)")
    parser.add_argument("--ws-subscribers", type=int, default=500)
    parser.add_argument("--ws-procs", type=int, default=2, help="client processes")
    parser.add_argument("--ws-rate", type=float, default=20.0, help="driver ops per second")
    parser.add_argument("--ws-seconds", type=float, default=5.0)
    parser.add_argument("--ws-grace", type=float, default=1.0, help="drain time after the driver")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--no-ws", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 s runs at 1 and 16 conns, 50 subs")
    parser.add_argument("--profile", action="store_true", help="profile the order path instead")
    parser.add_argument("--profile-requests", type=int, default=5_000, help="per round (x3)")
    parser.add_argument("--child", choices=("sandbox", "echo"), help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child, args.cpu)
    args.echo_pool = ECHO_POOL
    if args.quick:
        args.duration, args.conns = 1, [1, 16]
        args.ws_subscribers, args.ws_seconds, args.ws_grace = 50, 1.0, 0.5
        args.echo_pool, args.repeat = 5_000, 1
    if args.profile:
        profile_orders(args.profile_requests)
        return 0

    signal.signal(signal.SIGTERM, _interrupt)  # clean up as on Ctrl+C
    available = cpus_available()
    cpus: tuple[int | None, int | None]
    if {SERVER_CPU, LOAD_CPU} <= available:
        cpus = (SERVER_CPU, LOAD_CPU)
        pin(LOAD_CPU)  # this process, wrk and the WebSocket clients (inherited)
        pinning = f"servers on CPU {SERVER_CPU}, load (wrk, WS clients, driver) on CPU {LOAD_CPU}"
    else:
        cpus = (None, None)
        pinning = f"NOT pinned (CPUs {_fmt_cpus(available)} available, need 0 and 1)"
    wrk = shutil.which("wrk")
    if not args.no_http and wrk is None:
        print("wrk not found on PATH (apt-get install wrk)", file=sys.stderr)
        return 2
    print(
        f"sandbox order path vs Starlette echo: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {pinning}"
    )
    rows: list[tuple[WrkRun, WrkRun]] = []
    ws: WsResult | None = None
    with tempfile.TemporaryDirectory(prefix="bench_server_") as tmpdir:
        tmp = Path(tmpdir)
        try:
            if not args.no_http:
                assert wrk is not None
                rows = http_phase(args, wrk, tmp, cpus)
                print_http(rows, args.duration, args.repeat)
            if not args.no_ws:
                ws = ws_phase(args, tmp, cpus)
                print_ws(ws)
        except ServerStartError as exc:
            print(f"server failed to start: {exc}", file=sys.stderr)
            return 2
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 3
        except KeyboardInterrupt:
            print("interrupted; servers and clients stopped", file=sys.stderr)
            return 130
    print()
    print(summary_line(rows, ws))
    bad = any(run.flagged for pair in rows for run in pair)
    if ws is not None:
        bad |= ws.dropped > 0 or ws.http_failures > 0 or ws.subscribed < ws.subscribers
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
