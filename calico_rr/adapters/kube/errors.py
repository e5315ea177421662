"""Errors of the Kubernetes client.

:class:`ApiError` carries the HTTP status and the Kubernetes Status
``reason``/``message``; 404/409/410 have their own subclasses (:class:`NotFound`,
:class:`Conflict` with :class:`AlreadyExists`, :class:`Gone`).  Connection errors
and timeouts that survive the client's retries are an ``ApiError`` with status 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from calico_rr.errors import InputError

#: Status reasons by HTTP code, as kube-apiserver names them.
REASONS: Mapping[int, str] = {
    0: "ConnectionError",
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",  # what kube-apiserver says for a too-old resourceVersion
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class KubeConfigError(InputError):
    """No usable kubeconfig / in-cluster configuration, or a malformed one."""


class ApiError(Exception):
    """An API request failed.

    ``status`` is the HTTP status (0 for connection errors and timeouts after the
    retries), ``reason`` the Kubernetes Status reason (``"NotFound"``,
    ``"AlreadyExists"``, ``"Expired"``, ...), ``message`` the Status message and
    ``body`` the decoded response body (or text), when there was one.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        body: Any = None,
        method: str = "",
        path: str = "",
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body
        self.method = method
        self.path = path
        super().__init__(status, reason, message)

    def __str__(self) -> str:
        where = f"{self.method} {self.path}".strip() or "request"
        message = " ".join(self.message.split())
        if len(message) > 500:
            message = message[:497] + "..."
        code = str(self.status) if self.status else "connection error"
        return f"{where}: {code} {self.reason}: {message}"


class NotFound(ApiError):
    """HTTP 404."""


class Conflict(ApiError):
    """HTTP 409: a stale resourceVersion, a failed precondition or an apply conflict."""


class AlreadyExists(Conflict):
    """HTTP 409 with reason ``AlreadyExists`` (create of an existing object)."""


class Gone(ApiError):
    """HTTP 410 (or a watch ERROR event with code 410): the resourceVersion is too old."""


def make_error(
    status: int, body: Any, *, method: str = "", path: str = "", text: str = ""
) -> ApiError:
    """The right :class:`ApiError` subclass for ``status`` and a decoded body."""
    reason = REASONS.get(status, f"HTTP{status}")
    message = text
    if isinstance(body, dict) and body.get("kind") == "Status":
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or message)
    if not message:
        message = reason
    cls: type[ApiError] = ApiError
    if status == 404:
        cls = NotFound
    elif status == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif status == 410:
        cls = Gone
    return cls(status, reason, message, body=body, method=method, path=path)
