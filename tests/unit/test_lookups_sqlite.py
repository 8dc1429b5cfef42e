from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncwait import BadInputError, ClosedError, ConfigError, lookups
from asyncwait.lookups import LookupTable, SqliteStatistics, SqliteTable


def write(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
    db.close()


def make_users(path: Path, n: int = 3) -> Path:
    """dim_user: user_1 .. user_n, age 20 + i, name "name i"."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER, name TEXT)")
        db.executemany(
            "INSERT INTO dim_user VALUES (?, ?, ?)",
            ((f"user_{i}", 20 + i, f"name {i}") for i in range(1, n + 1)),
        )
    db.close()
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_users(tmp_path / "dim.db")


@pytest.fixture
async def users(db: Path) -> AsyncIterator[SqliteTable]:
    table = lookups.sqlite(db, table="dim_user", key="user_id")
    await table.open()
    yield table
    await table.close()


# ---------------------------------------------------------------------------------- lookups


async def test_get_returns_the_row_or_none(users: SqliteTable) -> None:
    assert await users.get("user_2") == {"user_id": "user_2", "age": 22, "name": "name 2"}
    assert list((await users.get("user_3") or {}).keys()) == ["user_id", "age", "name"]
    assert await users.get("user_404") is None
    assert await users.get(None) is None
    assert users.columns == ("user_id", "age", "name")


async def test_get_returns_fresh_dicts(users: SqliteTable) -> None:
    first = await users.get("user_1")
    assert first is not None
    first["age"] = 0
    assert await users.get("user_1") == {"user_id": "user_1", "age": 21, "name": "name 1"}


async def test_columns_select_and_order_the_row(db: Path) -> None:
    table = lookups.sqlite(db, table="dim_user", key="user_id", columns=["name", "age"])
    await table.open()
    try:
        row = await table.get("user_1")
        assert row == {"name": "name 1", "age": 21}
        assert list(row) == ["name", "age"]  # the key column only when asked for
        assert await table.get_many(["user_1"]) == {"user_1": {"name": "name 1", "age": 21}}
        scanned = [item async for item in table.scan()]
        assert scanned[0] == ("user_1", {"name": "name 1", "age": 21})
    finally:
        await table.close()


async def test_get_many_answers_every_distinct_key(users: SqliteTable) -> None:
    before = users.statistics().queries
    result = await users.get_many(["user_3", "user_404", "user_1", "user_3"])
    assert result == {
        "user_3": {"user_id": "user_3", "age": 23, "name": "name 3"},
        "user_404": None,
        "user_1": {"user_id": "user_1", "age": 21, "name": "name 1"},
    }
    assert list(result) == ["user_3", "user_404", "user_1"]
    assert users.statistics().queries == before + 1  # one round trip
    assert await users.get_many([]) == {}


async def test_get_many_chunks_below_the_variable_limit(tmp_path: Path) -> None:
    path = make_users(tmp_path / "big.db", n=1200)
    table = lookups.sqlite(path, table="dim_user", key="user_id", columns=["age"])
    await table.open()
    try:
        keys = [f"user_{i}" for i in range(1, 1301)]  # 100 of them missing
        result = await table.get_many(keys)
        assert table.statistics().queries == 6  # 250 keys per statement
        assert len(result) == 1300
        assert result["user_1200"] == {"age": 1220}
        assert result["user_1201"] is None
        assert sum(row is not None for row in result.values()) == 1200
    finally:
        await table.close()


async def test_keys_use_sqlite_affinity_and_map_back_as_requested(tmp_path: Path) -> None:
    path = tmp_path / "ints.db"
    write(
        path,
        "CREATE TABLE product (product_id INTEGER PRIMARY KEY, title TEXT)",
        "INSERT INTO product VALUES (2, 'lamp'), (3, 'desk')",
    )
    table = lookups.sqlite(path, table="product", key="product_id", columns=["title"])
    await table.open()
    try:
        assert await table.get(2) == {"title": "lamp"}
        assert await table.get("2") == {"title": "lamp"}  # SQL `=`: affinity applies
        assert await table.get_many(["2", 3, 4]) == {
            "2": {"title": "lamp"},
            3: {"title": "desk"},
            4: None,
        }
    finally:
        await table.close()


async def test_a_non_unique_key_returns_one_row(tmp_path: Path) -> None:
    path = tmp_path / "dup.db"
    write(path, "CREATE TABLE t (k TEXT, v INTEGER)", "INSERT INTO t VALUES ('a', 1), ('a', 2)")
    table = lookups.sqlite(path, table="t", key="k", columns=["v"])
    await table.open()
    try:
        assert await table.get("a") in ({"v": 1}, {"v": 2})
        assert (await table.get_many(["a"]))["a"] in ({"v": 1}, {"v": 2})
    finally:
        await table.close()


async def test_scan_reads_the_whole_table_in_batches(tmp_path: Path) -> None:
    path = make_users(tmp_path / "big.db", n=2500)
    table = lookups.sqlite(path, table="dim_user", key="user_id", columns=["age"])
    await table.open()
    try:
        rows = {key: row async for key, row in table.scan()}
        assert len(rows) == 2500
        assert rows["user_2500"] == {"age": 2520}
        assert table.statistics().queries == 1
    finally:
        await table.close()


async def test_a_view_is_a_table_too(db: Path) -> None:
    write(db, "CREATE VIEW adults AS SELECT user_id, age FROM dim_user WHERE age >= 22")
    table = lookups.sqlite(db, table="adults", key="user_id")
    await table.open()
    try:
        assert await table.get("user_1") is None
        assert await table.get("user_2") == {"user_id": "user_2", "age": 22}
    finally:
        await table.close()


async def test_a_key_sqlite_cannot_bind_is_bad_input(users: SqliteTable) -> None:
    with pytest.raises(BadInputError, match=r"sqlite:.*dim_user.*\(1, 2\)") as info:
        await users.get((1, 2))
    assert info.value.source == users.name
    with pytest.raises(BadInputError):
        await users.get_many(["user_1", (1, 2)])
    assert await users.get("user_1") is not None  # the table still works


async def test_concurrent_lookups_over_several_connections(db: Path) -> None:
    table = lookups.sqlite(db, table="dim_user", key="user_id", columns=["age"], connections=3)
    await table.open()
    try:
        assert table.statistics().connections == 3
        keys = [f"user_{1 + i % 4}" for i in range(200)]
        rows = await asyncio.gather(*(table.get(k) for k in keys))
        assert rows == [None if k == "user_4" else {"age": 20 + int(k[-1])} for k in keys]
        assert table.statistics() == SqliteStatistics(queries=200, in_flight=0, connections=3)
    finally:
        await table.close()


# ---------------------------------------------------------------------------------- safety


async def test_the_database_is_opened_read_only(users: SqliteTable, db: Path) -> None:
    conn = users._pool[0]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await conn.execute("DELETE FROM dim_user")
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT count(*) FROM dim_user").fetchone() == (3,)
    check.close()


@pytest.mark.parametrize(
    ("table", "key", "columns", "missing"),
    [
        ("dim_user; DROP TABLE dim_user", "user_id", None, "no table"),
        ('dim_user" --', "user_id", None, "no table"),
        ("dim_user", "user_id = user_id OR 1=1 --", None, "no column"),
        ("dim_user", "user_id", ['age" FROM sqlite_master --'], "no column"),
        ("dim_user", "user_id", ["age", "(SELECT 1)"], "no column"),
    ],
)
async def test_injection_looking_identifiers_are_rejected(
    db: Path, table: str, key: str, columns: list[str] | None, missing: str
) -> None:
    lookup = lookups.sqlite(db, table=table, key=key, columns=columns)
    with pytest.raises(ConfigError, match=missing):
        await lookup.open()
    with sqlite3.connect(db) as check:  # nothing ran
        assert check.execute("SELECT count(*) FROM dim_user").fetchone() == (3,)
    check.close()
    with pytest.raises(ClosedError):
        await lookup.get("user_1")


async def test_real_identifiers_with_odd_characters_are_quoted(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    write(
        path,
        'CREATE TABLE "dim ""user"" table" ("user id" TEXT, "select" INTEGER)',
        """INSERT INTO "dim ""user"" table" VALUES ('u1', 7)""",
    )
    table = lookups.sqlite(path, table='dim "user" table', key="user id")
    await table.open()
    try:
        assert await table.get("u1") == {"user id": "u1", "select": 7}
        assert await table.get_many(["u1", "u2"]) == {
            "u1": {"user id": "u1", "select": 7},
            "u2": None,
        }
        assert [item async for item in table.scan()] == [("u1", {"user id": "u1", "select": 7})]
    finally:
        await table.close()


# ---------------------------------------------------------------------------------- errors


async def test_a_missing_file_names_the_path_and_table_and_is_not_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nope.db"
    table = lookups.sqlite(path, table="dim_user", key="user_id")
    with pytest.raises(ConfigError) as info:
        await table.open()
    message = str(info.value)
    assert str(path) in message
    assert "dim_user" in message
    assert "does not exist" in message
    assert not path.exists()


async def test_a_relative_missing_path_shows_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"'dim\.db' \(resolved to .*dim\.db\) does not exist"):
        await lookups.sqlite("dim.db", table="dim_user", key="user_id").open()


async def test_a_directory_is_not_a_database_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"database file '.*' is not a file"):
        await lookups.sqlite(tmp_path, table="dim_user", key="user_id").open()


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"userID": "user_1"}\n' * 100)
    with pytest.raises(ConfigError, match=r"events\.jsonl.*not a readable SQLite database"):
        await lookups.sqlite(path, table="dim_user", key="user_id").open()


async def test_a_missing_table_lists_the_tables_that_exist(db: Path) -> None:
    write(db, "CREATE TABLE dim_product (product_id INTEGER)")
    with pytest.raises(ConfigError) as info:
        await lookups.sqlite(db, table="dim_users", key="user_id").open()
    message = str(info.value)
    assert f"database {str(db)!r} has no table 'dim_users'" in message
    assert "tables: dim_product, dim_user" in message


async def test_missing_columns_are_named_with_the_columns_that_exist(db: Path) -> None:
    table = lookups.sqlite(db, table="dim_user", key="uid", columns=["age", "Age", "email"])
    with pytest.raises(ConfigError) as info:
        await table.open()
    message = str(info.value)
    assert "table 'dim_user'" in message
    assert str(db) in message
    assert "no column 'uid', 'Age', 'email'" in message
    assert message.endswith("columns: user_id, age, name")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"table": "", "key": "k"}, "table must be a non-empty name"),
        ({"table": "t", "key": 1}, "key must be a non-empty name"),
        ({"table": "t", "key": "k", "columns": "age"}, "columns must be a list"),
        ({"table": "t", "key": "k", "columns": []}, "at least one column"),
        ({"table": "t", "key": "k", "columns": ["a", "a"]}, "listed twice"),
        ({"table": "t", "key": "k", "columns": ["a", None]}, "non-empty names"),
        ({"table": "t", "key": "k", "connections": 0}, "connections must be an int >= 1"),
    ],
)
def test_arguments_are_checked_at_construction(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        lookups.sqlite("dim.db", **kwargs)  # type: ignore[arg-type]


def test_a_path_is_required() -> None:
    with pytest.raises(ConfigError, match="path must be a file path"):
        lookups.sqlite(42, table="t", key="k")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- lifecycle


async def test_lookups_need_an_open_table(db: Path) -> None:
    table = lookups.sqlite(db, table="dim_user", key="user_id")
    with pytest.raises(ClosedError, match="is not open yet"):
        await table.get("user_1")
    await table.open()
    await table.open()  # already open: nothing to do
    await table.close()
    await table.close()  # idempotent
    with pytest.raises(ClosedError, match="was closed"):
        await table.get_many(["user_1"])
    with pytest.raises(ClosedError, match="was closed"):
        [item async for item in table.scan()]
    await table.open()  # and it can open again
    try:
        assert await table.get("user_1") is not None
    finally:
        await table.close()


async def test_name_repr_and_statistics(db: Path) -> None:
    table: LookupTable = lookups.sqlite(db, table="dim_user", key="user_id")
    assert table.name == f"sqlite:{db}/dim_user"
    assert isinstance(table, SqliteTable)
    assert repr(table) == (
        f"<SqliteTable 'sqlite:{db}/dim_user' new connections=0 queries=0 in-flight=0>"
    )
    await table.open()
    try:
        await table.get("user_1")
        assert repr(table) == (
            f"<SqliteTable 'sqlite:{db}/dim_user' open connections=1 queries=1 in-flight=0>"
        )
        pending = asyncio.ensure_future(table.get("user_2"))
        await asyncio.sleep(0)
        assert table.statistics().in_flight == 1
        await pending
        assert table.statistics() == SqliteStatistics(queries=2, in_flight=0, connections=1)
    finally:
        await table.close()
    assert "closed connections=0" in repr(table)
