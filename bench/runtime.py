"""The dataflow runtime suite (``python -m bench runtime``, or ``python -m bench.runtime``).

Measures the targets of the runtime / lookup join / CLI issue on the demo workload, each
asyncwait job run exactly as a user runs it: ``asyncwait run job.toml --quiet --json-summary
F --loop L`` in a fresh interpreter (which also isolates its memory):

1. **The demo job end to end**: 1,000,000 events and 100,000 users from the demo generator
   (generated once, fixed seed, reused by every row): ``jsonl (event time) ->
   lookup_join(sqlite dim_user) -> jsonl``, with the demo's default LRU cache sized to the
   table and with no cache (the demo's ``--no-cache`` job), on asyncio's default loop and on
   uvloop. Target: >= 50,000 events/s. Baseline in the same run: a naive synchronous loop
   over the same file (``json.loads``, one ``sqlite3`` query per event, ``json.dumps``; see
   ``bench/_naivejoin.py``); each asyncwait row prints its ratio to it.
2. **Memory while streaming**: peak RSS (the child's own ``VmHWM``, see ``bench/_hwm.py``) of the
   demo job over 10,000,000 events vs the 1,000,000-event run of section 1. Target: flat
   (bounded buffers). It runs the ``--no-cache`` job, so that the only state that could grow
   with the input is the job's buffers (an LRU cache grows towards its ``max_size`` as more
   distinct keys arrive, which says nothing about the buffers; section 1 shows what the
   cache costs), on the loop ``asyncwait run`` picks by default (uvloop when installed).
3. **Where the time goes**: smaller in-process jobs (``StreamEnvironment.execute_async`` on a
   fresh loop) adding one stage at a time: the source and sink alone, a map, an async
   operator calling a zero-latency function, and a lookup join with an LRU cache.

``--quick`` runs 20,000 / 200,000 events (and 2,000 in section 3): a smoke run, the numbers
mean nothing. Targets are printed, never asserted. The data lives in a temporary directory
deleted at the end (the 10 M-event run needs about 2.3 GB of disk while it runs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncwait import cache, lookups, sinks, sources
from asyncwait.cli import demo
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

ROOT = Path(__file__).resolve().parent.parent
SEED = 20240601
TARGET_EVENTS_PER_S = 50_000.0
FLAT_FACTOR = 1.25  # peak RSS over 10 N events <= 1.25 x peak RSS over N events

DEMO = "demo end to end"
MEMORY = "memory streaming"
STAGES = "stages"


@dataclass(frozen=True, slots=True)
class Sizes:
    """Workload sizes; ``--quick`` shrinks them to a smoke run."""

    events: int  # section 1, and N in section 2
    users: int
    stage_events: int  # section 3
    stage_users: int


FULL = Sizes(events=1_000_000, users=100_000, stage_events=100_000, stage_users=10_000)
QUICK = Sizes(events=20_000, users=10_000, stage_events=2_000, stage_users=1_000)


# ---------------------------------------------------------------------- child processes


@dataclass(frozen=True, slots=True)
class ChildRun:
    """One finished child process: its wall time, CPU time, peak RSS and stdout."""

    wall: float  # seconds from spawn to exit, interpreter start-up included
    cpu: float  # user + system seconds of the child (start-up included)
    max_rss_kib: int  # the child's own peak RSS: VmHWM at exit (see bench/_hwm.py)
    stdout: str


def _run_child(module: str, *args: str, cwd: Path) -> ChildRun:
    """Run ``python -m module args...`` under ``bench._hwm``; CPU time from ``wait4``.

    ``wait4`` gives this child's CPU time alone (``getrusage(RUSAGE_CHILDREN)`` sums every
    child so far). Its ``ru_maxrss`` is not used where ``/proc`` exists: on Linux it starts
    from the parent's peak RSS (see ``bench/_hwm.py``).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with (
        tempfile.TemporaryDirectory(prefix="asyncwait-child-") as tmp,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        hwm = Path(tmp) / "hwm.json"
        command = [sys.executable, "-m", "bench._hwm", str(hwm), module, *args]
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        if proc.returncode != 0:
            raise RuntimeError(
                f"{module} {' '.join(args)} exited with {proc.returncode}:\n{stderr}"
            )
        peak = json.loads(hwm.read_text(encoding="utf-8"))["vm_hwm_kib"]
    if peak is None:  # no /proc: the parent's peak may show through, see bench/_hwm.py
        peak = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, int(peak), stdout)


@dataclass(frozen=True, slots=True)
class Jobs:
    """The generated demo data and its two job files."""

    data: demo.DemoData
    cached: Path  # the demo's default job: LRU cache sized to the table
    uncached: Path  # the demo's --no-cache job


