"""Where Calico's own ``confd`` and ``calicoctl`` are (docs/CALICO.md).

:func:`locate` returns a :class:`CalicoBinaries`: the two binaries, confd's
``-confdir`` (``conf.d/`` + ``templates/``), Calico's ``crd.projectcalico.org/v1``
CRDs for the same version, and the version they were built from.

* ``$CALICO_RR_CALICO_BIN`` names a directory laid out like the build's cache
  directory (prebuilt binaries): it is used as is, nothing is built.
* Otherwise ``scripts/calico-build.sh`` builds them from the Go module proxy on
  first use (a few minutes) and reuses its cache afterwards (instant); its last
  stdout line is the directory.

Every failure raises :class:`CalicoBinError`: callers (tests, ``calico-rr lab``)
fail, they never silently run without Calico's code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from calico_rr.adapters.build_script import run_build_script
from calico_rr.core.bgp.calico_version import CalicoVersion, parse_calico_version
from calico_rr.errors import CalicoRRError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "calico-build.sh"
#: A directory with prebuilt binaries, laid out like the build's cache directory.
ENV_BIN = "CALICO_RR_CALICO_BIN"


class CalicoBinError(CalicoRRError):
    """Calico's binaries could not be built or found."""


@dataclass(frozen=True, slots=True)
class CalicoBinaries:
    directory: Path
    confd: Path
    calicoctl: Path
    #: confd's ``-confdir``: ``conf.d/*.toml`` and ``templates/``.
    confdir: Path
    templates: Path
    #: Calico's crd.projectcalico.org/v1 CRDs of the same version.
    crds: Path
    #: Go module version of github.com/projectcalico/calico.
    version: str
    #: Calico branch (``release-v3.28``), commit, and the release its manifests name.
    branch: str
    commit: str
    manifests: str
    module: str = "github.com/projectcalico/calico"

    @property
    def label(self) -> str:
        """One line for reports: ``Calico release-v3.28 (a0db560f0520; github.com/...@v...)``."""
        return f"Calico {self.branch} ({self.commit}; {self.module}@{self.version})"

    @property
    def release(self) -> CalicoVersion:
        """The Calico release the manifests name (``v3.28.5``), for version rules."""
        return parse_calico_version(self.manifests)

    def as_dict(self) -> dict[str, str]:
        """The version facts for JSON output (``calico-rr lab --json``)."""
        return {
            "module": self.module,
            "version": self.version,
            "branch": self.branch,
            "commit": self.commit,
            "manifests": self.manifests,
        }


def _read_version(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CalicoBinError(f"cannot read {path}: {exc}") from exc
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def from_directory(directory: Path) -> CalicoBinaries:
    """The binaries in a directory laid out by scripts/calico-build.sh, checked."""
    directory = Path(directory)
    problems: list[str] = []
    for name in ("confd", "calicoctl"):
        path = directory / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            problems.append(f"missing executable {name}")
    for sub in ("confdir/conf.d", "confdir/templates", "crds"):
        if not (directory / sub).is_dir():
            problems.append(f"missing directory {sub}/")
    if not (directory / "VERSION").is_file():
        problems.append("missing VERSION")
    if problems:
        raise CalicoBinError(f"{directory}: " + ", ".join(problems))
    facts = _read_version(directory / "VERSION")
    version = facts.get("version", "")
    if not version:
        raise CalicoBinError(f"{directory / 'VERSION'}: no version= line")
    return CalicoBinaries(
        directory=directory,
        confd=directory / "confd",
        calicoctl=directory / "calicoctl",
        confdir=directory / "confdir",
        templates=directory / "confdir" / "templates",
        crds=directory / "crds",
        version=version,
        branch=facts.get("branch") or "unknown",
        commit=facts.get("commit") or "unknown",
        manifests=facts.get("manifests") or "unknown",
        module=facts.get("module") or "github.com/projectcalico/calico",
    )


def build(script: Path = BUILD_SCRIPT, *, timeout: float = 3600.0) -> Path:
    """Run the build script; the directory it prints on its last stdout line.

    Its step lines go to this process's stderr, go's output to a log file
    (:func:`~calico_rr.adapters.build_script.run_build_script`)."""
    if not script.is_file():
        raise CalicoBinError(
            f"{script} not found: set {ENV_BIN} to a directory with Calico's binaries"
        )
    try:
        return run_build_script(script, timeout=timeout)
    except RuntimeError as exc:
        raise CalicoBinError(str(exc)) from exc


def locate(*, script: Path = BUILD_SCRIPT, timeout: float = 3600.0) -> CalicoBinaries:
    """Calico's binaries: ``$CALICO_RR_CALICO_BIN`` if set, else built (or reused)
    by ``scripts/calico-build.sh``."""
    prebuilt = os.environ.get(ENV_BIN)
    if prebuilt:
        return from_directory(Path(prebuilt))
    return from_directory(build(script, timeout=timeout))
