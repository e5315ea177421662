"""The operator against a real API server at scale: API cost, latency, memory.

Run::

    .venv/bin/python bench/operator_api.py [--nodes 5000] [--zones 3] [--joins 10]
        [--burst 1000] [--json out.json] [--strict]

What it does (every number about API traffic comes from the API server's audit
log, user ``calico-rr``, never from the operator's own counters):

1. starts etcd + kube-apiserver with auditing (``calico_rr.sandbox``), installs
   Calico's CRDs, ours and the operator's RBAC, creates ``--nodes`` Ready nodes
   (8 threads, one admin client) and the ``RouteReflectorConfig`` ``default``
   (topology auto, ``waitTimeout: 2s``);
2. starts ``calico-rr run`` as a **subprocess** (so its memory can be measured:
   VmRSS sampled all along, VmHWM at the end) and waits for convergence (status
   ``Steady``, mesh off);
3. marks the audit log (everything after this is "after the initial sync"),
   then joins ``--joins`` nodes one at a time.  Each join waits until the
   operator is quiet, creates the node and marks it Ready, then waits until a
   reconcile pass has run (``calico_rr_reconciles_total`` moved) and nothing
   moved for a quiet period.  Its writes are the operator's
   create/update/patch/delete requests in that window, Lease renewals left out
   (they are periodic, every leaseDuration/5, not caused by the join; they are
   reported apart).  Its latency is the ``stageTimestamp`` of the operator's
   last write to the node minus the ``stageTimestamp`` of the admin's create;
   a join that needs no write (a client in the ``single`` topology) has no such
   write, and its latency is the time until the reconcile pass was seen to end
   (``/metrics`` polled every 50 ms; an upper bound);
4. creates ``--burst`` nodes as fast as possible and counts the reconcile passes
   (``calico_rr_reconciles_total`` before and after) and the writes they cost;
5. counts the operator's LIST and WATCH requests after the initial sync.

The result is printed as JSON on stdout (and written to ``--json``), a summary
goes to stderr.  The exit status is 1 when a target is missed: more than 3
writes for one join, any LIST after the initial sync, a peak RSS of 200 MB or
more, or a burst not coalesced (reconcile passes > burst/5).  A join slower than
1 s is a warning (timing on a shared machine), an error with ``--strict``.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import (
    CONFIG_PATH,
    WRITE_VERBS,
    create_nodes,
    describe,
    is_lease,
    is_write,
)
from calico_rr.core.operator.settings import CONFIG_NAME
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import Node
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.controlplane import OPERATOR_USER, audit_request
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared module
import operator_common as common
from operator_common import (
    BURST_QUIET,
    CREATE_THREADS,
    POLL,
    QUIET,
    OperatorProcess,
    Progress,
    machine,
)

# -- the audit log, read incrementally ---------------------------------------------------


class AuditTail:
    """The API server's audit log, read incrementally (only the new bytes on each
    :meth:`poll`): ``ControlPlane.audit_events`` re-reads the whole file, which at
    5000 nodes is tens of MB and would steal CPU from the operator being timed.
    Same selection as ``audit_events``: one event per request (``ResponseComplete``,
    or ``ResponseStarted`` for watches), de-duplicated by ``auditID``, in log order.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = b""
        self._seen: set[str] = set()

    def poll(self) -> int:
        """Read what was appended; returns the number of events now known."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return len(self.events)
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            event = audit_request(line)
            if event is None:
                continue
            audit_id = str(event.get("auditID"))
            if audit_id in self._seen:
                continue
            self._seen.add(audit_id)
            self.events.append(event)
        return len(self.events)

    def since(self, mark: int, user: str | None = OPERATOR_USER) -> list[dict[str, Any]]:
        self.poll()
        return [e for e in self.events[mark:] if user is None or _user(e) == user]


def _user(event: dict[str, Any]) -> str:
    return str((event.get("user") or {}).get("username") or "")


def _ref(event: dict[str, Any]) -> dict[str, Any]:
    ref = event.get("objectRef")
    return ref if isinstance(ref, dict) else {}


def _ts(event: dict[str, Any], key: str = "stageTimestamp") -> float:
    return datetime.fromisoformat(str(event[key]).replace("Z", "+00:00")).timestamp()


def verbs(events: Sequence[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(str(e.get("verb")) for e in events).items()))


# -- the operator process -----------------------------------------------------------------


# -- the benchmark ------------------------------------------------------------------------


@dataclass
class Bench:
    cp: ControlPlane
    admin: KubeClient
    op: OperatorProcess
    audit: AuditTail
    timeout: float
    progress: Progress

    def status(self) -> dict[str, Any]:
        cfg = self.admin.get(f"{CONFIG_PATH}/{CONFIG_NAME}") or {}
        return dict(cfg.get("status") or {})

    def reconciles(self) -> float:
        return self.op.counter("calico_rr_reconciles_total")

    def create(self, nodes: Sequence[Node]) -> None:
        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            for _ in pool.map(lambda n: create_nodes(self.admin, [n]), nodes):
                pass

    def wait_converged(self) -> float:
        """Seconds from the operator's start until status is Steady with the mesh off."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self.op.check_alive()
            st = self.status()
            if st.get("phase") == "Steady" and st.get("meshEnabled") is False:
                return time.monotonic() - self.op.started
            time.sleep(0.1)
        raise TimeoutError(f"not converged in {self.timeout:.0f}s: {self.status()}")

    def wait_settled(self, after: float | None, quiet: float) -> tuple[float | None, float]:
        """Wait until (when ``after`` is given) the reconcile counter has passed
        ``after`` and then neither an operator write nor a reconcile pass happened
        for ``quiet`` seconds, with status Steady.  Returns (wall time the counter
        was first seen past ``after``, wall time of the last change)."""
        deadline = time.monotonic() + self.timeout
        count = self.reconciles()
        known = self.audit.poll()
        first: float | None = None
        last_change = time.time()
        if after is not None and count > after:
            first = last_change
        while time.monotonic() < deadline:
            time.sleep(POLL)
            now = time.time()
            c = self.reconciles()
            n = self.audit.poll()
            if c != count:
                count, last_change = c, now
                if first is None and after is not None and c > after:
                    first = now
            if n != known:
                if any(
                    is_write(e) and _user(e) == OPERATOR_USER for e in self.audit.events[known:]
                ):
                    last_change = now
                known = n
            if (after is None or first is not None) and now - last_change >= quiet:
                if self.status().get("phase") == "Steady":
                    return first, last_change
                last_change = now  # not Steady yet: keep waiting
        raise TimeoutError(f"operator not settled in {self.timeout:.0f}s: {self.status()}")

    def join(self, node: Node) -> dict[str, Any]:
        self.wait_settled(None, QUIET)
        before = self.reconciles()
        mark = self.audit.poll()
        t0 = time.time()
        create_nodes(self.admin, [node])
        first, _ = self.wait_settled(before, QUIET)
        window = self.audit.since(mark, user=None)
        ops = [e for e in window if _user(e) == OPERATOR_USER]
        writes = [e for e in ops if is_write(e)]
        created = [
            e
            for e in window
            if e.get("verb") == "create"
            and _ref(e).get("resource") == "nodes"
            and _ref(e).get("name") in (node.name, None)
            and _user(e) != OPERATOR_USER
        ]
        start = _ts(created[0]) if created else t0
        node_writes = [
            e
            for e in writes
            if _ref(e).get("resource") == "nodes" and _ref(e).get("name") == node.name
        ]
        result: dict[str, Any] = {
            "node": node.name,
            "writes": len(writes),
            "write_list": [describe(e) for e in writes],
            "lease_renewals": sum(1 for e in ops if is_lease(e) and e.get("verb") in WRITE_VERBS),
            "other_requests": verbs([e for e in ops if not is_write(e) and not is_lease(e)]),
            "start": "audit: admin create" if created else "client clock before the create",
        }
        if node_writes:
            result["latency_s"] = round(max(_ts(e) for e in node_writes) - start, 3)
            result["latency_source"] = "audit: operator's last write to the node - admin create"
        else:
            result["latency_s"] = round((first or time.time()) - t0, 3)
            result["latency_source"] = "no write needed: reconcile seen ending (/metrics, 50 ms)"
        if writes:
            result["last_write_s"] = round(max(_ts(e) for e in writes) - start, 3)
        return result

    def burst(self, nodes: Sequence[Node]) -> dict[str, Any]:
        self.wait_settled(None, QUIET)
        r0 = self.reconciles()
        w0 = self.op.counter("calico_rr_writes_total")
        mark = self.audit.poll()
        t0 = time.time()
        self.create(nodes)
        t_created = time.time()
        r_created = self.reconciles()
        _, settled = self.wait_settled(r_created, BURST_QUIET)
        r1 = self.reconciles()
        w1 = self.op.counter("calico_rr_writes_total")
        window = self.audit.since(mark, user=None)
        ops = [e for e in window if _user(e) == OPERATOR_USER]
        writes = [e for e in ops if is_write(e)]
        creates = [e for e in window if e.get("verb") == "create" and _user(e) != OPERATOR_USER]
        start = min((_ts(e) for e in creates), default=t0)
        last_write = max((_ts(e) for e in writes), default=None)
        kinds = Counter(
            _ref(e).get("resource", "")
            + (f"/{_ref(e)['subresource']}" if _ref(e).get("subresource") else "")
            for e in writes
        )
        return {
            "nodes": len(nodes),
            "create_seconds": round(t_created - t0, 2),
            "reconciles": int(r1 - r0),
            "reconciles_after_last_create": int(r1 - r_created),
            "writes": len(writes),
            "writes_by_resource": dict(sorted(kinds.items())),
            "writes_metric": int(w1 - w0),
            "seconds_first_create_to_last_write": (
                round(last_write - start, 2) if last_write is not None else None
            ),
            "seconds_last_create_to_last_write": (
                round(last_write - t_created, 2) if last_write is not None else None
            ),
            "seconds_to_settle": round(settled - t0, 2),
        }


