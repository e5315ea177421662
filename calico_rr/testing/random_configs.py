"""Random small Calico BGP configurations (for checking the verifier against BIRD).

Deterministic for a seed.  Each configuration is a list of Calico resource
documents (Kubernetes Nodes with the Calico annotations, BGPPeers, maybe a
BGPConfiguration) over a random subset of the given nodes: random RR cluster IDs
from a small pool (so some clients share all their reflectors' ID, the lab A
trap), the mesh on or off, and a few BGPPeers with random label selectors.  Many
are broken (some node pairs never learn each other's block); that is the point.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV4

__all__ = ["random_config"]

_IDS = ("9.9.9.1", "9.9.9.2", "9.9.9.3")
_SELECTORS = (
    "all()",
    "has(rr)",
    "!has(rr)",
    "role == 'a'",
    "role != 'a'",
    "role in {'a', 'b'}",
    "rack == 'r1'",
    "has(rr) && rack == 'r1'",
    "has(rr) || role == 'c'",
)


def random_config(
    seed: int, nodes: Sequence[tuple[str, str]], *, min_nodes: int = 4, max_nodes: int = 9
) -> list[dict[str, Any]]:
    """Resources for a random subset of ``nodes`` ((name, ip) pairs)."""
    rng = random.Random(seed)
    k = rng.randint(min(min_nodes, len(nodes)), min(max_nodes, len(nodes)))
    chosen = sorted(rng.sample(list(nodes), k))
    docs: list[dict[str, Any]] = []
    for name, ip in chosen:
        labels = {
            "kubernetes.io/hostname": name,
            "role": rng.choice("abc"),
            "rack": rng.choice(("r1", "r2")),
        }
        annotations = {ANN_IPV4: f"{ip}/16"}
        if rng.random() < 0.4:
            annotations[ANN_CLUSTER_ID] = rng.choice(_IDS)
            labels["rr"] = "true"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": annotations},
            }
        )
    mesh = rng.random() < 0.3
    docs.append(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": mesh},
        }
    )
    for i in range(rng.randint(0 if mesh else 1, 4)):
        spec: dict[str, Any] = {"peerSelector": rng.choice(_SELECTORS)}
        if rng.random() < 0.2:
            spec["node"] = rng.choice(chosen)[0]
        else:
            spec["nodeSelector"] = rng.choice(_SELECTORS)
        docs.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "BGPPeer",
                "metadata": {"name": f"random-{i}"},
                "spec": spec,
            }
        )
    return docs
