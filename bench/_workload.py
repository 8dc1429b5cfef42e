"""Small workloads on asyncwait's public API, run in a fresh interpreter by ``bench compare``.

::

    python -m bench._workload [--loop asyncio|uvloop] [--db PATH --users U] [--marks] NAME:N ...

runs each ``NAME:N`` in turn on a fresh event loop and prints one JSON line per run
(``name``, ``n``, ``outputs``, ``seconds``) and, first, where ``asyncwait`` was imported from.
``bench compare`` starts it with ``PYTHONPATH=<tree>/src:<this checkout>``, so the same
workload code runs against the old and the new source tree: it imports only public names
(``asyncwait.AsyncWaitOperator``, ``Record``, ``OutputMode``, the ``*_wait`` helpers,
``StreamEnvironment``, ``lookups``, ``cache``, ``sinks``), never a private module, and not
``asyncwait.demo``. The ``naive-*`` workloads are the baselines of ``bench operator``, which
do not use asyncwait; ``bench compare`` does not run them.

``--marks`` calls ``os.getppid()`` right before and right after each run. Under
``valgrind --tool=callgrind --dump-before=getppid`` every call dumps the instruction counts
since the previous one, so one process measures every run apart from interpreter start-up
and imports (which cost more instructions than the runs themselves). The workloads are also
what the push-API rows of ``python -m bench operator`` run (:func:`push`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncwait
from asyncwait import (
    AsyncWaitOperator,
    OutputMode,
    Record,
    StreamElement,
    StreamEnvironment,
    cache,
    key_ordered_wait,
    lookups,
    ordered_wait,
    sinks,
    unordered_wait,
)

from ._baselines import naive_ordered, naive_unordered

__all__ = ("CAPACITY", "TIMEOUT", "WORKLOADS", "echo", "main", "push")

CAPACITY = 100
TIMEOUT = 5.0  # seconds: a per-element deadline, as an embedding framework sets one
KEYS = 1000  # key_ordered_wait's key is value % KEYS: keys never collide in a window of 100
SEED = 20240601


async def echo(x: Any) -> Any:
    """A zero-latency function: the operator's own per-element cost is all there is."""
    return x


async def push(
    values: Iterable[Any],
    fn: Callable[[Any], Awaitable[Any]],
    mode: OutputMode,
    *,
    capacity: int = CAPACITY,
    timeout: float | None = TIMEOUT,
) -> int:
    """Drive an operator as an embedding framework does; return how many outputs it emitted.

    One ``await op.process_element(Record(v))`` per value, then ``end_input`` and ``close``;
    ``emit`` stands for the next operator and counts what reaches it.
    """
    count = 0

    def emit(element: StreamElement) -> None:
        nonlocal count
        count += 1

    op: AsyncWaitOperator[Any, Any] = AsyncWaitOperator(
        fn, mode=mode, capacity=capacity, timeout=timeout
    )
    await op.open(emit)
    try:
        for value in values:
            await op.process_element(Record(value))
        await op.end_input()
    finally:
        await op.close()
    return count


async def drain(outputs: AsyncIterator[Any]) -> int:
    """Consume an iterator helper's outputs; return how many there were."""
    count = 0
    async for _ in outputs:
        count += 1
    return count


@dataclass(frozen=True, slots=True)
class Context:
    """What some workloads need besides N: the lookup table and its size."""

    db: Path | None = None
    users: int = 1000


Run = Callable[[], Coroutine[Any, Any, int]]
# Builds a run for N. Building happens before the first mark, so preparing inputs (the
# lookup join's events) is not counted; the run itself is.
Workload = Callable[[int, Context], Run]


def _push(mode: OutputMode) -> Workload:
    def build(n: int, _ctx: Context) -> Run:
        return lambda: push(range(n), echo, mode)

    return build


def _key(value: int) -> int:
    return value % KEYS


def _ordered_wait(n: int, _ctx: Context) -> Run:
    return lambda: drain(ordered_wait(range(n), echo, capacity=CAPACITY))


