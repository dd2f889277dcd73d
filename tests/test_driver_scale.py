"""The driver at scale: a bounded window of trials in Ray's hands, nothing held per finished trial.

The window follows the cluster (a few trials per slot) instead of handing Ray
every trial at once, which made each ``ray.wait`` round and each heartbeat pass
scan the whole sweep; the autoscaler sees the remaining demand through a
resource request instead. Speed itself is measured in benchmarks/driver_scale.py.
"""

from __future__ import annotations

from pathlib import Path

from sweep_support import sweep_file

import cotsweep  # noqa: F401  (sets Ray's environment before ray is imported)
from cotsweep.ledger import Ledger
from cotsweep.sweep import stream as stream_mod
from cotsweep.sweep.engine import Driver, prepare
from cotsweep.sweep.stream import Finished, RayStream, Window, slots


def test_slots_count_trials_by_their_scarcest_resource() -> None:
    cluster = {"CPU": 16.0, "GPU": 2.0}
    assert slots(cluster, {"CPU": 1.0}) == 16
    assert slots(cluster, {"CPU": 1.0, "GPU": 0.25}) == 8
    assert slots(cluster, {"CPU": 4.0, "GPU": 0.25}) == 4
    assert slots({"CPU": 16.0}, {"CPU": 1.0, "GPU": 1.0}) == 0  # no GPU node yet
    assert slots(cluster, {}) == 16


def test_the_stream_never_has_more_in_flight_than_its_window_as_the_window_changes(
    tmp_path: Path, ray_local: None
) -> None:
    import ray

    @ray.remote(num_cpus=1)
    def trial(i: int) -> int:
        return i

    sizes = iter([1, 1, 3, 3, 3, 2] + [4] * 100)
    current = {"limit": 0}

    def limit() -> int:
        current["limit"] = next(sizes)
        return current["limit"]

    seen: list[tuple[int, int]] = []  # (in flight before a submission, the window then)
    done: list[int] = []
    ledger = Ledger(tmp_path, create=True)
    s: RayStream[int] = RayStream(
        ledger,
        key=str,
        submit=lambda i: (seen.append((len(s.inflight), current["limit"])), trial.remote(i))[1],
        finish=lambda i, ref, tries, t: (
            done.append(ray.get(ref)),
            Finished({"state": "done"}, "done"),
        )[1],
        limit=limit,
    )
    s.run(range(40))
    ledger.close()
    assert sorted(done) == list(range(40))
    assert all(before < window for before, window in seen)
    assert max(before for before, _ in seen) == 3  # the window of 4 was filled


def autoscaler_request() -> list[dict]:
    """The resource request Ray's autoscaler reads, as it stands in Ray's internal store."""
    import json

    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(ray_constants.AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
    return json.loads(raw) if raw else []


def test_a_cluster_window_covers_the_cluster_and_asks_the_autoscaler_for_the_rest(
    ray_local: None,
) -> None:
    """Ray here has 2 CPUs and no autoscaler; the request is read back where one would read it."""
    w = Window({"CPU": 1.0, "GPU": 0.0}, on_cluster=True, remaining=500, fixed=None)
    try:
        assert w() == stream_mod.CLUSTER_MIN_WINDOW  # 2 slots x 2 is less than the floor
        assert autoscaler_request() == [{"CPU": 1.0}] * 500
        w.remaining = 20
        w._checked = float("-inf")  # as after REFRESH_S
        w()
        assert autoscaler_request() == [{"CPU": 1.0}] * 20
    finally:
        w.close()
    assert autoscaler_request() == []  # withdrawn at the end of the sweep
    embedded = Window({"CPU": 1.0}, on_cluster=False, remaining=500, fixed=None)
    assert embedded() == stream_mod.PER_SLOT * 2
    capped = Window({"CPU": 1.0}, on_cluster=True, remaining=500, fixed=3)
    try:
        assert capped() == 3
        assert autoscaler_request() == [{"CPU": 1.0}] * 3  # no room asked for beyond the cap
    finally:
        capped.close()


def test_the_driver_keeps_no_parsed_config_of_a_finished_trial(
    tmp_path: Path, ray_local: None
) -> None:
    sw = sweep_file(tmp_path, "views", {"seed": "0,1,2,3,4"}, steps=0)
    ledger = prepare(str(sw), [], tmp_path / "sweep").ledger
    try:
        rows = ledger.trials(("pending",))
        out = Driver(ledger, progress=False).run(rows)
    finally:
        ledger.release()
        ledger.close()
    assert out.counts["done"] == 5
    assert not [r.id for r in rows if "_view" in r.__dict__]


def test_the_longest_trials_are_handed_to_ray_first(tmp_path: Path, ray_local: None) -> None:
    """Largest first: a long trial started last would run alone at the end while slots idle."""
    sw = sweep_file(tmp_path, "lpt", {"model.depth": "1,3,2", "seed": "0,1"}, steps=2)
    submitted: list[int] = []
    ledger = prepare(str(sw), [], tmp_path / "sweep").ledger
    try:
        rows = ledger.trials(("pending",))
        assert sorted(r.axes["model.depth"] for r in rows) == [1, 1, 2, 2, 3, 3]
        Driver(
            ledger,
            progress=False,
            max_concurrent=1,
            on_event=lambda status, out: submitted.append(out["result"]["depth"]),
        ).run(rows)
    finally:
        ledger.release()
        ledger.close()
    assert submitted == [3, 3, 2, 2, 1, 1]


def test_heartbeats_skip_fsync_while_records_keep_it(tmp_path: Path, monkeypatch) -> None:
    """The heartbeat, rewritten every few seconds and read only while its trial lives, is
    renamed into place without fsyncs; a result or a config still gets both."""
    import os

    from cotsweep import files
    from cotsweep.trial import write_heartbeat

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    write_heartbeat(tmp_path, 7, 0.0)
    assert files.read_json(tmp_path / files.HEARTBEAT)["step"] == 7 and synced == []
    assert [p.name for p in tmp_path.iterdir()] == [files.HEARTBEAT]  # no temporary left
    files.write_json(tmp_path / files.RESULT, {"acc": 1.0})
    assert len(synced) == 2  # the file, then its directory
