"""The etcd adapter against a real etcd with TLS and client-certificate auth.

etcd comes from scripts/controlplane-build.sh (built once, cached under
~/.cache/calico-rr/); a missing binary fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.config import etcd_settings
from calico_rr.adapters.etcd.errors import Compacted, Conflict, EtcdTLSError, EtcdUnavailable
from calico_rr.adapters.etcd.leader import EtcdLeaderElector
from calico_rr.adapters.etcd.values import EventType, Progress, WatchEvent
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats.etcd_nodes import apply_node, node_from_calico, node_to_calico
from calico_rr.core.planning.config import GROUP_LABEL
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.sandbox.etcd import EtcdServer
from calico_rr.sandbox.process import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer(progress_notify_interval="500ms") as server:
        yield server


@pytest.fixture
def client(etcd: EtcdServer) -> Iterator[EtcdClient]:
    with etcd.client(timeout=5.0) as c:
        yield c


def events_until(
    watch: Iterator[WatchEvent | Progress], count: int, timeout: float = 10.0
) -> list[WatchEvent]:
    """The next ``count`` events (progress notifications skipped)."""
    out: list[WatchEvent] = []
    deadline = time.monotonic() + timeout
    for item in watch:
        if isinstance(item, WatchEvent):
            out.append(item)
            if len(out) == count:
                return out
        assert time.monotonic() < deadline, f"only {len(out)} of {count} events"
    raise AssertionError(f"watch ended after {len(out)} of {count} events")


# ---------------------------------------------------------------------------
# Key-value operations
# ---------------------------------------------------------------------------


def test_crud_with_calico_documents(client: EtcdClient, etcd: EtcdServer) -> None:
    # The settings come from Calico's environment variables, as in production.
    assert etcd_settings(etcd.env()) == etcd.settings()
    node = synthetic_cluster(1)[0]
    key, value = L.encode_document(node_to_calico(node, uid="u1"))
    created = client.put_if(key, value, 0)
    assert (created.key, created.value, created.version) == (key, value, 1)
    assert created.create_revision == created.mod_revision > 0
    got = client.get(key)
    assert got == created
    doc = L.decode_document(key, got.value, got.mod_revision)
    assert doc["metadata"]["resourceVersion"] == str(created.mod_revision)
    changed = apply_node(doc, {GROUP_LABEL: "g1"}, {})
    _, new_value = L.encode_document(changed)
    updated = client.put_if(key, new_value, got.mod_revision)
    assert updated.version == 2 and updated.mod_revision > got.mod_revision
    assert updated.create_revision == created.create_revision
    assert node_from_calico(updated.json()).labels[GROUP_LABEL] == "g1"
    deleted_at = client.delete_if(key, updated.mod_revision)
    assert deleted_at > updated.mod_revision
    assert client.get(key) is None


def test_compare_and_swap_never_overwrites_a_concurrent_edit(
    client: EtcdClient, etcd: EtcdServer
) -> None:
    key = "/test/cas/node"
    client.put_if(key, b"v1", 0)
    ours = client.get(key)
    assert ours is not None
    with etcd.client() as other:  # another writer edits between our read and our write
        theirs = other.put_if(key, b"theirs", ours.mod_revision)
    with pytest.raises(Conflict) as info:
        client.put_if(key, b"ours", ours.mod_revision)
    assert info.value.current == theirs
    with pytest.raises(Conflict):
        client.put_if(key, b"ours", 0)  # "create only if absent" on an existing key
    with pytest.raises(Conflict):
        client.delete_if(key, ours.mod_revision)
    now = client.get(key)
    assert now is not None and now.value == b"theirs" and now == theirs
    client.delete_if(key, now.mod_revision)
    with pytest.raises(Conflict, match="does not exist"):
        client.delete_if(key, now.mod_revision)


def test_list_pages_through_one_snapshot(client: EtcdClient, etcd: EtcdServer) -> None:
    prefix = "/test/pages/"
    keys = [f"{prefix}{i:04d}" for i in range(230)]
    for k in keys:
        client.put(k, k.encode())
    before = client.put("/test/pages0", b"outside the prefix")
    pages = 0
    writer = etcd.client()

    def count(op: str, endpoint: str, status: int) -> None:
        nonlocal pages
        if op == "list":
            pages += 1
            if pages == 1:  # written between pages: not part of the snapshot
                writer.put(f"{prefix}9999", b"late")
                writer.delete(keys[-1])

    with etcd.client(on_request=count) as c:
        result = c.list(prefix, page_size=50)
    writer.close()
    assert pages == 5
    assert [kv.key for kv in result.kvs] == keys
    assert all(kv.value == kv.key.encode() for kv in result.kvs)
    assert result.revision == before  # the store's revision when the first page was read
    after = client.list(prefix, page_size=1000)
    assert len(after.kvs) == 230 and after.kvs[-1].key == f"{prefix}9999"
    assert after.revision == result.revision + 2


# ---------------------------------------------------------------------------
# Watches
# ---------------------------------------------------------------------------


def test_watch_resumes_without_missing_or_repeating(client: EtcdClient, etcd: EtcdServer) -> None:
    prefix = "/test/resume/"
    start = client.list(prefix).revision + 1
    written: list[tuple[str, int]] = []
    for i in range(5):
        written.append((f"{prefix}{i}", client.put(f"{prefix}{i}", b"x")))
    seen: list[tuple[str, int]] = []
    w = client.watch(prefix, start)
    seen += [(e.kv.key, e.revision) for e in events_until(w, 3)]
    w.close()
    # Changes while nobody watches, including a delete.
    for i in range(5, 8):
        written.append((f"{prefix}{i}", client.put(f"{prefix}{i}", b"x")))
    written.append((f"{prefix}0", client.put_if(f"{prefix}0", b"y", written[0][1]).mod_revision))
    gone = client.get(f"{prefix}1")
    assert gone is not None
    written.append((f"{prefix}1", client.delete_if(f"{prefix}1", gone.mod_revision)))
    w2 = client.watch(prefix, w.next_revision)
    rest = events_until(w2, len(written) - 3)
    w2.close()
    seen += [(e.kv.key, e.revision) for e in rest]
    assert seen == written
    assert rest[-1].type == EventType.DELETE


def test_watch_survives_an_etcd_restart_by_resuming(etcd: EtcdServer) -> None:
    prefix = "/test/restart/"
    with etcd.client(retries=0) as c:
        start = c.put(f"{prefix}a", b"1")
        w = c.watch(prefix, start)
        assert [e.kv.key for e in events_until(w, 1)] == [f"{prefix}a"]
        errors: list[BaseException] = []

        def consume() -> None:
            try:
                for _ in w:
                    pass
            except EtcdUnavailable as exc:
                errors.append(exc)

        reader = threading.Thread(target=consume)
        reader.start()
        etcd.kill()
        reader.join(10)
        assert not reader.is_alive()
        assert len(errors) == 1 and etcd.endpoint in str(errors[0])
        with pytest.raises(EtcdUnavailable, match="connection refused") as info:
            c.get(f"{prefix}a")
        assert etcd.endpoint in str(info.value)
        etcd.restart()
        b = c.put(f"{prefix}b", b"2")
        w2 = c.watch(prefix, w.next_revision)
        got = events_until(w2, 1)
        w2.close()
        assert [(e.kv.key, e.revision) for e in got] == [(f"{prefix}b", b)]


def test_progress_notifications_advance_the_resume_revision(client: EtcdClient) -> None:
    prefix = "/test/progress/"
    w = client.watch(prefix)
    client.put("/test/elsewhere", b"x")  # moves the store's revision, not our prefix
    deadline = time.monotonic() + 10
    for item in w:
        if isinstance(item, Progress) and item.revision >= client.list(prefix).revision:
            break
        assert time.monotonic() < deadline
    w.close()
    assert w.next_revision == item.revision + 1


def test_compaction_before_a_watch_then_relist(client: EtcdClient) -> None:
    prefix = "/test/compact/"
    old = client.put(f"{prefix}a", b"1")
    client.put(f"{prefix}a", b"2")
    latest = client.put(f"{prefix}b", b"3")
    client.compact(latest)
    with pytest.raises(Compacted) as info:
        next(client.watch(prefix, old))
    assert info.value.compact_revision == latest
    listing = client.list(prefix)
    assert {kv.key: kv.value for kv in listing.kvs} == {f"{prefix}a": b"2", f"{prefix}b": b"3"}
    w = client.watch(prefix, listing.revision + 1)
    rev = client.put(f"{prefix}c", b"4")
    assert [(e.kv.key, e.revision) for e in events_until(w, 1)] == [(f"{prefix}c", rev)]
    w.close()


def test_compaction_while_disconnected_from_a_watch(client: EtcdClient) -> None:
    prefix = "/test/compact-gap/"
    start = client.put(f"{prefix}a", b"1")
    w = client.watch(prefix, start)
    events_until(w, 1)
    w.close()  # the stream drops...
    client.put(f"{prefix}b", b"2")
    client.delete(f"{prefix}a")
    client.compact(client.put("/test/other", b"x"))  # ...and history is compacted meanwhile
    with pytest.raises(Compacted):
        next(client.watch(prefix, w.next_revision))
    listing = client.list(prefix)  # the caller re-lists: the state is complete
    assert [kv.key for kv in listing.kvs] == [f"{prefix}b"]


def test_compaction_between_list_pages(client: EtcdClient, etcd: EtcdServer) -> None:
    prefix = "/test/compact-pages/"
    for i in range(6):
        client.put(f"{prefix}{i}", b"x")
    compactor = etcd.client()
    calls = 0

    def compact_after_first_page(op: str, endpoint: str, status: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            compactor.compact(compactor.put("/test/other", b"y"))

    with etcd.client(on_request=compact_after_first_page) as c, pytest.raises(Compacted):
        c.list(prefix, page_size=2)
    compactor.close()
    assert len(client.list(prefix, page_size=2).kvs) == 6  # listing again works


# ---------------------------------------------------------------------------
# Endpoints and TLS
# ---------------------------------------------------------------------------


def test_failover_to_the_second_endpoint(etcd: EtcdServer) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    s = etcd.settings()
    with EtcdClient(
        [dead, etcd.endpoint], ca_file=s.ca_cert_file, cert_file=s.cert_file, key_file=s.key_file
    ) as c:
        assert c.put_if("/test/failover", b"x", 0).value == b"x"  # never sent to dead: safe
        assert c.current_endpoint == etcd.endpoint
        got = c.get("/test/failover")
        assert got is not None and got.value == b"x"
        w = c.watch("/test/failover", got.mod_revision)
        assert events_until(w, 1)[0].kv.value == b"x"
        w.close()
    with EtcdClient([dead], ca_file=s.ca_cert_file, retries=0) as only_dead:
        with pytest.raises(EtcdUnavailable, match="connection refused") as info:
            only_dead.get("/test/failover")
        assert dead in str(info.value)


def test_tls_without_a_client_certificate_is_refused(etcd: EtcdServer) -> None:
    with EtcdClient([etcd.endpoint], ca_file=etcd.ca_file) as anonymous:
        with pytest.raises(EtcdTLSError, match="requires a client certificate") as info:
            anonymous.put("/test/anonymous", b"x")
        assert etcd.endpoint in str(info.value) and "ETCD_CERT_FILE" in str(info.value)
        with pytest.raises(EtcdTLSError):
            anonymous.watch("/test/")
    untrusting = EtcdClient([etcd.endpoint], cert_file=etcd.cert_file, key_file=etcd.key_file)
    with untrusting, pytest.raises(EtcdTLSError, match=r"not trusted.*ETCD_CA_CERT_FILE"):
        untrusting.get("/test/anonymous")
    with etcd.client() as c:
        assert c.get("/test/anonymous") is None  # nothing got through


# ---------------------------------------------------------------------------
# Leases and leader election
# ---------------------------------------------------------------------------


def test_lease_keepalive_and_revoke_delete_the_key(client: EtcdClient) -> None:
    lease = client.grant(5)
    assert lease.ttl == 5
    client.put_if("/test/lease", b"x", 0, lease=lease.id)
    assert client.keepalive(lease.id) == 5
    kv = client.get("/test/lease")
    assert kv is not None and kv.lease == lease.id
    client.revoke(lease.id)
    assert client.get("/test/lease") is None
    assert client.keepalive(lease.id) == 0
    assert client.time_to_live(lease.id) == -1


def electors(etcd: EtcdServer, key: str, n: int = 2) -> list[EtcdLeaderElector]:
    return [
        EtcdLeaderElector(
            etcd.client(), identity=f"replica-{i}", key=key, lease_duration=2, retry_period=0.2
        )
        for i in range(n)
    ]


def wait_for(condition: object, timeout: float) -> float:
    """Seconds until ``condition()`` held (fails after ``timeout``)."""
    assert callable(condition)
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not met in time"
        time.sleep(0.02)
    return time.monotonic() - start


def holder(etcd: EtcdServer, key: str) -> str | None:
    with etcd.client() as c:
        kv = c.get(key)
    return kv.value.decode() if kv else None


def test_exactly_one_leader_and_takeover_on_revoke(etcd: EtcdServer) -> None:
    key = "/test/leader-revoke"
    es = electors(etcd, key)
    for e in es:
        e.start()
    try:
        wait_for(lambda: any(e.is_leader for e in es), 5)
        end = time.monotonic() + 1.5  # several renewals: never two leaders
        while time.monotonic() < end:
            assert sum(e.is_leader for e in es) == 1
            time.sleep(0.01)
        leader = next(e for e in es if e.is_leader)
        follower = next(e for e in es if not e.is_leader)
        assert holder(etcd, key) == leader.identity
        assert leader.lease_id is not None
        with etcd.client() as c:
            c.revoke(leader.lease_id)  # e.g. an admin, or etcd losing the lease
        took = wait_for(lambda: follower.is_leader, leader.lease_duration + 1.0)
        assert took < leader.lease_duration + 1.0
        wait_for(lambda: not leader.is_leader, 1.0)
        assert holder(etcd, key) == follower.identity
        assert follower.transitions == 1
    finally:
        for e in es:
            e.stop()
            e.client.close()


def test_killed_leader_is_replaced_after_its_lease_expires(etcd: EtcdServer) -> None:
    key = "/test/leader-expire"
    es = electors(etcd, key)
    for e in es:
        e.start()
    try:
        wait_for(lambda: any(e.is_leader for e in es), 5)
        leader = next(e for e in es if e.is_leader)
        follower = next(e for e in es if not e.is_leader)
        leader.stop(release=False)  # no more keepalives, lease left to expire
        took = wait_for(lambda: follower.is_leader, leader.lease_duration + 2.0)
        assert took > leader.lease_duration - leader.renew_deadline  # waited for expiry
        assert holder(etcd, key) == follower.identity
        # A graceful stop releases at once: the other takes over within a retry or two.
        leader2 = EtcdLeaderElector(
            etcd.client(), identity="replica-9", key=key, lease_duration=2, retry_period=0.2
        ).start()
        es.append(leader2)
        time.sleep(0.5)
        assert not leader2.is_leader  # the key is held: followers wait
        follower.stop()
        assert wait_for(lambda: leader2.is_leader, 1.0) < 1.0
        assert holder(etcd, key) == "replica-9"
    finally:
        for e in es:
            e.stop()
            e.client.close()
    assert holder(etcd, key) is None  # released


def test_leader_key_holds_identity_and_lease(etcd: EtcdServer) -> None:
    key = "/test/leader-fields"
    (e,) = electors(etcd, key, 1)
    assert e.try_acquire_or_renew()
    with etcd.client() as c:
        kv = c.get(key)
        assert kv is not None and kv.lease == e.lease_id and kv.value == b"replica-0"
        assert json.dumps(kv.value.decode())  # a plain string, readable with etcdctl
    assert e.try_acquire_or_renew()  # renewing keeps the same key
    with etcd.client() as c:
        again = c.get(key)
        assert again == kv
    e.stop()
    e.client.close()
