"""The ray.wait loop that the sweep driver and the Hydra launcher share.

Submit up to ``limit`` items, wake on the first finished one and take every
other one already finished, record each batch of outcomes in the ledger in one
transaction, requeue what the caller says to retry, and beat the running
trials' heartbeats now and then. What an item is, how it is submitted and what
its outcome means stay with the caller (``submit`` and ``finish``).

Every round costs the driver in proportion to what is in flight, never to the
whole sweep: the queue is a deque, ``ray.wait`` and the heartbeat pass see only
the window of ``limit`` items (which the caller may size from the cluster as it
grows, ``limit`` being a callable), so 100,000 trials cost per trial what 1,000 do.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cotsweep.ledger import Ledger
from cotsweep.sweep import cluster

HEARTBEAT_EVERY_S = 5.0
T = TypeVar("T")

PER_SLOT = 2  # trials in flight per slot: one running, one queued behind it in Ray
CLUSTER_MIN_WINDOW = 16  # on a cluster with no room yet, still some demand in Ray's queue
MAX_REQUESTED = 4096  # trial-sized bundles asked of the autoscaler at most
REFRESH_S = 10.0  # how often a cluster's size and the autoscaler request are looked at again


def slots(resources: dict[str, float], shape: dict[str, float]) -> int:
    """How many trials of ``shape`` ({"CPU": .., "GPU": ..}) the cluster's resources hold."""
    fits = [resources.get(k, 0.0) / need for k, need in shape.items() if need > 0]
    return int(min(fits)) if fits else int(resources.get("CPU", 1))


class Window:
    """How many trials are handed to Ray at once: a few per slot the cluster has now.

    Embedded, ``PER_SLOT`` per slot keeps every core busy without flooding Ray.
    On a cluster the window follows the cluster as it grows (looked at every
    ``REFRESH_S``), and the autoscaler sees the whole remaining demand through
    a resource request of one trial-sized bundle per remaining trial (at most
    ``MAX_REQUESTED``), cleared by :meth:`close` — not through a queue of every
    trial, which cost the driver a scan of all of them at every round.
    ``fixed`` (``--max-concurrent``) sets the size, and caps the request.
    """

    def __init__(
        self, shape: dict[str, float], *, on_cluster: bool, remaining: int, fixed: int | None
    ):
        self.shape = {k: v for k, v in shape.items() if v > 0}
        self.on_cluster, self.fixed = on_cluster, fixed
        self.remaining = remaining  # the caller counts it down as trials finish for good
        self._size, self._checked, self._requested = 1, float("-inf"), None

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self._checked > REFRESH_S:
            self._checked = now
            if not self.fixed:
                have = slots(cluster.cluster_resources(), self.shape)
                self._size = PER_SLOT * max(1, have)
                if self.on_cluster:
                    self._size = max(self._size, CLUSTER_MIN_WINDOW)
            if self.on_cluster:  # room for what remains, or for what may run at once
                want = min(self.remaining, self.fixed or MAX_REQUESTED, MAX_REQUESTED)
                if want != self._requested:
                    cluster.request_trials(self.shape, want)
                    self._requested = want
        return self.fixed or self._size

    def close(self) -> None:
        if self._requested:
            cluster.request_trials(self.shape, 0)
            self._requested = None


@dataclass
class Finished:
    """What a finished item means: its ledger columns, an event name, and whether to run it again."""

    columns: dict[str, Any]
    event: str
    retry: bool = False
    notes: list[tuple[str, str | None]] = field(default_factory=list)  # the trial's own events


class RayStream(Generic[T]):
    def __init__(
        self,
        ledger: Ledger,
        *,
        key: Callable[[T], Hashable],
        submit: Callable[[T], Any],
        finish: Callable[[T, Any, int, float], Finished],
        limit: int | Callable[[], int],
        heartbeat: Callable[[list[T]], None] | None = None,
        stopping: Callable[[], int] = lambda: 0,
        on_round: Callable[[int], None] | None = None,
    ):
        self.ledger, self.key, self.submit, self.finish = ledger, key, submit, finish
        self.limit, self.heartbeat, self.stopping, self.on_round = (
            limit,
            heartbeat,
            stopping,
            on_round,
        )
        self.inflight: dict[Any, T] = {}  # ref -> item; what is left here when run() stops early
        self.cancelled: dict[Hashable, str] = {}  # key -> why, for items cancelled one by one

    def run(self, items: Iterable[T]) -> None:
        """Until every item is finished (retries included), or ``stopping()`` says so.

        ``stopping() == 1``: submit nothing more, wait for what runs; ``>= 2``: return at once.
        """
        import ray

        queue = deque(items)
        tries: dict[Hashable, int] = {}
        started: dict[Hashable, float] = {}
        last_beat = time.monotonic()
        while queue or self.inflight:
            if self.stopping() >= 2:
                return
            submitted = []
            limit = self.limit() if callable(self.limit) else self.limit
            while queue and len(self.inflight) < limit and not self.stopping():
                item = queue.popleft()
                k = self.key(item)
                tries[k] = tries.get(k, 0) + 1
                started[k] = time.time()
                self.inflight[self.submit(item)] = item
                submitted.append((k, {"state": "running", "started": started[k], "error": None}))
            if submitted:
                self.ledger.update(submitted, [(k, "submitted", None) for k, _ in submitted])
            if not self.inflight:
                if self.stopping():
                    return
                continue
            # wake on the first result, then take every other one already finished
            ready, rest = ray.wait(list(self.inflight), num_returns=1, timeout=0.5)
            if ready and rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            changes, events = [], []
            for ref in ready:
                item = self.inflight.pop(ref)
                k = self.key(item)
                done = self.finish(item, ref, tries[k], started[k])
                if not done.retry:  # nothing of a finished item stays behind
                    del tries[k], started[k]
                changes.append((k, done.columns))
                events += [(k, name, detail) for name, detail in done.notes]
                events.append((k, done.event, done.columns.get("error")))
                if done.retry:
                    queue.append(item)
            if changes:
                self.ledger.update(changes, events)
            if self.heartbeat is not None and time.monotonic() - last_beat > HEARTBEAT_EVERY_S:
                last_beat = time.monotonic()
                self.heartbeat(list(self.inflight.values()))
            if self.on_round is not None:
                self.on_round(len(self.inflight))

    def cancel_items(self, reasons: dict[Hashable, str]) -> None:
        """Cancel some running items (stalled ones); each still comes back through ``finish``,
        which finds why in :attr:`cancelled`."""
        import ray

        for ref, item in list(self.inflight.items()):
            k = self.key(item)
            if k in reasons:
                self.cancelled[k] = reasons[k]
                ray.cancel(ref, force=True)

    def cancel(self, why: str, record: bool = True) -> None:
        """Stop what runs at once; it goes back to pending (its checkpoints stay). ``record``
        False: the ledger is not written (it has failed); the rows stay running, and the
        next driver, holding the lease, puts them back."""
        import ray

        for ref in self.inflight:
            ray.cancel(ref, force=True)
        items = list(self.inflight.values())
        self.inflight.clear()
        if record:
            self.ledger.update(
                [(self.key(i), {"state": "pending"}) for i in items],
                [(self.key(i), "cancelled", why) for i in items],
            )
