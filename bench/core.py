"""The core operator suite (``python -m bench operator``).

Five measurements, each on asyncio's default loop and on uvloop when it is importable, each
timed on a fresh event loop and printed next to baselines measured in the same run:

1. zero latency (``async def f(x): return x``): per-element overhead of ``ordered_wait`` and
   ``unordered_wait`` vs a naive semaphore-and-task version and aiostream's ``map``;
2. fixed 10 ms latency at capacity 100 and 1000: throughput as a fraction of the limit
   ``capacity / latency``, vs the naive version and vs a ceiling (bare worker tasks: what
   the event loop itself manages on this machine);
3. exponential latency (mean 10 ms, seeded): ORDERED vs UNORDERED vs KEY_ORDERED, each also
   against its ideal (the same latencies replayed through the mode's rules with no overhead:
   ORDERED is bounded by head-of-line blocking, not by asyncwait);
4. memory per in-flight element (RSS and Python heap), vs the naive version;
5. memory while streaming N vs 10 N elements: must not grow with N;
6. the push API at zero latency: ``AsyncWaitOperator`` driven as an embedding framework
   drives it (``await op.process_element(Record(v))`` per element, a 5 s timeout; see
   ``bench/_workload.py``'s ``push``), ORDERED and UNORDERED, vs the naive version with
   the same per-element timeout (``asyncio.timeout``) and without one, next to the
   iterator helpers given the same timeout;
7. the push API and the iterator helpers at fixed 10 ms latency, capacity 100, as a
   fraction of the ceiling of section 2 (measured again here, interleaved with them) and
   of ``capacity / latency``.

Targets are printed alongside the numbers, never asserted.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncwait import OutputMode, key_ordered_wait, ordered_wait, unordered_wait

from ._baselines import aiostream_map, bare_workers, naive_ordered, naive_unordered
from ._util import (
    Column,
    Loop,
    Options,
    Row,
    SuiteResult,
    Timing,
    available_loops,
    best_of,
    fmt,
    print_table,
    time_in_fresh_loop,
    verdict,
)
from ._workload import TIMEOUT, push

__all__ = ("run",)

ZERO = "zero latency"
FIXED = "fixed latency"
EXPONENTIAL = "exponential latency"
MEM_INFLIGHT = "memory in flight"
MEM_STREAM = "memory streaming"
PUSH_ZERO = "push zero latency"
PUSH_FIXED = "push fixed latency"


@dataclass(frozen=True, slots=True)
class Sizes:
    """Workload sizes; ``--quick`` shrinks them to a smoke run."""

    zero_n: int
    zero_reps: int
    aiostream_n: int
    aiostream_reps: int
    fixed: tuple[tuple[int, int], ...]  # (capacity, N)
    fixed_reps: int
    exp_n: int
    exp_reps: int
    mem_capacity: int
    stream_n: int
    push_n: int
    push_reps: int
    push_fixed_n: int
    push_fixed_reps: int


FULL = Sizes(
    zero_n=200_000,
    zero_reps=3,
    # aiostream costs ~40 µs per element: one run of 8 s is steady enough, and three would
    # take most of the suite's time budget.
    aiostream_n=200_000,
    aiostream_reps=1,
    fixed=((100, 20_000), (1000, 100_000)),
    fixed_reps=3,
    exp_n=20_000,
    exp_reps=1,
    mem_capacity=1000,
    stream_n=50_000,
    push_n=200_000,
    push_reps=3,
    # As section 2's C=100 rows: ~2.1 s per run at 10,000 elements/s.
    push_fixed_n=20_000,
    push_fixed_reps=3,
)
QUICK = Sizes(
    zero_n=2_000,
    zero_reps=1,
    aiostream_n=500,
    aiostream_reps=1,
    fixed=((100, 300), (1000, 3_000)),
    fixed_reps=1,
    exp_n=300,
    exp_reps=1,
    mem_capacity=1000,
    stream_n=2_000,
    push_n=2_000,
    push_reps=1,
    push_fixed_n=300,
    push_fixed_reps=1,
)

CAPACITY = 100
LATENCY = 0.010  # seconds, fixed and mean exponential
KEYS = 1000
SEED = 20240601
ZERO_MAX_US = 4.0
NAIVE_MIN_SPEEDUP = 1.3
AIOSTREAM_MIN_SPEEDUP = 10.0
FIXED_MIN_FRACTION = {  # (loop, capacity) -> fraction of capacity / latency
    ("asyncio", 100): 0.85,
    ("asyncio", 1000): 0.80,
    ("uvloop", 100): 0.92,
    ("uvloop", 1000): 0.88,
}
MAX_BYTES_PER_IN_FLIGHT = 3000
PUSH_MIN_SPEEDUP = 1.3  # push API vs the naive version with the same timeout
MIN_OF_CEILING = 0.95  # push API and helpers at 10 ms, C=100: fraction of the ceiling
FLAT_FACTOR, FLAT_SLACK_KIB = 1.25, 512  # growth(10 N) <= 1.25 * growth(N) + 512 KiB

Workload = Callable[[], Coroutine[Any, Any, int]]


def _consume(make: Callable[[], AsyncIterator[Any]]) -> Workload:
    async def workload() -> int:
        count = 0
        async for _ in make():
            count += 1
        return count

    return workload


@dataclass(frozen=True, slots=True)
class _Spec:
    case: str
    impl: str
    n: int
    reps: int
    workload: Workload


def _measure(loop: Loop, specs: Sequence[_Spec]) -> dict[tuple[str, str], Timing]:
    """Best run of each spec; repetitions are interleaved so drift hits all alike."""
    times: dict[tuple[str, str], list[Timing]] = {(s.case, s.impl): [] for s in specs}
    for rep in range(max(s.reps for s in specs)):
        for spec in specs:
            if rep < spec.reps:
                timing = time_in_fresh_loop(loop, spec.workload, spec.n)
                times[spec.case, spec.impl].append(timing)
    return {key: best_of(values) for key, values in times.items()}


async def _echo(x: Any) -> Any:
    return x


async def _sleep_fixed(x: Any) -> Any:
    await asyncio.sleep(LATENCY)
    return x


# ---------------------------------------------------------------------- 1. zero latency


Stream = Callable[[int], AsyncIterator[Any]]  # N -> the outputs for range(N)

ZERO_IMPLS: dict[tuple[str, str], Stream] = {
    ("ORDERED", "asyncwait"): lambda n: ordered_wait(range(n), _echo, capacity=CAPACITY),
    ("ORDERED", "naive"): lambda n: naive_ordered(range(n), _echo, CAPACITY),
    ("ORDERED", "aiostream"): lambda n: aiostream_map(range(n), _echo, CAPACITY, ordered=True),
    ("UNORDERED", "asyncwait"): lambda n: unordered_wait(range(n), _echo, capacity=CAPACITY),
    ("UNORDERED", "naive"): lambda n: naive_unordered(range(n), _echo, CAPACITY),
    ("UNORDERED", "aiostream"): lambda n: aiostream_map(range(n), _echo, CAPACITY, ordered=False),
}


def _stream(make: Stream, n: int) -> Workload:
    return _consume(lambda: make(n))


def zero_latency(loop: Loop, sizes: Sizes) -> list[Row]:
    specs = []
    for (mode, impl), make in ZERO_IMPLS.items():
        aio = impl == "aiostream"
        n = sizes.aiostream_n if aio else sizes.zero_n
        reps = sizes.aiostream_reps if aio else sizes.zero_reps
        specs.append(_Spec(mode, impl, n, reps, _stream(make, n)))
    best = _measure(loop, specs)
    rows: list[Row] = []
    for mode in ("ORDERED", "UNORDERED"):
        per_element = {s.impl: best[mode, s.impl].wall / s.n for s in specs if s.case == mode}
        ours = per_element["asyncwait"]
        for spec in (s for s in specs if s.case == mode):
            us = per_element[spec.impl] * 1e6
            row = Row(ZERO, loop.name, mode, spec.impl, spec.n)
            row.values = {
                "runs": spec.reps,
                "seconds": best[mode, spec.impl].wall,
                "cpu_us_per_el": best[mode, spec.impl].cpu / spec.n * 1e6,
                "us_per_el": us,
                "per_s": 1e6 / us,
            }
            if spec.impl == "asyncwait":
                row.target, row.met = f"<= {ZERO_MAX_US:g} µs/el", us <= ZERO_MAX_US
            else:
                speedup = per_element[spec.impl] / ours
                goal = NAIVE_MIN_SPEEDUP if spec.impl == "naive" else AIOSTREAM_MIN_SPEEDUP
                row.values["speedup"] = speedup
                row.target, row.met = f">= {goal:g}x", speedup >= goal
            rows.append(row)
    return rows


ZERO_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("mode", lambda r: r.case, right=False),
    Column("impl", lambda r: r.impl, right=False),
    Column("N", lambda r: f"{r.n:,}"),
    Column("runs", lambda r: f"{r.values['runs']:.0f}"),
    Column("µs/el", lambda r: fmt(r.values["us_per_el"], ".2f")),
    Column("el/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("asyncwait speedup", lambda r: fmt(r.values.get("speedup"), ".2f", "x")),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


# ---------------------------------------------------------------------- 2. fixed latency


def fixed_latency(loop: Loop, sizes: Sizes) -> list[Row]:
    impls: dict[str, Callable[[int, int], AsyncIterator[Any]]] = {
        "asyncwait": lambda c, n: ordered_wait(range(n), _sleep_fixed, capacity=c),
        "naive": lambda c, n: naive_ordered(range(n), _sleep_fixed, c),
    }
    specs: list[_Spec] = []
    for c, n in sizes.fixed:
        for impl, make in impls.items():
            specs.append(
                _Spec(f"C={c}", impl, n, sizes.fixed_reps, _stream(functools.partial(make, c), n))
            )
        ceiling = functools.partial(bare_workers, range(n), _sleep_fixed, c)
        specs.append(_Spec(f"C={c}", "ceiling", n, sizes.fixed_reps, ceiling))
    best = _measure(loop, specs)
    rows: list[Row] = []
    for c, n in sizes.fixed:
        case = f"C={c}"
        limit = c / LATENCY
        impls_here = ("asyncwait", "naive", "ceiling")
        throughput = {impl: n / best[case, impl].wall for impl in impls_here}
        for impl in impls_here:
            row = Row(FIXED, loop.name, case, impl, n)
            row.values = {
                "capacity": c,
                "runs": sizes.fixed_reps,
                "seconds": best[case, impl].wall,
                "cpu_us_per_el": best[case, impl].cpu / n * 1e6,
                "per_s": throughput[impl],
                "limit_per_s": limit,
                "fraction": throughput[impl] / limit,
            }
            if impl == "asyncwait":
                goal = FIXED_MIN_FRACTION[loop.name, c]
                row.values["vs_naive"] = throughput["asyncwait"] / throughput["naive"]
                row.values["of_ceiling"] = throughput["asyncwait"] / throughput["ceiling"]
                row.target = f">= {goal:.2f} of limit"
                row.met = row.values["fraction"] >= goal
            if impl == "ceiling":
                row.note = (
                    "ceiling: C bare tasks calling the function from one shared iterator, "
                    "no ordering, no outputs; the loop's own limit on this machine"
                )
            rows.append(row)
    return rows


FIXED_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("capacity", lambda r: f"{r.values['capacity']:.0f}"),
    Column("impl", lambda r: r.impl, right=False),
    Column("N", lambda r: f"{r.n:,}"),
    Column("runs", lambda r: f"{r.values['runs']:.0f}"),
    Column("s", lambda r: fmt(r.values["seconds"], ".3f")),
    Column("el/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("limit el/s", lambda r: fmt(r.values["limit_per_s"], ",.0f")),
    Column("fraction", lambda r: fmt(r.values["fraction"], ".3f")),
    Column("CPU µs/el", lambda r: fmt(r.values["cpu_us_per_el"], ".2f")),
    Column("asyncwait/naive", lambda r: fmt(r.values.get("vs_naive"), ".2f", "x")),
    Column("of ceiling", lambda r: fmt(r.values.get("of_ceiling"), ".2f")),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


# ---------------------------------------------------------------------- 3. exponential


def _ideal_seconds(latencies: Sequence[float], capacity: int, mode: str) -> float:
    """How long ``mode`` takes with zero overhead: the pure queueing delay of the workload.

    ORDERED frees a slot only when the element is emitted, in input order, so a slow head
    holds up ``capacity`` elements behind it; UNORDERED frees it on completion; KEY_ORDERED
    also waits for the previous element of the same key (holding its slot meanwhile).
    """
    if mode == "ORDERED":
        emitted: list[float] = []
        last = 0.0
        for i, latency in enumerate(latencies):
            start = emitted[i - capacity] if i >= capacity else 0.0
            last = max(last, start + latency)
            emitted.append(last)
        return last
    free = [0.0] * capacity  # a heap of the times the slots free up
    key_done: dict[int, float] = {}
    end = 0.0
    for i, latency in enumerate(latencies):
        start = heapq.heappop(free)
        if mode == "KEY_ORDERED":
            start = max(start, key_done.get(i % KEYS, 0.0))
        finish = start + latency
        key_done[i % KEYS] = finish
        heapq.heappush(free, finish)
        end = max(end, finish)
    return end


def exponential_latency(loop: Loop, sizes: Sizes) -> list[Row]:
    n, c = sizes.exp_n, CAPACITY
    rng = random.Random(SEED)
    latencies = [rng.expovariate(1 / LATENCY) for _ in range(n)]
    mean = sum(latencies) / n

    async def sleep_exp(i: int) -> int:
        await asyncio.sleep(latencies[i])
        return i

    def key(i: int) -> int:
        return i % KEYS

    modes: dict[str, Callable[[], AsyncIterator[Any]]] = {
        "ORDERED": lambda: ordered_wait(range(n), sleep_exp, capacity=c),
        "UNORDERED": lambda: unordered_wait(range(n), sleep_exp, capacity=c),
        "KEY_ORDERED": lambda: key_ordered_wait(range(n), sleep_exp, key=key, capacity=c),
    }
    specs = [
        _Spec(mode, "asyncwait", n, sizes.exp_reps, _consume(make)) for mode, make in modes.items()
    ]
    best = _measure(loop, specs)
    limit = c / mean
    ordered = n / best["ORDERED", "asyncwait"].wall
    rows: list[Row] = []
    for spec in specs:
        per_s = n / best[spec.case, spec.impl].wall
        ideal = n / _ideal_seconds(latencies, c, spec.case)
        row = Row(EXPONENTIAL, loop.name, spec.case, spec.impl, n)
        row.note = (
            f"C={c}, sampled mean latency {mean * 1e3:.2f} ms (seed {SEED}), key = i % {KEYS}; "
            "ideal = the same latencies with zero overhead"
        )
        row.values = {
            "runs": spec.reps,
            "seconds": best[spec.case, spec.impl].wall,
            "cpu_us_per_el": best[spec.case, spec.impl].cpu / n * 1e6,
            "per_s": per_s,
            "limit_per_s": limit,
            "fraction": per_s / limit,
            "ideal_fraction": ideal / limit,
            "of_ideal": per_s / ideal,
            "vs_ordered": per_s / ordered,
        }
        rows.append(row)
    return rows


EXPONENTIAL_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("mode", lambda r: r.case, right=False),
    Column("N", lambda r: f"{r.n:,}"),
    Column("runs", lambda r: f"{r.values['runs']:.0f}"),
    Column("s", lambda r: fmt(r.values["seconds"], ".3f")),
    Column("el/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("limit el/s", lambda r: fmt(r.values["limit_per_s"], ",.0f")),
    Column("fraction", lambda r: fmt(r.values["fraction"], ".3f")),
    Column("ideal fraction", lambda r: fmt(r.values["ideal_fraction"], ".3f")),
    Column("of ideal", lambda r: fmt(r.values["of_ideal"], ".3f")),
    Column("vs ORDERED", lambda r: fmt(r.values["vs_ordered"], ".2f", "x")),
)


# ---------------------------------------------------------------------- 4-5. memory


def _probe(*args: str) -> dict[str, Any]:
    """Run ``bench._memprobe`` in a fresh interpreter; return its JSON result."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "bench._memprobe", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {args} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def memory_in_flight(loop: Loop, sizes: Sizes) -> list[Row]:
    c = sizes.mem_capacity
    per_impl: dict[str, dict[str, float]] = {}
    for impl in ("asyncwait", "naive"):
        common = ("inflight", "--loop", loop.name, "--impl", impl, "--capacity", str(c))
        rss = _probe(*common)["rss_bytes_per_element"]
        heap = _probe(*common, "--tracemalloc")["heap_bytes_per_element"]
        per_impl[impl] = {"capacity": c, "rss_per_el": rss, "heap_per_el": heap}
    rows: list[Row] = []
    for impl, values in per_impl.items():
        row = Row(MEM_INFLIGHT, loop.name, f"C={c}", impl, c, values=values)
        row.note = "each call awaits its own future; RSS and heap in separate processes"
        if impl == "asyncwait":
            naive = per_impl["naive"]
            values["rss_vs_naive"] = values["rss_per_el"] / max(naive["rss_per_el"], 1.0)
            values["heap_vs_naive"] = values["heap_per_el"] / naive["heap_per_el"]
            row.target = f"<= {MAX_BYTES_PER_IN_FLIGHT:,} B/el (RSS)"
            row.met = values["rss_per_el"] <= MAX_BYTES_PER_IN_FLIGHT
        rows.append(row)
    return rows


