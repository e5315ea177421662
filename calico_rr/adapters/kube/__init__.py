"""Kubernetes API access: a thin HTTP client (``client``) with its paths (``api``),
errors (``errors``), configuration (``kubeconfig``, with ``credentials`` and ``tls``)
and watch streams (``watch``), and informers (``informer``)."""

from calico_rr.adapters.kube.api import APPLY_PATCH, api_path, resource_of
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Gone,
    KubeConfigError,
    NotFound,
)
from calico_rr.adapters.kube.informer import Informer, object_key
from calico_rr.adapters.kube.watch import Watch, WatchEvent

__all__ = [
    "APPLY_PATCH",
    "AlreadyExists",
    "ApiError",
    "Conflict",
    "Gone",
    "Informer",
    "KubeClient",
    "KubeConfigError",
    "NotFound",
    "Watch",
    "WatchEvent",
    "api_path",
    "object_key",
    "resource_of",
]