def run_bench(
    *,
    nodes: int = 5000,
    zones: int = 3,
    joins: int = 10,
    burst: int = 1000,
    topology: str = "auto",
    timeout: float = 900.0,
    progress: Progress = lambda _line: None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "nodes": nodes,
        "zones": zones,
        "joins": joins,
        "burst": burst,
        "topology_requested": topology,
        "machine": machine(),
    }
    t_begin = time.monotonic()
    cluster = synthetic_cluster(nodes + joins + burst, zones=zones)
    progress("starting kube-apiserver + etcd (audit log on)")
    with ControlPlane(audit=True) as cp:
        apply_crds(cp, calico_crds())
        install_operator_rbac(cp)
        admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
        op = OperatorProcess(
            ("--kubeconfig", str(cp.operator_kubeconfig), "--namespace", "calico-rr"),
            cp.directory / "operator.log",
        )
        bench = Bench(cp, admin, op, AuditTail(cp.audit_log), timeout, progress)
        progress(f"creating {nodes} nodes in {zones} zones ({CREATE_THREADS} threads)")
        t = time.monotonic()
        bench.create(cluster[:nodes])
        result["seconds_create_nodes"] = round(time.monotonic() - t, 1)
        apply_documents(
            cp,
            [
                {
                    "apiVersion": "calico-rr.io/v1alpha1",
                    "kind": "RouteReflectorConfig",
                    "metadata": {"name": CONFIG_NAME},
                    "spec": {"topology": topology, "waitTimeout": "2s"},
                }
            ],
        )
        progress("starting the operator: " + " ".join(op.command()))
        op.start()
        try:
            _measure(bench, result, cluster, nodes, joins, burst)
            result["memory"] = op.memory()
        except BaseException:
            sys.stderr.write(f"--- operator log (tail) ---\n{op.log_tail()}\n")
            raise
        finally:
            op.stop()
            admin.close()
    result["seconds_total"] = round(time.monotonic() - t_begin, 1)
    result["targets"] = targets(result)
    return result