MEM_INFLIGHT_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("impl", lambda r: r.impl, right=False),
    Column("in flight", lambda r: f"{r.n:,}"),
    Column("RSS B/el", lambda r: fmt(r.values["rss_per_el"], ",.0f")),
    Column("heap B/el", lambda r: fmt(r.values["heap_per_el"], ",.0f")),
    Column("RSS vs naive", lambda r: fmt(r.values.get("rss_vs_naive"), ".2f", "x")),
    Column("heap vs naive", lambda r: fmt(r.values.get("heap_vs_naive"), ".2f", "x")),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


def memory_streaming(loop: Loop, sizes: Sizes) -> list[Row]:
    c, n = sizes.mem_capacity, sizes.stream_n
    rows: list[Row] = []
    base = 0.0
    for count in (n, 10 * n):
        result = _probe("stream", "--loop", loop.name, "--capacity", str(c), "--n", str(count))
        growth = float(result["peak_growth_kib"])
        row = Row(MEM_STREAM, loop.name, "N" if count == n else "10N", "asyncwait", count)
        row.note = "ordered_wait; the function yields to the loop once"
        row.values = {
            "capacity": c,
            "peak_growth_kib": growth,
            "retained_kib": float(result["rss_after_kib"] - result["rss_before_kib"]),
        }
        if count == n:
            base = growth
        else:
            row.values["vs_n"] = growth / max(base, 1.0)
            row.target = f"<= {FLAT_FACTOR:g} x growth(N) + {FLAT_SLACK_KIB} KiB"
            row.met = growth <= FLAT_FACTOR * base + FLAT_SLACK_KIB
        rows.append(row)
    return rows


