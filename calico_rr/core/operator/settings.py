"""The operator's configuration: a RouteReflectorConfig spec -> :class:`OperatorSettings`.  Pure.

The operator reads one cluster-scoped ``RouteReflectorConfig`` named ``default``
(``deploy/crds/routereflectorconfigs.calico-rr.io.yaml``).  Its spec is a flat,
camelCase view of :class:`~calico_rr.core.planning.config.PlanConfig` plus a few runtime
knobs (how new BGP sessions are confirmed, how long to wait, event debounce,
pause).  Decisions worth knowing:

* **Validated twice, the same way.**  The CRD's OpenAPI schema rejects bad values
  at admission, but the schema may not be installed yet, or an object may have
  been stored under an older schema, so :func:`settings_from_spec` checks every
  field again.  The regular expressions and bounds live once, in
  :data:`SPEC_FIELDS`; a test compares them with the CRD file so the two cannot
  drift.  Unknown fields are rejected, not ignored: in a hand-written spec an
  unknown field is a typo (``maxRouteRefectors``) and ignoring it would silently
  run with the default.
* **Environment variables are defaults, the spec overrides them field by field.**
  The earlier Go prototype was configured only through ``ROUTE_REFLECTOR_*``
  variables (domain.md 7); :func:`env_spec` turns them into spec-shaped values so
  a migrating user keeps their Deployment as it is.  That is also why the CRD
  declares no ``default:`` values: the API server would write them into every
  stored object and they would always beat the environment.
* **Errors name the field** (``spec.maxRouteReflectors: ...``) or the variable
  (``ROUTE_REFLECTOR_MAX: ...``) the value came from, so the operator can put the
  message into its ``InvalidConfig`` condition as it is.
* **Sizing.**  ``ratio``/``minRouteReflectors``/``maxRouteReflectors`` make a
  :class:`LinearSizing`, ``steps`` a :class:`SteppingSizing`.  ``steps`` together
  with any linear field in the spec is an error (one of them would be silently
  ignored); linear values from the environment are merely overridden by
  ``spec.steps``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from calico_rr.core.operator.typha import TyphaSettings
from calico_rr.core.planning.config import (
    MAX_RACKS,
    MAX_REDUNDANCY,
    MAX_ROUTE_REFLECTORS,
    MAX_SESSION_BUDGET,
    MAX_SPINES,
    TOPOLOGIES,
    ApiGroup,
    LinearSizing,
    PlanConfig,
    Sizing,
    parse_steps,
)
from calico_rr.core.values import (
    DURATION_PATTERN,
    MAX_RESTART_TIME,
    QUAD_PATTERN,
    parse_duration,
)
from calico_rr.errors import ConfigError
from calico_rr.model import PREFIX

#: The operator reads the RouteReflectorConfig of this name (the CRD admits no other).
CONFIG_NAME: Final = "default"
CRD_GROUP: Final = PREFIX
CRD_VERSION: Final = "v1alpha1"
CRD_PLURAL: Final = "routereflectorconfigs"
CRD_KIND: Final = "RouteReflectorConfig"

SessionCheck = Literal["Auto", "NodeStatus", "Wait"]
SESSION_CHECKS: tuple[SessionCheck, ...] = ("Auto", "NodeStatus", "Wait")

DEFAULT_SESSION_CHECK: Final[SessionCheck] = "Auto"
DEFAULT_WAIT_TIMEOUT: Final = 60.0
DEFAULT_DEBOUNCE: Final = 0.2
#: Longest ``waitTimeout``: an hour of waiting for sessions is a broken cluster, not
#: a slow one; a larger value would only delay the fallback for nothing.
MAX_WAIT_TIMEOUT: Final = 3600.0
#: Longest ``debounce``: coalescing node events for more than a minute would make
#: the operator look dead to a user watching a node join.
MAX_DEBOUNCE: Final = 60.0
MAX_AS_NUMBER: Final = 2**32 - 1  # 4-byte AS numbers (RFC 6793)
#: Longest Typha ``coolDown``: a day; longer would mean "never scale down" - turn the
#: keeper off instead.
MAX_TYPHA_COOL_DOWN: Final = 86400.0
#: Longest Typha ``settle``: an hour of holding back a needed scale-up is too long.
MAX_TYPHA_SETTLE: Final = 3600.0

# -- patterns (shared with the CRD, compared by tests/test_opconfig.py) ---------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"  # label name part or value
#: A Kubernetes label key: optional DNS-subdomain prefix and ``/``, then a name.
_KEY = rf"({_DNS_LABEL}(\.{_DNS_LABEL})*/)?{_NAME}"

LABEL_KEY_PATTERN: Final = rf"^{_KEY}$"
ZONE_LABEL_PATTERN: Final = rf"^({_KEY})?$"  # empty: no zones
#: ``key`` or ``key=value`` (preferred and dedicated node labels).
LABEL_SELECTOR_PATTERN: Final = rf"^{_KEY}(={_NAME})?$"
#: ``key``, ``key=`` or ``key=value`` (incompatible labels, the extra RR label).
LABEL_MATCH_PATTERN: Final = rf"^{_KEY}(=({_NAME})?)?$"
#: A decimal in (0, 1]: "0.005", ".5", "1", "1.0" - never 0.
RATIO_PATTERN: Final = r"^(0?\.[0-9]*[1-9][0-9]*|1(\.0+)?)$"
STEPS_PATTERN: Final = r"^[1-9][0-9]*:[1-9][0-9]*(,[1-9][0-9]*:[1-9][0-9]*)*$"
SECRET_NAME_PATTERN: Final = rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$"
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"
#: A namespace name (RFC 1123 label); object names use SECRET_NAME_PATTERN (subdomain).
NAMESPACE_PATTERN: Final = rf"^{_DNS_LABEL}$"

_KEY_MAX = 253 + 1 + 63  # prefix / name
_SELECTOR_MAX = _KEY_MAX + 1 + 63  # key = value


@dataclass(frozen=True, slots=True)
class SpecField:
    """One spec field as the CRD declares it (type and bounds)."""

    kind: Literal["integer", "boolean", "string", "enum", "strings", "password", "object"]
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    #: Bounds in seconds for duration strings (inclusive maximum).
    min_seconds: float | None = None
    max_seconds: float | None = None
    #: ``min_seconds`` is exclusive (a zero wait makes no sense).
    exclusive_min_seconds: bool = False
    #: Sub-fields of an ``object`` field (all optional, no others allowed).
    fields: Mapping[str, SpecField] | None = None


def _int(minimum: int, maximum: int | None = None) -> SpecField:
    return SpecField("integer", minimum=minimum, maximum=maximum)


def _text(pattern: str, max_length: int) -> SpecField:
    return SpecField("string", pattern=pattern, max_length=max_length)


def _duration(
    max_seconds: float, min_seconds: float | None = None, *, exclusive_min: bool = False
) -> SpecField:
    return SpecField(
        "string",
        pattern=DURATION_PATTERN,
        max_length=64,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        exclusive_min_seconds=exclusive_min,
    )


#: Every spec field, in CRD order.  The CRD file declares exactly these.
SPEC_FIELDS: Final[Mapping[str, SpecField]] = {
    "topology": SpecField("enum", choices=TOPOLOGIES),
    "redundancy": _int(1, MAX_REDUNDANCY),
    "routeReflectors": _int(1, MAX_ROUTE_REFLECTORS),
    "minRouteReflectors": _int(1, MAX_ROUTE_REFLECTORS),
    "maxRouteReflectors": _int(1, MAX_ROUTE_REFLECTORS),
    "ratio": _text(RATIO_PATTERN, 32),
    "steps": _text(STEPS_PATTERN, 512),
    "perZoneSizing": SpecField("boolean"),
    "sessionBudget": _int(10, MAX_SESSION_BUDGET),
    "zoneLabel": _text(ZONE_LABEL_PATTERN, _KEY_MAX),
    "rackLabel": _text(LABEL_KEY_PATTERN, _KEY_MAX),
    "racks": _int(1, MAX_RACKS),
    "spines": _int(1, MAX_SPINES),
    "preferredNodeLabel": _text(LABEL_SELECTOR_PATTERN, _SELECTOR_MAX),
    "dedicatedNodeLabel": _text(LABEL_SELECTOR_PATTERN, _SELECTOR_MAX),
    "incompatibleNodeLabels": SpecField(
        "strings", pattern=LABEL_MATCH_PATTERN, max_length=_SELECTOR_MAX, maximum=64
    ),
    "routeReflectorLabel": _text(LABEL_MATCH_PATTERN, _SELECTOR_MAX),
    "clusterIDBase": _text(QUAD_PATTERN, 15),
    "asNumber": _int(1, MAX_AS_NUMBER),
    "maxRestartTime": _duration(MAX_RESTART_TIME),
    "password": SpecField("password"),
    "sessionCheck": SpecField("enum", choices=SESSION_CHECKS),
    "waitTimeout": _duration(MAX_WAIT_TIMEOUT, 0.0, exclusive_min=True),
    "debounce": _duration(MAX_DEBOUNCE, 0.0),
    "paused": SpecField("boolean"),
    "typha": SpecField(
        "object",
        fields={
            "enabled": SpecField("boolean"),
            "namespace": _text(NAMESPACE_PATTERN, 63),
            "name": _text(SECRET_NAME_PATTERN, 253),
            "coolDown": _duration(MAX_TYPHA_COOL_DOWN, 0.0),
            "settle": _duration(MAX_TYPHA_SETTLE, 0.0),
        },
    ),
}

#: The earlier prototype's variables and the spec field each one defaults.
ENV_VARS: Final[Mapping[str, str]] = {
    "ROUTE_REFLECTOR_MIN": "minRouteReflectors",
    "ROUTE_REFLECTOR_MAX": "maxRouteReflectors",
    "ROUTE_REFLECTOR_RATIO": "ratio",
    "ROUTE_REFLECTOR_NODE_LABEL": "routeReflectorLabel",
    "ROUTE_REFLECTOR_ZONE_LABEL": "zoneLabel",
    "ROUTE_REFLECTOR_INCOMPATIBLE_NODE_LABELS": "incompatibleNodeLabels",
    "ROUTE_REFLECTOR_TOPOLOGY": "topology",
    "ROUTE_REFLECTOR_CLUSTER_ID": "clusterIDBase",
    "ROUTE_REFLECTOR_WAIT_TIMEOUT": "waitTimeout",
}

#: The prototype called the single-cluster topology "simple".
_TOPOLOGY_ALIASES: Final = {"simple": "single"}

_BARE_SECONDS_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    """Everything the operator's reconcile needs from its configuration."""

    plan: PlanConfig
    #: How new BGP sessions are confirmed before old ones go: ``NodeStatus`` uses
    #: CalicoNodeStatus reports, ``Wait`` waits ``wait_timeout``, ``Auto`` uses the
    #: reports when Calico provides them and falls back to the wait.
    session_check: SessionCheck = DEFAULT_SESSION_CHECK
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT  # seconds
    debounce: float = DEFAULT_DEBOUNCE  # seconds node events are coalesced
    #: Extra label (key, value) the operator sets on RR nodes besides its own.
    rr_label: tuple[str, str] | None = None
    #: Reconcile nothing.
    paused: bool = False
    #: The Typha keeper (off unless ``spec.typha.enabled``).
    typha: TyphaSettings = field(default_factory=TyphaSettings)


