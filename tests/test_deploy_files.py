"""The deployment artifacts, checked without a cluster or a renderer.

* The Dockerfile: pinned base (no ``latest``), numeric non-root user, read-only
  friendly, ``calico-rr run`` as the entrypoint; .dockerignore keeps what it copies.
* constraints.txt (the image's exact packages) agrees with pyproject.toml.
* The Helm chart's CRD and RBAC rules are exactly deploy/'s (scripts/sync-chart.py).
* deploy/operator.yaml, the kustomize base and the ServiceMonitor component fit
  together (selectors, ports, hardening); the chart's defaults match them.

tests/integration/test_deploy_manifests.py renders and applies them for real.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import re
import shutil
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "calico-rr"
DOCKERFILE = REPO / "Dockerfile"


def _sync_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_chart", REPO / "scripts" / "sync-chart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _operator() -> tuple[dict[str, Any], dict[str, Any]]:
    docs = _docs(DEPLOY / "operator.yaml")
    return _one(docs, "Deployment"), _one(docs, "PodDisruptionBudget")


# -- Dockerfile ---------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends in a continuation line"
    return out


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def _base_images(instructions: list[tuple[str, str]]) -> list[str]:
    args = {}
    for word, rest in instructions:
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip()
    images = []
    for word, rest in instructions:
        if word == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image))
    return images


def test_dockerfile_base_image_is_an_exact_python_311_slim_bookworm_tag() -> None:
    text = DOCKERFILE.read_text()
    images = _base_images(_instructions(text))
    assert len(images) == 2, images  # build stage + runtime stage
    for image in images:
        name, _, tag = image.partition(":")
        assert name == "python", image
        # An exact patch release, never a floating tag (3.11, slim, latest).
        assert re.fullmatch(r"3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", tag), image
    assert ":latest" not in text
    # No registry is reachable here, so the digest is left to the release pipeline
    # (said in a comment).
    assert re.search(r"#.*digest", text, re.IGNORECASE)


def test_dockerfile_runs_as_numeric_non_root_user_matching_the_manifests() -> None:
    final = _final_stage(_instructions(DOCKERFILE.read_text()))
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage sets no USER"
    user, _, group = users[-1].partition(":")
    # numeric: Kubernetes' runAsNonRoot can only verify a numeric user
    assert user.isdigit() and int(user) > 0, users[-1]
    assert not group or (group.isdigit() and int(group) > 0), users[-1]
    deployment, _ = _operator()
    pod_sc = deployment["spec"]["template"]["spec"]["securityContext"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert pod_sc["runAsUser"] == int(user) == values["podSecurityContext"]["runAsUser"]
    if group:
        assert pod_sc["runAsGroup"] == int(group) == values["podSecurityContext"]["runAsGroup"]


def test_dockerfile_entrypoint_runs_the_operator() -> None:
    final = _final_stage(_instructions(DOCKERFILE.read_text()))
    entrypoints = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT in the runtime stage"
    # exec form (a JSON array): signals reach the operator, no shell in between
    argv = yaml.safe_load(entrypoints[-1])
    assert argv == ["calico-rr", "run"], entrypoints[-1]
    assert "calico-rr" in _pyproject()["project"]["scripts"]


def test_dockerfile_needs_no_writes_at_run_time() -> None:
    final = _final_stage(_instructions(DOCKERFILE.read_text()))
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env), env
    assert re.search(r"\bHOME=/tmp\b", env), env  # the only writable path (an emptyDir)
    build = " ".join(rest for word, rest in _instructions(DOCKERFILE.read_text()) if word == "RUN")
    # a real install (not editable: the source is not in the image), exact versions
    assert "pip install --no-deps -r constraints.txt" in build
    assert re.search(r"pip install --no-deps \.(\s|$)", build) and " -e " not in build
    assert "pip check" in build


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if any(fnmatch.fnmatchcase(c, pat) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_dockerfile_copies_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied: list[str] = []
    for word, rest in _instructions(DOCKERFILE.read_text()):
        if word == "COPY" and "--from=" not in rest:
            copied += rest.split()[:-1]
    assert {"pyproject.toml", "README.md", "constraints.txt", "calico_rr"} <= set(copied)
    for source in copied:
        assert (REPO / source).exists(), source
        assert not _dockerignored(source, patterns), source
    assert not _dockerignored("calico_rr/core/planning/planner.py", patterns)
    for left_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_cli.py",
        "deploy/rbac.yaml",
        "calico_rr/core/__pycache__/planner.cpython-311.pyc",
    ):
        assert _dockerignored(left_out, patterns), left_out


# -- constraints.txt -----------------------------------------------------------------


def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_constraints_pin_the_direct_dependencies_as_pyproject_does() -> None:
    pins = _constraints()
    for dep in _pyproject()["project"]["dependencies"]:
        req = Requirement(dep)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        assert exact, f"pyproject dependency not pinned exactly: {dep}"
        assert pins.get(canonicalize_name(req.name)) == exact[0], (
            f"{dep}: run .venv/bin/python scripts/image-constraints.py"
        )


def _requirements(name: str) -> list[str]:
    """Runtime requirements (markers evaluated for this Python) of an installed package."""
    out = []
    for text in importlib.metadata.requires(name) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(str(canonicalize_name(req.name)))
    return out


def test_constraints_hold_every_requirement_of_what_they_pin() -> None:
    pins = _constraints()
    checked = 0
    for name, version in pins.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != version:
            continue  # the dev venv resolved another version: its metadata says nothing here
        missing = [r for r in _requirements(name) if r not in pins]
        assert not missing, (
            f"{name}=={version} needs {missing}: run .venv/bin/python scripts/image-constraints.py"
        )
        checked += 1
    # at least the pyproject pins (installed at exactly these versions) were checked
    assert checked >= len(_pyproject()["project"]["dependencies"])


# -- versions -------------------------------------------------------------------------


def test_image_tag_chart_and_project_versions_agree() -> None:
    version = _pyproject()["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    deployment, _ = _operator()
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert images == [f"calico-rr:{version}"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] in ("", version)  # "" = the chart's appVersion


# -- chart copies of deploy/ ----------------------------------------------------------


def test_chart_crds_are_byte_copies_of_deploy_crds() -> None:
    ours = sorted(p.name for p in (DEPLOY / "crds").glob("*.yaml"))
    assert ours, "deploy/crds is empty"
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ours
    for name in ours:
        assert (CHART / "crds" / name).read_bytes() == (DEPLOY / "crds" / name).read_bytes(), name


def test_chart_rbac_rules_equal_deploy_rbac() -> None:
    """Read independently of scripts/sync-chart.py: the roles of deploy/rbac.yaml,
    by name, against the chart's copy (name = "calico-rr" + suffix)."""
    deploy_roles = {
        (d["kind"], d["metadata"]["name"]): d.get("rules") or []
        for d in _docs(DEPLOY / "rbac.yaml")
        if d["kind"] in ("ClusterRole", "Role")
    }
    copy = yaml.safe_load((CHART / "files" / "rbac.yaml").read_text())
    chart_roles = {
        (kind, "calico-rr" + entry["suffix"]): entry["rules"]
        for key, kind in (("clusterRoles", "ClusterRole"), ("roles", "Role"))
        for entry in copy.get(key) or []
    }
    assert chart_roles == deploy_roles
    assert ("ClusterRole", "calico-rr") in chart_roles