MEM_STREAM_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("N", lambda r: f"{r.n:,}"),
    Column("capacity", lambda r: f"{r.values['capacity']:.0f}"),
    Column("peak RSS growth KiB", lambda r: fmt(r.values["peak_growth_kib"], ",.0f")),
    Column("RSS kept KiB", lambda r: fmt(r.values["retained_kib"], ",.0f")),
    Column("vs N", lambda r: fmt(r.values.get("vs_n"), ".2f", "x")),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


# ---------------------------------------------------------------------- 6. push API

MODES = {"ORDERED": OutputMode.ORDERED, "UNORDERED": OutputMode.UNORDERED}
PUSH = "push API"
HELPER = "helper"
NAIVE_TIMEOUT = "naive+timeout"


def _helper(mode: str, n: int, fn: Any, *, timeout: float | None) -> AsyncIterator[Any]:
    wait = ordered_wait if mode == "ORDERED" else unordered_wait
    return wait(range(n), fn, capacity=CAPACITY, timeout=timeout)


def _naive(mode: str, n: int, *, timeout: float | None) -> AsyncIterator[Any]:
    naive = naive_ordered if mode == "ORDERED" else naive_unordered
    return naive(range(n), _echo, CAPACITY, timeout)


def push_zero_latency(loop: Loop, sizes: Sizes) -> list[Row]:
    n, reps = sizes.push_n, sizes.push_reps
    specs: list[_Spec] = []
    for mode, output_mode in MODES.items():
        impls: dict[str, Workload] = {
            PUSH: functools.partial(push, range(n), _echo, output_mode),
            HELPER: _consume(functools.partial(_helper, mode, n, _echo, timeout=TIMEOUT)),
            NAIVE_TIMEOUT: _consume(functools.partial(_naive, mode, n, timeout=TIMEOUT)),
            "naive": _consume(functools.partial(_naive, mode, n, timeout=None)),
        }
        specs.extend(_Spec(mode, impl, n, reps, work) for impl, work in impls.items())
    best = _measure(loop, specs)
    rows: list[Row] = []
    for spec in specs:
        timing = best[spec.case, spec.impl]
        us = timing.wall / n * 1e6
        row = Row(PUSH_ZERO, loop.name, spec.case, spec.impl, n)
        row.values = {
            "runs": reps,
            "seconds": timing.wall,
            "cpu_us_per_el": timing.cpu / n * 1e6,
            "us_per_el": us,
            "per_s": 1e6 / us,
        }
        if spec.impl in (PUSH, HELPER):
            # Speed-ups: the naive version's time over this one's (> 1: this one is faster).
            row.values["vs_naive_timeout"] = best[spec.case, NAIVE_TIMEOUT].wall / timing.wall
            row.values["vs_naive"] = best[spec.case, "naive"].wall / timing.wall
        if spec.impl == PUSH:
            row.values["vs_helper"] = best[spec.case, HELPER].wall / timing.wall
            row.target = f">= {PUSH_MIN_SPEEDUP:g}x naive+timeout"
            row.met = row.values["vs_naive_timeout"] >= PUSH_MIN_SPEEDUP
        rows.append(row)
    return rows


