"""deploy/monitoring/prometheus-rules.yaml and grafana-dashboard.json against the
operator's real metrics and the runbook.

* Every metric an alert expression selects is a sample the operator exports: the
  names are read from a live :class:`~calico_rr.adapters.observe.OperatorMetrics`
  registry, not from a list kept here.  Label matchers use labels that sample has,
  and ``phase`` values are ones ``calico_rr_phase`` takes (observe.PHASES).
* Every alert has a severity, a summary and a ``runbook_url`` pointing to a heading
  of docs/OPERATIONS.md, and the runbook lists every alert and every exported metric.
* The runbook's own ``#anchor`` links resolve.
* Every PromQL expression of the Grafana dashboard (panel targets, and the metric
  of each ``label_values(...)`` variable) names only exported samples, the same way.

The PromQL reader is deliberately small: it knows the functions and keywords the
file uses and fails on anything else, so a typo cannot pass as a metric name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from calico_rr.adapters.observe import PHASES, OperatorMetrics

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "monitoring" / "prometheus-rules.yaml"
DASHBOARD = REPO / "deploy" / "monitoring" / "grafana-dashboard.json"
RUNBOOK = REPO / "docs" / "OPERATIONS.md"
RUNBOOK_PREFIX = "docs/OPERATIONS.md#"
SEVERITIES = frozenset({"critical", "warning", "info"})

#: PromQL aggregation operators (always operators, even when ``by``/``without`` follows).
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile"}
)
#: Functions the rules may call; anything else followed by "(" is an error.
FUNCTIONS = frozenset(
    {"absent", "rate", "irate", "increase", "delta", "histogram_quantile", "clamp_min", "abs"}
)
#: Keywords followed by a parenthesised list of label names.
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
BINARY_KEYWORDS = frozenset({"and", "or", "unless", "bool"})

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<matchers>\{[^{}]*\})
  | (?P<range>\[[^\[\]]*\])
  | (?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|[-+*/%^<>(),])
  | (?P<space>\s+)
    """,
    re.VERBOSE,
)
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


# -- what the operator exports ------------------------------------------------------------


def _with_one_child(metric: MetricWrapperBase) -> None:
    """Give a labelled metric one child so that its samples (and label names) show.

    The label count is found through the public ``labels()`` call: it raises
    ValueError for the wrong number of values, and for a metric without labels."""
    for count in range(1, 10):
        try:
            metric.labels(*(["x"] * count))
        except ValueError:
            continue
        return


def exported_samples() -> dict[str, frozenset[str]]:
    """Sample name -> its label names, as /metrics of a fresh operator serves them."""
    metrics = OperatorMetrics()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            _with_one_child(value)
    samples: dict[str, frozenset[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            samples[sample.name] = frozenset(sample.labels)
    return samples


def exported_families() -> list[tuple[str, str]]:
    """(family name, type) of every metric the operator registers."""
    return [(f.name, f.type) for f in OperatorMetrics().registry.collect()]


# -- the rules file -------------------------------------------------------------------------


def load_rules() -> dict[str, Any]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def alerts() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for group in load_rules()["spec"]["groups"]:
        for rule in group["rules"]:
            assert "alert" in rule, f"recording rules are not expected here: {rule}"
            out.append(rule)
    return out


ALERTS = alerts()


@pytest.fixture(scope="module")
def samples() -> dict[str, frozenset[str]]:
    return exported_samples()


# -- a small PromQL reader ----------------------------------------------------------------


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        assert match is not None, f"cannot read {expr[pos : pos + 30]!r} in {expr!r}"
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, match.group()))
        pos = match.end()
    return out