# -- environment -----------------------------------------------------------------------


def env_spec(env: Mapping[str, str]) -> dict[str, Any]:
    """The prototype's ``ROUTE_REFLECTOR_*`` variables as spec values (spec field -> value).

    Unset and empty variables are skipped, except ``ROUTE_REFLECTOR_ZONE_LABEL``,
    whose empty value meant "no zones" in the prototype and means the same here.
    Bad values raise :class:`ConfigError` naming the variable.
    """
    out: dict[str, Any] = {}
    for var, name in ENV_VARS.items():
        raw = env.get(var)
        if raw is None:
            continue
        text = raw.strip()
        if not text and name != "zoneLabel":
            continue
        value = _env_value(var, name, text)
        _check_field(name, value, var)
        out[name] = value
    return out


def _env_value(var: str, name: str, text: str) -> Any:
    if name in ("minRouteReflectors", "maxRouteReflectors"):
        if not re.fullmatch(r"[0-9]+", text):
            raise ConfigError(f"{var}: {text!r} is not an integer")
        return int(text)
    if name == "incompatibleNodeLabels":
        return [part.strip() for part in text.split(",") if part.strip()]
    if name == "topology":
        lowered = text.lower()
        return _TOPOLOGY_ALIASES.get(lowered, lowered)
    if name == "clusterIDBase":
        # The prototype took a template such as "224.0.0.%d" and put the cluster
        # number into it; our base is the address before the first ID.
        return text.replace("%d", "0")
    if name == "waitTimeout" and _BARE_SECONDS_RE.fullmatch(text):
        return f"{text}s"  # the prototype's plain seconds
    return text


