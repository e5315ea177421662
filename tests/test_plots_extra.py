"""Plotting is the ``plots`` extra: ``calico-rr run`` (and so the operator image) never
loads matplotlib, and the commands that draw say in one line how to get it.

Each check runs in a fresh interpreter: this test process has long since imported
matplotlib through other tests, so its own ``sys.modules`` proves nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from calico_rr.adapters.plots import MISSING_EXTRA

REPO = Path(__file__).resolve().parents[1]

#: The plotting stack: none of it may be loaded by the operator.
PLOTTING = ("matplotlib", "numpy", "PIL", "contourpy", "kiwisolver", "fontTools")


def _python(code: str, *, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_run_loads_no_plotting_module(tmp_path: Path) -> None:
    # Every module `run` imports, then `run` itself up to its first API call (the
    # kubeconfig is missing, so it stops there with exit code 2).
    done = _python(
        f"""
        import json, sys
        import calico_rr.cli
        import calico_rr.adapters.kube.client
        import calico_rr.adapters.kube.operator
        import calico_rr.adapters.etcd.operator
        import calico_rr.adapters.etcd.kube_health
        import calico_rr.adapters.observe
        sys.argv = ["calico-rr", "run", "--kubeconfig", "{tmp_path}/missing", "--port", "0"]
        try:
            calico_rr.cli.main()
        except SystemExit as exc:
            code = exc.code
        loaded = sorted(m for m in {PLOTTING!r} if m in sys.modules)
        print(json.dumps({{"code": code, "loaded": loaded}}))
        """,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 2, done.stderr  # it did get as far as reading the kubeconfig
    assert "cannot read kubeconfig" in done.stderr
    assert result["loaded"] == []


def _without_matplotlib(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``calico-rr argv`` in an interpreter where ``import matplotlib`` fails, as it
    does when the plots extra is not installed."""
    return _python(
        f"""
        import sys
        sys.modules["matplotlib"] = None  # import matplotlib -> ImportError
        import calico_rr.cli
        sys.argv = ["calico-rr", *{argv!r}]
        calico_rr.cli.main()
        """,
        cwd=cwd,
    )


def test_plan_plot_without_the_extra_is_one_line_exit_2(tmp_path: Path) -> None:
    done = _without_matplotlib(["plan", "--nodes", "40", "--plot", "out.png"], tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"calico-rr: error: {MISSING_EXTRA}\n"
    assert done.stdout == ""  # refused before planning: no summary either
    assert list(tmp_path.iterdir()) == []


def test_report_without_the_extra_is_one_line_exit_2(tmp_path: Path) -> None:
    done = _without_matplotlib(["report", "--nodes", "40", "out.html"], tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"calico-rr: error: {MISSING_EXTRA}\n"
    assert list(tmp_path.iterdir()) == []


def test_plan_without_plot_needs_no_extra(tmp_path: Path) -> None:
    done = _without_matplotlib(["plan", "--nodes", "40", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"] == 40


def test_message_names_the_extra_that_pyproject_defines() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "pip install 'calico-rr[plots]'" in MISSING_EXTRA
    assert [d for d in extras["plots"] if d.startswith("matplotlib==")]
    assert not [d for d in project["dependencies"] if d.lower().startswith("matplotlib")]
    # `pip install -e '.[dev]'` (the Makefile) still gets matplotlib for the tests.
    assert "calico-rr[plots]" in extras["dev"]


def test_image_constraints_carry_no_plotting_package() -> None:
    pinned = {
        line.split("==")[0].lower()
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert pinned  # the file was read
    assert not pinned & {"matplotlib", "numpy", "pillow", "contourpy", "kiwisolver", "fonttools"}
