"""lookups.redis against a real redis-server on loopback (see ``_redis.py``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

import asyncwait
from asyncwait import (
    AsyncFunctionError,
    ClosedError,
    ConfigError,
    LookupFailedError,
    OutputMode,
    StreamEnvironment,
    cache,
    lookups,
    retry,
    sinks,
)
from asyncwait.function import AsyncFunction, RuntimeContext
from asyncwait.join import LookupJoin
from asyncwait.lookups import Row

from ._redis import PASSWORD, RedisServer, seed_users, user_row
from ._system import free_port

ROOT = Path(__file__).resolve().parents[2]


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


def _events(n: int, keys: int) -> list[dict[str, Any]]:
    # Every 7th event asks for a user that does not exist.
    return [{"userID": f"user_{i % keys}" if i % 7 else f"ghost_{i}", "n": i} for i in range(n)]


def _expected(event: dict[str, Any], value: str = "hash") -> dict[str, Any]:
    uid = event["userID"]
    if uid.startswith("ghost"):
        return event
    row: dict[str, Any] = user_row(int(uid.split("_")[1]))
    if value == "json":
        row = {**row, "age": int(row["age"])}
    return {**event, **row}


# --------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("value", ["hash", "json"])
async def test_contract_get_get_many_scan(redis_server: RedisServer, value: str) -> None:
    prefix = _prefix()
    seed_users(redis_server, prefix, 50, value=value)
    table = lookups.redis(redis_server.url, key_prefix=prefix, value=value, pool_size=4)
    assert PASSWORD not in table.name
    assert PASSWORD not in repr(table)
    assert table.name == f"redis://127.0.0.1:{redis_server.port}/0/{prefix}*"
    with pytest.raises(ClosedError, match="not open yet"):
        await table.get("user_1")
    await table.open()
    try:
        expected = user_row(3) if value == "hash" else {**user_row(3), "age": 21}
        assert await table.get("user_3") == expected
        assert await table.get("nobody") is None
        many = await table.get_many(["user_1", "nobody", "user_2", "user_1"])
        assert list(many) == ["user_1", "nobody", "user_2"]
        assert many["nobody"] is None
        assert many["user_2"] is not None
        assert many["user_2"]["user_id"] == "user_2"
        scanned = {key: row async for key, row in table.scan()}
        assert len(scanned) == 50
        assert scanned["user_49"]["user_id"] == "user_49"
        stats = table.statistics()
        assert stats.round_trips >= 4
        assert stats.in_flight == 0
        assert stats.pool_size == 4
        assert "open" in repr(table)
    finally:
        await table.close()
    await table.close()  # idempotent
    with pytest.raises(ClosedError, match="was closed"):
        await table.get_many(["user_1", "user_2"])


async def test_hashes_without_scripting_fall_back_to_a_pipeline(redis_server: RedisServer) -> None:
    prefix = _prefix()
    seed_users(redis_server, prefix, 20)
    with redis_server.client() as c:
        c.set(f"{prefix}user_7", "not a hash")
        c.acl_setuser(
            "noscript", enabled=True, passwords=["+noscript-pw"], keys=["*"],
            commands=["+@all", "-@scripting"], reset=True,
        )  # fmt: skip
    url = f"redis://noscript:noscript-pw@127.0.0.1:{redis_server.port}/0"
    table = lookups.redis(url, key_prefix=prefix)
    await table.open()
    try:
        keys = [f"user_{i}" for i in range(5)] + ["nobody"]
        many = await table.get_many(keys)
        assert many == {k: None if k == "nobody" else user_row(int(k[5:])) for k in keys}
        assert "script refused" in repr(table)
        assert "noscript-pw" not in repr(table)
        with pytest.raises(LookupFailedError, match=rf"'{prefix}user_7' does not hold a hash"):
            await table.get_many(["user_1", "user_7"])
    finally:
        await table.close()


async def test_keys_are_str_after_the_prefix(redis_server: RedisServer) -> None:
    prefix = _prefix()
    with redis_server.client() as c:
        c.hset(f"{prefix}42", mapping={"n": "forty-two"})
        c.hset(f"{prefix}[x]*", mapping={"n": "glob"})  # glob characters in a key
        c.hset(f"other:{prefix}1", mapping={"n": "not ours"})
    table = lookups.redis(redis_server.url, key_prefix=prefix)
    await table.open()
    try:
        assert await table.get(42) == {"n": "forty-two"}  # str(42)
        assert await table.get_many([42, "42"]) == {
            42: {"n": "forty-two"},
            "42": {"n": "forty-two"},
        }
        assert sorted([k async for k, _ in table.scan()], key=str) == ["42", "[x]*"]
    finally:
        await table.close()


async def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="value must be 'hash' or 'json'"):
        lookups.redis("redis://127.0.0.1:6379/0", value="xml")
    with pytest.raises(ConfigError, match="url must be") as info:
        lookups.redis(f"http://:{PASSWORD}@127.0.0.1:6379/0")
    assert PASSWORD not in str(info.value)
    with pytest.raises(ConfigError, match="pool_size"):
        lookups.redis("redis://127.0.0.1:6379/0", pool_size=0)


async def test_wrong_password_is_a_config_error_without_the_password(
    redis_server: RedisServer,
) -> None:
    wrong = "wrong-pw-Hh5"
    table = lookups.redis(f"redis://:{wrong}@127.0.0.1:{redis_server.port}/0")
    with pytest.raises(ConfigError, match="rejected the credentials") as info:
        await table.open()
    assert wrong not in str(info.value)
    assert f"127.0.0.1:{redis_server.port}" in str(info.value)


async def test_password_from_the_environment(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = _prefix()
    seed_users(redis_server, prefix, 3)
    monkeypatch.setenv("REDISCLI_AUTH", PASSWORD)
    table = lookups.redis(redis_server.url_without_password, key_prefix=prefix)
    await table.open()
    try:
        assert await table.get("user_2") == user_row(2)
    finally:
        await table.close()


# --------------------------------------------------------------------------- joins


@pytest.mark.parametrize("mode", list(OutputMode))
@pytest.mark.parametrize("value", ["hash", "json"])
async def test_lookup_join_in_every_mode(
    redis_server: RedisServer, mode: OutputMode, value: str
) -> None:
    prefix = _prefix()
    seed_users(redis_server, prefix, 40, value=value)
    events = _events(300, 40)
    env = StreamEnvironment()
    out = (
        env.from_collection(events)
        .lookup_join(
            lookups.redis(redis_server.url, key_prefix=prefix, value=value, pool_size=4),
            on="userID",
            mode=mode,
            capacity=16,
            timeout=10.0,
            retry=retry.fixed_delay(2, 0.05, on_exception=retry.exception_type(ConnectionError)),
        )
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    expected = [_expected(e, value) for e in events]
    if mode is OutputMode.ORDERED:
        assert out.values == expected
    else:
        assert sorted(out.values, key=lambda e: e["n"]) == expected
    if mode is OutputMode.KEY_ORDERED:
        for uid in {e["userID"] for e in events}:
            per_key = [e["n"] for e in out.values if e["userID"] == uid]
            assert per_key == sorted(per_key)
    assert result.events_out == len(events)


async def test_batched_join_uses_few_round_trips(redis_server: RedisServer) -> None:
    prefix = _prefix()
    seed_users(redis_server, prefix, 500, value="json")
    table = lookups.redis(redis_server.url, key_prefix=prefix, value="json")
    join = LookupJoin(table, on="userID", max_batch=256)
    events = _events(2000, 500)
    got = [e async for e in asyncwait.unordered_wait(events, join, capacity=200)]
    assert sorted(got, key=lambda e: e["n"]) == [_expected(e, "json") for e in events]
    stats = join.statistics()
    assert stats.lookups < len(events) / 10  # batches, not one query per event
    assert table.statistics().round_trips == stats.lookups


@pytest.mark.parametrize("value", ["hash", "json"])
async def test_a_bad_value_fails_the_lookup_asked_once(
    redis_server: RedisServer, value: str, tmp_path: Path
) -> None:
    # The stored value is at fault, not the event: a failed lookup (the job fails), not
    # bad input, and its batch is not asked again key by key.
    prefix = _prefix()
    seed_users(redis_server, prefix, 30, value=value)
    with redis_server.client() as c:
        # json: a value that is not JSON; hash: a Redis key holding a string, not a hash.
        c.set(f"{prefix}user_5", "{not json")
    events = [{"userID": f"user_{i}", "n": i} for i in range(30)]
    env = StreamEnvironment(errors_path=tmp_path / "errors.jsonl")
    table = lookups.redis(redis_server.url, key_prefix=prefix, value=value)
    env.from_collection(events).lookup_join(table, on="userID", capacity=30).sink_to(
        sinks.collect()
    )
    with pytest.raises(AsyncFunctionError) as info:
        await env.execute_async()
    cause = info.value.__cause__
    assert isinstance(cause, LookupFailedError)
    assert f"{prefix}user_5" in str(cause)
    assert f"redis://127.0.0.1:{redis_server.port}/0/{prefix}*" in str(cause)
    assert PASSWORD not in str(cause)
    stats = table.statistics()
    assert stats.keys <= len(events)  # every key asked at most once
    assert (tmp_path / "errors.jsonl").read_text() == ""


async def test_full_cache_loads_by_scan(redis_server: RedisServer) -> None:
    prefix = _prefix()
    seed_users(redis_server, prefix, 100)
    table = lookups.redis(redis_server.url, key_prefix=prefix)
    join = LookupJoin(table, on="userID", cache=cache.full(None))
    events = _events(300, 100)
    got = [e async for e in asyncwait.ordered_wait(events, join)]
    assert got == [_expected(e) for e in events]
    assert join.statistics().lookups == 0  # everything came from the scan


# --------------------------------------------------------------------------- faults


async def test_refused_connection_names_host_port_not_password() -> None:
    port = free_port()
    table = lookups.redis(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", key_prefix="u:")
    with pytest.raises(ConnectionError) as info:
        await table.open()
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "redis://" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(info.value.__cause__)


class _Watched:
    """A lookup table that reports its first failed query (to sequence a test, not to fake)."""

    def __init__(self, table: lookups.RedisTable) -> None:
        self.table = table
        self.name = table.name
        self.failed = asyncio.Event()

    async def open(self) -> None:
        await self.table.open()

    async def close(self) -> None:
        await self.table.close()

    async def get(self, key: Hashable) -> Row | None:
        try:
            return await self.table.get(key)
        except Exception:
            self.failed.set()
            raise

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        try:
            return await self.table.get_many(keys)
        except Exception:
            self.failed.set()
            raise

    def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        return self.table.scan()


async def test_server_killed_mid_run_then_restarted_recovers_by_retry(
    own_redis: RedisServer,
) -> None:
    prefix = "k:"
    seed_users(own_redis, prefix, 20)
    own_redis.save()  # the restarted server loads this dump
    watched = _Watched(lookups.redis(own_redis.url, key_prefix=prefix, pool_size=4))
    join = LookupJoin(watched, on="userID", max_batch=4)
    first = [{"userID": f"user_{i % 20}", "n": i} for i in range(40)]
    second = [{"userID": f"user_{i % 20}", "n": i} for i in range(40, 80)]
    got: list[dict[str, Any]] = []
    through = asyncio.Event()  # everything before the crash is through

    async def source() -> AsyncIterator[dict[str, Any]]:
        for event in first:
            yield event
        await through.wait()
        own_redis.kill()
        yield second[0]
        await watched.failed.wait()  # a lookup has failed against the dead server
        await asyncio.to_thread(own_redis.start)
        for event in second[1:]:
            yield event

    policy = retry.fixed_delay(50, 0.1, on_exception=retry.exception_type(ConnectionError))
    async for event in asyncwait.unordered_wait(
        source(), join, capacity=8, timeout=30.0, retry=policy
    ):
        got.append(event)
        if len(got) == len(first):
            through.set()
    assert sorted(got, key=lambda e: e["n"]) == [_expected(e) for e in first + second]
    assert join.statistics().lookup_errors >= 1


async def test_server_killed_for_good_fails_clearly(own_redis: RedisServer) -> None:
    seed_users(own_redis, "k:", 5)
    table = lookups.redis(own_redis.url, key_prefix="k:")
    join = LookupJoin(table, on="userID")
    killed = False

    got: list[dict[str, Any]] = []
    through = asyncio.Event()  # user_1 is through before the crash

    async def source() -> AsyncIterator[dict[str, Any]]:
        nonlocal killed
        yield {"userID": "user_1"}
        await through.wait()
        own_redis.kill()
        killed = True
        yield {"userID": "user_2"}

    async def run() -> None:
        policy = retry.fixed_delay(2, 0.01)
        async for event in asyncwait.ordered_wait(source(), join, capacity=1, retry=policy):
            got.append(event)
            through.set()

    with pytest.raises(AsyncFunctionError) as info:
        await run()
    assert killed
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionError)
    assert f"127.0.0.1:{own_redis.port}" in str(cause)
    assert PASSWORD not in str(cause)
    assert got == [{"userID": "user_1", **user_row(1)}]


class _JoinWithFallback(AsyncFunction[dict[str, Any], dict[str, Any]]):
    """A lookup join whose ``timeout()`` hook emits the event marked as not enriched."""

    def __init__(self, join: LookupJoin) -> None:
        self.join = join
        self.timeouts = 0

    async def open(self, context: RuntimeContext) -> None:
        await self.join.open(context)

    async def close(self) -> None:
        await self.join.close()

    async def async_invoke(self, value: dict[str, Any]) -> Iterable[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.join.async_invoke(value)
        return result

    def timeout(self, value: dict[str, Any]) -> Iterable[dict[str, Any]]:
        self.timeouts += 1
        return [{**value, "enriched": False}]


async def test_slow_server_times_out_into_the_timeout_hook(own_redis: RedisServer) -> None:
    seed_users(own_redis, "k:", 10)
    table = lookups.redis(own_redis.url, key_prefix="k:")
    function = _JoinWithFallback(LookupJoin(table, on="userID"))
    events = [{"userID": f"user_{i}"} for i in range(5)]

    got: list[dict[str, Any]] = []

    through = asyncio.Event()  # events[0] is through before the server freezes

    async def source() -> AsyncIterator[dict[str, Any]]:
        yield events[0]
        await through.wait()
        own_redis.pause()  # connected, but nothing is answered any more
        for event in events[1:]:
            yield event

    try:
        async for event in asyncwait.ordered_wait(source(), function, capacity=4, timeout=0.5):
            got.append(event)
            through.set()
    finally:
        own_redis.resume()
    assert got[0] == {**events[0], **user_row(0)}
    assert got[1:] == [{**e, "enriched": False} for e in events[1:]]
    assert function.timeouts == 4
    # The server answers again: the same table works after the abandoned queries.
    await table.open()
    try:
        assert await table.get("user_3") == user_row(3)
    finally:
        await table.close()


async def test_malformed_json_value_names_key_and_table(redis_server: RedisServer) -> None:
    prefix = _prefix()
    with redis_server.client() as c:
        c.set(f"{prefix}a", "[1, 2]")
        c.set(f"{prefix}b", "{oops")
        c.hset(f"{prefix}h", mapping={"x": "1"})
    table = lookups.redis(redis_server.url, key_prefix=prefix, value="json")
    await table.open()
    try:
        with pytest.raises(LookupFailedError, match=rf"'{prefix}a' is JSON list, not an object"):
            await table.get("a")
        with pytest.raises(LookupFailedError, match=rf"'{prefix}b' is not JSON") as info:
            await table.get_many(["b", "a"])
        assert table.name in str(info.value)
        assert info.value.table == table.name
        with pytest.raises(LookupFailedError, match=rf"'{prefix}h' does not hold a json"):
            await table.get("h")
    finally:
        await table.close()


# --------------------------------------------------------------------------- job file, example


def test_job_file_with_a_redis_lookup(redis_server: RedisServer, tmp_path: Path) -> None:
    prefix = _prefix()
    seed_users(redis_server, prefix, 10, value="json")
    events: list[dict[str, Any]] = [{"userID": f"user_{i}", "n": i} for i in range(12)]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "job.toml").write_text(
        f"""
