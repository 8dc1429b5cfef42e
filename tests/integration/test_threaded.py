"""lookups.threaded over blocking DB-API drivers: sqlite3 (a file), psycopg and PyMySQL.

psycopg reaches the session's PostgreSQL server; PyMySQL the session's MariaDB server, in a
database of its own (``asyncwait_threaded``) so that ``test_mysql.py``'s tables and table
listings in ``asyncwait_test`` stay as they are when both modules run in one session.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
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

from ._mysql import MariaDB
from ._postgres import PASSWORD, PostgresServer, seed_dim_user, start_postgres
from ._system import free_port

USERS = 300  # dim_user: user_0 .. user_299, age 20 + i % 50; user_7 has no age
MYSQL_DATABASE = "asyncwait_threaded"  # not test_mysql.py's asyncwait_test
# A table whose names need quoting in every dialect, and hold the format paramstyles' %.
WEIRD_TABLE, WEIRD_KEY, WEIRD_COLUMN = 'we%ird"`tab', "k%ey", 'va"`l'
Connect = Callable[[], Any]


def _age(i: int) -> int | None:
    return None if i == 7 else 20 + i % 50


def _rows() -> list[tuple[str, int | None]]:
    return [(f"user_{i}", _age(i)) for i in range(USERS)]


def _quoted(name: str, quote: str = '"') -> str:
    return quote + name.replace(quote, quote * 2) + quote


def _weird_ddl(quote: str = '"') -> tuple[str, str]:
    """``CREATE TABLE`` and ``INSERT`` (no parameters) of the weird table, quoted by ``quote``."""
    table, key, column = (_quoted(n, quote) for n in (WEIRD_TABLE, WEIRD_KEY, WEIRD_COLUMN))
    return (
        f"CREATE TABLE {table} ({key} VARCHAR(8) PRIMARY KEY, {column} INTEGER)",
        f"INSERT INTO {table} VALUES ('a', 1), ('b%', 2)",
    )


@pytest.fixture(scope="module")
def sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("threaded") / "dim.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
        db.executemany("INSERT INTO dim_user VALUES (?, ?)", _rows())
        db.execute("CREATE TABLE dim_num (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO dim_num VALUES (?, ?)", [(1, "one"), (2, "two")])
        for statement in _weird_ddl():
            db.execute(statement)
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
        conn.execute(f"DROP TABLE IF EXISTS {_quoted(WEIRD_TABLE)}")
        for statement in _weird_ddl():
            conn.execute(statement)
    return postgres_server


@pytest.fixture(scope="module")
def my(mariadb: MariaDB) -> MariaDB:
    """The session's MariaDB, with ``dim_user`` and ``dim_num`` in :data:`MYSQL_DATABASE`."""
    mariadb.execute(
        f"DROP DATABASE IF EXISTS `{MYSQL_DATABASE}`",
        f"CREATE DATABASE `{MYSQL_DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
        *(
            f"GRANT ALL ON `{MYSQL_DATABASE}`.* TO '{mariadb.user}'@'{host}'"
            for host in ("127.0.0.1", "localhost")
        ),
    )
    conn = mariadb.root(MYSQL_DATABASE)
    try:
        with conn.cursor() as cursor:
            cursor.execute("CREATE TABLE dim_user (user_id VARCHAR(32) PRIMARY KEY, age INT)")
            cursor.executemany("INSERT INTO dim_user VALUES (%s, %s)", _rows())
            cursor.execute("CREATE TABLE dim_num (id INT PRIMARY KEY, name VARCHAR(16))")
            cursor.executemany("INSERT INTO dim_num VALUES (%s, %s)", [(1, "one"), (2, "two")])
            for statement in _weird_ddl("`"):
                cursor.execute(statement)  # no parameters: PyMySQL keeps the % as it is
    finally:
        conn.close()
    return mariadb


