"""Copying ended runs to another tracking store: a learner's ``mlruns/`` to the team server.

Everything goes through MLflow's client, so the copy is what the target's own API accepts. A
copied run is a new run on the target (MLflow gives it a new id) with the source's name, status,
start and end time, params, tags, every metric's full history (step, timestamp, value), its
artifact tree and its logged models. What differs, and why:

- ``mlflow.parentRunId`` names the parent's copy (run ids are the target's), so sweeps stay nested;
- ``copied_from`` (the source store, without credentials) and ``copied_from_run`` (the source run
  id) are added: a second copy finds the run by them and skips it;
- a logged model (``runs:/<id>/model``) is a new logged model of the copy, with a new id and
  creation time (MLflow sets both); its ``MLmodel`` file names the copy's run and model; its
  ``mlflow.modelVersions`` tag is dropped, since the Model Registry is not copied;
- a FAILED or KILLED run's local ``last.ckpt`` (kept beside the store, not among the artifacts)
  goes along as ``checkpoints/last.ckpt``, where ``lit-nn fit --resume RUN_ID`` finds it on a server.

Only ended runs (FINISHED, FAILED, KILLED) are copied: a RUNNING run is still changing, its copy
would stay RUNNING on the target with no process to end it, and a second copy would skip it as
already there. A copy is created RUNNING, filled, and only then given its final status; a copy
that fails midway is marked FAILED with the reason and deleted, so the target never shows half
a run, and the next copy starts it afresh.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lit_nn.core.errors import UserError
from lit_nn.core.names import Tag
from lit_nn.core.signals import Terminated
from lit_nn.tracking.lifecycle import RunStatus, end_run, failure_reason, is_interrupt
from lit_nn.tracking.listing import search_all_runs
from lit_nn.tracking.store import (
    DATABASE_SCHEMES,
    SERVER_SCHEMES,
    SQLITE_PREFIX,
    artifact_location,
    check_server,
    tracking_client,
)

COPY_FAILED = "copy failed: "  # failure_reason of a copy that did not complete (it is deleted)
ENDED = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)

Say = Callable[[str], None]


@dataclass
class CopyReport:
    """What a copy did, run by run (source id → target id)."""

    target: str
    copied: dict[str, str] = field(default_factory=dict)
    already: dict[str, str] = field(default_factory=dict)
    not_ended: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"copy: {len(self.copied)} run(s) copied to {self.target}, {len(self.already)} already there"
        if self.not_ended:
            text += f", {len(self.not_ended)} not copied (not ended yet)"
        return text


def check_target(uri: str, source_uri: str) -> str:
    """Refuse a target that cannot take the copy, in one sentence, before anything is written.

    A database URI other than SQLite is refused: a team database is reached through its
    tracking server, which also stores the artifacts (a database alone has nowhere to put them).
    """
    uri = uri.strip().rstrip("/")
    shown = without_credentials(uri)
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    base = scheme.split("+", 1)[0]
    if base not in (*SERVER_SCHEMES, "sqlite"):
        why = ("is a database: copy through its tracking server, which stores the artifacts too" if base in
               DATABASE_SCHEMES else f"has the scheme {scheme!r}, not a tracking store's" if scheme else "has no scheme")
        raise UserError(f"--copy_to {shown!r} {why}; give the team server's address, e.g. "
                        "--copy_to http://tracking.lab.org:5000 (or sqlite:///PATH/mlflow.db for another local store)")
    if _store_key(uri) == _store_key(source_uri):
        raise UserError(f"--copy_to {shown!r} is the store the runs are read from; name another store "
                        "(MLFLOW_TRACKING_URI, or the local mlruns/ when it is unset, is the source)")
    if base in SERVER_SCHEMES:
        try:
            check_server(uri)
        except UserError as err:  # its advice is about MLFLOW_TRACKING_URI; here the address is --copy_to's
            raise UserError(f"--copy_to: {str(err).split('; start it')[0]}") from None
    return uri


def _store_key(uri: str) -> str:
    if uri.startswith(SQLITE_PREFIX):
        return SQLITE_PREFIX + str(Path(uri[len(SQLITE_PREFIX):].split("?", 1)[0]).resolve())
    return uri.rstrip("/")


def without_credentials(uri: str) -> str:
    """``scheme://user:password@host/...`` without ``user:password@``: URIs are printed and recorded."""
    parts = urlsplit(uri)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl() if "@" in parts.netloc else uri


def store_label(uri: str) -> str:
    """The source store as its copies record it: without credentials, and a local file with
    its host (the same path on two laptops is two stores)."""
    uri = without_credentials(uri)
    return f"{uri} on {socket.gethostname()}" if uri.startswith(SQLITE_PREFIX) else uri


