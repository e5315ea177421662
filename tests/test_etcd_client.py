"""adapters.etcd.client without a server: failover and retry rules, error
explanations, watch revision bookkeeping (httpx.MockTransport plays the gateway).
The same behaviour on a real etcd is in tests/integration/test_etcd_client.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import (
    Compacted,
    Conflict,
    EtcdAuthError,
    EtcdError,
    EtcdTLSError,
    EtcdUnavailable,
)
from calico_rr.adapters.etcd.values import EventType, Progress, WatchEvent, prefix_end
from calico_rr.errors import ConfigError

A = "http://a:2379"
B = "http://b:2379"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kv(key: str, value: str, rev: int) -> dict[str, Any]:
    return {
        "key": b64(key),
        "value": b64(value),
        "create_revision": str(rev),
        "mod_revision": str(rev),
        "version": "1",
    }


Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, *endpoints: str, retries: int = 2) -> EtcdClient:
    return EtcdClient(
        endpoints or (A, B),
        transport=httpx.MockTransport(handler),
        retries=retries,
        backoff=0.0,
    )


def range_reply(*kvs: dict[str, Any], rev: int = 7) -> httpx.Response:
    return httpx.Response(200, json={"header": {"revision": str(rev)}, "kvs": list(kvs)})


@given(prefix=st.binary(max_size=4), key=st.binary(max_size=6))
def test_prefix_end_covers_exactly_the_prefix(prefix: bytes, key: bytes) -> None:
    end = prefix_end(prefix)
    inside = prefix <= key and (end == b"\x00" or key < end)
    assert inside == key.startswith(prefix)


def test_reads_fail_over_and_stay_on_the_endpoint_that_answered() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.host)
        if req.url.host == "a":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=req)
        return range_reply(kv("/k", "v", 3))

    c = client(handler)
    got = c.get("/k")
    assert got is not None and (got.value, got.mod_revision) == (b"v", 3)
    assert c.current_endpoint == B
    c.get("/k")
    assert calls == ["a", "b", "b"]


def test_a_read_is_retried_after_a_broken_connection() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.host)
        if len(calls) == 1:
            raise httpx.ReadError("connection reset by peer", request=req)
        return range_reply()

    assert client(handler).get("/k") is None
    assert calls == ["a", "b"]


def test_a_write_that_may_have_reached_etcd_is_not_repeated() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.host)
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    with pytest.raises(EtcdUnavailable, match="may or may not have been applied") as info:
        client(handler).put_if("/k", b"v", 0)
    assert info.value.maybe_applied and info.value.endpoint == A
    assert calls == ["a"]  # never sent again, not to B either


def test_a_write_moves_on_when_it_was_never_sent() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.host)
        if req.url.host == "a":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=req)
        body = json.loads(req.content)
        assert body["compare"][0]["mod_revision"] == "0"
        reply = {"response_range": {"kvs": [kv("/k", "v", 9)]}}
        return httpx.Response(
            200,
            json={"header": {"revision": "9"}, "succeeded": True, "responses": [{}, reply]},
        )

    stored = client(handler).put_if("/k", b"v", 0)
    assert (stored.key, stored.create_revision, stored.mod_revision) == ("/k", 9, 9)
    assert calls == ["a", "b"]


def test_every_endpoint_down_is_one_error_naming_each() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.host)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=req)

    with pytest.raises(EtcdUnavailable) as info:
        client(handler, retries=2).list("/calico/")
    message = str(info.value)
    assert f"{A}: connection refused" in message and f"{B}: connection refused" in message
    assert calls == ["a", "b"] * 3  # 1 + 2 retries, each over both endpoints
    assert not info.value.maybe_applied


def test_tls_refusals_are_explained_and_not_retried() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.host)
        raise httpx.ConnectError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", request=req
        )

    with pytest.raises(EtcdTLSError, match="set ETCD_CA_CERT_FILE") as info:
        client(handler).get("/k")
    assert A in str(info.value) and B in str(info.value)
    assert calls == ["a", "b"]


def test_unavailable_answers_are_retried_for_reads_only() -> None:
    answers = iter(
        [
            httpx.Response(503, json={"code": 14, "message": "etcdserver: leader changed"}),
            range_reply(kv("/k", "v", 2)),
        ]
    )
    assert client(lambda req: next(answers)).get("/k") is not None

    def unavailable(req: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"code": 14, "message": "etcdserver: request timed out"})

    with pytest.raises(EtcdError, match="request timed out") as info:
        client(unavailable).put("/k", b"v")
    assert info.value.code == 14


def test_failed_compare_is_a_conflict_carrying_the_current_value() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        current = {"response_range": {"kvs": [kv("/k", "theirs", 12)]}}
        return httpx.Response(
            200, json={"header": {"revision": "12"}, "succeeded": False, "responses": [current]}
        )

    with pytest.raises(Conflict, match="expected at mod revision 5") as info:
        client(handler).put_if("/k", b"mine", 5)
    assert info.value.current is not None and info.value.current.value == b"theirs"
    with pytest.raises(ValueError, match="must be > 0"):
        client(handler).delete_if("/k", 0)


def test_compacted_revision_on_a_read() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        message = "etcdserver: mvcc: required revision has been compacted"
        return httpx.Response(400, json={"code": 11, "message": message})

    with pytest.raises(Compacted):
        client(handler).list("/p/")


def stream(*results: dict[str, Any]) -> bytes:
    return b"".join(json.dumps({"result": r}).encode() + b"\n" for r in results)


def ev(key: str, rev: int, kind: str = "PUT") -> dict[str, Any]:
    raw: dict[str, Any] = {"kv": kv(key, "x", rev)}
    if kind == "DELETE":
        raw = {"type": "DELETE", "kv": {"key": b64(key), "mod_revision": str(rev)}}
    return raw


def test_watch_revision_bookkeeping() -> None:
    body = stream(
        {"header": {"revision": "20"}, "created": True, "watch_id": "0"},
        {"header": {"revision": "20"}, "events": [ev("/p/a", 11)]},
        # one transaction touching two keys: one revision, two events
        {"header": {"revision": "20"}, "events": [ev("/p/b", 12), ev("/p/c", 12, "DELETE")]},
        {"header": {"revision": "25"}},  # progress
    )
    seen_body: list[dict[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen_body.append(json.loads(req.content))
        assert req.headers["connection"] == "close"
        return httpx.Response(200, content=body)

    w = client(handler).watch("/p/", 10)
    assert seen_body[0]["create_request"]["start_revision"] == "10"
    assert seen_body[0]["create_request"]["range_end"] == b64("/p0")
    assert w.next_revision == 10  # "created" says nothing about delivery from 10
    first = next(w)
    assert isinstance(first, WatchEvent) and first.revision == 11 and w.next_revision == 12
    second = next(w)
    assert isinstance(second, WatchEvent) and second.kv.key == "/p/b"
    assert w.next_revision == 12  # revision 12 is only half delivered
    third = next(w)
    assert isinstance(third, WatchEvent) and third.type == EventType.DELETE
    assert w.next_revision == 13
    progress = next(w)
    assert progress == Progress(25) and w.next_revision == 26
    with pytest.raises(EtcdUnavailable, match="resume from revision 26"):
        next(w)  # the server ended the stream: not a normal end


def test_watch_from_now_and_compaction() -> None:
    created = {"header": {"revision": "30"}, "created": True, "watch_id": "1"}
    w = client(lambda req: httpx.Response(200, content=stream(created))).watch("/p/")
    assert w.next_revision == 31
    w.close()
    assert list(w) == []

    cancel = {"header": {}, "canceled": True, "compact_revision": "40"}
    w = client(lambda req: httpx.Response(200, content=stream(created, cancel))).watch("/p/", 5)
    with pytest.raises(Compacted, match="compacted history up to revision 40") as info:
        next(w)
    assert info.value.compact_revision == 40


# -- etcd users: tokens per endpoint, renewed once when refused ----------------------------


def auth_client(handler: Handler, *endpoints: str) -> EtcdClient:
    return EtcdClient(
        endpoints or (A, B),
        transport=httpx.MockTransport(handler),
        retries=0,
        backoff=0.0,
        username="rr",
        password="pw",
    )


def test_token_is_fetched_per_endpoint_sent_and_renewed_once_when_refused() -> None:
    seen: list[tuple[str, str, str | None]] = []
    issued = {"n": 0}
    valid: set[str] = set()

    def handler(req: httpx.Request) -> httpx.Response:
        token = req.headers.get("authorization")
        seen.append((req.url.host, req.url.path, token))
        if req.url.path == "/v3/auth/authenticate":
            assert json.loads(req.content) == {"name": "rr", "password": "pw"}
            issued["n"] += 1
            new = f"{req.url.host}-tok{issued['n']}"
            valid.add(new)
            return httpx.Response(200, json={"token": new})
        if token not in valid:
            return httpx.Response(
                401, json={"code": 16, "message": "etcdserver: invalid auth token"}
            )
        return range_reply(kv("/k", "v", 3))

    c = auth_client(handler)
    assert c.get("/k") is not None
    assert seen == [
        ("a", "/v3/auth/authenticate", None),
        ("a", "/v3/kv/range", "a-tok1"),
    ]
    valid.clear()  # etcd forgot every token (TTL, restart)
    seen.clear()
    assert c.get("/k") is not None
    assert [s[1:] for s in seen] == [
        ("/v3/kv/range", "a-tok1"),
        ("/v3/auth/authenticate", None),
        ("/v3/kv/range", "a-tok2"),
    ]


def test_a_write_refused_for_its_token_is_repeated_once_not_forever() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.path)
        if req.url.path == "/v3/auth/authenticate":
            return httpx.Response(200, json={"token": "t"})
        return httpx.Response(
            400, json={"code": 3, "message": "etcdserver: revision of auth store is old"}
        )

    c = auth_client(handler, A)
    with pytest.raises(EtcdAuthError, match="auth store is old"):
        c.put("/k", b"v")
    assert calls == [
        "/v3/auth/authenticate",
        "/v3/kv/put",
        "/v3/auth/authenticate",
        "/v3/kv/put",
    ]


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (
            400,
            {
                "code": 3,
                "message": "etcdserver: authentication failed, invalid user ID or password",
            },
            "check ETCD_USERNAME and ETCD_PASSWORD",
        ),
        (200, {"header": {}}, "is authentication enabled"),
    ],
)
def test_authentication_failures_name_the_user(
    status: int, body: dict[str, Any], match: str
) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        assert req.url.path == "/v3/auth/authenticate"
        return httpx.Response(status, json=body)

    with pytest.raises(EtcdAuthError, match=match) as info:
        auth_client(handler, A).get("/k")
    assert "'rr'" in str(info.value)


def test_permission_denied_is_an_auth_error_with_a_hint() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"code": 7, "message": "etcdserver: permission denied"})

    with pytest.raises(EtcdAuthError, match="lacks a permission"):
        client(handler, A).get("/k")


def test_user_without_password_is_refused() -> None:
    with pytest.raises(ConfigError, match="together"):
        EtcdClient((A,), username="rr")
