"""An etcd v3 client over etcd's HTTP/JSON gateway, on httpx.

etcd serves its gRPC API as JSON on the client port (``POST /v3/kv/range`` etc.;
keys and values are base64, 64-bit integers are JSON strings).  That is all
calico-rr needs, so there is no gRPC or protobuf dependency: this module is a thin
layer of typed results and clear errors on top of httpx, like the Kubernetes client.

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
* **Watches.**  :meth:`EtcdClient.watch` returns a :class:`Watch` iterator of
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

import base64
import builtins
import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from calico_rr.adapters.stream import ResponseStream
from calico_rr.errors import CalicoRRError, ConfigError

if TYPE_CHECKING:
    from calico_rr.adapters.etcd.config import EtcdSettings

log = logging.getLogger(__name__)

__all__ = [
    "Compacted",
    "Conflict",
    "EtcdAuthError",
    "EtcdClient",
    "EtcdError",
    "EtcdTLSError",
    "EtcdUnavailable",
    "EventType",
    "Fence",
    "Fenced",
    "KeyValue",
    "Lease",
    "LeaseNotFound",
    "ListResult",
    "Progress",
    "Watch",
    "WatchEvent",
    "prefix_end",
]

#: gRPC status codes etcd's gateway reports (google.golang.org/grpc/codes).
GRPC_NOT_FOUND = 5
GRPC_DEADLINE_EXCEEDED = 4
GRPC_OUT_OF_RANGE = 11
GRPC_UNAVAILABLE = 14
GRPC_PERMISSION_DENIED = 7
GRPC_UNAUTHENTICATED = 16
_RETRYABLE_CODES = frozenset({GRPC_DEADLINE_EXCEEDED, GRPC_UNAVAILABLE})


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class EtcdError(CalicoRRError):
    """An etcd request failed; ``endpoint`` is the URL that answered (if any),
    ``code`` the gRPC status code etcd gave (if any)."""

    def __init__(self, message: str, *, endpoint: str | None = None, code: int | None = None):
        super().__init__(message)
        self.endpoint = endpoint
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint could serve the request.  ``failures`` lists (endpoint, reason);
    ``maybe_applied`` is True when a write may have reached etcd before failing
    (re-read before deciding again)."""

    def __init__(
        self,
        message: str,
        *,
        failures: Sequence[tuple[str, str]] = (),
        maybe_applied: bool = False,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.failures = tuple(failures)
        self.maybe_applied = maybe_applied


class EtcdAuthError(EtcdError):
    """etcd refused the user: a wrong name or password, authentication not enabled
    for a user that was given, or a missing permission.  Asking again does not help."""


class EtcdTLSError(EtcdUnavailable):
    """Every endpoint failed, at least one of them in the TLS handshake."""


class Conflict(EtcdError):
    """A compare-and-swap found the key changed: nothing was written.
    ``current`` is what the key holds now (None: it does not exist)."""

    def __init__(self, key: str, expected: int, current: KeyValue | None, *, endpoint: str):
        now = "does not exist" if current is None else f"is at mod revision {current.mod_revision}"
        want = "to be absent" if expected == 0 else f"at mod revision {expected}"
        super().__init__(f"{key}: expected {want}, but it {now}", endpoint=endpoint)
        self.key = key
        self.expected = expected
        self.current = current


class Fenced(EtcdError):
    """A fenced write found the fence key not held under the fence's lease (the
    leader key gone or taken over): nothing was written.  The writer is no longer
    the leader, whatever its own elector believes."""

    def __init__(self, fence: Fence, holder: KeyValue | None, *, endpoint: str):
        now = (
            "does not exist"
            if holder is None
            else f"is held under lease {holder.lease:x} ({holder.value.decode(errors='replace')})"
        )
        super().__init__(
            f"not written: fence {fence.key} is not held under our lease {fence.lease:x}; it {now}",
            endpoint=endpoint,
        )
        self.fence = fence
        self.holder = holder


class Compacted(EtcdError):
    """The requested revision was compacted away: list again, then watch from the
    list's revision + 1.  ``compact_revision`` is etcd's (0 when etcd did not say)."""

    def __init__(self, message: str, compact_revision: int, *, endpoint: str | None = None):
        super().__init__(message, endpoint=endpoint, code=GRPC_OUT_OF_RANGE)
        self.compact_revision = compact_revision


class LeaseNotFound(EtcdError):
    """The lease does not exist (expired or revoked)."""


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fence:
    """A write condition: ``key`` exists and is attached to ``lease`` (the leader
    key under the leader's lease).  A write carrying a fence lands only while the
    writer still holds leadership in etcd itself: one transaction, no window
    between "am I the leader?" and the write."""

    key: str
    lease: int


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    def json(self) -> Any:
        return json.loads(self.value)


@dataclass(frozen=True, slots=True)
class ListResult:
    """Every key under a prefix, in key order, as of ``revision`` (one snapshot)."""

    kvs: tuple[KeyValue, ...]
    revision: int


class EventType(StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change.  For DELETE, ``kv`` holds only the key and the deletion's revision."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class Progress:
    """Every change up to ``revision`` has been delivered (a progress notification)."""

    revision: int


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int


# ---------------------------------------------------------------------------
# Encoding helpers
# ---------------------------------------------------------------------------


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object) -> bytes:
    return base64.b64decode(str(text)) if text else b""


def _int(value: object) -> int:
    """A protobuf int64 in JSON: a string (or a number); absent means 0."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(raw.get("key")).decode("utf-8", "surrogateescape"),
        value=_unb64(raw.get("value")),
        create_revision=_int(raw.get("create_revision")),
        mod_revision=_int(raw.get("mod_revision")),
        version=_int(raw.get("version")),
        lease=_int(raw.get("lease")),
    )


def _revision(data: dict[str, Any]) -> int:
    return _int((data.get("header") or {}).get("revision"))


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # an empty prefix (or all 0xff): to the end of the keyspace


# ---------------------------------------------------------------------------
# Explaining transport failures
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: str
    tls: bool  # the TLS handshake failed or the server refused us in it
    sent: bool  # the request may have reached etcd


def _explain(exc: httpx.TransportError, timeout: float, endpoint: str) -> _Failure:
    text = str(exc) or repr(exc)
    upper = text.upper()
    if "CERTIFICATE_VERIFY_FAILED" in upper:
        return _Failure(
            f"the server's TLS certificate is not trusted ({text}); "
            "set ETCD_CA_CERT_FILE to the CA that signed it",
            tls=True,
            sent=False,
        )
    if "CERTIFICATE_REQUIRED" in upper or "CERTIFICATE REQUIRED" in upper:
        return _Failure(
            "the server requires a client certificate (set ETCD_CERT_FILE and ETCD_KEY_FILE)",
            tls=True,
            sent=False,
        )
    if any(s in upper for s in ("BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN")):
        return _Failure(
            f"the server refused our client certificate ({text}); check ETCD_CERT_FILE",
            tls=True,
            sent=False,
        )
    if "WRONG_VERSION_NUMBER" in upper or "RECORD_LAYER_FAILURE" in upper:
        return _Failure(
            f"the endpoint does not speak TLS ({text}); use an http:// URL?", tls=True, sent=False
        )
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return _Failure(f"connection timed out after {timeout:g}s", tls=False, sent=False)
    if isinstance(exc, httpx.ConnectError):
        if "SSL" in upper or "TLS" in upper:
            return _Failure(f"TLS handshake failed ({text})", tls=True, sent=False)
        if "REFUSED" in upper:
            return _Failure("connection refused (is etcd listening there?)", tls=False, sent=False)
        return _Failure(f"cannot connect ({text})", tls=False, sent=False)
    if isinstance(exc, httpx.TimeoutException):
        return _Failure(f"no answer within {timeout:g}s", tls=False, sent=True)
    if "SSL" in upper or "TLSV1" in upper:
        return _Failure(f"TLS error ({text})", tls=True, sent=False)
    if endpoint.startswith("http://") and "WITHOUT SENDING A RESPONSE" in upper:
        # etcd serving TLS closes a plain-HTTP connection without a word.
        text += "; does the endpoint expect https://?"
    return _Failure(f"connection broken ({text})", tls=False, sent=True)


def _summary(what: str, failures: Sequence[tuple[str, str]]) -> str:
    parts = "; ".join(f"{ep}: {reason}" for ep, reason in dict.fromkeys(failures))
    return f"etcd {what} failed on every endpoint: {parts}"


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------


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


class EtcdClient:
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
        page_size: int = 500,
        transport: httpx.BaseTransport | None = None,
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
        self.page_size = page_size
        self.on_request = on_request
        verify: ssl.SSLContext | bool = True
        if any(e.startswith("https://") for e in self.endpoints) or cert_file or ca_file:
            verify = _tls_context(ca_file, cert_file, key_file)
        self._http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            trust_env=False,
        )
        self._lock = threading.Lock()
        self._current = 0
        self._watches: set[Watch] = set()

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

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.close()
        self._http.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the request loop --------------------------------------------------------

    def _count(self, op: str, endpoint: str, status: int) -> None:
        if self.on_request is not None:
            self.on_request(op, endpoint, status)

    def _order(self) -> list[int]:
        start = self._current
        n = len(self.endpoints)
        return [(start + i) % n for i in range(n)]

    def _sleep(self, attempt: int) -> None:
        time.sleep(random.uniform(0, self.backoff * 2**attempt))

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
        data = self._decode(resp, endpoint, "authenticate")
        token = data.get("token")
        if resp.status_code == 200 and isinstance(token, str) and token:
            with self._lock:
                self._tokens[endpoint] = token
            return token
        error = self._gateway_error(data, resp, endpoint, "authenticate")
        if error.code in _RETRYABLE_CODES or resp.status_code == 503:
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

    def _call(self, op: str, path: str, body: dict[str, Any], *, read: bool) -> dict[str, Any]:
        """POST ``body`` to ``path``; the decoded reply.  See the module doc for
        which failures move on to the next endpoint and which are retried."""
        failures: list[tuple[str, str]] = []
        tls = False
        content = json.dumps(body).encode()
        rounds = self.retries + 1 if read else 1
        all_tls = False
        for attempt in range(rounds):
            if attempt:
                if all_tls:
                    break  # a TLS refusal does not go away by asking again
                self._sleep(attempt - 1)
            all_tls = True
            for index in self._order():
                endpoint = self.endpoints[index]
                try:
                    resp = self._http.post(
                        endpoint + path, content=content, headers=self._headers(endpoint)
                    )
                    if resp.status_code != 200 and self.username is not None:
                        first = self._gateway_error(
                            self._decode(resp, endpoint, op), resp, endpoint, op
                        )
                        if self._stale_token(endpoint, first):
                            # Refused before it was applied: a new token, once more.
                            self._count(op, endpoint, resp.status_code)
                            resp = self._http.post(
                                endpoint + path, content=content, headers=self._headers(endpoint)
                            )
                except httpx.TransportError as exc:
                    self._count(op, endpoint, 0)
                    why = _explain(exc, self.timeout, endpoint)
                    failures.append((endpoint, why.reason))
                    tls = tls or why.tls
                    all_tls = all_tls and why.tls
                    if why.sent and not read:
                        raise EtcdUnavailable(
                            f"etcd {op} on {endpoint}: {why.reason}; it may or may not have "
                            "been applied (read the key again)",
                            failures=failures,
                            maybe_applied=True,
                            endpoint=endpoint,
                        ) from exc
                    continue
                self._count(op, endpoint, resp.status_code)
                data = self._decode(resp, endpoint, op)
                if resp.status_code == 200:
                    self._current = index
                    return data
                error = self._gateway_error(data, resp, endpoint, op)
                if read and (error.code in _RETRYABLE_CODES or resp.status_code == 503):
                    failures.append((endpoint, str(error)))
                    all_tls = False
                    continue
                raise error
        cls = EtcdTLSError if tls else EtcdUnavailable
        raise cls(_summary(op, failures), failures=failures)

    @staticmethod
    def _decode(resp: httpx.Response, endpoint: str, op: str) -> dict[str, Any]:
        text = resp.text
        try:
            data = json.loads(text.splitlines()[0] if "\n" in text.strip() else text)
        except (ValueError, IndexError):
            if resp.status_code == 400 and "HTTPS server" in text:
                raise EtcdTLSError(
                    f"etcd {op} on {endpoint}: the endpoint speaks TLS; use an https:// URL",
                    failures=[(endpoint, text.strip())],
                    endpoint=endpoint,
                ) from None
            if resp.status_code == 400 and "CommonName of client" in text:
                raise EtcdAuthError(
                    f"etcd {op} on {endpoint}: with authentication enabled, etcd refuses "
                    "JSON-gateway requests (the API calico-rr uses) from a client certificate "
                    "that has a CommonName; use a client certificate without a CN together "
                    "with ETCD_USERNAME/ETCD_PASSWORD (docs/ETCD.md)",
                    endpoint=endpoint,
                ) from None
            raise EtcdError(
                f"etcd {op} on {endpoint}: HTTP {resp.status_code}, not JSON: {text[:200]!r}",
                endpoint=endpoint,
            ) from None
        if not isinstance(data, dict):
            raise EtcdError(f"etcd {op} on {endpoint}: unexpected reply {text[:200]!r}")
        return data

    @staticmethod
    def _gateway_error(
        data: dict[str, Any], resp: httpx.Response, endpoint: str, op: str
    ) -> EtcdError:
        inner = data.get("error")
        err: dict[str, Any] = inner if isinstance(inner, dict) else data
        code = err.get("code", err.get("grpc_code"))
        message = str(err.get("message") or err.get("error") or resp.reason_phrase)
        code_int = code if isinstance(code, int) else None
        text = f"etcd {op} on {endpoint}: {message} (HTTP {resp.status_code}, code {code})"
        if "compacted" in message:
            return Compacted(text, 0, endpoint=endpoint)
        if "lease not found" in message:
            return LeaseNotFound(text, endpoint=endpoint, code=code_int)
        if code_int == GRPC_PERMISSION_DENIED or "permission denied" in message:
            return EtcdAuthError(
                f"{text}: the etcd user (ETCD_USERNAME, or the client certificate's common "
                "name) lacks a permission; docs/ETCD.md lists the role calico-rr needs",
                endpoint=endpoint,
                code=code_int,
            )
        if code_int == GRPC_UNAUTHENTICATED or any(
            w in message
            for w in ("user name", "invalid user", "auth token", "auth store", "authentication")
        ):
            return EtcdAuthError(text, endpoint=endpoint, code=code_int)
        return EtcdError(text, endpoint=endpoint, code=code_int)

    # -- reads -------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        data = self._call("get", "/v3/kv/range", {"key": _b64(key)}, read=True)
        kvs = data.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def list(self, prefix: str, *, page_size: int | None = None) -> ListResult:
        """Every key under ``prefix`` as of one revision, fetched in pages of
        ``page_size`` (the first page fixes the revision; a compaction of it
        between pages raises :class:`Compacted`: list again)."""
        limit = page_size or self.page_size
        start = prefix.encode("utf-8", "surrogateescape")
        end = prefix_end(start)
        revision = 0
        out: list[KeyValue] = []
        while True:
            body: dict[str, Any] = {
                "key": _b64(start),
                "range_end": _b64(end),
                "limit": str(limit),
            }
            if revision:
                body["revision"] = str(revision)
            data = self._call("list", "/v3/kv/range", body, read=True)
            if not revision:
                revision = _revision(data)
            page = [_kv(raw) for raw in data.get("kvs") or []]
            out.extend(page)
            if not data.get("more") or not page:
                return ListResult(tuple(out), revision)
            start = page[-1].key.encode("utf-8", "surrogateescape") + b"\x00"

    # -- writes ------------------------------------------------------------------

    def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Unconditional write (tools and tests; the operator uses :meth:`put_if`).
        Returns the new revision."""
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        return _revision(self._call("put", "/v3/kv/put", body, read=False))

    def delete(self, key: str) -> bool:
        """Unconditional delete (tools and tests).  True when the key existed."""
        data = self._call("delete", "/v3/kv/deleterange", {"key": _b64(key)}, read=False)
        return _int(data.get("deleted")) > 0

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
                "key": _b64(key),
                "target": "MOD",
                "result": "EQUAL",
                "mod_revision": str(mod_revision),
            }
        ]
        failure: builtins.list[dict[str, Any]] = [{"request_range": {"key": _b64(key)}}]
        if fence is not None:
            # A missing fence key compares as lease 0, never equal to a granted lease.
            compare.append(
                {
                    "key": _b64(fence.key),
                    "target": "LEASE",
                    "result": "EQUAL",
                    "lease": str(fence.lease),
                }
            )
            failure.append({"request_range": {"key": _b64(fence.key)}})
        body = {"compare": compare, "success": success, "failure": failure}
        data = self._call(op, "/v3/kv/txn", body, read=False)
        endpoint = self.current_endpoint
        if not data.get("succeeded"):
            responses = data.get("responses") or [{}]

            def current(i: int) -> KeyValue | None:
                rows = responses[i] if len(responses) > i else {}
                kvs = (rows.get("response_range") or {}).get("kvs") or []
                return _kv(kvs[0]) if kvs else None

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
        put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            put["lease"] = str(lease)
        data, _ = self._txn_if(
            "put_if",
            key,
            mod_revision,
            [{"request_put": put}, {"request_range": {"key": _b64(key)}}],
            fence,
        )
        responses = data.get("responses") or []
        kvs = (responses[1].get("response_range") or {}).get("kvs") if len(responses) > 1 else None
        if kvs:
            return _kv(kvs[0])
        rev = _revision(data)  # cannot happen: the range ran in the same transaction
        return KeyValue(key, value, rev if mod_revision == 0 else 0, rev, 0, lease)

    def delete_if(self, key: str, mod_revision: int, *, fence: Fence | None = None) -> int:
        """Delete the key only if it is still at ``mod_revision`` (and, with
        ``fence``, only while the fence holds); the revision of the deletion.
        Raises :class:`Conflict` (changed or already gone) or :class:`Fenced`."""
        if mod_revision <= 0:
            raise ValueError("mod_revision must be > 0 (the revision the key was read at)")
        data, _ = self._txn_if(
            "delete_if", key, mod_revision, [{"request_delete_range": {"key": _b64(key)}}], fence
        )
        return _revision(data)

    def compact(self, revision: int, *, physical: bool = True) -> None:
        """Compact history before ``revision`` (tests and maintenance)."""
        body = {"revision": str(revision), "physical": physical}
        self._call("compact", "/v3/kv/compaction", body, read=False)

    # -- leases ------------------------------------------------------------------

    def grant(self, ttl: int) -> Lease:
        data = self._call("lease_grant", "/v3/lease/grant", {"TTL": str(ttl)}, read=False)
        if data.get("error"):
            raise EtcdError(f"lease grant: {data['error']}", endpoint=self.current_endpoint)
        return Lease(_int(data.get("ID")), _int(data.get("TTL")))

    def keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; its TTL afterwards, 0 when it no longer exists."""
        data = self._call(
            "lease_keepalive", "/v3/lease/keepalive", {"ID": str(lease_id)}, read=False
        )
        result = data.get("result")
        if not isinstance(result, dict):
            raise EtcdError(f"lease keepalive: unexpected reply {data!r}")
        return max(0, _int(result.get("TTL")))

    def time_to_live(self, lease_id: int) -> int:
        """Seconds the lease has left; -1 when it no longer exists."""
        data = self._call("lease_ttl", "/v3/lease/timetolive", {"ID": str(lease_id)}, read=True)
        return _int(data.get("TTL"))

    def revoke(self, lease_id: int) -> None:
        """End a lease now, deleting every key attached to it.
        Raises :class:`LeaseNotFound` when it has already gone."""
        self._call("lease_revoke", "/v3/lease/revoke", {"ID": str(lease_id)}, read=False)

    # -- watches -----------------------------------------------------------------

    def watch(
        self,
        prefix: str,
        start_revision: int = 0,
        *,
        prev_kv: bool = False,
        progress_notify: bool = True,
    ) -> Watch:
        """Watch every key under ``prefix`` from ``start_revision`` (0: from now on).

        Returns once etcd has confirmed the watch.  Iterate the result; a compacted
        ``start_revision`` raises :class:`Compacted` on the first ``next()``.
        """
        raw = prefix.encode("utf-8", "surrogateescape")
        create: dict[str, Any] = {
            "key": _b64(raw),
            "range_end": _b64(prefix_end(raw)),
            "progress_notify": progress_notify,
            "prev_kv": prev_kv,
        }
        if start_revision:
            create["start_revision"] = str(start_revision)
        content = json.dumps({"create_request": create}).encode()
        timeout = httpx.Timeout(self.timeout, read=self.watch_read_timeout)
        failures: list[tuple[str, str]] = []
        tls = all_tls = False
        for attempt in range(self.retries + 1):
            if attempt:
                if all_tls:
                    break
                self._sleep(attempt - 1)
            all_tls = True
            queue = self._order()
            renewed: set[int] = set()  # endpoints whose token was renewed this round
            while queue:
                index = queue.pop(0)
                endpoint = self.endpoints[index]
                try:
                    request = self._http.build_request(
                        "POST",
                        endpoint + "/v3/watch",
                        content=content,
                        headers=self._headers(endpoint, {"Connection": "close"}),
                        timeout=timeout,
                    )
                    resp = self._http.send(request, stream=True)
                except httpx.TransportError as exc:
                    self._count("watch", endpoint, 0)
                    why = _explain(exc, self.timeout, endpoint)
                    failures.append((endpoint, why.reason))
                    tls = tls or why.tls
                    all_tls = all_tls and why.tls
                    continue
                self._count("watch", endpoint, resp.status_code)
                all_tls = False
                if resp.status_code != 200:
                    resp.read()
                    resp.close()
                    data = self._decode(resp, endpoint, "watch")
                    error = self._gateway_error(data, resp, endpoint, "watch")
                    if error.code in _RETRYABLE_CODES or resp.status_code == 503:
                        failures.append((endpoint, str(error)))
                        continue
                    if index not in renewed and self._stale_token(endpoint, error):
                        renewed.add(index)
                        queue.insert(0, index)  # once more with a new token
                        continue
                    raise error
                w = Watch(self, resp, endpoint, prefix, start_revision)
                try:
                    w._open()
                except EtcdUnavailable as exc:
                    failures.append((endpoint, str(exc)))
                    tls = tls or isinstance(exc, EtcdTLSError)
                    continue
                except EtcdError as exc:
                    if index in renewed or not self._stale_token(endpoint, exc):
                        raise
                    renewed.add(index)
                    queue.insert(0, index)  # once more with a new token
                    continue
                self._current = index
                with self._lock:
                    self._watches.add(w)
                return w
        cls = EtcdTLSError if tls else EtcdUnavailable
        raise cls(_summary("watch", failures), failures=failures)

    def _forget(self, w: Watch) -> None:
        with self._lock:
            self._watches.discard(w)


class Watch(ResponseStream, Iterator[WatchEvent | Progress]):
    """An open watch.  Iterating yields :class:`WatchEvent` and :class:`Progress`.

    ``next_revision`` is where a new watch must start to continue exactly after what
    was delivered: one past the last revision whose events were all yielded (etcd
    sends the events of one revision together), or past a progress notification.
    The iterator ends after :meth:`close`; it raises :class:`Compacted` when etcd
    cancels the watch for compaction, :class:`EtcdUnavailable` when the stream
    breaks or the server ends it, :class:`EtcdError` for another cancellation.
    """

    def __init__(
        self,
        client: EtcdClient,
        response: httpx.Response,
        endpoint: str,
        prefix: str,
        start_revision: int,
    ) -> None:
        super().__init__(response, client._forget)
        self._client = client
        self.endpoint = endpoint
        self.prefix = prefix
        self.next_revision = start_revision
        self.watch_id: int | None = None
        self._lines: Iterator[str] | None = None
        self._pending: list[WatchEvent] = []

    def _open(self) -> None:
        """Read up to etcd's "created" answer."""
        try:
            while self.watch_id is None:
                result = self._read()
                if result is None:
                    raise EtcdUnavailable(
                        f"{self.endpoint}: watch stream ended before the watch was created",
                        endpoint=self.endpoint,
                    )
                self._handle(result)
        except BaseException:
            self.close()
            self._finish()
            raise

    def _read(self) -> dict[str, Any] | None:
        """The next ``result`` object of the stream, None at its end."""
        if self._lines is None:
            self._lines = self._response.iter_lines()
        while True:
            try:
                line = next(self._lines)
            except StopIteration:
                return None
            except httpx.TransportError as exc:
                if self._closed:
                    return None
                why = _explain(exc, self._client.watch_read_timeout or 0.0, self.endpoint)
                cls = EtcdTLSError if why.tls else EtcdUnavailable
                raise cls(
                    f"watch of {self.prefix} on {self.endpoint}: {why.reason}",
                    failures=[(self.endpoint, why.reason)],
                    endpoint=self.endpoint,
                ) from exc
            except Exception as exc:
                if self._closed:
                    return None
                raise EtcdUnavailable(
                    f"watch of {self.prefix} on {self.endpoint}: stream broken ({exc!r})",
                    endpoint=self.endpoint,
                ) from exc
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except ValueError:
                raise EtcdError(
                    f"watch on {self.endpoint}: malformed line {line[:200]!r}",
                    endpoint=self.endpoint,
                ) from None
            if isinstance(data, dict) and isinstance(data.get("result"), dict):
                result: dict[str, Any] = data["result"]
                return result
            error = data.get("error") if isinstance(data, dict) else None
            raise EtcdError(
                f"watch of {self.prefix} on {self.endpoint}: {error or line[:200]}",
                endpoint=self.endpoint,
            )

    def _handle(self, result: dict[str, Any]) -> Progress | None:
        compact = _int(result.get("compact_revision"))
        if compact:
            raise Compacted(
                f"watch of {self.prefix} from revision {self.next_revision}: etcd has "
                f"compacted history up to revision {compact}; list again and watch from "
                "the list's revision + 1",
                compact,
                endpoint=self.endpoint,
            )
        if result.get("canceled"):
            reason = str(result.get("cancel_reason") or "")
            if "permission denied" in reason:
                raise EtcdAuthError(
                    f"watch of {self.prefix} on {self.endpoint} refused: {reason} (the etcd "
                    "user lacks read permission on this prefix; see docs/ETCD.md)",
                    endpoint=self.endpoint,
                    code=GRPC_PERMISSION_DENIED,
                )
            raise EtcdError(
                f"watch of {self.prefix} on {self.endpoint} canceled: "
                f"{reason or 'no reason given'}",
                endpoint=self.endpoint,
            )
        revision = _revision(result)
        if result.get("created"):
            self.watch_id = _int(result.get("watch_id"))
            if self.next_revision == 0:
                # "From now on": everything after the creation revision comes.
                self.next_revision = revision + 1
            return None
        events = result.get("events") or []
        if not events:
            # A progress notification: everything up to `revision` was sent.
            self.next_revision = max(self.next_revision, revision + 1)
            return Progress(revision)
        for raw in events:
            prev = raw.get("prev_kv")
            self._pending.append(
                WatchEvent(
                    type=EventType.DELETE if raw.get("type") == "DELETE" else EventType.PUT,
                    kv=_kv(raw.get("kv") or {}),
                    prev_kv=_kv(prev) if isinstance(prev, dict) else None,
                )
            )
        return None

    def __next__(self) -> WatchEvent | Progress:
        if self._closed or self._finished:
            self._finish()
            raise StopIteration
        try:
            while not self._pending:
                if self._closed:
                    raise StopIteration
                result = self._read()
                if result is None:
                    if self._closed:
                        raise StopIteration
                    raise EtcdUnavailable(
                        f"watch of {self.prefix} on {self.endpoint}: the server ended the "
                        f"stream; resume from revision {self.next_revision}",
                        endpoint=self.endpoint,
                    )
                progress = self._handle(result)
                if progress is not None:
                    return progress
            event = self._pending.pop(0)
            if not self._pending or self._pending[0].revision != event.revision:
                self.next_revision = max(self.next_revision, event.revision + 1)
            return event
        except StopIteration:
            self._finish()
            raise
        except BaseException:
            self.close()
            self._finish()
            raise
