"""The shape of the Kubernetes REST API: resource paths, request verbs and the
content types of the patch flavours.  Pure functions, no HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES: Mapping[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


def api_path(
    api_version: str, plural: str, name: str | None = None, *, namespace: str | None = None
) -> str:
    """The REST path of a collection (``name=None``) or of one object.

    >>> api_path("v1", "nodes", "n1")
    '/api/v1/nodes/n1'
    >>> api_path("coordination.k8s.io/v1", "leases", "x", namespace="ns")
    '/apis/coordination.k8s.io/v1/namespaces/ns/leases/x'
    """
    if not api_version or not plural:
        raise ValueError("api_version and plural must not be empty")
    prefix = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    parts = [prefix]
    if namespace:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name:
        parts.append(quote(name, safe=":@"))
    return "/".join(parts)


def _split_resource_path(path: str) -> tuple[str, bool] | None:
    """(plural, is_named) for a resource path, None for a non-resource URL."""
    segs = [s for s in path.split("?", 1)[0].split("/") if s]
    if len(segs) >= 3 and segs[0] == "api":
        rest = segs[2:]
    elif len(segs) >= 4 and segs[0] == "apis":
        rest = segs[3:]
    else:
        return None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        rest = rest[2:]
    return rest[0], len(rest) >= 2


def resource_of(path: str) -> str:
    """The resource plural of a request path (``"nodes"`` for ``/api/v1/nodes/n1``).

    For ``/api/v1/namespaces/ns`` it is ``"namespaces"``; for non-resource URLs
    (``/apis``, ``/version``) it is the path itself.
    """
    split = _split_resource_path(path)
    return split[0] if split else path.split("?", 1)[0]


def verb_of(method: str, path: str, params: Mapping[str, str] | None, content_type: str) -> str:
    """The Kubernetes verb of a request (get/list/watch/create/update/patch/apply/delete)."""
    method = method.upper()
    if method == "GET":
        if params and str(params.get("watch", "")).lower() in ("true", "1"):
            return "watch"
        split = _split_resource_path(path)
        return "list" if split is not None and not split[1] else "get"
    if method == "PATCH":
        return "apply" if content_type == APPLY_PATCH else "patch"
    return {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())
