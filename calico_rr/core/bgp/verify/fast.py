"""The class-level engine: every prefix at once, over classes of interchangeable nodes.

Why classes are exact.  Members of a node class (``SessionGraph.classes``) have
the same peerings, cluster ID and AS, so any permutation of a class's members is
an automorphism of the session graph, and the rules of :mod:`.rules` commute
with it.  Fix an origin ``o`` in class ``B``: the permutations fixing ``o`` act on
every class independently, with ``B`` split into ``{o}`` and ``B - {o}``.
Everything the exact engine computes for ``o`` is invariant under them.  In
particular, for path attributes ``a``, the set of (holder x in C, sender w in D)
with "x holds ``a`` from w" is an invariant subset of C x D, hence empty or all of
it (for C == D: every pair of distinct members; no node peers with itself).  So
"class C holds ``a`` from class D" stands for exactly that, and the one per-node
rule left, "never send a route back to the peer it came from", becomes a size
test: x in C may send ``a`` learned from D to v in E iff D - {x, v} is not empty.
Every origin in ``B`` behaves the same up to renaming, so results are per origin
*class*, and pair counts are class sizes multiplied out.

Why all origins at once.  The rules do not depend on the prefix, only on class
sizes (through the size tests, where class ``B`` counts one member less for
prefixes originated in ``B``, its origin being split off) and on who originated
it (the origin drops its own prefix).  So one propagation carries, with each
state, the *set of origin classes* it holds for, as a bit mask.  A state is
(holder class, sender class, CLUSTER_LIST, AS_PATH) -> origin classes; the
origin ``o`` of class ``B`` appears only as the sender "origin of B" of the paths
it sends itself, never as a receiver (it would drop its own prefix).

Pruning (see :mod:`.rules`): per (holder, sender), a state is dropped for the
origins for which a subset state is already held; and an export is skipped for
the origins for which a state with subset attributes, the same arrival kind and
any sender was already exported to that neighbour (the receiver keys paths by
sender class, so the new path would land next to a dominating one).  Both keep
exactly the minimal states, so the counts match :mod:`.exact` (tested).

Failures in one run.  The loss of a node shrinks its class by one and changes no
other session (``SessionGraph.without``); the rules see class sizes only through
origin masks.  So a batch of failure scenarios runs as one propagation whose masks
hold one block of origin bits per scenario (:class:`_Scenarios`,
:func:`missing_after`): the paths the scenarios share, nearly all of them, are
walked once instead of once per failed RR.

Cost grows with the UPDATE traffic the configuration causes, not with nodes:
a 5000-node hierarchy (33 RRs) takes a few hundredths of a second; a full mesh
of RRs with distinct cluster IDs, where every RR reflects every other RR's
routes to every RR (about RRs^3 class-level paths), is the expensive case:
about 0.15 s per propagation for 27 RRs over 5000 nodes, and about as much again
for all 27 single-RR failures batched (measured; docs/PERFORMANCE.md).
"""

from __future__ import annotations

import functools
import heapq
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.bgp.verify.fast_result import FastPropagation
from calico_rr.core.bgp.verify.rules import (
    Arrival,
    Attrs,
    Encoded,
    accepts,
    encode,
    export_path,
    may_export,
    order_key,
)

#: An adjacency row: (peer class, kind on this side, kind on the peer's side,
#: origin classes for which the peer class has a member to send to).
_Row = list[tuple[int, Arrival, Arrival, int]]

#: Above this many attribute bits, subset look-ups scan instead of enumerating.
_ENUMERATE_BITS = 6


_SUBMASKS: dict[int, tuple[int, ...]] = {}


def _submasks(mask: int) -> tuple[int, ...]:
    """Every submask of ``mask`` (memoised: the same few masks come up all the time)."""
    got = _SUBMASKS.get(mask)
    if got is None:
        subs = [mask]
        sub = mask
        while sub:
            sub = (sub - 1) & mask
            subs.append(sub)
        got = _SUBMASKS[mask] = tuple(subs)
    return got


