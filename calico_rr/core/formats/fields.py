"""Reading the fields every datastore document shares (pure).

Every reader of decoded documents (Kubernetes Nodes in :mod:`~calico_rr.core.formats.kube`,
Calico resources in :mod:`calico_rr.core.bgp.resources` for ``verify``, the etcd
documents in :mod:`~calico_rr.core.formats.etcd`, the doctor's inventory) names objects,
values and maps with the functions below, so the same bad input gives the same
words in every command.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from calico_rr.errors import InputError, safe_repr


def position(where: str, document: int, item: int = 0) -> str:
    """Where an object sits in decoded input, counted as a person counts (1-based).

    * ``document 2 of f.yaml``: the second document of a stream (empty ``---``
      documents count), when the document is the object itself (``item`` 0);
    * ``item 3 of f.yaml``: the third item of the ``List`` that is the first
      document, which is what a single-document file, the common case, reads as;
    * ``item 3 of document 2 of f.yaml``: the same in a later document.
    """
    if item <= 0:
        return f"document {document} of {where}"
    if document == 1:
        return f"item {item} of {where}"
    return f"item {item} of document {document} of {where}"


def type_name(value: object) -> str:
    """What a decoded value is, in words for a message: "a map", "a list", "null", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def is_map(value: object) -> TypeGuard[Mapping[str, Any]]:
    # isinstance(x, Mapping) goes through the ABC machinery (~10x slower than a type
    # check); decoded YAML and JSON only ever produce plain dicts.
    return type(value) is dict or isinstance(value, Mapping)


def mapping(value: object, obj: str, field: str) -> Mapping[str, Any]:
    """``value`` as a map, returned as is; absent (None) is an empty map, as
    Kubernetes and Calico omit empty fields."""
    if type(value) is dict:  # the common case, without the slow ABC isinstance check
        return value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"must be a map, got {type_name(value)}", obj=obj, field=field)
    return value


def string_map(value: object, obj: str, field: str) -> Mapping[str, str]:
    """Labels or annotations: Kubernetes' map[string]string, returned as is (no
    copy; absent is an empty map).  Raises InputError on the first key or value
    that is not a string."""
    m = mapping(value, obj, field)
    for k, v in m.items():
        if not isinstance(k, str):
            raise InputError(f"key {safe_repr(k)} must be a string", obj=obj, field=field)
        if not isinstance(v, str):
            # Typically an unquoted YAML value: `yes`, `true`, `1.0` decode as non-strings.
            raise InputError(
                f"must be a string, got {type_name(v)} {safe_repr(v)} (quote it in YAML)",
                obj=obj,
                field=f'{field}["{k}"]',
            )
    return m


def flag(parent: Mapping[str, Any], key: str, *, default: bool, obj: str, field: str) -> bool:
    """The boolean ``parent[key]``; absent (None) is ``default``."""
    value = parent.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(
            f"must be true or false, got {type_name(value)} {safe_repr(value)}",
            obj=obj,
            field=field,
        )
    return value


def duplicate(what: str, first: str, again: str, *, obj: str) -> InputError:
    """The error for an object given twice: ``what`` is in words, ``first`` and
    ``again`` name both places (:func:`position`)."""
    return InputError(
        f"duplicate {what} (first seen as {first}, again as {again})",
        obj=obj,
        field="metadata.name",
    )
