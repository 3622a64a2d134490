"""Signed-request authentication: every failure code, check order, window edges, replay, WS."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perpbot.signing import (
    API_KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    HmacSha256,
    sign,
    sign_ws_login,
    signature_payload,
    signed_headers,
)
from sandbox.server.auth import AuthCode, Authenticator, AuthError, KeyStore

NOW = 1_700_000_000_000
KEY, SECRET, ACCOUNT = "key-alice", "s3cret-alice", "alice"
PATH = "/v1/orders?market=BTC-PERP"
BODY = b'{"side":"BUY","qty":"0.001"}'


class FakeClock:
    """Epoch milliseconds that move only when the test says so."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> KeyStore:
    s = KeyStore()
    s.add(KEY, SECRET, ACCOUNT)
    s.add("key-bob", "s3cret-bob", "bob")
    return s


@pytest.fixture
def auth(store: KeyStore, clock: FakeClock) -> Authenticator:
    return Authenticator(store, now_ms=clock)


def signed(
    ts: int = NOW,
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    key: str = KEY,
    secret: str = SECRET,
) -> tuple[str, str, str]:
    h = signed_headers(key, secret, method, path, body, ts)
    return h[API_KEY_HEADER], h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER]


def code_of(auth: Authenticator, *args: object) -> AuthCode:
    with pytest.raises(AuthError) as info:
        auth.verify(*args)  # type: ignore[arg-type]
    return info.value.code


# -- signing ---------------------------------------------------------------------------------


def test_payload_is_timestamp_method_path_then_raw_body() -> None:
    assert signature_payload(NOW, "post", PATH, b"\x00{}") == (
        b"1700000000000POST/v1/orders?market=BTC-PERP\x00{}"
    )
    assert signature_payload("0042", "GET", "/v1/ws", b"") == b"0042GET/v1/ws"


def test_sign_is_lowercase_hex_hmac_sha256() -> None:
    payload = b"1700000000000POST" + PATH.encode() + BODY
    want = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    got = sign(SECRET, NOW, "POST", PATH, BODY)
    assert got == want and got == got.lower() and len(got) == 64
    assert sign(SECRET, str(NOW), "post", PATH, BODY) == got


def test_signed_headers() -> None:
    assert signed_headers(KEY, SECRET, "POST", PATH, BODY, NOW) == {
        "X-PB-APIKEY": KEY,
        "X-PB-TIMESTAMP": "1700000000000",
        "X-PB-SIGNATURE": sign(SECRET, NOW, "POST", PATH, BODY),
    }


@given(secret=st.binary(max_size=200), payload=st.binary(max_size=300))
def test_precomputed_hmac_matches_stdlib(secret: bytes, payload: bytes) -> None:
    want = hmac.new(secret, payload, hashlib.sha256).hexdigest()
    mac = HmacSha256(secret)
    assert mac.hexdigest(payload) == want and mac.hexdigest(payload) == want  # reusable


@pytest.mark.parametrize("length", [0, 1, 63, 64, 65, 128, 500])
def test_any_secret_length_verifies(clock: FakeClock, length: int) -> None:
    secret = ("é" + "x" * length)[:length] or "s"  # multi-byte UTF-8 too
    store = KeyStore()
    store.add("k", secret, "acct")
    auth = Authenticator(store, now_ms=clock)
    assert auth.verify(*signed(key="k", secret=secret), "POST", PATH, BODY) == "acct"


def test_sign_rejects_non_ascii_path() -> None:
    with pytest.raises(ValueError):
        sign(SECRET, NOW, "GET", "/v1/marché", b"")


# -- happy path ------------------------------------------------------------------------------


def test_valid_request_returns_account(auth: Authenticator) -> None:
    assert auth.verify(*signed(), "POST", PATH, BODY) == ACCOUNT
    key, ts, sig = signed(
        key="key-bob", secret="s3cret-bob", method="GET", path="/v1/account", body=b""
    )
    assert auth.verify(key, ts, sig, "GET", "/v1/account", b"") == "bob"


def test_method_case_does_not_matter(auth: Authenticator) -> None:
    key, ts, sig = signed(method="delete", path="/v1/orders/7", body=b"")
    assert auth.verify(key, ts, sig, "DELETE", "/v1/orders/7", b"") == ACCOUNT