def _subset_keys(keys: Mapping[Attrs, object], cl: int, asp: int) -> list[Attrs]:
    """Keys of ``keys`` whose CLUSTER_LIST and AS_PATH are subsets of (cl, asp)."""
    if cl.bit_count() + asp.bit_count() <= _ENUMERATE_BITS:
        if not asp:
            return [(sub, 0) for sub in _submasks(cl) if (sub, 0) in keys]
        return [
            (sub_cl, sub_asp)
            for sub_cl in _submasks(cl)
            for sub_asp in _submasks(asp)
            if (sub_cl, sub_asp) in keys
        ]
    return [(k_cl, k_asp) for k_cl, k_asp in keys if k_cl & ~cl == 0 and k_asp & ~asp == 0]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """Per-graph data: rows with receiver masks, and per-class session facts."""

    enc: Encoded
    scenarios: _Scenarios
    all_bits: int  # every origin class, in every scenario
    rows: list[_Row]
    kind: list[dict[int, Arrival]]  # kind[c][d]: session kind on c's side
    back_ok: list[dict[int, int]]  # back_ok[c][d]: origins for which c may send d's path to d
    sink: list[bool]  # never passes a route on (see _prepare)
    has_client: list[bool]
    has_ebgp: list[bool]


class _Scenarios:
    """Class sizes in each failure scenario, and the origin masks they imply.

    Scenario ``s`` owns bits ``s*k .. s*k + k - 1`` of every origin mask (``k``
    classes): bit ``s*k + b`` stands for "the prefixes of class b, with the
    scenario's nodes failed".  The rules never look at sizes except through the
    masks built here, and they act on each bit alone (the engine was written for
    one bit per origin class), so one propagation answers every scenario at once;
    paths shared by the scenarios are walked once.  Without failures (one
    scenario, nothing removed) the layout is the plain one.
    """

    def __init__(self, sizes: tuple[int, ...], removed: Sequence[Mapping[int, int]]) -> None:
        self.k = k = len(sizes)
        self.block = (1 << k) - 1
        self.per = [[n - rem.get(c, 0) for c, n in enumerate(sizes)] for rem in removed]
        self.all_bits = sum(self.block << (s * k) for s in range(len(removed)))
        self._memo: dict[tuple[int, int], int] = {}

    def receivers(self, e: int, minus: int) -> int:
        """Origins for which class e has a receiver once ``minus`` of its members are
        taken (the sender itself, a member the path may not go back to); class e
        loses its origin member for its own prefixes."""
        got = self._memo.get((e, minus))
        if got is None:
            got = 0
            for s, sizes in enumerate(self.per):
                base = sizes[e] - minus
                if base >= 2:
                    got |= self.block << (s * self.k)
                elif base == 1:
                    got |= (self.block & ~(1 << e)) << (s * self.k)
            self._memo[(e, minus)] = got
        return got

    def origins(self, b: int, e: int) -> int:
        """Bits of class b's own prefix that class e has a member to receive."""
        got = 0
        for s, sizes in enumerate(self.per):
            if sizes[b] and sizes[e] - (e == b) > 0:
                got |= 1 << (s * self.k + b)
        return got


def _prepare(graph: SessionGraph, removed: Sequence[Mapping[int, int]] = ({},)) -> _Prepared:
    """``removed``: one scenario per entry, class -> members failed (see _Scenarios)."""
    enc = encode(graph)
    k = len(enc.sizes)
    scen = _Scenarios(enc.sizes, removed)
    kinds = [dict(row) for row in enc.adj]
    rows: list[_Row] = []
    back_ok: list[dict[int, int]] = []
    for c, row in enumerate(enc.adj):
        rows.append([(d, out, kinds[d][c], scen.receivers(d, d == c)) for d, out in row])
        # Send-back rule as a size test: x in c may send a path learned from class d
        # to v in d iff d - {x, v} (minus d's origin, for d's own prefixes) is not empty.
        back_ok.append({d: scen.receivers(d, 1 + (d == c)) for d, _ in row})
    has_client = [any(out is Arrival.RR_CLIENT for _, out in row) for row in enc.adj]
    has_ebgp = [any(out is Arrival.EBGP for _, out in row) for row in enc.adj]
    return _Prepared(
        enc=enc,
        scenarios=scen,
        all_bits=scen.all_bits,
        rows=rows,
        kind=kinds,
        back_ok=back_ok,
        # A sink holds only iBGP-learned paths and never passes one on: no cluster ID
        # (hence no client sessions, no reflection) and no eBGP session.
        sink=[not enc.cluster_bit[c] and not has_ebgp[c] for c in range(k)],
        has_client=has_client,
        has_ebgp=has_ebgp,
    )


