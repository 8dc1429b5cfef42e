"""A throwaway MariaDB server on loopback, for the MySQL lookup tests and ``bench/mysql.py``.

:func:`start_mariadb` installs ``mariadb-server`` when it is missing (apt-get, see
:mod:`tests.integration._system`), initialises a data directory in a temp dir, starts
``mariadbd`` on a free 127.0.0.1 port and creates a database, a user with a password and the
``dim_user`` table. The :func:`mariadb` fixture runs one such server for the whole session.

The server runs as the current user (``--user=root`` when that is root: mariadbd refuses
root otherwise, and the temp dir is not readable by the ``mysql`` account anyway).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ._system import ensure_installed, free_port, wait_for_port

__all__ = ("MariaDB", "mariadb", "start_mariadb")

DATABASE = "asyncwait_test"
USER = "asyncwait"
USERS = 1000  # dim_user holds user_1 .. user_1000 with age 20 + i % 50


class MariaDB:
    """One running ``mariadbd``: its DSN, a root connection, and kill/restart for fault tests.

    Attributes:
        port: the TCP port on 127.0.0.1.
        directory: the temp dir holding the data directory, socket and logs.
        database, user, password: what the lookups connect with.
    """

    def __init__(self, directory: Path, *, database: str, user: str, password: str) -> None:
        self.directory = directory
        self.datadir = directory / "data"
        self.socket = directory / "mysqld.sock"
        self.log = directory / "mariadbd.log"
        self.database = database
        self.user = user
        self.password = password
        self.port = free_port()
        self._mariadbd = ensure_installed(
            ["mariadbd", "mysqld", "/usr/sbin/mariadbd", "/usr/sbin/mysqld"], "mariadb-server"
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        """``mysql://user:password@127.0.0.1:port/database`` (the password URL-quoted)."""
        return (
            f"mysql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{self.database}"
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _as_root_args(self) -> list[str]:
        return ["--user=root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []

    def initialise(self) -> None:
        """Create the data directory (system tables only; root logs in without a password)."""
        install_db = ensure_installed(
            ["mariadb-install-db", "mysql_install_db", "/usr/bin/mariadb-install-db"],
            "mariadb-server",
        )
        self.datadir.mkdir(parents=True)
        done = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *self._as_root_args(),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            msg = f"mariadb-install-db failed ({done.returncode}): {done.stderr[-2000:]}"
            raise RuntimeError(msg)

    def start(self) -> None:
        """Start ``mariadbd`` on :attr:`port` (again, after :meth:`kill`) and wait for it."""
        if self.running:
            return
        log = self.log.open("ab")
        self._process = subprocess.Popen(
            [
                self._mariadbd,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.directory / 'mariadbd.pid'}",
                f"--log-error={self.log}",
                "--skip-name-resolve",
                "--skip-log-bin",
                # A test server: small, no fsync per commit (a killed mariadbd still keeps commits).
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=200",
                *self._as_root_args(),
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        try:
            wait_for_port(self.port, timeout=60, process=self._process)
        except RuntimeError as exc:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            self.stop()
            msg = f"{exc}; mariadbd log:\n{tail}"
            raise RuntimeError(msg) from exc

    def kill(self) -> None:
        """SIGKILL the server: the crash a fault test needs (no clean shutdown)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(30)

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM); SIGKILL if that takes more than 30 s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)

    def root(self, database: str | None = None) -> Any:
        """A PyMySQL connection as root over the unix socket (autocommit)."""
        import pymysql

        return pymysql.connect(
            unix_socket=str(self.socket),
            user="root",
            database=database,
            autocommit=True,
            charset="utf8mb4",
        )

    def execute(self, *statements: str, database: str | None = None) -> None:
        """Run ``statements`` as root, in :attr:`database` unless told otherwise."""
        conn = self.root(database or self.database)
        try:
            with conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            conn.close()

    def create_user_and_database(self) -> None:
        """Create :attr:`database` and :attr:`user` (with :attr:`password`), owning it."""
        conn = self.root()
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    f"CREATE DATABASE `{self.database}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
                )
                for host in ("127.0.0.1", "localhost"):
                    cursor.execute(
                        "CREATE USER %s@%s IDENTIFIED BY %s", (self.user, host, self.password)
                    )
                    cursor.execute(f"GRANT ALL ON `{self.database}`.* TO %s@%s", (self.user, host))
        finally:
            conn.close()


def load_dim_user(server: MariaDB, users: int = USERS, *, table: str = "dim_user") -> None:
    """(Re)create ``table`` (user_id VARCHAR PRIMARY KEY, age INT, city) with ``users`` rows."""
    conn = server.root(server.database)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
            cursor.execute(
                f"CREATE TABLE `{table}` (user_id VARCHAR(32) PRIMARY KEY, age INT NOT NULL, "
                "city VARCHAR(64)) ENGINE=InnoDB"
            )
            rows = [(f"user_{i}", 20 + i % 50, f"city {i % 7}") for i in range(1, users + 1)]
            for start in range(0, len(rows), 5000):
                cursor.executemany(
                    f"INSERT INTO `{table}` VALUES (%s, %s, %s)", rows[start : start + 5000]
                )
    finally:
        conn.close()


def start_mariadb(
    directory: Path | None = None,
    *,
    database: str = DATABASE,
    user: str = USER,
    password: str | None = None,
    users: int = USERS,
) -> MariaDB:
    """Install if needed, initialise and start a MariaDB server with ``dim_user`` loaded.

    Args:
        directory: an empty directory for its files (default: a new temp dir).
        database: the database to create.
        user: the account to create (for 127.0.0.1 and localhost).
        password: its password (default: random, with characters a DSN must quote).
        users: rows of ``dim_user``.

    Returns:
        The running server; call :meth:`MariaDB.stop` (and remove ``directory``) after.
    """
    directory = directory or Path(tempfile.mkdtemp(prefix="asyncwait-mariadb-"))
    password = password or f"pw:{secrets.token_hex(8)}@/x"
    server = MariaDB(directory, database=database, user=user, password=password)
    server.initialise()
    server.start()
    try:
        server.create_user_and_database()
        load_dim_user(server, users)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A MariaDB server for the whole session; a missing server fails, never skips."""
    directory = Path(tempfile.mkdtemp(prefix="asyncwait-mariadb-"))
    server = start_mariadb(directory)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