def _pymysql_connect(server: MariaDB, port: int | None = None) -> Connect:
    return functools.partial(
        pymysql.connect,
        host="127.0.0.1",
        port=server.port if port is None else port,
        user=server.user,
        password=server.password,
        database=MYSQL_DATABASE,
    )


DRIVERS = ("sqlite3", "psycopg", "pymysql")


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    """The DB-API driver a test runs with."""
    return str(request.param)


@pytest.fixture
def connect(request: pytest.FixtureRequest, driver: str) -> Connect:
    """A ``connect()`` for each driver, all reaching a seeded ``dim_user`` and ``dim_num``."""
    if driver == "sqlite3":
        path: Path = request.getfixturevalue("sqlite_path")
        return functools.partial(sqlite3.connect, path)
    if driver == "psycopg":
        server: PostgresServer = request.getfixturevalue("pg")
        return functools.partial(psycopg.connect, server.dsn)
    return _pymysql_connect(request.getfixturevalue("my"))


@pytest.fixture
async def users(connect: Connect) -> AsyncIterator[ThreadedTable]:
    table = lookups.threaded(connect, table="dim_user", key="user_id", threads=3)
    await table.open()
    try:
        yield table
    finally:
        await table.close()


# --------------------------------------------------------------------------- contract


async def test_get_returns_rows_none_and_nulls(users: ThreadedTable, driver: str) -> None:
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


async def test_unknown_table_and_column_list_what_exists(connect: Connect, driver: str) -> None:
    with pytest.raises(ConfigError, match=r"has no table 'dim_usr'; tables: .*dim_user") as info:
        await lookups.threaded(connect, table="dim_usr", key="user_id").open()
    if driver != "psycopg":  # the session's PostgreSQL database holds other modules' tables
        # For PyMySQL, the tables of the connection's database only: the account also
        # reads asyncwait_test, whose dim_user (and test_mysql.py's tables) must not show.
        assert str(info.value).endswith(f"tables: dim_num, dim_user, {WEIRD_TABLE}")
    with pytest.raises(ConfigError, match=r"has no column 'agee'; columns: user_id, age$"):
        await lookups.threaded(connect, table="dim_user", key="user_id", columns=["agee"]).open()


async def test_names_that_need_quoting(connect: Connect) -> None:
    # Quotes of both dialects and a % (doubled for the format paramstyles, except in a
    # statement sent without parameters, such as the scan's).
    table = lookups.threaded(connect, table=WEIRD_TABLE, key=WEIRD_KEY, columns=[WEIRD_COLUMN])
    await table.open()
    try:
        assert await table.get("b%") == {WEIRD_COLUMN: 2}
        assert await table.get_many(["a", "b%", "c"]) == {
            "a": {WEIRD_COLUMN: 1},
            "b%": {WEIRD_COLUMN: 2},
            "c": None,
        }
        assert {k: row async for k, row in table.scan()} == {
            "a": {WEIRD_COLUMN: 1},
            "b%": {WEIRD_COLUMN: 2},
        }
    finally:
        await table.close()


async def test_get_many_agrees_with_get(users: ThreadedTable, driver: str) -> None:
    # MariaDB compares with the column's collation (utf8mb4_general_ci, PAD SPACE): a key
    # in other case or with trailing spaces finds its row there, and nowhere else.
    keys: list[Hashable] = ["USER_3", "user_4 ", "User_5", "user_6", "nobody", "user_300"]
    one_by_one = {k: await users.get(k) for k in keys}
    assert await users.get_many(keys) == one_by_one
    found = {"user_6"} | ({"USER_3", "user_4 ", "User_5"} if driver == "pymysql" else set())
    assert {k for k, row in one_by_one.items() if row is not None} == found
    if driver == "pymysql":
        assert one_by_one["USER_3"] == {"user_id": "user_3", "age": 23}
        assert one_by_one["user_4 "] == {"user_id": "user_4", "age": 24}


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


