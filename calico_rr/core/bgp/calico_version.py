"""Which Calico release reads the configuration, and what that changes.

What a set of Calico resources means can depend on the Calico version that
reads it.  Each rule here names the first release it holds for and its source;
``None`` as the version means "the newest Calico" (every rule on), which is what
the verifier assumed before it took a version.

Rules:

* ``reversePeering`` on BGPPeer: added in Calico v3.30.3 (projectcalico/calico
  PR 10675, backported in PR 10689; docs tigera/docs PR 2206).  Older releases
  do not know the field (their CRDs prune it, their confd ignores it) and always
  add the reverse peering of a ``peerSelector`` peering: measured here with
  confd from the release-v3.28 branch (docs/CALICO.md).

Which release: the one asked for (``--calico-version``), else the one the cluster
records.  calico-node writes its version into ClusterInformation ``default``
(``spec.calicoVersion``), so a dump that holds it says how to read itself
(:func:`reading_release`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from calico_rr.errors import InputError, safe_repr

_VERSION = re.compile(r"^v?(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3}))?(?:[-+].*)?$")


@dataclass(frozen=True, order=True, slots=True)
class CalicoVersion:
    """A Calico release as major.minor.patch (a missing patch reads as 0)."""

    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"

    def honours_reverse_peering(self) -> bool:
        return self >= REVERSE_PEERING_SINCE


#: the first release whose BGPPeer has ``reversePeering`` (module docstring)
REVERSE_PEERING_SINCE = CalicoVersion(3, 30, 3)


def parse_calico_version(text: str) -> CalicoVersion:
    """``v3.28.5``, ``3.30`` or ``v3.28.5-ga0db560f0520`` -> :class:`CalicoVersion`;
    InputError for anything else."""
    m = _VERSION.match(text.strip())
    if m is None or int(m.group(1)) != 3:
        raise InputError(
            f"expected a Calico v3 release such as v3.28.5 or 3.30, got {safe_repr(text)}",
            field="--calico-version",
        )
    return CalicoVersion(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def reading_release(
    asked: CalicoVersion | None, info: Mapping[str, Any] | None
) -> tuple[CalicoVersion | None, str | None]:
    """The release to read a set of resources as, and a note saying why (or None).

    ``asked`` (``--calico-version``) wins; else ``spec.calicoVersion`` of the
    ClusterInformation ``default`` document ``info`` (calico-node records its own
    release there); else None, the newest Calico.  A value that is not a v3
    release is noted and left aside."""
    spec = info.get("spec") if info is not None else None
    text = spec.get("calicoVersion") if isinstance(spec, Mapping) else None
    if not isinstance(text, str) or not text.strip():
        return asked, None
    try:
        found = parse_calico_version(text)
    except InputError:
        fallback = asked if asked is not None else "the newest Calico"
        return asked, (
            f"ClusterInformation default: calicoVersion {safe_repr(text)} is not a Calico v3 "
            f"release; read as {fallback}"
        )
    if asked is None:
        return found, f"read as Calico {found}, the release ClusterInformation default records"
    if asked != found:
        return asked, f"read as Calico {asked} as asked; ClusterInformation default records {found}"
    return asked, None