[job]
name = "redis-enrich"

[source]
type = "jsonl"
path = "events.jsonl"

[[lookup]]
type = "redis"
url = "{redis_server.url_without_password}"
key_prefix = "{prefix}"
value = "json"
on = "userID"
mode = "ordered"
capacity = 8
timeout = 10.0
cache = {{ type = "lru", max_size = 100 }}
retry = {{ type = "fixed", max_retries = 2, delay = 0.1 }}

[sink]
type = "jsonl"
path = "out.jsonl"
"""
    )
    env = {**os.environ, "REDISCLI_AUTH": PASSWORD}  # the password from the environment
    done = subprocess.run(
        [sys.executable, "-m", "asyncwait", "run", "job.toml", "--quiet", "--fresh"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == [_expected(e, "json") if e["n"] < 10 else e for e in events]


def test_job_file_with_redis_down_exits_1_naming_host_port(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "events.jsonl").write_text('{"userID": "user_1"}\n')
    (tmp_path / "job.toml").write_text(
        f"""
[source]
type = "jsonl"
path = "events.jsonl"

[[lookup]]
type = "redis"
url = "redis://:{PASSWORD}@127.0.0.1:{port}/0"
on = "userID"

[sink]
type = "jsonl"
path = "out.jsonl"
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "asyncwait", "run", "job.toml", "--quiet", "--fresh"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr


def test_example_redis_enrich(redis_server: RedisServer, tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": redis_server.url, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "redis_enrich.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "'age': '22'" in done.stdout
    assert "user_9" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr


def test_bench_kv_quick_reports_every_row(tmp_path: Path) -> None:
    """``python -m bench kv --quick`` starts its own servers and reports every variant."""
    out = tmp_path / "kv.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "kv", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["suites"]["kv"]["rows"]
    assert [r["case"] for r in rows] == [
        "sync redis-py (HGETALL/event)",
        "join redis hash, per key",
        "join redis hash, batched",
        "join redis json, per key",
        "join redis json, batched",
        "join http, per key",
        "join http, batch endpoint",
    ]
    batched = [r for r in rows if r["case"].endswith("batched")]
    assert all(r["target"] and r["values"]["vs_per_key"] > 0 for r in batched)
    assert PASSWORD not in done.stdout + done.stderr
