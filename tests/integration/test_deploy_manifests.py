"""The Helm chart and the kustomize base, rendered by the real tools and checked by
a real kube-apiserver.

``helm`` and ``kustomize`` come from scripts/deploy-tools-build.sh (built from the
Go module proxy on first use, then cached in ~/.cache/calico-rr/bin); a failed
build fails these tests.  Every rendered object is server-side applied with
``dryRun=All`` and ``fieldValidation=Strict`` (a mis-indented template field is an
error, not silently dropped); our CRD is installed for real first, so a
RouteReflectorConfig rendered by the chart is checked against its schema.  A
minimal ``monitoring.coreos.com`` ServiceMonitor CRD (no schema) is installed only
so that the dry-run can resolve the kind; it checks nothing of the ServiceMonitor's
spec.  Broken objects are shown to be rejected, so the dry-run is known to validate.

Then the chart's RBAC is applied for real and SubjectAccessReviews ask, for the
chart's ServiceAccount, about every verb deploy/rbac.yaml grants (all must be
allowed) and about verbs it does not grant (all must be denied).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.sandbox import ControlPlane, apply_crds, request
from calico_rr.sandbox.etcd import EtcdServer
from calico_rr.sandbox.process import free_port

from .test_etcd_operator import Cluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "calico-rr"
BUILD_SCRIPT = REPO / "scripts" / "deploy-tools-build.sh"

RELEASE = "rr-test"
RELEASE_NS = "rr-system"
CHART_SA = f"system:serviceaccount:{RELEASE_NS}:{RELEASE}-calico-rr"
APPLY = "application/apply-patch+yaml"
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

#: Only so that the dry-run can resolve kind ServiceMonitor (no schema: any spec).
SERVICEMONITOR_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "plural": "servicemonitors",
            "singular": "servicemonitor",
            "kind": "ServiceMonitor",
            "listKind": "ServiceMonitorList",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


# -- tools ------------------------------------------------------------------------------


def _default_version(variable: str) -> str:
    """The version the build script uses: $variable, else the script's default."""
    if os.environ.get(variable):
        return os.environ[variable]
    match = re.search(rf"\$\{{{variable}:-(v[^}}]+)\}}", BUILD_SCRIPT.read_text())
    assert match, f"no default for {variable} in {BUILD_SCRIPT}"
    return match.group(1)


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, timeout=3600, check=False
    )
    assert done.returncode == 0, f"{BUILD_SCRIPT} failed (exit {done.returncode})"
    directory = Path(done.stdout.strip().splitlines()[-1])
    paths = {
        "helm": directory / f"helm-{_default_version('CALICO_RR_HELM_VERSION')}",
        "kustomize": directory / f"kustomize-{_default_version('CALICO_RR_KUSTOMIZE_VERSION')}",
    }
    for path in paths.values():
        assert path.is_file() and os.access(path, os.X_OK), path
    return paths


def _run(argv: list[str | Path], cwd: Path = REPO) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def _objects(stream: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(stream) if isinstance(d, dict) and d.get("kind")]


def _helm(tools: dict[str, Path], *args: str, release: str = RELEASE) -> list[dict[str, Any]]:
    argv: list[str | Path] = [tools["helm"], "template", release, CHART]
    argv += ["--namespace", RELEASE_NS, "--include-crds", *args]
    return _objects(_run(argv))


