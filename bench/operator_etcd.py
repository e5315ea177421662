"""The operator on Calico's etcd datastore at scale: etcd requests, latency, memory.

Run::

    .venv/bin/python bench/operator_etcd.py [--nodes 5000] [--zones 3] [--joins 10]
        [--burst 1000] [--json out.json] [--strict]

What it does (every request count is etcd's own - ``grpc_server_started_total`` by
gRPC method on etcd's ``/metrics`` - minus the requests the benchmark's own client
sent, which it counts as it sends them; never the operator's own counters):

1. starts a real etcd with client-certificate TLS (``calico_rr.sandbox.etcd``),
   writes ``--nodes`` Calico Node documents (create-only compare-and-swap, 8
   threads) each with a Felix liveness report (one lease per zone: Ready), and the
   RouteReflectorConfig ``/calico-rr/config/default`` (topology auto,
   ``waitTimeout: 2s``); there is no BGPConfiguration: the mesh is on;
2. starts ``calico-rr run --datastore-type etcdv3 --etcd-endpoints ... (TLS files)``
   as a **subprocess** (VmRSS sampled all along, VmHWM at the end) and waits for
   convergence (the status document ``/calico-rr/status/default``: Steady, mesh off);
3. watches ``/calico`` itself (an observer: every write with the time it was seen;
   the operator's writes are those at revisions the benchmark did not write);
4. joins ``--joins`` nodes one at a time: each waits until the operator is quiet,
   writes the Calico Node and its Felix report, then waits until a reconcile pass
   ran (``calico_rr_reconciles_total``) and nothing moved for a quiet period.  The
   join's requests are etcd's count in that window minus the benchmark's: writes
   (Txn, Put, DeleteRange), reads (Range), watches (Watch streams opened), leases.
   The leader's renewals (a lease keepalive, then a read of the leader key, every
   leaseDuration/5 = 3 s) are periodic, not caused by the join, and reported
   apart.  Latency: the observer's time for the operator's last write to the new
   node minus the observer's time for the node's creation; a join that needs no
   write has the time until the reconcile pass was seen to end (an upper bound);
5. writes ``--burst`` nodes as fast as possible and counts the reconcile passes and
   the writes they cost;
6. counts what the operator read after the initial sync: Range requests other than
   leader renewals (a re-list would show here) and Watch streams opened.

JSON on stdout (and ``--json``), a summary on stderr.  Exit status 1 when a target
is missed: more than 3 writes for one join, any read after the initial sync other
than leader renewals, a peak RSS of 200 MB or more, or a burst not coalesced
(reconcile passes > burst/5).  A join slower than 1 s is a warning (timing on a
shared machine), an error with ``--strict``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.demo import (
    EtcdRequestCounter,
    Mark,
    RequestLedger,
    SentRequests,
    create_nodes,
    reads_not_leader,
    status,
    write_config,
    writes,
    zone_leases,
)
from calico_rr.adapters.etcd.errors import EtcdError
from calico_rr.adapters.etcd.values import EventType, WatchEvent
from calico_rr.core.formats import etcd as L
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import Node
from calico_rr.sandbox.etcd import EtcdServer

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


def etcd_args(server: EtcdServer) -> tuple[str, ...]:
    return (
        "--etcd-endpoints",
        server.endpoint,
        "--etcd-ca-cert-file",
        str(server.ca_file),
        "--etcd-cert-file",
        str(server.cert_file),
        "--etcd-key-file",
        str(server.key_file),
    )


# -- the observer: every write under /calico, with the time it was seen --------------------


@dataclass(frozen=True)
class Seen:
    at: float
    revision: int
    key: str
    deleted: bool

    def describe(self) -> str:
        verb = "delete" if self.deleted else "put"
        if self.key.startswith(L.RESOURCE_ROOT):
            plural, _, name = self.key[len(L.RESOURCE_ROOT) :].strip("/").partition("/")
            return f"{verb} {plural} {name}"
        return f"{verb} {self.key}"


@dataclass
class Observer:
    """A watch on ``/calico`` (also ``/calico-rr/``) from ``start`` on, in a thread."""

    client: EtcdClient
    start: int
    events: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _watch: Any = None

    def run(self, timeout: float = 30.0) -> Observer:
        """Start; returns once the watch is established (its request counted)."""
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the observer's watch did not start")
        return self

    def _run(self) -> None:
        next_rev = self.start
        while not self._stop.is_set():
            try:
                w = self.client.watch("/calico", next_rev)
                self._watch = w
                self._ready.set()
                for item in w:
                    if isinstance(item, WatchEvent):
                        seen = Seen(
                            time.time(),
                            item.kv.mod_revision,
                            item.kv.key,
                            item.type == EventType.DELETE,
                        )
                        with self._lock:
                            self.events.append(seen)
                    next_rev = w.next_revision
                next_rev = max(next_rev, w.next_revision)
            except EtcdError:
                if self._stop.is_set():
                    return
                self._stop.wait(0.2)

    def count(self) -> int:
        with self._lock:
            return len(self.events)

    def since(self, index: int) -> list[Seen]:
        with self._lock:
            return self.events[index:]

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.close()
        if self._thread is not None:
            self._thread.join(5.0)


# -- the benchmark ----------------------------------------------------------------------


@dataclass
class Bench:
    server: EtcdServer
    admin: EtcdClient
    ledger: RequestLedger
    op: Any  # EtcdOperatorProcess
    leases: Mapping[str, int]
    timeout: float
    progress: Progress
    own: set[int] = field(default_factory=set)
    observer: Observer | None = None

    def reconciles(self) -> float:
        return float(self.op.counter("calico_rr_reconciles_total"))

    def create(self, nodes: Sequence[Node]) -> None:
        self.own |= create_nodes(self.admin, nodes, self.leases, workers=CREATE_THREADS)

    def operator_writes(self, seen: Sequence[Seen]) -> list[Seen]:
        return [s for s in seen if s.revision not in self.own]

    def wait_converged(self) -> float:
        """Seconds from the operator's start until status is Steady with the mesh off."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self.op.check_alive()
            st = status(self.admin)
            if st.get("phase") == "Steady" and st.get("meshEnabled") is False:
                return float(time.monotonic() - self.op.started)
            time.sleep(0.1)
        raise TimeoutError(f"not converged in {self.timeout:.0f}s: {status(self.admin)}")

    def wait_settled(self, after: float | None, quiet: float) -> tuple[float | None, float]:
        """Wait until (when ``after`` is given) the reconcile counter has passed
        ``after`` and then neither an operator write (seen by the observer) nor a
        reconcile pass happened for ``quiet`` seconds, with status Steady.  Returns
        (wall time the counter was first seen past ``after``, wall time of the last
        change)."""
        assert self.observer is not None
        deadline = time.monotonic() + self.timeout
        count = self.reconciles()
        known = self.observer.count()
        first: float | None = None
        last_change = time.time()
        if after is not None and count > after:
            first = last_change
        while time.monotonic() < deadline:
            time.sleep(POLL)
            now = time.time()
            c = self.reconciles()
            if c != count:
                count, last_change = c, now
                if first is None and after is not None and c > after:
                    first = now
            fresh = self.observer.since(known)
            known += len(fresh)
            if self.operator_writes(fresh):
                last_change = now
            if (after is None or first is not None) and now - last_change >= quiet:
                if status(self.admin).get("phase") == "Steady":
                    return first, last_change
                last_change = now
        raise TimeoutError(f"operator not settled in {self.timeout:.0f}s: {status(self.admin)}")

    def join(self, node: Node) -> dict[str, Any]:
        assert self.observer is not None
        self.wait_settled(None, QUIET)
        before = self.reconciles()
        mark = self.ledger.quiet_mark()
        index = self.observer.count()
        t0 = time.time()
        self.create([node])
        first, _ = self.wait_settled(before, QUIET)
        requests = RequestLedger.between(mark, self.ledger.quiet_mark())
        window = self.observer.since(index)
        key = L.resource_key("nodes", node.name)
        created = [s for s in window if s.key == key and s.revision in self.own]
        start = created[0].at if created else t0
        ops = self.operator_writes(window)
        node_writes = [s for s in ops if s.key == key]
        result: dict[str, Any] = {
            "node": node.name,
            "writes": writes(requests),
            "write_list": [s.describe() for s in ops],
            "requests_by_method": dict(sorted(requests.items())),
            "reads_not_leader": reads_not_leader(requests),
            "watches": requests.get("Watch", 0),
            "leader_keepalives": requests.get("LeaseKeepAlive", 0),
            "start": "observer: node created" if created else "client clock before the create",
        }
        if node_writes:
            result["latency_s"] = round(max(s.at for s in node_writes) - start, 3)
            result["latency_source"] = (
                "observer: operator's last write to the node - the node's creation"
            )
        else:
            result["latency_s"] = round((first or time.time()) - t0, 3)
            result["latency_source"] = "no write needed: reconcile seen ending (/metrics, 50 ms)"
        if ops:
            result["last_write_s"] = round(max(s.at for s in ops) - start, 3)
        return result

    def burst(self, nodes: Sequence[Node]) -> dict[str, Any]:
        assert self.observer is not None
        self.wait_settled(None, QUIET)
        r0 = self.reconciles()
        mark = self.ledger.quiet_mark()
        index = self.observer.count()
        t0 = time.time()
        self.create(nodes)
        t_created = time.time()
        r_created = self.reconciles()
        _, settled = self.wait_settled(r_created, BURST_QUIET)
        r1 = self.reconciles()
        requests = RequestLedger.between(mark, self.ledger.quiet_mark())
        window = self.observer.since(index)
        ops = self.operator_writes(window)
        creates = [s for s in window if s.revision in self.own]
        start = min((s.at for s in creates), default=t0)
        last_write = max((s.at for s in ops), default=None)
        kinds = Counter(s.describe().split()[1] for s in ops)
        return {
            "nodes": len(nodes),
            "create_seconds": round(t_created - t0, 2),
            "reconciles": int(r1 - r0),
            "reconciles_after_last_create": int(r1 - r_created),
            "writes": writes(requests),
            "writes_seen": len(ops),
            "writes_by_resource": dict(sorted(kinds.items())),
            "requests_by_method": dict(sorted(requests.items())),
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
        "datastore": "etcdv3",
        "nodes": nodes,
        "zones": zones,
        "joins": joins,
        "burst": burst,
        "topology_requested": topology,
        "machine": machine(),
    }
    t_begin = time.monotonic()
    cluster = synthetic_cluster(nodes + joins + burst, zones=zones)
    progress("starting etcd (TLS, client certificates)")
    with EtcdServer() as server:
        result["etcd_version"] = _etcd_version(server)
        sent = SentRequests()
        admin = server.client(timeout=30.0, on_request=sent)
        ledger = RequestLedger(EtcdRequestCounter.for_server(server), sent)
        op = OperatorProcess(
            ("--datastore-type", "etcdv3", *etcd_args(server)),
            server.directory / "operator.log",
        )
        leases = zone_leases(admin, cluster)
        bench = Bench(server, admin, ledger, op, leases, timeout, progress)
        observer: Observer | None = None
        try:
            progress(f"writing {nodes} Calico Nodes + Felix reports ({CREATE_THREADS} threads)")
            t = time.monotonic()
            bench.create(cluster[:nodes])
            result["seconds_create_nodes"] = round(time.monotonic() - t, 1)
            bench.own.add(write_config(admin, {"topology": topology, "waitTimeout": "2s"}))
            start_rev = admin.list("/calico-rr/config/").revision + 1
            observer = bench.observer = Observer(admin, start_rev).run()
            progress("starting the operator: " + " ".join(op.command()))
            start_mark = ledger.mark()
            op.start()
            _measure(bench, result, cluster, nodes, joins, burst, start_mark)
            result["memory"] = op.memory()
        except BaseException:
            sys.stderr.write(f"--- operator log (tail) ---\n{op.log_tail()}\n")
            raise
        finally:
            op.stop()
            if observer is not None:
                observer.stop()
            admin.close()
    result["seconds_total"] = round(time.monotonic() - t_begin, 1)
    result["targets"] = targets(result)
    return result


