"""Malformed query parameters on every GET route of /v1 get the error envelope, never a 500.

Each route (signed, as a client would send it, with values percent-encoded) gets each of the
query parameters the API uses replaced by a malformed value in turn. The answer must be a 2xx,
or a 4xx whose body is ``{code, message, details}``.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from sandbox.server.app import WEIGHTS, create_app

from .conftest import Api, FakeWall, make_state

PARAMS = ["depth", "limit", "start", "end", "market", "interval", "since", "seconds", "shock"]
MALFORMED = ["", "abc", "-1", "0", "1e309", "NaN", "99999999999999999999999", "0.5", "\x00", "é"]
LIMITS = {k: 10**9 for k in ("weight_limit", "key_weight_limit", "order_limit", "order_limit_long")}


async def test_no_malformed_query_parameter_gets_a_server_error() -> None:
    wall = FakeWall()
    app = create_app(make_state(wall, limits=LIMITS), background=False)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
    routes = [key.split(" ", 1)[1] for key in WEIGHTS if key.startswith("GET ")]
    assert len(routes) > 15
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        alice = Api(http, wall, "alice-key", "alice-secret-0123456789")
        r = await alice.order(side="BUY", qty="0.010", price="59000.0", client_order_id="a-1")
        assert r.status_code == 200, r.text
        for template in routes:
            path = (
                template.replace("{market}", "BTC-PERP")
                .replace("{order_id}", str(r.json()["order"]["order_id"]))
                .replace("{client_order_id}", "a-1")
            )
            for name in PARAMS:
                for bad in MALFORMED:
                    answer = await alice.get(f"{path}?{name}={quote(bad)}")
                    where = f"GET {path}?{name}={bad!r}: {answer.status_code} {answer.text[:200]}"
                    assert answer.status_code < 500, where
                    if answer.status_code >= 400:
                        body = answer.json()
                        assert {"code", "message", "details"} <= body.keys(), where
