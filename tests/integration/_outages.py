"""Make the real PostgreSQL and Redis of the integration tests slow or unavailable for a while.

No asyncwait code: these act on the servers of ``_postgres.py`` and ``_redis.py``, so a
resilience test can watch a lookup ride through the same trouble a production store has.

PostgreSQL:

* :func:`create_slow_view` + :func:`slow_postgres`: a view over a table (``dim_user_slow``
  over ``dim_user`` by default) that reads the same rows, but sleeps once per statement and/or
  once per row it returns while a slowness window is on. A lookup reads it like the table::

      create_slow_view(server)  # once
      table = lookups.postgres(server.dsn, table="dim_user_slow", key="user_id")
      slow_postgres(server, 5.0, per_statement=0.2)  # every query takes 0.2 s more, for 5 s

* :func:`terminate_backends`: ``pg_terminate_backend`` on every connection of a role (the
  clients see "terminating connection due to administrator command").
* :func:`stop_postgres_for`: the server stops (``pg_ctl stop -m immediate``, as a crash:
  connections break, new ones are refused) and starts again on the same port after a while.
  It comes back with its data, so the session's ``postgres_server`` may be stopped (its
  other clients see their connections break, as a real crash would do to them).

Redis:

* :func:`pause_redis`: ``CLIENT PAUSE`` for a while: the server holds every command (or only
  writes) of every client until then, and answers them afterwards.
* :func:`stop_redis_for`: the server is killed (``SIGKILL``; its data saved first, so that
  it comes back) and restarted on the same port after a while. Use ``own_redis``: killing
  the session's server would break the connections other tests keep.

Times are ``time.monotonic()``. A stop-for-a-while helper returns once the server is down and
restarts it from a thread of its own; from a coroutine, call it with ``asyncio.to_thread``
(stopping blocks for a fraction of a second) and ``await asyncio.to_thread(outage.wait)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql

from ._postgres import PostgresServer
from ._redis import RedisServer

__all__ = (
    "Slowness",
    "TimedOutage",
    "create_slow_view",
    "pause_redis",
    "slow_postgres",
    "stop_postgres_for",
    "stop_redis_for",
    "terminate_backends",
)

SETTINGS = "asyncwait_slowness"  # one row: until when, and how slow
FUNCTION = "asyncwait_slow"  # sleeps as the row says, returns true


class TimedOutage:
    """An outage that began in the caller's thread and ends in a thread of its own.

    Attributes:
        began: when the server was down (``end`` runs ``seconds`` later).
        ended: when it was back, or ``None`` while it is down.
    """

    def __init__(
        self, what: str, begin: Callable[[], None], end: Callable[[], None], seconds: float
    ) -> None:
        self.what = what
        self.ended: float | None = None
        self._end = end
        self._seconds = seconds
        self._error: BaseException | None = None
        begin()
        self.began = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"outage of {what}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            time.sleep(self._seconds)  # the outage itself
        finally:
            try:
                self._end()
                self.ended = time.monotonic()
            except BaseException as exc:  # handed to wait(), in the test's thread
                self._error = exc

    def wait(self, timeout: float = 60.0) -> float:
        """Wait until the server is back; return when it was.

        Raises:
            TimeoutError: not back within ``timeout`` seconds.
            RuntimeError: it could not be restarted (the cause is chained).
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            msg = f"{self.what} is still down after {timeout:g} s"
            raise TimeoutError(msg)
        if self._error is not None:
            msg = f"could not bring {self.what} back: {self._error}"
            raise RuntimeError(msg) from self._error
        assert self.ended is not None
        return self.ended


# --------------------------------------------------------------------------- PostgreSQL


