"""Who reaches the team server's data: only the server's own role, with the password in its
folder, gets into its PostgreSQL; ``lit-nn server`` changes the mode of no folder above its own
unless ``--open_parents`` says so; a cluster from an older lit-nn (trust) is migrated once.
Real PostgreSQL and ``mlflow server`` processes on loopback ports (``tests/team.py``)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from team import PRINTED, needs_postgres, postgres_reachable, reachable_by_postgres, team_server, tune_storage

from helpers import assert_clean_error, free_port, run_cli

ROOT = os.geteuid() == 0
as_root = pytest.mark.skipif(not ROOT, reason="PostgreSQL runs as the postgres user only when lit-nn runs as root")


def modes_above(folder: Path, top: Path) -> dict[Path, int]:
    """st_mode of every existing folder from ``top`` down to ``folder``. Above a test's own
    folder lie shared ones, such as pytest's, whose modes every pytest session that starts on
    the machine sets again (pytest-of-USER: 0700), so no test can hold them still."""
    return {path: path.stat().st_mode for path in (*folder.parents, folder)
            if path.exists() and (path == top or top in path.parents)}


def psql(*args: str, passfile: Path | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    """``psql`` without a password prompt (``-w``), as ``user`` (runuser) or as us; without
    ``passfile`` it knows no password (no password file, no PGPASSWORD)."""
    from lit_nn.tracking.server import postgres_bin

    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSFILE"] = str(passfile or "/nonexistent/pgpass")  # not ~/.pgpass either
    argv = [postgres_bin("psql"), "-X", "-w", "-At", *args]
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/")


@as_root
def test_as_root_a_folder_the_postgres_user_cannot_reach_is_one_sentence_and_nothing_changes(tmp_path: Path):
    pytest.importorskip("psycopg", reason="needs psycopg 3: pip install 'lit-nn[postgres]' (CI installs it)")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    locked.chmod(0o700)
    folder = locked / "team" / "srv"
    before = modes_above(folder, tmp_path)
    result = run_cli("server", "--folder", str(folder), "--port", str(free_port()), cwd=tmp_path)
    assert_clean_error(result, "the postgres user", f"{locked} (mode 0700)", f"to reach {folder}",
                       "give --folder a folder it can reach", "--open_parents to let it through (",
                       f"o+x on {locked})")
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr  # one sentence
    assert modes_above(folder, tmp_path) == before
    assert not (locked / "team").exists()  # nothing created


@needs_postgres
@pytest.mark.slow
def test_only_the_servers_role_with_its_password_gets_in_and_no_folder_above_changes(tmp_path: Path):
    """Another local user (nobody, or as a non-root user: we without the password) is refused by
    PostgreSQL over TCP as any role, and cannot reach its Unix socket; the password is in a 0600
    file only (no log, no command line); MLflow and the printed tune storage get in."""
    pytest.importorskip("psycopg", reason="needs psycopg 3: pip install 'lit-nn[postgres]' (CI installs it)")
    import sqlalchemy
    from mlflow import MlflowClient

    top = postgres_reachable() if ROOT else tmp_path
    work = top / "work"
    work.mkdir()
    if ROOT:  # the postgres user passes through by its group: o+x, which older lit-nn added, is not needed
        shutil.chown(work, group="postgres")
    work.chmod(0o750)
    folder = work / "srv"
    before = modes_above(folder, top)
    with team_server(folder, relocate=False) as url:
        assert {path: mode for path, mode in modes_above(folder, top).items() if path in before} == before
        pgdata, passfile = folder / "pgdata", folder / "pgpass"
        port = (pgdata / "postmaster.pid").read_text().splitlines()[3].strip()
        info = passfile.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
        password = passfile.read_text().splitlines()[-1].split(":")[-1]
        assert len(password) >= 32
        hba = (pgdata / "pg_hba.conf").read_text()
        assert not re.search(r"^[^#].*\btrust\b", hba, re.M), hba

        stranger = "nobody" if ROOT else None  # not root: we ourselves, without the password
        for role in ("postgres", "lit_nn"):
            refused = psql("-h", "127.0.0.1", "-p", port, "-U", role, "-d", "mlflow", "-c", "select 1", user=stranger)
            assert refused.returncode != 0 and "1" not in refused.stdout.split(), refused
            assert re.search("no pg_hba.conf entry|no password supplied|authentication failed", refused.stderr), refused
        if ROOT:  # the socket lies in pgdata/ (0700, the postgres user's)
            refused = psql("-h", str(pgdata), "-p", port, "-U", "postgres", "-d", "mlflow", "-c", "select 1",
                           user=stranger)
            assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused

        role = psql("-h", "127.0.0.1", "-p", port, "-U", "lit_nn", "-d", "mlflow", "-c",
                    "select current_user, rolsuper from pg_roles where rolname = current_user", passfile=passfile)
        assert role.stdout.split() == ["lit_nn|f"], role  # the server's own role, and no superuser

        storage = tune_storage(folder)
        assert password not in storage and "passfile=" in storage
        engine = sqlalchemy.create_engine(storage)
        with engine.connect() as db:
            assert db.execute(sqlalchemy.text("show search_path")).scalar() == "optuna"
        engine.dispose()
        client = MlflowClient(url)
        experiment = client.create_experiment("reached")
        assert client.get_experiment(experiment).name == "reached"

        commands = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                commands.append(cmdline.read_bytes())
            except OSError:
                continue
        assert not [c for c in commands if password.encode() in c]
    assert {path: mode for path, mode in modes_above(folder, top).items() if path in before} == before
    assert not [log for log in folder.glob("*.log") if password in log.read_text(errors="replace")]
    assert password not in "".join(PRINTED[folder.resolve()])


@as_root
@needs_postgres
@pytest.mark.slow
def test_open_parents_says_each_change_it_makes_and_makes_no_other(tmp_path: Path):
    pytest.importorskip("psycopg", reason="needs psycopg 3: pip install 'lit-nn[postgres]' (CI installs it)")
    top = postgres_reachable()
    locked = top / "locked"
    locked.mkdir()
    locked.chmod(0o700)
    folder = locked / "srv"
    before = modes_above(locked, top)
    with team_server(folder, "--open_parents", relocate=False):
        printed = "".join(PRINTED[folder.resolve()])
    assert (f"team server: o+x on {locked} (mode 0700 -> 0701, --open_parents) so that the postgres user reaches "
            f"{folder}") in printed, printed
    assert printed.count("--open_parents)") == 1
    assert modes_above(locked, top) == {**before, locked: before[locked] | stat.S_IXOTH}


def _old_cluster(folder: Path) -> None:
    """A cluster as lit-nn made it before: trust for every local connection, the superuser
    owning the database, MLflow's tables and an Optuna schema."""
    from lit_nn.tracking.server import as_db_owner, free_port, postgres_bin

    pgdata = folder.resolve() / "pgdata"  # PostgreSQL's commands see no link (reachable_by_postgres)
    pgdata.mkdir(parents=True)
    if ROOT:
        shutil.chown(pgdata, "postgres", "postgres")

    def run(*argv: str) -> None:
        done = subprocess.run(as_db_owner(list(argv)), capture_output=True, text=True)
        assert done.returncode == 0, done

    run(postgres_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth-local=trust", "--auth-host=trust")
    (pgdata / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    port = str(free_port())
    run(postgres_bin("pg_ctl"), "-D", str(pgdata), "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {pgdata}",
        "-l", str(pgdata / "old.log"), "-w", "start")
    try:
        run(postgres_bin("createdb"), "-h", "127.0.0.1", "-p", port, "-U", "postgres", "mlflow")
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow"
        upgrade = subprocess.run([str(Path(sys.executable).with_name("mlflow")), "db", "upgrade", url],
                                 capture_output=True, text=True)
        assert upgrade.returncode == 0, upgrade.stderr[-2000:]
        run(postgres_bin("psql"), "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "mlflow", "-c",
            "CREATE SCHEMA optuna; CREATE TABLE optuna.studies (study_id serial PRIMARY KEY)")
    finally:
        run(postgres_bin("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop")


@needs_postgres
@pytest.mark.slow
def test_a_cluster_from_an_older_lit_nn_is_migrated_once_and_mlflow_keeps_working(tmp_path: Path):
    pytest.importorskip("psycopg", reason="needs psycopg 3: pip install 'lit-nn[postgres]' (CI installs it)")
    from mlflow import MlflowClient

    from lit_nn.tracking.server import write_access_rules

    folder = tmp_path / "srv"
    reachable_by_postgres(folder)
    _old_cluster(folder)
    with team_server(folder) as url:
        printed = "".join(PRINTED[folder.resolve()])
        assert (f"team server: its PostgreSQL trusted every local connection (an older lit-nn); from now on it lets "
                f"in role lit_nn with the password in {folder.resolve() / 'pgpass'} only") in printed, printed
        port = (folder / "pgdata" / "postmaster.pid").read_text().splitlines()[3].strip()
        owned = psql("-h", "127.0.0.1", "-p", port, "-U", "lit_nn", "-d", "mlflow", "-c",
                     "select count(*) filter (where c.relowner = 'lit_nn'::regrole), count(*) from pg_class c "
                     "join pg_namespace n on n.oid = c.relnamespace where n.nspname in ('public', 'optuna')",
                     passfile=folder / "pgpass")
        mine, everything = map(int, owned.stdout.strip().split("|"))
        assert mine == everything > 60, owned  # MLflow's tables, their indexes and sequences, Optuna's
        refused = psql("-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "mlflow", "-c", "select 1",
                       user="nobody" if ROOT else None)
        assert refused.returncode != 0, refused
        client = MlflowClient(url)
        experiment = client.create_experiment("after-the-migration")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "x", 1.0)
        client.set_terminated(run.info.run_id)
        assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert write_access_rules(folder / "pgdata") is False  # migrated once: the next start says nothing
