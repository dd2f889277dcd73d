"""A sweep on a two-node local Ray cluster that loses a node mid-sweep (run by test_sweep.py).

Runs in its own process, because a process joins one Ray cluster at a time and
the test session already has its embedded one. Both nodes are real raylets on
loopback addresses (127.0.0.2 head, 127.0.0.3 worker), started with Ray's own
``ray.cluster_utils.Cluster``. Once both nodes are training a trial, the worker
node is killed without warning; the sweep must still finish every trial.

    python tests/multinode_driver.py SWEEP_FILE SWEEP_DIR  -> prints a JSON summary
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from cotsweep.sweep.engine import launch  # first: sets Ray's environment before ray is imported


def main(sweep_file: str, sweep_dir: str) -> None:
    from ray.cluster_utils import Cluster

    d = Path(sweep_dir)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"node_ip_address": "127.0.0.2", "num_cpus": 1, "include_dashboard": False},
    )
    worker = cluster.add_node(node_ip_address="127.0.0.3", num_cpus=1)
    killed = {}

    def kill_when_both_nodes_train() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            training = [
                t
                for t in d.glob("trials/*")
                if (t / "metrics.jsonl").exists() and not (t / "result.json").exists()
            ]
            if len(training) >= 2:
                killed["at"] = time.time()
                killed["training"] = len(training)
                cluster.remove_node(worker, allow_graceful=False)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_both_nodes_train, daemon=True)
    killer.start()
    try:
        out = launch(sweep_file, [], d, address=cluster.address, progress=False)
    finally:
        cluster.shutdown()
    print(
        json.dumps(
            {"counts": out.counts, "ok": out.ok, "killed": bool(killed), "failures": out.failures}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
