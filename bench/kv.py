"""Key-value lookups: LookupJoin over Redis (batched vs per key) and over HTTP.

The seed scenario with ``dim_user`` in Redis (and behind an HTTP service): 100,000 browse
events over 10,000 distinct users, cache off, so every event asks the table. Variants:

* ``sync redis-py``: one blocking ``HGETALL`` per event on one connection, in a plain loop.
* ``join redis hash|json, per key``: ``LookupJoin(max_batch=1)``, one command per key
  (``HGETALL`` / ``GET``), the operator's capacity of them in flight over a pool.
* ``join redis hash|json, batched``: the misses of a loop iteration (and those gathered
  while a batch is in flight) in one round trip: a pipeline of ``HGETALL``, or ``MGET``.
* ``join http, per key`` / ``batch endpoint``: an aiohttp service in another process;
  one GET per key, or one ``POST /users/_batch`` per batch. Fewer events (see the notes):
  per-key HTTP costs both processes far more CPU per lookup.

The target (issue #5): batched Redis at least 3x per-key Redis. Every ratio comes from one
run of this suite, on one machine. The benchmark starts its own ``redis-server`` (installed
with apt-get when missing) and HTTP service on loopback, and stops them.

Run: ``python -m bench kv [--quick]``.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis as redis_py

import asyncwait
from asyncwait import lookups
from asyncwait.join import LookupJoin

from ._util import Column, Options, Row, SuiteResult, fmt, print_table
from .lookups import make_events


@dataclass(frozen=True, slots=True)
class Sizes:
    events: int
    keys: int
    http_events: int
    repeat: int


FULL = Sizes(events=100_000, keys=10_000, http_events=20_000, repeat=2)
QUICK = Sizes(events=2_000, keys=200, http_events=500, repeat=1)
CAPACITY = 100
SECTION = "kv lookup join"

Measure = Callable[[], tuple[int, dict[str, int]]]


def _best(repeat: int, fn: Measure) -> tuple[float, float, int, dict[str, int]]:
    """The fastest of ``repeat`` runs: (seconds, CPU seconds of this process, outputs, counters)."""
    best: tuple[float, float, int, dict[str, int]] = (float("inf"), 0.0, 0, {})
    for _ in range(repeat):
        cpu, t0 = time.process_time(), time.perf_counter()
        out, counters = fn()
        seconds = time.perf_counter() - t0
        if seconds < best[0]:
            best = (seconds, time.process_time() - cpu, out, counters)
    return best


def run_sync(url: str, prefix: str, events: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
    with redis_py.Redis.from_url(url, decode_responses=True) as client:
        out = 0
        for event in events:
            row = client.hgetall(prefix + event["userID"])
            enriched = {**event, **row} if row else event
            out += enriched is not None
    return out, {"keys": len(events), "queries": len(events)}


async def run_join(
    table: Any, events: list[dict[str, Any]], *, max_batch: int
) -> tuple[int, dict[str, int]]:
    join = LookupJoin(table, on="userID", max_batch=max_batch)
    out = 0
    async for _ in asyncwait.unordered_wait(events, join, capacity=CAPACITY):
        out += 1
    stats = join.statistics()
    return out, {"keys": stats.keys, "queries": stats.lookups}


def measure(sizes: Sizes, notes: list[str]) -> list[Row]:
    # The servers come from the integration tests' fixtures (imported here: they need pytest).
    from tests.integration._httpserver import start_http_server
    from tests.integration._redis import seed_users, start_redis

    events = make_events(sizes.events, sizes.keys)
    http_events = events[: sizes.http_events]
    rows: list[Row] = []
    root = Path(tempfile.mkdtemp(prefix="asyncwait-bench-kv-"))
    server = start_redis(root)
    service = None
    try:
        seed_users(server, "h:", sizes.keys, value="hash")
        seed_users(server, "j:", sizes.keys, value="json")
        service = start_http_server(rows=sizes.keys)

        def record(label: str, impl: str, n: int, fn: Measure) -> Row:
            seconds, cpu, out, counters = _best(sizes.repeat, fn)
            if out != n:
                raise RuntimeError(f"{label}: {out} outputs for {n} events")
            row = Row(SECTION, "asyncio", label, impl, n)
            row.values = {
                "seconds": seconds,
                "per_s": n / seconds,
                "cpu_us_per_event": cpu / n * 1e6,
                "keys": counters["keys"],
                "queries": counters["queries"],
            }
            rows.append(row)
            print(f"  {label}: {n / seconds:,.0f} lookups/s", flush=True)
            return row

        url = server.url
        sync = record(
            "sync redis-py (HGETALL/event)",
            "sync",
            len(events),
            lambda: run_sync(url, "h:", events),
        )
        joins: dict[str, Row] = {}
        for value, prefix in (("hash", "h:"), ("json", "j:")):
            for label, batch in (("per key", 1), ("batched", 256)):

                def go(value: str = value, prefix: str = prefix, batch: int = batch) -> Any:
                    table = lookups.redis(url, key_prefix=prefix, value=value)
                    return asyncio.run(run_join(table, events, max_batch=batch))

                joins[f"{value} {label}"] = record(
                    f"join redis {value}, {label}", "asyncwait", len(events), go
                )
        for label, batch_url in (("per key", None), ("batch endpoint", service.batch_url)):

            def go_http(batch_url: str | None = batch_url, label: str = label) -> Any:
                table = lookups.http(service.url_template, batch_url=batch_url)
                batch = 1 if label == "per key" else 256
                return asyncio.run(run_join(table, http_events, max_batch=batch))

            joins[f"http {label}"] = record(
                f"join http, {label}", "asyncwait", len(http_events), go_http
            )
    finally:
        if service is not None:
            service.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    base = sync.values["per_s"]
    for row in rows[1:]:
        if row.case.startswith("join redis"):
            row.values["vs_sync"] = row.values["per_s"] / base
    for value in ("hash", "json"):
        batched, per_key = joins[f"{value} batched"], joins[f"{value} per key"]
        ratio = batched.values["per_s"] / per_key.values["per_s"]
        batched.values["vs_per_key"] = ratio
        batched.target = ">= 3x per-key Redis"
        batched.met = ratio >= 3.0
    http_batch, http_key = joins["http batch endpoint"], joins["http per key"]
    http_batch.values["vs_per_key"] = http_batch.values["per_s"] / http_key.values["per_s"]
    notes.append(
        f"HTTP rows use the first {sizes.http_events:,} events (the server runs in another "
        "process on the same cores)"
    )
    return rows


COLUMNS = (
    Column("variant", lambda r: r.case, right=False),
    Column("events", lambda r: f"{r.n:,}"),
    Column("lookups/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("s", lambda r: fmt(r.values["seconds"], ".3f")),
    Column("CPU µs/ev", lambda r: fmt(r.values["cpu_us_per_event"], ".1f")),
    Column("queries", lambda r: fmt(r.values["queries"], ",.0f")),
    Column("vs sync", lambda r: fmt(r.values.get("vs_sync"), ".2f", "x")),
    Column("vs per key", lambda r: fmt(r.values.get("vs_per_key"), ".2f", "x")),
    Column("target", lambda r: r.target, right=False),
    Column("", lambda r: "" if r.met is None else ("met" if r.met else "MISSED"), right=False),
)


def run(options: Options) -> SuiteResult:
    """The ``kv`` suite of ``python -m bench``."""
    sizes = QUICK if options.quick else FULL
    result = SuiteResult("kv")
    if options.quick:
        result.notes.append("--quick: tiny workloads, the numbers are not meaningful")
    result.notes.append(
        f"{sizes.events:,} events over {sizes.keys:,} keys, cache off, capacity {CAPACITY}, "
        f"best of {sizes.repeat}, asyncio's loop, redis-py {redis_py.__version__}, "
        "own redis-server and aiohttp service on loopback"
    )
    started = time.perf_counter()
    result.rows = measure(sizes, result.notes)
    for note in result.notes:
        print(f"note: {note}")
    print_table("LookupJoin (unordered_wait) over Redis and HTTP, no cache", COLUMNS, result.rows)
    result.seconds = time.perf_counter() - started
    return result