#: states[c][d][(cl, asp)] = origin classes for which class c holds that path from d
#: (d >= number of classes: "the origin of class d - K").
_States = list[dict[int, dict[Attrs, int]]]


#: ``deliver(e, c, back, cl, asp, origins)``: class e receives, over a session of
#: kind ``back`` on its side, the path (cl, asp) from sender c for those origins.
_Deliver = Callable[[int, int, Arrival, int, int, int], None]

#: Held paths waiting to be exported, as a heap in order_key order (see there):
#: (key, holder, sender, arrival, cl, asp).
_Work = list[tuple[tuple[int, int, int], int, int, Arrival, int, int]]

#: pending[(holder, sender, cl, asp)] = origins queued for export with that path.
_Pending = dict[tuple[int, int, int, int], int]


def _run(prep: _Prepared) -> _States:
    """The least fixpoint of export/receive for every prefix (domain.md section 3)."""
    states: _States = [{} for _ in prep.enc.sizes]
    pending: _Pending = {}
    work: _Work = []
    deliver = _deliverer(prep, states, pending, work)
    _originate(prep, deliver)
    _export_all(prep, pending, work, deliver)
    return states


def _deliverer(prep: _Prepared, states: _States, pending: _Pending, work: _Work) -> _Deliver:
    """The receive step: store a path unless one with subset attributes from the
    same sender already covers its origins, and queue it if the holder passes it on."""
    cbit = prep.enc.cluster_bit
    sink, has_client, has_ebgp = prep.sink, prep.has_client, prep.has_ebgp

    def deliver(e: int, c: int, back: Arrival, cl: int, asp: int, bits: int) -> None:
        per = states[e].get(c)
        if per is None:
            per = states[e][c] = {}
        for key in _subset_keys(per, cl, asp):
            bits &= ~per[key]  # a path with smaller attributes from the same sender
        if not bits:
            return
        per[(cl, asp)] = per.get((cl, asp), 0) | bits
        if sink[e] or not may_export(back, cl, cbit[e], has_client[e], has_ebgp[e]):
            return
        item = (e, c, cl, asp)
        if item in pending:
            pending[item] |= bits
        else:
            pending[item] = bits
            heapq.heappush(work, (order_key(back, cl, asp), e, c, back, cl, asp))

    return deliver


def _originate(prep: _Prepared, deliver: _Deliver) -> None:
    """Every origin sends its own prefix to every peer (domain.md section 3)."""
    enc = prep.enc
    k = len(enc.sizes)
    cbit, abit, sizes = enc.cluster_bit, enc.asn_bit, enc.sizes
    for b in range(k):
        if not sizes[b]:
            continue
        for e, out, back, _ in prep.rows[b]:
            bits = prep.scenarios.origins(b, e)
            if not bits:
                continue  # only the origin itself in a self-peering class
            sent = export_path(Arrival.ORIGIN, 0, 0, out, cbit[b], abit[b])
            assert sent is not None
            if accepts(sent[0], sent[1], back, cbit[e], abit[e]):
                deliver(e, k + b, back, sent[0], sent[1], bits)