def _measure(
    bench: Bench,
    result: dict[str, Any],
    cluster: Sequence[Node],
    nodes: int,
    joins: int,
    burst: int,
) -> None:
    audit = bench.audit
    common.converge(bench, result)
    sync_mark = audit.poll()
    sync_ops = audit.since(0)
    sync = {"requests_by_verb": verbs(sync_ops), "writes": sum(1 for e in sync_ops if is_write(e))}
    common.initial_sync(bench, result, bench.status(), sync)
    common.joins_and_burst(bench, result, cluster[nodes:], joins, burst)
    after = audit.since(sync_mark)
    common.final_status(result, bench.status())
    result["after_sync"] = {
        "requests_by_verb": verbs(after),
        "lists": sum(1 for e in after if e.get("verb") == "list"),
        "watches": sum(1 for e in after if e.get("verb") == "watch"),
        "lease_writes": sum(1 for e in after if is_lease(e) and e.get("verb") in WRITE_VERBS),
    }
    result["operator_api_requests_total"] = len(audit.since(0))
    result["reconcile_duration"] = common.reconcile_duration(bench.op)


def targets(result: dict[str, Any]) -> list[common.Target]:
    """Each target: name, value, limit, ok, and whether missing it fails the run."""
    lists = (result.get("after_sync") or {}).get("lists", 0)
    return [
        *common.join_targets(result, "writes per join (max)"),
        common.target("LISTs after the initial sync", lists, "0", lists == 0),
        *common.resource_targets(result),
    ]


def summary(result: dict[str, Any]) -> str:
    a = result.get("after_sync") or {}
    return common.summary(
        result,
        f"operator_api: {result['nodes']} nodes, {result['zones']} zones",
        "writes",
        f"{a.get('lists')} LIST, {a.get('watches')} WATCH",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return common.main(__file__, __doc__, run_bench, targets, summary, argv)


if __name__ == "__main__":
    sys.exit(main())
