"""Calico's etcdv3 datastore: an etcd v3 client over the JSON gateway (``client``),
settings from Calico's environment variables (``config``), leader election on an
etcd lease (``leader``) and what ``calico-rr doctor`` reads from etcd
(``inventory``).  The Calico key layout and document conversions are pure and live
in ``calico_rr.core.formats.etcd``.  See docs/ETCD.md."""

from calico_rr.adapters.etcd.client import (
    Compacted,
    Conflict,
    EtcdAuthError,
    EtcdClient,
    EtcdError,
    EtcdTLSError,
    EtcdUnavailable,
    EventType,
    Fence,
    Fenced,
    KeyValue,
    Lease,
    LeaseNotFound,
    ListResult,
    Progress,
    Watch,
    WatchEvent,
)
from calico_rr.adapters.etcd.config import EtcdSettings, datastore_type, etcd_settings
from calico_rr.adapters.etcd.leader import EtcdLeaderElector

__all__ = [
    "Compacted",
    "Conflict",
    "EtcdAuthError",
    "EtcdClient",
    "EtcdError",
    "EtcdLeaderElector",
    "EtcdSettings",
    "EtcdTLSError",
    "EtcdUnavailable",
    "EventType",
    "Fence",
    "Fenced",
    "KeyValue",
    "Lease",
    "LeaseNotFound",
    "ListResult",
    "Progress",
    "Watch",
    "WatchEvent",
    "datastore_type",
    "etcd_settings",
]
