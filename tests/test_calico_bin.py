"""calico_rr.adapters.calico_bin and scripts/calico-build.sh's prebuilt-directory path
(no Go needed: the build itself runs in tests/integration/test_calicoctl_roundtrip.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from calico_rr.adapters.calico_bin import (
    BUILD_SCRIPT,
    ENV_BIN,
    CalicoBinError,
    build,
    from_directory,
    locate,
)

VERSION = "v1.11.0-cni-plugin.0.20250813170300-a0db560f0520"


def _layout(root: Path, *, version_file: bool = True) -> Path:
    for name in ("confd", "calicoctl"):
        path = root / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    (root / "confdir" / "conf.d").mkdir(parents=True)
    (root / "confdir" / "templates").mkdir()
    (root / "crds").mkdir()
    if version_file:
        (root / "VERSION").write_text(
            "module=github.com/projectcalico/calico\n"
            f"version={VERSION}\ncommit=a0db560f0520\nbranch=release-v3.28\n"
            "manifests=v3.28.5\nstamp=v3.28.5-ga0db560f0520\n"
        )
    return root


def test_from_directory_reads_paths_and_version(tmp_path: Path) -> None:
    bins = from_directory(_layout(tmp_path))
    assert bins.confd == tmp_path / "confd"
    assert bins.calicoctl == tmp_path / "calicoctl"
    assert bins.confdir == tmp_path / "confdir"
    assert bins.templates == tmp_path / "confdir" / "templates"
    assert bins.crds == tmp_path / "crds"
    assert (bins.version, bins.branch, bins.commit, bins.manifests) == (
        VERSION,
        "release-v3.28",
        "a0db560f0520",
        "v3.28.5",
    )
    assert bins.label == (
        f"Calico release-v3.28 (a0db560f0520; github.com/projectcalico/calico@{VERSION})"
    )
    assert bins.as_dict()["version"] == VERSION


def test_from_directory_names_what_is_missing(tmp_path: Path) -> None:
    _layout(tmp_path, version_file=False)
    (tmp_path / "calicoctl").chmod(0o644)
    with pytest.raises(CalicoBinError) as exc:
        from_directory(tmp_path)
    assert "missing executable calicoctl" in str(exc.value)
    assert "missing VERSION" in str(exc.value)
    assert "confd," not in str(exc.value)


def test_version_file_needs_a_version(tmp_path: Path) -> None:
    _layout(tmp_path)
    (tmp_path / "VERSION").write_text("branch=release-v3.28\n")
    with pytest.raises(CalicoBinError, match="no version= line"):
        from_directory(tmp_path)


def test_locate_honours_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _layout(tmp_path)
    monkeypatch.setenv(ENV_BIN, str(tmp_path))
    # The script is never run: a missing one would raise.
    assert locate(script=tmp_path / "no-such-script.sh").directory == tmp_path
    monkeypatch.setenv(ENV_BIN, str(tmp_path / "empty"))
    with pytest.raises(CalicoBinError, match="missing executable confd"):
        locate()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Build logs of the fake scripts go to the test's directory, not ~/.cache."""
    monkeypatch.setenv("CALICO_RR_CACHE", str(tmp_path / "cache"))


def test_build_without_the_script_fails(tmp_path: Path) -> None:
    with pytest.raises(CalicoBinError, match=ENV_BIN):
        build(tmp_path / "calico-build.sh")


def test_build_reports_a_failing_script(tmp_path: Path) -> None:
    script = tmp_path / "fail.sh"
    script.write_text("echo building >&2\nexit 3\n")
    with pytest.raises(CalicoBinError, match="status 3"):
        build(script)


def _script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_script_prints_a_prebuilt_directory(tmp_path: Path) -> None:
    _layout(tmp_path)
    done = _script({ENV_BIN: str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(tmp_path)


def test_script_refuses_an_incomplete_prebuilt_directory(tmp_path: Path) -> None:
    _layout(tmp_path)
    (tmp_path / "crds").rmdir()
    done = _script({ENV_BIN: str(tmp_path)})
    assert done.returncode == 1
    assert done.stdout == ""
    assert "crds/" in done.stderr


def test_script_reuses_a_complete_cache_directory(tmp_path: Path) -> None:
    cached = tmp_path / "calico" / "vX"
    cached.mkdir(parents=True)
    _layout(cached)
    done = _script({"CALICO_RR_CACHE": str(tmp_path), "CALICO_RR_CALICO_VERSION": "vX"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(cached)
    assert "reusing cached" in done.stderr
