"""A real PostgreSQL server on loopback for integration tests and benchmarks.

:func:`start_postgres` runs the Debian server binaries (``initdb``, ``pg_ctl``) on a free
127.0.0.1 port with its data directory and socket in a fresh temporary directory, creates a
role with a password, a database and a ``dim_user`` table, and returns a handle that can
kill, restart and stop the server. The server refuses to run as root, so when we are root
every server command runs as the ``postgres`` user.

The session fixture ``postgres_server`` starts one server for the whole test session;
``bench/sql.py`` starts its own with the same function.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ._system import ensure_installed, free_port, wait_for_port

__all__ = ("PostgresServer", "postgres_server", "seed_dim_user", "start_postgres")

_VERSIONS = (17, 16, 15, 14, 13)
USER = "asyncwait"
PASSWORD = "s3cret-pw-Xq9"  # distinctive: tests assert it never shows up in a message
DATABASE = "asyncwait"
_SUPERUSER_PASSWORD = "super-pw-Zr4"


def _pg_bin() -> Path:
    """The directory of the server binaries, installing the ``postgresql`` package if needed."""
    candidates = [f"/usr/lib/postgresql/{v}/bin/pg_ctl" for v in _VERSIONS] + ["pg_ctl"]
    return Path(ensure_installed(candidates, "postgresql")).parent


def _run_as(
    owner: str | None, args: Sequence[str], **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(args), user=owner, capture_output=True, text=True, check=False, **kwargs
    )
    if done.returncode != 0:
        msg = f"{' '.join(args)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
        raise RuntimeError(msg)
    return done


@dataclass
class PostgresServer:
    """A running PostgreSQL server started by :func:`start_postgres`.

    Attributes:
        port: the TCP port on 127.0.0.1.
        root: the temporary directory holding the data directory, socket and log.
        dsn: a URL for the test role, with its password.
    """

    port: int
    root: Path
    bin: Path
    owner: str | None  # the OS user running the server (None: ourselves)
    user: str = USER
    password: str = PASSWORD
    database: str = DATABASE
    host: str = "127.0.0.1"
    _running: bool = field(default=False, repr=False)

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def superuser_dsn(self, database: str | None = None) -> str:
        """A URL for the superuser ``postgres``, to ``database`` (default: the test one)."""
        db = database or self.database
        return f"postgresql://postgres:{_SUPERUSER_PASSWORD}@{self.host}:{self.port}/{db}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _pg_ctl(self, *args: str) -> None:
        _run_as(self.owner, [str(self.bin / "pg_ctl"), "-D", str(self.data), *args], timeout=60)

    def start(self) -> None:
        """Start (or restart after :meth:`kill`) the server and wait for its port."""
        # fsync=off: a test server need not survive a machine crash. Commits still reach the
        # OS at once (synchronous_commit stays on), so kill() loses no committed row.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._pg_ctl("-w", "-t", "60", "-l", str(self.root / "server.log"), "-o", options, "start")
        self._running = True
        wait_for_port(self.port)

    def kill(self) -> None:
        """Stop the server abruptly (``pg_ctl stop -m immediate``): clients see resets."""
        self._pg_ctl("-w", "-m", "immediate", "stop")
        self._running = False

    def stop(self) -> None:
        """Stop the server (if running) and delete its directory."""
        if self._running:
            try:
                self._pg_ctl("-w", "-m", "fast", "stop")
            finally:
                self._running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def execute(self, *statements: str, database: str | None = None) -> None:
        """Run ``statements`` as the superuser (autocommit), e.g. to create test tables."""
        import psycopg

        with psycopg.connect(self.superuser_dsn(database), autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql.encode())


def start_postgres() -> PostgresServer:
    """Create, start and seed a fresh PostgreSQL cluster; the caller must ``stop()`` it.

    The cluster has a role ``asyncwait`` (password :data:`PASSWORD`) owning a database
    ``asyncwait`` with an empty table ``dim_user(user_id text primary key, age integer)``.

    Raises:
        RuntimeError: the server binaries are missing and cannot be installed, or the server
            does not start.
    """
    bin_dir = _pg_bin()
    owner: str | None = None
    root = Path(tempfile.mkdtemp(prefix="asyncwait-pg-"))
    if os.geteuid() == 0:
        owner = "postgres"
        entry = pwd.getpwnam(owner)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o700)
    server = PostgresServer(port=free_port(), root=root, bin=bin_dir, owner=owner)
    try:
        pwfile = root / "pwfile"
        pwfile.write_text(_SUPERUSER_PASSWORD + "\n", encoding="utf-8")
        if owner is not None:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        _run_as(
            owner,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(server.data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            timeout=120,
        )
        pwfile.unlink()
        server.start()
        server.execute(
            f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'",
            f"CREATE DATABASE {DATABASE} OWNER {USER}",
            database="postgres",
        )
        import psycopg

        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE dim_user (user_id text PRIMARY KEY, age integer)")
    except BaseException:
        server.stop()
        raise
    return server


def seed_dim_user(
    dsn: str, rows: Sequence[tuple[str, int | None]], table: str = "dim_user"
) -> None:
    """Replace the rows of ``table`` (``user_id``, ``age``) with ``rows``."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
        with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL("COPY {} (user_id, age) FROM STDIN").format(sql.Identifier(table))
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (a missing server fails, never skips)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