# -- the spec --------------------------------------------------------------------------


def settings_from_spec(
    spec: Mapping[str, Any] | None,
    *,
    env: Mapping[str, str] | None = None,
    api_group: ApiGroup,
) -> OperatorSettings:
    """Validate ``spec`` (over the defaults in ``env``) and build the settings.

    Raises :class:`ConfigError` whose message starts with the field path
    (``spec.redundancy: ...``) or the environment variable the bad value came from.
    """
    if spec is None:
        spec = {}
    _check_object(SPEC_FIELDS, spec, "spec")

    defaults = env_spec(env or {})
    origin = {name: var for var, name in ENV_VARS.items() if name in defaults}
    origin.update({name: f"spec.{name}" for name in spec})
    values: dict[str, Any] = {**defaults, **spec}

    default_plan = PlanConfig()
    rr_label = _rr_label(values["routeReflectorLabel"]) if "routeReflectorLabel" in values else None
    zone_label = values.get("zoneLabel", default_plan.zone_label)
    password = values.get("password")
    sizing = _sizing(spec, values, origin)
    try:
        plan = PlanConfig(
            topology=values.get("topology", default_plan.topology),
            redundancy=values.get("redundancy", default_plan.redundancy),
            sizing=sizing,
            rrs=values.get("routeReflectors", default_plan.rrs),
            per_zone_sizing=values.get("perZoneSizing", default_plan.per_zone_sizing),
            session_budget=values.get("sessionBudget", default_plan.session_budget),
            zone_label=zone_label or None,
            rack_label=values.get("rackLabel", default_plan.rack_label),
            racks=values.get("racks", default_plan.racks),
            spines=values.get("spines", default_plan.spines),
            preferred_label=values.get("preferredNodeLabel", default_plan.preferred_label),
            dedicated_label=values.get("dedicatedNodeLabel", default_plan.dedicated_label),
            incompatible_labels=tuple(values.get("incompatibleNodeLabels", ())),
            cluster_id_base=values.get("clusterIDBase", default_plan.cluster_id_base),
            api_group=api_group,
            max_restart_time=values.get("maxRestartTime", default_plan.max_restart_time),
            password_secret=(
                (password["secretKeyRef"]["name"], password["secretKeyRef"]["key"])
                if password is not None
                else None
            ),
            as_number=values.get("asNumber", default_plan.as_number),
        )
    except ConfigError as exc:  # every field was checked; this is a cross-field rule
        raise ConfigError(f"spec: {exc}") from None
    return OperatorSettings(
        plan=plan,
        session_check=values.get("sessionCheck", DEFAULT_SESSION_CHECK),
        wait_timeout=(
            parse_duration(values["waitTimeout"])
            if "waitTimeout" in values
            else DEFAULT_WAIT_TIMEOUT
        ),
        debounce=parse_duration(values["debounce"]) if "debounce" in values else DEFAULT_DEBOUNCE,
        rr_label=rr_label,
        paused=values.get("paused", False),
        typha=_typha(values.get("typha") or {}),
    )


