"""Calico's ``calicoctl`` against a test datastore (docs/CALICO.md, issue 13 item 5).

:class:`Ctl` runs the calicoctl that ``calico_rr.adapters.calico_bin.locate()`` built,
either in Kubernetes-datastore mode (it reads ``crd.projectcalico.org/v1`` objects and
the Nodes through a kubeconfig) or in etcdv3 mode (Calico's v3 documents in etcd).
:func:`roundtrip` reads back every BGPPeer, BGPConfiguration and Node through Calico's
client library and sends them through Calico's validation with ``calicoctl replace``.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: What calico-rr writes, in the order the round trip reads and replaces it.
KINDS = ("bgppeers", "bgpconfigurations", "nodes")


@dataclass
class Ctl:
    """``calicoctl`` against one datastore, as its admin."""

    binary: Path
    workdir: Path
    #: ``DATASTORE_TYPE`` and how to reach that datastore
    datastore: dict[str, str]

    @classmethod
    def kubernetes(cls, binary: Path, kubeconfig: Path, workdir: Path) -> Ctl:
        return cls(binary, workdir, {"DATASTORE_TYPE": "kubernetes", "KUBECONFIG": str(kubeconfig)})

    @classmethod
    def etcdv3(cls, binary: Path, env: dict[str, str], workdir: Path) -> Ctl:
        """``env``: ``DATASTORE_TYPE=etcdv3``, ``ETCD_ENDPOINTS`` and the TLS files
        (``EtcdServer.env()``)."""
        assert env.get("DATASTORE_TYPE") == "etcdv3", env
        return cls(binary, workdir, dict(env))

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            # client-go's default of 5 requests/s makes replacing 200 Nodes take 100 s.
            "CALICO_K8SCLIENTQPS": "500",
            **self.datastore,
        }
        return subprocess.run(
            [str(self.binary), *args],
            env=env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def get(self, kind: str) -> list[dict[str, Any]]:
        done = self.run("get", kind, "-o", "yaml")
        assert done.returncode == 0, f"calicoctl get {kind}: {done.stdout}{done.stderr}"
        doc = yaml.safe_load(done.stdout)
        assert isinstance(doc, dict) and doc.get("kind", "").endswith("List"), done.stdout[:500]
        items: list[dict[str, Any]] = doc.get("items") or []
        return items

    def write(self, name: str, docs: list[dict[str, Any]]) -> Path:
        path = self.workdir / name
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return path

    def rejections(self, verb: str, docs: list[dict[str, Any]]) -> list[str]:
        """``calicoctl <verb> -f`` of every document; the objects it refused, with
        its message.  One call for all; on a failure (which stops calicoctl at the
        first bad object) each document again on its own, to name every one."""
        if not docs:
            return []
        done = self.run(verb, "-f", str(self.write(f"{verb}.yaml", docs)))
        past = {"replace": "replaced", "apply": "applied", "create": "created"}[verb]
        if done.returncode == 0 and f"Successfully {past} {len(docs)} " in done.stdout:
            return []
        out = []
        for i, doc in enumerate(docs):
            # The failed call may have written some objects already: without its
            # resourceVersion a replace is unconditional, so those pass again.
            meta = {k: v for k, v in doc["metadata"].items() if k != "resourceVersion"}
            alone = [{**doc, "metadata": meta}]
            one = self.run(verb, "-f", str(self.write(f"{verb}-{i}.yaml", alone)))
            if one.returncode != 0 or f"Successfully {past} 1 " not in one.stdout:
                msg = (one.stdout + one.stderr).strip().replace("\n", " | ")
                out.append(f"{doc['kind']} {doc['metadata']['name']}: {msg}")
        if not out:  # the whole call failed, yet each object alone passes
            out.append(f"calicoctl {verb} of {len(docs)} objects: {done.stdout}{done.stderr}")
        return out


@dataclass
class RoundTrip:
    """What :func:`roundtrip` read (kind -> documents as calicoctl shows them) and
    every object ``calicoctl replace`` refused (empty: all accepted)."""

    objects: dict[str, list[dict[str, Any]]]
    rejections: list[str]
    seconds: float

    def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.objects[kind]}

    def summary(self) -> str:
        counts = ", ".join(f"{len(self.objects[k])} {k}" for k in KINDS)
        return (
            f"calicoctl round trip: {counts}, {len(self.rejections)} rejected, {self.seconds:.1f}s"
        )


def roundtrip(ctl: Ctl) -> RoundTrip:
    """``calicoctl get bgppeers|bgpconfigurations|nodes -o yaml``, then ``calicoctl
    replace -f`` of all those documents in one call (each kind's documents as read,
    resourceVersion included).  The datastore must be quiet meanwhile: an operator
    writing between the get and the replace makes the replace conflict."""
    start = time.monotonic()
    objects = {kind: ctl.get(kind) for kind in KINDS}
    rejected = ctl.rejections("replace", [o for kind in KINDS for o in objects[kind]])
    return RoundTrip(objects, rejected, time.monotonic() - start)
