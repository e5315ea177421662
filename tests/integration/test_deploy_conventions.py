"""Kubernetes conventions of deploy/ and the Helm chart, checked by the real tools
and a real kube-apiserver (issue 16 items 4 and 5).

* Pod Security: deploy/'s Namespace enforces ``restricted``; the operator's pod
  (the Deployment's template, from the plain manifests and from the chart) is
  admitted there by the API server's PodSecurity admission on a dry-run create,
  and a weakened copy is refused, so the check is known to bite.  The dry-run also
  resolves ``priorityClassName: system-cluster-critical``.
* The chart's values.schema.json: ``helm lint`` passes on the defaults and fails
  on a misspelled value, at the top and deep down; ``helm template`` too.
* The chart's PrometheusRule (the rules of deploy/monitoring) and Grafana dashboard
  ConfigMap render behind their flags and are accepted by the API server; every
  object the chart renders carries the full app.kubernetes.io label set.
* Leader election values become ``calico-rr run`` flags the CLI accepts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_rr.sandbox import ControlPlane, apply_crds, request

from .test_deploy_manifests import (
    CHART,
    DEPLOY,
    RELEASE_NS,
    SERVICEMONITOR_CRD,
    _create_namespace,
    _dry_run_all,
    _helm,
    _objects,
    _wait_served,
    tools,  # noqa: F401 - the fixture, shared
)

pytestmark = pytest.mark.integration

PSA_NS = "rr-restricted"
LABEL_KEYS = ("name", "instance", "version", "component", "part-of", "managed-by")


def _crd_stub(kind: str, plural: str) -> dict[str, Any]:
    """A schema-less CRD in monitoring.coreos.com, only so that the dry-run resolves
    ``kind`` (the Prometheus Operator's own CRDs are not installed here)."""
    crd: dict[str, Any] = json.loads(json.dumps(SERVICEMONITOR_CRD))
    crd["metadata"]["name"] = f"{plural}.monitoring.coreos.com"
    crd["spec"]["names"] = {
        "plural": plural,
        "singular": kind.lower(),
        "kind": kind,
        "listKind": f"{kind}List",
    }
    return crd


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        apply_crds(plane, DEPLOY / "crds")
        crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        for crd in (SERVICEMONITOR_CRD, _crd_stub("PrometheusRule", "prometheusrules")):
            status, body = request(plane, "POST", crds, crd)
            assert status == 201, body
        _wait_served(plane, "/apis/monitoring.coreos.com/v1")
        # deploy/'s Namespace for real (with its Pod Security labels), and one with
        # the same labels for the chart's release
        (namespace,) = [
            o for o in _objects((DEPLOY / "rbac.yaml").read_text()) if o["kind"] == "Namespace"
        ]
        for name in (namespace["metadata"]["name"], PSA_NS):
            body = {**namespace, "metadata": {**namespace["metadata"], "name": name}}
            status, reply = request(plane, "POST", "/api/v1/namespaces", body)
            assert status == 201, reply
        _create_namespace(plane, RELEASE_NS)  # the chart's objects, unlabelled
        yield plane


def _pod_from(deployment: dict[str, Any], namespace: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "calico-rr-psa-check",
            "namespace": namespace,
            **{"labels": template["metadata"]["labels"]},
        },
        "spec": template["spec"],
    }


def _dry_run_pod(cp: ControlPlane, pod: dict[str, Any]) -> tuple[int, Any]:
    ns = pod["metadata"]["namespace"]
    return request(cp, "POST", f"/api/v1/namespaces/{ns}/pods", pod, params={"dryRun": "All"})