def test_timestamp_is_signed_as_sent(auth: Authenticator) -> None:
    ts = "0" + str(NOW)
    sig = sign(SECRET, ts, "GET", "/v1/account", b"")
    assert auth.verify(KEY, ts, sig, "GET", "/v1/account", b"") == ACCOUNT


# -- every failure code ----------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, ""])
def test_missing_api_key(auth: Authenticator, key: str | None) -> None:
    _, ts, sig = signed()
    assert code_of(auth, key, ts, sig, "POST", PATH, BODY) == AuthCode.MISSING_API_KEY


def test_unknown_and_revoked_api_key(auth: Authenticator, store: KeyStore) -> None:
    _, ts, sig = signed()
    assert code_of(auth, "key-mallory", ts, sig, "POST", PATH, BODY) == AuthCode.UNKNOWN_API_KEY
    assert store.remove(KEY) and not store.remove(KEY)
    assert code_of(auth, *signed(), "POST", PATH, BODY) == AuthCode.UNKNOWN_API_KEY


@pytest.mark.parametrize("ts", [None, ""])
def test_missing_timestamp(auth: Authenticator, ts: str | None) -> None:
    key, _, sig = signed()
    assert code_of(auth, key, ts, sig, "POST", PATH, BODY) == AuthCode.MISSING_TIMESTAMP


@pytest.mark.parametrize(
    "ts", ["abc", "1.5", "1e12", " 1700000000000", "+1700000000000", "1_700", "-", "١٢٣", "9" * 33]
)
def test_invalid_timestamp(auth: Authenticator, ts: str) -> None:
    key, _, sig = signed()
    assert code_of(auth, key, ts, sig, "POST", PATH, BODY) == AuthCode.INVALID_TIMESTAMP


@pytest.mark.parametrize(
    ("offset", "words"),
    [(-5001, "5001 ms behind"), (5001, "5001 ms ahead of"), (-NOW - 10**9, "behind")],
)
def test_timestamp_outside_window(auth: Authenticator, offset: int, words: str) -> None:
    with pytest.raises(AuthError) as info:
        auth.verify(*signed(ts=NOW + offset), "POST", PATH, BODY)
    assert info.value.code == AuthCode.TIMESTAMP_OUTSIDE_WINDOW
    assert words in info.value.message and "±5000 ms" in info.value.message


@pytest.mark.parametrize("offset", [-5000, -4999, 0, 4999, 5000])
def test_window_edges_are_inclusive(auth: Authenticator, offset: int) -> None:
    assert auth.verify(*signed(ts=NOW + offset), "POST", PATH, BODY) == ACCOUNT


def test_custom_window(store: KeyStore, clock: FakeClock) -> None:
    auth = Authenticator(store, now_ms=clock, window_ms=100)
    assert auth.window_ms == 100
    assert auth.verify(*signed(ts=NOW - 100), "POST", PATH, BODY) == ACCOUNT
    assert code_of(auth, *signed(ts=NOW + 101), "POST", PATH, BODY) == (
        AuthCode.TIMESTAMP_OUTSIDE_WINDOW
    )


@pytest.mark.parametrize("window", [0, -1, True, 1.5, "5000"])
def test_window_must_be_positive_int(store: KeyStore, clock: FakeClock, window: object) -> None:
    with pytest.raises(ValueError):
        Authenticator(store, now_ms=clock, window_ms=window)  # type: ignore[arg-type]


@pytest.mark.parametrize("sig", [None, ""])
def test_missing_signature(auth: Authenticator, sig: str | None) -> None:
    key, ts, _ = signed()
    assert code_of(auth, key, ts, sig, "POST", PATH, BODY) == AuthCode.MISSING_SIGNATURE


