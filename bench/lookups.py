"""Lookup-join throughput: LookupJoin over aiosqlite vs a plain synchronous sqlite3 loop.

The seed scenario: browse events enriched with each user's age from ``dim_user``. Every
variant turns the same events into the same enriched dicts:

* ``sync-sqlite3``: one ``SELECT`` per event on one sqlite3 connection, in a plain loop
  (what a blocking ``RichMapFunction`` does).
* ``join …``: ``LookupJoin`` driven by ``asyncwait.unordered_wait`` at the given capacity,
  with no cache (batched ``get_many`` per loop iteration, or ``max_batch=1``: one ``get``
  per key), an LRU cache or a full cache, and 1..n aiosqlite connections.

Run: ``python -m bench lookups [--quick]`` (a suite: a table of rows, ``--json``), or
``python -m bench.lookups [--events N] [--keys K] [--capacity C] [--repeat R] [--json]``
for other sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncwait
from asyncwait import cache, lookups
from asyncwait.join import LookupJoin

from ._util import Column, Options, Row, SuiteResult, fmt, print_table


def make_db(path: Path, keys: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
        db.executemany(
            "INSERT INTO dim_user VALUES (?, ?)",
            ((f"user_{i}", 18 + i % 60) for i in range(keys)),
        )
    db.close()


def make_events(n: int, keys: int, seed: int = 42) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "userID": f"user_{rng.randrange(keys)}",
            "eventTime": "2016-06-06 07:03:42",
            "eventType": "browse",
            "productID": rng.randrange(100),
        }
        for _ in range(n)
    ]


def run_sync(path: Path, events: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        out = 0
        for event in events:
            row = db.execute(
                'SELECT "age" FROM "dim_user" WHERE "user_id" = ? LIMIT 1', (event["userID"],)
            ).fetchone()
            enriched = {**event, "age": row[0]} if row is not None else event
            out += enriched is not None
        return out, {"keys": len(events), "queries": len(events)}
    finally:
        db.close()


async def run_join(
    path: Path,
    events: list[dict[str, Any]],
    *,
    capacity: int,
    connections: int,
    spec: cache.CacheSpec | None,
    max_batch: int = 256,
) -> tuple[int, dict[str, int]]:
    table = lookups.sqlite(
        path, table="dim_user", key="user_id", columns=["age"], connections=connections
    )
    join = LookupJoin(table, on="userID", cache=spec, max_batch=max_batch)
    out = 0
    async for _ in asyncwait.unordered_wait(events, join, capacity=capacity):
        out += 1
    stats = join.statistics()
    counters = {"keys": stats.keys, "queries": stats.lookups, "coalesced": stats.coalesced}
    if stats.cache is not None:
        counters["cache_hits"] = stats.cache.hits
    elif spec is not None:
        # The join drops its cache (and the cache's counters) when it closes, which
        # unordered_wait does before we get here: every event the table and the in-flight
        # queries did not answer was a hit.
        counters["cache_hits"] = len(events) - stats.keys - stats.coalesced
    return out, counters


Measure = Callable[[], tuple[int, dict[str, int]]]


def best_of(repeat: int, fn: Measure) -> tuple[float, float, int, dict[str, int]]:
    """The fastest of ``repeat`` runs: (seconds, CPU seconds, outputs, counters)."""
    best: tuple[float, float, int, dict[str, int]] = (float("inf"), 0.0, 0, {})
    for _ in range(repeat):
        cpu, t0 = time.process_time(), time.perf_counter()
        out, counters = fn()
        seconds = time.perf_counter() - t0
        if seconds < best[0]:
            best = (seconds, time.process_time() - cpu, out, counters)
    return best


def measure(
    *, events: int, keys: int, capacity: int, connections: Sequence[int], repeat: int
) -> list[dict[str, Any]]:
    """Run every variant; one result dict per variant, the sync baseline first."""
    data = make_events(events, keys)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dim.db"
        make_db(path, keys)

        def record(label: str, fn: Measure) -> None:
            seconds, cpu, out, counters = best_of(repeat, fn)
            results.append(
                {
                    "variant": label,
                    "events": events,
                    "outputs": out,
                    "seconds": round(seconds, 4),
                    "cpu_seconds": round(cpu, 4),
                    "lookups_per_s": round(events / seconds),
                    **counters,
                }
            )

        record("sync-sqlite3 (1 query/event)", lambda: run_sync(path, data))
        variants: list[tuple[str, int, cache.CacheSpec | None, int]] = [
            (f"join no cache, unbatched, {n} conn", n, None, 1) for n in connections
        ]
        variants += [(f"join no cache, {n} conn", n, None, 256) for n in connections]
        variants += [
            (f"join lru({keys}), 1 conn", 1, cache.lru(keys), 256),
            (f"join lru({keys // 10}), 1 conn", 1, cache.lru(keys // 10), 256),
            ("join full, 1 conn", 1, cache.full(None), 256),
        ]
        for label, n, spec, batch in variants:
            record(
                label,
                lambda n=n, spec=spec, batch=batch: asyncio.run(  # type: ignore[misc]
                    run_join(
                        path, data, capacity=capacity, connections=n, spec=spec, max_batch=batch
                    )
                ),
            )
    return results


@dataclass(frozen=True, slots=True)
class Sizes:
    events: int
    keys: int
    connections: tuple[int, ...]
    repeat: int


FULL = Sizes(events=100_000, keys=10_000, connections=(1, 2, 4), repeat=3)
QUICK = Sizes(events=2_000, keys=200, connections=(1, 2), repeat=1)
CAPACITY = 100

COLUMNS = (
    Column("variant", lambda r: r.case, right=False),
    Column("events", lambda r: f"{r.n:,}"),
    Column("lookups/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("s", lambda r: fmt(r.values["seconds"], ".3f")),
    Column("CPU µs/ev", lambda r: fmt(r.values["cpu_us_per_event"], ".2f")),
    Column("keys", lambda r: fmt(r.values["keys"], ",.0f")),
    Column("queries", lambda r: fmt(r.values["queries"], ",.0f")),
    Column("hits", lambda r: fmt(r.values.get("cache_hits"), ",.0f")),
    Column("vs sync", lambda r: fmt(r.values.get("vs_sync"), ".2f", "x")),
)


def run(options: Options) -> SuiteResult:
    """The ``lookups`` suite of ``python -m bench``: every variant, as a table of rows."""
    sizes = QUICK if options.quick else FULL
    result = SuiteResult("lookups")
    if options.quick:
        result.notes.append("--quick: tiny workloads, the numbers are not meaningful")
    result.notes.append(
        f"{sizes.events:,} events over {sizes.keys:,} keys, capacity {CAPACITY}, "
        f"best of {sizes.repeat}, asyncio's loop, SQLite {sqlite3.sqlite_version}"
    )
    for note in result.notes:
        print(f"note: {note}")
    started = time.perf_counter()
    measured = measure(
        events=sizes.events,
        keys=sizes.keys,
        capacity=CAPACITY,
        connections=sizes.connections,
        repeat=sizes.repeat,
    )
    sync = measured[0]["lookups_per_s"]
    for i, r in enumerate(measured):
        row = Row(
            "lookup join", "asyncio", r["variant"], "sync" if i == 0 else "asyncwait", r["events"]
        )
        row.values = {
            "seconds": r["seconds"],
            "per_s": r["lookups_per_s"],
            "cpu_us_per_event": r["cpu_seconds"] / r["events"] * 1e6,
            "keys": r["keys"],
            "queries": r["queries"],
        }
        if "cache_hits" in r:
            row.values["cache_hits"] = r["cache_hits"]
        if i:
            row.values["vs_sync"] = r["lookups_per_s"] / sync
        result.rows.append(row)
    print_table(
        "LookupJoin (unordered_wait) vs one synchronous sqlite3 query per event",
        COLUMNS,
        result.rows,
    )
    result.seconds = time.perf_counter() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.lookups", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--capacity", type=int, default=100)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    args = parser.parse_args(argv)

    results = measure(
        events=args.events,
        keys=args.keys,
        capacity=args.capacity,
        connections=args.connections,
        repeat=args.repeat,
    )
    if args.json:
        for r in results:
            print(json.dumps(r))
    else:
        print(
            f"{args.events} events over {args.keys} keys, capacity {args.capacity}, "
            f"best of {args.repeat}, Python {sys.version.split()[0]}, "
            f"SQLite {sqlite3.sqlite_version}"
        )
        print(
            f"{'variant':38} {'lookups/s':>10} {'seconds':>8} {'keys':>7} {'queries':>7} "
            f"{'hits':>7}"
        )
        for r in results:
            print(
                f"{r['variant']:38} {r['lookups_per_s']:>10,} {r['seconds']:>8.3f} "
                f"{r['keys']:>7} {r['queries']:>7} {r.get('cache_hits', ''):>7}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
