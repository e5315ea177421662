"""Makes sure the BGP lab's tools are installed (tests and ``calico-rr lab``)."""

from __future__ import annotations

import shutil
import subprocess

from calico_rr.adapters.lab.net import LabError, require_tools
from calico_rr.sandbox.process import REPO_ROOT

INSTALL_SCRIPT = REPO_ROOT / "scripts" / "lab-install.sh"


def ensure_lab_tools() -> dict[str, str]:
    """``require_tools()``, running scripts/lab-install.sh first when BIRD or ip is
    missing (CI installs them this way).  LabError when that does not help."""
    if shutil.which("bird") is None and shutil.which("bird", path="/usr/sbin:/sbin") is None:
        if not INSTALL_SCRIPT.exists():
            raise LabError(f"BIRD is missing and {INSTALL_SCRIPT} is not there")
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise LabError(f"scripts/lab-install.sh failed: {proc.stderr.strip()[-300:]}")
    return require_tools()
