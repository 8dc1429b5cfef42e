"""lookups.postgres against a real PostgreSQL server on loopback (see ``_postgres.py``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Hashable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import asyncwait
from asyncwait import (
    AsyncFunction,
    AsyncFunctionError,
    AsyncWaitOperator,
    BadInputError,
    ClosedError,
    ConfigError,
    LookupFailedError,
    OutputMode,
    Record,
    RuntimeContext,
    StreamElement,
    StreamEnvironment,
    cache,
    lookups,
    retry,
    sinks,
)
from asyncwait.join import LookupJoin
from asyncwait.lookups import PostgresTable

from ._postgres import PASSWORD, PostgresServer, seed_dim_user, start_postgres
from ._system import free_port

ROOT = Path(__file__).resolve().parents[2]
# dim_bad.seen is a timestamp without time zone: asyncpg returns naive datetimes.
_NAIVE_SEEN = dt.datetime.fromisoformat("2016-06-06T07:03:42")
USERS = 200  # dim_user: user_0 .. user_199, age 20 + i % 50; user_7 has no age


def _age(i: int) -> int | None:
    return None if i == 7 else 20 + i % 50


@pytest.fixture(scope="module")
def pg(postgres_server: PostgresServer) -> PostgresServer:
    """The session's server, with the tables these tests read."""
    seed_dim_user(postgres_server.dsn, [(f"user_{i}", _age(i)) for i in range(USERS)])
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(
            """
            DROP TABLE IF EXISTS dim_types, dim_bad CASCADE;
            DROP VIEW IF EXISTS dim_slow;
            DROP SCHEMA IF EXISTS other CASCADE;
            CREATE TABLE dim_types (
                id integer PRIMARY KEY, price numeric(10, 2), seen timestamptz,
                tags text[], doc jsonb, active boolean, "we""ird col" text);
            INSERT INTO dim_types VALUES
                (1, 9.99, '2016-06-06 07:03:42+00', '{a,b}', '{"k": 1}', true, 'x'),
                (2, NULL, NULL, NULL, NULL, NULL, NULL);
            CREATE TABLE dim_bad (user_id text PRIMARY KEY, seen timestamp);
            INSERT INTO dim_bad VALUES ('ok', '2016-06-06 07:03:42'),
                                       ('bad', '20000-01-01 00:00:00');
            CREATE VIEW dim_slow AS SELECT u.* FROM dim_user u, pg_sleep(3) s;
            CREATE SCHEMA other;
            CREATE TABLE other.dim_city (city text PRIMARY KEY, country text);
            INSERT INTO other.dim_city VALUES ('Berlin', 'DE');
            """
        )
    return postgres_server


@pytest.fixture
async def users(pg: PostgresServer) -> AsyncIterator[PostgresTable]:
    table = lookups.postgres(pg.dsn, table="dim_user", key="user_id")
    await table.open()
    try:
        yield table
    finally:
        await table.close()


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test's own, for the tests that kill it."""
    server = start_postgres()
    try:
        seed_dim_user(server.dsn, [(f"user_{i}", _age(i)) for i in range(USERS)])
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- contract


async def test_get_returns_rows_none_and_nulls(users: PostgresTable, pg: PostgresServer) -> None:
    assert users.name == f"postgres://asyncwait@127.0.0.1:{pg.port}/asyncwait/dim_user"
    assert users.columns == ("user_id", "age")
    assert await users.get("user_3") == {"user_id": "user_3", "age": 23}
    assert await users.get("user_7") == {"user_id": "user_7", "age": None}
    assert await users.get("nobody") is None
    assert users.statistics().queries == 3
    assert users.statistics().in_flight == 0


async def test_get_many_maps_rows_back_across_chunks(users: PostgresTable) -> None:
    keys: list[Hashable] = [*(f"user_{i}" for i in range(1_500)), "user_3", "user_3"]
    before = users.statistics().queries
    rows = await users.get_many(keys)
    assert len(rows) == 1_500  # one entry per distinct key
    for i in range(1_500):
        expected = {"user_id": f"user_{i}", "age": _age(i)} if i < USERS else None
        assert rows[f"user_{i}"] == expected
    assert users.statistics().queries - before == 2  # 1000 keys per statement
    assert await users.get_many([]) == {}


