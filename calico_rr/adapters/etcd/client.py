"""An etcd v3 client over etcd's HTTP/JSON gateway.

etcd serves its gRPC API as JSON on the client port (``POST /v3/kv/range`` etc.;
keys and values are base64, 64-bit integers are JSON strings).  That is all
calico-rr needs, so there is no gRPC or protobuf dependency: this module is a thin
layer of typed results (:mod:`~calico_rr.adapters.etcd.values`) and clear errors
(:mod:`~calico_rr.adapters.etcd.errors`) on top of :mod:`calico_rr.adapters.http`,
like the Kubernetes client.

Design decisions
----------------
* **Endpoints and failover.**  Requests go to the endpoint that answered last; when
  it cannot be reached the next one is tried.  The order is kept, so a recovered
  first endpoint is only used again when the current one fails.
* **Retries only where repeating is harmless.**  Reads (range, list pages, watch
  creation) are retried over every endpoint, ``retries`` more rounds with
  exponential backoff and full jitter, on transport errors and on etcd's
  ``Unavailable``/``DeadlineExceeded`` answers.  A write moves to the next endpoint
  only when the request cannot have been sent (connection refused, TLS handshake
  failed); once it may have reached etcd, a failure raises
  :class:`EtcdUnavailable` with ``maybe_applied=True`` and the caller re-reads:
  every write is a compare-and-swap on the mod revision, so re-reading and
  re-deciding is always safe, and blindly repeating never is.
* **Compare-and-swap.**  :meth:`EtcdClient.put_if` and :meth:`EtcdClient.delete_if`
  are one transaction each: "the key's mod revision is still N" (0: the key does not
  exist), else nothing is written and :class:`Conflict` carries what the key holds
  now.  A concurrent edit is never overwritten.
* **Watches.**  :meth:`EtcdClient.watch` returns a
  :class:`~calico_rr.adapters.etcd.watch.Watch` iterator of
  :class:`WatchEvent` and :class:`Progress` items that knows the revision to resume
  from (:attr:`Watch.next_revision`).  A start revision etcd has compacted away
  raises :class:`Compacted` (with etcd's compact revision): the caller lists again
  and watches from the list's revision + 1.  :meth:`Watch.close` works from any
  thread: it shuts the stream's socket down, which wakes a blocked reader at once.
  Each watch has its own connection (``Connection: close``), never a pooled one.
* **etcd's own authentication** (``username``/``password``, Calico's
  ``ETCD_USERNAME``/``ETCD_PASSWORD``).  The client asks each endpoint for a token
  (``/v3/auth/authenticate``) the first time it uses it and sends it as the
  ``Authorization`` header.  Tokens are per endpoint (etcd's default "simple" tokens
  live only in the member that issued them) and expire: a request refused for an
  invalid or outdated token was not applied, so the client drops the token,
  authenticates again and repeats the request once.  A wrong password or a missing
  permission is an :class:`EtcdAuthError` naming the user, never retried.
* **Errors name the endpoint.**  Transport and TLS failures are explained (not
  trusted, client certificate required or refused, not TLS, refused, timed out)
  with the endpoint and, for TLS, the setting to look at.
"""

from __future__ import annotations

import builtins
import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calico_rr.adapters.etcd.errors import (
    Conflict,
    EtcdAuthError,
    EtcdError,
    EtcdTLSError,
    EtcdUnavailable,
    Fenced,
    TransportFailure,
    decode_reply,
    explain,
    gateway_error,
    retryable,
    summary,
)
from calico_rr.adapters.etcd.values import (
    Fence,
    KeyValue,
    Lease,
    ListResult,
    b64,
    header_revision,
    int64,
    key_value,
    prefix_end,
)
from calico_rr.adapters.etcd.watch import Watch
from calico_rr.adapters.http import (
    BaseTransport,
    Client,
    Response,
    StreamingClient,
    Timeout,
    TransportError,
)
from calico_rr.errors import ConfigError

if TYPE_CHECKING:
    from calico_rr.adapters.etcd.config import EtcdSettings