def selectors(expr: str) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """(metric name, [(label, op, value)]) for every vector selector in ``expr``."""
    toks = tokens(expr)
    depth = 0
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ("", "")
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
            assert depth >= 0, f"unbalanced ')' in {expr!r}"
        elif kind == "ident":
            if text in GROUPING:
                if nxt[1] == "(":  # skip the label list: target labels, not metric labels
                    close = next(j for j in range(i + 1, len(toks)) if toks[j][1] == ")")
                    i = close + 1
                    continue
            elif text in AGGREGATIONS or nxt[1] == "(":
                assert text in AGGREGATIONS or text in FUNCTIONS, (
                    f"unknown PromQL function {text!r} in {expr!r}"
                )
            elif text in BINARY_KEYWORDS:
                pass
            else:
                matchers: list[tuple[str, str, str]] = []
                if nxt[0] == "matchers":
                    matchers = parse_matchers(nxt[1])
                    i += 1
                yield text, matchers
        elif kind == "matchers":
            raise AssertionError(f"a label matcher without a metric name in {expr!r}")
        i += 1
    assert depth == 0, f"unbalanced '(' in {expr!r}"


def parse_matchers(text: str) -> list[tuple[str, str, str]]:
    body = text[1:-1]
    out: list[tuple[str, str, str]] = []
    pos = 0
    while body[pos:].strip():
        match = _MATCHER.match(body, pos)
        assert match is not None, f"cannot read label matchers {text!r}"
        label, op, value = match.groups()
        out.append((label, op, value))
        pos = match.end()
    return out


def test_the_reader_finds_metrics_and_rejects_unknown_functions() -> None:
    found = list(
        selectors(
            'sum by (instance, le) (rate(a_total{code=~"0|5.."}[5m])) > 0.5 '
            "and on (instance) b == 1 unless max(c)"
        )
    )
    assert found == [("a_total", [("code", "=~", "0|5..")]), ("b", []), ("c", [])]
    with pytest.raises(AssertionError, match="unknown PromQL function"):
        list(selectors("ratee(a_total[5m])"))
    with pytest.raises(AssertionError, match="unbalanced"):
        list(selectors("sum(a"))


# -- the runbook ----------------------------------------------------------------------------


def runbook_text() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped,
    spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors() -> set[str]:
    headings = re.findall(r"^#{1,6} +(.+?) *$", without_code_blocks(runbook_text()), re.M)
    slugs = [slug(h) for h in headings]
    assert len(slugs) == len(set(slugs)), "duplicate headings make GitHub number the anchors"
    return set(slugs)


def test_slug_follows_github() -> None:
    assert slug("Blocked: the mesh stays on") == "blocked-the-mesh-stays-on"
    assert slug("1. Check the cluster: `doctor`") == "1-check-the-cluster-doctor"
    assert slug("A user's conflicting labels") == "a-users-conflicting-labels"


# -- the tests ------------------------------------------------------------------------------


def test_file_is_a_prometheus_rule() -> None:
    doc = load_rules()
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == "calico-rr"
    names = [a["alert"] for a in ALERTS]
    assert names and len(names) == len(set(names)), names
    assert all(re.fullmatch(r"CalicoRR[A-Za-z]+", n) for n in names), names


def test_exported_samples_are_read_from_the_operator(samples: dict[str, frozenset[str]]) -> None:
    # The reader itself must see real samples, including labelled and histogram ones.
    assert "calico_rr_leader" in samples
    assert samples["calico_rr_reconciles_total"] == {"result"}
    assert "le" in samples["calico_rr_reconcile_duration_seconds_bucket"]


@pytest.mark.parametrize("alert", ALERTS, ids=[a["alert"] for a in ALERTS])
def test_expression_uses_only_exported_metrics(
    alert: dict[str, Any], samples: dict[str, frozenset[str]]
) -> None:
    expr = alert["expr"]
    assert isinstance(expr, str) and expr.strip()
    found = list(selectors(expr))
    assert found, f"{alert['alert']}: no metric in {expr!r}"
    phases = set(PHASES)  # every value calico_rr_phase can take
    for name, matchers in found:
        assert name in samples, f"{alert['alert']}: {name} is not exported by the operator"
        for label, op, value in matchers:
            assert label in samples[name], f"{alert['alert']}: {name} has no label {label!r}"
            if label != "phase":
                continue
            values = value.split("|") if op == "=~" else [value]
            assert set(values) <= phases, f"{alert['alert']}: unknown phase in {value!r}"


