"""Claiming a sweep point in the tracking store, so that any number of sweeps run it once.

Several ``lit-nn sweep`` commands on the same sweep file (other folders, other machines, Ray
nodes) share one tracking store; each point must be trained by exactly one of them. MLflow has
no compare-and-set on tags, but it does refuse a second experiment of the same name: the store
checks the name's uniqueness in one transaction (a UNIQUE constraint in SQLite and PostgreSQL,
behind a tracking server too). So a claim is an experiment with a unique name::

    lit-nn-claim/<sweep key>/<point>/<generation>

Whoever creates generation ``g`` of a point owns the point until generation ``g + 1`` exists.
Creating the next generation is allowed only when the latest one is *released* (its owner
finished, failed or skipped the point) or *stale* (its owner stopped renewing for ``lease_s``
seconds, or, on this host, its process or its sweep is gone). Because the store lets exactly
one creator make each name, two claimers racing for the same generation cannot both win: the
loser gets RESOURCE_ALREADY_EXISTS and skips the point. The owner renews its lease by creating
the next generation itself, well before the lease ends; if it finds that generation taken, it
has lost the point and stops it. Each claim is deleted right after it is created: MLflow keeps
the names of deleted experiments reserved, and the UI's experiment list stays clean
(``mlflow gc`` frees those names; do not run it while sweeps run).

Assumption: the clocks of the sweep machines and the store agree to well within the lease
(NTP); staleness compares a claim's creation time, stamped by the store, with local time.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lit_nn.sweeps.sweep import PARENT, Sweep
from lit_nn.tracking.lifecycle import RunStatus
from lit_nn.tracking.listing import search_all_runs
from lit_nn.tracking.liveness import process_alive, reap_dead_runs, run_process_alive

PREFIX = "lit-nn-claim"
LEASE_S = 300.0  # a claim whose owner stopped renewing for this long is taken over
RENEWALS_PER_LEASE = 5
HELD, RELEASED = "held", "released"


class LostClaim(Exception):
    """The point's claim was taken over (its lease ran out): this owner must stop the point."""


@dataclass(frozen=True)
class Claim:
    """One generation of a point's claim: who made it and when."""

    prefix: str         # lit-nn-claim/<sweep key>/<point>/
    generation: int
    state: str          # HELD or RELEASED
    owner: dict[str, Any]  # host, pid, sweep_pid (the process that started the worker)
    created: float      # seconds since the epoch, stamped by the store

    @property
    def name(self) -> str:
        return f"{self.prefix}{self.generation:06d}"

    def describe(self) -> str:
        o = self.owner
        return f"pid {o.get('pid', '?')} on {o.get('host', '?')}"

    def stale_because(self, lease_s: float, now: float) -> str | None:
        """Why this claim no longer holds (None while it does)."""
        if self.state == RELEASED:
            return "released"
        if now - self.created > lease_s:
            return f"not renewed for {now - self.created:.0f} s (lease {lease_s:.0f} s)"
        if self.owner.get("host") == socket.gethostname():
            for key in ("pid", "sweep_pid"):
                pid = int(self.owner.get(key) or 0)
                if pid and not process_alive(pid, started_before=self.owner.get(f"{key}_started")):
                    return f"its {'process' if key == 'pid' else 'sweep'} (pid {pid}) is gone"
        return None


def claim_prefix(sweep: Sweep, point: str) -> str:
    """The name prefix of a point's claims (``point``: its config hash, or PARENT for the claim
    that decides who creates the parent run): one namespace per sweep."""
    return f"{PREFIX}/{sweep.key}/{point}/"


def this_owner() -> dict[str, Any]:
    """Who is claiming: this process, and the sweep (or Ray task) that started it."""
    from lit_nn.tracking.liveness import process_start_time

    owner: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(),
                             "pid_started": process_start_time(os.getpid())}
    sweep_pid = int(os.environ.get("LIT_NN_SWEEP_PID") or 0)
    if sweep_pid:
        owner.update(sweep_pid=sweep_pid, sweep_pid_started=process_start_time(sweep_pid))
    return owner


def latest_claim(client: Any, prefix: str) -> Claim | None:
    """The highest generation of the point's claim, or None if it was never claimed."""
    from mlflow.entities import ViewType

    found = []
    token = None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, filter_string=f"name LIKE '{prefix}%'",
                                         max_results=1000, page_token=token)
        found.extend(e for e in page if e.name.startswith(prefix) and e.name[len(prefix):].isdigit())
        token = page.token
        if not token:
            break
    if not found:
        return None
    latest = max(found, key=lambda e: int(e.name[len(prefix):]))
    tags = latest.tags or {}
    return Claim(prefix, int(latest.name[len(prefix):]), tags.get("state", HELD),
                 json.loads(tags.get("owner", "{}")), (latest.creation_time or 0) / 1000)


def _create(client: Any, prefix: str, generation: int, state: str, owner: dict[str, Any]) -> Claim | None:
    """Create one generation; None if another process created it first."""
    from mlflow.exceptions import MlflowException

    name = f"{prefix}{generation:06d}"
    try:
        experiment_id = client.create_experiment(name, tags={"state": state, "owner": json.dumps(owner)})
    except MlflowException as err:
        if err.error_code == "RESOURCE_ALREADY_EXISTS":
            return None
        raise
    with contextlib.suppress(Exception):  # hidden from the UI's list; the name stays reserved
        client.delete_experiment(experiment_id)
    created = client.get_experiment(experiment_id).creation_time or time.time() * 1000
    return Claim(prefix, generation, state, owner, created / 1000)