def _tls_context(
    ca_file: Path | str | None, cert_file: Path | str | None, key_file: Path | str | None
) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"ETCD_CA_CERT_FILE {ca_file}: cannot load CA certificates: {exc}"
        ) from None
    if (cert_file is None) != (key_file is None):
        raise ConfigError("ETCD_CERT_FILE and ETCD_KEY_FILE must be given together")
    if cert_file is not None:
        try:
            ctx.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"ETCD_CERT_FILE {cert_file} / ETCD_KEY_FILE {key_file}: "
                f"cannot load the client certificate and key: {exc}"
            ) from None
    return ctx


@dataclass(slots=True)
class _Tries:
    """What went wrong so far in one operation's rounds over the endpoints."""

    failures: list[tuple[str, str]] = field(default_factory=list)  # (endpoint, reason)
    tls: bool = False  # some endpoint failed in TLS
    all_tls: bool = False  # every endpoint of this round failed in TLS

    def failed(self, endpoint: str, why: TransportFailure) -> None:
        self.failures.append((endpoint, why.reason))
        self.tls = self.tls or why.tls
        self.all_tls = self.all_tls and why.tls

    def error(self, op: str) -> EtcdUnavailable:
        cls = EtcdTLSError if self.tls else EtcdUnavailable
        return cls(summary(op, self.failures), failures=self.failures)


