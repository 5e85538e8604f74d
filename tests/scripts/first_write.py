"""Run by tests/tracking/test_first_write.py: one of several processes that write first to a new store.

It does what a sweep worker or ``lit-nn fit`` does first (``prepare_store``, ``ensure_experiment``,
``create_run``, end the run FINISHED), with MLflow already imported. It prints ``ready``, waits for
``go`` on stdin (so that all of them touch the store together), then prints the run's id.

usage: first_write.py EXPERIMENT NAME   (the store: MLFLOW_TRACKING_URI)
"""

import sys

import mlflow.tracking  # noqa: F401 - imported before the barrier, so all start writing at once

from lit_nn.tracking.lifecycle import RunStatus, end_run
from lit_nn.tracking.store import ensure_experiment, prepare_store, tracking_client

experiment, name = sys.argv[1], sys.argv[2]
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"

uri = prepare_store()
experiment_id = ensure_experiment(experiment, uri)
client = tracking_client(uri)
run = client.create_run(experiment_id, run_name=name)
end_run(client, run.info.run_id, RunStatus.FINISHED)
print(run.info.run_id, flush=True)
