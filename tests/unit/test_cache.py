from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from pathlib import Path

import pytest

from asyncwait import ConfigError, Metrics, cache, lookups
from asyncwait.cache import MISS, CacheStatistics, FullCache, LruCache
from asyncwait.lookups import LookupTable, Row

# ---------------------------------------------------------------------------------- helpers


def make_db(path: Path, users: dict[str, int]) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
        db.executemany("INSERT INTO dim_user VALUES (?, ?)", users.items())
    db.close()
    return path


def write(path: Path, *statements: str) -> None:
    """Change the database from outside, as another process would."""
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
    db.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "dim.db", {"user_1": 22, "user_2": 35})


async def new_lru(spec: cache.LruSpec, metrics: Metrics | None = None) -> LruCache:
    table = lookups.sqlite("unused.db", table="t", key="k")  # an LRU never reads its table
    built = spec.create(table, metrics or Metrics("test"))
    await built.open()
    return built


class GatedScan:
    """A real SQLite table whose scan pauses after its first row until ``resume`` is set."""

    def __init__(self, inner: LookupTable) -> None:
        self.inner = inner
        self.name = inner.name
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: Hashable) -> Row | None:
        return await self.inner.get(key)

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        return await self.inner.get_many(keys)

    async def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        first = True
        async for item in self.inner.scan():
            yield item
            if first:
                first = False
                self.paused.set()
                await self.resume.wait()


async def until(condition: Callable[[], bool], step: float) -> None:
    """Advance virtual time in ``step``s until ``condition()`` holds.

    A reload reads SQLite on aiosqlite's thread, so its end is not a loop event a test can
    await; looptime polls cheaply. Gives up after 10,000 steps.
    """
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError("the condition never held")


# ---------------------------------------------------------------------------------- specs


@pytest.mark.parametrize("max_size", [0, -1, True, 1.5, "10", None])
def test_lru_rejects_bad_max_size(max_size: object) -> None:
    with pytest.raises(ConfigError, match="max_size must be an int >= 1"):
        cache.lru(max_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, True, "5"])
@pytest.mark.parametrize("field", ["ttl", "miss_ttl"])
def test_lru_rejects_bad_ttls(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"cache.lru: {field} must be a number of seconds > 0"):
        cache.lru(10, **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -5, math.inf, "600", False])
def test_full_rejects_bad_interval(value: object) -> None:
    with pytest.raises(ConfigError, match="reload_interval must be a number of seconds > 0"):
        cache.full(value)  # type: ignore[arg-type]


def test_specs_are_immutable_values() -> None:
    spec = cache.lru(100, ttl=5, miss_ttl=1)
    assert spec == cache.lru(100, ttl=5.0, miss_ttl=1.0)
    assert hash(spec) == hash(cache.lru(100, ttl=5, miss_ttl=1))
    assert (spec.max_size, spec.ttl, spec.miss_ttl) == (100, 5.0, 1.0)
    assert cache.full(60) == cache.FullSpec(60.0)
    assert cache.full(None).reload_interval is None
    with pytest.raises(AttributeError):
        spec.max_size = 5  # type: ignore[misc]


# ---------------------------------------------------------------------------------- LRU


async def test_lru_unknown_key_is_a_miss_not_none() -> None:
    lru = await new_lru(cache.lru(2))
    assert lru.get("user_1") is MISS
    lru.put("user_1", {"age": 22})
    assert lru.get("user_1") == {"age": 22}
    assert lru.statistics() == CacheStatistics(hits=1, misses=1, size=1, loads=1)


