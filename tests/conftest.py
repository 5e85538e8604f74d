"""Shared fixtures: every test gets its own MLflow store and never touches ./mlruns."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store built once per session: building one runs every schema
    migration (seconds); copying the finished file takes milliseconds."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture(autouse=True)
def tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_store: Path) -> str:
    """A fresh SQLite tracking store per test, also seen by subprocesses (via the env var)."""
    store = tmp_path / "mlruns"
    store.mkdir()
    shutil.copyfile(migrated_store, store / "mlflow.db")
    uri = f"sqlite:///{store}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return uri


@pytest.fixture
def client(tracking_store: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_store)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.gpu`` (``gpu(count=2)``) tests need that many CUDA GPUs: where there are fewer
    they are skipped, with the reason, before any fixture or Lightning code can touch CUDA."""
    needs = {item: item.get_closest_marker("gpu").kwargs.get("count", 1)
             for item in items if item.get_closest_marker("gpu") is not None}
    if not needs:
        return
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for item, count in needs.items():
        if have < count:
            found = "no CUDA GPU (torch.cuda.is_available() is False)" if have == 0 else f"{have} CUDA GPU(s)"
            item.add_marker(pytest.mark.skip(reason=f"needs {count} CUDA GPU(s), this machine has {found}"))


def runs_of(client, experiment: str):
    """All runs of an experiment (any status), oldest first."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment!r} was not created"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return sorted(runs, key=lambda r: r.info.start_time)


def shared_data(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test when it is absent (a user's fresh clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


os.environ.setdefault("PYTHONHASHSEED", "0")
