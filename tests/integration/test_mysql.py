"""lookups.mysql against a real MariaDB server on loopback (see ``_mysql.py``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

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
from asyncwait.lookups import MysqlTable

from ._mysql import USERS, MariaDB, start_mariadb
from ._system import free_port

ROOT = Path(__file__).resolve().parents[2]


def _age(i: int) -> int:
    return 20 + i % 50


@pytest.fixture(scope="module")
def my(mariadb: MariaDB) -> MariaDB:
    """The session's server, with the extra tables these tests read."""
    mariadb.execute(
        "DROP TABLE IF EXISTS dim_types, dim_bad, dim_city, `we``ird%tab`",
        "DROP VIEW IF EXISTS dim_slow",
        "CREATE TABLE dim_types (id INT PRIMARY KEY, price DECIMAL(10, 2), born DATE, "
        "seen DATETIME, blob_col VARBINARY(8), note TEXT)",
        "INSERT INTO dim_types VALUES (1, 9.99, '2016-06-06', '2016-06-06 07:03:42', x'00ff', "
        "'x'), (2, NULL, NULL, NULL, NULL, NULL), (3, 1, NULL, NULL, NULL, NULL), "
        "(4, 2, NULL, NULL, NULL, NULL)",
        # Zero dates need a lax sql_mode; the driver cannot turn them into datetime.date.
        "SET SESSION sql_mode = ''",
        "CREATE TABLE dim_bad (user_id VARCHAR(32) PRIMARY KEY, born DATE)",
        "INSERT INTO dim_bad VALUES ('ok', '2016-06-06'), ('bad', '0000-00-00'), "
        "('ok2', '2001-02-03')",
        "CREATE TABLE dim_city (city VARCHAR(32) PRIMARY KEY, country CHAR(2)) "
        "COLLATE utf8mb4_general_ci",
        "INSERT INTO dim_city VALUES ('Zürich', 'CH'), ('ß', 'DE'), ('Berlin', 'DE')",
        "CREATE TABLE `we``ird%tab` (`k%ey` VARCHAR(8) PRIMARY KEY, `va``l` INT)",
        "INSERT INTO `we``ird%tab` VALUES ('a', 1)",
        # Every row it yields costs a 3 s SLEEP() in the server.
        "CREATE VIEW dim_slow AS SELECT u.* FROM dim_user u WHERE SLEEP(3) = 0",
    )
    return mariadb


@pytest.fixture
async def users(my: MariaDB) -> AsyncIterator[MysqlTable]:
    table = lookups.mysql(my.dsn, table="dim_user", key="user_id")
    await table.open()
    try:
        yield table
    finally:
        await table.close()


@pytest.fixture
def own_server() -> Iterator[MariaDB]:
    """A server of this test's own, for the tests that kill it."""
    server = start_mariadb(users=100)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


# --------------------------------------------------------------------------- contract


async def test_get_returns_rows_and_none(users: MysqlTable, my: MariaDB) -> None:
    assert users.name == f"mysql://asyncwait@127.0.0.1:{my.port}/asyncwait_test/dim_user"
    assert users.columns == ("user_id", "age", "city")
    assert await users.get("user_1") == {"user_id": "user_1", "age": 21, "city": "city 1"}
    assert await users.get("nobody") is None
    # The key column's collation decides (utf8mb4_general_ci: case and trailing spaces).
    assert await users.get("USER_2 ") == {"user_id": "user_2", "age": 22, "city": "city 2"}


async def test_get_many_maps_rows_back_across_chunks(users: MysqlTable) -> None:
    keys: list[Any] = [f"user_{i}" for i in range(1, USERS + 1)] + ["nobody"]
    keys += ["USER_5", "user_6  "]
    rows = await users.get_many([*keys, "user_1"])  # a repeated key is asked once
    assert list(rows) == keys
    for i in (1, 500, USERS):
        assert rows[f"user_{i}"] == await users.get(f"user_{i}")
    assert rows["nobody"] is None
    assert rows["USER_5"] == {"user_id": "user_5", "age": 25, "city": "city 5"}
    assert rows["user_6  "] == {"user_id": "user_6", "age": 26, "city": "city 6"}
    assert users.statistics().queries == 2 + 3  # chunks of 1000 and 3 keys, then 3 gets


