"""Errors of the etcd client, and how they are made from what went wrong: a reply
of etcd's JSON gateway (gRPC status codes) or a transport failure, which is
explained (not trusted, client certificate required or refused, not TLS, refused,
timed out) with the endpoint and, for TLS, the setting to look at."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from calico_rr.adapters.etcd.values import Fence, KeyValue
from calico_rr.adapters.http import (
    ConnectError,
    ConnectTimeout,
    PoolTimeout,
    Response,
    TimeoutException,
    TransportError,
)
from calico_rr.errors import CalicoRRError

#: gRPC status codes etcd's gateway reports (google.golang.org/grpc/codes).
GRPC_DEADLINE_EXCEEDED = 4
GRPC_OUT_OF_RANGE = 11
GRPC_UNAVAILABLE = 14
GRPC_PERMISSION_DENIED = 7
GRPC_UNAUTHENTICATED = 16
RETRYABLE_CODES = frozenset({GRPC_DEADLINE_EXCEEDED, GRPC_UNAVAILABLE})


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
        self.holder = holder


class Compacted(EtcdError):
    """The requested revision was compacted away: list again, then watch from the
    list's revision + 1.  ``compact_revision`` is etcd's (0 when etcd did not say)."""

    def __init__(self, message: str, compact_revision: int, *, endpoint: str | None = None):
        super().__init__(message, endpoint=endpoint, code=GRPC_OUT_OF_RANGE)
        self.compact_revision = compact_revision


class LeaseNotFound(EtcdError):
    """The lease does not exist (expired or revoked)."""


# -- from replies ------------------------------------------------------------


def decode_reply(resp: Response, endpoint: str, op: str) -> dict[str, Any]:
    """The JSON object of a gateway reply, or an error explaining what came instead."""
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


def gateway_error(data: dict[str, Any], resp: Response, endpoint: str, op: str) -> EtcdError:
    """The error etcd's gateway reported in a decoded non-200 reply."""
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


def retryable(error: EtcdError, resp: Response) -> bool:
    """Is ``error`` (etcd's answer ``resp``) one that asking again may cure?"""
    return error.code in RETRYABLE_CODES or resp.status_code == 503


# -- from transport failures -------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """Why a request failed below HTTP, in words for the operator."""

    reason: str
    tls: bool  # the TLS handshake failed or the server refused us in it
    sent: bool  # the request may have reached etcd


def explain(exc: TransportError, timeout: float, endpoint: str) -> TransportFailure:
    text = str(exc) or repr(exc)
    upper = text.upper()
    if "CERTIFICATE_VERIFY_FAILED" in upper:
        return TransportFailure(
            f"the server's TLS certificate is not trusted ({text}); "
            "set ETCD_CA_CERT_FILE to the CA that signed it",
            tls=True,
            sent=False,
        )
    if "CERTIFICATE_REQUIRED" in upper or "CERTIFICATE REQUIRED" in upper:
        return TransportFailure(
            "the server requires a client certificate (set ETCD_CERT_FILE and ETCD_KEY_FILE)",
            tls=True,
            sent=False,
        )
    if any(s in upper for s in ("BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN")):
        return TransportFailure(
            f"the server refused our client certificate ({text}); check ETCD_CERT_FILE",
            tls=True,
            sent=False,
        )
    if "WRONG_VERSION_NUMBER" in upper or "RECORD_LAYER_FAILURE" in upper:
        return TransportFailure(
            f"the endpoint does not speak TLS ({text}); use an http:// URL?", tls=True, sent=False
        )
    if isinstance(exc, ConnectTimeout | PoolTimeout):
        return TransportFailure(f"connection timed out after {timeout:g}s", tls=False, sent=False)
    if isinstance(exc, ConnectError):
        if "SSL" in upper or "TLS" in upper:
            return TransportFailure(f"TLS handshake failed ({text})", tls=True, sent=False)
        if "REFUSED" in upper:
            return TransportFailure(
                "connection refused (is etcd listening there?)", tls=False, sent=False
            )
        return TransportFailure(f"cannot connect ({text})", tls=False, sent=False)
    if isinstance(exc, TimeoutException):
        return TransportFailure(f"no answer within {timeout:g}s", tls=False, sent=True)
    if "SSL" in upper or "TLSV1" in upper:
        return TransportFailure(f"TLS error ({text})", tls=True, sent=False)
    if endpoint.startswith("http://") and "WITHOUT SENDING A RESPONSE" in upper:
        # etcd serving TLS closes a plain-HTTP connection without a word.
        text += "; does the endpoint expect https://?"
    return TransportFailure(f"connection broken ({text})", tls=False, sent=True)


def summary(what: str, failures: Sequence[tuple[str, str]]) -> str:
    parts = "; ".join(f"{ep}: {reason}" for ep, reason in dict.fromkeys(failures))
    return f"etcd {what} failed on every endpoint: {parts}"