async def test_lru_bounds_size_and_evicts_least_recently_used() -> None:
    lru = await new_lru(cache.lru(3))
    for key in "abc":
        lru.put(key, {"k": key})
    assert lru.get("a") == {"k": "a"}  # a is now the most recently used: b is the oldest
    lru.put("d", {"k": "d"})
    assert lru.get("b") is MISS
    assert [lru.get(k) for k in "acd"] == [{"k": "a"}, {"k": "c"}, {"k": "d"}]
    lru.put("e", {"k": "e"})  # order now a, c, d, e: a goes
    assert lru.get("a") is MISS
    stats = lru.statistics()
    assert (stats.size, stats.evictions, stats.loads) == (3, 2, 5)


async def test_lru_put_refreshes_an_existing_key() -> None:
    lru = await new_lru(cache.lru(2))
    lru.put("a", {"v": 1})
    lru.put("b", {"v": 2})
    lru.put("a", {"v": 3})  # replaces a and makes it the most recent
    lru.put("c", {"v": 4})
    assert lru.get("b") is MISS
    assert lru.get("a") == {"v": 3}
    assert lru.statistics().size == 2


async def test_lru_does_not_cache_misses_without_miss_ttl() -> None:
    lru = await new_lru(cache.lru(10, ttl=60))
    lru.put("ghost", None)
    assert lru.get("ghost") is MISS
    assert lru.statistics().size == 0


@pytest.mark.looptime
async def test_lru_ttl_expires_rows_on_read_in_loop_time() -> None:
    loop = asyncio.get_running_loop()
    lru = await new_lru(cache.lru(10, ttl=10))
    lru.put("a", {"v": 1})
    await asyncio.sleep(4)
    lru.put("b", {"v": 2})  # expires at 14
    await asyncio.sleep(5.9)
    assert loop.time() == pytest.approx(9.9)
    assert lru.get("a") == {"v": 1}
    await asyncio.sleep(0.1)
    assert lru.get("a") is MISS  # expired at exactly 10 s
    assert lru.get("b") == {"v": 2}
    await asyncio.sleep(4)
    assert lru.get("b") is MISS
    stats = lru.statistics()
    assert (stats.expirations, stats.size, stats.hits, stats.misses) == (2, 0, 2, 2)


@pytest.mark.looptime
async def test_lru_miss_ttl_caches_missing_keys_for_their_own_ttl() -> None:
    lru = await new_lru(cache.lru(10, ttl=100, miss_ttl=5))
    lru.put("ghost", None)
    lru.put("user", {"age": 1})
    await asyncio.sleep(4.9)
    assert lru.get("ghost") is None  # a cached miss: answered without the table
    await asyncio.sleep(0.1)
    assert lru.get("ghost") is MISS
    assert lru.get("user") == {"age": 1}  # rows keep their own, longer ttl
    await asyncio.sleep(95)
    assert lru.get("user") is MISS


@pytest.mark.looptime
async def test_lru_without_ttl_never_expires() -> None:
    lru = await new_lru(cache.lru(10))
    lru.put("a", {"v": 1})
    await asyncio.sleep(10**6)
    assert asyncio.get_running_loop().time() == pytest.approx(10**6)
    assert lru.get("a") == {"v": 1}


@pytest.mark.looptime
async def test_lru_ttl_restarts_when_a_key_is_stored_again() -> None:
    lru = await new_lru(cache.lru(10, ttl=10))
    lru.put("a", {"v": 1})
    await asyncio.sleep(8)
    lru.put("a", {"v": 2})
    await asyncio.sleep(8)
    assert lru.get("a") == {"v": 2}


async def test_lru_reports_metrics() -> None:
    metrics = Metrics("join")
    lru = await new_lru(cache.lru(2, miss_ttl=1), metrics)
    lru.get("a")
    lru.put("a", {"v": 1})
    lru.put("b", None)
    lru.put("c", {"v": 3})
    assert lru.get("b") is None  # a cached miss is a hit
    assert lru.get("a") is MISS  # evicted by c
    snapshot = metrics.snapshot()
    assert snapshot.counters == {"cache_misses": 2, "cache_loads": 3, "cache_hits": 1}
    assert snapshot.gauges == {"cache_size": 2}
    await lru.close()
    assert metrics.snapshot().gauges == {"cache_size": 0}
    assert lru.statistics().size == 0