async def test_a_key_the_driver_rejects_is_bad_input(connect: Connect, driver: str) -> None:
    table = lookups.threaded(connect, table="dim_user", key="user_id", threads=1)
    await table.open()
    try:
        with pytest.raises(BadInputError, match=r"key \{'a': 1\} of table 'dim_user'"):
            await table.get({"a": 1})  # type: ignore[arg-type]  # unhashable on purpose
        # Not bound as one value by every driver (PyMySQL sends ('user_1',) as ('user_1'),
        # which MySQL compares as 'user_1'): refused before a query.
        with pytest.raises(
            BadInputError, match=r"key \('user_1',\) of table 'dim_user'.*a tuple is not a single"
        ):
            await table.get(("user_1",))
        with pytest.raises(BadInputError, match=r"key \('user_1',\) of table 'dim_user'"):
            await table.get_many(["user_2", ("user_1",)])
        if driver == "pymysql":
            assert await table.get(object()) is None  # PyMySQL binds any object as its str()
        else:
            with pytest.raises(BadInputError, match=r"key <object .* of table 'dim_user'"):
                await table.get(object())
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


async def test_pymysql_join_with_batching_checks_every_output(my: MariaDB) -> None:
    table = lookups.threaded(_pymysql_connect(my), table="dim_user", key="user_id", columns=["age"])
    join = LookupJoin(table, on="userID")  # the default max_batch_size
    events = [{"userID": f"user_{(i * 7) % 330}", "seq": i} for i in range(600)]
    events += [{"userID": "USER_3", "seq": 600}, {"userID": "user_4 ", "seq": 601}]
    out = [e async for e in asyncwait.unordered_wait(events, join, capacity=100)]

    def expected(event: dict[str, Any]) -> dict[str, Any]:
        i = int(event["userID"].strip()[5:])
        return event if i >= USERS else {**event, "age": _age(i)}  # the collation finds both

    assert sorted(out, key=lambda e: e["seq"]) == [expected(e) for e in events]
    stats = join.statistics()
    assert stats.lookup_errors == 0
    assert stats.lookups < len(events) / 4  # in batches
    assert table.threads == 3  # sized by the join: two batched queries plus one for a scan


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


async def test_pymysql_reconnects_after_its_connection_is_killed(my: MariaDB) -> None:
    table = lookups.threaded(_pymysql_connect(my), table="dim_user", key="user_id", threads=1)
    await table.open()
    try:
        assert await table.get("user_1") == {"user_id": "user_1", "age": 21}
        # The server ends the worker's connection (and any other left in this database).
        admin = my.root(MYSQL_DATABASE)
        try:
            with admin.cursor() as cursor:
                cursor.execute(
                    "SELECT id FROM information_schema.processlist WHERE user = %s AND db = %s",
                    (my.user, MYSQL_DATABASE),
                )
                for (thread_id,) in cursor.fetchall():
                    with contextlib.suppress(pymysql.MySQLError):  # gone meanwhile
                        cursor.execute(f"KILL {int(thread_id)}")
        finally:
            admin.close()
        # Lost, or killed: by the server's version.
        with pytest.raises(pymysql.OperationalError, match=r"^\((2013|1927|4031),"):
            await table.get("user_1")
        assert await table.get("user_2") == {"user_id": "user_2", "age": 22}
        assert table.statistics().reconnects == 1
    finally:
        await table.close()


async def test_pymysql_connection_refused_at_open(my: MariaDB) -> None:
    port = free_port()
    table = lookups.threaded(_pymysql_connect(my, port), table="dim_user", key="user_id")
    with pytest.raises(ConnectionError) as info:
        await table.open()
    text = str(info.value)
    # PyMySQL's own message names only the host; the table adds the port.
    assert text.startswith(
        f"lookup threaded:pymysql/dim_user: cannot connect to 127.0.0.1:{port}: "
        "OperationalError: (2003,"
    )
    assert my.password not in text
    assert my.password not in repr(table)
    assert table.statistics().connections == 0


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