async def test_get_many_follows_the_collation_and_numeric_coercion(my: MariaDB) -> None:
    cities = lookups.mysql(my.dsn, table="dim_city", key="city", columns=["country"])
    numbers = lookups.mysql(my.dsn, table="dim_types", key="id", columns=["price"])
    await cities.open()
    await numbers.open()
    try:
        got = await cities.get_many(["zurich", "ZÜRICH", "berlin", "Paris", "s"])
        assert got == {
            "zurich": {"country": "CH"},  # accent- and case-insensitive
            "ZÜRICH": {"country": "CH"},
            "berlin": {"country": "DE"},
            "Paris": None,
            "s": {"country": "DE"},  # 'ß' = 's' here: not modelled, so asked alone
        }
        for key in got:
            assert await cities.get(key) == got[key]
        got_n = await numbers.get_many([1, "2", 3.0, Decimal("4"), "x", 99])
        assert got_n == {
            1: {"price": Decimal("9.99")},
            "2": {"price": None},
            3.0: {"price": Decimal("1.00")},
            Decimal("4"): {"price": Decimal("2.00")},
            "x": None,
            99: None,
        }
    finally:
        await cities.close()
        await numbers.close()


async def test_types_columns_and_quoted_names(my: MariaDB) -> None:
    types = lookups.mysql(my.dsn, table="dim_types", key="id")
    weird = lookups.mysql(my.dsn, table="we`ird%tab", key="k%ey", columns=["va`l"])
    await types.open()
    await weird.open()
    try:
        assert await types.get(1) == {
            "id": 1,
            "price": Decimal("9.99"),
            "born": dt.date(2016, 6, 6),
            "seen": dt.datetime(2016, 6, 6, 7, 3, 42),  # noqa: DTZ001 - DATETIME is naive
            "blob_col": b"\x00\xff",
            "note": "x",
        }
        assert (await types.get(2) or {}).get("price", "missing") is None
        assert await weird.get("a") == {"va`l": 1}
        assert await weird.get_many(["a", "b"]) == {"a": {"va`l": 1}, "b": None}
        assert [item async for item in weird.scan()] == [("a", {"va`l": 1})]
    finally:
        await types.close()
        await weird.close()


async def test_scan_reads_the_whole_table_in_a_snapshot(users: MysqlTable) -> None:
    rows = {key: row async for key, row in users.scan()}
    assert len(rows) == USERS
    assert rows["user_7"] == {"user_id": "user_7", "age": 27, "city": "city 0"}
    # The connection is reused afterwards: the snapshot was committed, the cursor drained.
    assert await users.get("user_1") is not None
    assert users.statistics().connections == 1
    # A scan left early closes its connection instead of returning it with rows on the wire.
    async for _ in users.scan():
        break
    assert await users.get("user_3") is not None


async def test_scan_feeds_a_full_cache(my: MariaDB) -> None:
    table = lookups.mysql(my.dsn, table="dim_user", key="user_id", columns=["age"])
    join = LookupJoin(table, on="u", cache=cache.full(None))
    events = [{"u": "user_3"}, {"u": "nobody"}]
    assert [e async for e in asyncwait.ordered_wait(events, join)] == [
        {"u": "user_3", "age": 23},
        {"u": "nobody"},
    ]
    assert table.statistics().queries == 1  # the scan only


async def test_unknown_table_lists_the_tables(my: MariaDB) -> None:
    with pytest.raises(ConfigError) as info:
        await lookups.mysql(my.dsn, table="dim_usr", key="user_id").open()
    text = str(info.value)
    assert "has no table 'dim_usr'; tables: dim_bad, dim_city, dim_slow, dim_types" in text
    assert my.password not in text


