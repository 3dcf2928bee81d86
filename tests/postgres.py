"""A real PostgreSQL server for tests: ``initdb`` into a temporary folder, ``pg_ctl`` on a free loopback port.

    from postgres import postgres_server, postgres_url  # noqa: F401  (in a test module)

    def test_something(postgres_url): ...   # a new empty database on the session's server

The binaries come from PATH (``pg_ctl``, ``initdb``) or Debian's ``/usr/lib/postgresql/<version>/bin``
(``apt-get install postgresql``); tests that use the server skip, saying why, when PostgreSQL or
psycopg2 is not installed. PostgreSQL refuses to run as root: as root (CI, containers) the server
runs as the ``postgres`` account when there is one (Debian's package creates it), else as ``nobody``,
in a folder under /tmp that this account owns. Authentication is ``trust``, on 127.0.0.1 only.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

TOOLS = ("initdb", "pg_ctl", "postgres")
DEBIAN_BIN = Path("/usr/lib/postgresql")
SUPERUSER = "fer"
# Durability is of no use to a throw-away server; these make it start and commit faster.
SERVER_OPTIONS = ("-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                  "-c full_page_writes=off")
START_TRIES = 3
_databases = itertools.count(1)


def postgres_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: PATH first, else Debian's newest version."""
    candidates = [Path(found).resolve().parent for found in map(shutil.which, ("pg_ctl", "initdb")) if found]
    candidates += sorted(DEBIAN_BIN.glob("*/bin"), key=_version_key, reverse=True)
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in TOOLS):
            return folder
    return None


def _version_key(folder: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,); folders without a version sort first."""
    return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name)) or (0,)


def server_account() -> str | None:
    """The unprivileged account that runs the server when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    pytest.skip("running as root and there is neither a 'postgres' nor a 'nobody' account to run PostgreSQL")
    return None


def as_account(command: list[str], account: str | None) -> list[str]:
    """``command`` run as ``account`` (runuser, else su); unchanged when ``account`` is None."""
    if account is None:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", account, "--", *command]
    return ["su", "-s", "/bin/sh", account, "-c", shlex.join(command)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """One server: its data in ``folder / "data"``, its socket in ``folder``, its log in ``log``."""

    bin_dir: Path
    folder: Path
    account: str | None
    port: int = 0

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """A PostgreSQL tool as the server's account, in its folder (the caller's cwd may be private)."""
        command = as_account([str(self.bin_dir / tool), *args], self.account)
        return subprocess.run(command, cwd=self.folder, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def init(self) -> None:
        """A new cluster with trust authentication and superuser ``fer``."""
        done = self._run("initdb", "-D", str(self.folder / "data"), "-U", SUPERUSER, "--auth=trust",
                         "--no-locale", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n"
                               f"{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start(self) -> None:
        """Start on a free port (another one when the port was taken in between); waits until ready."""
        for _ in range(START_TRIES):
            self.port = free_port()
            options = f"-p {self.port} -k {self.folder} {SERVER_OPTIONS}"
            done = self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.folder / "data"),
                             "-l", str(self.log), "-o", options)
            if done.returncode == 0:
                return
        log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{log}")

    def stop(self) -> None:
        """Stop the server (fast, else immediate) and delete its folder."""
        try:
            for mode in ("fast", "immediate"):
                if self._run("pg_ctl", "stop", "-w", "-t", "30", "-m", mode, "-D",
                             str(self.folder / "data"), timeout=60).returncode == 0:
                    break
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)


def start_server(bin_dir: Path) -> PostgresServer:
    """initdb and start a server in a new folder under /tmp, owned by the account that runs it."""
    account = server_account()
    # Not pytest's tmp_path: as root its parents are private to root, and a socket path must stay short.
    folder = Path(tempfile.mkdtemp(prefix="fer-postgres-", dir="/tmp" if account else None))
    if account:
        entry = pwd.getpwnam(account)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin_dir, folder, account)
    try:
        server.init()
        server.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole session (skips when PostgreSQL or psycopg2 is missing)."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install psycopg2-binary)")
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed: no initdb/pg_ctl/postgres on PATH or in "
                    f"{DEBIAN_BIN}/*/bin (apt-get install postgresql)")
    server = start_server(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """A new empty database for this test: ``postgresql+psycopg2://fer@127.0.0.1:<port>/<db>``."""
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    return postgres_server.create_database(f"{name}_{next(_databases)}")
