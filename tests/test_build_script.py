"""calico_rr.adapters.build_script: a build script's step lines shown with the elapsed
time, everything else only in the log file; a failure shows the log's tail."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from calico_rr.adapters.build_script import KEEP_LOGS, TAIL_LINES, log_directory, run_build_script

STEP = re.compile(r"^\[\s*\d+s\] ")


def _script(tmp_path: Path, body: str, name: str = "fake-build.sh") -> Path:
    script = tmp_path / name
    helper = "log() { printf '[fake-build] %s\\n' \"$*\" >&2; }\n"
    script.write_text("set -euo pipefail\n" + helper + body)
    return script


BUILD = """
log "widget v1: resolving"
echo "go: downloading example.com/a v1.0.0" >&2
log "widget v1: downloading modules"
for i in $(seq 1 30); do echo "go: added example.com/m$i v0.$i.0" >&2; done
echo "[other-build] not ours" >&2
log "widget v1: compiling"
echo "some progress on stdout"
echo "/cache/widget"
"""


def _logs(directory: Path) -> list[Path]:
    return sorted(directory.glob("fake-build-*.log"))


def test_shows_only_step_lines_with_elapsed_time(tmp_path: Path) -> None:
    out = io.StringIO()
    logs = tmp_path / "logs"
    directory = run_build_script(_script(tmp_path, BUILD), out=out, log_dir=logs)
    assert directory == Path("/cache/widget")
    shown = out.getvalue().splitlines()
    assert all(STEP.match(line) for line in shown), shown
    steps = [STEP.sub("", line) for line in shown]
    [log] = _logs(logs)
    assert steps == [
        "widget v1: resolving",
        f"full log: {log}",
        "widget v1: downloading modules",
        "widget v1: compiling",
    ]
    assert "go: " not in out.getvalue() and "other-build" not in out.getvalue()
    text = log.read_text()
    assert "go: downloading example.com/a v1.0.0" in text
    assert "go: added example.com/m30 v0.30.0" in text
    assert "[fake-build] widget v1: compiling" in text
    assert "[other-build] not ours" in text


def test_a_cache_hit_shows_one_line(tmp_path: Path) -> None:
    out = io.StringIO()
    script = _script(tmp_path, 'log "reusing cached widget in /c"\necho /c\n')
    assert run_build_script(script, out=out, log_dir=tmp_path / "logs") == Path("/c")
    [line] = out.getvalue().splitlines()
    assert STEP.sub("", line) == "reusing cached widget in /c"


def test_failure_shows_the_log_tail_and_path(tmp_path: Path) -> None:
    body = (
        'log "widget: compiling"\n'
        'for i in $(seq 1 50); do echo "noise line $i" >&2; done\n'
        'echo "main.go:3: undefined: frob" >&2\n'
        "exit 3\n"
    )
    out = io.StringIO()
    logs = tmp_path / "logs"
    script = _script(tmp_path, body)
    with pytest.raises(RuntimeError, match=rf"^{re.escape(str(script))} exited with status 3$"):
        run_build_script(script, out=out, log_dir=logs)
    [log] = _logs(logs)
    text = out.getvalue()
    assert "main.go:3: undefined: frob" in text
    assert f"full log: {log}" in text
    tail = [line for line in text.splitlines() if line.startswith("  ")]
    assert len(tail) == TAIL_LINES
    assert "noise line 1\n" not in text  # only the tail, the whole log is in the file
    assert "noise line 1\n" in log.read_text()


def test_a_script_printing_nothing_on_stdout_fails(tmp_path: Path) -> None:
    script = _script(tmp_path, 'log "done"\n')
    with pytest.raises(RuntimeError, match="printed no directory"):
        run_build_script(script, out=io.StringIO(), log_dir=tmp_path / "logs")


def test_timeout_stops_the_script_and_its_children(tmp_path: Path) -> None:
    script = _script(tmp_path, 'log "waiting"\nsleep 60 &\nwait\necho /never\n')
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="timed out after 1 seconds"):
        run_build_script(script, out=out, log_dir=tmp_path / "logs", timeout=1)
    assert "full log:" in out.getvalue()


def test_keeps_only_the_last_logs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(KEEP_LOGS + 3):
        (logs / f"fake-build-20000101-00000{i}-x.log").write_text("old")
    (logs / "other-build-20000101-000000-x.log").write_text("other script's")
    run_build_script(_script(tmp_path, "echo /d\n"), out=io.StringIO(), log_dir=logs)
    kept = _logs(logs)
    assert len(kept) == KEEP_LOGS
    assert sum(1 for p in kept if p.read_text() == "old") == KEEP_LOGS - 1
    assert (logs / "other-build-20000101-000000-x.log").exists()


def test_log_directory_follows_the_scripts_cache_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALICO_RR_CACHE", "/somewhere/cache")
    assert log_directory() == Path("/somewhere/cache/logs")
