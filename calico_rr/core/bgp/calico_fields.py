"""The values of Calico's BGP fields, checked as calico-node checks them (pure).

AS numbers, node and peer addresses, selectors and the mesh switch, read from
the decoded documents of either API group (:mod:`calico_rr.core.bgp.resources`)
or of the etcd datastore (:mod:`calico_rr.core.formats.etcd`).  Each function
takes the value, the object it belongs to and the field path, and raises
:class:`~calico_rr.errors.InputError` naming both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from calico_rr.core.bgp.selector import SelectorError, parse_selector
from calico_rr.core.formats.fields import flag
from calico_rr.core.formats.scalars import parse_ipv6
from calico_rr.core.values import is_dotted_quad
from calico_rr.errors import InputError, safe_repr

MAX_ASN = 4294967295  # AS numbers are 32-bit (RFC 6793)


def decimal(text: str) -> int | None:
    """``text`` as a non-negative decimal integer, or None unless it is 1 to 10 ASCII
    digits: no number read here (AS, prefix length, port) needs more, and ``int()``
    of a digit string of thousands of characters raises."""
    if 0 < len(text) <= 10 and text.isascii() and text.isdigit():
        return int(text)
    return None


def _string(value: object, obj: str, field: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", obj=obj, field=field)
    return value


def opt_str(value: object, obj: str, field: str) -> str | None:
    """Optional string; Calico treats ``""`` as unset."""
    if value is None or value == "":
        return None
    return _string(value, obj, field)


def cidr_address(value: object, obj: str, field: str) -> str:
    """The address part of an IPv4 ``a.b.c.d/len`` (a bare address is accepted too)."""
    text = _string(value, obj, field)
    addr, slash, plen = text.partition("/")
    length = decimal(plen)
    if slash and (length is None or length > 32):
        raise InputError(f"invalid prefix length in {safe_repr(text)}", obj=obj, field=field)
    if not is_dotted_quad(addr):
        raise InputError(f"not an IPv4 address: {safe_repr(text)}", obj=obj, field=field)
    return addr


def cidr_address6(value: object, obj: str, field: str) -> str:
    """The compressed address part of an IPv6 ``addr/len`` (a bare address is accepted too)."""
    text = _string(value, obj, field)
    address = parse_ipv6(text)
    if address is None:
        raise InputError(
            f"not an IPv6 address such as fd00::5/64: {safe_repr(text)}", obj=obj, field=field
        )
    return address


def asn(value: object, obj: str, field: str) -> int:
    """An AS number: an int, or a string in plain or asdot (``a.b``) form.

    Calico's ``numorstring.ASNumber`` accepts both spellings; the KDD annotation is
    necessarily a string.
    """
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        high, dot, low = value.partition(".")
        if not dot:
            number = decimal(high)
        else:
            h, lo = decimal(high), decimal(low)
            if h is not None and lo is not None and h <= 65535 >= lo:
                number = h * 65536 + lo
    if number is None or not 0 <= number <= MAX_ASN:
        raise InputError(
            f"AS number must be an integer in 0..{MAX_ASN}, got {safe_repr(value)}",
            obj=obj,
            field=field,
        )
    return number


def _split_port(value: str, where: str, field: str) -> tuple[str, str]:
    """(address, port) of ``ip``, ``ip:port`` or ``[v6]:port``; port "" when absent."""
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise InputError(f"missing ']' in {safe_repr(value)}", obj=where, field=field)
        addr, rest = value[1:close], value[close + 1 :]
        if rest and not rest.startswith(":"):
            raise InputError(
                f"expected ':port' after ']' in {safe_repr(value)}", obj=where, field=field
            )
        port = rest[1:]
        if rest and not port:
            raise InputError(f"empty port in {safe_repr(value)}", obj=where, field=field)
        return addr, port
    if value.count(":") == 1:
        addr, _, port = value.partition(":")
        if not port:
            raise InputError(f"empty port in {safe_repr(value)}", obj=where, field=field)
        return addr, port
    return value, ""


def peer_address(value: object, where: str) -> str:
    """The address of ``peerIP``: ``ip``, ``ip:port`` or ``[v6]:port`` (Calico's forms)."""
    field = "spec.peerIP"
    text = _string(value, where, field)
    addr, port = _split_port(text, where, field)
    number = decimal(port)
    if port and (number is None or not 0 < number <= 65535):
        raise InputError(f"invalid port in {safe_repr(text)}", obj=where, field=field)
    try:
        # Normalised spelling, so that it compares equal to a node's address.
        return str(ipaddress.ip_address(addr))
    except ValueError:
        raise InputError(
            f"not a valid IP address: {safe_repr(text)}", obj=where, field=field
        ) from None


def selector(value: object, where: str, field: str) -> str | None:
    """An optional selector (``""`` is unset), checked with calico-node's grammar."""
    text = opt_str(value, where, field)
    if text is None:
        return None
    try:
        parse_selector(text)
    except SelectorError as exc:
        raise InputError(str(exc), obj=where, field=field) from exc
    return text


def node_to_node_mesh(spec: Mapping[str, Any], where: str) -> bool:
    """``nodeToNodeMeshEnabled`` of a BGPConfiguration's spec; absent means on
    (Calico's default: the full node-to-node mesh)."""
    return flag(
        spec, "nodeToNodeMeshEnabled", default=True, obj=where, field="spec.nodeToNodeMeshEnabled"
    )