def _typha(spec: Mapping[str, Any]) -> TyphaSettings:
    default = TyphaSettings()
    return TyphaSettings(
        enabled=spec.get("enabled", default.enabled),
        namespace=spec.get("namespace", default.namespace),
        name=spec.get("name", default.name),
        cool_down=(parse_duration(spec["coolDown"]) if "coolDown" in spec else default.cool_down),
        settle=parse_duration(spec["settle"]) if "settle" in spec else default.settle,
    )


def _sizing(
    spec: Mapping[str, Any], values: Mapping[str, Any], origin: Mapping[str, str]
) -> Sizing:
    if "steps" in spec:
        for linear in ("ratio", "minRouteReflectors", "maxRouteReflectors"):
            if linear in spec:
                raise ConfigError(
                    f"spec.{linear}: cannot be combined with spec.steps "
                    "(choose linear sizing or steps)"
                )
        try:
            return parse_steps(spec["steps"])
        except ConfigError as exc:
            raise ConfigError(f"spec.steps: {exc}") from None
    default = LinearSizing()
    minimum: int = values.get("minRouteReflectors", default.minimum)
    maximum: int = values.get("maxRouteReflectors", default.maximum)
    if maximum < minimum:
        min_src = origin.get("minRouteReflectors", "the default minRouteReflectors")
        max_src = origin.get("maxRouteReflectors", "the default maxRouteReflectors")
        if min_src.startswith("spec.") and not max_src.startswith("spec."):
            # the spec is what the user edits: lead with its field
            raise ConfigError(f"{min_src}: must be <= {max_src} ({maximum})")
        raise ConfigError(f"{max_src}: must be >= {min_src} ({minimum})")
    ratio = float(values["ratio"]) if "ratio" in values else default.ratio
    return LinearSizing(ratio=ratio, minimum=minimum, maximum=maximum)