@pytest.mark.parametrize("alert", ALERTS, ids=[a["alert"] for a in ALERTS])
def test_alert_has_severity_summary_and_runbook(alert: dict[str, Any]) -> None:
    name = alert["alert"]
    assert alert.get("labels", {}).get("severity") in SEVERITIES, name
    notes = alert.get("annotations", {})
    assert str(notes.get("summary", "")).strip(), f"{name}: no summary"
    assert str(notes.get("description", "")).strip(), f"{name}: no description"
    url = str(notes.get("runbook_url", ""))
    assert url.startswith(RUNBOOK_PREFIX), f"{name}: runbook_url {url!r}"
    anchor = url[len(RUNBOOK_PREFIX) :]
    assert anchor in anchors(), f"{name}: docs/OPERATIONS.md has no heading #{anchor}"
    if "for" in alert:
        assert _DURATION.fullmatch(str(alert["for"])), f"{name}: for {alert['for']!r}"


def test_runbook_lists_every_alert() -> None:
    text = runbook_text()
    for alert in ALERTS:
        assert f"| `{alert['alert']}` |" in text, f"{alert['alert']} missing from the alert table"


def test_runbook_documents_every_exported_metric() -> None:
    text = runbook_text()
    for name, kind in exported_families():
        shown = f"{name}_total" if kind == "counter" else name
        assert f"`{shown}`" in text, f"docs/OPERATIONS.md does not describe {shown}"


def test_runbook_links_resolve() -> None:
    known = anchors()
    links = re.findall(r"\]\(#([^)]+)\)", without_code_blocks(runbook_text()))
    assert links
    broken = sorted({link for link in links if link not in known})
    assert not broken, f"docs/OPERATIONS.md links to missing headings: {broken}"


# -- the Grafana dashboard ------------------------------------------------------------------


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard."""
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets") or []:
            out.append((f"{panel['title']} {target['refId']}", str(target["expr"])))
    return out


DASHBOARD_EXPRS = dashboard_exprs()
TARGET_LABELS = frozenset({"instance", "job"})


def test_dashboard_is_a_grafana_dashboard() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert doc["uid"] and doc["title"] and doc["panels"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), ids
    assert len(DASHBOARD_EXPRS) >= 10


@pytest.mark.parametrize(("panel", "expr"), DASHBOARD_EXPRS, ids=[p for p, _ in DASHBOARD_EXPRS])
def test_dashboard_expression_uses_only_exported_metrics(
    panel: str, expr: str, samples: dict[str, frozenset[str]]
) -> None:
    found = list(selectors(expr))
    assert found, f"{panel}: no metric in {expr!r}"
    for name, matchers in found:
        assert name in samples, f"{panel}: {name} is not exported by the operator"
        for label, _, _ in matchers:
            # instance and job: the labels Prometheus adds to every scraped sample
            known = samples[name] | TARGET_LABELS
            assert label in known, f"{panel}: {name} has no label {label!r}"


def test_dashboard_variables_read_exported_metrics(samples: dict[str, frozenset[str]]) -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [
        v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        for v in doc["templating"]["list"]
        if v["type"] == "query"
    ]
    assert queries
    for query in queries:
        match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", query)
        assert match, query
        metric, label = match.groups()
        assert metric in samples and label not in samples[metric], query  # a target label


def test_the_reader_catches_a_metric_the_operator_does_not_export(
    samples: dict[str, frozenset[str]],
) -> None:
    # what the dashboard test would say of a typo: the name is read, and it is unknown
    names = [n for n, _ in selectors("sum(rate(calico_rr_reconcile_total[5m]))")]
    assert names == ["calico_rr_reconcile_total"] and names[0] not in samples
