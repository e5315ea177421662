from calico_rr.core.planning.candidates import (
    SlotRequest,
    fill_slots,
    healthy,
    ineligibility,
    label_matches,
)
from calico_rr.core.planning.config import SLOT_LABEL, PlanConfig
from calico_rr.model import Node, Taint

READY = {"Ready": "True"}


def node(name: str, **kw: object) -> Node:
    base: dict[str, object] = {"ip": "10.0.0.1", "conditions": READY}
    base.update(kw)
    return Node(name=name, **base)  # type: ignore[arg-type]


def test_label_match_forms() -> None:
    labels = {"a": "1", "b": ""}
    assert label_matches(labels, "a=1")
    assert not label_matches(labels, "a=2")
    assert label_matches(labels, "b=")
    assert not label_matches(labels, "a=")
    assert label_matches(labels, "a")
    assert not label_matches(labels, "c")


def test_eligibility_reasons() -> None:
    cfg = PlanConfig(incompatible_labels=("gpu=true", "edge"))
    assert ineligibility(node("ok"), cfg) is None
    assert ineligibility(node("x", ip=None), cfg) == "no BGP address"
    assert ineligibility(node("x", conditions={"Ready": "False"}), cfg) == "not Ready"
    assert ineligibility(node("x", unschedulable=True), cfg) == "cordoned"
    assert ineligibility(node("x", deleting=True), cfg) == "being deleted"
    assert ineligibility(node("x", conditions={"Ready": "True", "DiskPressure": "True"}), cfg)
    unreachable = Taint("node.kubernetes.io/unreachable", "NoExecute")
    assert ineligibility(node("x", taints=(unreachable,)), cfg) == (
        "taint node.kubernetes.io/unreachable"
    )
    uninit = Taint("node.cloudprovider.kubernetes.io/uninitialized", "NoSchedule")
    assert ineligibility(node("x", taints=(uninit,)), cfg)
    assert ineligibility(node("x", labels={"gpu": "true"}), cfg) == "incompatible label gpu=true"
    assert ineligibility(node("x", labels={"gpu": "false"}), cfg) is None
    assert ineligibility(node("x", labels={"edge": ""}), cfg) == "incompatible label edge"
    # a user taint unrelated to health does not disqualify
    assert ineligibility(node("x", taints=(Taint("team", "NoSchedule"),)), cfg) is None
    assert not healthy(node("x", taints=(unreachable,)))


def test_dedicated_label() -> None:
    cfg = PlanConfig(dedicated_label="rr=yes")
    assert ineligibility(node("x"), cfg) is not None
    assert ineligibility(node("x", labels={"rr": "yes"}), cfg) is None


def _fill(nodes: list[Node], reqs: list[SlotRequest], cfg: PlanConfig) -> dict[str, str]:
    zone_of = {n.name: n.labels.get("z") for n in nodes}
    zones = sorted({z for z in zone_of.values() if z})
    got, _ = fill_slots(reqs, nodes, zone_of=zone_of, rack_of=None, config=cfg, zone_order=zones)
    return got


def test_fill_prefers_older_then_preferred() -> None:
    nodes = [node("a", created=30.0), node("b", created=10.0), node("c", created=20.0)]
    assert _fill(nodes, [SlotRequest("r0", None)], PlanConfig()) == {"r0": "b"}
    nodes.append(node("d", created=99.0, labels={"fast": "1"}))
    got = _fill(nodes, [SlotRequest("r0", None)], PlanConfig(preferred_label="fast"))
    assert got == {"r0": "d"}


def test_fill_keeps_current_holder_even_if_younger() -> None:
    nodes = [node("old", created=1.0), node("young", created=50.0, labels={SLOT_LABEL: "r0"})]
    assert _fill(nodes, [SlotRequest("r0", None)], PlanConfig()) == {"r0": "young"}


def test_fill_duplicate_claim_goes_to_oldest() -> None:
    nodes = [
        node("n1", created=5.0, labels={SLOT_LABEL: "r0"}),
        node("n2", created=1.0, labels={SLOT_LABEL: "r0"}),
    ]
    assert _fill(nodes, [SlotRequest("r0", None)], PlanConfig()) == {"r0": "n2"}


def test_fill_zone_then_spill() -> None:
    nodes = [node("a1", labels={"z": "a"}), node("b1", labels={"z": "b"})]
    got = _fill(nodes, [SlotRequest("r0", "b"), SlotRequest("r1", "b")], PlanConfig())
    assert got == {"r0": "b1", "r1": "a1"}


def test_fill_is_deterministic() -> None:
    nodes = [node(f"n{i}", created=float(i % 3)) for i in range(20)]
    reqs = [SlotRequest(f"r{i}", None) for i in range(5)]
    assert _fill(nodes, reqs, PlanConfig()) == _fill(list(reversed(nodes)), reqs, PlanConfig())
