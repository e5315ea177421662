"""Calico's version as an input (issue 13 item 6): core.bgp.calico_version and the
verifier's reading of ``reversePeering`` per release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from calico_rr.cli import app
from calico_rr.core.bgp.calico_version import (
    REVERSE_PEERING_SINCE,
    CalicoVersion,
    parse_calico_version,
)
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.errors import InputError
from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV4, ReversePeering


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("v3.28.5", CalicoVersion(3, 28, 5)),
        ("3.30", CalicoVersion(3, 30, 0)),
        ("v3.28.5-ga0db560f0520", CalicoVersion(3, 28, 5)),
        (" v3.31.1 ", CalicoVersion(3, 31, 1)),
    ],
)
def test_parse(text: str, want: CalicoVersion) -> None:
    assert parse_calico_version(text) == want


@pytest.mark.parametrize("text", ["", "latest", "v2.6.12", "3", "v3.x", "3.28.5.1", "1" * 200])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(InputError, match="--calico-version"):
        parse_calico_version(text)


def test_reverse_peering_boundary() -> None:
    assert CalicoVersion(3, 30, 3) == REVERSE_PEERING_SINCE
    assert not CalicoVersion(3, 30, 2).honours_reverse_peering()
    assert CalicoVersion(3, 30, 3).honours_reverse_peering()
    assert CalicoVersion(3, 31, 0).honours_reverse_peering()
    assert str(CalicoVersion(3, 28, 5)) == "v3.28.5"


def _node(name: str, ip: str, rr: bool) -> dict[str, Any]:
    ann = {ANN_IPV4: f"{ip}/24", **({ANN_CLUSTER_ID: f"9.9.9.{ip[-1]}"} if rr else {})}
    labels = {"rr": "true"} if rr else {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": ann},
    }


def _docs(reverse: str | None = "Manual") -> list[dict[str, Any]]:
    spec: dict[str, Any] = {"nodeSelector": "!has(rr)", "peerSelector": "has(rr)"}
    if reverse is not None:
        spec["reversePeering"] = reverse
    return [
        _node("rr1", "10.0.0.1", True),
        _node("rr2", "10.0.0.4", True),
        _node("a", "10.0.0.2", False),
        _node("b", "10.0.0.3", False),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "to-rr"},
            "spec": spec,
        },
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "rrs"},
            "spec": {"nodeSelector": "has(rr)", "peerSelector": "has(rr)"},
        },
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": False},
        },
    ]


def test_manual_kept_by_new_releases_and_by_default() -> None:
    for calico in (None, CalicoVersion(3, 30, 3), CalicoVersion(3, 32, 0)):
        parsed = parse_resources(_docs(), calico=calico)
        assert {p.name: p for p in parsed.state.peers}[
            "to-rr"
        ].reverse_peering is ReversePeering.MANUAL
        assert not any("reversePeering" in n for n in parsed.notes)


def test_manual_ignored_by_old_releases_with_a_note() -> None:
    parsed = parse_resources(_docs(), calico=CalicoVersion(3, 28, 5))
    assert {p.name: p for p in parsed.state.peers}["to-rr"].reverse_peering is ReversePeering.AUTO
    assert parsed.notes == (
        "BGPPeer to-rr: reversePeering Manual is ignored by Calico v3.28.5 "
        "(the field exists from v3.30.3): the selected nodes peer back",
    )
    # Auto needs no note in any release
    assert parse_resources(_docs("Auto"), calico=CalicoVersion(3, 28, 5)).notes == ()


def _verify(tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "res.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": _docs()}))
    res = CliRunner().invoke(app, ["verify", "--resources", str(path), "--json", *extra])
    return res.exit_code, json.loads(res.stdout) if res.stdout.strip() else {}


def test_cli_verify_reads_as_the_given_release(tmp_path: Path) -> None:
    code, out = _verify(tmp_path)
    assert code == 1 and out["reachable"] is False  # newest Calico: the clients are cut off
    code, out = _verify(tmp_path, "--calico-version", "v3.28.5")
    assert code == 0 and out["reachable"] is True, out
    assert any("reversePeering Manual is ignored" in n for n in out["notes"])


def test_cli_verify_says_the_version_needs_resources() -> None:
    args = ["verify", "--nodes", "20", "--calico-version", "v3.28.5", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    notes = json.loads(res.stdout)["notes"]
    assert "--calico-version v3.28.5 applies to --resources only: ignored" in notes


def test_cli_verify_bad_version(tmp_path: Path) -> None:
    path = tmp_path / "res.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": _docs()}))
    res = CliRunner().invoke(app, ["verify", "--resources", str(path), "--calico-version", "x"])
    assert res.exit_code == 2
    assert "--calico-version" in res.output


def _cluster_info(version: object, group: str = "crd.projectcalico.org/v1") -> dict[str, Any]:
    """What calico-node writes: its release in ClusterInformation default."""
    return {
        "apiVersion": group,
        "kind": "ClusterInformation",
        "metadata": {"name": "default"},
        "spec": {"calicoVersion": version, "clusterType": "k8s,bgp,kubeadm,kdd"},
    }


@pytest.mark.parametrize("group", ["crd.projectcalico.org/v1", "projectcalico.org/v3"])
def test_the_dump_says_which_release_reads_it(group: str) -> None:
    """No --calico-version: the release ClusterInformation default records is used."""
    parsed = parse_resources([*_docs(), _cluster_info("v3.28.1", group)])
    assert {p.name: p for p in parsed.state.peers}["to-rr"].reverse_peering is ReversePeering.AUTO
    assert (
        parsed.notes[0] == "read as Calico v3.28.1, the release ClusterInformation default records"
    )
    assert not any("ignored ClusterInformation" in n for n in parsed.notes)
    # a release that honours the field reads it
    newer = parse_resources([*_docs(), _cluster_info("v3.31.0", group)])
    assert {p.name: p for p in newer.state.peers}["to-rr"].reverse_peering is ReversePeering.MANUAL


def test_the_release_asked_for_wins_over_the_dump() -> None:
    parsed = parse_resources([*_docs(), _cluster_info("v3.28.1")], calico=CalicoVersion(3, 31, 0))
    assert {p.name: p for p in parsed.state.peers}["to-rr"].reverse_peering is ReversePeering.MANUAL
    assert parsed.notes == (
        "read as Calico v3.31.0 as asked; ClusterInformation default records v3.28.1",
    )
    same = parse_resources([*_docs(), _cluster_info("v3.28.5")], calico=CalicoVersion(3, 28, 5))
    assert not any("ClusterInformation" in n for n in same.notes)


@pytest.mark.parametrize("version", ["master", "v2.6.0", 3.28, "", None])
def test_an_unreadable_recorded_release_is_noted_not_fatal(version: object) -> None:
    parsed = parse_resources([*_docs(), _cluster_info(version)])
    # read as the newest Calico: Manual kept
    assert {p.name: p for p in parsed.state.peers}["to-rr"].reverse_peering is ReversePeering.MANUAL
    notes = [n for n in parsed.notes if "ClusterInformation" in n]
    if isinstance(version, str) and version:
        assert notes == [
            f"ClusterInformation default: calicoVersion {version!r} is not a Calico v3 release; "
            "read as the newest Calico"
        ]
    else:
        assert notes == []


def test_cli_verify_reads_the_dump_as_its_own_release(tmp_path: Path) -> None:
    path = tmp_path / "res.json"
    items = [*_docs(), _cluster_info("v3.28.1")]
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    res = CliRunner().invoke(app, ["verify", "--resources", str(path), "--json"])
    out = json.loads(res.stdout)
    assert res.exit_code == 0 and out["reachable"] is True, out  # v3.28 peers back
    assert "read as Calico v3.28.1, the release ClusterInformation default records" in out["notes"]
