"""A real, throwaway etcd with TLS and client-certificate auth, for tests.

``EtcdServer`` starts one etcd member on 127.0.0.1 (free ports, data in a fresh
temporary directory, certificates made with ``openssl`` by :mod:`calico_rr.sandbox.pki`)
and removes everything on exit.  The etcd binary is the one
``scripts/controlplane-build.sh`` builds and caches (see docs/CONTROLPLANE.md);
a missing binary or a failed build raises :class:`ControlPlaneError` - tests
fail, they never skip.

Clients must present a certificate signed by the test CA (``--client-cert-auth``);
:meth:`EtcdServer.client` returns an :class:`~calico_rr.adapters.etcd.client.EtcdClient`
that does.  :meth:`kill` and :meth:`restart` stop and start the same member (same
ports, same data) to test reconnects and watch resumption.
"""

from __future__ import annotations

import signal
import ssl
from pathlib import Path
from typing import Any

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.config import EtcdSettings
from calico_rr.sandbox.pki import issue_cert, make_ca
from calico_rr.sandbox.process import (
    ControlPlaneError,
    LocalProcess,
    LocalService,
    etcd_args,
    etcd_healthy,
    free_port,
    log_tail,
)

# etcd's JSON gateway talks to etcd's own gRPC server over TLS, presenting the
# server certificate as a client certificate: with --client-cert-auth that
# certificate needs both extended key usages.
_ETCD_SECTIONS = """
[etcd_server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
"""


class EtcdServer(LocalService):
    """One etcd member on 127.0.0.1 for the duration of a ``with`` block.

    ``progress_notify_interval`` (e.g. ``"1s"``) shortens etcd's watch progress
    notifications (default 10 minutes).
    """

    label = "etcd"

    def __init__(
        self, *, progress_notify_interval: str | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        self.progress_notify_interval = progress_notify_interval
        self.extra_args = extra_args
        self._proc: LocalProcess | None = None
        self._etcd: Path | None = None
        self.endpoint = ""
        self._peer_url = ""

    # -- files -------------------------------------------------------------------

    @property
    def cert_file(self) -> Path:
        """The client certificate etcd accepts."""
        return self.pki / "client.crt"

    @property
    def key_file(self) -> Path:
        return self.pki / "client.key"

    @property
    def log_file(self) -> Path:
        return self.directory / "etcd.log"

    def settings(self) -> EtcdSettings:
        return EtcdSettings(
            endpoints=(self.endpoint,),
            ca_cert_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
        )

    def env(self) -> dict[str, str]:
        """Calico's environment variables for this server."""
        return {
            "DATASTORE_TYPE": "etcdv3",
            "ETCD_ENDPOINTS": self.endpoint,
            "ETCD_CA_CERT_FILE": str(self.ca_file),
            "ETCD_CERT_FILE": str(self.cert_file),
            "ETCD_KEY_FILE": str(self.key_file),
        }

    def client(self, **kwargs: Any) -> EtcdClient:
        """A client with the test CA and client certificate (``kwargs`` go to it)."""
        return EtcdClient.from_settings(self.settings(), **kwargs)

    def logs(self, lines: int = 40) -> str:
        if self._proc is not None:
            return self._proc.tail(lines)
        return "" if self._dir is None else log_tail(self.log_file, lines)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._etcd = self._prepare("calico-rr-etcd-") / "etcd"
        make_ca(self.pki, _ETCD_SECTIONS)
        issue_cert(self.pki, "server", "/CN=etcd", "etcd_server_ext", 2)
        issue_cert(self.pki, "client", "/CN=calico-rr", "client_ext", 3)
        # A free port can be taken by someone else before etcd binds it: try again.
        for attempt in range(3):
            client_port, peer_port = free_port(), free_port()
            if client_port == peer_port:
                continue
            self.endpoint = f"https://127.0.0.1:{client_port}"
            self._peer_url = f"http://127.0.0.1:{peer_port}"
            try:
                self._launch()
                return
            except ControlPlaneError:
                if attempt == 2 or "address already in use" not in self.logs(20):
                    raise
                self._terminate()

    def _launch(self) -> None:
        assert self._etcd is not None
        pki = self.pki
        data = self.directory / "data"
        args = [
            *etcd_args(self._etcd, "calico-rr-test", data, self.endpoint, self._peer_url),
            f"--cert-file={pki / 'server.crt'}",
            f"--key-file={pki / 'server.key'}",
            f"--trusted-ca-file={pki / 'ca.crt'}",
            "--client-cert-auth",
        ]
        if self.progress_notify_interval is not None:
            args.append(f"--watch-progress-notify-interval={self.progress_notify_interval}")
        args.extend(self.extra_args)
        self._proc = LocalProcess("etcd", args, cwd=self.directory, log_file=self.log_file)
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        self._proc.wait_ready(
            "healthy", lambda: etcd_healthy(self.endpoint, ctx), self.startup_timeout
        )

    def _terminate(self, sig: signal.Signals = signal.SIGTERM) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop(self.stop_timeout, sig)

    def kill(self) -> None:
        """SIGKILL the member (its data stays): clients see connections refused."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        """Start the killed member again, on the same ports with the same data."""
        if self._proc is not None:
            raise ControlPlaneError("etcd is still running")
        self._launch()

    def stop(self) -> None:
        """Stop etcd and remove its directory (data, certificates, log)."""
        self._terminate()
        self._remove_directory()