class EtcdClient(StreamingClient):
    """A synchronous etcd v3 client (thread-safe) over the JSON gateway.

    ``endpoints`` are base URLs (``https://10.0.0.1:2379``).  ``timeout`` bounds every
    request (connect and each read); ``watch_read_timeout`` bounds the silence on a
    watch stream (progress notifications, every 10 minutes by default in etcd,
    keep a healthy watch talking).  ``on_request(operation, endpoint, status)`` is
    called for every HTTP request sent (status 0: transport failure).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ca_file: Path | str | None = None,
        cert_file: Path | str | None = None,
        key_file: Path | str | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.1,
        watch_read_timeout: float | None = 900.0,
        transport: BaseTransport | None = None,
        on_request: Callable[[str, str, int], None] | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if not endpoints:
            raise ConfigError("no etcd endpoints given")
        if (username is None) != (password is None):
            raise ConfigError("an etcd user name and its password must be given together")
        self.username = username
        self._password = password
        self._tokens: dict[str, str] = {}
        self.endpoints = tuple(e.rstrip("/") for e in endpoints)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.watch_read_timeout = watch_read_timeout
        self.on_request = on_request
        verify: ssl.SSLContext | bool = True
        if any(e.startswith("https://") for e in self.endpoints) or cert_file or ca_file:
            verify = _tls_context(ca_file, cert_file, key_file)
        super().__init__(
            Client(verify=verify, timeout=Timeout(timeout), transport=transport, trust_env=False)
        )
        self._lock = threading.Lock()  # guards the tokens
        self._current = 0

    @classmethod
    def from_settings(cls, settings: EtcdSettings, **kwargs: Any) -> EtcdClient:
        return cls(
            settings.endpoints,
            ca_file=settings.ca_cert_file,
            cert_file=settings.cert_file,
            key_file=settings.key_file,
            username=settings.username,
            password=settings.password,
            **kwargs,
        )

    @property
    def current_endpoint(self) -> str:
        return self.endpoints[self._current]

    # -- the request loop --------------------------------------------------------

    def _count(self, op: str, endpoint: str, status: int) -> None:
        if self.on_request is not None:
            self.on_request(op, endpoint, status)

    def _rounds(self, count: int, tries: _Tries) -> Iterator[builtins.list[int]]:
        """Up to ``count`` rounds over the endpoints (each from the current one on),
        with a backoff before every round but the first.  A round in which every
        endpoint failed in TLS ends them: a TLS refusal does not go away by asking
        again."""
        for attempt in range(count):
            if attempt:
                if tries.all_tls:
                    return
                time.sleep(random.uniform(0, self.backoff * 2 ** (attempt - 1)))
            tries.all_tls = True
            start, n = self._current, len(self.endpoints)
            yield [(start + i) % n for i in range(n)]

    def _transport_failed(
        self, tries: _Tries, op: str, endpoint: str, exc: TransportError
    ) -> TransportFailure:
        self._count(op, endpoint, 0)
        why = explain(exc, self.timeout, endpoint)
        tries.failed(endpoint, why)
        return why

    def _post(self, endpoint: str, path: str, content: bytes) -> Response:
        return self._http.post(endpoint + path, content=content, headers=self._headers(endpoint))

    def _call(self, op: str, path: str, body: dict[str, Any], *, read: bool) -> dict[str, Any]:
        """POST ``body`` to ``path``; the decoded reply.  See the module doc for
        which failures move on to the next endpoint and which are retried."""
        tries = _Tries()
        content = json.dumps(body).encode()
        for order in self._rounds(self.retries + 1 if read else 1, tries):
            for index in order:
                endpoint = self.endpoints[index]
                try:
                    resp = self._post(endpoint, path, content)
                    if resp.status_code != 200 and self.username is not None:
                        first = gateway_error(decode_reply(resp, endpoint, op), resp, endpoint, op)
                        if self._stale_token(endpoint, first):
                            # Refused before it was applied: a new token, once more.
                            self._count(op, endpoint, resp.status_code)
                            resp = self._post(endpoint, path, content)
                except TransportError as exc:
                    why = self._transport_failed(tries, op, endpoint, exc)
                    if why.sent and not read:
                        raise EtcdUnavailable(
                            f"etcd {op} on {endpoint}: {why.reason}; it may or may not have "
                            "been applied (read the key again)",
                            failures=tries.failures,
                            maybe_applied=True,
                            endpoint=endpoint,
                        ) from exc
                    continue
                self._count(op, endpoint, resp.status_code)
                data = decode_reply(resp, endpoint, op)
                if resp.status_code == 200:
                    self._current = index
                    return data
                error = gateway_error(data, resp, endpoint, op)
                if read and retryable(error, resp):
                    tries.failures.append((endpoint, str(error)))
                    tries.all_tls = False
                    continue
                raise error
        raise tries.error(op)

    # -- authentication ---------------------------------------------------------

    def _headers(self, endpoint: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Request headers for ``endpoint``, with its token when a user is set
        (authenticating first if there is none yet).  Transport errors of the
        authentication propagate like the request's own."""
        headers = {"Content-Type": "application/json", **(extra or {})}
        if self.username is None:
            return headers
        with self._lock:
            token = self._tokens.get(endpoint)
        if token is None:
            token = self._authenticate(endpoint)
        headers["Authorization"] = token
        return headers

    def _authenticate(self, endpoint: str) -> str:
        body = json.dumps({"name": self.username, "password": self._password}).encode()
        resp = self._http.post(
            endpoint + "/v3/auth/authenticate",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        self._count("authenticate", endpoint, resp.status_code)
        data = decode_reply(resp, endpoint, "authenticate")
        token = data.get("token")
        if resp.status_code == 200 and isinstance(token, str) and token:
            with self._lock:
                self._tokens[endpoint] = token
            return token
        error = gateway_error(data, resp, endpoint, "authenticate")
        if retryable(error, resp):
            raise error
        if resp.status_code == 200:
            raise EtcdAuthError(
                f"etcd authenticate as {self.username!r} on {endpoint}: no token in the "
                "answer; is authentication enabled on this etcd (etcdctl auth enable)?",
                endpoint=endpoint,
            )
        raise EtcdAuthError(
            f"etcd authenticate as {self.username!r} on {endpoint}: {error} "
            "(check ETCD_USERNAME and ETCD_PASSWORD)",
            endpoint=endpoint,
            code=error.code,
        )

    def _stale_token(self, endpoint: str, error: EtcdError) -> bool:
        """Was ``error`` etcd refusing this endpoint's token (expired, or issued
        before the auth store changed)?  If so, forget the token."""
        if self.username is None:
            return False
        text = str(error)
        if "invalid auth token" in text or "auth store is old" in text:
            with self._lock:
                self._tokens.pop(endpoint, None)
            return True
        return False

    # -- reads -------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        data = self._call("get", "/v3/kv/range", {"key": b64(key)}, read=True)
        kvs = data.get("kvs") or []
        return key_value(kvs[0]) if kvs else None

    def list(self, prefix: str, *, page_size: int = 500) -> ListResult:
        """Every key under ``prefix`` as of one revision, fetched in pages of
        ``page_size`` (the first page fixes the revision; a compaction of it
        between pages raises :class:`Compacted`: list again)."""
        start = prefix.encode("utf-8", "surrogateescape")
        end = prefix_end(start)
        revision = 0
        out: list[KeyValue] = []
        while True:
            body: dict[str, Any] = {
                "key": b64(start),
                "range_end": b64(end),
                "limit": str(page_size),
            }
            if revision:
                body["revision"] = str(revision)
            data = self._call("list", "/v3/kv/range", body, read=True)
            if not revision:
                revision = header_revision(data)
            page = [key_value(raw) for raw in data.get("kvs") or []]
            out.extend(page)
            if not data.get("more") or not page:
                return ListResult(tuple(out), revision)
            start = page[-1].key.encode("utf-8", "surrogateescape") + b"\x00"

    # -- writes ------------------------------------------------------------------

    def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Unconditional write (tools and tests; the operator uses :meth:`put_if`).
        Returns the new revision."""
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return header_revision(self._call("put", "/v3/kv/put", body, read=False))

    def delete(self, key: str) -> bool:
        """Unconditional delete (tools and tests).  True when the key existed."""
        data = self._call("delete", "/v3/kv/deleterange", {"key": b64(key)}, read=False)
        return int64(data.get("deleted")) > 0

    def _txn_if(
        self,
        op: str,
        key: str,
        mod_revision: int,
        success: builtins.list[dict[str, Any]],
        fence: Fence | None = None,
    ) -> tuple[dict[str, Any], str]:
        compare: builtins.list[dict[str, Any]] = [
            {
                "key": b64(key),
                "target": "MOD",
                "result": "EQUAL",
                "mod_revision": str(mod_revision),
            }
        ]
        failure: builtins.list[dict[str, Any]] = [{"request_range": {"key": b64(key)}}]
        if fence is not None:
            # A missing fence key compares as lease 0, never equal to a granted lease.
            compare.append(
                {
                    "key": b64(fence.key),
                    "target": "LEASE",
                    "result": "EQUAL",
                    "lease": str(fence.lease),
                }
            )
            failure.append({"request_range": {"key": b64(fence.key)}})
        body = {"compare": compare, "success": success, "failure": failure}
        data = self._call(op, "/v3/kv/txn", body, read=False)
        endpoint = self.current_endpoint
        if not data.get("succeeded"):
            responses = data.get("responses") or [{}]

            def current(i: int) -> KeyValue | None:
                rows = responses[i] if len(responses) > i else {}
                kvs = (rows.get("response_range") or {}).get("kvs") or []
                return key_value(kvs[0]) if kvs else None

            if fence is not None:
                holder = current(1)
                if holder is None or holder.lease != fence.lease:
                    raise Fenced(fence, holder, endpoint=endpoint)
            raise Conflict(key, mod_revision, current(0), endpoint=endpoint)
        return data, endpoint

    def put_if(
        self,
        key: str,
        value: bytes,
        mod_revision: int,
        *,
        lease: int = 0,
        fence: Fence | None = None,
    ) -> KeyValue:
        """Write ``value`` only if the key is still at ``mod_revision`` (0: only if
        it does not exist) and, with ``fence``, only while the fence holds.  Returns
        the stored key; raises :class:`Conflict` or :class:`Fenced`."""
        if mod_revision < 0:
            raise ValueError("mod_revision must be >= 0")
        put: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            put["lease"] = str(lease)
        data, _ = self._txn_if(
            "put_if",
            key,
            mod_revision,
            [{"request_put": put}, {"request_range": {"key": b64(key)}}],
            fence,
        )
        responses = data.get("responses") or []
        kvs = (responses[1].get("response_range") or {}).get("kvs") if len(responses) > 1 else None
        if kvs:
            return key_value(kvs[0])
        rev = header_revision(data)  # cannot happen: the range ran in the same transaction
        return KeyValue(key, value, rev if mod_revision == 0 else 0, rev, 0, lease)

    def delete_if(self, key: str, mod_revision: int, *, fence: Fence | None = None) -> int:
        """Delete the key only if it is still at ``mod_revision`` (and, with
        ``fence``, only while the fence holds); the revision of the deletion.
        Raises :class:`Conflict` (changed or already gone) or :class:`Fenced`."""
        if mod_revision <= 0:
            raise ValueError("mod_revision must be > 0 (the revision the key was read at)")
        data, _ = self._txn_if(
            "delete_if", key, mod_revision, [{"request_delete_range": {"key": b64(key)}}], fence
        )
        return header_revision(data)

    def compact(self, revision: int, *, physical: bool = True) -> None:
        """Compact history before ``revision`` (tests and maintenance)."""
        body = {"revision": str(revision), "physical": physical}
        self._call("compact", "/v3/kv/compaction", body, read=False)

    # -- leases ------------------------------------------------------------------

    def grant(self, ttl: int) -> Lease:
        data = self._call("lease_grant", "/v3/lease/grant", {"TTL": str(ttl)}, read=False)
        if data.get("error"):
            raise EtcdError(f"lease grant: {data['error']}", endpoint=self.current_endpoint)
        return Lease(int64(data.get("ID")), int64(data.get("TTL")))

    def keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; its TTL afterwards, 0 when it no longer exists."""
        data = self._call(
            "lease_keepalive", "/v3/lease/keepalive", {"ID": str(lease_id)}, read=False
        )
        result = data.get("result")
        if not isinstance(result, dict):
            raise EtcdError(f"lease keepalive: unexpected reply {data!r}")
        return max(0, int64(result.get("TTL")))

    def time_to_live(self, lease_id: int) -> int:
        """Seconds the lease has left; -1 when it no longer exists."""
        data = self._call("lease_ttl", "/v3/lease/timetolive", {"ID": str(lease_id)}, read=True)
        return int64(data.get("TTL"))

    def revoke(self, lease_id: int) -> None:
        """End a lease now, deleting every key attached to it.
        Raises :class:`LeaseNotFound` when it has already gone."""
        self._call("lease_revoke", "/v3/lease/revoke", {"ID": str(lease_id)}, read=False)

    # -- watches -----------------------------------------------------------------

    def watch(
        self,
        prefix: str,
        start_revision: int = 0,
    ) -> Watch:
        """Watch every key under ``prefix`` from ``start_revision`` (0: from now on).

        Returns once etcd has confirmed the watch.  Iterate the result; a compacted
        ``start_revision`` raises :class:`Compacted` on the first ``next()``.
        """
        raw = prefix.encode("utf-8", "surrogateescape")
        create: dict[str, Any] = {
            "key": b64(raw),
            "range_end": b64(prefix_end(raw)),
            "progress_notify": True,
        }
        if start_revision:
            create["start_revision"] = str(start_revision)
        content = json.dumps({"create_request": create}).encode()
        tries = _Tries()
        for queue in self._rounds(self.retries + 1, tries):
            renewed: set[int] = set()  # endpoints whose token was renewed this round
            while queue:
                index = queue.pop(0)
                endpoint = self.endpoints[index]
                try:
                    resp = self._stream(endpoint, "/v3/watch", content)
                except TransportError as exc:
                    self._transport_failed(tries, "watch", endpoint, exc)
                    continue
                self._count("watch", endpoint, resp.status_code)
                tries.all_tls = False
                if resp.status_code != 200:
                    resp.read()
                    resp.close()
                    data = decode_reply(resp, endpoint, "watch")
                    error = gateway_error(data, resp, endpoint, "watch")
                    if retryable(error, resp):
                        tries.failures.append((endpoint, str(error)))
                        continue
                else:
                    w = Watch(
                        resp,
                        self._forget,
                        endpoint,
                        prefix,
                        start_revision,
                        self.watch_read_timeout or 0.0,
                    )
                    try:
                        w.wait_created()
                    except EtcdUnavailable as exc:
                        tries.failures.append((endpoint, str(exc)))
                        tries.tls = tries.tls or isinstance(exc, EtcdTLSError)
                        continue
                    except EtcdError as exc:
                        error = exc
                    else:
                        self._current = index
                        self._track(w)
                        return w
                if index in renewed or not self._stale_token(endpoint, error):
                    raise error
                renewed.add(index)
                queue.insert(0, index)  # once more with a new token
        raise tries.error("watch")

    def _stream(self, endpoint: str, path: str, content: bytes) -> Response:
        """POST with the answer streamed, on a connection of its own: closing the
        stream shuts that connection's socket down, which must never hit a pooled
        connection another request is using."""
        request = self._http.build_request(
            "POST",
            endpoint + path,
            content=content,
            headers=self._headers(endpoint, {"Connection": "close"}),
            timeout=Timeout(self.timeout, read=self.watch_read_timeout),
        )
        return self._http.send(request, stream=True)