async def test_unknown_column_lists_the_columns(my: MariaDB) -> None:
    table = lookups.mysql(my.dsn, table="dim_user", key="id", columns=["age", "agee"])
    with pytest.raises(ConfigError, match=r"no column 'id', 'agee'; columns: user_id, age, city"):
        await table.open()
    assert table.statistics().connections == 0


async def test_closed_and_not_open_tables_refuse_lookups(my: MariaDB) -> None:
    table = lookups.mysql(my.dsn, table="dim_user", key="user_id")
    with pytest.raises(ClosedError, match="is not open yet"):
        await table.get("user_1")
    await table.open()
    await table.close()
    await table.close()  # idempotent
    with pytest.raises(ClosedError, match="was closed"):
        await table.get_many(["user_1", "user_2"])


@pytest.mark.parametrize(
    ("dsn", "options", "match"),
    [
        ("postgres://u:p@h/db", {}, "the scheme must be mysql:// or mariadb://"),
        ("mysql://u:p@h", {}, "name exactly one database"),
        ("mysql://h:3306/db", {}, "a user is required"),
        ("mysql://u:p@h:99999/db", {}, "not a valid URL"),
        ("mysql://u:p@h/db?timeout=1", {}, "unknown option timeout"),
        ("mysql://u:p@h/db?connect_timeout=0", {}, "connect_timeout must be a number > 0"),
        ("mysql://u:p@h/db", {"pool_size": 0}, "pool_size must be an int >= 1"),
        ("mysql://u:p@h/db", {"columns": "age"}, "columns must be a list"),
        ("mysql://u:p@h/db", {"key": ""}, "key must be a non-empty name"),
    ],
)
def test_factory_rejects_bad_options(dsn: str, options: dict[str, Any], match: str) -> None:
    kwargs: dict[str, Any] = {"table": "dim_user", "key": "user_id", **options}
    with pytest.raises(ConfigError, match=match) as info:
        lookups.mysql(dsn, **kwargs)
    assert ":p@" not in str(info.value)


