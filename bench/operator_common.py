"""What the two operator benchmarks share (bench/operator_api.py on Kubernetes,
bench/operator_etcd.py on etcd): the operator as a subprocess with its memory
sampled, the targets, the measurement steps and the report.  Each benchmark
brings its datastore, its request counting and its own numbers; the steps and
the shape of the result are the same, so the two can be read side by side."""

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from calico_rr.model import Node
from calico_rr.sandbox.process import free_port

#: Targets (docs/PERFORMANCE.md, "Operator at 5000 nodes"), on both datastores.
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
    """``calico-rr run <args>`` in a subprocess, with an RSS sampler and a /metrics
    reader; ``args`` name the datastore."""

    args: tuple[str, ...]
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
        return [*head, "run", *self.args, "--port", str(self.port), "--identity", "bench"]

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


# -- measuring ------------------------------------------------------------------------------


class Steps(Protocol):
    """What a benchmark's ``Bench`` offers the shared steps."""

    @property
    def op(self) -> OperatorProcess: ...

    @property
    def timeout(self) -> float: ...

    @property
    def progress(self) -> Progress: ...

    def wait_converged(self) -> float: ...

    def wait_settled(self, before: Any, quiet: float) -> Any: ...

    def join(self, node: Node) -> dict[str, Any]: ...

    def burst(self, nodes: Sequence[Node]) -> dict[str, Any]: ...


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


def converge(bench: Steps, result: dict[str, Any]) -> None:
    """Until the operator is ready, then until it has converged and gone quiet."""
    op, progress = bench.op, bench.progress
    while not op.ready():
        op.check_alive()
        if time.monotonic() - op.started > bench.timeout:
            raise TimeoutError("operator never ready")
        time.sleep(0.05)
    result["seconds_to_ready"] = round(time.monotonic() - op.started, 2)
    progress(f"operator ready (caches synced) after {result['seconds_to_ready']}s")
    result["seconds_to_converge"] = round(bench.wait_converged(), 2)
    bench.wait_settled(None, QUIET)


def initial_sync(
    bench: Steps, result: dict[str, Any], status: dict[str, Any], requests: dict[str, Any]
) -> None:
    """The converged layout (from the status) and what the initial sync cost."""
    result["topology"] = status.get("topology")
    result["route_reflectors"] = status.get("routeReflectors")
    result["bgppeers"] = status.get("bgpPeers")
    result["initial_sync"] = {
        **requests,
        "reconcile_duration": reconcile_duration(bench.op),
        "memory": bench.op.memory(),
    }
    bench.progress(
        f"converged in {result['seconds_to_converge']}s: topology {result['topology']}, "
        f"{result['route_reflectors']} RRs, {result['initial_sync']['writes']} writes"
    )


def joins_and_burst(
    bench: Steps,
    result: dict[str, Any],
    nodes: Sequence[Node],
    joins: int,
    burst: int,
    extra: Callable[[list[dict[str, Any]]], dict[str, Any]] = lambda _each: {},
) -> None:
    """``joins`` single joins from ``nodes``, then a burst of the next ``burst``;
    ``extra`` adds datastore-specific figures over the joins."""
    progress = bench.progress
    each = []
    for i in range(joins):
        r = bench.join(nodes[i])
        each.append(r)
        progress(f"join {i + 1}/{joins} {r['node']}: {r['writes']} write(s), {r['latency_s']}s")
    writes = [r["writes"] for r in each]
    latencies = [r["latency_s"] for r in each]
    result["join"] = {
        "each": each,
        "writes_max": max(writes, default=0),
        "writes_median": statistics.median(writes) if writes else 0,
        "latency_s_max": max(latencies, default=0.0),
        "latency_s_median": round(statistics.median(latencies), 3) if latencies else 0.0,
        **extra(each),
    }
    if burst:
        progress(f"burst: creating {burst} nodes at once")
        result["burst_result"] = b = bench.burst(nodes[joins : joins + burst])
        progress(
            f"burst of {burst}: {b['reconciles']} reconcile passes, {b['writes']} writes, "
            f"settled {b['seconds_to_settle']}s after the first create"
        )