def _generate(directory: Path, events: int, users: int) -> Jobs:
    started = time.perf_counter()
    data = demo.generate(directory, events=events, users=users, seed=SEED)
    uncached = demo.write_job(data, cache=False).rename(directory / "job-no-cache.toml")
    cached = demo.write_job(data)
    size = data.events_path.stat().st_size
    print(
        f"generated {events:,} events ({size / 2**20:,.0f} MiB) and dim_user ({data.rows:,} of "
        f"{users:,} users) in {time.perf_counter() - started:.1f} s"
    )
    sys.stdout.flush()
    return Jobs(data, cached, uncached)


@dataclass(frozen=True, slots=True)
class JobRun:
    """One ``asyncwait run``: the process figures and the job's JSON summary."""

    child: ChildRun
    summary: dict[str, Any]

    @property
    def seconds(self) -> float:
        return float(self.summary["duration_s"])

    @property
    def per_s(self) -> float:
        return float(self.summary["throughput_eps"])

    def counter(self, name: str) -> float:
        """A lookup operator counter (0 when the job has none)."""
        total = 0.0
        for op in self.summary["operators"]:
            total += float(op.get("counters", {}).get(name, 0))
        return total


def _run_job(job: Path, loop: str, events: int) -> JobRun:
    summary_path = job.with_name(f"summary-{job.stem}-{loop}.json")
    child = _run_child(
        "asyncwait",
        "run",
        str(job),
        "--quiet",
        "--json-summary",
        str(summary_path),
        "--loop",
        loop,
        cwd=job.parent,
    )
    summary: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
    (job.parent / demo.OUTPUT_FILE).unlink(missing_ok=True)  # up to 1 GB: keep disk use low
    if summary["status"] != "succeeded" or summary["events_in"] != events:
        raise RuntimeError(f"{job} on {loop}: unexpected summary {summary}")
    return JobRun(child, summary)


def _run_naive(jobs: Jobs) -> tuple[ChildRun, dict[str, Any]]:
    out = jobs.data.directory / "naive.jsonl"
    data = jobs.data
    child = _run_child(
        "bench._naivejoin", str(data.events_path), str(data.db_path), str(out), cwd=ROOT
    )
    out.unlink(missing_ok=True)
    result: dict[str, Any] = json.loads(child.stdout)
    if result["events_in"] != jobs.data.events:
        raise RuntimeError(f"naive join read {result['events_in']} events: {result}")
    return child, result


# ---------------------------------------------------------------------- 1. end to end


def demo_end_to_end(
    loops: Sequence[Loop], jobs: Jobs, reps: int
) -> tuple[list[Row], dict[tuple[str, str], JobRun]]:
    """Rows for section 1, and the best run of each (loop, cache) for section 2."""
    n = jobs.data.events
    variants = {"cache on": jobs.cached, "cache off": jobs.uncached}
    runs: dict[tuple[str, str], list[JobRun]] = {}
    naive_runs: list[tuple[ChildRun, dict[str, Any]]] = []
    for _ in range(reps):  # interleaved, so drift of the machine hits every variant alike
        naive_runs.append(_run_naive(jobs))
        for loop in loops:
            for case, job in variants.items():
                runs.setdefault((loop.name, case), []).append(_run_job(job, loop.name, n))
    naive_child, naive = min(naive_runs, key=lambda run: run[1]["seconds"])
    naive_per_s = n / naive["seconds"]

    rows = [
        Row(
            DEMO,
            "sync",
            "naive loop",
            "naive",
            n,
            values={
                "runs": reps,
                "seconds": naive["seconds"],
                "wall_s": naive_child.wall,
                "per_s": naive_per_s,
                "cpu_us_per_event": naive_child.cpu / n * 1e6,
                "peak_rss_kib": naive_child.max_rss_kib,
            },
            note=(
                "naive: json.loads, one sqlite3 SELECT per event, json.dumps, one thread "
                "(bench/_naivejoin.py); no event-time parsing, no errors file"
            ),
        )
    ]
    best: dict[tuple[str, str], JobRun] = {}
    for loop in loops:
        for case in variants:
            run = best[loop.name, case] = min(runs[loop.name, case], key=lambda r: r.seconds)
            ratio = run.summary.get("cache_hit_ratio")
            row = Row(DEMO, loop.name, case, "asyncwait", n)
            row.values = {
                "runs": reps,
                "seconds": run.seconds,
                "wall_s": run.child.wall,
                "per_s": run.per_s,
                "cpu_us_per_event": run.child.cpu / n * 1e6,
                "peak_rss_kib": run.child.max_rss_kib,
                "vs_naive": run.per_s / naive_per_s,
                "lookups": run.counter("lookups"),
            }
            if ratio is not None:
                row.values["cache_hit_ratio"] = float(ratio)
            row.target = f">= {TARGET_EVENTS_PER_S:,.0f} ev/s"
            row.met = run.per_s >= TARGET_EVENTS_PER_S
            row.note = (
                "asyncwait: `asyncwait run job.toml --quiet --json-summary F --loop L` in a "
                "subprocess; events/s and job s from the summary (interpreter start-up "
                "excluded), process s and CPU include it"
            )
            rows.append(row)
    return rows, best