def test_sync_script_reports_nothing_stale() -> None:
    stale = _sync_module().stale_files()
    assert stale == [], f"run scripts/sync-chart.py: {stale}"


def test_sync_script_notices_and_repairs_a_changed_rule(tmp_path: Path) -> None:
    sync = _sync_module()
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY / "crds", deploy / "crds")
    shutil.copytree(DEPLOY / "monitoring", deploy / "monitoring")
    shutil.copytree(CHART, deploy / "helm" / "calico-rr")
    docs = _docs(DEPLOY / "rbac.yaml")
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    new_rule = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}
    role["rules"].append(new_rule)
    (deploy / "rbac.yaml").write_text(yaml.safe_dump_all(docs))
    # a CRD edited in deploy/ and a stray file in the chart's crds/
    crd = next((deploy / "crds").glob("*.yaml"))
    crd.write_bytes(crd.read_bytes() + b"# edited\n")
    stray = deploy / "helm" / "calico-rr" / "crds" / "old.yaml"
    stray.write_text("kind: CustomResourceDefinition\n")

    chart = deploy / "helm" / "calico-rr"
    stale = set(sync.stale_files(deploy))
    assert stale == {chart / "files" / "rbac.yaml", chart / "crds" / crd.name, stray}
    done = sync.sync(deploy)
    assert len(done) == 3
    assert sync.stale_files(deploy) == []
    assert not stray.exists()
    copy = yaml.safe_load((chart / "files" / "rbac.yaml").read_text())
    assert new_rule in copy["clusterRoles"][0]["rules"]


