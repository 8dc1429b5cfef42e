"""MySQL/MariaDB lookups: batched LookupJoin vs one query per key vs a synchronous loop.

The seed scenario against a real MariaDB on loopback (started here, in a temp dir, with
``tests/integration/_mysql.py``; installed with apt-get when missing): browse events
enriched with the user's age from ``dim_user``, **cache off**, so every event is a lookup.
Every variant turns the same events into the same enriched dicts:

* ``sync-pymysql``: one ``SELECT … WHERE user_id = %s`` per event on one PyMySQL
  connection, in a plain loop (what a blocking ``RichMapFunction`` does).
* ``join per key``: ``LookupJoin(max_batch_size=1)`` under ``unordered_wait`` at capacity
  100: one ``get`` per event, many in flight on a pool sized from the capacity.
* ``join batched``: the default adaptive batching (one ``IN (…)`` query in flight, the
  keys missed meanwhile gather into the next, up to 256).
* ``join batched, wait 2 ms``: as above, and each batch also waits up to 2 ms for keys.

All variants run in one process, one after the other, against the same server: the ratios
come from one run. Run: ``python -m bench mysql [--quick]``.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncwait
from asyncwait import lookups
from asyncwait.join import LookupJoin

from ._util import Column, Options, Row, SuiteResult, fmt, print_table
from .lookups import make_events

CAPACITY = 100


@dataclass(frozen=True, slots=True)
class Sizes:
    events: int
    keys: int


FULL = Sizes(events=100_000, keys=10_000)
QUICK = Sizes(events=2_000, keys=200)


def run_sync(server: Any, events: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
    import pymysql

    conn = pymysql.connect(
        host="127.0.0.1",
        port=server.port,
        user=server.user,
        password=server.password,
        database=server.database,
        autocommit=True,
        charset="utf8mb4",
    )
    try:
        out = 0
        with conn.cursor() as cursor:
            for event in events:
                cursor.execute(
                    "SELECT `age` FROM `dim_user` WHERE `user_id` = %s LIMIT 1",
                    (event["userID"],),
                )
                row = cursor.fetchone()
                enriched = {**event, "age": row[0]} if row is not None else event
                out += enriched is not None
        return out, {"keys": len(events), "queries": len(events)}
    finally:
        conn.close()


async def run_join(
    dsn: str, events: list[dict[str, Any]], **options: Any
) -> tuple[int, dict[str, int]]:
    table = lookups.mysql(dsn, table="dim_user", key="user_id", columns=["age"])
    join = LookupJoin(table, on="userID", **options)
    out = 0
    async for _ in asyncwait.unordered_wait(events, join, capacity=CAPACITY):
        out += 1
    stats = join.statistics()
    return out, {
        "keys": stats.keys,
        "queries": stats.lookups,
        "connections": table.statistics().pool_size,
    }


Measure = Callable[[], tuple[int, dict[str, int]]]


def measure(server: Any, sizes: Sizes) -> list[dict[str, Any]]:
    """Run every variant once; one result dict per variant, the sync baseline first."""
    data = make_events(sizes.events, sizes.keys)
    results: list[dict[str, Any]] = []

    def record(label: str, fn: Measure) -> None:
        cpu, t0 = time.process_time(), time.perf_counter()
        out, counters = fn()
        seconds = time.perf_counter() - t0
        if out != len(data):
            raise RuntimeError(f"{label}: {out} outputs for {len(data)} events")
        results.append(
            {
                "variant": label,
                "events": len(data),
                "seconds": seconds,
                "cpu_seconds": time.process_time() - cpu,
                **counters,
            }
        )

    record("sync-pymysql (1 query/event)", lambda: run_sync(server, data))
    variants: list[tuple[str, dict[str, Any]]] = [
        ("join per key (max_batch_size=1)", {"max_batch_size": 1}),
        ("join batched (adaptive, <=256)", {}),
        ("join batched, wait 2 ms", {"max_batch_wait": 0.002}),
    ]
    for label, options in variants:
        record(label, lambda options=options: asyncio.run(run_join(server.dsn, data, **options)))  # type: ignore[misc]
    return results


COLUMNS = (
    Column("variant", lambda r: r.case, right=False),
    Column("events", lambda r: f"{r.n:,}"),
    Column("lookups/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("s", lambda r: fmt(r.values["seconds"], ".2f")),
    Column("CPU µs/ev", lambda r: fmt(r.values["cpu_us_per_event"], ".1f")),
    Column("queries", lambda r: fmt(r.values["queries"], ",.0f")),
    Column("keys/query", lambda r: fmt(r.values["keys_per_query"], ".1f")),
    Column("conns", lambda r: fmt(r.values.get("connections"), ".0f")),
    Column("vs sync", lambda r: fmt(r.values.get("vs_sync"), ".2f", "x")),
    Column("vs per key", lambda r: fmt(r.values.get("vs_per_key"), ".2f", "x")),
)


def run(options: Options) -> SuiteResult:
    """The ``mysql`` suite of ``python -m bench``: its own MariaDB, every variant once."""
    from tests.integration._mysql import start_mariadb

    sizes = QUICK if options.quick else FULL
    result = SuiteResult("mysql")
    if options.quick:
        result.notes.append("--quick: tiny workloads, the numbers are not meaningful")
    started = time.perf_counter()
    server = start_mariadb(users=sizes.keys)
    try:
        version = _server_version(server)
        result.notes.append(
            f"{sizes.events:,} events over {sizes.keys:,} keys, cache off, capacity "
            f"{CAPACITY}, one run each, asyncio's loop, {version} on 127.0.0.1 "
            "(same machine: server and client share the cores)"
        )
        for note in result.notes:
            print(f"note: {note}")
        measured = measure(server, sizes)
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
    sync = measured[0]["events"] / measured[0]["seconds"]
    per_key = measured[1]["events"] / measured[1]["seconds"]
    for i, r in enumerate(measured):
        impl = "sync" if i == 0 else "asyncwait"
        row = Row("mysql lookup join", "asyncio", r["variant"], impl, r["events"])
        per_s = r["events"] / r["seconds"]
        row.values = {
            "seconds": r["seconds"],
            "per_s": per_s,
            "cpu_us_per_event": r["cpu_seconds"] / r["events"] * 1e6,
            "keys": r["keys"],
            "queries": r["queries"],
            "keys_per_query": r["keys"] / r["queries"],
        }
        if "connections" in r:
            row.values["connections"] = r["connections"]
        if i:
            row.values["vs_sync"] = per_s / sync
        if i > 1:
            row.values["vs_per_key"] = per_s / per_key
        result.rows.append(row)
    print_table(
        "LookupJoin over aiomysql (unordered_wait, no cache) vs one PyMySQL query per event",
        COLUMNS,
        result.rows,
    )
    result.seconds = time.perf_counter() - started
    return result


def _server_version(server: Any) -> str:
    conn = server.root()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            return f"MariaDB {cursor.fetchone()[0]}"
    finally:
        conn.close()


if __name__ == "__main__":
    from ._util import Options as _Options

    run(_Options(quick=False))
