"""``calico-rr run``'s leader-election flags and the Lease namespace (issue 16 item 4).

* core.election: seconds or Go durations, defaults derived from the lease duration,
  client-go's order (retry < renew deadline < lease duration), one-line errors.
* adapters.kube.leader.lease_namespace: --namespace, then $POD_NAMESPACE, then the
  ServiceAccount namespace file, then calico-rr.
* the CLI: kubectl's ``--leader-elect=false`` beside ``--no-leader-elect``; a bad
  timing exits 2 before anything starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from calico_rr.adapters.kube.leader import DEFAULT_LEASE_NAMESPACE, lease_namespace
from calico_rr.cli import app
from calico_rr.cli.operating import _kubectl_bool
from calico_rr.core.election import ElectionTiming, election_timing, seconds_or_duration
from calico_rr.errors import InputError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15", 15.0), ("2.5", 2.5), ("15s", 15.0), ("1m30s", 90.0), ("500ms", 0.5), (" 20 ", 20.0)],
)
def test_seconds_or_duration(text: str, seconds: float) -> None:
    assert seconds_or_duration(text, flag="--x") == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5", "15 s", "1d", "s"])
def test_seconds_or_duration_refuses(text: str) -> None:
    with pytest.raises(InputError, match="--x") as err:
        seconds_or_duration(text, flag="--x")
    assert "\n" not in str(err.value)


def test_defaults_follow_the_lease_duration() -> None:
    assert election_timing("15s") == ElectionTiming(15.0, 10.0, 3.0)
    assert election_timing("30") == ElectionTiming(30.0, 20.0, 6.0)
    assert election_timing("15s", "12s", "2s") == ElectionTiming(15.0, 12.0, 2.0)
    # only the retry period given: the renew deadline still follows the lease
    assert election_timing("15", None, "1") == ElectionTiming(15.0, 10.0, 1.0)


@pytest.mark.parametrize(
    ("lease", "renew", "retry", "flag", "words"),
    [
        ("10s", "10s", None, "--leader-elect-renew-deadline", "shorter than the lease"),
        ("10s", "12s", None, "--leader-elect-renew-deadline", "shorter than the lease"),
        ("15s", "10s", "10s", "--leader-elect-retry-period", "shorter than the renew"),
        ("15s", None, "11s", "--leader-elect-retry-period", "shorter than the renew"),
        ("15s", "10s", "0", "--leader-elect-retry-period", "above 0"),
        ("500ms", None, None, "--leader-elect-lease-duration", "at least 1s"),
        ("1h", "x", None, "--leader-elect-renew-deadline", "neither seconds nor a duration"),
    ],
)
def test_timing_order_is_enforced(
    lease: str, renew: str | None, retry: str | None, flag: str, words: str
) -> None:
    with pytest.raises(InputError) as err:
        election_timing(lease, renew, retry)
    assert flag in str(err.value) and words in str(err.value)


def test_lease_namespace_order(tmp_path: Path) -> None:
    sa = tmp_path / "namespace"
    sa.write_text("from-file\n")
    missing = tmp_path / "absent"
    env = {"POD_NAMESPACE": "from-env"}
    assert lease_namespace("flag-ns", env, sa) == "flag-ns"
    assert lease_namespace(None, env, sa) == "from-env"
    assert lease_namespace(None, {}, sa) == "from-file"
    assert lease_namespace(None, {"POD_NAMESPACE": " "}, sa) == "from-file"
    assert lease_namespace(None, {}, missing) == DEFAULT_LEASE_NAMESPACE == "calico-rr"
    sa.write_text("")
    assert lease_namespace(None, {}, sa) == "calico-rr"


@pytest.mark.parametrize(
    ("arg", "out"),
    [
        ("--leader-elect=false", "--no-leader-elect"),
        ("--leader-elect=False", "--no-leader-elect"),
        ("--leader-elect=true", "--leader-elect"),
        ("--leader-elect", "--leader-elect"),
        ("--leader-elect-lease-duration=15s", "--leader-elect-lease-duration=15s"),
        ("--port=8080", "--port=8080"),
    ],
)
def test_kubectl_bool_spelling(arg: str, out: str) -> None:
    assert _kubectl_bool(arg) == out


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


@pytest.mark.parametrize("leader", ["--leader-elect=false", "--no-leader-elect", "--leader-elect"])
def test_run_reads_the_flags_and_checks_the_timing_first(leader: str) -> None:
    # Parsed (the bool in every spelling), then refused before any client or server
    # starts: exit 2 with one line naming the flag.
    code, out = _run(leader, "--leader-elect-lease-duration=5s", "--leader-elect-renew-deadline=6")
    assert code == 2, out
    assert "--leader-elect-renew-deadline" in out and "Traceback" not in out


def test_run_refuses_a_bool_that_is_not_one() -> None:
    code, out = _run("--leader-elect=maybe")
    assert code == 2 and "true or false" in out


def test_run_keeps_the_old_lease_duration_flag() -> None:
    code, out = _run("--lease-duration=0.5")
    assert code == 2 and "--leader-elect-lease-duration" in out and "at least 1s" in out


def test_both_operators_hand_the_timing_to_their_electors() -> None:
    # Construction only: neither operator touches its datastore before start().
    from calico_rr.adapters.etcd.client import EtcdClient
    from calico_rr.adapters.etcd.operator import EtcdOperator
    from calico_rr.adapters.kube.client import KubeClient
    from calico_rr.adapters.kube.operator import Operator

    timing = election_timing("20s", "12s", "1500ms")
    kwargs = {
        "lease_duration": timing.lease_duration,
        "renew_deadline": timing.renew_deadline,
        "retry_period": timing.retry_period,
    }
    kube = Operator(KubeClient("https://k8s.test:6443"), namespace="ns-x", env={}, **kwargs)
    etcd = EtcdOperator(EtcdClient(["https://etcd.test:2379"]), env={}, **kwargs)
    for op in (kube, etcd):
        assert op.elector is not None
        got = (op.elector.lease_duration, op.elector.renew_deadline, op.elector.retry_period)
        assert got == (20.0, 12.0, 1.5)
    assert kube.elector is not None and kube.elector.namespace == "ns-x"
    off = Operator(KubeClient("https://k8s.test:6443"), env={}, leader_election=False)
    assert off.elector is None and off.is_leader  # no election: it writes at once