def _etcd_version(server: EtcdServer) -> str:
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    ctx.load_cert_chain(str(server.cert_file), str(server.key_file))
    with urllib.request.urlopen(f"{server.endpoint}/version", timeout=5, context=ctx) as resp:
        return str(json.loads(resp.read()).get("etcdserver", "?"))


def _measure(
    bench: Bench,
    result: dict[str, Any],
    cluster: Sequence[Node],
    nodes: int,
    joins: int,
    burst: int,
    start_mark: Mark,
) -> None:
    op, ledger = bench.op, bench.ledger
    common.converge(bench, result)
    sync_mark = ledger.quiet_mark()
    sync_lists_counted = op.counter("calico_rr_api_requests_total", verb="list")
    sync = RequestLedger.between(start_mark, sync_mark)
    requests = {"requests_by_method": dict(sorted(sync.items())), "writes": writes(sync)}
    common.initial_sync(bench, result, status(bench.admin), requests)

    def not_leader(each: list[dict[str, Any]]) -> dict[str, Any]:
        return {"reads_not_leader_max": max((r["reads_not_leader"] for r in each), default=0)}

    common.joins_and_burst(bench, result, cluster[nodes:], joins, burst, not_leader)
    end_mark = ledger.quiet_mark()
    after = RequestLedger.between(sync_mark, end_mark)
    common.final_status(result, status(bench.admin))
    result["after_sync"] = {
        "requests_by_method": dict(sorted(after.items())),
        "lists": reads_not_leader(after),
        "watches": after.get("Watch", 0),
        "leader_keepalives": after.get("LeaseKeepAlive", 0),
        # the operator's own count of its list pages, for comparison only
        "operator_counted_lists": int(
            op.counter("calico_rr_api_requests_total", verb="list") - sync_lists_counted
        ),
    }
    result["operator_etcd_requests_total"] = sum(
        RequestLedger.between(start_mark, end_mark).values()
    )
    result["reconcile_duration"] = common.reconcile_duration(op)


def targets(result: dict[str, Any]) -> list[common.Target]:
    """Each target: name, value, limit, ok, and whether missing it fails the run."""
    after = result.get("after_sync") or {}
    lists, watches = after.get("lists", 0), after.get("watches", 0)
    return [
        *common.join_targets(result, "etcd writes per join (max)"),
        common.target("reads after the initial sync (not leader renewals)", lists, "0", lists == 0),
        common.target(
            "watch streams opened after the initial sync", watches, "0", watches == 0, fatal=False
        ),
        *common.resource_targets(result),
    ]


def summary(result: dict[str, Any]) -> str:
    a = result.get("after_sync") or {}
    return common.summary(
        result,
        f"operator_etcd: {result['nodes']} nodes, {result['zones']} zones, etcd "
        f"{result.get('etcd_version')}",
        "etcd writes",
        f"{a.get('lists')} reads (not leader), {a.get('watches')} WATCH",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return common.main(__file__, __doc__, run_bench, targets, summary, argv)


if __name__ == "__main__":
    sys.exit(main())
