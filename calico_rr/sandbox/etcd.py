"""A real, throwaway etcd with TLS and client-certificate auth, for tests.

``EtcdServer`` starts one etcd member on 127.0.0.1 (free ports, data in a fresh
temporary directory, certificates made with ``openssl`` by the control plane's
helpers) and removes everything on exit.  The etcd binary is the one
``scripts/controlplane-build.sh`` builds and caches (see docs/CONTROLPLANE.md);
a missing binary or a failed build raises :class:`ControlPlaneError` - tests
fail, they never skip.

Clients must present a certificate signed by the test CA (``--client-cert-auth``);
:meth:`EtcdServer.client` returns an :class:`~calico_rr.adapters.etcd.EtcdClient`
that does.  :meth:`kill` and :meth:`restart` stop and start the same member (same
ports, same data) to test reconnects and watch resumption.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.config import EtcdSettings
from calico_rr.sandbox.controlplane import (
    ControlPlaneError,
    build_binaries,
    die_with_parent,
    free_port,
    issue_cert,
    make_ca,
)

__all__ = ["EtcdServer"]

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


class EtcdServer:
    """One etcd member on 127.0.0.1 for the duration of a ``with`` block.

    ``binaries`` is a directory holding ``etcd`` (default: the build script's).
    ``progress_notify_interval`` (e.g. ``"1s"``) shortens etcd's watch progress
    notifications (default 10 minutes).
    """

    def __init__(
        self,
        binaries: Path | None = None,
        *,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        progress_notify_interval: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self._binaries_arg = binaries
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.progress_notify_interval = progress_notify_interval
        self.extra_args = extra_args
        self._dir: Path | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._etcd: Path | None = None
        self.endpoint = ""
        self._peer_url = ""

    # -- files -------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise ControlPlaneError("etcd is not running")
        return self._dir

    @property
    def ca_file(self) -> Path:
        return self.directory / "pki" / "ca.crt"

    @property
    def cert_file(self) -> Path:
        """The client certificate etcd accepts."""
        return self.directory / "pki" / "client.crt"

    @property
    def key_file(self) -> Path:
        return self.directory / "pki" / "client.key"

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
        if self._log is not None:
            self._log.flush()
        try:
            text = self.log_file.read_text(errors="replace")
        except (OSError, ControlPlaneError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> EtcdServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._dir is not None:
            raise ControlPlaneError("etcd already started")
        binaries = self._binaries_arg if self._binaries_arg is not None else build_binaries()
        self._etcd = binaries / "etcd"
        if not self._etcd.is_file():
            raise ControlPlaneError(f"missing executable {self._etcd}")
        if shutil.which("openssl") is None:
            raise ControlPlaneError("the openssl command is needed to make certificates")
        self._dir = Path(tempfile.mkdtemp(prefix="calico-rr-etcd-"))
        pki = self._dir / "pki"
        pki.mkdir()
        make_ca(pki, _ETCD_SECTIONS)
        issue_cert(pki, "server", "/CN=etcd", "etcd_server_ext", 2)
        issue_cert(pki, "client", "/CN=calico-rr", "client_ext", 3)
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
        pki = self.directory / "pki"
        args = [
            str(self._etcd),
            "--name=calico-rr-test",
            f"--data-dir={self.directory / 'data'}",
            f"--listen-client-urls={self.endpoint}",
            f"--advertise-client-urls={self.endpoint}",
            f"--listen-peer-urls={self._peer_url}",
            f"--initial-advertise-peer-urls={self._peer_url}",
            f"--initial-cluster=calico-rr-test={self._peer_url}",
            "--initial-cluster-state=new",
            f"--cert-file={pki / 'server.crt'}",
            f"--key-file={pki / 'server.key'}",
            f"--trusted-ca-file={pki / 'ca.crt'}",
            "--client-cert-auth",
            "--unsafe-no-fsync",  # a throwaway member: durability is not the point
            "--log-level=warn",
        ]
        if self.progress_notify_interval is not None:
            args.append(f"--watch-progress-notify-interval={self.progress_notify_interval}")
        args.extend(self.extra_args)
        self._log = self.log_file.open("ab")
        try:
            self._popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            raise ControlPlaneError(f"cannot start etcd: {exc}") from exc
        self._wait_healthy()

    def _health_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def _wait_healthy(self) -> None:
        assert self._popen is not None
        ctx = self._health_context()
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while time.monotonic() < deadline:
            code = self._popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"etcd exited with status {code} before it was healthy:\n{self.logs()}"
                )
            try:
                with urllib.request.urlopen(
                    f"{self.endpoint}/health", timeout=2, context=ctx
                ) as resp:
                    body = json.loads(resp.read() or b"{}")
                if str(body.get("health")) == "true":
                    return
                last = str(body)
            except (OSError, ssl.SSLError, urllib.error.URLError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise ControlPlaneError(
            f"etcd not healthy after {self.startup_timeout:.0f}s ({last}):\n{self.logs()}"
        )

    def _terminate(self, sig: signal.Signals = signal.SIGTERM) -> None:
        popen, self._popen = self._popen, None
        if popen is not None:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    popen.send_signal(sig)
            try:
                popen.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                popen.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the member (its data stays): clients see connections refused."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        """Start the killed member again, on the same ports with the same data."""
        if self._popen is not None:
            raise ControlPlaneError("etcd is still running")
        self._launch()

    def stop(self) -> None:
        """Stop etcd and remove its directory (data, certificates, log)."""
        self._terminate()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