DEMO_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("job", lambda r: r.case, right=False),
    Column("impl", lambda r: r.impl, right=False),
    Column("events", lambda r: f"{r.n:,}"),
    Column("job s", lambda r: fmt(r.values["seconds"], ".2f")),
    Column("process s", lambda r: fmt(r.values["wall_s"], ".2f")),
    Column("events/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("CPU µs/ev", lambda r: fmt(r.values["cpu_us_per_event"], ".2f")),
    Column("peak RSS MiB", lambda r: fmt(r.values["peak_rss_kib"] / 1024, ",.1f")),
    Column("hit ratio", lambda r: fmt(r.values.get("cache_hit_ratio"), ".3f")),
    Column("vs naive", lambda r: fmt(r.values.get("vs_naive"), ".2f", "x")),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


# ---------------------------------------------------------------------- 2. memory


def _memory_row(loop: str, label: str, run: JobRun, n: int) -> Row:
    row = Row(MEMORY, loop, label, "asyncwait", n)
    row.values = {
        "peak_rss_kib": run.child.max_rss_kib,
        "seconds": run.seconds,
        "per_s": run.per_s,
        "cpu_us_per_event": run.child.cpu / n * 1e6,
        "lookups": run.counter("lookups"),
    }
    row.note = (
        "the demo job with no cache (--no-cache); peak RSS = the child's VmHWM at exit "
        "(bench/_hwm.py)"
    )
    return row


def memory_streaming(loop: str, base: JobRun, n: int, users: int, workdir: Path) -> list[Row]:
    """Rows N (``base``, the no-cache run of section 1 on ``loop``) and 10 N."""
    big_n = 10 * n
    directory = workdir / "demo-10n"
    try:
        jobs = _generate(directory, big_n, users)
        big = _run_job(jobs.uncached, loop, big_n)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    first = _memory_row(loop, "N", base, n)
    second = _memory_row(loop, "10N", big, big_n)
    ratio = big.child.max_rss_kib / max(base.child.max_rss_kib, 1)
    second.values["vs_n"] = ratio
    second.target = f"<= {FLAT_FACTOR:g} x peak(N)"
    second.met = ratio <= FLAT_FACTOR
    return [first, second]


MEMORY_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("run", lambda r: r.case, right=False),
    Column("events", lambda r: f"{r.n:,}"),
    Column("peak RSS MiB", lambda r: fmt(r.values["peak_rss_kib"] / 1024, ",.1f")),
    Column("vs N", lambda r: fmt(r.values.get("vs_n"), ".2f", "x")),
    Column("events/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("CPU µs/ev", lambda r: fmt(r.values["cpu_us_per_event"], ".2f")),
    Column("queries", lambda r: fmt(r.values["lookups"], ",.0f")),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


# ---------------------------------------------------------------------- 3. stages

Build = Callable[[DataStream[Any], Path, int], DataStream[Any]]


def make_events(path: Path, n: int, users: int) -> None:
    """Write ``n`` well-formed browse events as JSONL (the seed scenario's shape)."""
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


STAGE_CASES: list[tuple[str, Build]] = [
    ("jsonl -> jsonl", lambda s, _db, _users: s),
    ("jsonl -> map -> jsonl", lambda s, _db, _users: s.map(_tag)),
    (
        "jsonl -> map -> unordered_wait -> jsonl",
        lambda s, _db, _users: s.map(_tag).unordered_wait(_same, capacity=100),
    ),
    (
        "jsonl -> lookup_join(sqlite, lru) -> jsonl",
        lambda s, db, users: s.lookup_join(
            lookups.sqlite(db, table="dim_user", key="user_id", columns=["age"]),
            on="userID",
            cache=cache.lru(users),
            capacity=100,
        ),
    ),
]


def _stage_workload(
    events: Path, out: Path, db: Path, users: int, build: Build
) -> Callable[[], Coroutine[Any, Any, int]]:
    async def workload() -> int:
        env = StreamEnvironment(name="bench")
        build(env.from_source(sources.jsonl(events)), db, users).sink_to(sinks.jsonl(out))
        result = await env.execute_async()
        return result.events_out

    return workload


def stages(loops: Sequence[Loop], sizes: Sizes, workdir: Path) -> list[Row]:
    n, users = sizes.stage_events, sizes.stage_users
    events, out, db = workdir / "events.jsonl", workdir / "out.jsonl", workdir / "dim.db"
    make_events(events, n, users)
    make_users(db, users)
    rows = []
    for loop in loops:
        base = 0.0
        for case, build in STAGE_CASES:
            timing = best_of(
                [time_in_fresh_loop(loop, _stage_workload(events, out, db, users, build), n)]
            )
            us = timing.wall / n * 1e6
            if not base:
                base = us
            rows.append(
                Row(
                    STAGES,
                    loop.name,
                    case,
                    "asyncwait",
                    n,
                    values={
                        "per_s": n / timing.wall,
                        "us_per_event": us,
                        "cpu_us_per_event": timing.cpu / n * 1e6,
                        "over_io_us": us - base,
                    },
                    note=(
                        f"in-process, one run each, well-formed events, {users:,} users "
                        "(LRU holds them all)"
                    ),
                )
            )
    return rows


STAGE_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("job", lambda r: r.case, right=False),
    Column("events", lambda r: f"{r.n:,}"),
    Column("events/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("µs/ev", lambda r: fmt(r.values["us_per_event"], ".2f")),
    Column("CPU µs/ev", lambda r: fmt(r.values["cpu_us_per_event"], ".2f")),
    Column("µs/ev over jsonl -> jsonl", lambda r: fmt(r.values["over_io_us"], ".2f")),
)


# ---------------------------------------------------------------------- the suite


def _print_section(title: str, columns: Sequence[Column], rows: Sequence[Row]) -> None:
    print_table(title, columns, rows)
    for note in sorted({row.note for row in rows if row.note}):
        print(f"  ({note})")
    sys.stdout.flush()


def run(options: Options, *, events: int | None = None, reps: int | None = None) -> SuiteResult:
    """Generate the data, run every job on every available loop, print a table per section.

    ``events`` overrides N (section 2 runs 10 N); ``reps`` runs each job of section 1 that
    many times, interleaved, and keeps the fastest (default 3, 1 with ``--quick``: runs of
    one job here differ by up to 20-30 %; the full suite takes ~10 minutes).
    """
    sizes = QUICK if options.quick else FULL
    n = events if events is not None else sizes.events
    repeat = reps if reps is not None else (1 if options.quick else 3)
    loops, notes = available_loops()
    result = SuiteResult("runtime", notes=list(notes))
    if options.quick:
        result.notes.append("--quick: tiny workloads, the numbers are not meaningful")
    result.notes.append(
        f"demo data: {n:,} and {10 * n:,} events, {sizes.users:,} users, seed {SEED}; "
        f"best of {repeat}"
    )
    for note in result.notes:
        print(f"note: {note}")
    sys.stdout.flush()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asyncwait-bench-") as tmp:
        workdir = Path(tmp)
        directory = workdir / "demo-n"
        jobs = _generate(directory, n, sizes.users)
        demo_rows, best = demo_end_to_end(loops, jobs, repeat)
        shutil.rmtree(directory)
        result.rows.extend(demo_rows)
        _print_section(
            f"1. the demo job end to end: {n:,} events, {sizes.users:,} users "
            f"(target >= {TARGET_EVENTS_PER_S:,.0f} events/s)",
            DEMO_COLUMNS,
            demo_rows,
        )

        # The loop `asyncwait run` uses by default: uvloop when installed.
        loop = "uvloop" if any(loop.name == "uvloop" for loop in loops) else "asyncio"
        memory_rows = memory_streaming(loop, best[loop, "cache off"], n, sizes.users, workdir)
        result.rows.extend(memory_rows)
        _print_section(
            f"2. peak RSS streaming {10 * n:,} vs {n:,} events, no cache (must be flat)",
            MEMORY_COLUMNS,
            memory_rows,
        )

        stage_dir = workdir / "stages"
        stage_dir.mkdir()
        stage_rows = stages(loops, sizes, stage_dir)
        result.rows.extend(stage_rows)
        _print_section(
            "3. where the time goes: in-process jobs, one stage at a time",
            STAGE_COLUMNS,
            stage_rows,
        )
    result.seconds = time.perf_counter() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.runtime [--quick] [--events N] [--reps R] [--json FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny workloads: a smoke run")
    parser.add_argument("--events", type=int, help="N: events of section 1 (default 1,000,000)")
    parser.add_argument("--reps", type=int, help="runs per job of section 1 (default 3)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save results as JSON")
    args = parser.parse_args(argv)
    result = run(Options(quick=args.quick), events=args.events, reps=args.reps)
    if args.json is not None:
        args.json.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