PUSH_ZERO_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("mode", lambda r: r.case, right=False),
    Column("impl", lambda r: r.impl, right=False),
    Column("N", lambda r: f"{r.n:,}"),
    Column("runs", lambda r: f"{r.values['runs']:.0f}"),
    Column("µs/el", lambda r: fmt(r.values["us_per_el"], ".2f")),
    Column("el/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("vs naive+timeout", lambda r: fmt(r.values.get("vs_naive_timeout"), ".2f", "x")),
    Column("vs naive", lambda r: fmt(r.values.get("vs_naive"), ".2f", "x")),
    Column("vs helper", lambda r: fmt(r.values.get("vs_helper"), ".2f", "x")),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


# ---------------------------------------------------------------------- 7. push API, 10 ms


def _key(i: int) -> int:
    return i % KEYS


def push_fixed_latency(loop: Loop, sizes: Sizes) -> list[Row]:
    n, reps, c = sizes.push_fixed_n, sizes.push_fixed_reps, CAPACITY
    impls: dict[tuple[str, str], Workload] = {
        ("ORDERED", PUSH): functools.partial(push, range(n), _sleep_fixed, OutputMode.ORDERED),
        ("UNORDERED", PUSH): functools.partial(push, range(n), _sleep_fixed, OutputMode.UNORDERED),
        ("ORDERED", HELPER): _consume(lambda: ordered_wait(range(n), _sleep_fixed, capacity=c)),
        ("UNORDERED", HELPER): _consume(lambda: unordered_wait(range(n), _sleep_fixed, capacity=c)),
        ("KEY_ORDERED", HELPER): _consume(
            lambda: key_ordered_wait(range(n), _sleep_fixed, key=_key, capacity=c)
        ),
        ("none", "ceiling"): functools.partial(bare_workers, range(n), _sleep_fixed, c),
    }
    specs = [_Spec(mode, impl, n, reps, work) for (mode, impl), work in impls.items()]
    best = _measure(loop, specs)
    limit = c / LATENCY
    ceiling = n / best["none", "ceiling"].wall
    rows: list[Row] = []
    for spec in specs:
        timing = best[spec.case, spec.impl]
        per_s = n / timing.wall
        row = Row(PUSH_FIXED, loop.name, spec.case, spec.impl, n)
        row.values = {
            "capacity": c,
            "runs": reps,
            "seconds": timing.wall,
            "cpu_us_per_el": timing.cpu / n * 1e6,
            "per_s": per_s,
            "limit_per_s": limit,
            "fraction": per_s / limit,
            "of_ceiling": per_s / ceiling,
        }
        if spec.impl == "ceiling":
            row.note = (
                "ceiling: C bare tasks calling the function from one shared iterator, "
                "no ordering, no outputs; the loop's own limit on this machine"
            )
        else:
            row.target = f">= {MIN_OF_CEILING:.2f} of ceiling"
            row.met = row.values["of_ceiling"] >= MIN_OF_CEILING
        if spec.impl == PUSH:
            row.note = f"push API: timeout {TIMEOUT:g} s per element; helpers: no timeout"
        rows.append(row)
    return rows


PUSH_FIXED_COLUMNS = (
    Column("loop", lambda r: r.loop, right=False),
    Column("mode", lambda r: r.case, right=False),
    Column("impl", lambda r: r.impl, right=False),
    Column("N", lambda r: f"{r.n:,}"),
    Column("runs", lambda r: f"{r.values['runs']:.0f}"),
    Column("s", lambda r: fmt(r.values["seconds"], ".3f")),
    Column("el/s", lambda r: fmt(r.values["per_s"], ",.0f")),
    Column("limit el/s", lambda r: fmt(r.values["limit_per_s"], ",.0f")),
    Column("fraction", lambda r: fmt(r.values["fraction"], ".3f")),
    Column("of ceiling", lambda r: fmt(r.values["of_ceiling"], ".3f")),
    Column("CPU µs/el", lambda r: fmt(r.values["cpu_us_per_el"], ".2f")),
    Column("target", lambda r: r.target, right=False),
    Column("", verdict, right=False),
)


# ---------------------------------------------------------------------- the suite


@dataclass(frozen=True, slots=True)
class _Section:
    title: str
    measure: Callable[[Loop, Sizes], list[Row]]
    columns: Sequence[Column]


SECTIONS = (
    _Section(
        "1. zero latency, capacity 100: µs per element (speedup = baseline time / asyncwait)",
        zero_latency,
        ZERO_COLUMNS,
    ),
    _Section(
        "2. fixed 10 ms latency, ORDERED: throughput as a fraction of capacity / latency "
        "(ceiling: see note)",
        fixed_latency,
        FIXED_COLUMNS,
    ),
    _Section(
        "3. exponential latency, mean 10 ms, capacity 100: fraction of capacity / mean",
        exponential_latency,
        EXPONENTIAL_COLUMNS,
    ),
    _Section(
        "4. memory per in-flight element, ORDERED (RSS: /proc VmRSS; heap: tracemalloc)",
        memory_in_flight,
        MEM_INFLIGHT_COLUMNS,
    ),
    _Section(
        "5. peak RSS growth while streaming N vs 10 N elements (must not grow with N)",
        memory_streaming,
        MEM_STREAM_COLUMNS,
    ),
    _Section(
        f"6. push API (await op.process_element(Record(v)), timeout {TIMEOUT:g} s), zero "
        f"latency, capacity 100: µs per element; vs X = X's time / this row's (target: "
        f">= {PUSH_MIN_SPEEDUP:g}x the naive version with the same timeout)",
        push_zero_latency,
        PUSH_ZERO_COLUMNS,
    ),
    _Section(
        "7. fixed 10 ms latency, capacity 100: push API and helpers as a fraction of the "
        f"ceiling (target >= {MIN_OF_CEILING:g}) and of capacity / latency",
        push_fixed_latency,
        PUSH_FIXED_COLUMNS,
    ),
)


def run(options: Options) -> SuiteResult:
    """Run every measurement on every available loop, printing a table per section."""
    sizes = QUICK if options.quick else FULL
    loops, notes = available_loops()
    result = SuiteResult("operator", notes=list(notes))
    if options.quick:
        result.notes.append("--quick: tiny workloads, the numbers are not meaningful")
    for note in result.notes:
        print(f"note: {note}")
    started = time.perf_counter()
    for section in SECTIONS:
        section_rows: list[Row] = []
        for loop in loops:
            section_rows.extend(section.measure(loop, sizes))
        result.rows.extend(section_rows)
        print_table(section.title, section.columns, section_rows)
        notes_here = sorted({row.note for row in section_rows if row.note})
        for note in notes_here:
            print(f"  ({note})")
    result.seconds = time.perf_counter() - started
    return result
