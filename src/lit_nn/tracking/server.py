"""A team tracking server on one machine: PostgreSQL behind ``mlflow server``, artifacts proxied.

Everything lives in one folder: ``pgdata/`` (the database cluster, created by ``initdb`` on first
start), ``artifacts/`` (what runs upload, served by the tracking server itself, so clients need
no access to this disk), ``pgpass`` (the database password) and the logs. The tracking server
listens on ``host`` (127.0.0.1 unless told otherwise). PostgreSQL listens on 127.0.0.1 and on a
Unix socket inside ``pgdata/`` and lets in exactly two: role ``lit_nn`` (owner of the database,
not a superuser) with the password in ``pgpass`` (scram-sha-256), which MLflow and tuned sweeps
use; and its superuser over that socket only, as the cluster's own OS user (peer), for lit-nn's
setup. Every other user of the machine is refused, whatever MLflow's ``--auth`` says.

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` user and its
commands run as that user; that user must then be able to pass through every folder above
``pgdata/``, which lit-nn checks and changes only when ``--open_parents`` asks it to.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lit_nn.core.errors import UserError

OPTUNA_SCHEMA = "optuna"  # tuned sweeps' studies: their own schema in the database MLflow uses
POSTGRES_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
DATABASE = "mlflow"
ROLE = "lit_nn"  # what MLflow and tuned sweeps connect as: owns DATABASE, no superuser
SUPERUSER = "postgres"  # initdb's; only over the socket in pgdata/, as the cluster's OS user
PASSFILE = "pgpass"  # ROLE's password, in the format libpq reads (passfile=)
DB_OWNER = "postgres"  # the OS user the cluster runs as when lit-nn runs as root
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
    open_parents: bool = False  # as root: let the postgres user through the folders above `folder`

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
    return ["runuser", "-u", DB_OWNER, "--", *argv]


def db_owner_name() -> str:
    """The OS user the cluster runs as: ``postgres`` under root, else whoever runs lit-nn."""
    return DB_OWNER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server to listen on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], what: str, stdin: str | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, input=stdin)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"{what} failed: {detail[-1] if detail else f'exit status {done.returncode}'}")


def blocking_folders(folder: Path) -> list[tuple[Path, int]]:
    """The existing folders from ``/`` down to ``folder`` that the ``postgres`` user cannot pass
    through, each with the permission bit that would let it (judged from owner, group and mode;
    ACLs are not read). Root runs the cluster as that user, so it must reach ``pgdata/``."""
    try:
        user = pwd.getpwnam(DB_OWNER)
    except KeyError:
        raise UserError(f"as root lit-nn runs PostgreSQL as the {DB_OWNER} user, and there is none: "
                        "apt-get install postgresql creates it") from None
    groups = set(os.getgrouplist(DB_OWNER, user.pw_gid))
    blocked = []
    for path in (*reversed(folder.parents), folder):
        try:
            st = path.stat()
        except FileNotFoundError:
            break  # lit-nn creates the rest, passable
        bit = stat.S_IXUSR if st.st_uid == user.pw_uid else stat.S_IXGRP if st.st_gid in groups else stat.S_IXOTH
        if not st.st_mode & bit:
            blocked.append((path, bit))
    return blocked


def _bit_name(bit: int) -> str:
    return {stat.S_IXUSR: "u+x", stat.S_IXGRP: "g+x", stat.S_IXOTH: "o+x"}[bit]


def let_postgres_reach(folder: Path, open_parents: bool) -> None:
    """As root: refuse a ``folder`` the postgres user cannot reach (one sentence, nothing created),
    unless ``open_parents`` asks lit-nn to add the search bit to each folder that stops it,
    saying so for each. Other people's folders change only when asked."""
    blocked = blocking_folders(folder)
    if not blocked:
        return
    if not open_parents:
        listing = ", ".join(f"{path} (mode {stat.S_IMODE(path.stat().st_mode):04o})" for path, _ in blocked)
        changes = ", ".join(f"{_bit_name(bit)} on {path}" for path, bit in blocked)
        raise UserError(f"as root, PostgreSQL runs as the {DB_OWNER} user, which cannot pass through {listing} "
                        f"to reach {folder}: give --folder a folder it can reach (such as /srv/team-server), "
                        f"or add --open_parents to let it through ({changes})")
    for path, bit in blocked:
        before = stat.S_IMODE(path.stat().st_mode)
        path.chmod(before | bit)
        print(f"team server: {_bit_name(bit)} on {path} (mode {before:04o} -> {before | bit:04o}, --open_parents) "
              f"so that the {DB_OWNER} user reaches {folder}", flush=True)


def make_folder(folder: Path) -> None:
    """``folder`` and any missing folder above it; as root each one lit-nn creates lets the
    postgres user through, whatever the umask (they are lit-nn's own)."""
    missing = [path for path in (*reversed(folder.parents), folder) if not path.exists()]
    for path in missing:
        path.mkdir()
        if os.geteuid() == 0:
            path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IXOTH)


def _write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by its owner only from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as out:
        out.write(text)