def test_sync_script_refuses_a_role_outside_the_operator_namespace(tmp_path: Path) -> None:
    sync = _sync_module()
    rbac = tmp_path / "rbac.yaml"
    rbac.write_text(
        "kind: ClusterRole\nmetadata: {name: calico-rr}\nrules: []\n---\n"
        "kind: Role\nmetadata: {name: calico-rr-x, namespace: kube-system}\nrules: []\n"
    )
    with pytest.raises(sync.SyncError, match="kube-system"):
        sync.rbac_rules(rbac)


# -- operator.yaml, kustomize base, ServiceMonitor component ------------------------------


def test_operator_deployment_is_hardened() -> None:
    deployment, _ = _operator()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc.get("privileged", False)
    res = container["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
    assert {"livenessProbe", "readinessProbe"} <= container.keys()
    # the only writable path is an emptyDir on /tmp (HOME in the image)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"/tmp": "tmp"} and "emptyDir" in volumes["tmp"]
    # the identity given to the Lease is the pod's name, its namespace the pod's own
    env = {e["name"]: e for e in container["env"]}
    assert "$(POD_NAME)" in container["command"] and "POD_NAME" in env
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert "--namespace" not in container["command"]
    assert pod["priorityClassName"] == "system-cluster-critical"


def test_chart_defaults_match_the_operator_manifest() -> None:
    deployment, pdb = _operator()
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["replicas"] == deployment["spec"]["replicas"] == 2
    assert values["podSecurityContext"] == pod["securityContext"]
    assert values["securityContext"] == container["securityContext"]
    assert values["resources"] == container["resources"]
    assert values["tolerations"] == pod["tolerations"]
    assert values["port"] == container["ports"][0]["containerPort"]
    assert values["podDisruptionBudget"]["minAvailable"] == pdb["spec"]["minAvailable"] == 1
    assert values["serviceMonitor"]["enabled"] is False
    assert values["config"]["create"] is False
    assert values["priorityClassName"] == pod["priorityClassName"]
    assert values["networkPolicy"]["enabled"] is True
    assert values["prometheusRule"]["enabled"] is False
    assert values["grafanaDashboard"]["enabled"] is False


def test_pdb_selects_the_operator_pods() -> None:
    deployment, pdb = _operator()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["metadata"]["namespace"] == deployment["metadata"]["namespace"]


def test_kustomize_base_lists_the_install_manifests() -> None:
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    resources = kust["resources"]
    for resource in resources:
        assert (DEPLOY / resource).is_file(), resource
    crds = {f"crds/{p.name}" for p in (DEPLOY / "crds").glob("*.yaml")}
    assert set(resources) == crds | {"rbac.yaml", "operator.yaml"}
    assert "example-config.yaml" not in resources  # the config is the user's to write


def test_servicemonitor_component_scrapes_the_operator_port() -> None:
    comp_dir = DEPLOY / "servicemonitor"
    comp = yaml.safe_load((comp_dir / "kustomization.yaml").read_text())
    assert comp["kind"] == "Component"
    docs = [d for r in comp["resources"] for d in _docs(comp_dir / r)]
    service, monitor = _one(docs, "Service"), _one(docs, "ServiceMonitor")
    deployment, _ = _operator()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (sport,) = service["spec"]["ports"]
    assert sport["targetPort"] in port_names and sport["port"] == port_names[sport["targetPort"]]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == sport["name"]
    ns = deployment["metadata"]["namespace"]
    assert service["metadata"]["namespace"] == monitor["metadata"]["namespace"] == ns
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [ns]


# -- Kubernetes conventions (issue 16 item 4) ---------------------------------------------

LABEL_KEYS = ("name", "instance", "version", "component", "part-of", "managed-by")


def _plain_objects() -> list[tuple[str, dict[str, Any]]]:
    """(file, object) of every object in the plain manifests under deploy/."""
    files = [p for p in sorted(DEPLOY.rglob("*.yaml")) if "helm" not in p.parts]
    return [
        (str(p.relative_to(DEPLOY)), d)
        for p in files
        for d in _docs(p)
        if d.get("apiVersion")
        and not str(d.get("kind", "")).startswith("Kustomization")
        and d.get("kind") != "Component"
    ]


def test_every_plain_object_has_the_full_recommended_label_set() -> None:
    objs = _plain_objects()
    assert len(objs) >= 12, [f for f, _ in objs]
    version = _pyproject()["project"]["version"]
    for where, obj in objs:
        labels = obj["metadata"].get("labels") or {}
        missing = [k for k in LABEL_KEYS if not labels.get(f"app.kubernetes.io/{k}")]
        assert not missing, f"{where} {obj['kind']}: no app.kubernetes.io/{missing}"
        assert labels["app.kubernetes.io/version"] == version, where
        assert labels["app.kubernetes.io/part-of"] == "calico-rr", where
    deployment, _ = _operator()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(f"app.kubernetes.io/{k}" in pod_labels for k in LABEL_KEYS)


def test_namespace_enforces_pod_security_restricted() -> None:
    namespace = _one(_docs(DEPLOY / "rbac.yaml"), "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment, _ = _operator()
    assert deployment["metadata"]["namespace"] == namespace["metadata"]["name"]


def test_network_policy_admits_only_the_metrics_port() -> None:
    docs = _docs(DEPLOY / "operator.yaml")
    policy = _one(docs, "NetworkPolicy")
    deployment = _one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": port["name"], "protocol": "TCP"}]
    assert "from" not in rule  # any scraper, but on that port only
    # the probes use the same port, so the policy never blocks them
    assert container["livenessProbe"]["httpGet"]["port"] == port["name"]


def test_events_rbac_is_events_k8s_io_create_and_patch() -> None:
    role = next(d for d in _docs(DEPLOY / "rbac.yaml") if d["kind"] == "ClusterRole")
    rules = [r for r in role["rules"] if "events" in r["resources"]]
    assert rules == [
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}
    ]


def test_crd_has_a_phase_column_on_status_phase() -> None:
    crd = _one(_docs(next((DEPLOY / "crds").glob("*.yaml"))), "CustomResourceDefinition")
    (version,) = crd["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["type"] == columns["Phase"]["type"] == "string"
    assert {"Topology", "RRs", "Peers", "Mesh", "Ready", "Age"} <= columns.keys()


# -- the Helm chart (issue 16 item 5) ---------------------------------------------------


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["type"] == "application"
    for key in ("appVersion", "kubeVersion", "home", "sources", "maintainers", "keywords"):
        assert chart.get(key), key
    assert all(str(u).startswith("https://") for u in [chart["home"], *chart["sources"]])
    assert all(m.get("name") for m in chart["maintainers"])


def _closed(schema: dict[str, Any], where: str) -> list[str]:
    """Paths of object schemas with listed properties that still admit others."""
    bad: list[str] = []
    if "properties" in schema and schema.get("additionalProperties") is not False:
        bad.append(where or "/")
    for name, sub in (schema.get("properties") or {}).items():
        bad += _closed(sub, f"{where}/{name}")
    items = schema.get("items")
    if isinstance(items, dict):
        bad += _closed(items, f"{where}[]")
    return bad


def _schema() -> dict[str, Any]:
    import json

    doc: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return doc


def test_values_schema_is_draft_07_and_closed_at_every_level() -> None:
    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert _closed(schema, "") == []
    # it knows every top-level value and nothing values.yaml lacks (but Helm's global)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) - {"global"} == set(values)


def _schema_admits(schema: dict[str, Any], value: Any, where: str = "") -> list[str]:
    """The keys of ``value`` the schema does not know (the structure only)."""
    bad: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in value.items():
            if key not in schema["properties"]:
                bad.append(f"{where}/{key}")
            else:
                bad += _schema_admits(schema["properties"][key], sub, f"{where}/{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            bad += _schema_admits(schema["items"], item, f"{where}[{i}]")
    return bad


def test_values_schema_knows_every_default_and_the_example_config() -> None:
    schema = _schema()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert _schema_admits(schema, values) == []
    example = yaml.safe_load((DEPLOY / "example-config.yaml").read_text())
    assert _schema_admits(schema, {"config": {"spec": example["spec"]}}) == []
    assert _schema_admits(schema, {"replicaCuont": 2}) == ["/replicaCuont"]


def test_chart_monitoring_copies_are_deploy_monitoring() -> None:
    for name in ("prometheus-rules.yaml", "grafana-dashboard.json"):
        copy = (CHART / "files" / name).read_bytes()
        assert copy == (DEPLOY / "monitoring" / name).read_bytes(), name
