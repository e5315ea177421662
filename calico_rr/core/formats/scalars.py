"""The scalars of datastore documents: IP addresses and RFC 3339 timestamps (pure).

Kubernetes and Calico documents spell them the same way, so the Node reader
(:mod:`~calico_rr.core.formats.kube`), the etcd layout
(:mod:`~calico_rr.core.formats.etcd`) and the adapters (leases, status times) share
these functions.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from calico_rr.core.formats.fields import type_name
from calico_rr.core.values import is_dotted_quad
from calico_rr.errors import InputError, safe_repr

_PREFIX_LENGTHS = frozenset(str(n) for n in range(33))


def parse_ipv4(text: str) -> str | None:
    """The address of ``"10.0.0.5"`` or ``"10.0.0.5/24"``, or None when malformed.

    The prefix form is what calico-node writes into the ``projectcalico.org/IPv4Address``
    annotation in KDD mode (domain.md section 2); it parses it as a CIDR (prefix
    length 0-32; a dotted netmask is not CIDR and is refused).
    """
    address, slash, prefix = text.partition("/")
    if slash and prefix not in _PREFIX_LENGTHS:
        return None
    return address if is_dotted_quad(address) else None


def ipv4_field(value: object, obj: str, field: str) -> str:
    """The address of a node's BGP address field (:func:`parse_ipv4`), else InputError."""
    return _address_field(parse_ipv4, "an IPv4 address such as 10.0.0.5/24", value, obj, field)


def _address_field(
    parse: Callable[[str], str | None], wanted: str, value: object, obj: str, field: str
) -> str:
    ip = parse(value) if isinstance(value, str) else None
    if ip is None:
        raise InputError(f"{safe_repr(value)} is not {wanted}", obj=obj, field=field)
    return ip


_PREFIX_LENGTHS6 = frozenset(str(n) for n in range(129))


def parse_ipv6(text: str) -> str | None:
    """The compressed address of ``"fd00::5"`` or ``"fd00::5/64"``, or None when malformed.

    The prefix form is what calico-node writes into ``projectcalico.org/IPv6Address``
    (prefix length 0-128).  A zone (``%eth0``) or an IPv4-mapped spelling is refused:
    neither is a BGP address calico-node configures.  The compressed form is
    returned so that two spellings of one address compare equal (peerIP lookups
    compare strings).
    """
    address, slash, prefix = text.partition("/")
    if slash and prefix not in _PREFIX_LENGTHS6:
        return None
    if ":" not in address or "%" in address or not address.isascii():
        return None
    try:
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        return None
    return None if parsed.ipv4_mapped is not None else parsed.compressed


def ipv6_field(value: object, obj: str, field: str) -> str:
    """The address of a node's IPv6 BGP address field (:func:`parse_ipv6`), else InputError."""
    return _address_field(parse_ipv6, "an IPv6 address such as fd00::5/64", value, obj, field)


def established_peers(bgp: Mapping[str, Any]) -> frozenset[str]:
    """The peer addresses a CalicoNodeStatus's ``status.bgp`` reports Established, in
    both families: ``peersV4`` (BIRD) and ``peersV6`` (bird6).  One set serves both
    because an IPv6 address never reads as an IPv4 one; IPv6 addresses are
    compressed (:func:`parse_ipv6`) so they compare equal to the nodes' addresses,
    and an unreadable one is left out (it confirms nothing)."""
    out: set[str] = set()
    for key, read in (("peersV4", str), ("peersV6", parse_ipv6)):
        peers = bgp.get(key)
        if not isinstance(peers, list):
            continue
        for peer in peers:
            if not isinstance(peer, Mapping) or peer.get("state") != "Established":
                continue
            ip = peer.get("peerIP")
            address = read(ip) if isinstance(ip, str) and ip else None
            if address is not None:
                out.add(address)
    return frozenset(out)


# RFC 3339 section 5.6 "date-time": full date, "T", full time, mandatory offset.
# datetime.fromisoformat() alone would also accept ISO 8601 forms that are not
# RFC 3339 (no offset, week dates, "20240102T030405"), so the shape is checked
# here first; fromisoformat (C code, fast) then checks the ranges (no April 31st).
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)")

#: datetime's range, so that every value format_timestamp writes parses back.
MIN_TS = -62135596800.0  # 0001-01-01T00:00:00Z
MAX_TS = 253402300800.0  # 10000-01-01T00:00:00Z (exclusive)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def parse_timestamp(text: str) -> float:
    """POSIX seconds of an RFC 3339 date-time such as ``"2024-01-02T03:04:05Z"``.

    Fractions beyond microseconds are truncated.  Raises ValueError when ``text``
    is not an RFC 3339 date-time.
    """
    if _RFC3339.fullmatch(text) is None:
        raise ValueError("not an RFC 3339 date-time such as 2024-01-02T03:04:05Z")
    if text[10] == "t" or text[-1] == "z":  # RFC 3339 allows lower case; Python does not
        text = text.upper()
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise ValueError(f"not a valid date-time ({exc})") from None


@lru_cache(maxsize=4096)
def _day(days: int) -> str:
    # Nodes of one cluster are created over a few years at most: caching the date
    # part makes formatting a 50,000-node cluster's timestamps cheap.
    return date.fromordinal(_EPOCH_ORDINAL + days).isoformat()


def format_timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with a ``Z``, as the API server writes metav1.Time.

    Kubernetes stores whole seconds; a fractional part is written (microseconds,
    trailing zeros trimmed) only when ``seconds`` has one.  Raises ValueError
    outside years 1-9999.
    """
    if not MIN_TS <= seconds < MAX_TS:  # also false for NaN
        raise ValueError(f"{seconds!r} is outside years 1-9999")
    whole = math.floor(seconds)
    micro = round((seconds - whole) * 1_000_000)
    if micro == 1_000_000:
        whole, micro = whole + 1, 0
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{_day(days)}T{hours:02d}:{minutes:02d}:{secs:02d}"
    if micro:
        text += "." + f"{micro:06d}".rstrip("0")
    return text + "Z"


def timestamp_field(metadata: Mapping[str, Any], key: str, obj: str) -> float | None:
    """POSIX seconds of ``metadata.<key>`` (None: absent), else InputError."""
    value = metadata.get(key)
    if value is None:
        return None
    if isinstance(value, datetime):
        # yaml.safe_load turns an *unquoted* timestamp into a datetime; kubectl quotes
        # them, but hand-written files may not.  Naive means UTC in YAML 1.1.
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if not isinstance(value, str):
        raise InputError(
            f"must be an RFC 3339 string, got {type_name(value)}",
            obj=obj,
            field=f"metadata.{key}",
        )
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InputError(f"{safe_repr(value)}: {exc}", obj=obj, field=f"metadata.{key}") from None
