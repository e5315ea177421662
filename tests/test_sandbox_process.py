"""Stopping a local process (``calico_rr.sandbox.process``): the signal, the grace,
SIGKILL, and a bounded reap that says why a process is still there."""

from __future__ import annotations

import re
import subprocess
import sys

from calico_rr.sandbox import process


def test_a_process_outliving_sigkill_is_reported_with_its_kernel_state() -> None:
    # a process that is not killed stands in for one the kernel holds after SIGKILL
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        why = process.reap(proc, 0.2)
        assert why is not None
        assert re.fullmatch(r"still there 0.2 s after SIGKILL: state [A-Z], waiting in \S+", why)
    finally:
        proc.kill()
        proc.wait()
    assert process.reap(proc, 0.2) is None  # gone: returns at once
    assert process._kernel_state(proc.pid).startswith("state unknown")


def test_stop_process_kills_what_ignores_its_signal() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()  # the handler is in place
    assert process.stop_process(proc, 0.3) is None
    assert proc.returncode == -9
    proc.stdout.close()
