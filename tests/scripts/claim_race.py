"""Run by tests/sweeps/test_claims.py: one of several claimers racing over a sweep's points.

For each point, in this claimer's own shuffled order, it goes through the sweep worker's own
claim path (``run_claimed``): claim, skip if another claimer has it or FINISHED it, else "train"
(create the point's FINISHED run) and release. It prints ``ready`` once connected, waits for
``go`` on stdin (so that all claimers start together), and prints one line per point it ran.

usage: claim_race.py EXPERIMENT_ID SWEEP POINTS SEED
"""

import random
import sys

from lit_nn.core.names import Tag
from lit_nn.sweeps.claims import claim_prefix
from lit_nn.sweeps.sweep import Sweep
from lit_nn.sweeps.worker import run_claimed
from lit_nn.tracking.lifecycle import RunStatus, end_run
from lit_nn.tracking.store import tracking_client

experiment_id, sweep, count, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
client = tracking_client()
client.search_experiments(max_results=1)  # connected
points = [f"p{i:03d}" for i in range(count)]
random.Random(seed).shuffle(points)
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"

for point in points:
    def train(point: str = point) -> dict:
        run = client.create_run(experiment_id, run_name=point, tags={
            Tag.SWEEP: sweep, Tag.SWEEP_ROLE: "point", Tag.CONFIG_HASH: point})
        end_run(client, run.info.run_id, RunStatus.FINISHED)
        print(f"ran {point}", flush=True)
        return {"status": "FINISHED"}

    job = {"experiment_id": experiment_id, "claim": {"prefix": claim_prefix(Sweep(sweep, experiment_id), point),
                                                     "lease_s": 300.0, "sweep": sweep, "config_hash": point}}
    run_claimed(job, train)
print("done", flush=True)