def database_password(folder: Path) -> str:
    """Role ``lit_nn``'s password: generated once (``secrets``), kept in ``FOLDER/pgpass``, mode
    0600 and owned by whoever runs the server, as libpq reads it, so no URL, command line or log
    ever holds it (clients name the file: ``passfile=``)."""
    path = folder / PASSFILE
    prefix = f"127.0.0.1:*:{DATABASE}:{ROLE}:"
    if path.is_file():
        try:
            known = [line[len(prefix):] for line in path.read_text().splitlines() if line.startswith(prefix)]
        except OSError as err:
            raise UserError(f"cannot read the database password in {path} ({err.strerror}): run lit-nn server "
                            "as the user who started it before") from None
        if known and known[-1]:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                path.chmod(0o600)  # libpq ignores a password file that others can read
            return known[-1]
    password = secrets.token_urlsafe(32)  # letters, digits, - and _: nothing to escape in SQL or pgpass
    _write_private(path, f"# the password of the team server's database role {ROLE} (libpq's format)\n"
                         f"{prefix}{password}\n")
    return password


def database_url(folder: Path, port: int) -> str:
    """The SQLAlchemy URL of the server's database as role ``lit_nn``; libpq reads the password
    from ``FOLDER/pgpass`` (``passfile=``), so the URL itself holds no secret."""
    passfile = urllib.parse.quote(str(folder / PASSFILE), safe="/")
    return f"postgresql+psycopg://{ROLE}@127.0.0.1:{port}/{DATABASE}?passfile={passfile}"