async def test_columns_option_types_and_quoted_names(pg: PostgresServer) -> None:
    table = lookups.postgres(
        pg.dsn, table="dim_types", key="id", columns=["doc", "price", 'we"ird col', "tags"]
    )
    await table.open()
    try:
        assert table.columns == ("doc", "price", 'we"ird col', "tags")
        row = await table.get(1)
        assert row == {"doc": '{"k": 1}', "price": Decimal("9.99"), 'we"ird col': "x",
                       "tags": ["a", "b"]}  # fmt: skip
        assert await table.get(2) == dict.fromkeys(table.columns)
        many = await table.get_many([2, 1, 3])
        assert many == {1: row, 2: dict.fromkeys(table.columns), 3: None}
    finally:
        await table.close()
    full = lookups.postgres(pg.dsn, table="dim_types", key="id")
    await full.open()
    try:
        row = await full.get(1)
        assert row is not None
        assert row["seen"] == dt.datetime(2016, 6, 6, 7, 3, 42, tzinfo=dt.UTC)
        assert row["active"] is True
    finally:
        await full.close()


async def test_scan_reads_the_whole_table(users: PostgresTable) -> None:
    scanned = {key: row async for key, row in users.scan()}
    assert len(scanned) == USERS
    assert scanned["user_7"] == {"user_id": "user_7", "age": None}
    assert scanned["user_42"] == {"user_id": "user_42", "age": _age(42)}


async def test_scan_feeds_a_full_cache(pg: PostgresServer) -> None:
    table = lookups.postgres(pg.dsn, table="dim_user", key="user_id", columns=["age"])
    events = [{"userID": f"user_{i % 210}"} for i in range(400)]
    join = LookupJoin(table, on="userID", cache=cache.full(None))
    out = [e async for e in asyncwait.ordered_wait(events, join)]
    assert out[3] == {"userID": "user_3", "age": 23}
    assert out[205] == {"userID": "user_205"}  # no row: a left join passes it on
    assert join.statistics().lookups == 0  # the cache answered everything


async def test_schema_option_and_search_path(pg: PostgresServer) -> None:
    hidden = lookups.postgres(pg.dsn, table="dim_city", key="city")
    with pytest.raises(ConfigError, match=r"has no table 'dim_city'.*other\.dim_city"):
        await hidden.open()
    table = lookups.postgres(pg.dsn, table="dim_city", key="city", schema="other")
    assert table.name.endswith("/asyncwait/other.dim_city")
    await table.open()
    try:
        assert await table.get("Berlin") == {"city": "Berlin", "country": "DE"}
    finally:
        await table.close()


async def test_unknown_table_lists_the_tables(pg: PostgresServer) -> None:
    table = lookups.postgres(pg.dsn, table="dim_usr", key="user_id")
    with pytest.raises(ConfigError) as info:
        await table.open()
    text = str(info.value)
    assert f"127.0.0.1:{pg.port}" in text
    assert "has no table 'dim_usr'" in text
    assert "tables: " in text
    assert "dim_user" in text
    assert "dim_types" in text
    assert PASSWORD not in text


@pytest.mark.parametrize(
    ("key", "columns", "missing"),
    [("uid", None, "'uid'"), ("user_id", ["age", "agee", "zip"], "'agee', 'zip'")],
)
async def test_unknown_column_lists_the_columns(
    pg: PostgresServer, key: str, columns: list[str] | None, missing: str
) -> None:
    table = lookups.postgres(pg.dsn, table="dim_user", key=key, columns=columns)
    with pytest.raises(ConfigError, match=f"has no column {missing}; columns: user_id, age"):
        await table.open()


async def test_closed_and_not_open_tables_refuse_lookups(pg: PostgresServer) -> None:
    table = lookups.postgres(pg.dsn, table="dim_user", key="user_id")
    with pytest.raises(ClosedError, match="is not open yet"):
        await table.get("user_1")
    await table.open()
    await table.open()  # idempotent
    await table.close()
    await table.close()
    with pytest.raises(ClosedError, match="was closed"):
        await table.get_many(["user_1"])
    with pytest.raises(ClosedError, match="was closed"):
        await anext(aiter(table.scan()))
    await table.open()  # may open again
    try:
        assert await table.get("user_1") == {"user_id": "user_1", "age": 21}
    finally:
        await table.close()
    assert repr(table).startswith("<PostgresTable 'postgres://asyncwait@")


async def test_pool_size_default_explicit_and_bounded() -> None:
    assert lookups.postgres(None, table="t", key="k").pool_size == 10
    sized = lookups.postgres(None, table="t", key="k")
    sized.expect_queries(1_000)
    assert sized.pool_size == 50
    fixed = lookups.postgres(None, table="t", key="k", pool_size=3)
    fixed.expect_queries(100)
    assert fixed.pool_size == 3