async def test_lru_repr_shows_live_state() -> None:
    lru = await new_lru(cache.lru(5, ttl=3))
    lru.put("a", {"v": 1})
    lru.get("a")
    lru.get("b")
    assert repr(lru) == ("<LruCache 1/5 ttl=3.0 miss_ttl=None hits=1 misses=1 evictions=0>")


# ---------------------------------------------------------------------------------- full


async def test_full_cache_loads_the_table_at_open(db: Path) -> None:
    metrics = Metrics("join")
    table = lookups.sqlite(db, table="dim_user", key="user_id")
    await table.open()
    full = cache.full(600).create(table, metrics)
    try:
        await full.open()
        assert full.get("user_1") == {"user_id": "user_1", "age": 22}
        assert full.get("user_9") is None  # not in the snapshot: a miss, no query
        assert full.statistics() == CacheStatistics(hits=1, misses=1, size=2, loads=1)
        assert metrics.snapshot().counters == {
            "cache_loads": 1,
            "cache_hits": 1,
            "cache_misses": 1,
        }
        assert metrics.snapshot().gauges == {"cache_size": 2}
        assert "rows=2 reloading every 600.0 s loads=1" in repr(full)
    finally:
        await full.close()
        await table.close()


@pytest.mark.looptime
async def test_full_cache_reloads_only_after_the_interval(db: Path) -> None:
    loop = asyncio.get_running_loop()
    table = lookups.sqlite(db, table="dim_user", key="user_id", columns=["age"])
    await table.open()
    full = cache.full(60).create(table, Metrics("join"))
    try:
        await full.open()
        start = loop.time()
        write(
            db,
            "UPDATE dim_user SET age = 23 WHERE user_id = 'user_1'",
            "INSERT INTO dim_user VALUES ('user_3', 41)",
            "DELETE FROM dim_user WHERE user_id = 'user_2'",
        )
        await asyncio.sleep(59)
        assert (full.get("user_1"), full.get("user_2"), full.get("user_3")) == (
            {"age": 22},
            {"age": 35},
            None,
        )
        await until(lambda: full.statistics().loads == 2, 0.5)
        assert loop.time() - start >= 60
        assert (full.get("user_1"), full.get("user_2"), full.get("user_3")) == (
            {"age": 23},
            None,
            {"age": 41},
        )
        # And again one interval later, not before.
        loaded = loop.time()
        write(db, "UPDATE dim_user SET age = 24 WHERE user_id = 'user_1'")
        await asyncio.sleep(30)
        assert full.get("user_1") == {"age": 23}
        await until(lambda: full.statistics().loads == 3, 0.5)
        assert loop.time() - loaded >= 60
        assert full.get("user_1") == {"age": 24}
    finally:
        await full.close()
        await table.close()


async def test_full_cache_swaps_the_snapshot_atomically(db: Path) -> None:
    table = GatedScan(lookups.sqlite(db, table="dim_user", key="user_id", columns=["age"]))
    await table.open()
    full = cache.full(None).create(table, Metrics("join"))
    table.resume.set()
    await full.open()
    try:
        write(
            db,
            "UPDATE dim_user SET age = 99 WHERE user_id = 'user_1'",
            "UPDATE dim_user SET age = 98 WHERE user_id = 'user_2'",
        )
        table.paused.clear()
        table.resume.clear()
        reload = asyncio.create_task(full.reload())
        await table.paused.wait()  # half of the new snapshot is read
        assert (full.get("user_1"), full.get("user_2")) == ({"age": 22}, {"age": 35})
        table.resume.set()
        await reload
        assert (full.get("user_1"), full.get("user_2")) == ({"age": 99}, {"age": 98})
    finally:
        await full.close()
        await table.close()