def try_claim(client: Any, prefix: str, lease_s: float = LEASE_S,
              now: Callable[[], float] = time.time) -> tuple[Claim | None, str]:
    """Claim the point: (the claim, "" or whose stale claim it took over and why), or
    (None, why another owner holds it)."""
    latest = latest_claim(client, prefix)
    taken_over = ""
    if latest is not None:
        stale = latest.stale_because(lease_s, now())
        if stale is None:
            return None, (f"claimed by another sweep ({latest.describe()}, "
                          f"{max(now() - latest.created, 0):.0f} s ago)")
        if latest.state == HELD:
            taken_over = f"took over the claim of {latest.describe()}: {stale}"
    claim = _create(client, prefix, latest.generation + 1 if latest else 0, HELD, this_owner())
    if claim is None:
        return None, "claimed by another sweep a moment ago"
    return claim, taken_over


def renew(client: Any, claim: Claim) -> Claim:
    """Extend the lease by creating the next generation; :class:`LostClaim` if it was taken."""
    renewed = _create(client, claim.prefix, claim.generation + 1, HELD, claim.owner)
    if renewed is None:
        raise LostClaim(f"the claim of {claim.prefix} was taken over after generation {claim.generation}")
    return renewed


def release(client: Any, claim: Claim) -> None:
    """Let the next claimer have the point (a released claim is stale at once)."""
    _create(client, claim.prefix, claim.generation + 1, RELEASED, claim.owner)


@contextlib.contextmanager
def kept(client: Any, claim: Claim, lease_s: float, on_lost: Callable[[str], None]) -> Iterator[Callable[[], Claim]]:
    """Renew ``claim`` in a background thread while the block runs; release it afterwards.

    Yields a function returning the current generation. If a renewal finds the claim taken
    (this process stalled past its lease), ``on_lost(reason)`` is called once, from the thread.
    """
    current = [claim]
    stop = threading.Event()
    lost = threading.Event()

    def renew_until_stopped() -> None:
        while not stop.wait(lease_s / RENEWALS_PER_LEASE):
            try:
                current[0] = renew(client, current[0])
            except LostClaim as err:
                lost.set()
                on_lost(str(err))
                return
            except Exception:  # noqa: BLE001 - the store is away for a moment: retry at the next tick
                continue

    thread = threading.Thread(target=renew_until_stopped, name="lit-nn claim renewal", daemon=True)
    thread.start()
    try:
        yield lambda: current[0]
    finally:
        stop.set()
        thread.join(timeout=60)  # a renewal stuck on an unreachable store must not hold the worker
        if not lost.is_set():
            with contextlib.suppress(Exception):  # unreleased, the claim goes stale by itself
                release(client, current[0])


# -- the sweep's parent run and the orphans of a killed sweep -----------------------------------
def find_parent(client: Any, sweep: Sweep) -> str | None:
    """The sweep's parent run (one per sweep name and experiment, the first one created), if any."""
    found = search_all_runs(client, [sweep.experiment_id], sweep.filter(PARENT),
                            order_by=["attributes.start_time ASC"])
    return found[0].info.run_id if found else None


def parent_to_create(client: Any, sweep: Sweep, timeout: float = 60.0,
                     poll: float = 0.5) -> tuple[str | None, bool]:
    """The parent run to use: (its id, False) when one exists, (None, True) when this sweep is
    to create it: sweeps of the same name started together share one parent. A sweep that
    claimed the parent's creation and died before creating it delays the others ``timeout``
    seconds, after which they create one themselves."""
    parent = find_parent(client, sweep)
    if parent is not None:
        return parent, False
    prefix = claim_prefix(sweep, PARENT)
    if _create(client, prefix, 0, HELD, this_owner()) is not None:
        return find_parent(client, sweep), True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parent = find_parent(client, sweep)
        if parent is not None:
            return parent, False
        time.sleep(poll)
    return None, True


def wait_for_orphans(client: Any, sweep: Sweep, timeout: float,
                     poll: float = 1.0) -> list[Any]:
    """Reap dead RUNNING runs; wait (up to ``timeout``) for this host's orphaned ones to end.

    An orphan is a point still stopping after its sweep was killed (its worker got SIGINT when
    the sweep died): it is RUNNING, its process lives on this host, and its claim's sweep is
    gone. Points of sweeps that are alive are not waited for: their claims keep them.
    Returns the point runs afterwards.
    """
    host = socket.gethostname()
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        reap_dead_runs(client, [sweep.experiment_id])
        runs = sweep.point_runs(client)
        live = [r for r in runs if r.info.status == RunStatus.RUNNING and run_process_alive(r, host)
                and _orphaned(client, sweep, r)]
        if not live or time.monotonic() >= deadline:
            return runs
        if not announced:
            print(f"sweep: waiting up to {timeout:.0f} s for {len(live)} run(s) of an earlier, stopped sweep "
                  "to finish shutting down", flush=True)
            announced = True
        time.sleep(poll)


def _orphaned(client: Any, sweep: Sweep, run: Any) -> bool:
    from lit_nn.core.names import Tag

    point = run.data.tags.get(Tag.CONFIG_HASH)
    claim = latest_claim(client, claim_prefix(sweep, point)) if point else None
    if claim is None:
        return True  # a point of a lit-nn before claims: only a stopped sweep leaves one running here
    sweep_pid = int(claim.owner.get("sweep_pid") or 0)
    return bool(sweep_pid) and not process_alive(sweep_pid, started_before=claim.owner.get("sweep_pid_started"))
