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

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

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
from calico_rr.sandbox.controlplane import OPERATOR_USER, audit_request, free_port
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac

#: Targets (docs/PERFORMANCE.md, "Operator at 5000 nodes").
MAX_WRITES_PER_JOIN = 3
MAX_JOIN_SECONDS = 1.0
MAX_RSS_MB = 200.0
#: A burst must be coalesced into fewer passes than this fraction of its size.
MAX_BURST_PASSES_FRACTION = 0.2

CREATE_THREADS = 8
POLL = 0.05
#: Nothing (no operator write, no reconcile pass) for this long = the operator is
#: idle.  Longer than debounce (0.2 s) + a reconcile pass at 5000 nodes, so the
#: follow-up pass after a write always falls inside it.
QUIET = 1.5
BURST_QUIET = 2.5

Progress = Callable[[str], None]


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


def _status_kb(pid: int, key: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


@dataclass
class OperatorProcess:
    """``calico-rr run`` in a subprocess, with an RSS sampler and /metrics reader."""

    kubeconfig: Path
    log_file: Path
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    rss_peak_kb: int = 0
    rss_samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    def command(self) -> list[str]:
        exe = Path(sys.executable).parent / "calico-rr"
        head = [str(exe)] if exe.exists() else [sys.executable, "-m", "calico_rr.cli"]
        return [
            *head,
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            "calico-rr",
            "--port",
            str(self.port),
            "--identity",
            "bench",
        ]

    def start(self) -> None:
        log = self.log_file.open("wb")
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._sampler = threading.Thread(target=self._sample, name="rss", daemon=True)
        self._sampler.start()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = _status_kb(self.pid, "VmRSS")
            if rss is not None:
                self.rss_peak_kb = max(self.rss_peak_kb, rss)
                self.rss_samples += 1
            self._stop.wait(0.1)

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(
                f"operator exited with status {self.popen.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def memory(self) -> dict[str, float]:
        rss = _status_kb(self.pid, "VmRSS") or 0
        hwm = _status_kb(self.pid, "VmHWM") or 0
        peak = max(self.rss_peak_kb, hwm)
        return {
            "rss_mb": round(rss / 1024, 1),
            "rss_peak_sampled_mb": round(self.rss_peak_kb / 1024, 1),
            "vm_hwm_mb": round(hwm / 1024, 1),
            "rss_peak_mb": round(peak / 1024, 1),
            "samples": self.rss_samples,
        }

    def metrics(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """The /metrics samples: name -> {sorted label pairs: value}."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out

    def counter(self, name: str, **labels: str) -> float:
        """Sum of ``name`` over the samples matching ``labels`` (0 when absent)."""
        try:
            samples = self.metrics().get(name, {})
        except (OSError, urllib.error.URLError):
            self.check_alive()
            return 0.0
        return sum(
            v for k, v in samples.items() if all(dict(k).get(a) == b for a, b in labels.items())
        )

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        self._stop.set()
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


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
        op = OperatorProcess(cp.operator_kubeconfig, cp.directory / "operator.log")
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
    op, audit, progress = bench.op, bench.audit, bench.progress
    while not op.ready():
        op.check_alive()
        if time.monotonic() - op.started > bench.timeout:
            raise TimeoutError("operator never ready")
        time.sleep(0.05)
    result["seconds_to_ready"] = round(time.monotonic() - op.started, 2)
    progress(f"operator ready (caches synced) after {result['seconds_to_ready']}s")
    result["seconds_to_converge"] = round(bench.wait_converged(), 2)
    bench.wait_settled(None, QUIET)
    sync_mark = audit.poll()
    sync_ops = audit.since(0)
    st = bench.status()
    result["topology"] = st.get("topology")
    result["route_reflectors"] = st.get("routeReflectors")
    result["bgppeers"] = st.get("bgpPeers")
    result["initial_sync"] = {
        "requests_by_verb": verbs(sync_ops),
        "writes": sum(1 for e in sync_ops if is_write(e)),
        "reconcile_duration": reconcile_duration(op),
        "memory": op.memory(),
    }
    progress(
        f"converged in {result['seconds_to_converge']}s: topology {result['topology']}, "
        f"{result['route_reflectors']} RRs, {result['initial_sync']['writes']} writes"
    )

    join_results = []
    for i in range(joins):
        r = bench.join(cluster[nodes + i])
        join_results.append(r)
        progress(f"join {i + 1}/{joins} {r['node']}: {r['writes']} write(s), {r['latency_s']}s")
    writes = [r["writes"] for r in join_results]
    latencies = [r["latency_s"] for r in join_results]
    result["join"] = {
        "each": join_results,
        "writes_max": max(writes, default=0),
        "writes_median": statistics.median(writes) if writes else 0,
        "latency_s_max": max(latencies, default=0.0),
        "latency_s_median": round(statistics.median(latencies), 3) if latencies else 0.0,
    }

    if burst:
        progress(f"burst: creating {burst} nodes at once")
        result["burst_result"] = bench.burst(cluster[nodes + joins : nodes + joins + burst])
        b = result["burst_result"]
        progress(
            f"burst of {burst}: {b['reconciles']} reconcile passes, {b['writes']} writes, "
            f"settled {b['seconds_to_settle']}s after the first create"
        )

    after = audit.since(sync_mark)
    st = bench.status()
    result["final_status"] = {
        k: st.get(k) for k in ("phase", "meshEnabled", "topology", "routeReflectors", "bgpPeers")
    }
    result["after_sync"] = {
        "requests_by_verb": verbs(after),
        "lists": sum(1 for e in after if e.get("verb") == "list"),
        "watches": sum(1 for e in after if e.get("verb") == "watch"),
        "lease_writes": sum(1 for e in after if is_lease(e) and e.get("verb") in WRITE_VERBS),
    }
    result["operator_api_requests_total"] = len(audit.since(0))
    result["reconcile_duration"] = reconcile_duration(op)


def reconcile_duration(op: OperatorProcess) -> dict[str, float]:
    """Reconcile passes so far and their mean duration (the operator's histogram)."""
    samples = op.metrics()
    count = sum(samples.get("calico_rr_reconcile_duration_seconds_count", {}).values())
    total = sum(samples.get("calico_rr_reconcile_duration_seconds_sum", {}).values())
    return {
        "passes": int(count),
        "seconds_sum": round(total, 2),
        "seconds_mean": round(total / count, 3) if count else 0.0,
    }


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: name, value, limit, ok, and whether missing it fails the run."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, limit: Any, ok: bool, fatal: bool = True) -> None:
        out.append({"name": name, "value": value, "limit": limit, "ok": ok, "fatal": fatal})

    join = result.get("join") or {}
    if result.get("joins"):
        w = join.get("writes_max", 0)
        add("writes per join (max)", w, f"<= {MAX_WRITES_PER_JOIN}", w <= MAX_WRITES_PER_JOIN)
        lat = join.get("latency_s_max", 0.0)
        add(
            "join latency, s (max)",
            lat,
            f"<= {MAX_JOIN_SECONDS}",
            lat <= MAX_JOIN_SECONDS,
            fatal=bool(result.get("strict")),
        )
    lists = (result.get("after_sync") or {}).get("lists", 0)
    add("LISTs after the initial sync", lists, "0", lists == 0)
    rss = (result.get("memory") or {}).get("rss_peak_mb", 0.0)
    add("operator peak RSS, MB", rss, f"< {MAX_RSS_MB:.0f}", rss < MAX_RSS_MB)
    b = result.get("burst_result")
    if b:
        limit = MAX_BURST_PASSES_FRACTION * b["nodes"]
        add(
            "reconcile passes for the burst",
            b["reconciles"],
            f"< {limit:g}",
            b["reconciles"] < limit,
        )
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
    }


def summary(result: dict[str, Any]) -> str:
    j = result.get("join") or {}
    b = result.get("burst_result") or {}
    a = result.get("after_sync") or {}
    m = result.get("memory") or {}
    lines = [
        f"operator_api: {result['nodes']} nodes, {result['zones']} zones "
        f"({result['machine']['nproc']} CPUs, {result['machine']['cpu']}; shared machine)",
        f"  converged in {result.get('seconds_to_converge')}s -> {result.get('topology')}, "
        f"{result.get('route_reflectors')} RRs; initial sync "
        f"{(result.get('initial_sync') or {}).get('writes')} writes",
        f"  joins: writes max {j.get('writes_max')} median {j.get('writes_median')}; "
        f"latency max {j.get('latency_s_max')}s median {j.get('latency_s_median')}s",
    ]
    if b:
        last = b["seconds_first_create_to_last_write"]
        lines.append(
            f"  burst {b['nodes']}: {b['reconciles']} reconciles, {b['writes']} writes"
            + (f", last write {last}s after the first create" if last is not None else "")
        )
    lines.append(
        f"  after sync: {a.get('lists')} LIST, {a.get('watches')} WATCH; peak RSS "
        f"{m.get('rss_peak_mb')} MB (VmHWM {m.get('vm_hwm_mb')} MB); "
        f"total {result.get('seconds_total')}s"
    )
    for t in result.get("targets", []):
        mark = "ok  " if t["ok"] else ("FAIL" if t["fatal"] else "WARN")
        lines.append(f"  [{mark}] {t['name']}: {t['value']} (target {t['limit']})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--joins", type=int, default=10)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument(
        "--topology", default="auto", help="spec.topology (auto picks by size; default auto)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per wait, seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--strict", action="store_true", help="a slow join fails the run")
    arg_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arg_list)

    def progress(line: str) -> None:
        print(f"[operator_api] {line}", file=sys.stderr, flush=True)

    result = run_bench(
        nodes=args.nodes,
        zones=args.zones,
        joins=args.joins,
        burst=args.burst,
        topology=args.topology,
        timeout=args.timeout,
        progress=progress,
    )
    result["strict"] = args.strict
    result["targets"] = targets(result)
    result["command"] = " ".join([".venv/bin/python", "bench/operator_api.py", *arg_list])
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(summary(result), file=sys.stderr)
    return 0 if all(t["ok"] or not t["fatal"] for t in result["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
