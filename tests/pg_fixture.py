"""A real PostgreSQL server for the store tests, started once per session on demand.

Debian's `postgresql` package (installed by `make test`) ships initdb and pg_ctl under
/usr/lib/postgresql/<version>/bin. The server gets a fresh data directory in /tmp, listens
on 127.0.0.1 at a free high port with no Unix socket in a shared place, and is stopped at
the end of the session. PostgreSQL refuses to run as root, so as root it runs as the
`postgres` system user the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _pg_bin() -> str | None:
    override = os.environ.get("DRIFTLINE_PG_BIN")
    if override:
        return override
    candidates = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    for path in reversed(candidates):
        if os.path.exists(os.path.join(path, "initdb")):
            return path
    return shutil.which("initdb") and os.path.dirname(shutil.which("initdb"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("PostgreSQL refuses to run as root and runuser is missing")
    return [runuser, "-u", "postgres", "--", *argv]


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class PostgresServer:
    def __init__(self, bin_dir: str) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        # /tmp rather than pytest's tmp_path: that is 0700 root and the server user must write here.
        self.root = tempfile.mkdtemp(prefix="driftline-pg-")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *argv: str, timeout: float = 60) -> None:
        completed = subprocess.run(_as_server_user([os.path.join(self.bin_dir, argv[0]), *argv[1:]]),
                                   capture_output=True, text=True, timeout=timeout)
        if completed.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {completed.stderr.strip() or completed.stdout.strip()}")

    def start(self) -> None:
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                  "--no-sync", "--no-instructions")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c timezone=UTC"
                   " -c max_connections=50")
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start")
        deadline = time.monotonic() + 30
        while not _accepting(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not accept connections on 127.0.0.1:{self.port}")
            time.sleep(0.1)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop", timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; the URL to it."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            # FILE_COPY (PostgreSQL 15+) is several times faster than WAL_LOG with fsync off.
            strategy = " STRATEGY FILE_COPY" if connection.info.server_version >= 150000 else ""
            connection.execute(f'CREATE DATABASE "{name}"{strategy}')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                    "(`make test` installs Debian's postgresql package)")
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except Exception:
        log = open(server.log).read()[-2000:] if os.path.exists(server.log) else ""
        server.stop()
        raise RuntimeError(f"could not start PostgreSQL from {bin_dir}:\n{log}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request, tmp_path):
    """A URL to an empty results database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_server").create_database()
