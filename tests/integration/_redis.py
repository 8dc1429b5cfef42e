"""A real Redis server on loopback for integration tests and benchmarks.

:func:`start_redis` runs ``redis-server`` (installing the Debian package when it is missing)
on a free 127.0.0.1 port, with a password, no persistence and its files in a fresh
temporary directory, and returns a handle that can kill, pause, restart and stop it.

Fixtures: ``redis_server`` is one server for the whole session (tests use their own key
prefixes, so they never see each other's rows); ``own_redis`` is a private server for a
test that kills or pauses it. ``bench/kv.py`` starts its own with the same function.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as redis_py

from ._system import ensure_installed, free_port, wait_for_port

__all__ = ("RedisServer", "own_redis", "redis_server", "seed_users", "start_redis")

PASSWORD = "rds-pw-K7q2"  # distinctive: tests assert it never shows up in a message


def user_row(i: int) -> dict[str, str]:
    """The row of ``user_{i}`` as a hash stores it (all values are strings)."""
    return {"user_id": f"user_{i}", "age": str(18 + i % 60), "city": f"city_{i % 7}"}


@dataclass
class RedisServer:
    """A running ``redis-server`` started by :func:`start_redis`.

    Attributes:
        port: the TCP port on 127.0.0.1.
        root: the temporary directory holding its log (and a dump, if one is saved).
        url: a URL with the password, for the lookup under test.
    """

    port: int
    root: Path
    executable: str
    password: str = PASSWORD
    host: str = "127.0.0.1"
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def url_without_password(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis_py.Redis:
        """A synchronous client (to seed data); the caller closes it."""
        return redis_py.Redis(
            host=self.host, port=self.port, password=self.password, decode_responses=True
        )

    def start(self) -> None:
        """Start the server (again), loading ``dump.rdb`` from ``root`` if one was saved."""
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - the server owns it
        try:
            self._process = subprocess.Popen(
                [
                    self.executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    self.host,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--requirepass",
                    self.password,
                    "--dir",
                    str(self.root),
                    "--dbfilename",
                    "dump.rdb",
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        finally:
            log.close()
        wait_for_port(self.port, timeout=20, process=self._process)

    def save(self) -> None:
        """Write the data to ``dump.rdb``, so that a restart brings it back."""
        with self.client() as c:
            c.save()

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze a paused server (SIGCONT)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def start_redis(root: Path | None = None) -> RedisServer:
    """Start ``redis-server`` on a free loopback port; its files go to ``root`` (or a temp dir)."""
    executable = ensure_installed(["redis-server", "/usr/bin/redis-server"], "redis-server")
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="asyncwait-redis-"))
    root.mkdir(parents=True, exist_ok=True)
    server = RedisServer(port=free_port(), root=root, executable=executable)
    server.start()
    return server


def seed_users(
    server: RedisServer, prefix: str, n: int, *, value: str = "hash", batch: int = 1000
) -> None:
    """Store rows ``user_0`` .. ``user_{n-1}`` under ``prefix`` as hashes or JSON strings."""
    with server.client() as c:
        for start in range(0, n, batch):
            pipe = c.pipeline(transaction=False)
            for i in range(start, min(start + batch, n)):
                row = user_row(i)
                if value == "hash":
                    pipe.hset(f"{prefix}user_{i}", mapping=row)
                else:
                    json_row = {**row, "age": int(row["age"])}
                    pipe.set(f"{prefix}user_{i}", json.dumps(json_row))
            pipe.execute()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server for the session; each test uses its own key prefix."""
    root = Path(tempfile.mkdtemp(prefix="asyncwait-redis-"))
    server = start_redis(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis server, for a test that kills, pauses or restarts it."""
    server = start_redis(tmp_path / f"redis-{os.getpid()}")
    try:
        yield server
    finally:
        server.stop()