def _rr_label(text: str) -> tuple[str, str]:
    """``key`` -> (key, "true"); ``key=`` -> (key, ""); ``key=value`` -> (key, value)."""
    key, sep, value = text.partition("=")
    return (key, value) if sep else (key, "true")


# -- one field -------------------------------------------------------------------------


def _check_field(name: str, value: Any, where: str, spec_field: SpecField | None = None) -> None:
    """Raise ConfigError (``where: problem``) unless ``value`` is valid for ``name``
    (a spec field, or the sub-field ``spec_field`` such as ``typha.coolDown``)."""
    if spec_field is None:
        spec_field = SPEC_FIELDS[name]
    kind = spec_field.kind
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: must be an integer, got {_kind(value)}")
        if spec_field.minimum is not None and value < spec_field.minimum:
            raise ConfigError(f"{where}: must be >= {spec_field.minimum}, got {value}")
        if spec_field.maximum is not None and value > spec_field.maximum:
            raise ConfigError(f"{where}: must be <= {spec_field.maximum}, got {value}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, got {_kind(value)}")
    elif kind == "enum":
        if value not in spec_field.choices:
            raise ConfigError(
                f"{where}: must be one of {', '.join(spec_field.choices)}, got {value!r}"
            )
    elif kind == "string":
        _check_string(spec_field, value, where)
        _check_string_extra(name, spec_field, value, where)
    elif kind == "strings":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: must be a list of strings, got {_kind(value)}")
        if spec_field.maximum is not None and len(value) > spec_field.maximum:
            raise ConfigError(f"{where}: at most {spec_field.maximum} items, got {len(value)}")
        for i, item in enumerate(value):
            _check_string(spec_field, item, f"{where}[{i}]")
            _check_label_prefix(item, f"{where}[{i}]")
    elif kind == "object":
        _check_object(spec_field.fields or {}, value, where, f"{name}.")
    else:
        _check_password(value, where)