async def test_password_from_mysql_pwd_and_mariadb_scheme(
    my: MariaDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYSQL_PWD", my.password)
    dsn = f"mariadb://{my.user}@127.0.0.1:{my.port}/{my.database}"
    table = lookups.mysql(dsn, table="dim_user", key="user_id", columns=["age"])
    await table.open()
    try:
        assert await table.get("user_4") == {"age": 24}
    finally:
        await table.close()


async def test_an_unusable_key_is_bad_input(users: MysqlTable) -> None:
    with pytest.raises(BadInputError, match=r"key \('a', 'b'\) of type tuple .* 'dim_user'"):
        await users.get(("a", "b"))
    with pytest.raises(BadInputError, match="key True of type bool"):
        await users.get_many(["user_1", True])


async def test_a_malformed_row_names_key_and_table(my: MariaDB) -> None:
    table = lookups.mysql(my.dsn, table="dim_bad", key="user_id")
    await table.open()
    try:
        assert await table.get("ok") == {"user_id": "ok", "born": dt.date(2016, 6, 6)}
        # The stored row is at fault, not the key: a failed lookup, not bad input.
        with pytest.raises(LookupFailedError) as info:
            await table.get("bad")
        text = str(info.value)
        assert "the row of key 'bad' in table 'dim_bad' is malformed" in text
        assert "column 'born' (DATE) holds '0000-00-00'" in text
        with pytest.raises(LookupFailedError, match="key 'bad' in table 'dim_bad'"):
            await table.get_many(["ok", "bad"])
        with pytest.raises(LookupFailedError, match="key 'bad' in table 'dim_bad'"):
            _ = [item async for item in table.scan()]
        assert await table.get("ok2") is not None  # the connection survived
    finally:
        await table.close()


async def test_a_malformed_row_fails_the_job_asked_once(my: MariaDB, tmp_path: Path) -> None:
    env = StreamEnvironment(name="bad-rows", errors_path=tmp_path / "errors.jsonl")
    events = [{"u": "ok"}, {"u": "bad"}, {"u": "ok2"}, {"u": "missing"}]
    table = lookups.mysql(my.dsn, table="dim_bad", key="user_id", columns=["born"])
    env.from_collection(events).lookup_join(table, on="u", max_batch_wait=0.01).sink_to(
        sinks.collect()
    )
    with pytest.raises(AsyncFunctionError) as info:
        await env.execute_async()
    assert isinstance(info.value.__cause__, LookupFailedError)
    assert table.statistics().queries == 1  # the batch, not again key by key
    assert (tmp_path / "errors.jsonl").read_text() == ""


# --------------------------------------------------------------------------- lookup join


@pytest.mark.parametrize("mode", list(OutputMode))
async def test_lookup_join_in_every_mode(my: MariaDB, mode: OutputMode) -> None:
    table = lookups.mysql(my.dsn, table="dim_user", key="user_id", columns=["age"])
    join = LookupJoin(table, on="u", max_batch_size=50, max_batch_wait=0.002)
    events: list[dict[str, Any]] = [{"u": f"user_{i % 300 + 1}", "n": i} for i in range(1500)]
    events.insert(700, {"u": "nobody", "n": -1})
    if mode is OutputMode.ORDERED:
        it = asyncwait.ordered_wait(events, join, capacity=200, timeout=30)
    elif mode is OutputMode.UNORDERED:
        it = asyncwait.unordered_wait(events, join, capacity=200, timeout=30)
    else:
        it = asyncwait.key_ordered_wait(events, join, key=lambda e: e["u"], capacity=200)
    out = [e async for e in it]
    assert len(out) == len(events)
    assert all(e.get("age") == (_age(int(e["u"][5:])) if e["n"] >= 0 else None) for e in out)
    if mode is OutputMode.ORDERED:
        assert out == [{**e, "age": _age(int(e["u"][5:]))} if e["n"] >= 0 else e for e in events]
    elif mode is OutputMode.KEY_ORDERED:
        for key in ("user_1", "user_300"):
            ns = [e["n"] for e in out if e["u"] == key]
            assert ns == sorted(ns)
    stats = join.statistics()
    assert stats.keys == len(events)  # no cache: every event's key is asked, in batches
    assert stats.lookups < len(events) / 5
    assert table.statistics().pool_size == 3  # sized from the join: 2 queries + 1 for a scan


async def test_per_key_queries_use_a_pool_sized_from_capacity(my: MariaDB) -> None:
    table = lookups.mysql(my.dsn, table="dim_user", key="user_id", columns=["age"])
    join = LookupJoin(table, on="u", max_batch_size=1)
    events = [{"u": f"user_{i}"} for i in range(1, 201)]
    out = [e async for e in asyncwait.unordered_wait(events, join, capacity=8)]
    assert sorted(e["age"] for e in out) == sorted(_age(i) for i in range(1, 201))
    assert join.statistics().lookups == 200
    assert table.statistics().pool_size == 9


async def test_lookup_join_through_the_runtime_with_a_cache(my: MariaDB) -> None:
    env = StreamEnvironment(name="mysql-enrich")
    events = [{"userID": f"user_{i % 40 + 1}", "i": i} for i in range(400)]
    table = lookups.mysql(my.dsn, table="dim_user", key="user_id", columns=["age"])
    out = (
        env.from_collection(events)
        .lookup_join(
            table,
            on="userID",
            mode="ordered",
            cache=cache.lru(1000, ttl=60),
            capacity=50,
            timeout=30,
            retry=retry.fixed_delay(2, 0.05, on_exception=retry.exception_type(ConnectionError)),
            max_batch_size=16,
        )
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    assert (result.events_in, result.events_out, result.errors) == (400, 400, 0)
    assert [e["i"] for e in out.values] == list(range(400))
    assert all(e["age"] == _age(i % 40 + 1) for i, e in enumerate(out.values))
    assert table.statistics().queries < 40  # 40 keys, batched, then cached


# --------------------------------------------------------------------------- faults


class _Watched(AsyncFunction[Any, Any]):
    """A lookup join that records connection failures and has a timeout hook."""

    def __init__(self, join: LookupJoin) -> None:
        self.join = join
        self.failures: list[BaseException] = []
        self.failed = asyncio.Event()

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


async def test_server_killed_mid_run_retries_and_recovers(own_server: MariaDB) -> None:
    server = own_server
    table = lookups.mysql(server.dsn, table="dim_user", key="user_id", columns=["age"])
    fn = _Watched(LookupJoin(table, on="u", max_batch_wait=0.005))
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
        for i in range(1, 21):
            await op.process_element(Record({"u": f"user_{i}"}))
        await first_done.wait()
        await asyncio.to_thread(server.kill)
        for i in range(21, 41):
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
    assert f"MySQL at 127.0.0.1:{server.port}" in text
    assert f"mysql://asyncwait@127.0.0.1:{server.port}/" in text
    assert server.password not in text


async def test_server_gone_fails_clearly_after_retries(own_server: MariaDB) -> None:
    server = own_server
    table = lookups.mysql(server.dsn, table="dim_user", key="user_id")
    join = LookupJoin(table, on="u")
    policy = retry.fixed_delay(2, 0.01, on_exception=retry.exception_type(ConnectionError))

    async def source() -> AsyncIterator[dict[str, str]]:
        yield {"u": "user_1"}
        await asyncio.to_thread(server.kill)
        yield {"u": "user_2"}

    it = asyncwait.ordered_wait(source(), join, capacity=1, retry=policy)
    with pytest.raises(AsyncFunctionError) as info:
        _ = [e async for e in it]
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionError)
    assert f"MySQL at 127.0.0.1:{server.port}" in str(cause)
    assert server.password not in str(cause)
    assert server.password not in repr(table)


async def test_connection_refused_at_start_names_host_and_port(my: MariaDB) -> None:
    port = free_port()
    dsn = my.dsn.replace(f":{my.port}/", f":{port}/")
    table = lookups.mysql(dsn, table="dim_user", key="user_id")
    with pytest.raises(ConnectionError) as info:
        await table.open()
    text = str(info.value)
    assert f"cannot connect to MySQL at 127.0.0.1:{port}" in text
    assert f"mysql://asyncwait@127.0.0.1:{port}/asyncwait_test/dim_user" in text
    assert my.password not in text
    assert my.password not in repr(table)
    assert table.statistics().connections == 0


async def test_wrong_password_is_a_config_error(my: MariaDB) -> None:
    table = lookups.mysql(
        f"mysql://asyncwait:not-the-password@127.0.0.1:{my.port}/asyncwait_test",
        table="dim_user",
        key="user_id",
    )
    with pytest.raises(ConfigError, match="refused the login") as info:
        await table.open()
    assert "not-the-password" not in str(info.value)


async def test_slow_query_times_out_into_the_timeout_hook(my: MariaDB) -> None:
    """dim_slow sleeps 3 s in the server per row; the operator's 0.3 s deadline wins."""
    table = lookups.mysql(my.dsn, table="dim_slow", key="user_id", columns=["age"])
    fn = _Watched(LookupJoin(table, on="u"))
    events = [{"u": "user_1"}, {"u": "user_2"}, {"u": "user_1"}]
    out = [e async for e in asyncwait.ordered_wait(events, fn, timeout=0.3)]
    assert out == [{**e, "timed_out": True} for e in events]
    assert table.statistics().in_flight == 0  # the abandoned query was cancelled
    # Without a timeout hook the element fails with AsyncTimeoutError.
    join = LookupJoin(lookups.mysql(my.dsn, table="dim_slow", key="user_id"), on="u")
    with pytest.raises(AsyncFunctionError) as info:
        _ = [e async for e in asyncwait.ordered_wait(events[:1], join, timeout=0.3)]
    assert isinstance(info.value.__cause__, asyncwait.AsyncTimeoutError)


async def test_a_cancelled_query_does_not_poison_the_pool(my: MariaDB) -> None:
    table = lookups.mysql(my.dsn, table="dim_slow", key="user_id", columns=["age"], pool_size=1)
    await table.open()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await table.get("user_1")
        assert table.statistics().connections == 0  # closed, not returned half-read
        fast = lookups.mysql(my.dsn, table="dim_user", key="user_id", columns=["age"])
        await fast.open()
        await fast.close()
    finally:
        await table.close()


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
    events.append({"userID": "user_9999", "eventTime": "2016-06-06 07:04:00"})
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    job = tmp_path / "job.toml"
    job.write_text(
        f"""
[job]
name = "mysql-enrich"

[source]
type = "jsonl"
path = "events.jsonl"

[source.watermarks]
timestamp_field = "eventTime"
timestamp_format = "%Y-%m-%d %H:%M:%S"
max_out_of_orderness_ms = 5000

[[lookup]]
type = "mysql"
dsn = "{dsn}"
table = "dim_user"
key = "user_id"
on = "userID"
columns = ["age"]
how = "left"
mode = "ordered"
capacity = 20
timeout = 10.0
max_batch_size = 8
max_batch_wait = 0.005
cache = {{ type = "lru", max_size = 1000, ttl = 60 }}
retry = {{ type = "fixed", max_retries = 2, delay = 0.05 }}

[sink]
type = "jsonl"
path = "out.jsonl"
"""
    )
    return job


def test_job_file_runs_a_mysql_lookup(my: MariaDB, tmp_path: Path) -> None:
    job = _job(tmp_path, my.dsn)
    done = _run_cli("validate", str(job), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "mysql <dsn> table dim_user key user_id" in done.stdout
    assert "batches of 8 keys, waiting 0.005 s" in done.stdout
    assert my.password not in done.stdout + done.stderr
    done = _run_cli("run", str(job), "--quiet", "--json-summary", "summary.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == 31
    assert out[3] == {"userID": "user_3", "eventTime": "2016-06-06 07:03:03", "age": 23}
    assert out[0] == {"userID": "user_0", "eventTime": "2016-06-06 07:03:00"}  # no user_0
    summary = (tmp_path / "summary.json").read_text()
    assert my.password not in summary + done.stdout + done.stderr


def test_job_file_with_an_unreachable_server_fails_clearly(my: MariaDB, tmp_path: Path) -> None:
    port = free_port()
    job = _job(tmp_path, my.dsn.replace(f":{my.port}/", f":{port}/"))
    done = _run_cli("run", str(job), "--quiet", "--json-summary", "summary.json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert my.password not in done.stdout + done.stderr + (tmp_path / "summary.json").read_text()


def test_example_enriches_from_mysql(my: MariaDB, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mysql_enrich.py")],
        cwd=tmp_path,
        env={**os.environ, "ASYNCWAIT_MYSQL_DSN": my.dsn},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "{'userID': 'user_2', 'eventType': 'click', 'productID': 3, 'age': 35}" in done.stdout
    assert "4 events in, 4 out" in done.stdout
    assert my.password not in done.stdout + done.stderr


def test_bench_mysql_suite_runs_quick(tmp_path: Path) -> None:
    """``python -m bench mysql --quick`` starts its own server and reports every variant."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "mysql", "--quick", "--json", str(tmp_path / "r.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["suites"]["mysql"]["rows"]
    assert [row["case"] for row in rows] == [
        "sync-pymysql (1 query/event)",
        "join per key (max_batch_size=1)",
        "join batched (adaptive, <=256)",
        "join batched, wait 2 ms",
    ]
    assert rows[2]["values"]["keys_per_query"] > 1
