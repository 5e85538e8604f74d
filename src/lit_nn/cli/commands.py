"""The tool commands' table (``COMMANDS``) and the small ones: ``generate``, ``compare``, ``runs``
and ``server``; ``sweep``, ``lab`` and ``lr_find`` have their own modules (``sweep_command``,
``lab_command``, ``lr_find``).

Each command is a typed function whose docstring is its ``--help`` (``lit_nn.cli.tool_parser``
turns the signature into the parser); the work itself lives in the packages below the CLI.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lit_nn.cli.lab_command import run_lab_command
from lit_nn.cli.lr_find import run_lr_find
from lit_nn.cli.sweep_command import SWEEP, run_sweep_command
from lit_nn.cli.tool_parser import ToolCommand, parse
from lit_nn.core.errors import UserError, check_positive, unknown_choice


# -- generate ------------------------------------------------------------------------------
def generate(ckpt: str, prime: str = "\n", length: int = 500, temperature: float = 0.8, top_k: int = 40,
             seed: int | None = None) -> None:
    """Sample text from a char-RNN checkpoint (lit-nn fit -c experiments/char_rnn.yaml) and stream it to stdout.

    Args:
        ckpt: char-RNN checkpoint (.ckpt) written by `lit-nn fit`, or the MLflow run id of that fit (its
            best checkpoint), or a runs:/<run id>/<path> URI.
        prime: text the sample starts from; it is printed first and every character must be in the
            model's vocabulary (default: a newline).
        length: characters to generate after the prime.
        temperature: divides the logits: <1 is more conservative, >1 more random, 0 is greedy
            (always the most likely character).
        top_k: draw only among the k most likely characters; 0 means all.
        seed: seed of the random draws: the same seed gives the same text (default: a different sample each time).
    """
    import torch

    from lit_nn.models.char_rnn import CharRNN
    from lit_nn.tracking.checkpoints import fetch_run_checkpoint, is_run_reference, load_checkpoint

    check_positive("--length", length)
    check_positive("--temperature", temperature, allow_zero=True)
    check_positive("--top_k", top_k, allow_zero=True)
    if seed is not None and not 0 <= seed < 2**64:  # what torch.Generator.manual_seed takes
        raise UserError(f"--seed {seed} is out of range; give a number from 0 to 2**64 - 1")
    with tempfile.TemporaryDirectory(prefix="lit-nn-run-") as fetched:
        path = fetch_run_checkpoint(ckpt, Path(fetched))[0] if is_run_reference(ckpt) else ckpt
        model = CharRNN.from_checkpoint_dict(load_checkpoint(path), ckpt)
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    chars = model.sample(prime, length, temperature, top_k or None, generator)
    first = next(chars)  # the prime is checked against the vocabulary here, before anything is printed
    out = sys.stdout
    out.write(prime + first)
    for ch in chars:
        out.write(ch)
        out.flush()  # stream: a learner watches the text appear
    out.write("\n")
    out.flush()


# -- compare -------------------------------------------------------------------------------
def compare(sweep: str | None = None, experiment: str | None = None, group_by: str | None = None,
            out: Path | None = None) -> None:
    """Plot val_acc and train_loss against epoch (one line per group, band over seeds) and tabulate best
    val_acc, test_acc, epochs, wall time and parameters, from MLflow runs; for char-RNN runs (no accuracy)
    val_loss in nats per character instead, with each group's last generated text sample.

    Args:
        sweep: a sweep file (experiments/compare_*.yaml) or a sweep name; omit it to compare all runs of
            --experiment.
        experiment: MLflow experiment to read (default: the sweep's experiment).
        group_by: tag or param whose value makes a line/row, e.g. optimizer, depth, activation, model,
            sweep_point (default: the sweep's group_by).
        out: folder for curves.png and report.md (default: reports/<sweep or experiment>).
    """
    from lit_nn.sweeps.compare import compare as compare_runs

    report = compare_runs(sweep, experiment, group_by, out)
    print(report.markdown_path.read_text())
    print(f"report: {report.markdown_path} and {report.figure_path}")
    if report.ui:
        print(report.ui)


# -- runs ----------------------------------------------------------------------------------
def runs(experiment: list[str] | None = None, status: str | None = None, limit: int = 50,
         cleanup: bool = False, copy_to: str | None = None, run: list[str] | None = None) -> None:
    """List MLflow runs; with --cleanup, mark runs whose process died as KILLED (a kill -9 leaves them
    RUNNING forever); with --copy_to, copy them to another tracking store, e.g. the team server.

    Args:
        experiment: experiment names (repeatable; default: every experiment).
        status: only runs with this status: RUNNING, FINISHED, FAILED, KILLED or SCHEDULED.
        limit: show at most this many runs, newest first (the listing only: --copy_to copies them all).
        cleanup: mark RUNNING runs of this host whose process is gone as KILLED, then list (or copy).
        copy_to: copy the runs of --experiment/--status/--run from this store to the tracking server
            at this address (http://HOST:5000; credentials from MLFLOW_TRACKING_USERNAME/PASSWORD) or to
            another SQLite store (sqlite:///PATH): metric histories, params, tags, artifacts and logged
            models, under experiments of the same names, sweeps nested as here. Only ended runs are
            copied; a second copy skips what the first one copied.
        run: with --copy_to, only these runs (ids, or the 8 characters 'lit-nn runs' shows; repeatable)
            and the runs nested under them; the parents of nested runs always go along.
    """
    from lit_nn.tracking.listing import STATUSES, format_runs
    from lit_nn.tracking.liveness import reap_dead_runs
    from lit_nn.tracking.store import resolve_tracking_uri, tracking_client

    if limit <= 0:
        raise UserError(f"--limit must be > 0, got {limit}")
    if run and copy_to is None:
        raise UserError("--run picks the runs to copy: use it with --copy_to URI (the listing is filtered by "
                        "--experiment and --status)")
    wanted = status.upper() if status else None
    if wanted and wanted not in STATUSES:
        raise unknown_choice("status", status, STATUSES)
    client = tracking_client()
    experiments = client.search_experiments()
    names = {e.experiment_id: e.name for e in experiments}
    if experiment:
        by_name = {e.name: e.experiment_id for e in experiments}
        for name in experiment:
            if name not in by_name:
                raise unknown_choice("experiment", name, sorted(by_name) or ["(none yet)"])
        ids = [by_name[name] for name in experiment]
    else:
        ids = list(names)
    if not ids:
        print("no experiments yet: train something first (lit-nn fit -c experiments/mnist_cnn.yaml)")
        return
    if cleanup:
        reaped = reap_dead_runs(client, ids)
        print(f"cleanup: marked {len(reaped)} dead RUNNING run(s) as KILLED"
              + (f": {', '.join(r[:8] for r in reaped)}" if reaped else ""))
    if copy_to is not None:
        from lit_nn.tracking.copy import copy_runs

        copy_runs(client, resolve_tracking_uri(), copy_to, ids, wanted, run)
        return
    filter_string = f"attributes.status = '{wanted}'" if wanted else ""
    found = client.search_runs(ids, filter_string, max_results=limit, order_by=["attributes.start_time DESC"])
    if not found:
        print("no runs" + (f" with status {wanted}" if wanted else ""))
        return
    print(format_runs(found, names))


# -- server --------------------------------------------------------------------------------
def server(folder: Path = Path("team-server"), host: str = "127.0.0.1", port: int = 5000, auth: bool = False,
           allowed_hosts: str | None = None, open_parents: bool = False) -> None:
    """Start a team tracking server: PostgreSQL (this machine's server binaries, on 127.0.0.1) behind
    `mlflow server` with proxied artifacts; serve until Ctrl-C. Point lit-nn at it with
    MLFLOW_TRACKING_URI=http://HOST:PORT.

    Args:
        folder: where the database cluster, the artifacts and the logs live (created on first start).
        host: the address the tracking server listens on; 0.0.0.0 for other machines (then also
            --allowed_hosts, --auth, and TLS in front: see the README).
        port: the tracking server's port.
        auth: MLflow's basic-auth app: users and permissions, credentials from
            MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (admin password: $LIT_NN_ADMIN_PASSWORD).
        allowed_hosts: host names the server answers to (MLflow's --allowed-hosts), e.g. tracking.lab.org.
        open_parents: as root, PostgreSQL runs as the postgres user, which must pass through every
            folder above --folder: add the search bit (x, not read) to each folder that stops it,
            printing each change. Without it such a folder is an error that names it.
    """
    from lit_nn.tracking.server import ServerPlan, serve

    serve(ServerPlan(folder=folder, host=host, port=port, auth=auth, allowed_hosts=allowed_hosts,
                     open_parents=open_parents))


COMMANDS: dict[str, ToolCommand] = {
    "generate": ToolCommand("generate", generate, "sample text from a char-RNN checkpoint", positional=False),
    "sweep": SWEEP,
    "compare": ToolCommand("compare", compare, "plot and tabulate the runs of a sweep or experiment",
                           optional_positional="sweep"),
    "lab": ToolCommand("lab", run_lab_command,
                       "fundamentals labs: gates, activations, losses, trajectories, scratch"),
    "runs": ToolCommand("runs", runs, "list runs; mark dead ones KILLED (--cleanup); copy them to a team server "
                        "(--copy_to)"),
    "server": ToolCommand("server", server, "a team tracking server: PostgreSQL + mlflow server, artifacts proxied",
                          positional=False),
    "lr_find": ToolCommand("lr_find", run_lr_find, "Lightning's learning-rate finder on a fit config: the loss "
                           "against lr, a suggestion"),
}


def run_tool(name: str, argv: list[str]) -> None:
    """Run tool command ``name`` with its command-line arguments."""
    if name == "sweep":
        run_sweep_command(argv)
    elif name == "lab":
        run_lab_command(argv)
    elif name == "lr_find":
        run_lr_find(argv)
    else:
        command = COMMANDS[name]
        command.function(**parse(command, argv))
