"""Apply the repo's deploy/ manifests (and test objects) to a test control plane."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from calico_rr.sandbox.controlplane import ControlPlane, apply_crds, request
from calico_rr.sandbox.process import REPO_ROOT, ControlPlaneError

DEPLOY = REPO_ROOT / "deploy"
#: Calico's CRDs, beside the repo (../shared/calico/crds), or $CALICO_RR_CALICO_CRDS.
CALICO_CRDS = REPO_ROOT.parent / "shared" / "calico" / "crds"

#: kind -> (collection path template, namespaced)
_KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("/api/v1/namespaces", False),
    "ServiceAccount": ("/api/v1/namespaces/{ns}/serviceaccounts", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1/clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", True),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", False),
    "RouteReflectorConfig": ("/apis/calico-rr.io/v1alpha1/routereflectorconfigs", False),
}


def calico_crds(group: str = "crd.projectcalico.org-v1") -> Path:
    base = Path(os.environ.get("CALICO_RR_CALICO_CRDS", str(CALICO_CRDS)))
    path = base / group
    if not path.is_dir():
        raise ControlPlaneError(
            f"Calico CRDs not found at {path} (expected ../shared/calico/crds beside the repo, "
            "or set CALICO_RR_CALICO_CRDS)"
        )
    return path


def documents(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as fh:
        for doc in yaml.safe_load_all(fh):
            if isinstance(doc, dict) and doc.get("kind"):
                yield doc


def object_path(doc: dict[str, Any]) -> str:
    kind = str(doc["kind"])
    try:
        template, namespaced = _KINDS[kind]
    except KeyError:
        raise ControlPlaneError(f"no path known for kind {kind}") from None
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    base = template.format(ns=ns) if namespaced else template
    return f"{base}/{meta['name']}"


def apply_documents(cp: ControlPlane, docs: Iterable[dict[str, Any]]) -> None:
    """Server-side apply each document as the admin user."""
    for doc in docs:
        status, body = request(
            cp,
            "PATCH",
            object_path(doc),
            doc,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": "calico-rr-test", "force": "true"},
        )
        if status not in (200, 201):
            raise ControlPlaneError(
                f"applying {doc['kind']} {doc['metadata']['name']}: {status} {body}"
            )


def install_operator_rbac(cp: ControlPlane) -> None:
    """Our CRD and RBAC (deploy/), so the ``calico-rr`` user can run the operator."""
    apply_crds(cp, DEPLOY / "crds")
    docs = list(documents(DEPLOY / "rbac.yaml"))
    apply_documents(cp, [d for d in docs if d["kind"] == "Namespace"])
    apply_documents(cp, [d for d in docs if d["kind"] != "Namespace"])