def init_cluster(pgdata: Path) -> None:
    """``initdb`` once, the cluster owned by the user PostgreSQL runs as; no connection is
    trusted, even before :func:`write_access_rules` writes lit-nn's own rules."""
    if (pgdata / "PG_VERSION").is_file():
        return
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(pgdata, DB_OWNER, DB_OWNER)
    _run(as_db_owner([postgres_bin("initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--auth-local=peer",
                      "--auth-host=reject", "-E", "UTF8"]), "initdb")


HBA = f"""\
# Written by lit-nn on every start of the team server: edits here are overwritten.
# Two ways in, no other: the superuser over the Unix socket in this folder, as the cluster's own
# OS user (lit-nn's setup); MLflow and tuned sweeps as role {ROLE}, with the password in ../{PASSFILE}.
# TYPE  DATABASE  USER          ADDRESS        METHOD
local   all       {SUPERUSER:<12}                 peer map=owner
host    {DATABASE:<9} {ROLE:<12}  127.0.0.1/32   scram-sha-256
"""


def write_access_rules(pgdata: Path) -> bool:
    """lit-nn's ``pg_hba.conf`` and ``pg_ident.conf`` (see :data:`HBA`); True when the old rules
    trusted some connection (a cluster made by an older lit-nn: migrated on this start)."""
    hba = pgdata / "pg_hba.conf"
    rules = [line.split() for line in hba.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    trusted = any(words[-1] == "trust" for words in rules)
    hba.write_text(HBA)  # the files initdb made: their owner and mode 0600 stay
    (pgdata / "pg_ident.conf").write_text("# Written by lit-nn: the cluster's OS user may log in as its superuser.\n"
                                          f"owner  {db_owner_name()}  {SUPERUSER}\n")
    return trusted


def _setup_sql(password: str) -> str:
    """Role ``lit_nn`` with ``password`` (scram-sha-256), the database owned by it, and whatever the
    superuser owned in it (a cluster from an older lit-nn: MLflow's and Optuna's tables) handed over,
    so that MLflow's migrations can alter them. Idempotent: run on every start."""
    not_system = "n.nspname !~ '^(pg_|information_schema$)'"
    owned = f"= '{SUPERUSER}'::regrole"
    return f"""\
SET log_statement = 'none';
SET log_min_error_statement = panic;
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE {ROLE}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}')\\gexec
ALTER ROLE {ROLE} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '{password}';
SELECT 'CREATE DATABASE {DATABASE} OWNER {ROLE}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec
ALTER DATABASE {DATABASE} OWNER TO {ROLE};
\\connect {DATABASE}
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT format('ALTER SCHEMA %I OWNER TO {ROLE}', n.nspname) AS q FROM pg_namespace n
           WHERE n.nspowner {owned} AND {not_system} LOOP
    EXECUTE r.q;
  END LOOP;
  FOR r IN SELECT format('ALTER %s %s OWNER TO {ROLE}', CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN
                         'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.oid::regclass) AS q
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relowner {owned} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {not_system} LOOP
    EXECUTE r.q;
  END LOOP;
  FOR r IN SELECT format('ALTER SEQUENCE %s OWNER TO {ROLE}', c.oid::regclass) AS q  -- not a column's: those moved
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relowner {owned} AND c.relkind = 'S' AND {not_system} LOOP
    EXECUTE r.q;
  END LOOP;
  FOR r IN SELECT format('ALTER TYPE %s OWNER TO {ROLE}', t.oid::regtype) AS q
           FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE t.typowner {owned} AND {not_system} AND (t.typtype IN ('e', 'd', 'r')
                 OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')) LOOP
    EXECUTE r.q;
  END LOOP;
  FOR r IN SELECT format('ALTER ROUTINE %s OWNER TO {ROLE}', p.oid::regprocedure) AS q
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE p.proowner {owned} AND {not_system} LOOP
    EXECUTE r.q;
  END LOOP;
END $$;
"""


@contextmanager
def postgres(folder: Path, port: int) -> Iterator[str]:
    """The cluster in ``FOLDER/pgdata`` on 127.0.0.1:``port`` while the block runs, with lit-nn's
    access rules; yields the SQLAlchemy URL of its database (:func:`database_url`)."""
    pgdata, log = folder / "pgdata", folder / "postgres.log"
    pg_ctl = postgres_bin("pg_ctl")
    migrating = write_access_rules(pgdata)
    password = database_password(folder)
    if not log.exists():
        log.touch(mode=0o600)
        if os.geteuid() == 0:
            shutil.chown(log, DB_OWNER, DB_OWNER)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {pgdata} -c password_encryption=scram-sha-256"
    _run(as_db_owner([pg_ctl, "-D", str(pgdata), "-o", options, "-l", str(log), "-w", "-t", "60", "start"]),
         f"starting PostgreSQL (log: {log})")
    try:
        _run(as_db_owner([postgres_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(pgdata), "-p",
                          str(port), "-U", SUPERUSER, "-d", "postgres"]),
             f"setting up the database (log: {log})", stdin=_setup_sql(password))  # stdin: no password in ps
        if migrating:
            print(f"team server: its PostgreSQL trusted every local connection (an older lit-nn); from now on it "
                  f"lets in role {ROLE} with the password in {folder / PASSFILE} only, and {ROLE} owns the "
                  "database", flush=True)
        yield database_url(folder, port)
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


def check_plan(plan: ServerPlan) -> None:
    """What would make the server fail after PostgreSQL started, refused before anything starts:
    a missing extra, a port out of range or taken."""
    if not 1 <= plan.port <= 65535:
        raise UserError(f"--port {plan.port} is not a TCP port; give one from 1 to 65535")
    if importlib_missing("psycopg"):
        raise UserError("the team server stores runs in PostgreSQL through psycopg 3: pip install 'lit-nn[server]'")
    if plan.auth and importlib_missing("flask_wtf"):
        raise UserError("--auth true runs MLflow's basic-auth app, whose packages (Flask-WTF) are not installed: "
                        "pip install 'lit-nn[server]'")
    family = socket.AF_INET6 if ":" in plan.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no use
        try:
            probe.bind((plan.host, plan.port))
        except OSError as err:
            raise UserError(f"--port {plan.port} on {plan.host} cannot be used ({err.strerror}); another server may "
                            "be listening there: give a free port with --port N") from None


def serve(plan: ServerPlan) -> None:
    """Start PostgreSQL and the tracking server, print where it is, serve until Ctrl-C/SIGTERM."""
    check_plan(plan)
    folder = plan.folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--folder {folder} is a file, not a folder: give a new or existing folder")
    if os.geteuid() == 0:
        let_postgres_reach(folder, plan.open_parents)  # before anything is created
    make_folder(folder)
    init_cluster(folder / "pgdata")
    (folder / "artifacts").mkdir(exist_ok=True)
    # Ctrl-C and SIGTERM stop it the same way. SIGINT explicitly too: a process started in the background
    # by a shell without job control (a CI script, `nohup ... &`) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt for it, so the server outlived the SIGINT meant to stop it
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    with postgres(folder, plan.db_port or free_port()) as db:
        log = folder / "mlflow-server.log"
        argv = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", db,
                "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
                "--host", plan.host, "--port", str(plan.port), "--workers", "2"]
        if plan.allowed_hosts:
            argv += ["--allowed-hosts", plan.allowed_hosts]
        if plan.auth:
            argv += ["--app-name", "basic-auth"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("PGPASSWORD", None)  # libpq would prefer it to the URL's passfile
        if plan.auth:
            env.setdefault("MLFLOW_AUTH_CONFIG_PATH", str(_auth_config(folder, db)))
            env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", _secret_key(folder))  # CSRF protection
        with open(log, "ab") as out:
            server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            wait_until_healthy(plan.url, server, log)
            print(f"team server: {plan.url} (runs in PostgreSQL, artifacts in {folder / 'artifacts'}; logs in {folder})")
            print(f"tuned sweeps on it: --tune.storage {shlex.quote(in_schema(db))}   (their Optuna studies, same "
                  f"database; the password is in {folder / PASSFILE}, readable by you only)")
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
    _write_private(path, "[mlflow]\ndefault_permission = READ\n"
                         f"database_uri = {db.replace('%', '%%')}\nadmin_username = admin\n"  # configparser's %
                         f"admin_password = {password.replace('%', '%%')}\n"
                         "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return path


def _secret_key(folder: Path) -> str:
    """The auth app's session/CSRF key: made once, kept in the folder (the same across restarts)."""
    path = folder / "secret_key"
    if not path.is_file():
        _write_private(path, secrets.token_hex(32))
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
