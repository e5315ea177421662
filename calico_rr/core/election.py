"""Leader-election timing (``calico-rr run --leader-elect-*``), read and checked once.

Each of the three values is seconds ("15", "2.5") or a Go duration ("15s",
"1m30s"), the spellings kube-controller-manager's flags take.  Unset values follow
the lease duration: the renew deadline is 2/3 of it and the retry period 1/5 (15 s
-> 10 s and 3 s).

The order is client-go's: a leader must give up (renew deadline) before its Lease
can run out (lease duration) and another replica take over, and it must get more
than one attempt at renewing within the deadline (retry period):

    retry period < renew deadline < lease duration

The lease duration is whole seconds on the wire (a Lease's
``leaseDurationSeconds``, an etcd lease's TTL), so it is at least 1 s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from calico_rr.core.values import parse_duration
from calico_rr.errors import ConfigError, InputError, safe_repr

_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
#: the smallest lease duration: both datastores keep it in whole seconds
MIN_LEASE_DURATION = 1.0


@dataclass(frozen=True, slots=True)
class ElectionTiming:
    lease_duration: float
    renew_deadline: float
    retry_period: float


def seconds_or_duration(text: str, *, flag: str) -> float:
    """Seconds from "15" / "2.5" (plain seconds) or "15s" / "1m30s" (a Go duration)."""
    value = text.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        return parse_duration(value)
    except ConfigError:
        raise InputError(
            f"{safe_repr(text)} is neither seconds nor a duration (e.g. 15, 15s, 1m30s)",
            field=flag,
        ) from None


def election_timing(
    lease_duration: str, renew_deadline: str | None = None, retry_period: str | None = None
) -> ElectionTiming:
    """The three values, defaults filled in, or InputError naming the flag at fault."""
    lease = seconds_or_duration(lease_duration, flag="--leader-elect-lease-duration")
    if lease < MIN_LEASE_DURATION:
        raise InputError(
            f"must be at least {MIN_LEASE_DURATION:g}s (a Lease holds whole seconds), "
            f"got {lease:g}s",
            field="--leader-elect-lease-duration",
        )
    renew = (
        lease * 2 / 3
        if renew_deadline is None
        else seconds_or_duration(renew_deadline, flag="--leader-elect-renew-deadline")
    )
    retry = (
        lease / 5
        if retry_period is None
        else seconds_or_duration(retry_period, flag="--leader-elect-retry-period")
    )
    if not renew < lease:
        raise InputError(
            f"the renew deadline ({renew:g}s) must be shorter than the lease duration "
            f"({lease:g}s): a leader must step down before its Lease can expire",
            field="--leader-elect-renew-deadline",
        )
    if not 0 < retry < renew:
        raise InputError(
            f"the retry period ({retry:g}s) must be above 0 and shorter than the renew "
            f"deadline ({renew:g}s): a leader needs more than one try at renewing",
            field="--leader-elect-retry-period",
        )
    return ElectionTiming(lease, renew, retry)
