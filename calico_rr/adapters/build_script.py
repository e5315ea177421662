"""Running one of the repo's build scripts (``scripts/*-build.sh``) quietly.

A first build fetches hundreds of Go modules and compiles for minutes; go's own
output (``go: downloading ...``) is of no use on a terminal.  The scripts print
their steps through a ``log()`` helper, each line prefixed ``[<script name>] ``
(``[controlplane-build] kube-apiserver v1.35.4: compiling``).  Only those lines are
shown, with the time since the script started; everything the script writes to
stderr goes to a log file under ``$CALICO_RR_CACHE/logs`` (default
``~/.cache/calico-rr/logs``; the last :data:`KEEP_LOGS` per script are kept).  When
the script fails, the log's last lines and its path are shown before the error.

The script's last stdout line is the directory it built into (or reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import TextIO

#: Logs kept per script (older ones are removed when a new build starts).
KEEP_LOGS = 5
#: Log lines shown when a build fails.
TAIL_LINES = 20


def log_directory() -> Path:
    """Where build logs go: ``$CALICO_RR_CACHE/logs``, as the scripts' own cache root."""
    root = os.environ.get("CALICO_RR_CACHE") or str(Path.home() / ".cache" / "calico-rr")
    return Path(root) / "logs"


def _open_log(name: str, directory: Path | None) -> tuple[Path, TextIO]:
    """A new log file for script ``name``; the oldest beyond KEEP_LOGS removed.
    A cache that cannot be written falls back to the temporary directory, so a
    read-only home does not stop a build."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for base in (directory or log_directory(), Path(tempfile.gettempdir()) / "calico-rr-logs"):
        try:
            base.mkdir(parents=True, exist_ok=True)
            old = sorted(base.glob(f"{name}-*.log"))
            for stale in old[: max(0, len(old) - (KEEP_LOGS - 1))]:
                stale.unlink(missing_ok=True)
            fd, path = tempfile.mkstemp(prefix=f"{name}-{stamp}-", suffix=".log", dir=base)
        except OSError:
            continue
        return Path(path), os.fdopen(fd, "w", encoding="utf-8", errors="replace")
    raise RuntimeError(f"{name}: cannot create a build log in {directory or log_directory()}")


def _elapsed(start: float) -> str:
    return f"[{int(time.monotonic() - start):>4}s]"


def run_build_script(
    script: Path,
    *,
    timeout: float = 3600.0,
    out: TextIO | None = None,
    log_dir: Path | None = None,
) -> Path:
    """Run ``script``: the directory it prints on its last stdout line.

    Its ``[<name>] `` step lines go to ``out`` (default stderr) with the elapsed
    time; all of its stderr goes to the log file.  Any failure is a RuntimeError
    saying what went wrong, after the log's last lines and its path."""
    out = out if out is not None else sys.stderr
    name = script.name.removesuffix(".sh")
    prefix = f"[{name}] "
    log_path, log_file = _open_log(name, log_dir)
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    stdout: list[str] = []
    timed_out = threading.Event()
    with log_file:
        try:
            proc = subprocess.Popen(
                ["bash", str(script)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                # its own process group: a timeout or ^C stops go's children too
                # (they hold the pipes open)
                start_new_session=True,
            )
        except OSError as exc:
            raise RuntimeError(f"{script}: {exc}") from exc
        assert proc.stdout is not None and proc.stderr is not None
        # stdout is read beside stderr so that neither pipe fills up and blocks.
        reader = threading.Thread(target=stdout.extend, args=(proc.stdout,), daemon=True)
        reader.start()
        timer = threading.Timer(timeout, _kill, args=(proc, timed_out))
        timer.start()
        try:
            steps = 0
            for line in proc.stderr:
                log_file.write(line)
                log_file.flush()
                tail.append(line.rstrip("\n"))
                if line.startswith(prefix):
                    steps += 1
                    if steps == 2:  # a real build (a cache hit says one line)
                        print(f"{_elapsed(start)} full log: {log_path}", file=out, flush=True)
                    step = line[len(prefix) :].rstrip("\n")
                    print(f"{_elapsed(start)} {step}", file=out, flush=True)
            code = proc.wait()
        except BaseException:
            # An interrupted build (^C) leaves no script running behind it.
            _kill(proc, threading.Event())
            proc.wait()
            raise
        finally:
            timer.cancel()
            reader.join()
    if timed_out.is_set():
        _show_tail(tail, log_path, out)
        raise RuntimeError(f"{script}: timed out after {timeout:g} seconds")
    if code != 0:
        _show_tail(tail, log_path, out)
        raise RuntimeError(f"{script} exited with status {code}")
    lines = [line.strip() for line in stdout if line.strip()]
    if not lines:
        raise RuntimeError(f"{script} printed no directory")
    return Path(lines[-1])


def _kill(proc: subprocess.Popen[str], timed_out: threading.Event) -> None:
    timed_out.set()
    with contextlib.suppress(OSError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)


def _show_tail(tail: deque[str], log_path: Path, out: TextIO) -> None:
    print(f"last {len(tail)} lines of the build log:", file=out)
    for line in tail:
        print(f"  {line}", file=out)
    print(f"full log: {log_path}", file=out, flush=True)