def open_target(uri: str) -> Any:
    """The target's client, after one read: a store that cannot be read is one sentence, not a
    traceback halfway through the first run."""
    client = tracking_client(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - MLflow's errors vary by store
        raise UserError(f"--copy_to {without_credentials(uri)}: cannot read the store ({_first_line(err)})") from None
    return client


def _first_line(err: BaseException) -> str:
    text = getattr(err, "message", None) or str(err) or type(err).__name__
    return text.strip().splitlines()[0][:300]


# -- which runs ------------------------------------------------------------------------------
def select_runs(source: Any, experiment_ids: Sequence[str], status: str | None = None,
                refs: Sequence[str] | None = None) -> list[Any]:
    """The runs to copy, parents before their children: those named by ``refs`` (ids or unique
    prefixes, with the runs nested under them) or all, of ``status`` if given; plus every
    ancestor whatever its status, since a nested run is copied under its parent's copy."""
    runs = search_all_runs(source, experiment_ids)
    by_id = {r.info.run_id: r for r in runs}
    if refs:
        chosen = {_resolve(ref, by_id) for ref in refs}
        children: dict[str, list[str]] = {}
        for run in runs:
            children.setdefault(run.data.tags.get(Tag.PARENT_RUN_ID, ""), []).append(run.info.run_id)
        stack = list(chosen)
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in chosen:
                    chosen.add(child)
                    stack.append(child)
    else:
        chosen = set(by_id)
    if status:
        chosen = {i for i in chosen if by_id[i].info.status == status}
    for run_id in list(chosen):
        parent = by_id[run_id].data.tags.get(Tag.PARENT_RUN_ID)
        while parent and parent not in chosen:
            found = by_id.get(parent) or _get_active_run(source, parent)
            if found is None:
                break
            by_id[parent] = found
            chosen.add(parent)
            parent = found.data.tags.get(Tag.PARENT_RUN_ID)

    def depth(run_id: str) -> int:
        seen = set()
        while run_id in by_id and run_id not in seen:
            seen.add(run_id)
            run_id = by_id[run_id].data.tags.get(Tag.PARENT_RUN_ID, "")
        return len(seen)

    return sorted((by_id[i] for i in chosen), key=lambda r: (depth(r.info.run_id), r.info.start_time or 0))


def _resolve(ref: str, by_id: dict[str, Any]) -> str:
    ref = ref.strip().lower()
    if ref in by_id:
        return ref
    matches = [run_id for run_id in by_id if ref and run_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UserError(f"--run {ref} matches {len(matches)} runs; give more of the id")
    raise UserError(f"--run {ref}: no such run in the experiments being copied; "
                    "see 'lit-nn runs' for the ids (the first 8 characters are enough)")


def _get_active_run(client: Any, run_id: str) -> Any:
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - a parent deleted from the store
        return None
    return run if run.info.lifecycle_stage == "active" else None


# -- copying --------------------------------------------------------------------------------
def copy_runs(source: Any, source_uri: str, target_uri: str, experiment_ids: Sequence[str],
              status: str | None = None, refs: Sequence[str] | None = None, say: Say = print) -> CopyReport:
    """Copy the selected runs (see :func:`select_runs`) to ``target_uri``, one progress line per
    run and a summary; a run that fails stops the copy with a UserError (what failed is usually
    the target, and so would every following run)."""
    target_uri = check_target(target_uri, source_uri)
    runs = select_runs(source, experiment_ids, status, refs)
    report = CopyReport(without_credentials(target_uri))
    if not runs:
        say("copy: no runs to copy" + (f" with status {status}" if status else ""))
        return report
    target = open_target(target_uri)
    origin = store_label(source_uri)
    experiments = {e.experiment_id: e for e in source.search_experiments()}
    target_experiments: dict[str, str] = {}
    for n, run in enumerate(runs, 1):
        run_id, parent = run.info.run_id, run.data.tags.get(Tag.PARENT_RUN_ID)
        head = f"[{n}/{len(runs)}] {run_id[:8]} {run.info.run_name or ''}".rstrip()
        if run.info.status not in ENDED:
            report.not_ended.append(run_id)
            say(f"{head}: not copied, it is {run.info.status} (only ended runs are copied: finish it, or mark a dead "
                "one KILLED with 'lit-nn runs --cleanup', then copy again)")
            continue
        if parent in report.not_ended:
            report.not_ended.append(run_id)
            say(f"{head}: not copied yet, its parent run {parent[:8]} has not ended (copy again once it has: "
                "the run goes under the parent's copy)")
            continue
        try:
            source_exp = experiments.get(run.info.experiment_id) or source.get_experiment(run.info.experiment_id)
            if source_exp.experiment_id not in target_experiments:
                target_experiments[source_exp.experiment_id] = target_experiment(target, source_exp, target_uri)
            experiment_id = target_experiments[source_exp.experiment_id]
            done = previous_copy(target, experiment_id, run_id)
            if done is not None:
                report.already[run_id] = done
                say(f"{head}: already on the target as {done[:8]}")
                continue
            parent_copy = report.copied.get(parent or "") or report.already.get(parent or "")
            new_id, what = copy_run(source, target, run, experiment_id, parent_copy, origin, source_uri)
        except (Exception, KeyboardInterrupt, Terminated) as err:
            say(f"{head}: failed ({_first_line(err) if str(err) and not is_interrupt(err) else failure_reason(err)})")
            say(report.summary())
            if is_interrupt(err):
                raise
            raise UserError(f"copying run {run_id} to {report.target} failed: {_first_line(err)}; run the same command "
                            "again to go on (runs already copied are skipped, an incomplete copy is replaced)") from None
        report.copied[run_id] = new_id
        lost = f" (its parent {parent[:8]} is not in the source store: copied without one)" \
            if parent and not parent_copy else ""
        say(f"{head}: {run.info.status} → {new_id[:8]}: {what}{lost}")
    say(report.summary())
    return report


def target_experiment(target: Any, source_exp: Any, target_uri: str) -> str:
    """The experiment of the same name on the target (created with the source's tags; an existing
    one gets the tags it lacks, its own values win); its id."""
    from mlflow.exceptions import MlflowException

    name = source_exp.name
    found = target.get_experiment_by_name(name)
    if found is None:
        try:
            return target.create_experiment(name, artifact_location=artifact_location(name, target_uri),
                                            tags=dict(source_exp.tags))
        except MlflowException:  # created by someone else just now
            found = target.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        target.restore_experiment(found.experiment_id)
    for key, value in source_exp.tags.items():
        if key not in found.tags:
            target.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def previous_copy(target: Any, experiment_id: str, run_id: str) -> str | None:
    """The id of a complete copy of ``run_id`` on the target, if any; an incomplete one (left
    RUNNING or marked as a failed copy when the target went away mid-copy) is deleted."""
    found = search_all_runs(target, [experiment_id], f"tags.{Tag.COPIED_FROM_RUN} = '{run_id}'")
    complete = None
    for run in found:
        if run.info.status == RunStatus.RUNNING or run.data.tags.get(Tag.FAILURE_REASON, "").startswith(COPY_FAILED):
            discard(target, run.info.run_id, "left incomplete by an earlier copy")
        elif complete is None:
            complete = run.info.run_id
    return complete


def copy_run(source: Any, target: Any, run: Any, experiment_id: str, parent_copy: str | None, origin: str,
             source_uri: str) -> tuple[str, str]:
    """Create the copy, fill it, then give it the source's end status and time; on any failure
    (Ctrl-C included) discard it. Returns its id and what was copied, in words."""
    from mlflow.utils.mlflow_tags import MLFLOW_USER

    info, tags = run.info, dict(run.data.tags)
    tags.pop(Tag.PARENT_RUN_ID, None)
    tags.update({Tag.COPIED_FROM: origin, Tag.COPIED_FROM_RUN: info.run_id})
    if parent_copy:
        tags[Tag.PARENT_RUN_ID] = parent_copy
    # what the run must carry from its first moment: nesting, the user, and the mark a re-run looks for
    first = {k: tags[k] for k in (Tag.COPIED_FROM, Tag.COPIED_FROM_RUN, Tag.PARENT_RUN_ID, MLFLOW_USER) if k in tags}
    new_id = target.create_run(experiment_id, start_time=info.start_time, tags=first,
                               run_name=info.run_name).info.run_id
    models: list[str] = []
    try:
        counts = copy_data(source, target, run, new_id, {k: v for k, v in tags.items() if k not in first})
        files = copy_artifacts(source, target, run, new_id)
        copy_logged_models(source, target, run, new_id, experiment_id, source_uri, models)
        end_run(target, new_id, info.status, run.data.tags.get(Tag.FAILURE_REASON, ""), end_time=info.end_time)
    except BaseException as err:
        discard(target, new_id, failure_reason(err), models)
        raise
    what = f"{counts}, {files} artifact file(s)" + (f", {len(models)} logged model(s)" if models else "")
    return new_id, what


def discard(target: Any, run_id: str, reason: str, model_ids: Sequence[str] = ()) -> None:
    """Take an incomplete copy off the target: FAILED with the reason (never left RUNNING), then
    deleted with its logged models. Best effort: the target may be what failed."""
    steps: list[Callable[[], Any]] = [
        lambda: end_run(target, run_id, RunStatus.FAILED, COPY_FAILED + reason),
        lambda: target.delete_run(run_id),
        *[lambda m=m: target.delete_logged_model(m) for m in model_ids],
    ]
    for step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001, S112 - the next step may still work; a re-run cleans up the rest
            continue


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def copy_data(source: Any, target: Any, run: Any, new_id: str, tags: dict[str, str]) -> str:
    """Params, tags and every metric's whole history, in batches within MLflow's per-request limits."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

    params = [Param(k, v) for k, v in run.data.params.items()]
    for chunk in _chunks(params, MAX_PARAMS_TAGS_PER_BATCH):
        target.log_batch(new_id, params=chunk)
    for chunk in _chunks([RunTag(k, v) for k, v in tags.items()], MAX_PARAMS_TAGS_PER_BATCH):
        target.log_batch(new_id, tags=chunk)
    values = 0
    for key in run.data.metrics:
        history = [Metric(key, m.value, m.timestamp, m.step) for m in source.get_metric_history(run.info.run_id, key)]
        for chunk in _chunks(history, MAX_METRICS_PER_BATCH):
            target.log_batch(new_id, metrics=chunk)
        values += len(history)
    if run.inputs is not None and run.inputs.dataset_inputs:
        target.log_inputs(new_id, datasets=run.inputs.dataset_inputs)
    return f"{len(run.data.metrics)} metric(s) ({values} values), {len(params)} param(s), {len(run.data.tags)} tag(s)"


def copy_artifacts(source: Any, target: Any, run: Any, new_id: str) -> int:
    """The run's whole artifact tree, downloaded and uploaded as it is; for a FAILED or KILLED run
    also its local last.ckpt, which resuming it needs. Returns the number of files."""
    run_id = run.info.run_id
    files = 0
    with tempfile.TemporaryDirectory(prefix="lit-nn-copy-") as tmp:
        if source.list_artifacts(run_id):
            local = Path(source.download_artifacts(run_id, "", tmp))
            files = sum(1 for p in local.rglob("*") if p.is_file())
            target.log_artifacts(new_id, str(local))
            has_last = (local / "checkpoints" / "last.ckpt").is_file()
        else:
            has_last = False
    last = Path(run.data.tags.get(Tag.LAST_CHECKPOINT, ""))
    if run.info.status != RunStatus.FINISHED and not has_last and last.name and last.is_file():
        target.log_artifact(new_id, str(last), "checkpoints")
        files += 1
    return files


def copy_logged_models(source: Any, target: Any, run: Any, new_id: str, experiment_id: str, source_uri: str,
                       created: list[str]) -> None:
    """The run's MLflow 3 logged models (``runs:/<id>/model``): each a new logged model of the copy
    with the same name, type, params, tags (less the registry's), metrics, files and status,
    linked to the copy as its output at the same step; their ids are appended to ``created``."""
    import mlflow.artifacts
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH

    run_id = run.info.run_id
    steps = {o.model_id: o.step for o in (run.outputs.model_outputs if run.outputs is not None else [])}
    for model in _logged_models(source, run):
        tags = {k: v for k, v in model.tags.items() if k != MLFLOW_MODEL_VERSIONS}
        new = target.create_logged_model(experiment_id, name=model.name, source_run_id=new_id, tags=tags or None,
                                         params=model.params or None, model_type=model.model_type)
        created.append(new.model_id)
        if source.list_logged_model_artifacts(model.model_id):
            with tempfile.TemporaryDirectory(prefix="lit-nn-copy-model-") as tmp:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location,
                                                                 tracking_uri=source_uri, dst_path=tmp))
                retarget_mlmodel(local / "MLmodel", {model.artifact_location: new.artifact_location,
                                                     model.model_id: new.model_id, run_id: new_id})
                target.log_model_artifacts(new.model_id, str(local))
        metrics = [Metric(m.key, m.value, m.timestamp, m.step, model_id=new.model_id, dataset_name=m.dataset_name,
                          dataset_digest=m.dataset_digest) for m in model.metrics or []]
        for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
            target.log_batch(new_id, metrics=chunk)
        if model.status in (LoggedModelStatus.READY, LoggedModelStatus.FAILED):
            target.finalize_logged_model(new.model_id, model.status)
        if model.model_id in steps:
            target.log_outputs(new_id, [LoggedModelOutput(new.model_id, steps[model.model_id])])


def _logged_models(source: Any, run: Any) -> Iterator[Any]:
    """The logged models whose source is ``run``, every page."""
    token = None
    while True:
        page = source.search_logged_models([run.info.experiment_id],
                                           filter_string=f"source_run_id = '{run.info.run_id}'", page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def retarget_mlmodel(path: Path, renames: dict[str, str]) -> None:
    """An ``MLmodel`` names the run, the model id and the location it was logged to; name the
    copy's instead (these ids are unique strings, so replacing them touches nothing else)."""
    if not path.is_file():
        return
    text = path.read_text()
    for old, new in renames.items():  # the location first: it contains the model id
        text = text.replace(old, new)
    path.write_text(text)
