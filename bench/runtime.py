"""The dataflow runtime suite (``python -m bench.runtime [--quick] [--events N]``).

End-to-end throughput of whole jobs, file in to file out, each on asyncio's default loop and
on uvloop when it is importable:

1. ``jsonl -> jsonl``: the source, the channels and the sink alone;
2. ``jsonl -> map -> jsonl``: plus one chained step;
3. ``jsonl -> map -> unordered_wait -> jsonl``: plus an async operator calling a zero-latency
   function (the runtime's own overhead around an operator);
4. ``jsonl -> map -> ordered_wait -> jsonl``: the same in ORDERED mode;
5. ``demo``: the seed scenario, ``jsonl -> parse -> lookup_join(sqlite, lru cache) -> jsonl``
   over 10,000 users (what ``asyncwait demo`` runs, minus its simulated latency).

The events are generated once into a temporary directory (about 100 bytes a line). Target:
the demo job at >= 50,000 events/s; the other rows have none. Targets are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from asyncwait import cache, lookups, sinks, sources
from asyncwait.runtime import DataStream, StreamEnvironment

from ._util import (
    Column,
    Loop,
    Options,
    Row,
    SuiteResult,
    available_loops,
    best_of,
    fmt,
    print_table,
    time_in_fresh_loop,
    verdict,
)

__all__ = ("main", "run")

FULL_EVENTS = 1_000_000
QUICK_EVENTS = 5_000
USERS = 10_000
TARGET_EVENTS_PER_S = 50_000.0
SEED = 20240601

Build = Callable[[DataStream[Any], Path], DataStream[Any]]


def make_events(path: Path, n: int, users: int) -> None:
    """Write ``n`` browse events as JSONL (the seed scenario's shape)."""
    rng = random.Random(SEED)
    with open(path, "w", encoding="utf-8") as out:
        batch: list[str] = []
        for i in range(n):
            event = {
                "userID": f"user_{rng.randrange(users)}",
                "eventTime": "2016-06-06 07:03:42",
                "eventType": "browse",
                "productID": rng.randrange(1000),
                "shopID": i % 100,
            }
            batch.append(json.dumps(event))
            if len(batch) == 10_000:
                out.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            out.write("\n".join(batch) + "\n")


def make_users(path: Path, users: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
        db.executemany(
            "INSERT INTO dim_user VALUES (?, ?)", ((f"user_{i}", 18 + i % 60) for i in range(users))
        )
    db.close()


def _tag(event: dict[str, Any]) -> dict[str, Any]:
    event["seen"] = True
    return event


async def _same(event: dict[str, Any]) -> dict[str, Any]:
    return event


def _parse(event: dict[str, Any]) -> dict[str, Any]:
    # What the demo's parse step does: keep the fields the join and the sink need.
    return {
        "userID": event["userID"],
        "eventType": event["eventType"],
        "productID": event["productID"],
        "eventTime": event["eventTime"],
    }


CASES: list[tuple[str, Build]] = [
    ("jsonl -> jsonl", lambda s, _db: s),
    ("jsonl -> map -> jsonl", lambda s, _db: s.map(_tag)),
    (
        "jsonl -> map -> unordered_wait -> jsonl",
        lambda s, _db: s.map(_tag).unordered_wait(_same, capacity=100),
    ),
    (
        "jsonl -> map -> ordered_wait -> jsonl",
        lambda s, _db: s.map(_tag).ordered_wait(_same, capacity=100),
    ),
    (
        "demo: parse -> lookup_join(sqlite, lru) -> jsonl",
        lambda s, db: s.map(_parse).lookup_join(
            lookups.sqlite(db, table="dim_user", key="user_id", columns=["age"]),
            on="userID",
            cache=cache.lru(USERS),
            capacity=100,
        ),
    ),
]


def _workload(
    events: Path, out: Path, db: Path, build: Build
) -> Callable[[], Coroutine[Any, Any, int]]:
    async def workload() -> int:
        env = StreamEnvironment(name="bench")
        build(env.from_source(sources.jsonl(events)), db).sink_to(sinks.jsonl(out))
        result = await env.execute_async()
        return result.events_out

    return workload


def _measure(loop: Loop, n: int, reps: int, workdir: Path) -> list[Row]:
    events, out, db = workdir / "events.jsonl", workdir / "out.jsonl", workdir / "dim.db"
    rows = []
    for case, build in CASES:
        times = [
            time_in_fresh_loop(loop, _workload(events, out, db, build), n) for _ in range(reps)
        ]
        best = best_of(times)
        seconds = best.wall
        rate = n / seconds
        demo = case.startswith("demo")
        rows.append(
            Row(
                section="runtime",
                loop=loop.name,
                case=case,
                impl="asyncwait",
                n=n,
                values={
                    "events_per_s": rate,
                    "us_per_event": seconds / n * 1e6,
                    # CPU time of the whole process (threads included): steadier on a busy box
                    "cpu_us_per_event": best.cpu / n * 1e6,
                },
                target=f">= {TARGET_EVENTS_PER_S:,.0f} ev/s" if demo else "",
                met=rate >= TARGET_EVENTS_PER_S if demo else None,
            )
        )
    return rows


COLUMNS = [
    Column("loop", lambda r: r.loop, right=False),
    Column("job", lambda r: r.case, right=False),
    Column("events", lambda r: f"{r.n:,}"),
    Column("events/s", lambda r: fmt(r.values["events_per_s"], ",.0f")),
    Column("µs/event", lambda r: fmt(r.values["us_per_event"], ".2f")),
    Column("cpu µs/event", lambda r: fmt(r.values["cpu_us_per_event"], ".2f")),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
]


def run(options: Options, *, events: int | None = None, reps: int | None = None) -> SuiteResult:
    """Generate the inputs, run every job on every available loop, print the table."""
    n = events if events is not None else QUICK_EVENTS if options.quick else FULL_EVENTS
    repeat = reps if reps is not None else 1 if options.quick else 2
    loops, notes = available_loops()
    result = SuiteResult("runtime", notes=list(notes))
    if options.quick:
        result.notes.append("--quick: tiny workloads, the numbers are not meaningful")
    result.notes.append(f"{n:,} events, {USERS:,} users, best of {repeat}")
    for note in result.notes:
        print(f"note: {note}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asyncwait-bench-") as tmp:
        workdir = Path(tmp)
        make_events(workdir / "events.jsonl", n, USERS)
        make_users(workdir / "dim.db", USERS)
        for loop in loops:
            result.rows.extend(_measure(loop, n, repeat, workdir))
    print_table("Dataflow jobs, file to file", COLUMNS, result.rows)
    result.seconds = time.perf_counter() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.runtime [--quick] [--events N] [--reps R] [--json FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny workloads: a smoke run")
    parser.add_argument("--events", type=int, help="events per job (default 1,000,000)")
    parser.add_argument("--reps", type=int, help="runs per job; the best counts (default 2)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save results as JSON")
    args = parser.parse_args(argv)
    result = run(Options(quick=args.quick), events=args.events, reps=args.reps)
    if args.json is not None:
        args.json.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
