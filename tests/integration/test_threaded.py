"""lookups.threaded over blocking DB-API drivers: sqlite3 (a file) and psycopg (a real server)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import asyncwait
from asyncwait import (
    BadInputError,
    ClosedError,
    ConfigError,
    OutputMode,
    StreamEnvironment,
    lookups,
    retry,
    sinks,
)
from asyncwait.join import LookupJoin
from asyncwait.lookups import ThreadedTable

from ._postgres import PASSWORD, PostgresServer, seed_dim_user, start_postgres
from ._system import free_port

USERS = 300  # dim_user: user_0 .. user_299, age 20 + i % 50; user_7 has no age
Connect = Callable[[], Any]


def _age(i: int) -> int | None:
    return None if i == 7 else 20 + i % 50


def _rows() -> list[tuple[str, int | None]]:
    return [(f"user_{i}", _age(i)) for i in range(USERS)]


@pytest.fixture(scope="module")
def sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("threaded") / "dim.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
        db.executemany("INSERT INTO dim_user VALUES (?, ?)", _rows())
        db.execute("CREATE TABLE dim_num (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO dim_num VALUES (?, ?)", [(1, "one"), (2, "two")])
    db.close()
    return path


@pytest.fixture(scope="module")
def pg(postgres_server: PostgresServer) -> PostgresServer:
    seed_dim_user(postgres_server.dsn, _rows())
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS dim_num; "
            "CREATE TABLE dim_num (id integer PRIMARY KEY, name text); "
            "INSERT INTO dim_num VALUES (1, 'one'), (2, 'two')"
        )
    return postgres_server


@pytest.fixture(params=["sqlite3", "psycopg"])
def connect(request: pytest.FixtureRequest) -> Connect:
    """A ``connect()`` for each driver, both reaching a seeded ``dim_user``."""
    if request.param == "sqlite3":
        path: Path = request.getfixturevalue("sqlite_path")
        return functools.partial(sqlite3.connect, path)
    server: PostgresServer = request.getfixturevalue("pg")
    return functools.partial(psycopg.connect, server.dsn)


@pytest.fixture
async def users(connect: Connect) -> AsyncIterator[ThreadedTable]:
    table = lookups.threaded(connect, table="dim_user", key="user_id", threads=3)
    await table.open()
    try:
        yield table
    finally:
        await table.close()


# --------------------------------------------------------------------------- contract


async def test_get_returns_rows_none_and_nulls(users: ThreadedTable, connect: Connect) -> None:
    driver = "sqlite3" if connect.func is sqlite3.connect else "psycopg"  # type: ignore[attr-defined]
    assert users.name == f"threaded:{driver}/dim_user"
    assert users.columns == ("user_id", "age")
    assert await users.get("user_3") == {"user_id": "user_3", "age": 23}
    assert await users.get("user_7") == {"user_id": "user_7", "age": None}
    assert await users.get("nobody") is None
    stats = users.statistics()
    assert (stats.queries, stats.in_flight, stats.connections) == (3, 0, 3)


async def test_get_many_maps_rows_back_across_chunks(users: ThreadedTable) -> None:
    keys: list[Hashable] = [*(f"user_{i}" for i in range(600)), "user_5", "user_5"]
    before = users.statistics().queries
    rows = await users.get_many(keys)
    assert len(rows) == 600
    for i in range(600):
        expected = {"user_id": f"user_{i}", "age": _age(i)} if i < USERS else None
        assert rows[f"user_{i}"] == expected
    assert users.statistics().queries - before == 3  # 250 keys per statement


async def test_concurrent_lookups_use_every_thread(users: ThreadedTable) -> None:
    import asyncio

    keys = [f"user_{i % 320}" for i in range(400)]
    rows = await asyncio.gather(*(users.get(k) for k in keys))
    for k, row in zip(keys, rows, strict=True):
        i = int(k[5:])
        assert row == ({"user_id": k, "age": _age(i)} if i < USERS else None)


async def test_scan_and_columns(connect: Connect) -> None:
    table = lookups.threaded(connect, table="dim_user", key="user_id", columns=["age"])
    await table.open()
    try:
        scanned = {k: row async for k, row in table.scan()}
        assert len(scanned) == USERS
        assert scanned["user_42"] == {"age": _age(42)}
        assert await table.get("user_1") == {"age": 21}
    finally:
        await table.close()


async def test_keys_converted_by_the_database_still_map_back(connect: Connect) -> None:
    # SQLite's affinity and PostgreSQL's unknown-typed literals both turn '2' into 2.
    table = lookups.threaded(connect, table="dim_num", key="id", columns=["name"])
    await table.open()
    try:
        assert await table.get_many([1, "2", 3]) == {
            1: {"name": "one"},
            "2": {"name": "two"},
            3: None,
        }
    finally:
        await table.close()


async def test_unknown_table_and_column_list_what_exists(connect: Connect) -> None:
    with pytest.raises(ConfigError, match=r"has no table 'dim_usr'; tables: .*dim_user"):
        await lookups.threaded(connect, table="dim_usr", key="user_id").open()
    with pytest.raises(ConfigError, match=r"has no column 'agee'; columns: user_id, age"):
        await lookups.threaded(connect, table="dim_user", key="user_id", columns=["agee"]).open()


async def test_closed_and_not_open_tables_refuse_lookups(connect: Connect) -> None:
    table = lookups.threaded(connect, table="dim_user", key="user_id", threads=1)
    with pytest.raises(ClosedError, match="is not open yet"):
        await table.get("user_1")
    await table.open()
    await table.close()
    await table.close()
    with pytest.raises(ClosedError, match="was closed"):
        await table.get_many(["user_1"])
    with pytest.raises(ClosedError, match="was closed"):
        await anext(aiter(table.scan()))
    assert table.statistics().connections == 0


async def test_a_key_the_driver_rejects_is_bad_input(connect: Connect) -> None:
    table = lookups.threaded(connect, table="dim_user", key="user_id", threads=1)
    await table.open()
    try:
        with pytest.raises(BadInputError, match=r"key \{'a': 1\} of table 'dim_user'"):
            await table.get({"a": 1})  # type: ignore[arg-type]  # unhashable on purpose
        assert await table.get("user_1") is not None  # the connection still works
    finally:
        await table.close()


async def test_sqlite_paramstyles(sqlite_path: Path) -> None:
    for style in ("qmark", "named", "numeric"):
        table = lookups.threaded(
            functools.partial(sqlite3.connect, sqlite_path),
            table="dim_user",
            key="user_id",
            paramstyle=style,
            name=f"users-{style}",
        )
        await table.open()
        try:
            assert table.paramstyle == style
            assert await table.get("user_2") == {"user_id": "user_2", "age": 22}
            assert (await table.get_many(["user_2", "x"]))["x"] is None
        finally:
            await table.close()


async def test_threads_default_and_sized_by_the_join(sqlite_path: Path) -> None:
    connect = functools.partial(sqlite3.connect, sqlite_path)
    assert lookups.threaded(connect, table="dim_user", key="user_id").threads == 4
    table = lookups.threaded(connect, table="dim_user", key="user_id")
    events = [{"u": f"user_{i}"} for i in range(50)]
    out = [e async for e in asyncwait.unordered_wait(events, LookupJoin(table, on="u"))]
    assert len(out) == 50
    assert table.threads == 3  # batched: two queries in flight, plus one for a scan
    fixed = lookups.threaded(connect, table="dim_user", key="user_id", threads=3)
    fixed.expect_queries(100)
    assert fixed.threads == 3


async def test_factory_rejects_bad_options(sqlite_path: Path) -> None:
    connect = functools.partial(sqlite3.connect, sqlite_path)
    with pytest.raises(ConfigError, match="connect must be a callable"):
        lookups.threaded("dim.db", table="t", key="k")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="paramstyle must be one of"):
        lookups.threaded(connect, table="t", key="k", paramstyle="dollar")
    with pytest.raises(ConfigError, match="threads must be an int from 1 to 64"):
        lookups.threaded(connect, table="t", key="k", threads=0)


# --------------------------------------------------------------------------- the join


@pytest.mark.parametrize("mode", list(OutputMode))
async def test_lookup_join_in_every_mode(connect: Connect, mode: OutputMode) -> None:
    events = [{"userID": f"user_{(i * 7) % 330}", "seq": i} for i in range(500)]
    env = StreamEnvironment(name="threaded-join")
    out = (
        env.from_collection(events)
        .lookup_join(
            lookups.threaded(connect, table="dim_user", key="user_id", columns=["age"]),
            on="userID",
            mode=mode,
            capacity=32,
            timeout=30,
            retry=retry.fixed_delay(2, 0.01),
        )
        .sink_to(sinks.collect())
    )
    await env.execute_async()

    def expected(event: dict[str, Any]) -> dict[str, Any]:
        i = int(event["userID"][5:])
        return event if i >= USERS else {**event, "age": _age(i)}

    values = out.values
    if mode is OutputMode.ORDERED:
        assert values == [expected(e) for e in events]
    else:
        assert sorted(values, key=lambda e: e["seq"]) == [expected(e) for e in events]


async def test_unbatched_join_spreads_over_threads(pg: PostgresServer) -> None:
    table = lookups.threaded(
        functools.partial(psycopg.connect, pg.dsn), table="dim_user", key="user_id", threads=4
    )
    join = LookupJoin(table, on="u", max_batch_size=1)
    events = [{"u": f"user_{i}"} for i in range(200)]
    out = [e async for e in asyncwait.unordered_wait(events, join, capacity=50)]
    assert len(out) == 200
    assert join.statistics().lookups == 200


# --------------------------------------------------------------------------- faults


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        seed_dim_user(server.dsn, _rows())
        yield server
    finally:
        server.stop()


async def test_psycopg_reconnects_after_the_server_restarts(own_server: PostgresServer) -> None:
    import asyncio

    table = lookups.threaded(
        functools.partial(psycopg.connect, own_server.dsn),
        table="dim_user",
        key="user_id",
        threads=1,
    )
    await table.open()
    try:
        assert await table.get("user_1") is not None
        await asyncio.to_thread(own_server.kill)
        with pytest.raises(psycopg.OperationalError):
            await table.get("user_1")
        # Down: reconnecting fails with a clear error naming the table.
        with pytest.raises(
            ConnectionError, match=r"lookup threaded:psycopg/dim_user: cannot connect"
        ):
            await table.get("user_1")
        await asyncio.to_thread(own_server.start)
        assert await table.get("user_2") == {"user_id": "user_2", "age": 22}
        assert table.statistics().reconnects >= 1
    finally:
        await table.close()


async def test_connection_refused_at_open(tmp_path: Path) -> None:
    port = free_port()
    dsn = f"postgresql://asyncwait:{PASSWORD}@127.0.0.1:{port}/asyncwait"
    table = lookups.threaded(functools.partial(psycopg.connect, dsn), table="dim_user", key="k")
    with pytest.raises(ConnectionError) as info:
        await table.open()
    text = str(info.value)
    assert text.startswith("lookup threaded:psycopg/dim_user: cannot connect")
    assert "127.0.0.1" in text
    assert str(port) in text
    assert PASSWORD not in text
    assert PASSWORD not in repr(table)
