"""Kubeconfig handling: kubectl's merge of several files, context selection,
relative paths, cluster TLS/proxy fields, and exec credential plugins (the spec,
the ExecCredential, caching, expiry and the 401 retry).  The live counterparts are
in tests/integration/test_kubeconfig_live.py."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.credentials import (
    BearerToken,
    CredentialError,
    ExecCredentials,
    ExecSpec,
    exec_info,
    parse_exec_credential,
    parse_exec_spec,
    run_plugin,
)
from calico_rr.adapters.kube.errors import ApiError, KubeConfigError
from calico_rr.adapters.kube.kubeconfig import (
    access_for,
    find_access,
    merge_configs,
    read_kubeconfigs,
)
from calico_rr.adapters.kube.tls import ServerNameContext
from calico_rr.cli import app

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"


def config(
    clusters: dict[str, dict[str, Any]] | None = None,
    users: dict[str, dict[str, Any]] | None = None,
    contexts: dict[str, dict[str, Any]] | None = None,
    current: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": k, "cluster": v} for k, v in (clusters or {}).items()],
        "users": [{"name": k, "user": v} for k, v in (users or {}).items()],
        "contexts": [{"name": k, "context": v} for k, v in (contexts or {}).items()],
    }
    if current:
        doc["current-context"] = current
    return doc


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def exec_user(**extra: Any) -> dict[str, Any]:
    return {"exec": {"apiVersion": V1, "command": "plugin", "interactiveMode": "Never", **extra}}


# -- merging -----------------------------------------------------------------------------


def test_merge_first_file_wins_per_name_and_for_current_context() -> None:
    a = config(
        clusters={"c": {"server": "https://a.test"}},
        users={"u": {"token": "from-a"}},
        contexts={"x": {"cluster": "c", "user": "u"}},
        current="x",
    )
    b = config(
        clusters={"c": {"server": "https://b.test"}, "d": {"server": "https://d.test"}},
        users={"u": {"token": "from-b"}, "v": {"token": "v"}},
        contexts={"x": {"cluster": "d"}, "y": {"cluster": "d", "user": "v"}},
        current="y",
    )
    merged = merge_configs([(Path("/k/a"), a), (Path("/k/b"), b)])
    assert merged.current_context == "x"
    assert merged.clusters["c"].value == {"server": "https://a.test"}
    assert merged.clusters["c"].origin == Path("/k/a")
    assert merged.clusters["d"].origin == Path("/k/b")
    assert merged.users["u"].value == {"token": "from-a"}
    # Whole entries win, not fields: b's x (no user) is ignored entirely.
    assert merged.contexts["x"].value == {"cluster": "c", "user": "u"}
    assert set(merged.contexts) == {"x", "y"}
    # A file without current-context leaves the choice to the next one.
    later = merge_configs([(Path("/k/a"), {**a, "current-context": ""}), (Path("/k/b"), b)])
    assert later.current_context == "y"


def test_merge_rejects_duplicates_and_nameless_entries() -> None:
    dup = {"clusters": [{"name": "c", "cluster": {}}, {"name": "c", "cluster": {}}]}
    with pytest.raises(KubeConfigError, match="cluster 'c' is defined twice"):
        merge_configs([(Path("f"), dup)])
    with pytest.raises(KubeConfigError, match="every entry of users needs a name"):
        merge_configs([(Path("f"), {"users": [{"user": {}}]})])
    with pytest.raises(KubeConfigError, match="contexts must be a list"):
        merge_configs([(Path("f"), {"contexts": {"a": 1}})])


def test_read_skips_missing_files_unless_required(tmp_path: Path) -> None:
    a = write(tmp_path / "a", config(clusters={"c": {"server": "https://a.test"}}))
    (tmp_path / "empty").write_text("")
    merged = read_kubeconfigs([tmp_path / "missing", a, tmp_path / "empty", a], required=False)
    assert merged.files == (str(a), str(tmp_path / "empty"))
    assert set(merged.clusters) == {"c"}
    with pytest.raises(KubeConfigError, match="cannot read kubeconfig"):
        read_kubeconfigs([tmp_path / "missing"], required=True)
    (tmp_path / "list").write_text("- 1\n")
    with pytest.raises(KubeConfigError, match="not a kubeconfig"):
        read_kubeconfigs([tmp_path / "list"], required=False)


def test_kubeconfig_env_merges_files_with_paths_relative_to_their_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cluster is in one file, the user and the context in another, in two
    # directories: each relative path resolves against its own file.
    cluster_file = write(
        tmp_path / "clusters" / "config",
        config(clusters={"c": {"server": "https://k8s.test", "insecure-skip-tls-verify": True}}),
    )
    (tmp_path / "users" / "creds").mkdir(parents=True)
    (tmp_path / "users" / "creds" / "token").write_text("file-token\n")
    user_file = write(
        tmp_path / "users" / "config",
        config(
            users={"me": {"tokenFile": "creds/token"}, "x": exec_user(command="./bin/helper")},
            contexts={"main": {"cluster": "c", "user": "me"}, "ex": {"cluster": "c", "user": "x"}},
            current="main",
        ),
    )
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(cluster_file), "", str(user_file)]))
    access = find_access(None, None)
    assert access.server == "https://k8s.test"
    assert access.token_file == str(tmp_path / "users" / "creds" / "token")
    ex = find_access(None, "ex")
    assert isinstance(ex.credentials, ExecCredentials)
    assert ex.credentials.spec.command == str(tmp_path / "users" / "bin" / "helper")
    with pytest.raises(KubeConfigError, match=r"no context named 'nope' \(known: ex, main\)"):
        find_access(None, "nope")


def test_env_with_no_existing_file_and_context_without_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="KUBECONFIG: none of its files exists"):
        find_access(None, None)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with pytest.raises(KubeConfigError, match="--context 'x' needs a kubeconfig"):
        find_access(None, "x")


def test_exec_command_without_slash_is_looked_up_on_path(tmp_path: Path) -> None:
    kc = write(
        tmp_path / "kc",
        config(
            clusters={"c": {"server": "https://k8s.test"}},
            users={"u": exec_user(command="aws")},
            contexts={"x": {"cluster": "c", "user": "u"}},
            current="x",
        ),
    )
    creds = access_for(read_kubeconfigs([kc], required=True), None).credentials
    assert isinstance(creds, ExecCredentials)
    assert creds.spec.command == "aws"


# -- cluster and user fields ---------------------------------------------------------------


def access_with(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Any:
    kc = write(
        tmp_path / "kc",
        config(
            clusters={"c": {"server": "https://10.1.2.3:6443", **cluster}},
            users={"u": user},
            contexts={"x": {"cluster": "c", "user": "u"}},
            current="x",
        ),
    )
    return access_for(read_kubeconfigs([kc], required=True), None)


def test_tls_server_name_is_built_into_the_context(tmp_path: Path) -> None:
    access = access_with(tmp_path, {"tls-server-name": "api.internal"}, {})
    assert isinstance(access.verify, ServerNameContext)
    assert access.verify.server_name == "api.internal"
    assert access.verify.check_hostname
    plain = access_with(tmp_path, {}, {})
    assert not isinstance(plain.verify, ServerNameContext)


def test_proxy_url(tmp_path: Path) -> None:
    assert access_with(tmp_path, {"proxy-url": "http://proxy:3128"}, {}).proxy == (
        "http://proxy:3128"
    )
    with pytest.raises(KubeConfigError, match="socks proxies are not supported"):
        access_with(tmp_path, {"proxy-url": "socks5://proxy:1080"}, {})
    with pytest.raises(KubeConfigError, match="must be an http:// or https:// URL"):
        access_with(tmp_path, {"proxy-url": "ftp://proxy"}, {})


def test_refused_user_kinds(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="basic auth"):
        access_with(tmp_path, {}, {"username": "a", "password": "b"})
    with pytest.raises(KubeConfigError, match="auth-provider plugins are not supported"):
        access_with(tmp_path, {}, {"auth-provider": {"name": "oidc"}})


def test_token_wins_over_token_file(tmp_path: Path) -> None:
    access = access_with(tmp_path, {}, {"token": "t", "tokenFile": "f"})
    assert (access.token, access.token_file) == ("t", None)


# -- the exec spec and the ExecCredential --------------------------------------------------


def spec_of(raw: dict[str, Any], cluster: dict[str, Any] | None = None) -> ExecSpec:
    return parse_exec_spec(raw, base=Path("/conf"), where="kc", cluster=cluster)


def test_exec_spec_validation() -> None:
    good = spec_of(
        {
            "apiVersion": V1BETA1,
            "command": "bin/get-token",
            "args": ["--region", "x"],
            "env": [{"name": "A", "value": "1"}],
            "installHint": "install it",
        }
    )
    assert good.command == "/conf/bin/get-token"
    assert good.args == ("--region", "x") and good.env == (("A", "1"),)
    assert good.interactive_mode == "IfAvailable"  # v1beta1's default
    cases = [
        ({"apiVersion": V1, "command": "x"}, "interactiveMode is required"),
        ({"apiVersion": "v2", "command": "x"}, "apiVersion must be one of"),
        ({"apiVersion": V1BETA1}, "command is required"),
        ({"apiVersion": V1BETA1, "command": "x", "interactiveMode": "Maybe"}, "interactiveMode"),
        ({"apiVersion": V1BETA1, "command": "x", "args": "a b"}, "args must be a list"),
        ({"apiVersion": V1BETA1, "command": "x", "env": [{"value": "1"}]}, "env entries"),
    ]
    for raw, message in cases:
        with pytest.raises(KubeConfigError, match=message):
            spec_of(raw)


def test_exec_info_is_never_interactive_and_carries_the_cluster_on_request() -> None:
    cluster = {"server": "https://k8s.test", "certificate-authority-data": "Q0E="}
    raw = {"apiVersion": V1, "command": "x", "interactiveMode": "IfAvailable"}
    without = json.loads(exec_info(spec_of(raw, cluster)))
    assert without == {"apiVersion": V1, "kind": "ExecCredential", "spec": {"interactive": False}}
    with_info = json.loads(exec_info(spec_of({**raw, "provideClusterInfo": True}, cluster)))
    assert with_info["spec"] == {"interactive": False, "cluster": cluster}


def test_provide_cluster_info_sends_the_ca_file_as_data(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(b"PEM")
    access = access_with(
        tmp_path,
        {
            "certificate-authority": "pki/ca.crt",
            "insecure-skip-tls-verify": True,  # the CA is then not loaded, only sent
            "tls-server-name": "n",
            "extensions": [
                {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "a"}}
            ],
        },
        exec_user(provideClusterInfo=True),
    )
    assert access.credentials.spec.cluster == {
        "server": "https://10.1.2.3:6443",
        "tls-server-name": "n",
        "insecure-skip-tls-verify": True,
        "certificate-authority-data": "UEVN",
        "config": {"audience": "a"},
    }


def credential(status: dict[str, Any], api_version: str = V1) -> str:
    return json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "status": status})


def test_parse_exec_credential() -> None:
    cred = parse_exec_credential(
        credential({"token": "t", "expirationTimestamp": "2030-01-02T03:04:05Z"}), V1
    )
    assert cred.token == "t" and cred.expires == 1893553445.0
    certs = parse_exec_credential(
        credential({"clientCertificateData": "C", "clientKeyData": "K"}), V1
    )
    assert (certs.token, certs.cert_pem, certs.key_pem, certs.expires) == (None, "C", "K", None)
    bad = [
        ("not json", "did not print JSON"),
        (json.dumps({"kind": "Pod"}), "did not print an ExecCredential"),
        (credential({"token": "t"}, V1BETA1), "printed apiVersion"),
        (json.dumps({"apiVersion": V1, "kind": "ExecCredential"}), "printed no status"),
        (credential({}), "neither a token nor a client certificate"),
        (credential({"clientCertificateData": "C"}), "without clientKeyData"),
        (credential({"token": "t", "expirationTimestamp": "soon"}), "not RFC 3339"),
        (credential({"token": "t", "expirationTimestamp": "2030-01-02T03:04:05"}), "time zone"),
        (credential({"token": 5}), "must be strings"),
    ]
    for text, message in bad:
        with pytest.raises(ValueError, match=message):
            parse_exec_credential(text, V1)


# -- the provider: caching, expiry, 401 ---------------------------------------------------


class FakePlugin:
    """Prints the next of ``outputs`` (the last one forever) and counts its runs."""

    def __init__(self, *outputs: str) -> None:
        self.outputs = list(outputs)
        self.runs = 0

    def __call__(self, spec: ExecSpec) -> str:
        self.runs += 1
        return self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]


SPEC = ExecSpec(command="/bin/plugin", args=(), env=(), api_version=V1)


def test_token_is_cached_until_it_expires() -> None:
    now = [1000.0]
    plugin = FakePlugin(
        credential({"token": "one", "expirationTimestamp": "1970-01-01T00:16:50Z"}),  # 1010
        credential({"token": "two"}),
    )
    source = ExecCredentials(SPEC, run=plugin, clock=lambda: now[0])
    assert [source.get() for _ in range(3)] == ["one"] * 3
    assert plugin.runs == 1
    now[0] = 1009.9
    assert source.get() == "one" and plugin.runs == 1
    now[0] = 1010.0
    assert source.get() == "two" and plugin.runs == 2
    now[0] = 10**9  # no expirationTimestamp: kept until the server refuses it
    assert source.get() == "two" and plugin.runs == 2


def test_rejected_token_is_fetched_again_but_a_newer_one_is_kept() -> None:
    plugin = FakePlugin(credential({"token": "old"}), credential({"token": "new"}))
    source = ExecCredentials(SPEC, run=plugin)
    assert source.get() == "old"
    assert source.rejected("old") is True
    assert source.get() == "new" and plugin.runs == 2
    # A 401 to a token already replaced (another thread refreshed) keeps the new one.
    assert source.rejected("old") is True
    assert source.get() == "new" and plugin.runs == 2
    assert BearerToken("fixed", None).rejected("fixed") is False


def test_plugin_certificates_are_handed_over_and_bad_output_is_one_line() -> None:
    got: list[tuple[str, str]] = []
    plugin = FakePlugin(credential({"clientCertificateData": "C", "clientKeyData": "K"}))
    source = ExecCredentials(SPEC, run=plugin, on_cert=lambda c, k: got.append((c, k)))
    assert source.get() is None
    assert got == [("C", "K")]
    broken = ExecCredentials(SPEC, run=FakePlugin("{"))
    with pytest.raises(CredentialError, match="exec plugin 'plugin' did not print JSON"):
        broken.get()


def mocked_client(source: ExecCredentials, statuses: list[int]) -> tuple[KubeClient, list[str]]:
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.headers.get("Authorization", ""))
        status = statuses.pop(0) if statuses else 200
        return httpx.Response(status, json={"kind": "Status", "code": status})

    client = KubeClient(
        "https://k8s.test", credentials=source, transport=httpx.MockTransport(handler)
    )
    return client, seen


def test_client_retries_a_401_once_with_a_fresh_token() -> None:
    plugin = FakePlugin(
        credential({"token": "revoked"}), credential({"token": "good"}), credential({"token": "x"})
    )
    client, seen = mocked_client(ExecCredentials(SPEC, run=plugin), [401])
    client.request("GET", "/api/v1/nodes")
    assert seen == ["Bearer revoked", "Bearer good"] and plugin.runs == 2
    client.request("GET", "/api/v1/nodes")
    assert seen[-1] == "Bearer good" and plugin.runs == 2
    # A second 401 for the same request is the answer: no loop.
    client2, seen2 = mocked_client(
        ExecCredentials(SPEC, run=FakePlugin(credential({"token": "t"}))), [401, 401, 401]
    )
    with pytest.raises(ApiError) as err:
        client2.request("GET", "/api/v1/nodes")
    assert err.value.status == 401 and len(seen2) == 2


# -- running a real plugin ----------------------------------------------------------------


def script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_run_plugin_passes_env_and_exec_info(tmp_path: Path) -> None:
    plugin = script(
        tmp_path / "plugin",
        "import json, os, sys\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "token = os.environ['GREETING'] + '-' + sys.argv[1] + '-' + str(info['spec'])\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential',\n"
        "                  'status': {'token': token}}))\n",
    )
    spec = ExecSpec(
        command=str(plugin),
        args=("arg",),
        env=(("GREETING", "hi"),),
        api_version=V1BETA1,
        cluster={"server": "https://k8s.test"},
    )
    assert ExecCredentials(spec).get() == "hi-arg-" + str(
        {"interactive": False, "cluster": {"server": "https://k8s.test"}}
    )


def test_run_plugin_errors_are_one_line(tmp_path: Path) -> None:
    missing = ExecSpec(
        command="no-such-plugin-xyz", args=(), env=(), api_version=V1, install_hint="Get it\nfrom x"
    )
    with pytest.raises(CredentialError, match="'no-such-plugin-xyz' not found: Get it from x"):
        run_plugin(missing)
    failing = script(
        tmp_path / "failing",
        "import sys\nprint('warming up', file=sys.stderr)\n"
        "print('token expired, log in again', file=sys.stderr)\nsys.exit(3)\n",
    )
    spec = ExecSpec(command=str(failing), args=(), env=(), api_version=V1)
    with pytest.raises(CredentialError, match=r"'failing' failed \(exit 3\): token expired, log"):
        run_plugin(spec)
    slow = script(tmp_path / "slow", "import time\ntime.sleep(30)\n")
    spec = ExecSpec(command=str(slow), args=(), env=(), api_version=V1)
    with pytest.raises(CredentialError, match=r"'slow' did not finish in 0\.3s"):
        run_plugin(spec, timeout=0.3)
    always = ExecSpec(command="x", args=(), env=(), api_version=V1, interactive_mode="Always")
    with pytest.raises(CredentialError, match="needs a terminal"):
        run_plugin(always)
    assert isinstance(CredentialError("x"), KubeConfigError)


# -- the CLI's --context --------------------------------------------------------------------


def test_cli_unknown_context_exits_2(tmp_path: Path) -> None:
    kc = write(
        tmp_path / "kc",
        config(
            clusters={"c": {"server": "https://127.0.0.1:1"}},
            contexts={"x": {"cluster": "c"}},
            current="x",
        ),
    )
    for command in (["doctor"], ["uninstall"]):
        result = CliRunner().invoke(app, [*command, "--kubeconfig", str(kc), "--context", "prod"])
        assert result.exit_code == 2, result.output
        assert "no context named 'prod' (known: x)" in result.output