def create_slow_view(
    server: PostgresServer, *, table: str = "dim_user", view: str | None = None
) -> str:
    """Create (or replace) a view reading all of ``table``, slowed by :func:`slow_postgres`.

    The view, ``{table}_slow`` unless named, belongs to the test role (``server.dsn``), as do
    its settings row and function. Its statement sleep is a one-time filter (evaluated once
    per statement, found rows or not); its row sleep runs for each row the query returns.

    Returns:
        The view's name.
    """
    view = view or f"{table}_slow"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {SETTINGS} (
                one boolean PRIMARY KEY DEFAULT true CHECK (one),
                until timestamptz NOT NULL DEFAULT '-infinity',
                per_statement float8 NOT NULL DEFAULT 0,
                per_row float8 NOT NULL DEFAULT 0);
            INSERT INTO {SETTINGS} DEFAULT VALUES ON CONFLICT DO NOTHING;
            CREATE OR REPLACE FUNCTION {FUNCTION}(per text) RETURNS boolean
            LANGUAGE plpgsql VOLATILE AS $$
            DECLARE s {SETTINGS};
            BEGIN
                SELECT * INTO s FROM {SETTINGS};
                IF clock_timestamp() < s.until THEN
                    PERFORM pg_sleep(CASE per WHEN 'row' THEN s.per_row ELSE s.per_statement END);
                END IF;
                RETURN true;
            END $$;
            """
        )
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE VIEW {view} AS SELECT t.* FROM {table} t "
                "WHERE (SELECT {fn}('statement')) AND {fn}('row')"
            ).format(
                view=sql.Identifier(view), table=sql.Identifier(table), fn=sql.Identifier(FUNCTION)
            )
        )
    return view


@dataclass(frozen=True, slots=True)
class Slowness:
    """A slowness window (``time.monotonic()``): on by ``start``, over by ``until``."""

    start: float
    until: float


def slow_postgres(
    server: PostgresServer, seconds: float, *, per_statement: float = 0.0, per_row: float = 0.0
) -> Slowness:
    """From now on and for ``seconds``, slow every view made by :func:`create_slow_view`.

    A statement reading such a view sleeps ``per_statement`` seconds once, plus ``per_row``
    for each row it returns, if it runs before the window ends (the server's clock decides).
    ``seconds=0`` ends a window early. Takes effect at once, for every connection.
    """
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        start = time.monotonic()
        conn.execute(
            sql.SQL(
                "UPDATE {} SET until = clock_timestamp() + make_interval(secs => %s), "
                "per_statement = %s, per_row = %s"
            ).format(sql.Identifier(SETTINGS)),
            (seconds, per_statement, per_row),
        )
        # The server read its clock between `start` and now: the window is over by `until`.
        until = time.monotonic() + seconds
    return Slowness(start, until)


def terminate_backends(server: PostgresServer, role: str | None = None) -> int:
    """Terminate every connection of ``role`` (default: the test role); return how many."""
    with psycopg.connect(server.superuser_dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE usename = %s AND pid <> pg_backend_pid()",
            (role or server.user,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def stop_postgres_for(server: PostgresServer, seconds: float) -> TimedOutage:
    """Stop the server now, as a crash would, and start it on the same port ``seconds`` later.

    Returns once it is down (its port refuses connections); committed rows survive.
    """
    return TimedOutage(f"PostgreSQL on port {server.port}", server.kill, server.start, seconds)


# --------------------------------------------------------------------------- Redis


def pause_redis(
    server: RedisServer, seconds: float, *, mode: Literal["ALL", "WRITE"] = "ALL"
) -> float:
    """``CLIENT PAUSE``: hold every command (or only writes) for ``seconds``; return until when.

    Clients stay connected; their commands are answered once the pause is over.
    """
    with server.client() as client:
        until = time.monotonic() + seconds
        client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), mode)
    return until


def stop_redis_for(server: RedisServer, seconds: float, *, save: bool = True) -> TimedOutage:
    """Kill the server now and start it on the same port ``seconds`` later.

    With ``save``, its data is written to disk first, so the restarted server has it.
    Returns once it is down (its port refuses connections).
    """

    def begin() -> None:
        if save:
            server.save()
        server.kill()

    return TimedOutage(f"Redis on port {server.port}", begin, server.start, seconds)
