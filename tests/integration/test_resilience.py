"""Resilience against real stores that misbehave: the HTTP store of ``_flaky_store.py`` (429s,
an outage), PostgreSQL with its backends killed, Redis paused.

Every test checks that nothing is lost: each event is enriched or, where the job says so, a
dead letter in the errors file, checked by id.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from asyncwait import StreamEnvironment, lookups, sinks, sources
from asyncwait.retry import fixed_delay

from ._flaky_client import FlakyStore
from ._outages import pause_redis, terminate_backends
from ._postgres import PostgresServer
from ._redis import RedisServer

ROOT = Path(__file__).resolve().parents[2]


def events(n: int, users: int = 1000) -> list[dict[str, Any]]:
    return [{"id": i, "userID": f"user_{i % users}"} for i in range(n)]


def enrich(
    table: Any, values: list[dict[str, Any]], errors: Path | None = None, **options: Any
) -> tuple[Any, list[dict[str, Any]]]:
    env = StreamEnvironment(name="resilience", errors_path=errors)
    out = (
        env.from_source(sources.collection(values))
        .lookup_join(table, on="userID", **options)
        .sink_to(sinks.collect())
    )
    result = env.execute()
    return result, list(out.values)


def test_a_rate_limit_above_the_stores_rides_its_429s_and_loses_nothing(
    flaky_store: FlakyStore,
) -> None:
    # The store answers 429 (Retry-After 0.2 s) above 200 requests/s; the job asks for 400.
    flaky_store.configure(latency=0.002, rate_limit=200, retry_after=0.2)
    table = lookups.http(flaky_store.url_template)
    result, out = enrich(
        table, events(600), capacity=50, max_batch_size=1, rate_limit=400, burst=10
    )
    assert sorted(o["id"] for o in out) == list(range(600))
    assert all(o["age"] == 18 + int(o["userID"][5:]) % 60 for o in out)
    counters = result.operators[0].counters
    stats = flaky_store.stats()
    assert stats.statuses.get(429, 0) > 0  # the store did push back
    assert counters["throttled"] == stats.statuses.get(429, 0)  # each one paused and resent
    assert counters["lookup_failed"] == 0
    assert counters["slowdowns"] >= 1


def test_a_rate_limit_is_what_the_store_sees(flaky_store: FlakyStore) -> None:
    flaky_store.configure(latency=0.002)
    table = lookups.http(flaky_store.url_template)
    start = time.monotonic()
    _, out = enrich(table, events(500), capacity=50, max_batch_size=1, rate_limit=100)
    assert len(out) == 500
    # 500 calls at 100/s (bursts of 10): the steady middle of the run, measured where the
    # calls arrive.
    log = flaky_store.log()
    rate = log.count(start + 1.0, start + 4.0) / 3.0
    # (The benchmark holds the 5 % target on a quiet machine; a test leaves room for a
    # busy one, and never allows more than the limit plus its burst.)
    assert 90 <= rate <= 100 + 10 / 3.0


JOB = """
[job]
name = "outage"
[source]
type = "jsonl"
path = "events.jsonl"
[[lookup]]
type = "http"
url = "{url}"
on = "userID"
columns = ["age"]
capacity = 20
on_error = "dead_letter"
rate_limit = 1000.0
circuit_breaker = {{ failure_ratio = 0.5, min_calls = 20, open_for = 0.3 }}
[sink]
type = "jsonl"
path = "out.jsonl"
[errors]
path = "errors.jsonl"
"""


def test_an_outage_with_a_breaker_and_dead_letters_loses_nothing(
    tmp_path: Path, flaky_store: FlakyStore
) -> None:
    n = 4000
    (tmp_path / "events.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in events(n, users=1000))
    )
    (tmp_path / "job.toml").write_text(JOB.format(url=flaky_store.url_template))
    flaky_store.configure(latency=0.001)

    outage: dict[str, Any] = {}

    def cut_when_busy() -> None:
        # 1.5 s of dropped connections, once the job is well under way.
        while flaky_store.stats().received < n // 4:
            time.sleep(0.01)
        started = flaky_store.outage(1.5, mode="reset")
        outage["start"], outage["end"] = started.start, started.until

    cutter = threading.Thread(target=cut_when_busy)
    cutter.start()
    summary = tmp_path / "summary.json"
    process = subprocess.run(
        [sys.executable, "-m", "asyncwait", "run", "--quiet", "--json-summary", str(summary),
         "job.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        check=False,
    )  # fmt: skip
    cutter.join()
    assert process.returncode == 0, process.stderr
    out = [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    dead = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    dead_ids = [d["event"]["id"] for d in dead]
    # Every event enriched or a dead letter, none twice, none both.
    assert sorted(out + dead_ids) == list(range(n))
    assert dead, "the outage produced no dead letter"
    assert {d["kind"] for d in dead} == {"lookup_failed"}
    reasons = {d["reason"].split(":")[0] for d in dead}
    assert "CircuitOpenError" in reasons, reasons
    report = json.loads(summary.read_text())
    assert report["dead_letters"] == len(dead)
    assert report["events_in"] == report["events_out"] + report["dead_letters"]
    assert report["operators"][0]["counters"]["breaker_openings"] >= 1
    # The breaker kept the store's load down while it was out: a 1.5 s outage at up to
    # 1,000 calls/s would otherwise have received ~1,500.
    during = flaky_store.stats().during_outage
    assert during < 100, during


@pytest.fixture
def pg_users(postgres_server: PostgresServer) -> str:
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS resilience_users;"
            "CREATE TABLE resilience_users (user_id text PRIMARY KEY, age integer);"
            "INSERT INTO resilience_users SELECT 'user_' || i, i FROM generate_series(0, 999) i;"
        )
    return "resilience_users"


async def test_postgres_backends_killed_mid_run_are_ridden_through_by_retries(
    postgres_server: PostgresServer, pg_users: str
) -> None:
    table = lookups.postgres(postgres_server.dsn, table=pg_users, key="user_id")
    env = StreamEnvironment(name="pg")

    async def slowly() -> Any:
        for e in events(3000):
            if e["id"] % 100 == 0:
                await asyncio.sleep(0.01)  # ~0.3 s in all, so the kills land mid-run
            yield e

    out = (
        env.from_source(sources.collection(slowly()))
        .lookup_join(
            table,
            on="userID",
            max_batch_size=20,
            # Generous: three kills 0.1 s apart must not exhaust a lookup's retries, even
            # on a busy machine where reconnecting takes a while.
            retry=fixed_delay(30, 0.05),
            on_error="dead_letter",
        )
        .sink_to(sinks.collect())
    )
    run = asyncio.ensure_future(env.execute_async())
    killed = 0
    while not run.done() and killed < 3:
        await asyncio.sleep(0.1)
        killed += await asyncio.to_thread(terminate_backends, postgres_server) > 0
    result = await run
    assert killed >= 1, "the job ended before a backend could be killed"
    got = {o["id"]: o["age"] for o in out.values}
    # Retries reconnected: everything enriched, nothing dead-lettered.
    assert (len(got), result.dead_letters) == (3000, 0)
    assert all(age == i % 1000 for i, age in got.items())
    assert result.operators[0].retries >= 1


async def test_a_paused_redis_is_waited_out_by_attempt_timeouts_and_retries(
    redis_server: RedisServer,
) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    await client.mset({f"res:user_{i}": json.dumps({"age": i}) for i in range(200)})
    await client.aclose()
    table = lookups.redis(redis_server.url, key_prefix="res:", value="json")

    async def slowly() -> Any:
        for e in events(400, users=200):
            if e["id"] % 20 == 0:
                await asyncio.sleep(0.05)  # 1 s in all: the pause lands mid-run
            yield e

    env = StreamEnvironment(name="redis")
    sink = (
        env.from_source(sources.collection(slowly()))
        .lookup_join(
            table,
            on="userID",
            max_batch_size=1,
            capacity=20,
            attempt_timeout=0.25,
            timeout=5.0,
            retry=fixed_delay(20, 0.1),
        )
        .sink_to(sinks.collect())
    )
    run = asyncio.ensure_future(env.execute_async())
    while env.progress().events_out < 100:  # noqa: ASYNC110 - the job's own progress, polled
        await asyncio.sleep(0.01)
    await asyncio.to_thread(pause_redis, redis_server, 0.6)  # answered after it, not lost
    result = await run
    out = list(sink.values)
    assert sorted(o["id"] for o in out) == list(range(400))
    assert all(o["age"] == o["id"] % 200 for o in out)
    assert result.operators[0].attempt_timeouts >= 1
