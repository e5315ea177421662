import pytest

from calico_rr.core.planning.config import (
    LinearSizing,
    PlanConfig,
    Step,
    SteppingSizing,
    parse_steps,
)
from calico_rr.core.planning.sizing import interleave, rr_count, zone_slots
from calico_rr.errors import ConfigError


@pytest.mark.parametrize(("nodes", "want"), [(1, 3), (200, 3), (1000, 5), (5000, 25), (9000, 25)])
def test_linear_matches_domain_examples(nodes: int, want: int) -> None:
    assert rr_count(nodes, LinearSizing()) == want


def test_linear_clamps_to_min_and_max() -> None:
    assert rr_count(10_000, LinearSizing(ratio=0.01, minimum=2, maximum=7)) == 7
    assert rr_count(1, LinearSizing(ratio=0.01, minimum=2, maximum=7)) == 2


def test_stepping() -> None:
    s = parse_steps("200:3, 1000:5,5000:25")
    assert s == SteppingSizing((Step(200, 3), Step(1000, 5), Step(5000, 25)))
    assert [rr_count(n, s) for n in (1, 200, 201, 1000, 4999, 6000)] == [3, 3, 5, 5, 25, 25]


@pytest.mark.parametrize("bad", ["200", "a:3", "200:3,100:5", "200:0", ""])
def test_stepping_rejects_bad_steps(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_steps(bad)


def test_linear_config_validation() -> None:
    with pytest.raises(ConfigError, match="ratio"):
        PlanConfig(sizing=LinearSizing(ratio=0))
    with pytest.raises(ConfigError, match="maximum"):
        PlanConfig(sizing=LinearSizing(minimum=5, maximum=3))


def test_zone_slots_even_split_and_interleave() -> None:
    cfg = PlanConfig()
    zones = zone_slots(6, {"a": 100, "b": 100, "c": 100}, {"a": 50, "b": 50, "c": 50}, cfg)
    assert zones == ["a", "b", "c", "a", "b", "c"]


def test_zone_slots_spill_to_next_zone() -> None:
    cfg = PlanConfig()
    # zone b has a single eligible node: its second RR spills to c.
    zones = zone_slots(6, {"a": 100, "b": 100, "c": 100}, {"a": 50, "b": 1, "c": 50}, cfg)
    assert sorted(zones) == ["a", "a", "b", "c", "c", "c"]
    assert zones.count("b") == 1


def test_zone_slots_clamped_to_eligible() -> None:
    cfg = PlanConfig()
    zones = zone_slots(9, {"a": 10, "b": 10}, {"a": 2, "b": 1}, cfg)
    assert len(zones) == 3


def test_zone_slots_per_zone_sizing() -> None:
    cfg = PlanConfig(per_zone_sizing=True, sizing=LinearSizing(ratio=0.01, minimum=1))
    zones = zone_slots(None, {"a": 500, "b": 100}, {"a": 500, "b": 100}, cfg)
    assert zones.count("a") == 5 and zones.count("b") == 1


def test_interleave() -> None:
    assert interleave({"a": 2, "b": 1, "c": 2}, ["a", "b", "c"]) == ["a", "b", "c", "a", "c"]