def _deployments(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    return deployment


def test_the_operator_pod_is_admitted_as_restricted(
    tools: dict[str, Path],  # noqa: F811
    cp: ControlPlane,
) -> None:
    plain = _deployments(_objects((DEPLOY / "operator.yaml").read_text()))
    chart = _deployments(_helm(tools))
    status, ns = request(cp, "GET", "/api/v1/namespaces/calico-rr")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for deployment, namespace in ((plain, "calico-rr"), (chart, PSA_NS)):
        pod = _pod_from(deployment, namespace)
        status, body = _dry_run_pod(cp, pod)
        assert status == 201, body
        # Priority admission resolved the class into a number
        assert body["spec"]["priorityClassName"] == "system-cluster-critical"
        assert body["spec"]["priority"] >= 2_000_000_000
        # the same pod, weakened: PodSecurity refuses it, so the check above bites
        weak = json.loads(json.dumps(pod))
        weak["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
        status, body = _dry_run_pod(cp, weak)
        assert status == 403 and "PodSecurity" in str(body), body


def test_helm_lint_passes_on_defaults_and_fails_on_a_misspelled_value(
    tools: dict[str, Path],  # noqa: F811
) -> None:
    def lint(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(tools["helm"]), "lint", "--strict", str(CHART), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    assert lint().returncode == 0
    everything = ["--set", "prometheusRule.enabled=true,grafanaDashboard.enabled=true"]
    assert lint(*everything).returncode == 0
    for typo, word in [
        ("replicaCuont=2", "replicaCuont"),
        ("leaderElection.leaseDurtion=20s", "leaseDurtion"),
        ("podSecurityContext.runAsNonroot=true", "runAsNonroot"),
        ("config.spec.topolgy=multi", "topolgy"),
    ]:
        done = lint("--set", typo)
        assert done.returncode != 0 and word in done.stdout + done.stderr, (typo, done.stdout)
        template = subprocess.run(
            [str(tools["helm"]), "template", "x", str(CHART), "--set", typo],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert template.returncode != 0 and word in template.stderr, typo
    # a value of the wrong type is refused too
    assert lint("--set", "leaderElection.leaseDuration=soon").returncode != 0


def test_helm_monitoring_objects_render_and_are_accepted(
    tools: dict[str, Path],  # noqa: F811
    cp: ControlPlane,
) -> None:
    objs = _helm(
        tools,
        "--set",
        "prometheusRule.enabled=true,prometheusRule.labels.release=prometheus",
        "--set",
        "grafanaDashboard.enabled=true,serviceMonitor.enabled=true",
    )
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    deploy_rules = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-rules.yaml").read_text())
    assert rule["spec"] == deploy_rules["spec"]
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    (dashboard,) = [o for o in objs if o["kind"] == "ConfigMap"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["calico-rr.json"]) == shipped
    for obj in objs:
        labels = obj["metadata"].get("labels") or {}
        missing = [k for k in LABEL_KEYS if not labels.get(f"app.kubernetes.io/{k}")]
        assert not missing, f"{obj['kind']} {obj['metadata']['name']}: {missing}"
    _dry_run_all(cp, objs)
    # off by default
    kinds = {o["kind"] for o in _helm(tools)}
    assert not kinds & {"PrometheusRule", "ConfigMap", "ServiceMonitor"}


def _run_args(container: dict[str, Any]) -> list[str]:
    return [a for a in container["args"] if a.startswith("--leader-elect")]


def test_leader_election_values_become_flags_the_cli_takes(
    tools: dict[str, Path],  # noqa: F811
) -> None:
    objs = _helm(
        tools,
        "--set",
        "leaderElection.leaseDuration=30s,leaderElection.renewDeadline=20s",
        "--set",
        "leaderElection.retryPeriod=4",
    )
    (container,) = _deployments(objs)["spec"]["template"]["spec"]["containers"]
    assert _run_args(container) == [
        "--leader-elect-lease-duration=30s",
        "--leader-elect-renew-deadline=20s",
        "--leader-elect-retry-period=4",
    ]
    off = _helm(tools, "--set", "leaderElection.enabled=false,replicas=1")
    (container,) = _deployments(off)["spec"]["template"]["spec"]["containers"]
    assert _run_args(container) == ["--leader-elect=false"]
    # The CLI reads these flags: with a renew deadline past the lease duration it
    # stops at the timing check (exit 2, the flag named), before connecting anywhere.
    bad = _helm(tools, "--set", "leaderElection.leaseDuration=10s,leaderElection.renewDeadline=12s")
    (container,) = _deployments(bad)["spec"]["template"]["spec"]["containers"]
    for args in (_run_args(container), ["--leader-elect=false", *_run_args(container)]):
        done = subprocess.run(
            [sys.executable, "-m", "calico_rr.cli", "run", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "--leader-elect-renew-deadline" in done.stderr and "Traceback" not in done.stderr
    # and the chart refuses several replicas without an election
    done = subprocess.run(
        [str(tools["helm"]), "template", "x", str(CHART), "--set", "leaderElection.enabled=false"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "replicas: 1" in done.stderr