def _check_object(
    fields: Mapping[str, SpecField], value: Any, where: str, prefix: str = ""
) -> None:
    """Check an object (the spec, or a field such as ``typha`` with ``prefix``
    ``typha.``) field by field; an unknown field is refused, with a hint."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be an object, got {_kind(value)}")
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {where}.{close[0]}?)" if close else ""
            raise ConfigError(f"{where}.{key}: unknown field{hint}")
    for key, item in value.items():
        _check_field(f"{prefix}{key}", item, f"{where}.{key}", fields[key])


def _check_string(spec_field: SpecField, value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, got {_kind(value)}")
    if spec_field.max_length is not None and len(value) > spec_field.max_length:
        raise ConfigError(f"{where}: at most {spec_field.max_length} characters")
    if spec_field.pattern is not None and not re.fullmatch(spec_field.pattern, value):
        raise ConfigError(f"{where}: {value!r} {_HINTS.get(spec_field.pattern, 'is malformed')}")


_HINTS: Final = {
    LABEL_KEY_PATTERN: "is not a label key",
    ZONE_LABEL_PATTERN: 'is not a label key (use "" for no zones)',
    LABEL_SELECTOR_PATTERN: 'is not "key" or "key=value"',
    LABEL_MATCH_PATTERN: 'is not "key", "key=" or "key=value"',
    RATIO_PATTERN: 'is not a decimal in (0, 1], e.g. "0.005"',
    STEPS_PATTERN: 'is not a list of NODES:RRS steps, e.g. "200:3,1000:5"',
    QUAD_PATTERN: "is not a dotted-quad IPv4 address",
    DURATION_PATTERN: 'is not a duration such as "90s", "1m30s" or "250ms"',
    SECRET_NAME_PATTERN: "is not a valid object name (RFC 1123 subdomain)",
    NAMESPACE_PATTERN: "is not a namespace name",
    SECRET_KEY_PATTERN: "is not a Secret key",
}


def _check_string_extra(name: str, spec_field: SpecField, value: str, where: str) -> None:
    if spec_field.pattern == DURATION_PATTERN:
        try:
            seconds = parse_duration(value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        low = spec_field.min_seconds
        if low is not None and (
            seconds < low or (spec_field.exclusive_min_seconds and seconds == low)
        ):
            relation = ">" if spec_field.exclusive_min_seconds else ">="
            raise ConfigError(f"{where}: must be {relation} {low:g}s, got {value!r}")
        high = spec_field.max_seconds
        if high is not None and seconds > high:
            raise ConfigError(f"{where}: must be <= {high:g}s, got {value!r}")
    if name in ("zoneLabel", "rackLabel", "preferredNodeLabel", "dedicatedNodeLabel"):
        _check_label_prefix(value, where)
    if name == "routeReflectorLabel":
        _check_label_prefix(value, where)
        if value.startswith(f"{PREFIX}/"):
            raise ConfigError(
                f"{where}: {value!r} is under {PREFIX}/, whose labels calico-rr owns; "
                "choose another key"
            )


def _check_label_prefix(value: str, where: str) -> None:
    """The DNS prefix of a label key has at most 253 characters (no regex says so)."""
    key = value.partition("=")[0]
    prefix, slash, _ = key.rpartition("/")
    if slash and len(prefix) > 253:
        raise ConfigError(f"{where}: the label key prefix is longer than 253 characters")


def _check_password(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be an object with secretKeyRef, got {_kind(value)}")
    for name in value:
        if name != "secretKeyRef":
            raise ConfigError(f"{where}.{name}: unknown field (expected secretKeyRef)")
    if "secretKeyRef" not in value:
        raise ConfigError(f"{where}.secretKeyRef: required")
    ref = value["secretKeyRef"]
    ref_where = f"{where}.secretKeyRef"
    if not isinstance(ref, Mapping):
        raise ConfigError(f"{ref_where}: must be an object with name and key, got {_kind(ref)}")
    for name in ref:
        if name not in ("name", "key"):
            raise ConfigError(f"{ref_where}.{name}: unknown field (expected name and key)")
    for name, pattern in (("name", SECRET_NAME_PATTERN), ("key", SECRET_KEY_PATTERN)):
        if name not in ref:
            raise ConfigError(f"{ref_where}.{name}: required")
        _check_string(
            SpecField("string", pattern=pattern, max_length=253), ref[name], (f"{ref_where}.{name}")
        )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