def _export_all(prep: _Prepared, pending: _Pending, work: _Work, deliver: _Deliver) -> None:
    """Export queued paths, most preferred first, until no delivery adds a path."""
    enc = prep.enc
    k = len(enc.sizes)
    cbit, abit = enc.cluster_bit, enc.asn_bit
    # done[c][arrival][(cl, asp)][t] = (origins exported, origins sent to t), where
    # t is the sender class whose path may not go back to it for some origins
    # (t = -1: no restriction).
    done: list[dict[Arrival, dict[Attrs, dict[int, tuple[int, int]]]]] = [{} for _ in range(k)]
    row_maps: dict[int, dict[int, tuple[int, Arrival, Arrival, int]]] = {}
    while work:
        _, c, d, held, cl, asp = heapq.heappop(work)
        bits = pending.pop((c, d, cl, asp))
        # What exports of paths with subset attributes (any sender) already covered.
        cov: dict[int, int] = {}
        cov_t: dict[int, int] = {}
        done_c = done[c].get(held)
        if done_c is None:
            done_c = done[c][held] = {}
        for key in _subset_keys(done_c, cl, asp):
            for t, (m_all, m_t) in done_c[key].items():
                cov[t] = cov.get(t, 0) | m_all
                if t >= 0:
                    cov_t[t] = cov_t.get(t, 0) | m_t
        covered = functools.reduce(operator.or_, cov.values(), 0)
        cb, ab = cbit[c], abit[c]
        ok_back = prep.back_ok[c][d] if d < k else prep.all_bits
        t_self = -1
        if d < k and ok_back != prep.all_bits:
            # Some origins' paths may not go back to d.  If d would drop this path
            # anyway (its own cluster ID in the list, say), sending it is moot: count
            # it as sent, and so for every superset path (the rules are monotone).
            out_d = prep.kind[c][d]
            back_d = prep.kind[d][c]
            sent = export_path(held, cl, asp, out_d, cb, ab)
            if sent is not None and accepts(sent[0], sent[1], back_d, cbit[d], abit[d]):
                t_self = d
        if bits & ~covered:
            targets = prep.rows[c]
        else:  # only neighbours some earlier export skipped can still need these
            row_map = row_maps.get(c)
            if row_map is None:
                row_map = row_maps[c] = {r[0]: r for r in prep.rows[c]}
            targets = [row_map[t] for t in cov_t if t in row_map]
        sent_by_kind: dict[Arrival, Attrs | None] = {}
        useful = bool(bits & ~covered)
        for e, out, back, receivers in targets:
            if e in cov_t:
                sent_before = cov_t[e]
                for t, m in cov.items():
                    if t != e:
                        sent_before |= m
            else:
                sent_before = covered
            todo = bits & receivers & ~sent_before
            if e == d:
                todo &= ok_back
            if not todo:
                continue
            useful = True
            if out in sent_by_kind:
                sent = sent_by_kind[out]
            else:
                sent = sent_by_kind[out] = export_path(held, cl, asp, out, cb, ab)
            if sent is None or not accepts(sent[0], sent[1], back, cbit[e], abit[e]):
                continue
            deliver(e, c, back, sent[0], sent[1], todo)
        if useful:  # else earlier entries already cover every superset of this path
            entry = done_c.setdefault((cl, asp), {})
            m_all, m_t = entry.get(t_self, (0, 0))
            entry[t_self] = (m_all | bits, m_t | (bits & ok_back if t_self >= 0 else 0))


