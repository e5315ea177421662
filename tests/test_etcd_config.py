"""adapters.etcd.config: Calico's DATASTORE_TYPE / ETCD_* settings, validated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.config import (
    DEFAULT_ENDPOINTS,
    EtcdSettings,
    datastore_type,
    etcd_settings,
)
from calico_rr.errors import ConfigError


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name in ("ca.crt", "client.crt", "client.key"):
        path = tmp_path / name
        path.write_text("not really PEM\n")
        out[name] = str(path)
    return out


def test_datastore_type() -> None:
    assert datastore_type({}) == "kubernetes"
    assert datastore_type({"DATASTORE_TYPE": "etcdv3"}) == "etcdv3"
    assert datastore_type({"DATASTORE_TYPE": " Kubernetes "}) == "kubernetes"
    assert datastore_type({"DATASTORE_TYPE": "kubernetes"}, flag="etcdv3") == "etcdv3"
    with pytest.raises(ConfigError, match=r"DATASTORE_TYPE='etcd'.*'kubernetes' or 'etcdv3'"):
        datastore_type({"DATASTORE_TYPE": "etcd"})
    with pytest.raises(ConfigError, match="--datastore-type"):
        datastore_type({}, flag="consul")


def test_defaults_are_calicos() -> None:
    assert etcd_settings({}) == EtcdSettings(endpoints=(DEFAULT_ENDPOINTS,))
    assert not etcd_settings({}).tls


def test_endpoints_are_parsed_and_normalised(files: dict[str, str]) -> None:
    env = {
        "ETCD_ENDPOINTS": " https://10.0.0.1:2379, https://etcd-2/ ,,https://[fd00::3]:4001",
        "ETCD_CA_CERT_FILE": files["ca.crt"],
        "ETCD_CERT_FILE": files["client.crt"],
        "ETCD_KEY_FILE": files["client.key"],
    }
    s = etcd_settings(env)
    assert s.endpoints == ("https://10.0.0.1:2379", "https://etcd-2:2379", "https://[fd00::3]:4001")
    assert (s.ca_cert_file, s.cert_file, s.key_file) == (
        Path(files["ca.crt"]),
        Path(files["client.crt"]),
        Path(files["client.key"]),
    )
    assert s.tls


def test_flags_win_over_the_environment(files: dict[str, str]) -> None:
    env = {"ETCD_ENDPOINTS": "http://a:2379", "ETCD_CERT_FILE": "/nonexistent"}
    s = etcd_settings(
        env,
        endpoints="https://b:2379",
        ca_cert_file=files["ca.crt"],
        cert_file=files["client.crt"],
        key_file=files["client.key"],
    )
    assert s.endpoints == ("https://b:2379",) and s.cert_file == Path(files["client.crt"])


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ("10.0.0.1:2379", "must start with http:// or https://"),
        ("unix:///run/etcd.sock", "must start with http:// or https://"),
        ("https://", "has no host"),
        ("https://10.0.0.1:2379/v3", "without a path"),
        ("https://10.0.0.1:notaport", "not a URL"),
        ("https://user:pw@10.0.0.1:2379", "carries credentials"),
        ("https://a:2379,https://a:2379", "listed twice"),
        ("http://a:2379,https://b:2379", "mixes http:// and https://"),
        (" , ", "no endpoint"),
    ],
)
def test_bad_endpoints_are_explained(endpoints: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        etcd_settings({"ETCD_ENDPOINTS": endpoints})
    assert "ETCD_ENDPOINTS" in str(info.value)


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError, match="--etcd-endpoints"):
        etcd_settings({}, endpoints="ftp://x")


def test_cert_without_key_and_key_without_cert(files: dict[str, str]) -> None:
    base = {"ETCD_ENDPOINTS": "https://a:2379"}
    with pytest.raises(ConfigError, match="ETCD_CERT_FILE is set but ETCD_KEY_FILE is not"):
        etcd_settings({**base, "ETCD_CERT_FILE": files["client.crt"]})
    with pytest.raises(ConfigError, match="ETCD_KEY_FILE is set but ETCD_CERT_FILE is not"):
        etcd_settings({**base, "ETCD_KEY_FILE": files["client.key"]})


def test_missing_unreadable_and_directory_files(tmp_path: Path, files: dict[str, str]) -> None:
    base = {"ETCD_ENDPOINTS": "https://a:2379"}
    missing = str(tmp_path / "nope.crt")
    with pytest.raises(ConfigError, match=f"ETCD_CA_CERT_FILE={missing}: no such file"):
        etcd_settings({**base, "ETCD_CA_CERT_FILE": missing})
    with pytest.raises(ConfigError, match="not a regular file"):
        etcd_settings({**base, "ETCD_CA_CERT_FILE": str(tmp_path)})
    if os.geteuid() != 0:  # root reads every file
        Path(files["ca.crt"]).chmod(0)
        with pytest.raises(ConfigError, match="not readable"):
            etcd_settings({**base, "ETCD_CA_CERT_FILE": files["ca.crt"]})


def test_tls_files_with_plain_http_endpoints_are_refused(files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"ETCD_CA_CERT_FILE\) but ETCD_ENDPOINTS uses http://"):
        etcd_settings({"ETCD_ENDPOINTS": "http://a:2379", "ETCD_CA_CERT_FILE": files["ca.crt"]})


def test_unsupported_calico_settings_are_not_silently_ignored() -> None:
    with pytest.raises(ConfigError, match="ETCD_DISCOVERY_SRV"):
        etcd_settings({"ETCD_DISCOVERY_SRV": "example.com"})


def test_user_and_password_from_env_and_flag() -> None:
    s = etcd_settings({"ETCD_USERNAME": "rr", "ETCD_PASSWORD": "s3cret"})
    assert (s.username, s.password) == ("rr", "s3cret")
    assert "s3cret" not in repr(s)  # never in a log line or a traceback
    s = etcd_settings({"ETCD_USERNAME": "rr", "ETCD_PASSWORD": "pw"}, username="other")
    assert s.username == "other"
    assert etcd_settings({}).username is None and etcd_settings({}).password is None


@pytest.mark.parametrize(
    ("env", "flag", "message"),
    [
        ({"ETCD_USERNAME": "rr"}, None, "ETCD_USERNAME=rr is set but ETCD_PASSWORD is not"),
        ({}, "rr", "--etcd-username=rr is set but ETCD_PASSWORD is not"),
        ({"ETCD_PASSWORD": "pw"}, None, "ETCD_PASSWORD is set but ETCD_USERNAME"),
        ({"ETCD_USERNAME": "a:b", "ETCD_PASSWORD": "pw"}, None, "cannot contain ':'"),
    ],
)
def test_half_given_credentials_are_refused(
    env: dict[str, str], flag: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        etcd_settings(env, username=flag)


def test_client_reports_unloadable_certificates(files: dict[str, str]) -> None:
    settings = etcd_settings(
        {
            "ETCD_ENDPOINTS": "https://a:2379",
            "ETCD_CERT_FILE": files["client.crt"],
            "ETCD_KEY_FILE": files["client.key"],
        }
    )
    with pytest.raises(ConfigError, match="cannot load the client certificate and key"):
        EtcdClient.from_settings(settings)
    bad_ca = EtcdSettings(endpoints=("https://a:2379",), ca_cert_file=Path(files["ca.crt"]))
    with pytest.raises(ConfigError, match=r"ETCD_CA_CERT_FILE .*cannot load CA certificates"):
        EtcdClient.from_settings(bad_ca)