def _kinds(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(str(o["kind"]) for o in objs)


# -- the API server -----------------------------------------------------------------------


class Resolver:
    """apiVersion + kind -> REST path, from the API server's discovery documents."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._cache: dict[str, dict[str, tuple[str, bool]]] = {}

    def _resources(self, api_version: str) -> dict[str, tuple[str, bool]]:
        if api_version not in self._cache:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            status, body = request(self.cp, "GET", base)
            assert status == 200, (api_version, body)
            self._cache[api_version] = {
                r["kind"]: (r["name"], bool(r["namespaced"]))
                for r in body["resources"]
                if "/" not in r["name"]
            }
        return self._cache[api_version]

    def path(self, obj: dict[str, Any]) -> str:
        api_version = str(obj["apiVersion"])
        plural, namespaced = self._resources(api_version)[str(obj["kind"])]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        meta = obj["metadata"]
        if namespaced:
            assert meta.get("namespace"), f"{obj['kind']} {meta['name']} has no namespace"
            base += f"/namespaces/{meta['namespace']}"
        return f"{base}/{plural}/{meta['name']}"


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        apply_crds(plane, DEPLOY / "crds")
        status, body = request(
            plane,
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            SERVICEMONITOR_CRD,
        )
        assert status == 201, body
        _wait_served(plane, "/apis/monitoring.coreos.com/v1")
        for ns in ("calico-rr", RELEASE_NS):  # dry-run objects need an existing namespace
            _create_namespace(plane, ns)
        yield plane


def _wait_served(cp: ControlPlane, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while request(cp, "GET", path)[0] != 200:
        assert time.monotonic() < deadline, f"{path} not served after {timeout}s"
        time.sleep(0.2)


def _create_namespace(cp: ControlPlane, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    status, reply = request(cp, "POST", "/api/v1/namespaces", body)
    assert status in (201, 409), reply


def _apply(
    cp: ControlPlane, resolver: Resolver, obj: dict[str, Any], *, dry_run: bool
) -> tuple[int, Any]:
    params = {"fieldManager": "calico-rr-test", "force": "true", "fieldValidation": "Strict"}
    if dry_run:
        params["dryRun"] = "All"
    return request(cp, "PATCH", resolver.path(obj), obj, content_type=APPLY, params=params)


def _dry_run_all(cp: ControlPlane, objs: list[dict[str, Any]]) -> None:
    resolver = Resolver(cp)
    failures = []
    for obj in objs:
        status, body = _apply(cp, resolver, obj, dry_run=True)
        if status not in (200, 201):
            failures.append(f"{obj['kind']} {obj['metadata']['name']}: {status} {body}")
        else:  # the server's answer is the object as it would be stored
            assert (
                body["kind"] == obj["kind"] and body["metadata"]["name"] == obj["metadata"]["name"]
            )
    assert not failures, "\n".join(failures)


# -- kustomize ------------------------------------------------------------------------------

BASE_KINDS = sorted(
    [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
)


def test_kustomize_base_is_accepted(tools: dict[str, Path], cp: ControlPlane) -> None:
    objs = _objects(_run([tools["kustomize"], "build", DEPLOY]))
    assert _kinds(objs) == BASE_KINDS
    # the base is the plain manifests, object for object
    plain = [
        *_objects((DEPLOY / "rbac.yaml").read_text()),
        *_objects((DEPLOY / "operator.yaml").read_text()),
        *(o for p in sorted((DEPLOY / "crds").glob("*.yaml")) for o in _objects(p.read_text())),
    ]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(objs, key=key) == sorted(plain, key=key)
    _dry_run_all(cp, objs)
    # a dry run stores nothing
    status, _ = request(cp, "GET", "/apis/apps/v1/namespaces/calico-rr/deployments/calico-rr")
    assert status == 404


def test_kustomize_servicemonitor_component_is_accepted(
    tools: dict[str, Path], cp: ControlPlane, tmp_path: Path
) -> None:
    deploy = os.path.relpath(DEPLOY, tmp_path)  # kustomize refuses absolute bases
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [deploy],
                "components": [f"{deploy}/servicemonitor"],
            }
        )
    )
    objs = _objects(_run([tools["kustomize"], "build", tmp_path]))
    assert _kinds(objs) == sorted([*BASE_KINDS, "Service", "ServiceMonitor"])
    _dry_run_all(cp, objs)


# -- helm -----------------------------------------------------------------------------------


def test_helm_lint_strict(tools: dict[str, Path]) -> None:
    _run([tools["helm"], "lint", "--strict", CHART])


def test_helm_default_values_are_accepted(tools: dict[str, Path], cp: ControlPlane) -> None:
    objs = _helm(tools)
    assert _kinds(objs) == sorted(
        [
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "NetworkPolicy",
        ]
    )
    # --include-crds gives exactly deploy/'s CRD
    (crd,) = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    (ours,) = _objects(next((DEPLOY / "crds").glob("*.yaml")).read_text())
    assert crd == ours
    _dry_run_all(cp, objs)


def test_helm_with_servicemonitor_and_config_is_accepted(
    tools: dict[str, Path], cp: ControlPlane, tmp_path: Path
) -> None:
    example = yaml.safe_load((DEPLOY / "example-config.yaml").read_text())
    values = {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "config": {"create": True, "spec": example["spec"]},
        "replicas": 3,
        "image": {"repository": "registry.example.com/calico-rr", "digest": "sha256:" + "a" * 64},
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    objs = _helm(tools, "--values", str(tmp_path / "values.yaml"))
    kinds = _kinds(objs)
    assert {"ServiceMonitor", "Service", "RouteReflectorConfig"} <= set(kinds)
    (config,) = [o for o in objs if o["kind"] == "RouteReflectorConfig"]
    assert config["metadata"]["name"] == "default" and config["spec"] == example["spec"]
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/calico-rr@sha256:" + "a" * 64
    (monitor,) = [o for o in objs if o["kind"] == "ServiceMonitor"]
    (service,) = [o for o in objs if o["kind"] == "Service"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    _dry_run_all(cp, objs)


def test_helm_single_replica_renders_no_pdb(tools: dict[str, Path]) -> None:
    kinds = _kinds(_helm(tools, "--set", "replicas=1"))
    assert "PodDisruptionBudget" not in kinds and "Deployment" in kinds


def test_chart_deployment_matches_the_operator_manifest(tools: dict[str, Path]) -> None:
    (chart,) = [o for o in _helm(tools) if o["kind"] == "Deployment"]
    (plain,) = [
        o for o in _objects((DEPLOY / "operator.yaml").read_text()) if o["kind"] == "Deployment"
    ]
    c_pod, p_pod = chart["spec"]["template"]["spec"], plain["spec"]["template"]["spec"]
    assert c_pod["securityContext"] == p_pod["securityContext"]
    assert c_pod["volumes"] == p_pod["volumes"]
    (c,), (p,) = c_pod["containers"], p_pod["containers"]
    for field in ("securityContext", "resources", "livenessProbe", "readinessProbe", "ports"):
        assert c[field] == p[field], field
    assert c["volumeMounts"] == p["volumeMounts"]
    assert {e["name"] for e in p["env"]} - {e["name"] for e in c["env"]} <= {
        n for n in (e["name"] for e in p["env"]) if n.startswith("ROUTE_REFLECTOR_")
    }
    # the image's ENTRYPOINT is `calico-rr run`; the chart passes only arguments
    assert "command" not in c and "--identity=$(POD_NAME)" in c["args"]
    # the Lease's namespace is the pod's own (downward API), as in operator.yaml
    assert not any(a.startswith("--namespace") for a in c["args"])
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"] == {e["name"]: e for e in p["env"]}["POD_NAMESPACE"]
    assert c_pod["priorityClassName"] == p_pod["priorityClassName"]


def test_the_dry_run_rejects_broken_objects(tools: dict[str, Path], cp: ControlPlane) -> None:
    objs = _helm(tools, "--set", "config.create=true")
    resolver = Resolver(cp)
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    (config,) = [o for o in objs if o["kind"] == "RouteReflectorConfig"]
    assert _apply(cp, resolver, deployment, dry_run=True)[0] in (200, 201)
    assert _apply(cp, resolver, config, dry_run=True)[0] in (200, 201)

    def broken(obj: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
        copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(obj))
        target: Any = copy
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        return copy

    container: list[str | int] = ["spec", "template", "spec", "containers", 0]
    cases = [  # (broken object, what the error must name)
        (broken(deployment, ["spec", "replicas"], -1), "spec.replicas"),  # built-in validation
        # an unknown field (fieldValidation=Strict; server-side apply answers 500 for it)
        (broken(deployment, [*container, "imagePullPolcy"], "Always"), "imagePullPolcy"),
        # the selector must match the pod template's labels
        (broken(deployment, ["spec", "selector", "matchLabels"], {"o": "x"}), "selector"),
        (broken(config, ["spec", "topology"], "ring"), "spec.topology"),  # our CRD's schema
    ]
    for case, field in cases:
        status, body = _apply(cp, resolver, case, dry_run=True)
        assert status >= 400, (case["kind"], field, status, body)
        assert field in str(body.get("message")), (field, body)


# -- the chart's RBAC, for real ---------------------------------------------------------------

STANDARD_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


def _deploy_roles() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cluster rules, rules of the operator-namespace Roles) of deploy/rbac.yaml."""
    docs = _objects((DEPLOY / "rbac.yaml").read_text())
    cluster = [r for d in docs if d["kind"] == "ClusterRole" for r in d.get("rules") or []]
    local = [r for d in docs if d["kind"] == "Role" for r in d.get("rules") or []]
    return cluster, local


def _grants(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    """Whether ``rules`` allow the request on any object (a rule limited to
    resourceNames does not: the unnamed probes expect those denied)."""
    for rule in rules:
        if (
            not rule.get("resourceNames")
            and group in rule.get("apiGroups", [])
            and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
            and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
        ):
            return True
    return False


def _expected(group: str, resource: str, verb: str, namespace: str | None) -> bool:
    cluster, local = _deploy_roles()
    return _grants(cluster, group, resource, verb) or (
        namespace == RELEASE_NS and _grants(local, group, resource, verb)
    )


def _probes() -> list[tuple[str, str, str, str | None]]:
    """(group, resource[/subresource], verb, namespace): every grant of deploy/rbac.yaml,
    every other standard verb on the same resources, and some resources it must not
    touch at all."""
    cluster, local = _deploy_roles()
    probes: set[tuple[str, str, str, str | None]] = set()
    for rules, namespaces in ((cluster, (None, "default")), (local, (RELEASE_NS, "default"))):
        for rule in rules:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in STANDARD_VERBS:
                        for ns in namespaces:
                            probes.add((group, resource, verb, ns))
    for group, resource, verb, ns in [
        ("", "secrets", "get", RELEASE_NS),
        ("", "secrets", "list", None),
        ("", "configmaps", "get", RELEASE_NS),
        ("", "pods", "list", None),
        ("", "pods/exec", "create", RELEASE_NS),
        ("", "serviceaccounts/token", "create", RELEASE_NS),
        ("", "nodes/status", "patch", None),
        ("apps", "deployments", "update", RELEASE_NS),
        ("apps", "deployments", "get", RELEASE_NS),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list", None),
        ("apiextensions.k8s.io", "customresourcedefinitions", "create", None),
        ("rbac.authorization.k8s.io", "clusterroles", "escalate", None),
        ("rbac.authorization.k8s.io", "clusterrolebindings", "create", None),
        ("projectcalico.org", "ippools", "create", None),
        ("crd.projectcalico.org", "felixconfigurations", "update", None),
    ]:
        probes.add((group, resource, verb, ns))
    return sorted(probes, key=lambda p: (p[0], p[1], p[2], p[3] or ""))


def _allowed(
    cp: ControlPlane,
    user: str,
    group: str,
    resource: str,
    verb: str,
    ns: str | None,
    obj: str | None = None,
) -> bool:
    name, _, sub = resource.partition("/")
    attributes: dict[str, Any] = {"group": group, "resource": name, "verb": verb}
    if sub:
        attributes["subresource"] = sub
    if obj:
        attributes["name"] = obj
    if ns:
        attributes["namespace"] = ns
    spec: dict[str, Any] = {"user": user, "resourceAttributes": attributes}
    if user.startswith("system:serviceaccount:"):
        spec["groups"] = ["system:serviceaccounts", f"system:serviceaccounts:{RELEASE_NS}"]
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
    status, body = request(cp, "POST", SAR_PATH, review)
    assert status == 201, body
    return bool(body["status"].get("allowed", False))


@pytest.fixture(scope="module")
def chart_rbac(tools: dict[str, Path], cp: ControlPlane) -> ControlPlane:
    rbac_kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    objs = [o for o in _helm(tools) if o["kind"] in rbac_kinds]
    resolver = Resolver(cp)
    for obj in objs:
        status, body = _apply(cp, resolver, obj, dry_run=False)
        assert status in (200, 201), body
    return cp


def test_chart_rbac_rules_are_deploy_rbac_rules(tools: dict[str, Path]) -> None:
    objs = _helm(tools)
    cluster, local = _deploy_roles()
    assert [r for o in objs if o["kind"] == "ClusterRole" for r in o["rules"]] == cluster
    assert [r for o in objs if o["kind"] == "Role" for r in o["rules"]] == local
    for obj in objs:
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            # only the chart's ServiceAccount (deploy/rbac.yaml also binds a User)
            assert obj["subjects"] == [
                {"kind": "ServiceAccount", "name": f"{RELEASE}-calico-rr", "namespace": RELEASE_NS}
            ]


def test_chart_service_account_has_exactly_deploy_rbac(chart_rbac: ControlPlane) -> None:
    wrong = []
    allowed_count = denied_count = 0
    for group, resource, verb, ns in _probes():
        expected = _expected(group, resource, verb, ns)
        got = _allowed(chart_rbac, CHART_SA, group, resource, verb, ns)
        if got != expected:
            wrong.append(f"{verb} {group or 'core'}/{resource} ns={ns}: {got}, want {expected}")
        allowed_count += expected
        denied_count += not expected
    assert not wrong, "\n".join(wrong)
    assert allowed_count >= 10 and denied_count >= 10, (allowed_count, denied_count)


@pytest.mark.parametrize(
    ("group", "resource", "verb", "namespace"),
    [
        ("", "nodes", "delete", None),
        ("", "nodes", "create", None),
        ("", "secrets", "get", RELEASE_NS),
        ("", "secrets", "get", None),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list", None),
        ("calico-rr.io", "routereflectorconfigs", "delete", None),
        ("coordination.k8s.io", "leases", "update", "kube-system"),
    ],
)
def test_chart_service_account_is_denied(
    chart_rbac: ControlPlane, group: str, resource: str, verb: str, namespace: str | None
) -> None:
    """What deploy/rbac.yaml withholds on purpose (no Secrets, no CRDs, no node
    creation or deletion, no deleting the config, the Lease only in its namespace)."""
    if _expected(group, resource, verb, namespace):
        pytest.fail(f"deploy/rbac.yaml now grants {verb} {group}/{resource}: review this list")
    assert not _allowed(chart_rbac, CHART_SA, group, resource, verb, namespace)


def test_chart_binds_only_its_service_account(chart_rbac: ControlPlane) -> None:
    # the operator's verbs are allowed for the ServiceAccount ...
    assert _allowed(chart_rbac, CHART_SA, "", "nodes", "patch", None)
    assert _allowed(chart_rbac, CHART_SA, "coordination.k8s.io", "leases", "update", RELEASE_NS)
    # ... and for nobody else through the chart (deploy/rbac.yaml's User is not bound here,
    # nor is another ServiceAccount of the release namespace)
    assert not _allowed(chart_rbac, "calico-rr", "", "nodes", "patch", None)
    other = f"system:serviceaccount:{RELEASE_NS}:default"
    assert not _allowed(chart_rbac, other, "", "nodes", "patch", None)


def test_chart_service_account_may_scale_only_calico_typha(chart_rbac: ControlPlane) -> None:
    """The Typha keeper's grants are limited to the Deployment named calico-typha
    (resourceNames), in any namespace, and to reading it and patching its scale."""
    named = [
        ("deployments", "get", "kube-system", "calico-typha", True),
        ("deployments", "get", "calico-system", "calico-typha", True),
        ("deployments/scale", "get", "kube-system", "calico-typha", True),
        ("deployments/scale", "patch", "kube-system", "calico-typha", True),
        ("deployments", "patch", "kube-system", "calico-typha", False),
        ("deployments", "update", "kube-system", "calico-typha", False),
        ("deployments", "delete", "kube-system", "calico-typha", False),
        ("deployments/scale", "update", "kube-system", "calico-typha", False),
        ("deployments", "get", "kube-system", "coredns", False),
        ("deployments/scale", "patch", "kube-system", "coredns", False),
        ("deployments", "list", "kube-system", None, False),
        ("deployments", "watch", "kube-system", None, False),
    ]
    wrong = [
        f"{verb} apps/{resource} {ns}/{obj}: want {want}"
        for resource, verb, ns, obj, want in named
        if _allowed(chart_rbac, CHART_SA, "apps", resource, verb, ns, obj) != want
    ]
    assert not wrong, "\n".join(wrong)


# -- the chart on Calico's etcd datastore ------------------------------------------------------

ETCD_RELEASE = "rr-etcd"
ETCD_SA = f"system:serviceaccount:{RELEASE_NS}:{ETCD_RELEASE}-calico-rr"
ETCD_MOUNT = "/etc/calico-rr/etcd/"
ETCD_SET = ["--set", "datastore.type=etcdv3,datastore.etcd.endpoints=https://e:2379"]


def _etcd_values(tmp_path: Path, endpoints: str, **etcd: Any) -> str:
    values = {
        "datastore": {
            "type": "etcdv3",
            "etcd": {"endpoints": endpoints, "tls": {"secretName": "calico-etcd-secrets"}, **etcd},
        }
    }
    path = tmp_path / "etcd-values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def _container(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_helm_etcd_mode_is_accepted_and_grants_no_kubernetes_access(
    tools: dict[str, Path], cp: ControlPlane, tmp_path: Path
) -> None:
    values = _etcd_values(
        tmp_path, "https://10.0.0.1:2379,https://10.0.0.2:2379", auth={"secretName": "etcd-user"}
    )
    objs = _helm(tools, "--values", values, release=ETCD_RELEASE)
    kinds = set(_kinds(objs))
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}, kinds
    assert {"Deployment", "ServiceAccount", "PodDisruptionBudget"} <= kinds
    pod, container = _container(objs)
    assert pod["automountServiceAccountToken"] is False  # no API token in the pod at all
    env = {e["name"]: e for e in container["env"]}
    assert env["DATASTORE_TYPE"]["value"] == "etcdv3"
    assert env["ETCD_ENDPOINTS"]["value"] == "https://10.0.0.1:2379,https://10.0.0.2:2379"
    assert env["ETCD_CA_CERT_FILE"]["value"] == ETCD_MOUNT + "ca.crt"
    assert env["CALICO_RR_NODE_HEALTH"]["value"] == "felix"
    for name, key in (("ETCD_USERNAME", "username"), ("ETCD_PASSWORD", "password")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "etcd-user", "key": key}
    assert not any("etcd-user" in a or "password" in a for a in container["args"])
    (volume,) = [v for v in pod["volumes"] if v["name"] == "etcd-tls"]
    assert volume["secret"]["secretName"] == "calico-etcd-secrets"
    # Calico's own calico-etcd-secrets key names by default
    assert {i["key"]: i["path"] for i in volume["secret"]["items"]} == {
        "etcd-ca": "ca.crt",
        "etcd-cert": "tls.crt",
        "etcd-key": "tls.key",
    }
    assert {"name": "etcd-tls", "mountPath": ETCD_MOUNT.rstrip("/"), "readOnly": True} in (
        container["volumeMounts"]
    )
    _dry_run_all(cp, objs)


