"""Finding a lab's daemons by their command line (clean-up tests)."""

from __future__ import annotations

from pathlib import Path


def pids_of(program: str, marker: str) -> list[int]:
    """Processes whose executable name ends with ``program`` and one of whose
    arguments contains ``marker`` (a lab's work-directory prefix)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(program.encode()) and any(marker.encode() in a for a in cmd):
            pids.append(int(proc.name))
    return pids