def _unordered_wait(n: int, _ctx: Context) -> Run:
    return lambda: drain(unordered_wait(range(n), echo, capacity=CAPACITY))


def _key_ordered_wait(n: int, _ctx: Context) -> Run:
    return lambda: drain(key_ordered_wait(range(n), echo, key=_key, capacity=CAPACITY))


def _naive(ordered: bool, timeout: float | None) -> Workload:
    """The operator suite's naive baseline; it does not use asyncwait at all, so it is the
    same in every tree: run it by hand for an instruction count of the baseline itself."""
    naive = naive_ordered if ordered else naive_unordered

    def build(n: int, _ctx: Context) -> Run:
        return lambda: drain(naive(range(n), echo, CAPACITY, timeout))

    return build


def _lookup_join(n: int, ctx: Context) -> Run:
    """events -> lookup_join(sqlite dim_user, LRU cache) -> collect, in StreamEnvironment."""
    if ctx.db is None:
        raise SystemExit("lookup-join needs --db PATH (a SQLite file with dim_user)")
    db, users = ctx.db, ctx.users
    rng = random.Random(SEED)
    # Log-uniform ids as in the demo: a few hot keys, a long tail of misses.
    events = [{"userID": f"user_{int((users + 1) ** rng.random())}", "n": i} for i in range(n)]

    async def run() -> int:
        env = StreamEnvironment(name="bench-lookup")
        sink = sinks.collect()
        env.from_collection(events).lookup_join(
            lookups.sqlite(str(db), table="dim_user", key="user_id", columns=["age"]),
            on="userID",
            mode="unordered",
            cache=cache.lru(users),
            capacity=CAPACITY,
        ).sink_to(sink)
        await env.execute_async()
        return len(sink.values)

    return run


WORKLOADS: dict[str, Workload] = {
    # The push API, zero latency, a 5 s timeout (see push).
    "push-ordered": _push(OutputMode.ORDERED),
    "push-unordered": _push(OutputMode.UNORDERED),
    # The iterator helpers, zero latency, no timeout (as in `bench operator` section 1).
    "ordered_wait": _ordered_wait,
    "unordered_wait": _unordered_wait,
    "key_ordered_wait": _key_ordered_wait,
    "lookup-join": _lookup_join,
    # Baselines, zero latency: semaphore + one task per element, with and without a
    # per-element asyncio.timeout (bench/_baselines.py).
    "naive-ordered": _naive(True, None),
    "naive-ordered+timeout": _naive(True, TIMEOUT),
    "naive-unordered": _naive(False, None),
    "naive-unordered+timeout": _naive(False, TIMEOUT),
}


def _mark() -> None:
    """A call callgrind dumps its counters at (``--dump-before=getppid``); cheap otherwise."""
    os.getppid()


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def _spec(text: str) -> tuple[str, int]:
    name, _, count = text.partition(":")
    if name not in WORKLOADS or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME:N with NAME in {sorted(WORKLOADS)}")
    return name, int(count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._workload", description=__doc__)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--db", type=Path, help="SQLite file with dim_user (lookup-join)")
    parser.add_argument("--users", type=int, default=1000, help="user ids the keys draw from")
    parser.add_argument("--marks", action="store_true", help="os.getppid() around each run")
    parser.add_argument("runs", nargs="+", type=_spec, metavar="NAME:N")
    args = parser.parse_args(argv)
    ctx = Context(args.db, args.users)
    factory = _loop_factory(args.loop)
    print(json.dumps({"asyncwait": asyncwait.__file__, "loop": args.loop}), flush=True)
    for name, n in args.runs:
        run = WORKLOADS[name](n, ctx)
        gc.collect()  # every run starts from the same collector state
        with asyncio.Runner(loop_factory=factory) as runner:
            if args.marks:
                _mark()
            start = time.perf_counter()
            outputs = runner.run(run())
            seconds = time.perf_counter() - start
            if args.marks:
                _mark()
        record = {"name": name, "n": n, "outputs": outputs, "seconds": seconds}
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
