"""Datastore settings the way Calico's tools take them (calicoctl, calico-node).

Environment::

    DATASTORE_TYPE      kubernetes (default) | etcdv3
    ETCD_ENDPOINTS      comma-separated URLs, e.g. https://10.0.0.1:2379,https://10.0.0.2:2379
                        (default http://127.0.0.1:2379, as Calico's)
    ETCD_CA_CERT_FILE   CA bundle that signed the etcd server certificates
    ETCD_CERT_FILE      client certificate (with ETCD_KEY_FILE)
    ETCD_KEY_FILE       client key
    ETCD_USERNAME       etcd user (etcd's own authentication, with ETCD_PASSWORD)
    ETCD_PASSWORD       its password (environment only: a flag would show in ``ps``)

A flag value, when given, wins over its environment variable.  Every mistake is a
:class:`~calico_rr.errors.ConfigError` naming the variable (or flag) and the value.
Calico also reads ETCD_DISCOVERY_SRV; calico-rr does not support it and says so
rather than ignoring it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from calico_rr.errors import ConfigError

DatastoreType = Literal["kubernetes", "etcdv3"]

DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"


@dataclass(frozen=True, slots=True)
class EtcdSettings:
    endpoints: tuple[str, ...]
    ca_cert_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.endpoints[0].startswith("https://")


def datastore_type(env: Mapping[str, str] | None = None, flag: str | None = None) -> DatastoreType:
    """``kubernetes`` or ``etcdv3`` from ``flag`` or ``DATASTORE_TYPE`` (default
    ``kubernetes``: the operator's original home)."""
    source = "--datastore-type" if flag else "DATASTORE_TYPE"
    raw = flag if flag else (os.environ if env is None else env).get("DATASTORE_TYPE", "")
    value = raw.strip().lower()
    if value in ("", "kubernetes"):
        return "kubernetes"
    if value == "etcdv3":
        return "etcdv3"
    raise ConfigError(f"{source}={raw!r}: must be 'kubernetes' or 'etcdv3'")


def _endpoint(text: str, source: str) -> str:
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError as exc:
        raise ConfigError(f"{source}: {text!r} is not a URL ({exc})") from None
    if url.scheme not in ("http", "https"):
        raise ConfigError(
            f"{source}: {text!r} must start with http:// or https:// (e.g. https://10.0.0.1:2379)"
        )
    if not url.hostname:
        raise ConfigError(f"{source}: {text!r} has no host")
    if url.username or url.password:
        raise ConfigError(
            f"{source}: {text!r} carries credentials; give them as ETCD_USERNAME and "
            "ETCD_PASSWORD instead"
        )
    if url.path not in ("", "/") or url.query or url.fragment:
        raise ConfigError(f"{source}: {text!r} must be scheme://host:port, without a path")
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return f"{url.scheme}://{host}:{port if port is not None else 2379}"


def _file(value: str | None, source: str) -> Path | None:
    if value is None or not value.strip():
        return None
    path = Path(value.strip())
    if not path.exists():
        raise ConfigError(f"{source}={value}: no such file")
    if not path.is_file():
        raise ConfigError(f"{source}={value}: not a regular file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{source}={value}: not readable by this process")
    return path


def etcd_settings(
    env: Mapping[str, str] | None = None,
    *,
    endpoints: str | None = None,
    ca_cert_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    username: str | None = None,
) -> EtcdSettings:
    """Validated etcd settings from flags (keyword arguments) over ``env``."""
    env = os.environ if env is None else env
    if env.get("ETCD_DISCOVERY_SRV"):
        raise ConfigError(
            "ETCD_DISCOVERY_SRV is set, but calico-rr does not support it: list the members in "
            "ETCD_ENDPOINTS"
        )

    def pick(flag_value: str | None, flag: str, var: str) -> tuple[str | None, str]:
        if flag_value is not None:
            return flag_value, flag
        return env.get(var), var

    raw_endpoints, ep_source = pick(endpoints, "--etcd-endpoints", "ETCD_ENDPOINTS")
    if raw_endpoints is None or not raw_endpoints.strip():
        raw_endpoints = DEFAULT_ENDPOINTS
    parsed: list[str] = []
    for part in raw_endpoints.split(","):
        if not part.strip():
            continue
        url = _endpoint(part.strip(), ep_source)
        if url in parsed:
            raise ConfigError(f"{ep_source}: {part.strip()!r} is listed twice")
        parsed.append(url)
    if not parsed:
        raise ConfigError(f"{ep_source}={raw_endpoints!r}: no endpoint")
    schemes = {u.split("://", 1)[0] for u in parsed}
    if len(schemes) > 1:
        raise ConfigError(
            f"{ep_source}: mixes http:// and https:// endpoints; use one scheme for all"
        )

    ca_value, ca_source = pick(ca_cert_file, "--etcd-ca-cert-file", "ETCD_CA_CERT_FILE")
    cert_value, cert_source = pick(cert_file, "--etcd-cert-file", "ETCD_CERT_FILE")
    key_value, key_source = pick(key_file, "--etcd-key-file", "ETCD_KEY_FILE")
    ca = _file(ca_value, ca_source)
    cert = _file(cert_value, cert_source)
    key = _file(key_value, key_source)
    if (cert is None) != (key is None):
        given, missing = (cert_source, key_source) if cert else (key_source, cert_source)
        raise ConfigError(f"{given} is set but {missing} is not: give the certificate and its key")
    if schemes == {"http"} and (ca or cert):
        raise ConfigError(
            f"TLS files are set ({ca_source if ca else cert_source}) but {ep_source} uses "
            "http://; use https:// endpoints (or drop the TLS settings)"
        )
    user_value, user_source = pick(username, "--etcd-username", "ETCD_USERNAME")
    user = user_value.strip() if user_value and user_value.strip() else None
    password = env.get("ETCD_PASSWORD") or None
    if user is not None and password is None:
        raise ConfigError(f"{user_source}={user} is set but ETCD_PASSWORD is not")
    if password is not None and user is None:
        raise ConfigError("ETCD_PASSWORD is set but ETCD_USERNAME (or --etcd-username) is not")
    if user is not None and ":" in user:
        raise ConfigError(f"{user_source}={user!r}: an etcd user name cannot contain ':'")
    return EtcdSettings(
        endpoints=tuple(parsed),
        ca_cert_file=ca,
        cert_file=cert,
        key_file=key,
        username=user,
        password=password,
    )
