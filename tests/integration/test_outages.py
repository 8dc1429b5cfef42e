"""The outage helpers work: plain asyncpg and redis-py clients see the slowness, refusal, recovery.

No asyncwait here; the resilience tests use these helpers against lookups.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import AsyncIterator

import asyncpg
import psycopg
import pytest
import redis as redis_py
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ._outages import (
    create_slow_view,
    pause_redis,
    slow_postgres,
    stop_postgres_for,
    stop_redis_for,
    terminate_backends,
)
from ._postgres import PostgresServer
from ._redis import RedisServer

TABLE = "outage_users"  # this module's own table: dim_user belongs to test_postgres.py


def refused(port: int) -> bool:
    """Whether a new connection to ``port`` is refused (rather than accepted)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except OSError as exc:
        if exc.errno != errno.ECONNREFUSED:
            raise
        return True


async def timed(query: asyncpg.Connection, sql: str, *args: object) -> tuple[float, list[str]]:
    start = time.monotonic()
    rows = await query.fetch(sql, *args)
    return time.monotonic() - start, sorted(r["user_id"] for r in rows)


@pytest.fixture
async def pg(postgres_server: PostgresServer) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test role to the session's server, with ``outage_users``."""
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(
            f"DROP TABLE IF EXISTS {TABLE} CASCADE;"
            f"CREATE TABLE {TABLE} (user_id text PRIMARY KEY, age integer);"
            f"INSERT INTO {TABLE} SELECT 'user_' || i, 20 + i FROM generate_series(0, 9) i;"
        )
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        yield conn
    finally:
        await conn.close()
        with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
            admin.execute(f"DROP TABLE IF EXISTS {TABLE} CASCADE")


# --------------------------------------------------------------------------- PostgreSQL


async def test_slow_view_sleeps_per_statement_and_per_row_while_the_window_lasts(
    postgres_server: PostgresServer, pg: asyncpg.Connection
) -> None:
    view = create_slow_view(postgres_server, table=TABLE)
    assert view == f"{TABLE}_slow"
    one = f"SELECT * FROM {view} WHERE user_id = $1 LIMIT 1"
    many = f"SELECT * FROM {view} WHERE user_id = ANY($1::text[])"
    keys = ["user_1", "user_2", "user_3", "ghost"]
    assert await pg.fetch(f"SELECT * FROM {view} ORDER BY user_id") == await pg.fetch(
        f"SELECT * FROM {TABLE} ORDER BY user_id"
    )
    fast, _ = await timed(pg, one, "user_1")

    window = slow_postgres(postgres_server, 30.0, per_statement=0.3)
    hit, rows = await timed(pg, one, "user_1")
    miss, no_rows = await timed(pg, one, "ghost")
    assert (rows, no_rows) == (["user_1"], [])
    assert hit >= 0.3  # once per statement, found rows or not
    assert miss >= 0.3
    batch, rows = await timed(pg, many, keys)
    assert rows == keys[:3]
    assert batch >= 0.3  # once, not per row

    slow_postgres(postgres_server, 30.0, per_row=0.15)
    batch, rows = await timed(pg, many, keys)
    assert rows == keys[:3]
    assert batch >= 3 * 0.15  # once per row returned

    window = slow_postgres(postgres_server, 0.5, per_statement=0.3)
    assert 0.5 <= window.until - window.start < 0.6
    await asyncio.sleep(window.until - time.monotonic())
    after, _ = await timed(pg, one, "user_1")
    assert after < 0.3  # the window is over
    assert fast < 0.3


async def test_terminate_backends_fails_a_running_query_and_the_idle_connections(
    postgres_server: PostgresServer, pg: asyncpg.Connection
) -> None:
    idle = await asyncpg.connect(postgres_server.dsn)
    try:
        start = time.monotonic()
        running = asyncio.ensure_future(pg.fetchval("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.2)  # the query is running on the server now
        assert not running.done()
        with psycopg.connect(postgres_server.superuser_dsn(), autocommit=True) as admin:
            assert await asyncio.to_thread(terminate_backends, postgres_server) == 2
            assert admin.execute("SELECT 1").fetchone() == (1,)  # the superuser's one lives
        with pytest.raises((asyncpg.AdminShutdownError, asyncpg.ConnectionDoesNotExistError)):
            await running
        assert time.monotonic() - start < 5  # failed, rather than sleeping its 30 s
        for _ in range(200):  # the idle one learns it when the server closes its socket
            if idle.is_closed():
                break
            await asyncio.sleep(0.01)
        assert idle.is_closed()
    finally:
        idle.terminate()
    fresh = await asyncpg.connect(postgres_server.dsn)
    try:
        assert await fresh.fetchval(f"SELECT count(*) FROM {TABLE}") == 10
    finally:
        await fresh.close()
    assert terminate_backends(postgres_server, role="nobody_here") == 0


async def test_stopped_postgres_refuses_then_comes_back_on_the_same_port(
    postgres_server: PostgresServer, pg: asyncpg.Connection
) -> None:
    # The session's server: the helper must bring it back as it was for the tests after.
    outage = await asyncio.to_thread(stop_postgres_for, postgres_server, 1.0)
    try:
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await pg.fetchval("SELECT 1")
        assert refused(postgres_server.port)
        with pytest.raises(OSError, match=r"Connect call failed|Connection refused"):
            await asyncpg.connect(postgres_server.dsn)
    finally:
        back = await asyncio.to_thread(outage.wait)
    pg.terminate()
    assert back - outage.began >= 1.0
    conn = await asyncpg.connect(postgres_server.dsn)
    try:  # committed rows survive, the role and its database are there
        assert await conn.fetchval(f"SELECT count(*) FROM {TABLE}") == 10
        assert await conn.fetchval("SELECT current_user") == postgres_server.user
    finally:
        await conn.close()


# --------------------------------------------------------------------------- Redis


async def test_client_pause_holds_commands_until_it_ends(redis_server: RedisServer) -> None:
    client = aioredis.Redis(
        host=redis_server.host, port=redis_server.port, password=redis_server.password
    )
    key = "outages:k"  # this test's own key in the session's server
    try:
        await client.set(key, "v")
        until = pause_redis(redis_server, 0.6)
        assert await client.get(key) == b"v"  # answered, but only once the pause is over
        assert time.monotonic() >= until - 0.01

        until = pause_redis(redis_server, 0.6, mode="WRITE")
        start = time.monotonic()
        assert await client.get(key) == b"v"
        read = time.monotonic() - start
        await client.set(key, "w")
        assert time.monotonic() >= until - 0.01
        assert read < 0.3  # reads pass a WRITE pause

        start = time.monotonic()  # the pause is over: the server answers at once again
        assert await client.get(key) == b"w"
        assert time.monotonic() - start < 0.3
    finally:
        await client.delete(key)
        await client.aclose()


async def test_stopped_redis_refuses_then_comes_back_with_its_data(
    own_redis: RedisServer,
) -> None:
    # redis-py retries a broken connection by default (and would ride out the outage).
    client = aioredis.Redis(
        host=own_redis.host,
        port=own_redis.port,
        password=own_redis.password,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        await client.set("k", "kept")
        outage = await asyncio.to_thread(stop_redis_for, own_redis, 0.8)
        with pytest.raises(redis_py.ConnectionError):
            await client.get("k")
        assert refused(own_redis.port)

        back = await asyncio.to_thread(outage.wait)
        assert back - outage.began >= 0.8
        assert await client.get("k") == b"kept"  # the client reconnects to the same port
    finally:
        await client.aclose()
