"""The objects of decoded input, where each sits, and the rule for Calico's two API groups (pure).

Input is what a YAML/JSON decoder gives: one object per document, or a ``List``
(``v1/List``, ``NodeList``, ``BGPPeerList``, ...) whose ``items`` are objects.
:func:`iter_objects` yields each with its place in the input (named with
:func:`calico_rr.core.formats.fields.position`, the labelling every command shares);
:func:`resolve_api_groups` reads an object listed in both Calico API groups once.
``verify`` (:mod:`calico_rr.core.bgp.resources`) and ``doctor``
(:mod:`calico_rr.core.doctor.inventory`) read their input through both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from calico_rr.core.formats.fields import duplicate, position, type_name
from calico_rr.errors import InputError, safe_repr

V1_GROUP = "crd.projectcalico.org/v1"
V3_GROUP = "projectcalico.org/v3"
CALICO_GROUPS = frozenset({V3_GROUP, V1_GROUP})


class Located(NamedTuple):
    """One object of the input, with where it sits and what every reader needs first.

    ``document`` counts the decoded documents from 1 (empty ``---`` documents
    count); ``item`` counts the items of a ``List`` document from 1, 0 when the
    document is the object itself.  :meth:`label` names the place in words with
    :func:`~calico_rr.core.formats.fields.position`, the one labelling every command uses.
    """

    document: int
    item: int
    obj: Mapping[str, Any]
    kind: str
    #: ``apiVersion`` as written, or the typed list's (None: absent)
    api: str | None
    name: str
    meta: Mapping[str, Any]

    def label(self, where: str) -> str:
        return position(where, self.document, self.item)


_NO_META: Mapping[str, Any] = {}


def _locate(
    item: object, d: int, j: int, list_kind: str | None, list_api: object, where: str
) -> Located:
    if type(item) is not dict and not isinstance(item, Mapping):
        what = "a Kubernetes object" if j else "a Kubernetes object or List"
        raise InputError(f"expected {what}, got {type_name(item)}", obj=position(where, d, j))
    kind = item.get("kind") or list_kind
    api = item.get("apiVersion") or list_api
    raw_meta = item.get("metadata")
    meta = raw_meta if type(raw_meta) is dict or isinstance(raw_meta, Mapping) else _NO_META
    name = meta.get("name")
    if (
        type(kind) is str
        and kind
        and (api is None or type(api) is str)
        and type(name) is str
        and name
    ):
        return Located(d, j, item, kind, api, name, meta)
    # Slow path: say what is wrong (or accept str/Mapping subclasses).
    label = position(where, d, j)
    if not isinstance(kind, str) or not kind:
        what = "missing" if kind is None else f"must be a string, got {safe_repr(kind)}"
        raise InputError(what, obj=label, field="kind")
    if api is not None and not isinstance(api, str):
        raise InputError(f"must be a string, got {safe_repr(api)}", obj=label, field="apiVersion")
    if raw_meta is not None and meta is _NO_META:
        raise InputError(f"must be a map, got {type_name(raw_meta)}", obj=label, field="metadata")
    if not isinstance(name, str) or not name:
        what = (
            f"{kind} without a name"
            if name is None
            else f"must be a non-empty string, got {safe_repr(name)}"
        )
        raise InputError(what, obj=label, field="metadata.name")
    return Located(d, j, item, kind, api, name, meta)


def iter_objects(docs: Iterable[Any], where: str) -> Iterator[Located]:
    """Every object of decoded documents, ``List`` items inlined, in input order.

    A document is an object, a ``List`` (``kubectl get -o yaml``), a typed list
    (``NodeList``, ``BGPPeerList``, ... as a plain GET returns it) or ``None`` (an
    empty YAML document, skipped).  Items of a typed list may leave ``kind`` and
    ``apiVersion`` off; like a Kubernetes client, we take them from the list
    (``NodeList`` -> ``Node``).  The generic ``List`` always spells them out, so
    nothing is inferred from it.

    Raises :class:`InputError`, naming the place (:meth:`Located.label`), for
    anything that is not a Kubernetes object with a kind and a name.  ``verify``
    (:func:`~calico_rr.core.bgp.resources.parse_resources`) and ``doctor`` read
    their input through this one function, so both refuse the same inputs with the
    same words.
    """
    for d, doc in enumerate(docs, 1):
        if doc is None:
            continue
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if isinstance(kind, str) and kind.endswith("List"):
            items = doc.get("items")
            if items is None:
                continue
            if not isinstance(items, list):
                raise InputError(
                    f"must be a list, got {type_name(items)}", obj=position(where, d), field="items"
                )
            item_kind = kind[: -len("List")] or None
            api = doc.get("apiVersion") if item_kind else None
            for j, item in enumerate(items, 1):
                yield _locate(item, d, j, item_kind, api, where)
        else:
            yield _locate(doc, d, 0, None, None, where)


def resolve_api_groups(
    objects: Iterable[Located], *, where: str
) -> tuple[list[Located], list[str]]:
    """The Calico objects of the input, each once: the rule for both API groups.

    Calico objects come in two API groups (domain.md section 8), and a dump may hold
    both: with calico-apiserver installed, ``kubectl get bgppeers.projectcalico.org``
    lists the very objects stored as ``crd.projectcalico.org/v1`` CRDs, projected.
    The rule, one for every reader of Calico resources (``verify``, ``doctor``, the
    ``plan`` figures, the operator's safety check):

    * the same kind and name (and namespace) in both groups is **one object**, and
      the ``crd.projectcalico.org/v1`` copy is the one read: Calico's own precedence
      (v3 only when that group is served and ``crd.projectcalico.org`` is not) and
      what calico-node reads (its confd reads the v1 CRDs);  the v3 copy is dropped
      with a note, which says whether the two specs agree.  Differing specs are not
      an error: they describe a cluster calico-node still reads one way (a dump taken
      at two moments, or both CRD sets installed side by side), and the note says
      which copy counts;
    * an object in one group only is read as it is;
    * the same kind and name twice in *one* group is an error naming both places
      (no API server returns that: the dump was pieced together by hand).

    Objects of other API groups (Kubernetes Nodes, Deployments, ...) pass through
    untouched; so does the input order of the objects kept.
    """
    kept: list[Located | None] = []
    notes: list[str] = []
    seen: dict[tuple[str, str, str], dict[str, tuple[int, Located]]] = {}
    for loc in objects:
        api = loc.api
        if api not in CALICO_GROUPS:
            kept.append(loc)
            continue
        namespace = loc.meta.get("namespace")
        ns = namespace if isinstance(namespace, str) else ""
        what = f"{loc.kind} {ns}/{loc.name}" if ns else f"{loc.kind} {loc.name}"
        copies = seen.setdefault((loc.kind, ns, loc.name), {})
        first = copies.get(api)
        if first is not None:
            raise duplicate(loc.kind, first[1].label(where), loc.label(where), obj=what)
        copies[api] = (len(kept), loc)
        kept.append(loc)
        if len(copies) == 2:
            (_, v1), (v3_at, v3) = copies[V1_GROUP], copies[V3_GROUP]
            kept[v3_at] = None
            notes.append(_one_object_note(what, v1, v3, where))
    return [loc for loc in kept if loc is not None], notes


def _one_object_note(what: str, v1: Located, v3: Located, where: str) -> str:
    """The note for ``what``, given in both API groups: only the v1 copy is read."""
    try:
        same = bool((v1.obj.get("spec") or {}) == (v3.obj.get("spec") or {}))
    except RecursionError:  # absurdly nested specs: call them different
        same = False
    agree = (
        "same spec"
        if same
        else f"their specs differ (a dump taken at two moments?): only the {V1_GROUP} one counts"
    )
    return (
        f"{what} is in both API groups ({V1_GROUP} at {v1.label(where)}, {V3_GROUP} "
        f"at {v3.label(where)}): one object, read from {V1_GROUP} as calico-node "
        f"does; {agree}"
    )
