"""Kubernetes API access: a thin httpx client (``client``) and informers (``informer``)."""

from calico_rr.adapters.kube.client import (
    APPLY_PATCH,
    AlreadyExists,
    ApiError,
    Conflict,
    Gone,
    KubeClient,
    KubeConfigError,
    NotFound,
    Watch,
    WatchEvent,
    api_path,
    resource_of,
)
from calico_rr.adapters.kube.informer import Informer, object_key

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