@pytest.mark.looptime
async def test_full_cache_keeps_serving_when_a_reload_fails(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics("join")
    table = lookups.sqlite(db, table="dim_user", key="user_id", columns=["age"])
    await table.open()
    full = cache.full(10).create(table, metrics)
    try:
        await full.open()
        write(db, "DROP TABLE dim_user")
        with caplog.at_level(logging.WARNING, logger="asyncwait.cache"):
            await until(lambda: full.statistics().load_errors == 1, 1)
        assert full.get("user_1") == {"age": 22}
        assert full.statistics().loads == 1
        assert metrics.counter("cache_load_errors") == 1
        [record] = caplog.records
        assert record.levelno == logging.WARNING
        assert "sqlite:" in record.getMessage()
        assert "dim_user" in record.getMessage()
        assert "still serving the 2 rows" in record.getMessage()
        assert "no such table" in record.getMessage()
        # The next interval tries again and succeeds.
        write(
            db,
            "CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)",
            "INSERT INTO dim_user VALUES ('user_1', 50)",
        )
        await until(lambda: full.statistics().loads == 2, 1)
        assert (full.get("user_1"), full.get("user_2")) == ({"age": 50}, None)
        assert full.statistics().load_errors == 1
    finally:
        await full.close()
        await table.close()


@pytest.mark.looptime
async def test_full_cache_close_stops_reloading(db: Path) -> None:
    table = lookups.sqlite(db, table="dim_user", key="user_id")
    await table.open()
    full = cache.full(5).create(table, Metrics("join"))
    await full.open()
    await full.close()
    await full.close()  # idempotent
    await asyncio.sleep(60)
    assert full.statistics().loads == 1
    assert full.statistics().size == 0
    assert "interval 5.0 s" in repr(full)
    assert [t for t in asyncio.all_tasks() if "reload" in t.get_name()] == []
    await table.close()


async def test_full_cache_close_cancels_a_reload_in_progress(db: Path) -> None:
    table = GatedScan(lookups.sqlite(db, table="dim_user", key="user_id"))
    await table.open()
    full = cache.full(0.001).create(table, Metrics("join"))
    table.resume.set()
    await full.open()
    table.paused.clear()
    table.resume.clear()
    await table.paused.wait()  # the background reload is stuck mid-scan
    await full.close()
    assert full.statistics().loads == 1
    await table.close()


async def test_full_cache_initial_load_failure_fails_open(tmp_path: Path) -> None:
    path = make_db(tmp_path / "dim.db", {"user_1": 22})
    table = lookups.sqlite(path, table="dim_user", key="user_id")
    await table.open()
    write(path, "DROP TABLE dim_user")
    full = cache.full(60).create(table, Metrics("join"))
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await full.open()
    assert [t for t in asyncio.all_tasks() if "reload" in t.get_name()] == []
    await table.close()


async def test_full_cache_keeps_the_first_row_of_a_non_unique_key(tmp_path: Path) -> None:
    path = tmp_path / "dup.db"
    write(
        path,
        "CREATE TABLE t (k TEXT, v INTEGER)",
        "INSERT INTO t VALUES ('a', 1), ('a', 2), ('b', 3)",
    )
    table = lookups.sqlite(path, table="t", key="k")
    await table.open()
    full = cache.full(None).create(table, Metrics("join"))
    await full.open()
    try:
        assert full.get("a") == {"k": "a", "v": 1}
        assert full.statistics().size == 2
        full.put("c", {"k": "c"})  # a no-op: only reloads change the snapshot
        assert full.get("c") is None
    finally:
        await full.close()
        await table.close()


async def test_full_cache_is_a_full_cache_instance(db: Path) -> None:
    table = lookups.sqlite(db, table="dim_user", key="user_id")
    assert isinstance(cache.full(1).create(table, Metrics("m")), FullCache)
    assert isinstance(cache.lru(1).create(table, Metrics("m")), LruCache)
