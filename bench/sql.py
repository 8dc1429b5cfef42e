"""SQL lookups against a real PostgreSQL on loopback: batched vs per-key vs blocking drivers.

The seed scenario with the dimension table in PostgreSQL: browse events enriched with each
user's age from ``dim_user``, **cache off**, so every event is a lookup. The suite starts
its own server (``tests/integration/_postgres.py``: initdb/pg_ctl in a temp dir), loads the
keys, and measures in one run, on the same events, every variant three times interleaved
(so drift of the machine hits all alike), keeping each one's best run:

* ``sync psycopg``: one ``SELECT … WHERE user_id = %s`` per event on one psycopg
  connection, in a plain loop (a blocking ``RichMapFunction``).
* ``join batched``: ``LookupJoin`` over :func:`asyncwait.lookups.postgres` (asyncpg) with
  its defaults (``max_batch_size`` 256, two queries in flight, so at most 50 keys per query
  at capacity 100): the keys missed meanwhile go out in one ``= ANY($1::text[])`` round trip.
* ``join per-key asyncpg``: the same with ``max_batch_size=1``: one prepared ``get`` per key,
  up to ``capacity`` in flight over the pool (which the join sizes to 50).
* ``join per-key threaded psycopg``: ``max_batch_size=1`` over :func:`asyncwait.lookups.threaded`
  (psycopg in worker threads, one connection each): the no-async-client path.
* ``raw asyncpg per-key``: no asyncwait, ``capacity`` tasks each awaiting
  ``pool.fetchrow`` in turn: what the per-key join costs on top of the driver.
* ``raw asyncpg ANY() ceiling``: no asyncwait, 256-key ``= ANY`` statements back to back:
  the most a batched join with one query in flight could do (the theoretical line).

The joins run under ``asyncwait.unordered_wait``, as in ``bench/lookups.py``. Server and
client share the machine's cores, so the ratios say more than the absolute numbers.

Run: ``python -m bench sql [--quick]`` (a suite: a table of rows, ``--json``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import asyncwait
from asyncwait import lookups
from asyncwait.join import LookupJoin

from ._util import Column, Options, Row, SuiteResult, fmt, print_table
from .lookups import make_events

CAPACITY = 100
BATCH = 256  # LookupJoin's default max_batch_size
REPS = 3  # runs of every variant, interleaved; the best is kept
BATCHED_TARGET = 3.0  # batched >= 3x per-key async lookups
SYNC_TARGET = 10.0  # batched >= 10x a synchronous per-event psycopg loop
GET_SQL = 'SELECT "age" FROM "public"."dim_user" WHERE "user_id" = $1 LIMIT 1'
ANY_SQL = 'SELECT "user_id", "age" FROM "public"."dim_user" WHERE "user_id" = ANY($1::text[])'


@dataclass(frozen=True, slots=True)
class Sizes:
    events: int
    keys: int


FULL = Sizes(events=100_000, keys=10_000)
QUICK = Sizes(events=2_000, keys=200)

Measured = tuple[int, dict[str, int]]  # outputs, counters


def run_sync_psycopg(dsn: str, events: list[dict[str, Any]]) -> Measured:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        out = 0
        for event in events:
            cur.execute(
                'SELECT "age" FROM "dim_user" WHERE "user_id" = %s LIMIT 1', (event["userID"],)
            )
            row = cur.fetchone()
            enriched = {**event, "age": row[0]} if row is not None else event
            out += enriched is not None
    return out, {"queries": len(events), "keys": len(events)}


async def run_join(table: Any, events: list[dict[str, Any]], *, max_batch_size: int) -> Measured:
    join = LookupJoin(table, on="userID", max_batch_size=max_batch_size)
    out = 0
    async for _ in asyncwait.unordered_wait(events, join, capacity=CAPACITY):
        out += 1
    stats = join.statistics()
    return out, {"queries": stats.lookups, "keys": stats.keys, "coalesced": stats.coalesced}


async def run_raw_asyncpg(dsn: str, events: list[dict[str, Any]], pool_size: int) -> Measured:
    import asyncpg

    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
    try:
        it = iter(events)
        out = 0

        async def worker() -> None:
            nonlocal out
            for event in it:
                row = await pool.fetchrow(GET_SQL, event["userID"])
                enriched = {**event, "age": row[0]} if row is not None else event
                out += enriched is not None

        async with asyncio.TaskGroup() as tg:
            for _ in range(CAPACITY):
                tg.create_task(worker())
    finally:
        await pool.close()
    return out, {"queries": len(events), "keys": len(events)}


async def run_any_ceiling(dsn: str, events: list[dict[str, Any]]) -> Measured:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        out = queries = 0
        for start in range(0, len(events), BATCH):
            chunk = events[start : start + BATCH]
            keys = list(dict.fromkeys(e["userID"] for e in chunk))
            rows = {r[0]: r[1] for r in await conn.fetch(ANY_SQL, keys)}
            queries += 1
            for event in chunk:
                age = rows.get(event["userID"])
                enriched = {**event, "age": age} if event["userID"] in rows else event
                out += enriched is not None
    finally:
        await conn.close()
    return out, {"queries": queries, "keys": len(events)}


def timed(fn: Callable[[], Measured]) -> tuple[float, float, int, dict[str, int]]:
    cpu, start = time.process_time(), time.perf_counter()
    out, counters = fn()
    return time.perf_counter() - start, time.process_time() - cpu, out, counters


def in_loop(make: Callable[[], Coroutine[Any, Any, Measured]]) -> Callable[[], Measured]:
    return lambda: asyncio.run(make())


COLUMNS = (
    Column("variant", lambda r: r.case, right=False),
    Column("events", lambda r: f"{r.n:,}"),
    Column("lookups/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("s", lambda r: fmt(r.values["seconds"], ".2f")),
    Column("client CPU µs/ev", lambda r: fmt(r.values["cpu_us_per_event"], ".1f")),
    Column("queries", lambda r: fmt(r.values["queries"], ",.0f")),
    Column("vs sync", lambda r: fmt(r.values.get("vs_sync"), ".2f", "x")),
)


def run(options: Options) -> SuiteResult:
    """The ``sql`` suite of ``python -m bench``: every variant once, then the ratios."""
    from tests.integration._postgres import seed_dim_user, start_postgres

    sizes = QUICK if options.quick else FULL
    reps = 1 if options.quick else REPS
    result = SuiteResult("sql")
    if options.quick:
        result.notes.append("--quick: tiny workloads, the numbers are not meaningful")
    started = time.perf_counter()
    server = start_postgres()
    try:
        seed_dim_user(server.dsn, [(f"user_{i}", 18 + i % 60) for i in range(sizes.keys)])
        server.execute("VACUUM ANALYZE dim_user")
        version = _server_version(server.dsn)
        result.notes.append(
            f"{sizes.events:,} events over {sizes.keys:,} keys, cache off, capacity {CAPACITY}, "
            f"best of {reps} interleaved runs each, asyncio's loop, "
            f"PostgreSQL {version} on 127.0.0.1 (same machine)"
        )
        for note in result.notes:
            print(f"note: {note}")
        events = make_events(sizes.events, sizes.keys)
        dsn = server.dsn
        pg = functools.partial(lookups.postgres, dsn, table="dim_user", key="user_id")
        import psycopg

        threaded = functools.partial(
            lookups.threaded,
            functools.partial(psycopg.connect, dsn),
            table="dim_user",
            key="user_id",
            columns=["age"],
        )
        variants: list[tuple[str, str, Callable[[], Measured]]] = [
            ("sync psycopg (1 query/event)", "sync", lambda: run_sync_psycopg(dsn, events)),
            (
                f"join batched (max_batch_size={BATCH}), asyncpg",
                "asyncwait",
                in_loop(lambda: run_join(pg(columns=["age"]), events, max_batch_size=BATCH)),
            ),
            (
                "join per-key (max_batch_size=1), asyncpg pool 50 (auto)",
                "asyncwait",
                in_loop(lambda: run_join(pg(columns=["age"]), events, max_batch_size=1)),
            ),
            (
                "join per-key (max_batch_size=1), threaded psycopg x4",
                "asyncwait",
                in_loop(lambda: run_join(threaded(threads=4), events, max_batch_size=1)),
            ),
            (
                "raw asyncpg per-key, pool 50 (no asyncwait)",
                "baseline",
                in_loop(lambda: run_raw_asyncpg(dsn, events, 50)),
            ),
            (
                f"raw asyncpg ANY() x{BATCH} back to back (ceiling)",
                "ceiling",
                in_loop(lambda: run_any_ceiling(dsn, events)),
            ),
        ]
        rows = [
            Row("sql lookups", "asyncio", label, impl, len(events)) for label, impl, _ in variants
        ]
        for rep in range(1, reps + 1):
            # Interleaved, so drift of the machine hits every variant alike; best run kept.
            for (label, _, fn), row in zip(variants, rows, strict=True):
                seconds, cpu, out, counters = timed(fn)
                if out != len(events):
                    msg = f"{label}: {out} outputs for {len(events)} events"
                    raise RuntimeError(msg)
                print(
                    f"  run {rep}/{reps} {label}: {len(events) / seconds:,.0f} lookups/s",
                    flush=True,
                )
                if row.values and row.values["seconds"] <= seconds:
                    continue
                row.values = {
                    "seconds": seconds,
                    "per_s": len(events) / seconds,
                    "cpu_us_per_event": cpu / len(events) * 1e6,
                    "queries": counters["queries"],
                    "keys": counters["keys"],
                }
        result.rows.extend(rows)
    finally:
        server.stop()
    sync = result.rows[0].values["per_s"]
    for row in result.rows[1:]:
        row.values["vs_sync"] = row.values["per_s"] / sync
    batched, per_key, threaded_row = result.rows[1], result.rows[2], result.rows[3]
    vs_per_key = batched.values["per_s"] / per_key.values["per_s"]
    vs_sync = batched.values["per_s"] / sync
    batched.values["vs_per_key"] = vs_per_key
    batched.target = f">= {BATCHED_TARGET:g}x per-key and >= {SYNC_TARGET:g}x sync psycopg"
    batched.met = vs_per_key >= BATCHED_TARGET and vs_sync >= SYNC_TARGET
    threaded_vs_asyncpg = threaded_row.values["per_s"] / per_key.values["per_s"]
    threaded_row.values["vs_asyncpg_per_key"] = threaded_vs_asyncpg
    print_table(f"PostgreSQL lookups, cache off (best of {reps})", COLUMNS, result.rows)
    ceiling = result.rows[5].values["per_s"]
    lines = [
        f"batched / per-key asyncpg        = {vs_per_key:6.2f}x  (target >= {BATCHED_TARGET:g}x: "
        f"{'met' if vs_per_key >= BATCHED_TARGET else 'MISSED'})",
        f"batched / sync psycopg           = {vs_sync:6.2f}x  (target >= {SYNC_TARGET:g}x: "
        f"{'met' if vs_sync >= SYNC_TARGET else 'MISSED'})",
        f"threaded psycopg / asyncpg, per-key = {threaded_vs_asyncpg:5.2f}x  (reported, no target)",
        f"batched / ANY() ceiling          = {batched.values['per_s'] / ceiling:6.2f}  "
        "(the share of the driver's batched rate the join keeps)",
        f"per-key join / raw asyncpg       = "
        f"{per_key.values['per_s'] / result.rows[4].values['per_s']:6.2f}  "
        "(the share of the driver's per-key rate the join keeps)",
    ]
    print()
    for line in lines:
        print(line)
    result.notes.extend(lines)
    result.seconds = time.perf_counter() - started
    return result


def _server_version(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"