def _advertised(prep: _Prepared, states: _States) -> tuple[list[dict[int, int]], list[int]]:
    """Per class: peer class -> origins advertised to it; and origins sent back to the origin."""
    enc = prep.enc
    k = len(enc.sizes)
    adv: list[dict[int, int]] = []
    adv_origin: list[int] = []
    for c in range(k):
        kinds = {out for _, out, _, _ in prep.rows[c]}
        # exportable[out][d] = origins for which c holds, from d, a path it sends over `out`
        exportable: dict[Arrival, dict[int, int]] = {out: {} for out in kinds}
        for d, per in states[c].items():
            held = prep.kind[c][d - k if d >= k else d]
            for (cl, asp), origins in per.items():
                for out in kinds:
                    if export_path(held, cl, asp, out, enc.cluster_bit[c], enc.asn_bit[c]):
                        exportable[out][d] = exportable[out].get(d, 0) | origins
        # Origins exported from at least one / at least two sender classes, per kind,
        # so that "from a sender other than e" needs no pass over the senders per e.
        once: dict[Arrival, int] = {}
        twice: dict[Arrival, int] = {}
        for out, by_sender in exportable.items():
            one = two = 0
            for origins in by_sender.values():
                two |= one & origins
                one |= origins
            once[out], twice[out] = one, two
        row_adv: dict[int, int] = {}
        back_to_origin = 0
        for e, out, _, receivers in prep.rows[c]:
            from_e = exportable[out].get(e, 0)
            others = twice[out] | (once[out] & ~from_e)
            row_adv[e] = (others | (from_e & prep.back_ok[c][e])) & receivers
            # to the origin of class e (it is a peer of c's members iff e is): any
            # path not learned from that origin itself
            from_origin = exportable[out].get(k + e, 0)
            not_from_origin = twice[out] | (once[out] & ~from_origin)
            back_to_origin |= not_from_origin & (1 << e)
        adv.append(row_adv)
        adv_origin.append(back_to_origin)
    return adv, adv_origin


#: Scenarios per propagation in :func:`missing_after`: the masks grow with the
#: count (k bits each), and past a few dozen wide integer operations cost more
#: than the paths the scenarios share save.
SCENARIO_BATCH = 48


def missing_after(graph: SessionGraph, failures: Sequence[Iterable[int]]) -> list[int]:
    """For each set of failed nodes, the pairs of surviving nodes that miss a route.

    Equal to ``propagate(graph.without(f)).missing_pairs`` for each ``f`` (tested),
    computed for a batch of scenarios per propagation (see :class:`_Scenarios`):
    the loss of any one node shrinks one class by one and leaves every other
    session as it was (``SessionGraph.without``), so only the size tests differ.
    """
    removed = [Counter(graph.node_class[x] for x in set(failed)) for failed in failures]
    out: list[int] = []
    for start in range(0, len(removed), SCENARIO_BATCH):
        batch = removed[start : start + SCENARIO_BATCH]
        prep = _prepare(graph, batch)
        out.extend(_missing_per_scenario(prep, _run(prep)))
    return out


def _missing_per_scenario(prep: _Prepared, states: _States) -> list[int]:
    scen = prep.scenarios
    held = [0] * scen.k
    for c, per_sender in enumerate(states):
        for per in per_sender.values():
            for origins in per.values():
                held[c] |= origins
    out: list[int] = []
    for s, sizes in enumerate(scen.per):
        total = 0
        for c, n_c in enumerate(sizes):
            got = held[c] >> (s * scen.k)
            for b, n_b in enumerate(sizes):
                if n_b and not got >> b & 1:
                    total += n_b * (n_c - (c == b))
        out.append(total)
    return out


def propagate(graph: SessionGraph, *, updates: bool = True) -> FastPropagation:
    """Propagate every node's prefix over ``graph``, all prefixes at once, class by class."""
    prep = _prepare(graph)
    states = _run(prep)
    held: list[int] = []
    min_cl: list[tuple[tuple[int, int], ...]] = []
    heard: list[tuple[tuple[int, int], ...]] = []
    for per_sender in states:
        by_length: dict[int, int] = {}
        senders: list[tuple[int, int]] = []
        for d, per in sorted(per_sender.items()):
            got = 0
            for (cl, _), origins in per.items():
                by_length[cl.bit_count()] = by_length.get(cl.bit_count(), 0) | origins
                got |= origins
            senders.append((d, got))
        held.append(functools.reduce(operator.or_, by_length.values(), 0))
        min_cl.append(tuple(sorted(by_length.items())))
        heard.append(tuple(senders))
    adv, adv_origin = _advertised(prep, states) if updates else (None, None)
    return FastPropagation(
        graph=graph,
        enc=prep.enc,
        held=tuple(held),
        min_cl=tuple(min_cl),
        heard=tuple(heard),
        adv=None if adv is None else tuple(adv),
        adv_origin=None if adv_origin is None else tuple(adv_origin),
    )
