"""calico_rr.core.operator.settings: RouteReflectorConfig spec and ROUTE_REFLECTOR_*
variables -> settings.

Also checks that the CRD and the deploy manifests agree with the Python side (the
same patterns and bounds, parseable examples), so neither can drift alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from calico_rr.core.operator.settings import (
    CONFIG_NAME,
    CRD_GROUP,
    CRD_KIND,
    CRD_PLURAL,
    CRD_VERSION,
    ENV_VARS,
    LABEL_MATCH_PATTERN,
    LABEL_SELECTOR_PATTERN,
    RATIO_PATTERN,
    SPEC_FIELDS,
    OperatorSettings,
    env_spec,
    settings_from_spec,
)
from calico_rr.core.operator.typha import TyphaSettings
from calico_rr.core.planning.config import (
    RACK_LABEL,
    ApiGroup,
    LinearSizing,
    PlanConfig,
    Step,
    SteppingSizing,
)
from calico_rr.core.values import DURATION_PATTERN, QUAD_PATTERN, parse_duration
from calico_rr.errors import ConfigError
from calico_rr.model import ZONE_LABEL

V1: ApiGroup = "crd.projectcalico.org/v1"
V3: ApiGroup = "projectcalico.org/v3"
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
CRD_FILE = DEPLOY / "crds" / "routereflectorconfigs.calico-rr.io.yaml"


def parse(spec: dict[str, Any] | None, env: dict[str, str] | None = None) -> OperatorSettings:
    return settings_from_spec(spec, env=env, api_group=V1)


def rejects(spec: Any, fragment: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        settings_from_spec(spec, env=env, api_group=V1)
    message = str(info.value)
    assert fragment in message, message
    return message


# -- defaults and field mapping ----------------------------------------------------------


@pytest.mark.parametrize("spec", [None, {}])
def test_defaults(spec: dict[str, Any] | None) -> None:
    settings = parse(spec)
    assert settings == OperatorSettings(
        plan=PlanConfig(),
        session_check="Auto",
        wait_timeout=60.0,
        debounce=0.2,
        rr_label=None,
        paused=False,
    )


def test_api_group_passes_through() -> None:
    assert settings_from_spec({}, api_group=V3).plan.api_group == V3
    assert settings_from_spec({}, api_group=V1).plan.api_group == V1


Get = Callable[[OperatorSettings], Any]

FIELD_CASES: list[tuple[str, Any, Get, Any]] = [
    ("topology", "quorum", lambda s: s.plan.topology, "quorum"),
    ("redundancy", 5, lambda s: s.plan.redundancy, 5),
    ("routeReflectors", 7, lambda s: s.plan.rrs, 7),
    ("minRouteReflectors", 4, lambda s: s.plan.sizing, LinearSizing(0.005, 4, 25)),
    ("maxRouteReflectors", 9, lambda s: s.plan.sizing, LinearSizing(0.005, 3, 9)),
    ("ratio", "0.01", lambda s: s.plan.sizing, LinearSizing(0.01, 3, 25)),
    ("ratio", "1", lambda s: s.plan.sizing, LinearSizing(1.0, 3, 25)),
    (
        "steps",
        "200:3,1000:5",
        lambda s: s.plan.sizing,
        SteppingSizing((Step(200, 3), Step(1000, 5))),
    ),
    ("perZoneSizing", True, lambda s: s.plan.per_zone_sizing, True),
    ("sessionBudget", 300, lambda s: s.plan.session_budget, 300),
    ("zoneLabel", "example.com/zone", lambda s: s.plan.zone_label, "example.com/zone"),
    ("zoneLabel", "", lambda s: s.plan.zone_label, None),
    ("rackLabel", "example.com/rack", lambda s: s.plan.rack_label, "example.com/rack"),
    ("racks", 4, lambda s: s.plan.racks, 4),
    ("spines", 2, lambda s: s.plan.spines, 2),
    ("preferredNodeLabel", "infra=yes", lambda s: s.plan.preferred_label, "infra=yes"),
    ("dedicatedNodeLabel", "example.com/rr", lambda s: s.plan.dedicated_label, "example.com/rr"),
    (
        "incompatibleNodeLabels",
        ["a", "b=", "example.com/c=d"],
        lambda s: s.plan.incompatible_labels,
        ("a", "b=", "example.com/c=d"),
    ),
    ("routeReflectorLabel", "rr", lambda s: s.rr_label, ("rr", "true")),
    (
        "routeReflectorLabel",
        "calico-route-reflector=",
        lambda s: s.rr_label,
        ("calico-route-reflector", ""),
    ),
    ("routeReflectorLabel", "example.com/rr=yes", lambda s: s.rr_label, ("example.com/rr", "yes")),
    ("clusterIDBase", "10.1.0.0", lambda s: s.plan.cluster_id_base, "10.1.0.0"),
    ("asNumber", 4200000000, lambda s: s.plan.as_number, 4200000000),
    ("maxRestartTime", "2m", lambda s: s.plan.max_restart_time, "2m"),
    (
        "password",
        {"secretKeyRef": {"name": "bgp-secrets", "key": "rr.password"}},
        lambda s: s.plan.password_secret,
        ("bgp-secrets", "rr.password"),
    ),
    ("sessionCheck", "Wait", lambda s: s.session_check, "Wait"),
    ("sessionCheck", "NodeStatus", lambda s: s.session_check, "NodeStatus"),
    ("waitTimeout", "1m30s", lambda s: s.wait_timeout, 90.0),
    ("debounce", "0s", lambda s: s.debounce, 0.0),
    ("debounce", "750ms", lambda s: s.debounce, 0.75),
    ("paused", True, lambda s: s.paused, True),
    (
        "typha",
        {
            "enabled": True,
            "namespace": "calico",
            "name": "typha.v2",
            "coolDown": "1h",
            "settle": "5s",
        },
        lambda s: s.typha,
        TyphaSettings(True, "calico", "typha.v2", 3600.0, 5.0),
    ),
    ("typha", {"enabled": True}, lambda s: s.typha, TyphaSettings(enabled=True)),
]


@pytest.mark.parametrize(
    ("name", "value", "get", "expected"),
    FIELD_CASES,
    ids=[f"{c[0]}={c[1]!r}" for c in FIELD_CASES],
)
def test_field_maps(name: str, value: Any, get: Get, expected: Any) -> None:
    settings = parse({name: value})
    assert get(settings) == expected
    # and nothing else moved: the rest is still the default
    assert get(parse({})) != expected


def test_every_field_has_a_mapping_case() -> None:
    assert {c[0] for c in FIELD_CASES} == set(SPEC_FIELDS)


def test_explicit_rrs_keeps_sizing() -> None:
    settings = parse({"routeReflectors": 4, "ratio": "0.02"})
    assert settings.plan.rrs == 4
    assert settings.plan.sizing == LinearSizing(0.02, 3, 25)


# -- environment variables ---------------------------------------------------------------

ENV_CASES: list[tuple[str, str, Get, Any]] = [
    ("ROUTE_REFLECTOR_MIN", "5", lambda s: s.plan.sizing, LinearSizing(0.005, 5, 25)),
    ("ROUTE_REFLECTOR_MAX", "10", lambda s: s.plan.sizing, LinearSizing(0.005, 3, 10)),
    ("ROUTE_REFLECTOR_RATIO", "0.02", lambda s: s.plan.sizing, LinearSizing(0.02, 3, 25)),
    (
        "ROUTE_REFLECTOR_NODE_LABEL",
        "calico-route-reflector=",
        lambda s: s.rr_label,
        ("calico-route-reflector", ""),
    ),
    ("ROUTE_REFLECTOR_NODE_LABEL", "rr", lambda s: s.rr_label, ("rr", "true")),
    (
        "ROUTE_REFLECTOR_ZONE_LABEL",
        "example.com/zone",
        lambda s: s.plan.zone_label,
        "example.com/zone",
    ),
    ("ROUTE_REFLECTOR_ZONE_LABEL", "", lambda s: s.plan.zone_label, None),
    (
        "ROUTE_REFLECTOR_INCOMPATIBLE_NODE_LABELS",
        "a=b, c= ,d,",
        lambda s: s.plan.incompatible_labels,
        ("a=b", "c=", "d"),
    ),
    ("ROUTE_REFLECTOR_TOPOLOGY", "multi", lambda s: s.plan.topology, "multi"),
    ("ROUTE_REFLECTOR_TOPOLOGY", "simple", lambda s: s.plan.topology, "single"),
    ("ROUTE_REFLECTOR_TOPOLOGY", "Hierarchy", lambda s: s.plan.topology, "hierarchy"),
    ("ROUTE_REFLECTOR_CLUSTER_ID", "224.0.0.%d", lambda s: s.plan.cluster_id_base, "224.0.0.0"),
    ("ROUTE_REFLECTOR_CLUSTER_ID", "10.9.0.0", lambda s: s.plan.cluster_id_base, "10.9.0.0"),
    ("ROUTE_REFLECTOR_WAIT_TIMEOUT", "30", lambda s: s.wait_timeout, 30.0),
    ("ROUTE_REFLECTOR_WAIT_TIMEOUT", "1.5", lambda s: s.wait_timeout, 1.5),
    ("ROUTE_REFLECTOR_WAIT_TIMEOUT", "2m", lambda s: s.wait_timeout, 120.0),
]


@pytest.mark.parametrize(
    ("var", "value", "get", "expected"), ENV_CASES, ids=[f"{c[0]}={c[1]}" for c in ENV_CASES]
)
def test_env_var_maps(var: str, value: str, get: Get, expected: Any) -> None:
    assert get(parse({}, {var: value})) == expected
    assert get(parse({})) != expected


def test_every_env_var_has_a_case() -> None:
    assert {c[0] for c in ENV_CASES} == set(ENV_VARS)


def test_env_spec_is_spec_shaped() -> None:
    env = {
        "ROUTE_REFLECTOR_MIN": "4",
        "ROUTE_REFLECTOR_RATIO": "0.01",
        "ROUTE_REFLECTOR_INCOMPATIBLE_NODE_LABELS": "x,y=",
        "ROUTE_REFLECTOR_CLUSTER_ID": "224.0.0.%d",
        "ROUTE_REFLECTOR_WAIT_TIMEOUT": "45",
        "UNRELATED": "ignored",
    }
    assert env_spec(env) == {
        "minRouteReflectors": 4,
        "ratio": "0.01",
        "incompatibleNodeLabels": ["x", "y="],
        "clusterIDBase": "224.0.0.0",
        "waitTimeout": "45s",
    }


def test_empty_env_vars_are_unset() -> None:
    env = {var: "" for var in ENV_VARS if var != "ROUTE_REFLECTOR_ZONE_LABEL"}
    assert env_spec(env) == {}
    assert parse({}, env) == parse({})


def test_spec_overrides_env_field_by_field() -> None:
    env = {
        "ROUTE_REFLECTOR_MIN": "5",
        "ROUTE_REFLECTOR_MAX": "10",
        "ROUTE_REFLECTOR_RATIO": "0.01",
        "ROUTE_REFLECTOR_TOPOLOGY": "multi",
        "ROUTE_REFLECTOR_ZONE_LABEL": "",
    }
    settings = parse({"maxRouteReflectors": 20, "topology": "quorum"}, env)
    assert settings.plan.sizing == LinearSizing(0.01, 5, 20)
    assert settings.plan.topology == "quorum"
    assert settings.plan.zone_label is None  # from the environment


def test_spec_steps_override_env_linear_sizing() -> None:
    env = {"ROUTE_REFLECTOR_RATIO": "0.01", "ROUTE_REFLECTOR_MIN": "5"}
    settings = parse({"steps": "100:3"}, env)
    assert settings.plan.sizing == SteppingSizing((Step(100, 3),))


def test_spec_zone_label_overrides_empty_env() -> None:
    settings = parse({"zoneLabel": "rack-zone"}, {"ROUTE_REFLECTOR_ZONE_LABEL": ""})
    assert settings.plan.zone_label == "rack-zone"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("ROUTE_REFLECTOR_MIN", "three"),
        ("ROUTE_REFLECTOR_MIN", "0"),
        ("ROUTE_REFLECTOR_MAX", "2.5"),
        ("ROUTE_REFLECTOR_MAX", "1_000"),
        ("ROUTE_REFLECTOR_RATIO", "0"),
        ("ROUTE_REFLECTOR_RATIO", "1.5"),
        ("ROUTE_REFLECTOR_RATIO", "abc"),
        ("ROUTE_REFLECTOR_NODE_LABEL", "=x"),
        ("ROUTE_REFLECTOR_NODE_LABEL", "calico-rr.io/route-reflector"),
        ("ROUTE_REFLECTOR_ZONE_LABEL", "not a label"),
        ("ROUTE_REFLECTOR_INCOMPATIBLE_NODE_LABELS", "ok,=bad"),
        ("ROUTE_REFLECTOR_TOPOLOGY", "ring"),
        ("ROUTE_REFLECTOR_CLUSTER_ID", "224.0.%d"),
        ("ROUTE_REFLECTOR_CLUSTER_ID", "300.0.0.0"),
        ("ROUTE_REFLECTOR_WAIT_TIMEOUT", "soon"),
        ("ROUTE_REFLECTOR_WAIT_TIMEOUT", "0"),
        ("ROUTE_REFLECTOR_WAIT_TIMEOUT", "-5"),
    ],
)
def test_bad_env_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        env_spec({var: value})
    assert str(info.value).startswith(f"{var}"), info.value
    # settings_from_spec reports the same error
    rejects({}, var, env={var: value})


# -- bad spec values -----------------------------------------------------------------------

BAD_SPECS: list[tuple[Any, str]] = [
    ({"topology": "ring"}, "spec.topology: must be one of"),
    ({"topology": 3}, "spec.topology:"),
    ({"redundancy": 0}, "spec.redundancy: must be >= 1"),
    ({"redundancy": 17}, "spec.redundancy: must be <= 16"),
    ({"redundancy": "3"}, "spec.redundancy: must be an integer"),
    ({"redundancy": True}, "spec.redundancy: must be an integer"),
    ({"redundancy": 3.0}, "spec.redundancy: must be an integer"),
    ({"routeReflectors": 0}, "spec.routeReflectors: must be >= 1"),
    ({"minRouteReflectors": 0}, "spec.minRouteReflectors: must be >= 1"),
    ({"maxRouteReflectors": 0}, "spec.maxRouteReflectors: must be >= 1"),
    ({"ratio": "0"}, "spec.ratio:"),
    ({"ratio": "0.000"}, "spec.ratio:"),
    ({"ratio": "1.01"}, "spec.ratio:"),
    ({"ratio": "-0.1"}, "spec.ratio:"),
    ({"ratio": 0.5}, "spec.ratio: must be a string"),
    ({"steps": "200-3"}, "spec.steps:"),
    ({"steps": "200:0"}, "spec.steps:"),
    ({"steps": "1000:5,200:3"}, "spec.steps: stepping sizing steps must have strictly ascending"),
    ({"ratio": "0.01", "steps": "200:3"}, "spec.ratio: cannot be combined with spec.steps"),
    ({"minRouteReflectors": 2, "steps": "200:3"}, "spec.minRouteReflectors: cannot be combined"),
    ({"maxRouteReflectors": 9, "steps": "200:3"}, "spec.maxRouteReflectors: cannot be combined"),
    ({"perZoneSizing": "yes"}, "spec.perZoneSizing: must be true or false"),
    ({"sessionBudget": 9}, "spec.sessionBudget: must be >= 10"),
    ({"zoneLabel": "bad label"}, "spec.zoneLabel:"),
    ({"zoneLabel": None}, "spec.zoneLabel: must be a string"),
    ({"rackLabel": ""}, "spec.rackLabel:"),
    ({"rackLabel": "a" * 64}, "spec.rackLabel:"),
    ({"racks": 0}, "spec.racks: must be >= 1"),
    ({"spines": 0}, "spec.spines: must be >= 1"),
    ({"preferredNodeLabel": "infra="}, "spec.preferredNodeLabel:"),
    ({"dedicatedNodeLabel": "a=b=c"}, "spec.dedicatedNodeLabel:"),
    ({"incompatibleNodeLabels": "a,b"}, "spec.incompatibleNodeLabels: must be a list"),
    ({"incompatibleNodeLabels": ["ok", "=x"]}, "spec.incompatibleNodeLabels[1]:"),
    ({"incompatibleNodeLabels": ["ok", 5]}, "spec.incompatibleNodeLabels[1]: must be a string"),
    ({"incompatibleNodeLabels": [f"l{i}" for i in range(65)]}, "at most 64 items"),
    ({"routeReflectorLabel": "calico-rr.io/route-reflector"}, "spec.routeReflectorLabel:"),
    ({"typha": True}, "spec.typha: must be an object"),
    (
        {"typha": {"enable": True}},
        "spec.typha.enable: unknown field (did you mean spec.typha.enabled",
    ),
    ({"typha": {"enabled": "true"}}, "spec.typha.enabled: must be true or false"),
    ({"typha": {"namespace": "Kube_System"}}, "spec.typha.namespace:"),
    ({"typha": {"name": "typha/x"}}, "spec.typha.name:"),
    ({"typha": {"coolDown": "25h"}}, "spec.typha.coolDown: must be <= 86400s"),
    ({"typha": {"settle": "2h"}}, "spec.typha.settle: must be <= 3600s"),
    ({"typha": {"settle": "soon"}}, "spec.typha.settle:"),
    ({"routeReflectorLabel": "=true"}, "spec.routeReflectorLabel:"),
    ({"clusterIDBase": "256.0.0.1"}, "spec.clusterIDBase:"),
    ({"clusterIDBase": "10.0.0"}, "spec.clusterIDBase:"),
    ({"clusterIDBase": "10.0.0.0\n"}, "spec.clusterIDBase:"),
    ({"asNumber": 0}, "spec.asNumber: must be >= 1"),
    ({"asNumber": 2**32}, "spec.asNumber: must be <= 4294967295"),
    ({"maxRestartTime": "2 minutes"}, "spec.maxRestartTime:"),
    ({"maxRestartTime": "120"}, "spec.maxRestartTime:"),
    ({"maxRestartTime": "-5s"}, "spec.maxRestartTime:"),
    ({"password": "secret"}, "spec.password: must be an object"),
    ({"password": {}}, "spec.password.secretKeyRef: required"),
    ({"password": {"secretKeyRef": {"name": "bgp"}}}, "spec.password.secretKeyRef.key: required"),
    ({"password": {"secretKeyRef": {"key": "k"}}}, "spec.password.secretKeyRef.name: required"),
    (
        {"password": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}},
        "spec.password.secretKeyRef.name:",
    ),
    (
        {"password": {"secretKeyRef": {"name": "bgp", "key": "k", "ns": "x"}}},
        "spec.password.secretKeyRef.ns: unknown field",
    ),
    (
        {"password": {"secretKeyRef": {"name": "b", "key": "k"}, "value": "x"}},
        "spec.password.value: unknown field",
    ),
    ({"sessionCheck": "auto"}, "spec.sessionCheck: must be one of Auto, NodeStatus, Wait"),
    ({"waitTimeout": "0s"}, "spec.waitTimeout: must be > 0s"),
    ({"waitTimeout": "61m"}, "spec.waitTimeout: must be <= 3600s"),
    ({"waitTimeout": 60}, "spec.waitTimeout: must be a string"),
    ({"debounce": "2m"}, "spec.debounce: must be <= 60s"),
    ({"paused": "false"}, "spec.paused: must be true or false"),
    ({"maxRouteRefectors": 3}, "spec.maxRouteRefectors: unknown field"),
    (["topology"], "spec: must be an object"),
]


@pytest.mark.parametrize(("spec", "fragment"), BAD_SPECS, ids=[str(s) for s, _ in BAD_SPECS])
def test_bad_spec_rejected_naming_the_field(spec: Any, fragment: str) -> None:
    rejects(spec, fragment)


def test_unknown_field_suggests_the_right_name() -> None:
    message = rejects({"maxRouteRefectors": 3}, "unknown field")
    assert "did you mean spec.maxRouteReflectors?" in message
    assert "did you mean" not in rejects({"colour": "blue"}, "spec.colour: unknown field")


@pytest.mark.parametrize(
    ("spec", "env", "message"),
    [
        (
            {"minRouteReflectors": 3, "maxRouteReflectors": 2},
            {},
            "spec.maxRouteReflectors: must be >= spec.minRouteReflectors (3)",
        ),
        (
            {"minRouteReflectors": 30},
            {},
            "spec.minRouteReflectors: must be <= the default maxRouteReflectors (25)",
        ),
        (
            {"maxRouteReflectors": 2},
            {},
            "spec.maxRouteReflectors: must be >= the default minRouteReflectors (3)",
        ),
        (
            {"minRouteReflectors": 12},
            {"ROUTE_REFLECTOR_MAX": "10"},
            "spec.minRouteReflectors: must be <= ROUTE_REFLECTOR_MAX (10)",
        ),
        (
            {"maxRouteReflectors": 4},
            {"ROUTE_REFLECTOR_MIN": "5"},
            "spec.maxRouteReflectors: must be >= ROUTE_REFLECTOR_MIN (5)",
        ),
        (
            {},
            {"ROUTE_REFLECTOR_MIN": "9", "ROUTE_REFLECTOR_MAX": "4"},
            "ROUTE_REFLECTOR_MAX: must be >= ROUTE_REFLECTOR_MIN (9)",
        ),
    ],
)
def test_max_below_min_names_both_sources(
    spec: dict[str, Any], env: dict[str, str], message: str
) -> None:
    assert rejects(spec, message, env=env) == message


def test_max_below_min_fixed_by_the_spec() -> None:
    # the env alone is inconsistent, but the spec replaces the bad value
    env = {"ROUTE_REFLECTOR_MIN": "9", "ROUTE_REFLECTOR_MAX": "4"}
    assert parse({"maxRouteReflectors": 12}, env).plan.sizing == LinearSizing(0.005, 9, 12)


def test_bad_env_value_is_reported_even_when_spec_overrides_it() -> None:
    # a broken Deployment should be noticed, not masked by today's spec
    rejects({"minRouteReflectors": 3}, "ROUTE_REFLECTOR_MIN", env={"ROUTE_REFLECTOR_MIN": "x"})


# -- durations and patterns --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("1h2m3s4ms", 3723.004),
        ("0s", 0.0),
        ("10us", 1e-5),
        ("10µs", 1e-5),
        ("10μs", 1e-5),
        ("5ns", 5e-9),
        ("1m1m", 120.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "90", "s", "1.s", ".5s", "-1s", "+1s", "1 s", "1d", "1m ", "1M"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (
            LABEL_MATCH_PATTERN,
            ["a", "a=", "a=b", "example.com/a=b-c.d_e", "A_b", "x" * 63],
            ["=b", "a==b", "-a", "a b", "a=-b", "Example.com/a", "x" * 64, "a/b/c"],
        ),
        (LABEL_SELECTOR_PATTERN, ["a", "a=b", "example.com/a"], ["a=", "=", ""]),
        (RATIO_PATTERN, ["0.005", ".5", "1", "1.0", "0.1"], ["0", "0.0", ".", "1.5", "2", "5e-3"]),
        (
            QUAD_PATTERN,
            ["0.0.0.0", "255.255.255.255", "10.0.1.9"],
            ["1.2.3", "01.2.3.4", "1.2.3.256"],
        ),
        (DURATION_PATTERN, ["1s", "1.5m", "1h1m"], ["1", "s", "1.s"]),
    ],
)
def test_patterns(pattern: str, good: list[str], bad: list[str]) -> None:
    assert all(re.fullmatch(pattern, g) for g in good), [
        g for g in good if not re.fullmatch(pattern, g)
    ]
    assert not any(re.fullmatch(pattern, b) for b in bad), [
        b for b in bad if re.fullmatch(pattern, b)
    ]


def test_label_prefix_longer_than_253_rejected() -> None:
    prefix = ".".join(["a" * 63] * 4)  # 255 characters, each DNS label valid
    assert len(prefix) > 253
    rejects({"rackLabel": f"{prefix}/rack"}, "spec.rackLabel: the label key prefix is longer")


# -- property ------------------------------------------------------------------------------

_KEYS = st.sampled_from(["zone", "topology.kubernetes.io/zone", "example.com/rack", "A1_b.c-d"])
_VALUES = st.sampled_from(["x", "true", "v1.2_3-a"])


@st.composite
def _selector(draw: st.DrawFn, empty_value: bool) -> str:
    key = draw(_KEYS)
    form = draw(
        st.sampled_from(["key", "key=", "key=value"] if empty_value else ["key", "key=value"])
    )
    if form == "key":
        return key
    return f"{key}=" if form == "key=" else f"{key}={draw(_VALUES)}"


@st.composite
def _duration(draw: st.DrawFn, max_seconds: int, minimum: int = 0) -> str:
    seconds = draw(st.integers(minimum, max_seconds))
    unit = draw(st.sampled_from(["s", "m", "ms"]))
    if unit == "m" and seconds % 60 == 0:
        return f"{seconds // 60}m"
    if unit == "ms":
        return f"{seconds * 1000}ms"
    return f"{seconds}s"


@st.composite
def _sizing(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["none", "linear", "steps"]))
    if kind == "steps":
        pairs: list[str] = []
        up_to = 0
        for _ in range(draw(st.integers(1, 5))):
            up_to += draw(st.integers(1, 2000))
            pairs.append(f"{up_to}:{draw(st.integers(1, 30))}")
        return {"steps": ",".join(pairs)}
    if kind == "none":
        return {}
    out: dict[str, Any] = {}
    minimum = draw(st.integers(1, 25))
    maximum = draw(st.integers(minimum, 60))
    if draw(st.booleans()):
        out["minRouteReflectors"] = minimum
    if draw(st.booleans()) and (maximum >= 3 or "minRouteReflectors" in out):
        out["maxRouteReflectors"] = maximum
    if draw(st.booleans()):
        out["ratio"] = f"0.{draw(st.integers(1, 999)):03d}"
    return out


_SPEC = st.fixed_dictionaries(
    {},
    optional={
        "topology": st.sampled_from(["auto", "single", "multi", "quorum", "hierarchy"]),
        "redundancy": st.integers(1, 16),
        "routeReflectors": st.integers(1, 100),
        "perZoneSizing": st.booleans(),
        "sessionBudget": st.integers(10, 5000),
        "zoneLabel": st.one_of(st.just(""), _KEYS),
        "rackLabel": _KEYS,
        "racks": st.integers(1, 50),
        "spines": st.integers(1, 9),
        "preferredNodeLabel": _selector(False),
        "dedicatedNodeLabel": _selector(False),
        "incompatibleNodeLabels": st.lists(_selector(True), max_size=5),
        "routeReflectorLabel": _selector(True),
        "clusterIDBase": st.tuples(*[st.integers(0, 255)] * 3).map(
            lambda t: f"{t[0]}.{t[1]}.{t[2]}.0"
        ),
        "asNumber": st.integers(1, 2**32 - 1),
        "maxRestartTime": _duration(600),
        "password": st.just({"secretKeyRef": {"name": "bgp", "key": "password"}}),
        "sessionCheck": st.sampled_from(["Auto", "NodeStatus", "Wait"]),
        "waitTimeout": _duration(3600, minimum=1),
        "debounce": _duration(60),
        "paused": st.booleans(),
    },
)


@given(spec=_SPEC, sizing=_sizing())
def test_any_valid_spec_parses_deterministically(
    spec: dict[str, Any], sizing: dict[str, Any]
) -> None:
    spec = {**spec, **sizing}
    settings = parse(spec)
    assert parse(dict(spec)) == settings
    plan = settings.plan
    assert plan.topology == spec.get("topology", "auto")
    assert plan.redundancy == spec.get("redundancy", 3)
    assert plan.rrs == spec.get("routeReflectors")
    assert plan.incompatible_labels == tuple(spec.get("incompatibleNodeLabels", ()))
    assert plan.zone_label == spec.get("zoneLabel", ZONE_LABEL) or plan.zone_label is None
    assert plan.rack_label == spec.get("rackLabel", RACK_LABEL)
    assert settings.paused == spec.get("paused", False)
    if "steps" in spec:
        assert isinstance(plan.sizing, SteppingSizing)
        assert ",".join(f"{s.up_to}:{s.rrs}" for s in plan.sizing.steps) == spec["steps"]
    else:
        assert isinstance(plan.sizing, LinearSizing)
        assert plan.sizing.minimum == spec.get("minRouteReflectors", 3)
        assert plan.sizing.maximum == spec.get("maxRouteReflectors", 25)
    if "waitTimeout" in spec:
        assert 0 < settings.wait_timeout <= 3600
    if "routeReflectorLabel" in spec:
        assert settings.rr_label is not None
        assert "=".join(settings.rr_label).startswith(spec["routeReflectorLabel"].rstrip("="))


# -- the CRD and the manifests agree with the code -----------------------------------------


def _crd() -> dict[str, Any]:
    docs = list(yaml.safe_load_all(CRD_FILE.read_text(encoding="utf-8")))
    assert len(docs) == 1
    doc: dict[str, Any] = docs[0]
    return doc


def _schema() -> dict[str, Any]:
    version = _crd()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_crd_identity() -> None:
    crd = _crd()
    assert crd["metadata"]["name"] == f"{CRD_PLURAL}.{CRD_GROUP}"
    spec = crd["spec"]
    assert spec["group"] == CRD_GROUP
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == CRD_KIND
    assert spec["names"]["plural"] == CRD_PLURAL
    assert spec["names"]["singular"] == "routereflectorconfig"
    assert spec["names"]["shortNames"] == ["rrc"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (CRD_VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Topology", "RRs", "Peers", "Mesh", "Ready", "Age"]
    assert f"'{CONFIG_NAME}'" in _schema()["x-kubernetes-validations"][0]["rule"]


_TYPES = {"integer": "integer", "boolean": "boolean", "string": "string", "enum": "string"}


def test_crd_spec_fields_match_python() -> None:
    props = _schema()["properties"]["spec"]["properties"]
    assert list(props) == list(SPEC_FIELDS)
    for name, field in SPEC_FIELDS.items():
        prop = props[name]
        assert "default" not in prop, f"{name}: defaults would override the environment"
        if field.kind == "object":
            assert field.fields is not None
            assert prop["type"] == "object", name
            assert list(prop["properties"]) == list(field.fields), name
            for sub_name, sub in field.fields.items():
                sub_prop = prop["properties"][sub_name]
                assert "default" not in sub_prop, f"{name}.{sub_name}"
                assert sub_prop["type"] == _TYPES[sub.kind], f"{name}.{sub_name}"
                assert sub_prop.get("pattern") == sub.pattern, f"{name}.{sub_name}"
                assert sub_prop.get("maxLength") == sub.max_length, f"{name}.{sub_name}"
            continue
        if field.kind == "password":
            ref = prop["properties"]["secretKeyRef"]
            assert prop["required"] == ["secretKeyRef"]
            assert ref["required"] == ["name", "key"]
            continue
        if field.kind == "strings":
            assert prop["type"] == "array", name
            assert prop.get("maxItems") == field.maximum, name
            prop = prop["items"]
            assert prop["type"] == "string", name
        else:
            assert prop["type"] == _TYPES[field.kind], name
            assert prop.get("minimum") == field.minimum, name
            assert prop.get("maximum") == field.maximum, name
        assert prop.get("pattern") == field.pattern, name
        assert prop.get("maxLength") == field.max_length, name
        assert tuple(prop.get("enum", ())) == field.choices, name


def test_crd_has_the_cross_field_rules() -> None:
    rules = " ".join(r["rule"] for r in _schema()["properties"]["spec"]["x-kubernetes-validations"])
    assert "has(self.ratio) && has(self.steps)" in rules
    assert "self.maxRouteReflectors >= self.minRouteReflectors" in rules


def test_crd_status_schema() -> None:
    status = _schema()["properties"]["status"]["properties"]
    assert set(status) == {
        "observedGeneration",
        "phase",
        "message",
        "topology",
        "routeReflectors",
        "bgpPeers",
        "meshEnabled",
        "meshBefore",
        "transition",
        "conditions",
        "typha",
        "preview",
    }
    assert status["transition"]["x-kubernetes-preserve-unknown-fields"] is True
    assert status["meshBefore"]["nullable"] is True
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_example_config_parses() -> None:
    doc = yaml.safe_load((DEPLOY / "example-config.yaml").read_text(encoding="utf-8"))
    assert doc["apiVersion"] == f"{CRD_GROUP}/{CRD_VERSION}"
    assert doc["kind"] == CRD_KIND
    assert doc["metadata"]["name"] == CONFIG_NAME
    settings = parse(doc["spec"])
    assert settings.plan.sizing == LinearSizing(0.005, 3, 25)
    assert settings.plan.max_restart_time == "120s"
    assert settings.debounce == pytest.approx(0.2)
    assert settings.typha == TyphaSettings()  # the example spells out the defaults


def _operator_docs() -> dict[str, dict[str, Any]]:
    text = (DEPLOY / "operator.yaml").read_text(encoding="utf-8")
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


def test_operator_deployment() -> None:
    deployment = _operator_docs()["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "calico-rr"
    [container] = pod["containers"]
    # an exact version, never "latest" (the image tag follows the package version)
    assert container["image"] == "calico-rr:0.1.0"
    assert container["command"] == ["calico-rr", "run", "--identity", "$(POD_NAME)"]
    # the leader-election identity is the pod's name, the Lease's namespace the pod's
    # own, both from the downward API
    env_refs = {e["name"]: e for e in container["env"]}
    assert env_refs["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env_refs["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["limits"]["memory"] == "256Mi"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    # the example environment is valid and means what the defaults mean
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env_spec(env)["topology"] == "auto"
    assert parse({}, env) == parse({})


def test_rbac_binds_service_account_and_user() -> None:
    text = (DEPLOY / "rbac.yaml").read_text(encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d]
    bindings = [d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert len(bindings) == 2
    for binding in bindings:
        subjects = {(s["kind"], s.get("namespace"), s["name"]) for s in binding["subjects"]}
        assert subjects == {
            ("ServiceAccount", "calico-rr", "calico-rr"),
            ("User", None, "calico-rr"),
        }
    [cluster_role] = [d for d in docs if d["kind"] == "ClusterRole"]
    granted = {
        (group, resource, verb)
        for rule in cluster_role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert ("", "nodes", "delete") not in granted
    assert not any(resource == "secrets" for _, resource, _ in granted)
    assert ("projectcalico.org", "bgppeers", "create") in granted
    assert ("crd.projectcalico.org", "bgppeers", "create") in granted