def test_invalid_signature_variants(auth: Authenticator) -> None:
    key, ts, sig = signed()
    for bad in [
        sig.upper(),
        sig[:-1],
        sig + "0",
        sig[:-1] + ("0" if sig[-1] != "0" else "1"),
        "é" * 64,
        "not-hex",
        signed(secret="wrong")[2],
        signed(key="key-bob", secret="s3cret-bob")[2],  # bob's signature under alice's key
    ]:
        assert code_of(auth, key, ts, bad, "POST", PATH, BODY) == AuthCode.INVALID_SIGNATURE
    assert auth.verify(key, ts, sig, "POST", PATH, BODY) == ACCOUNT  # failures record nothing


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", PATH, BODY.replace(b"0.001", b"1.000")),  # body
        ("POST", PATH, BODY + b" "),
        ("POST", PATH, b""),
        ("POST", "/v1/orders?market=ETH-PERP", BODY),  # query string
        ("POST", "/v1/orders", BODY),
        ("PUT", PATH, BODY),  # method
        ("POST", "/v1/marché", BODY),  # non-ASCII path as received
    ],
)
def test_tampering_is_an_invalid_signature(
    auth: Authenticator, method: str, path: str, body: bytes
) -> None:
    assert code_of(auth, *signed(), method, path, body) == AuthCode.INVALID_SIGNATURE


def test_replay_inside_window_is_refused(auth: Authenticator, clock: FakeClock) -> None:
    req = signed()
    assert auth.verify(*req, "POST", PATH, BODY) == ACCOUNT
    clock.now += 5000  # still inside the window
    with pytest.raises(AuthError) as info:
        auth.verify(*req, "POST", PATH, BODY)
    assert info.value.code == AuthCode.REPLAYED_REQUEST
    clock.now += 1  # out of the window: now refused as stale, and forgotten
    assert code_of(auth, *req, "POST", PATH, BODY) == AuthCode.TIMESTAMP_OUTSIDE_WINDOW
    auth.verify(*signed(ts=clock.now), "POST", PATH, BODY)
    assert auth.remembered == 1


def test_distinct_requests_are_not_replays(auth: Authenticator) -> None:
    auth.verify(*signed(), "POST", PATH, BODY)
    auth.verify(*signed(ts=NOW + 1), "POST", PATH, BODY)  # same request, next millisecond
    auth.verify(*signed(body=b"{}"), "POST", PATH, b"{}")
    assert auth.remembered == 3


def test_keys_sharing_a_secret_do_not_collide(store: KeyStore, clock: FakeClock) -> None:
    store.add("key-twin", SECRET, "twin")
    auth = Authenticator(store, now_ms=clock)
    assert auth.verify(*signed(), "POST", PATH, BODY) == ACCOUNT
    assert auth.verify(*signed(key="key-twin"), "POST", PATH, BODY) == "twin"


def test_replay_memory_is_bounded(auth: Authenticator, clock: FakeClock) -> None:
    for i in range(1000):
        clock.now = NOW + i * 100
        # timestamps anywhere in the window, including in the future
        body = b"%d" % i
        auth.verify(*signed(ts=clock.now + (i % 11 - 5) * 1000, body=body), "POST", PATH, body)
        assert auth.remembered <= 2 * 5000 // 100 + 1


@pytest.mark.parametrize(
    ("key", "ts", "sig", "want"),
    [
        (None, "junk", None, AuthCode.MISSING_API_KEY),
        ("nobody", None, None, AuthCode.UNKNOWN_API_KEY),
        (KEY, None, "junk", AuthCode.MISSING_TIMESTAMP),
        (KEY, "junk", None, AuthCode.INVALID_TIMESTAMP),
        (KEY, str(NOW - 10_000), None, AuthCode.TIMESTAMP_OUTSIDE_WINDOW),
        (KEY, str(NOW), None, AuthCode.MISSING_SIGNATURE),
    ],
)
def test_check_order(
    auth: Authenticator, key: str | None, ts: str | None, sig: str | None, want: AuthCode
) -> None:
    assert code_of(auth, key, ts, sig, "POST", PATH, BODY) == want


def test_error_carries_code_and_message(auth: Authenticator) -> None:
    with pytest.raises(AuthError) as info:
        auth.verify(None, None, None, "GET", "/", b"")
    err = info.value
    assert err.code == "MISSING_API_KEY" and isinstance(err.code, str) and err.status_code == 401
    assert "X-PB-APIKEY" in err.message and str(err).startswith("MISSING_API_KEY: ")


