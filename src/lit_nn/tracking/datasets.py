"""The run's data in MLflow's dataset records: the runs table's Datasets column, ``mlflow.log_input``.

Every fit, validate, test and predict run logs, for each split it used, a dataset named for what
it is (``mnist-sample-5k``, ``mnist``, ``fashion-mnist``, ``pydoc-topics``, a text file's name), with
the context ``training``, ``validation`` or ``test``. Its source is the first file read (a local
dataset source); its digest is a SHA-256 (first 16 hex digits) of the bytes of every file read and of
which of their items the split holds (:class:`lit_nn.data.datamodule.DataInput`), so runs on the
same files with the same split share it, and any other data never does; its profile holds the
split, its size and the ``data_source`` sentence the run also records as a param.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from lit_nn.data.datamodule import DataInput, LitDataModule

CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
CONTEXT_TAG = "mlflow.data.context"  # mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT, without importing MLflow


@cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read once per process while the file is unchanged."""
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def input_digest(data: DataInput) -> str:
    """16 hex digits over the files' bytes and the split's selection of their items."""
    parts = [file_sha256(path) for path in data.files] + [data.selection]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def split_dataset(data: DataInput, split: str, source: str | None) -> Any:
    """The MLflow dataset (metadata only, nothing uploaded) of one split."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    class SplitDataset(MetaDataset):
        @property
        def profile(self) -> dict[str, Any]:
            return {"split": split, "size": data.size, "selection": data.selection, "data_source": source}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    return SplitDataset(LocalArtifactDatasetSource(str(data.files[0])), name=data.name, digest=input_digest(data))


def dataset_record(dataset: Any) -> Any:
    """The ``mlflow.entities.Dataset`` of an ``mlflow.data`` dataset, from its public ``to_dict``
    (what ``mlflow.log_input`` logs, for a run that is not the fluent API's active run)."""
    from mlflow.entities import Dataset

    fields = dataset.to_dict()
    return Dataset(name=fields["name"], digest=fields["digest"], source_type=fields["source_type"],
                   source=fields["source"], schema=fields.get("schema"), profile=fields.get("profile"))


INSERT_RACE_TRIES = 3
# MLflow's SQL store looks a dataset up by (experiment, name, digest), then inserts it if absent, in
# two statements: two runs logging the same new dataset at once can both miss it, and the second
# insert then fails on the table's key (PostgreSQL's constraint "dataset_pk", SQLite's "UNIQUE
# constraint failed: datasets..."). The failed request's transaction is rolled back whole, so asking
# again is safe, and it finds the winner's row and links the run to it.
_DATASET_KEY_VIOLATIONS = ('"dataset_pk"', "UNIQUE constraint failed: datasets.")


def lost_dataset_insert_race(error: Exception) -> bool:
    """Whether ``error`` is the dataset key violation of a concurrent first insert (see above)."""
    return any(text in str(error) for text in _DATASET_KEY_VIOLATIONS)


def log_data_inputs(client: Any, run_id: str, datamodule: Any, splits: tuple[str, ...]) -> list[str]:
    """Log ``splits`` of ``datamodule`` that its setup loaded to the run; return the splits logged."""
    from mlflow.entities import DatasetInput, InputTag

    if not isinstance(datamodule, LitDataModule):
        return []
    chosen = [split for split in splits if split in datamodule.inputs]
    inputs = [DatasetInput(dataset_record(split_dataset(datamodule.inputs[split], split, datamodule.source)),
                           [InputTag(CONTEXT_TAG, CONTEXTS[split])]) for split in chosen]
    if inputs:
        for attempt in range(INSERT_RACE_TRIES):
            try:
                client.log_inputs(run_id, datasets=inputs)
                break
            except Exception as error:  # noqa: BLE001 - MLflow raises its own RestException/MlflowException
                if attempt + 1 == INSERT_RACE_TRIES or not lost_dataset_insert_race(error):
                    raise
    return chosen