async def test_factory_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="dsn must be a URL") as info:
        lookups.postgres("host=db password=hunter2", table="t", key="k")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="pool_size must be an int from 1 to 100"):
        lookups.postgres(None, table="t", key="k", pool_size=0)
    with pytest.raises(ConfigError, match="table must be a non-empty name"):
        lookups.postgres(None, table="", key="k")
    with pytest.raises(ConfigError, match="connect_timeout"):
        lookups.postgres(None, table="t", key="k", connect_timeout=0)


async def test_dsn_from_the_environment(
    pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", str(pg.port)),
        ("PGUSER", pg.user),
        ("PGPASSWORD", pg.password),
        ("PGDATABASE", pg.database),
    ]:
        monkeypatch.setenv(name, value)
    table = lookups.postgres(None, table="dim_user", key="user_id", columns=["age"])
    assert table.name == f"postgres://asyncwait@127.0.0.1:{pg.port}/asyncwait/dim_user"
    await table.open()
    try:
        assert await table.get("user_2") == {"age": 22}
    finally:
        await table.close()


@pytest.mark.parametrize(
    ("dsn", "name"),
    [
        ("postgresql://app:p%40ss@db:6432/shop", "postgres://app@db:6432/shop/t"),
        ("postgres://app@[::1]/shop?password=p%40ss", "postgres://app@::1:5432/shop/t"),
        (
            "postgresql:///shop?host=/run/pg&user=app&password=p@ss",
            "postgres://app@/run/pg:5432/shop/t",
        ),
    ],
)
def test_names_and_messages_never_hold_the_password(
    dsn: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSWORD", "env-secret")
    table = lookups.postgres(dsn, table="t", key="k")
    assert table.name == name
    assert "p@ss" not in repr(table)
    target = table._target
    assert target.scrub("a p@ss b p%40ss c env-secret") == "a *** b *** c ***"


# --------------------------------------------------------------------------- bad input


async def test_key_of_the_wrong_type_is_bad_input(pg: PostgresServer) -> None:
    table = lookups.postgres(pg.dsn, table="dim_types", key="id")
    await table.open()
    try:
        with pytest.raises(BadInputError, match=r"key '1' of table 'dim_types' cannot be sent"):
            await table.get("1")
        with pytest.raises(BadInputError, match=r"key \[1, 'x'\] of table 'dim_types'"):
            await table.get_many([1, "x"])
        assert await table.get(1) is not None  # the connection is still fine
    finally:
        await table.close()


async def test_row_that_cannot_be_read_names_key_and_table(pg: PostgresServer) -> None:
    table = lookups.postgres(pg.dsn, table="dim_bad", key="user_id")
    await table.open()
    try:
        # The stored row is at fault, not the key: a failed lookup, not bad input.
        with pytest.raises(LookupFailedError, match=r"key 'bad' of table 'dim_bad' has a row"):
            await table.get("bad")
        with pytest.raises(LookupFailedError, match=r"table 'dim_bad'"):
            await table.get_many(["ok", "bad"])
        with pytest.raises(
            LookupFailedError, match=r"table 'dim_bad' has a row that cannot be read"
        ):
            _ = [kv async for kv in table.scan()]
        assert await table.get("ok") == {"user_id": "ok", "seen": _NAIVE_SEEN}
    finally:
        await table.close()


async def test_a_bad_key_in_a_batch_is_isolated(pg: PostgresServer, tmp_path: Path) -> None:
    """The batch fails as a whole; the join retries its keys one by one, so only the bad one
    (a text key for an integer column) is rejected to the errors file, the rest enriched."""
    events = [{"id": k, "n": i} for i, k in enumerate([1, "1", 2, 3, 1])]
    env = StreamEnvironment(name="isolate", errors_path=tmp_path / "errors.jsonl")
    out = (
        env.from_collection(events)
        .lookup_join(
            lookups.postgres(pg.dsn, table="dim_types", key="id", columns=["active"]),
            on="id",
            mode="ordered",
        )
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert result.errors == 1
    assert [e["n"] for e in out.values] == [0, 2, 3, 4]
    assert out.values[0] == {"id": 1, "n": 0, "active": True}
    assert out.values[2] == {"id": 3, "n": 3}
    (rejected,) = [
        json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()
    ]
    assert "key '1' of table 'dim_types' cannot be sent" in rejected["reason"]


async def test_a_row_that_cannot_be_read_fails_the_job(pg: PostgresServer, tmp_path: Path) -> None:
    """A row the driver cannot decode is a failed lookup: no errors file entry, and its
    batch is not asked again key by key."""
    events = [{"user": k, "n": i} for i, k in enumerate(["ok", "bad", "ok", "nobody"])]
    env = StreamEnvironment(name="unreadable", errors_path=tmp_path / "errors.jsonl")
    table = lookups.postgres(pg.dsn, table="dim_bad", key="user_id", columns=["seen"])
    env.from_collection(events).lookup_join(table, on="user").sink_to(sinks.collect())
    with pytest.raises(AsyncFunctionError) as info:
        await env.execute_async()
    assert isinstance(info.value.__cause__, LookupFailedError)
    assert "'bad'" in str(info.value.__cause__)
    assert table.statistics().queries == 1  # one batch, asked once
    assert (tmp_path / "errors.jsonl").read_text() == ""


# --------------------------------------------------------------------------- the join


@pytest.mark.parametrize("mode", list(OutputMode))
@pytest.mark.parametrize("max_batch_size", [1, 256])
async def test_lookup_join_in_every_mode(
    pg: PostgresServer, mode: OutputMode, max_batch_size: int
) -> None:
    events = [{"userID": f"user_{(i * 7) % 230}", "seq": i} for i in range(600)]
    table = lookups.postgres(pg.dsn, table="dim_user", key="user_id", columns=["age"])
    join = LookupJoin(table, on="userID", max_batch_size=max_batch_size)
    policy = retry.fixed_delay(2, 0.01, on_exception=retry.exception_type(ConnectionError))
    if mode is OutputMode.ORDERED:
        it = asyncwait.ordered_wait(events, join, capacity=16, timeout=30, retry=policy)
    elif mode is OutputMode.UNORDERED:
        it = asyncwait.unordered_wait(events, join, capacity=16, timeout=30, retry=policy)
    else:
        it = asyncwait.key_ordered_wait(
            events, join, key=lambda e: e["userID"], capacity=16, timeout=30, retry=policy
        )
    out = [e async for e in it]

    def expected(event: dict[str, Any]) -> dict[str, Any]:
        i = int(event["userID"].removeprefix("user_"))
        return event if i >= USERS else {**event, "age": _age(i)}

    if mode is OutputMode.ORDERED:
        assert out == [expected(e) for e in events]
    else:
        assert sorted(out, key=lambda e: e["seq"]) == [expected(e) for e in events]
    if mode is OutputMode.KEY_ORDERED:
        last: dict[str, int] = {}
        for e in out:
            assert e["seq"] > last.get(e["userID"], -1)
            last[e["userID"]] = e["seq"]
    # The join sized the pool: its queries in flight plus one for a scan.
    assert table.pool_size == (17 if max_batch_size == 1 else 3)
    stats = join.statistics()
    assert stats.keys + stats.coalesced == len(events)
    if max_batch_size > 1:
        assert stats.lookups < len(events) // 4  # batched: far fewer round trips
    else:
        assert stats.lookups == stats.keys


async def test_lookup_join_through_the_runtime(pg: PostgresServer) -> None:
    env = StreamEnvironment(name="pg-join")
    events = [{"userID": f"user_{i}", "eventType": "browse"} for i in (1, 7, 999, 2)]
    out = (
        env.from_collection(events)
        .lookup_join(
            lookups.postgres(pg.dsn, table="dim_user", key="user_id", columns=["age"]),
            on="userID",
            how="inner",
            mode="ordered",
            cache=cache.lru(100, ttl=60),
            capacity=4,
            timeout=10,
        )
        .sink_to(sinks.collect())
    )
    await env.execute_async()
    assert out.values == [
        {"userID": "user_1", "eventType": "browse", "age": 21},
        {"userID": "user_7", "eventType": "browse", "age": None},
        {"userID": "user_2", "eventType": "browse", "age": 22},
    ]


# --------------------------------------------------------------------------- faults


class _Watched(AsyncFunction[Any, Any]):
    """Runs a LookupJoin; notes connection failures and answers timeouts itself."""

    def __init__(self, join: LookupJoin) -> None:
        self.join = join
        self.failed = asyncio.Event()
        self.failures: list[BaseException] = []

    async def open(self, context: RuntimeContext) -> None:
        await self.join.open(context)

    async def close(self) -> None:
        await self.join.close()

    async def async_invoke(self, value: Any) -> list[Any]:
        try:
            return await self.join.async_invoke(value)
        except ConnectionError as exc:
            self.failures.append(exc)
            self.failed.set()
            raise

    def timeout(self, value: Any) -> list[Any]:
        return [{**value, "timed_out": True}]


async def test_server_killed_mid_run_retries_and_recovers(own_server: PostgresServer) -> None:
    server = own_server
    fn = _Watched(LookupJoin(lookups.postgres(server.dsn, table="dim_user", key="user_id"), on="u"))
    out: list[StreamElement] = []
    first_done = asyncio.Event()

    def emit(element: StreamElement) -> None:
        out.append(element)
        if len(out) == 20:
            first_done.set()

    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(
        fn,
        mode=OutputMode.UNORDERED,
        capacity=50,
        timeout=60,
        retry=retry.fixed_delay(600, 0.05, on_exception=retry.exception_type(ConnectionError)),
    )
    await op.open(emit)
    try:
        for i in range(20):
            await op.process_element(Record({"u": f"user_{i}"}))
        await first_done.wait()
        await asyncio.to_thread(server.kill)
        for i in range(20, 40):
            await op.process_element(Record({"u": f"user_{i}"}))
        await fn.failed.wait()  # the lookups failed, and now wait for their retries
        await asyncio.to_thread(server.start)
        await op.end_input()
    finally:
        await op.close()
    values = sorted((e.value for e in out if isinstance(e, Record)), key=lambda v: v["u"])
    assert len(values) == 40
    assert all(v["age"] == _age(int(v["u"][5:])) for v in values)
    assert op.statistics().retries >= 1
    assert op.statistics().failures == 0
    text = str(fn.failures[0])
    assert f"127.0.0.1:{server.port}" in text
    assert "postgres://asyncwait@" in text
    assert PASSWORD not in text


async def test_server_gone_fails_clearly_after_retries(own_server: PostgresServer) -> None:
    server = own_server
    table = lookups.postgres(server.dsn, table="dim_user", key="user_id")
    join = LookupJoin(table, on="u")
    policy = retry.fixed_delay(2, 0.01, on_exception=retry.exception_type(ConnectionError))
    events = [{"u": "user_1"}, {"u": "user_2"}]

    async def source() -> AsyncIterator[dict[str, str]]:
        yield events[0]
        await asyncio.to_thread(server.kill)
        yield events[1]

    it = asyncwait.ordered_wait(source(), join, capacity=1, retry=policy)
    with pytest.raises(AsyncFunctionError) as info:
        _ = [e async for e in it]
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionError)
    assert f"PostgreSQL at 127.0.0.1:{server.port}" in str(cause)
    assert PASSWORD not in str(cause)
    assert PASSWORD not in repr(table)


async def test_connection_refused_at_start_names_host_and_port() -> None:
    port = free_port()
    dsn = f"postgresql://asyncwait:{PASSWORD}@127.0.0.1:{port}/asyncwait"
    table = lookups.postgres(dsn, table="dim_user", key="user_id")
    with pytest.raises(ConnectionError) as info:
        await table.open()
    text = str(info.value)
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in text
    assert f"postgres://asyncwait@127.0.0.1:{port}/asyncwait/dim_user" in text
    assert PASSWORD not in text
    assert PASSWORD not in repr(table)
    assert table.statistics().connections == 0


async def test_wrong_password_is_a_config_error(pg: PostgresServer) -> None:
    dsn = pg.dsn.replace(PASSWORD, "not-the-password")
    with pytest.raises(ConfigError, match="password authentication failed") as info:
        await lookups.postgres(dsn, table="dim_user", key="user_id").open()
    assert "not-the-password" not in str(info.value)


async def test_slow_query_times_out_into_the_timeout_hook(pg: PostgresServer) -> None:
    """dim_slow sleeps 3 s in the server per query; the operator's 0.3 s deadline wins."""
    table = lookups.postgres(pg.dsn, table="dim_slow", key="user_id", columns=["age"])
    fn = _Watched(LookupJoin(table, on="u"))
    events = [{"u": "user_1"}, {"u": "user_2"}, {"u": "user_1"}]
    out = [e async for e in asyncwait.ordered_wait(events, fn, timeout=0.3)]
    assert out == [{**e, "timed_out": True} for e in events]
    assert table.statistics().in_flight == 0  # the abandoned query was cancelled
    # Without a timeout hook the element fails with AsyncTimeoutError.
    join = LookupJoin(lookups.postgres(pg.dsn, table="dim_slow", key="user_id"), on="u")
    with pytest.raises(AsyncFunctionError) as info:
        _ = [e async for e in asyncwait.ordered_wait(events[:1], join, timeout=0.3)]
    assert isinstance(info.value.__cause__, asyncwait.AsyncTimeoutError)


# --------------------------------------------------------------------------- job file, example


def _run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncwait", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _job(tmp_path: Path, dsn: str) -> Path:
    events = [{"userID": f"user_{i}", "eventTime": f"2016-06-06 07:03:{i:02d}"} for i in range(30)]
    events.append({"userID": "user_999", "eventTime": "2016-06-06 07:04:00"})
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    job = tmp_path / "job.toml"
    job.write_text(
        f"""
[job]
name = "pg-enrich"

[source]
type = "jsonl"
path = "events.jsonl"

[source.watermarks]
timestamp_field = "eventTime"
timestamp_format = "%Y-%m-%d %H:%M:%S"
max_out_of_orderness_ms = 5000

[[lookup]]
type = "postgres"
dsn = "{dsn}"
table = "dim_user"
key = "user_id"
on = "userID"
columns = ["age"]
how = "left"
mode = "ordered"
capacity = 20
timeout = 10.0
cache = {{ type = "lru", max_size = 1000, ttl = 60 }}
retry = {{ type = "fixed", max_retries = 2, delay = 0.05 }}

[sink]
type = "jsonl"
path = "out.jsonl"
"""
    )
    return job


def test_job_file_runs_a_postgres_lookup(pg: PostgresServer, tmp_path: Path) -> None:
    job = _job(tmp_path, pg.dsn)
    done = _run_cli("validate", str(job), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    done = _run_cli("run", str(job), "--quiet", "--json-summary", "summary.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == 31
    assert out[3] == {"userID": "user_3", "eventTime": "2016-06-06 07:03:03", "age": 23}
    assert out[-1] == {"userID": "user_999", "eventTime": "2016-06-06 07:04:00"}
    summary = (tmp_path / "summary.json").read_text()
    assert PASSWORD not in summary + done.stdout + done.stderr


def test_job_file_sets_schema_pool_size_and_max_queries(pg: PostgresServer, tmp_path: Path) -> None:
    job = _job(tmp_path, pg.dsn)
    text = job.read_text()
    options = 'key = "user_id"\nschema = "public"\npool_size = 4\nmax_queries = 3\n'
    job.write_text(text.replace('key = "user_id"\n', options))
    done = _run_cli("validate", str(job), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "postgres <dsn> table public.dim_user key user_id;" in done.stdout
    assert "; max_queries 3; pool_size 4" in done.stdout
    done = _run_cli("run", str(job), "--quiet", "--json-summary", "summary.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == [
        {"userID": f"user_{i}", "eventTime": f"2016-06-06 07:03:{i:02d}", "age": _age(i)}
        for i in range(30)
    ] + [{"userID": "user_999", "eventTime": "2016-06-06 07:04:00"}]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["events_in"], summary["events_out"], summary["errors"]) == (31, 31, 0)
    assert PASSWORD not in done.stdout + done.stderr


def test_job_file_with_an_unreachable_server_fails_clearly(tmp_path: Path) -> None:
    port = free_port()
    job = _job(tmp_path, f"postgresql://asyncwait:{PASSWORD}@127.0.0.1:{port}/asyncwait")
    done = _run_cli("run", str(job), "--quiet", "--json-summary", "summary.json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr + (tmp_path / "summary.json").read_text()


def test_example_enriches_from_postgres(pg: PostgresServer, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "postgres_enrich.py")],
        cwd=tmp_path,
        env={**os.environ, "ASYNCWAIT_PG_DSN": pg.dsn, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "'age': 22" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr


def test_bench_sql_suite_runs_quick(tmp_path: Path) -> None:
    """``python -m bench sql --quick`` starts its own server and reports every variant."""
    out = tmp_path / "sql.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "sql", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text(encoding="utf-8"))["suites"]["sql"]["rows"]
    assert [row["impl"] for row in rows] == [
        "sync", "asyncwait", "asyncwait", "asyncwait", "baseline", "ceiling",
    ]  # fmt: skip
    assert rows[1]["met"] is not None  # the batched row carries the targets
    assert "vs_asyncpg_per_key" in rows[3]["values"]
    assert PASSWORD not in done.stdout + done.stderr
