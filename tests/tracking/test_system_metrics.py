"""``--system_metrics true``: MLflow's system metrics in the fit's run (lit_nn.tracking.system_metrics)."""

from __future__ import annotations

from conftest import runs_of
from helpers import run_main

TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--log_model", "false",
        "--dynamics", "false"]


def test_system_metrics_record_cpu_utilization_only_when_asked(client, capsys):
    on = run_main(capsys, "fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "sys", "--run_name", "on",
                  "--system_metrics", "true", *TINY)
    assert on.returncode == 0, on.stderr[-3000:]
    off = run_main(capsys, "fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "sys", "--run_name", "off",
                   *TINY)
    assert off.returncode == 0, off.stderr[-3000:]
    with_metrics, without = runs_of(client, "sys")
    history = client.get_metric_history(with_metrics.info.run_id, "system/cpu_utilization_percentage")
    assert history and all(0.0 <= m.value <= 100.0 * 1024 for m in history)  # one sample at least: the fit's last
    assert with_metrics.data.metrics["system/system_memory_usage_megabytes"] > 0
    assert with_metrics.info.status == "FINISHED"
    assert not [key for key in without.data.metrics if key.startswith("system/")]
