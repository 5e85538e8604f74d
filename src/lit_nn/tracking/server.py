"""A team tracking server on one machine: PostgreSQL behind ``mlflow server``, artifacts proxied.

Everything lives in one folder: ``pgdata/`` (the database cluster, created by ``initdb`` on first
start), ``artifacts/`` (what runs upload, served by the tracking server itself, so clients need
no access to this disk) and the two logs. PostgreSQL listens on 127.0.0.1 only (and trusts
connections from there: the tracking server is its only client); the tracking server listens on
``host`` (127.0.0.1 unless told otherwise). ``initdb`` refuses to run as root, so as root the
cluster belongs to the ``postgres`` user and its commands run as that user.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lit_nn.core.errors import UserError

OPTUNA_SCHEMA = "optuna"  # tuned sweeps' studies: their own schema in the database MLflow uses
POSTGRES_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
DATABASE = "mlflow"
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ServerPlan:
    """Where the team server keeps its state and where it listens."""

    folder: Path
    host: str = "127.0.0.1"
    port: int = 5000
    db_port: int = 0  # 0: a free port
    auth: bool = False
    allowed_hosts: str | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def postgres_bin(name: str) -> str:
    """A PostgreSQL server binary (``initdb``, ``pg_ctl``): on PATH or in Debian's versioned folder."""
    found = shutil.which(name) or next((str(Path(d) / name) for d in POSTGRES_BIN_DIRS if (Path(d) / name).is_file()),
                                       None)
    if found is None:
        raise UserError(f"PostgreSQL's {name} was not found (looked on PATH and in {', '.join(POSTGRES_BIN_DIRS)}); "
                        "install the server: apt-get install postgresql")
    return found


def as_db_owner(argv: list[str]) -> list[str]:
    """``argv`` run as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser") is None:
        raise UserError("running as root needs runuser to start PostgreSQL as the postgres user")
    return ["runuser", "-u", "postgres", "--", *argv]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server to listen on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"{what} failed: {detail[-1] if detail else f'exit status {done.returncode}'}")


def init_cluster(pgdata: Path) -> None:
    """``initdb`` once: trust on 127.0.0.1 only, the cluster owned by the user PostgreSQL runs as."""
    if (pgdata / "PG_VERSION").is_file():
        return
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(pgdata, "postgres", "postgres")
        for parent in pgdata.parents:  # the postgres user must be able to reach its cluster
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o001)
    _run(as_db_owner([postgres_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth-local=trust",
                      "--auth-host=trust", "-E", "UTF8"]), "initdb")
    (pgdata / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")


@contextmanager
def postgres(pgdata: Path, port: int, log: Path) -> Iterator[str]:
    """PostgreSQL on 127.0.0.1:``port`` while the block runs; yields the SQLAlchemy URI of the database."""
    pg_ctl = postgres_bin("pg_ctl")
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, "postgres", "postgres")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {pgdata}"
    _run(as_db_owner([pg_ctl, "-D", str(pgdata), "-o", options, "-l", str(log), "-w", "-t", "60", "start"]),
         f"starting PostgreSQL (log: {log})")
    try:
        uri = f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
        exists = subprocess.run(as_db_owner([postgres_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                             "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"]),
                                capture_output=True, text=True)
        if exists.stdout.strip() != "1":
            _run(as_db_owner([postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                              DATABASE]), "creating the database")
        yield uri
    finally:
        subprocess.run(as_db_owner([pg_ctl, "-D", str(pgdata), "-m", "fast", "-w", "stop"]), capture_output=True)


def in_schema(database_url: str) -> str:
    """The URL of tuned sweeps' Optuna studies in a PostgreSQL database that MLflow also uses: their own schema.

    Both keep their schema version in an ``alembic_version`` table, so Optuna's tables cannot
    share MLflow's schema ("no longer compatible with the table schema"); in a schema of their
    own they live in the same database, backed up and reached like the runs."""
    sep = "&" if "?" in database_url else "?"
    return f"{database_url}{sep}options=-csearch_path%3D{OPTUNA_SCHEMA}"



def wait_until_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise UserError(f"mlflow server exited with status {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise UserError(f"mlflow server did not answer {url}/health within {START_TIMEOUT_S:.0f} s; see {log}")
        time.sleep(0.5)


def serve(plan: ServerPlan) -> None:
    """Start PostgreSQL and the tracking server, print where it is, serve until Ctrl-C/SIGTERM."""
    if importlib_missing("psycopg"):
        raise UserError("the team server stores runs in PostgreSQL through psycopg 3: pip install 'lit-nn[postgres]'")
    folder = plan.folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    init_cluster(folder / "pgdata")
    (folder / "artifacts").mkdir(exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with postgres(folder / "pgdata", plan.db_port or free_port(), folder / "postgres.log") as db:
        log = folder / "mlflow-server.log"
        argv = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", db,
                "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
                "--host", plan.host, "--port", str(plan.port), "--workers", "2"]
        if plan.allowed_hosts:
            argv += ["--allowed-hosts", plan.allowed_hosts]
        if plan.auth:
            argv += ["--app-name", "basic-auth"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        if plan.auth:
            env.setdefault("MLFLOW_AUTH_CONFIG_PATH", str(_auth_config(folder, db)))
            env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", _secret_key(folder))  # CSRF protection
        with open(log, "ab") as out:
            server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            wait_until_healthy(plan.url, server, log)
            print(f"team server: {plan.url} (runs in PostgreSQL, artifacts in {folder / 'artifacts'}; logs in {folder})")
            print(f"tuned sweeps on it: --tune.storage {in_schema(db)}   (their Optuna studies, same database)")
            print(f"use it with: export MLFLOW_TRACKING_URI={plan.url}"
                  + ("   (and MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)" if plan.auth else ""), flush=True)
            server.wait()
            raise UserError(f"mlflow server stopped (exit status {server.returncode}); see {log}")
        except KeyboardInterrupt:
            print("team server: stopping", file=sys.stderr, flush=True)
        finally:
            _stop(server)


def _auth_config(folder: Path, db: str) -> Path:
    """MLflow's basic-auth settings: users in the same PostgreSQL database, admin password from
    ``LIT_NN_ADMIN_PASSWORD`` (MLflow's default otherwise: change it at once)."""
    path = folder / "basic_auth.ini"
    password = os.environ.get("LIT_NN_ADMIN_PASSWORD", "password1234")
    path.write_text("[mlflow]\ndefault_permission = READ\n"
                    f"database_uri = {db}\nadmin_username = admin\nadmin_password = {password}\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    path.chmod(0o600)
    return path


def _secret_key(folder: Path) -> str:
    """The auth app's session/CSRF key: made once, kept in the folder (the same across restarts)."""
    import secrets

    path = folder / "secret_key"
    if not path.is_file():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _stop(server: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        if server.poll() is not None:
            return
        try:
            os.killpg(server.pid, sig)
            server.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def importlib_missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None