# -- WebSocket login -------------------------------------------------------------------------


def test_ws_login(auth: Authenticator, clock: FakeClock) -> None:
    sig = sign_ws_login(SECRET, NOW)
    assert sig == sign(SECRET, NOW, "GET", "/v1/ws", b"")
    assert auth.verify_ws_login(KEY, str(NOW), sig) == ACCOUNT
    with pytest.raises(AuthError) as info:
        auth.verify_ws_login(KEY, str(NOW), sig)
    assert info.value.code == AuthCode.REPLAYED_REQUEST


@pytest.mark.parametrize(
    ("key", "ts", "sig", "want"),
    [
        (None, str(NOW), sign_ws_login(SECRET, NOW), AuthCode.MISSING_API_KEY),
        ("nobody", str(NOW), sign_ws_login(SECRET, NOW), AuthCode.UNKNOWN_API_KEY),
        (KEY, None, sign_ws_login(SECRET, NOW), AuthCode.MISSING_TIMESTAMP),
        (KEY, "soon", sign_ws_login(SECRET, NOW), AuthCode.INVALID_TIMESTAMP),
        (
            KEY,
            str(NOW - 5001),
            sign_ws_login(SECRET, NOW - 5001),
            AuthCode.TIMESTAMP_OUTSIDE_WINDOW,
        ),
        (KEY, str(NOW), None, AuthCode.MISSING_SIGNATURE),
        (KEY, str(NOW), sign(SECRET, NOW, "GET", "/v1/account", b""), AuthCode.INVALID_SIGNATURE),
        (KEY, str(NOW), sign(SECRET, NOW + 1, "GET", "/v1/ws", b""), AuthCode.INVALID_SIGNATURE),
    ],
)
def test_ws_login_failures(
    auth: Authenticator, key: str | None, ts: str | None, sig: str | None, want: AuthCode
) -> None:
    with pytest.raises(AuthError) as info:
        auth.verify_ws_login(key, ts, sig)
    assert info.value.code == want


# -- key store -------------------------------------------------------------------------------


def test_key_store_add_get() -> None:
    s = KeyStore()
    s.add("k1", "secret with spaces", "acct-1")
    assert s.get("k1") == ("secret with spaces", "acct-1")
    assert s.get("k2") is None and "k1" in s and "k2" not in s and len(s) == 1


@pytest.mark.parametrize(
    ("key", "secret", "account"),
    [
        ("", "s", "a"),
        ("k", "", "a"),
        ("k", "s", ""),
        ("k y", "s", "a"),
        ("k\n", "s", "a"),
        ("clé", "s", "a"),
        ("k", "s\x00", "a"),
        ("k", "s", "a\t"),
        (None, "s", "a"),
        ("k", b"s", "a"),
    ],
)
def test_key_store_rejects_bad_entries(key: object, secret: object, account: object) -> None:
    with pytest.raises(ValueError):
        KeyStore().add(key, secret, account)  # type: ignore[arg-type]


def test_key_store_rejects_duplicates(store: KeyStore) -> None:
    with pytest.raises(ValueError, match="already registered"):
        store.add(KEY, "other", "other")
    assert store.get(KEY) == (SECRET, ACCOUNT)


# -- properties ------------------------------------------------------------------------------

_paths = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=_paths.map(lambda p: "/" + p),
    body=st.binary(max_size=200),
    offset=st.integers(-5000, 5000),
    flip=st.integers(0, 10_000),
)
def test_any_request_verifies_and_any_body_bit_flip_fails(
    method: str, path: str, body: bytes, offset: int, flip: int
) -> None:
    store = KeyStore()
    store.add(KEY, SECRET, ACCOUNT)
    auth = Authenticator(store, now_ms=FakeClock())
    key, ts, sig = signed(ts=NOW + offset, method=method, path=path, body=body)
    if body:
        i = flip % len(body)
        bad = body[:i] + bytes([body[i] ^ 1 << (flip % 8)]) + body[i + 1 :]
        assert code_of(auth, key, ts, sig, method, path, bad) == AuthCode.INVALID_SIGNATURE
    assert auth.verify(key, ts, sig, method, path, body) == ACCOUNT