def final_status(result: dict[str, Any], status: dict[str, Any]) -> None:
    keys = ("phase", "meshEnabled", "topology", "routeReflectors", "bgpPeers")
    result["final_status"] = {k: status.get(k) for k in keys}


# -- the report -----------------------------------------------------------------------------

Target = dict[str, Any]


def target(name: str, value: Any, limit: Any, ok: bool, fatal: bool = True) -> Target:
    return {"name": name, "value": value, "limit": limit, "ok": ok, "fatal": fatal}


def join_targets(result: dict[str, Any], writes_name: str) -> list[Target]:
    """Writes and latency per join (a slow join fails the run only with --strict)."""
    if not result.get("joins"):
        return []
    join = result.get("join") or {}
    w = join.get("writes_max", 0)
    lat = join.get("latency_s_max", 0.0)
    return [
        target(writes_name, w, f"<= {MAX_WRITES_PER_JOIN}", w <= MAX_WRITES_PER_JOIN),
        target(
            "join latency, s (max)",
            lat,
            f"<= {MAX_JOIN_SECONDS}",
            lat <= MAX_JOIN_SECONDS,
            fatal=bool(result.get("strict")),
        ),
    ]


def resource_targets(result: dict[str, Any]) -> list[Target]:
    """Peak memory, and a burst coalesced into few passes."""
    rss = (result.get("memory") or {}).get("rss_peak_mb", 0.0)
    out = [target("operator peak RSS, MB", rss, f"< {MAX_RSS_MB:.0f}", rss < MAX_RSS_MB)]
    b = result.get("burst_result")
    if b:
        limit = MAX_BURST_PASSES_FRACTION * b["nodes"]
        passes = b["reconciles"]
        out.append(target("reconcile passes for the burst", passes, f"< {limit:g}", passes < limit))
    return out


def summary(result: dict[str, Any], title: str, writes_word: str, after: str) -> str:
    """The stderr summary; ``after`` is the datastore's line on reads after the sync."""
    j = result.get("join") or {}
    b = result.get("burst_result") or {}
    m = result.get("memory") or {}
    lines = [
        f"{title} ({result['machine']['nproc']} CPUs, {result['machine']['cpu']}; shared machine)",
        f"  converged in {result.get('seconds_to_converge')}s -> {result.get('topology')}, "
        f"{result.get('route_reflectors')} RRs; initial sync "
        f"{(result.get('initial_sync') or {}).get('writes')} writes",
        f"  joins: {writes_word} max {j.get('writes_max')} median {j.get('writes_median')}; "
        f"latency max {j.get('latency_s_max')}s median {j.get('latency_s_median')}s",
    ]
    if b:
        last = b["seconds_first_create_to_last_write"]
        lines.append(
            f"  burst {b['nodes']}: {b['reconciles']} reconciles, {b['writes']} writes"
            + (f", last write {last}s after the first create" if last is not None else "")
        )
    lines.append(
        f"  after sync: {after}; peak RSS {m.get('rss_peak_mb')} MB "
        f"(VmHWM {m.get('vm_hwm_mb')} MB); total {result.get('seconds_total')}s"
    )
    for t in result.get("targets", []):
        mark = "ok  " if t["ok"] else ("FAIL" if t["fatal"] else "WARN")
        lines.append(f"  [{mark}] {t['name']}: {t['value']} (target {t['limit']})")
    return "\n".join(lines)


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


def main(
    script: str,
    doc: str | None,
    run_bench: Callable[..., dict[str, Any]],
    targets: Callable[[dict[str, Any]], list[Target]],
    report: Callable[[dict[str, Any]], str],
    argv: Sequence[str] | None,
) -> int:
    """The command line both benchmarks take; 1 when a fatal target is missed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
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
    name = Path(script).stem

    def progress(line: str) -> None:
        print(f"[{name}] {line}", file=sys.stderr, flush=True)

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
    result["command"] = " ".join([".venv/bin/python", f"bench/{name}.py", *arg_list])
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(report(result), file=sys.stderr)
    return 0 if all(t["ok"] or not t["fatal"] for t in result["targets"]) else 1
