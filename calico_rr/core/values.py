"""One validation per value: the scalars a user hands calico-rr, checked once, here.

A value may enter through a CLI flag, a RouteReflectorConfig field, a
``ROUTE_REFLECTOR_*`` variable, a node annotation or a Calico resource; each of
those paths calls the function below, so the CLI cannot accept what the
operator refuses (issue 14: ``--cluster-id-base 010.0.0.0`` was read as
10.0.0.0 by one path and refused by another).

* **Dotted quads** (cluster IDs, IPv4 addresses): four decimal octets 0-255,
  ASCII digits, no leading zeros - as strict as Go's ``net.ParseIP``, which
  calico-node uses, and Python's ``ipaddress``.  ``int("010")`` is 10, and some
  parsers read a leading zero as octal: refusing it keeps one spelling per
  address, which matters because peerIP lookups compare strings.
* **Durations**: Go's ``time.ParseDuration`` grammar (calico-node parses
  ``maxRestartTime`` with it) without a sign, bounded by Go's int64 nanoseconds.
"""

from __future__ import annotations

import re
from typing import Final, TypeGuard

from calico_rr.errors import ConfigError, InputError, safe_repr

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
#: A dotted-quad IPv4 address (anchored; also the CRD's pattern for clusterIDBase).
QUAD_PATTERN: Final = rf"^({_OCTET}\.){{3}}{_OCTET}$"
_QUAD = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}", re.ASCII)

#: Go's time.ParseDuration grammar without sign and bare "0"; both micro signs.
DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$"
_DURATION = re.compile(DURATION_PATTERN)
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|μs|ms|s|m|h)")
_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 MICRO SIGN
    "μs": 1e-6,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
#: Go's time.Duration is int64 nanoseconds: about 2,562,047 hours.  A longer value
#: makes calico-node's parse fail, so the whole BGPPeer is skipped.
MAX_GO_DURATION: Final = (2**63 - 1) / 1e9
#: Longest BGPPeer ``maxRestartTime`` calico-rr writes.  The BGP graceful restart
#: capability carries the restart time in a 12-bit field (RFC 4724 section 3), so
#: 4095 s is the most a peer can be told.  BIRD 1.6.8 accepts a larger
#: ``graceful restart time`` in its configuration (measured: ``bird -p`` passes
#: 100000), so nothing downstream would catch the mistake.
MAX_RESTART_TIME: Final = 4095.0


def is_dotted_quad(text: object) -> TypeGuard[str]:
    """True for a canonical dotted-quad IPv4 address such as ``10.0.0.5``."""
    return isinstance(text, str) and _QUAD.fullmatch(text) is not None


def quad_value(text: str) -> int:
    """``"10.0.0.5"`` as a 32-bit integer; ``text`` must pass :func:`is_dotted_quad`."""
    a, b, c, d = (int(p) for p in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def cluster_id_base(text: object) -> None:
    """Check a cluster ID base (``--cluster-id-base``, ``spec.clusterIDBase``): ConfigError."""
    if not is_dotted_quad(text):
        raise ConfigError(
            f"cluster ID base: {safe_repr(text)} is not a dotted-quad IPv4 address "
            "(four numbers 0-255 without leading zeros, e.g. 244.0.0.0)"
        )


def cluster_id(value: object, *, obj: str, field: str) -> str | None:
    """A node's route reflector cluster ID (annotation or ``spec.bgp``): None when
    unset or empty, else a dotted quad, else InputError naming the node and field.
    calico-node validates it as an IPv4 address and skips a node whose ID it cannot
    parse, so a plan built on such a node would be built on sand."""
    if value is None or value == "":
        return None
    if not is_dotted_quad(value):
        raise InputError(
            f"route reflector cluster ID must be a dotted-quad IPv4 address, "
            f"got {safe_repr(value)}",
            obj=obj,
            field=field,
        )
    return value


def parse_duration(text: object) -> float:
    """Seconds in a Go-style duration: "90s", "1m30s", "250ms", "2h", "1.5h"."""
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        raise ConfigError(
            f"{safe_repr(text)} is not a duration (a number with a unit ns, us, ms, s, m or h, "
            'e.g. "90s", "1m30s", "250ms")'
        )
    seconds = sum(float(num) * _UNITS[unit] for num, unit in _DURATION_PART.findall(text))
    if seconds > MAX_GO_DURATION:
        raise ConfigError(f"{safe_repr(text)} is longer than a Go duration can be (about 2562047h)")
    return seconds


def restart_time(text: object) -> None:
    """Check a BGPPeer ``maxRestartTime`` (``--max-restart-time``, ``spec.maxRestartTime``)."""
    try:
        seconds = parse_duration(text)
    except ConfigError as exc:
        raise ConfigError(f"maxRestartTime: {exc}") from None
    if seconds > MAX_RESTART_TIME:
        raise ConfigError(
            f"maxRestartTime: must be <= {MAX_RESTART_TIME:g}s (BGP graceful restart carries "
            f"it in 12 bits, RFC 4724), got {safe_repr(text)}"
        )
