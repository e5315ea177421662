"""TLS for the Kubernetes client, built here rather than by httpx (httpx 0.28
deprecates string paths): one :class:`ssl.SSLContext` per client.

* Certificates given as data (kubeconfig ``*-data``, an exec plugin's PEM) are
  written to a private temporary directory only for the ``load_cert_chain`` call and
  removed right after it: nothing stays on disk.
* ``tls-server-name`` is built into the context (:class:`ServerNameContext`), not
  passed per request: httpcore drops its per-request SNI name inside a proxy
  tunnel, and kubectl honours the name through proxies too.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
from pathlib import Path


def ssl_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """The context for ``verify``: a given context, else one that verifies the
    server against the system CAs (True) or not at all (False)."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    ctx = ssl.create_default_context()
    if verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ServerNameContext(ssl.SSLContext):
    """A client context that sends ``server_name`` as SNI and checks the server's
    certificate against it, whatever host the URL (or a proxy tunnel) names."""

    server_name: str | None = None

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=self.server_name or server_hostname,
            session=session,
        )

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(
            incoming,
            outgoing,
            server_side=server_side,
            server_hostname=self.server_name or server_hostname,
            session=session,
        )


def verifying_context(
    *, cafile: str | None = None, cadata: str | None = None, server_name: str | None = None
) -> ssl.SSLContext:
    """A context that verifies the server against ``cafile``/``cadata`` (else the
    system CAs), by ``server_name`` when given (else by the URL's host)."""
    if not server_name:
        return ssl.create_default_context(cafile=cafile, cadata=cadata)
    ctx = ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
    defaults = ssl.create_default_context()
    ctx.options, ctx.verify_flags = defaults.options, defaults.verify_flags
    ctx.server_name = server_name
    if cafile or cadata:
        ctx.load_verify_locations(cafile=cafile, cadata=cadata)
    else:
        ctx.load_default_certs()
    return ctx


def load_client_cert(ctx: ssl.SSLContext, cert: str | bytes, key: str | bytes) -> None:
    """Load a client certificate into ``ctx``: each of ``cert``/``key`` is a file
    path (str) or PEM data (bytes: written to a private temporary directory, removed
    right after loading)."""
    with tempfile.TemporaryDirectory(prefix="calico-rr-") as tmp:  # mode 0700
        paths: list[str] = []
        for field, value in (("cert", cert), ("key", key)):
            if isinstance(value, str):
                paths.append(value)
                continue
            target = Path(tmp) / field
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(value)
            paths.append(str(target))
        ctx.load_cert_chain(paths[0], paths[1])