def test_helm_etcd_mode_with_kubernetes_node_health_may_only_read_nodes(
    tools: dict[str, Path], cp: ControlPlane, tmp_path: Path
) -> None:
    values = _etcd_values(tmp_path, "https://10.0.0.1:2379", nodeHealth="kubernetes")
    objs = _helm(tools, "--values", values, release=ETCD_RELEASE)
    pod, container = _container(objs)
    assert "automountServiceAccountToken" not in pod  # it reads Nodes with its token
    assert {e["name"]: e.get("value") for e in container["env"]}["CALICO_RR_NODE_HEALTH"] == (
        "kubernetes"
    )
    rbac = [o for o in objs if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    assert _kinds(rbac) == ["ClusterRole", "ClusterRoleBinding", "ServiceAccount"]
    resolver = Resolver(cp)
    for obj in rbac:
        status, body = _apply(cp, resolver, obj, dry_run=False)
        assert status in (200, 201), body
    for verb in ("get", "list", "watch"):
        assert _allowed(cp, ETCD_SA, "", "nodes", verb, None)
    for group, resource, verb, ns in [
        ("", "nodes", "patch", None),
        ("", "nodes/status", "patch", None),
        ("coordination.k8s.io", "leases", "get", RELEASE_NS),
        ("crd.projectcalico.org", "bgppeers", "list", None),
        ("calico-rr.io", "routereflectorconfigs", "get", None),
        ("", "events", "create", "default"),
        ("apps", "deployments/scale", "patch", "kube-system"),
        ("", "secrets", "get", RELEASE_NS),
    ]:
        assert not _allowed(cp, ETCD_SA, group, resource, verb, ns), (group, resource, verb)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "datastore.type=etcdv3"], "needs datastore.etcd.endpoints"),
        (["--set", "datastore.type=consul"], "must be kubernetes or etcdv3"),
        (
            [*ETCD_SET, "--set", "datastore.etcd.nodeHealth=ping"],
            "nodeHealth must be felix or kubernetes",
        ),
        (
            [*ETCD_SET, "--set", "config.create=true"],
            "/calico-rr/config/default",
        ),
    ],
)
def test_helm_etcd_mode_refuses_bad_values(
    tools: dict[str, Path], args: list[str], message: str
) -> None:
    done = subprocess.run(
        [str(tools["helm"]), "template", ETCD_RELEASE, str(CHART), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_chart_etcd_settings_run_the_operator(tools: dict[str, Path], tmp_path: Path) -> None:
    """The chart's container, as the kubelet would start it: its args and env (the
    Secret's items placed where the chart mounts them, $(POD_NAME) expanded) run
    `calico-rr run` against a real etcd with client-certificate TLS to convergence."""
    with EtcdServer() as server:
        objs = _helm(tools, "--values", _etcd_values(tmp_path, server.endpoint))
        _, container = _container(objs)
        secret_dir = tmp_path / "etcd-secret"  # what the etcd-tls volume would hold
        secret_dir.mkdir()
        for src, name in (
            (server.ca_file, "ca.crt"),
            (server.cert_file, "tls.crt"),
            (server.key_file, "tls.key"),
        ):
            shutil.copy(src, secret_dir / name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
        env["POD_NAME"] = "calico-rr-7d9f-abcde"
        for item in container["env"]:
            if "value" in item:
                env[item["name"]] = str(item["value"]).replace(ETCD_MOUNT, f"{secret_dir}/")
        port = free_port()
        args = [
            a.replace("$(POD_NAME)", env["POD_NAME"]) if not a.startswith("--port=") else ""
            for a in container["args"]
        ]
        cmd = [sys.executable, "-m", "calico_rr.cli", "run", *filter(None, args)]
        cmd.append(f"--port={port}")
        admin = server.client(timeout=5.0)
        c = Cluster(server, admin)
        c.add(synthetic_cluster(9, zones=3))
        c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"})
        stderr = tmp_path / "stderr.log"

        def leader_is_the_pod() -> None:
            leader = admin.get("/calico-rr/leader")
            assert leader is not None and leader.value == b"calico-rr-7d9f-abcde"

        c.run_process(cmd, env, stderr, timeout=60, while_steady=leader_is_the_pod)
        assert c.safety().ok and len(c.rr_nodes()) >= 2
        logs = [json.loads(line) for line in stderr.read_text().splitlines() if line.strip()]
        assert logs and all("msg" in entry for entry in logs)  # JSON logs, as in the cluster
        admin.close()
