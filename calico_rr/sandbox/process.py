"""What the sandbox's servers (:class:`~calico_rr.sandbox.controlplane.ControlPlane`,
:class:`~calico_rr.sandbox.etcd.EtcdServer`) share: the binaries they run, one local
process started, waited for and stopped (:class:`LocalProcess`), and the base of a
server that lives for a ``with`` block in a temporary directory (:class:`LocalService`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "controlplane-build.sh"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or talked to."""


def build_binaries(script: Path = BUILD_SCRIPT, *, timeout: float = 3600.0) -> Path:
    """Run the build script and return the directory it prints on its last line.

    The script's step lines go to this process's stderr with the elapsed time,
    go's output to a log file (adapters/build_script.py).  Any failure
    raises ``ControlPlaneError``: callers (tests) must fail, not skip.
    """
    from calico_rr.adapters.build_script import run_build_script

    try:
        directory = run_build_script(script, timeout=timeout)
    except RuntimeError as exc:
        raise ControlPlaneError(str(exc)) from exc
    for name in ("etcd", "kube-apiserver"):
        path = directory / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ControlPlaneError(f"missing executable {path}")
    return directory


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies (Linux
    PR_SET_PDEATHSIG), so a killed test run leaves no API server behind."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: stop() still cleans up on a normal exit


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of the log at ``path`` ("" when it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def etcd_args(etcd: Path, name: str, data_dir: Path, client_url: str, peer_url: str) -> list[str]:
    """The command line of a new one-member etcd serving clients at ``client_url``.

    No fsync: the member is throwaway.  On a loaded VM disk one fdatasync of its
    WAL took 27 s behind the lab's own writes (ext4 flushes them first): API calls
    failed with "etcdserver: request timed out" and watches lagged writes by a minute."""
    return [
        str(etcd),
        f"--name={name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster={name}={peer_url}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def etcd_healthy(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether the etcd serving clients at ``url`` says it is healthy."""
    with urllib.request.urlopen(f"{url}/health", timeout=2, context=context) as resp:
        body = json.loads(resp.read() or b"{}")
    return str(body.get("health")) == "true"


class LocalProcess:
    """One process we start: its output appended to ``log_file``, in a session of
    its own (a Ctrl-C to the tests does not reach it) and sent SIGTERM when this
    process dies (:func:`die_with_parent`)."""

    def __init__(self, name: str, args: Sequence[str], *, cwd: Path, log_file: Path) -> None:
        self.name = name
        self.log_file = log_file
        self._log = log_file.open("ab")
        try:
            self.popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            self._log.close()
            raise ControlPlaneError(f"cannot start {name}: {exc}") from exc

    def tail(self, lines: int = 40) -> str:
        if not self._log.closed:
            self._log.flush()
        return log_tail(self.log_file, lines)

    def wait_ready(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready`` until it says True; ControlPlaneError (with the log's tail)
        when the process exits first or ``timeout`` seconds pass.  ``what`` is the
        state awaited, for the message: "healthy", "ready (/readyz)"."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            code = self.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{self.name} exited with status {code} before it was {what}:\n{self.tail()}"
                )
            try:
                if ready():
                    return
            except (OSError, ValueError) as exc:  # URLError and SSLError are OSErrors
                last = str(exc)
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{self.name} not {what} after {timeout:.0f}s ({last}):\n{self.tail()}"
        )

    def stop(self, timeout: float, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig``, SIGKILL after ``timeout`` seconds, reap it, close the log."""
        stuck = stop_process(self.popen, timeout, sig)
        self._log.close()
        if stuck is not None:
            raise ControlPlaneError(f"{self.name} (pid {self.popen.pid}) {stuck}")


#: How long a SIGKILLed process may take to go.  Only the kernel holds one back
#: (uninterruptible sleep); CI once saw a BIRD still there 10 s after SIGKILL.
KILL_WAIT = 60.0


def stop_process(
    popen: subprocess.Popen[bytes], grace: float, sig: signal.Signals = signal.SIGTERM
) -> str | None:
    """Send ``sig`` (unless it has exited), SIGKILL it after ``grace`` seconds and
    reap it: None once it is gone, else why it is not (:func:`reap`)."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(sig)
    try:
        popen.wait(timeout=grace)
        return None
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            popen.kill()
    return reap(popen)


def reap(popen: subprocess.Popen[bytes], timeout: float | None = None) -> str | None:
    """Wait up to ``timeout`` (default :data:`KILL_WAIT`) for a killed process:
    None once reaped, else "still there N s after SIGKILL" with its kernel state
    (state letter and the kernel function it sleeps in), for the error message."""
    wait = KILL_WAIT if timeout is None else timeout
    try:
        popen.wait(timeout=wait)
        return None
    except subprocess.TimeoutExpired:
        return f"still there {wait:g} s after SIGKILL: {_kernel_state(popen.pid)}"


def _kernel_state(pid: int) -> str:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip() or "-"
    except (OSError, IndexError) as exc:
        return f"state unknown ({exc})"
    return f"state {state}, waiting in {wchan}"


class LocalService(ABC):
    """A server made of local processes, for the duration of a ``with`` block.

    Its executables are the build script's (built on first use).  Its files live
    in a fresh temporary directory, certificates under ``pki/``; :meth:`stop`
    removes it.  If :meth:`start` fails half-way, entering the block stops what
    did start.
    """

    #: what error messages call this server
    label = "server"
    #: seconds a process may take to become ready, and to stop before SIGKILL
    startup_timeout = 60.0
    stop_timeout = 10.0

    def __init__(self) -> None:
        self._dir: Path | None = None

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise ControlPlaneError(f"{self.label} is not running")
        return self._dir

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prepare(self, prefix: str) -> Path:
        """The checks before a start, then the temporary directory (named
        ``prefix...``, with an empty ``pki/``); returns the binaries' directory."""
        if self._dir is not None:
            raise ControlPlaneError(f"{self.label} already started")
        binaries = build_binaries()
        if shutil.which("openssl") is None:
            raise ControlPlaneError("the openssl command is needed to make certificates")
        self._dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.pki.mkdir()
        return binaries

    def _remove_directory(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
