"""The misbehaving store for benchmarks: start it, read its counters over a window, load it.

The store (``tests/integration/_flaky_store.py``) runs in its own process, as in the tests,
so its latency model is not distorted by the CPU the job under measurement uses. Usage, in
a suite such as ``python -m bench resilience``::

    from bench._flaky import flaky_store, window

    with flaky_store(latency=0.005, knee=32, step=0.002, rate_limit=2000) as store:
        table = lookups.http(store.url_template, batch_url=store.batch_url)
        t0 = time.monotonic()
        ...  # run the job; store.outage(10, mode="refuse") from a thread to cut it off
        w = window(store, t0, time.monotonic())
        print(w.rate, w.throttled, w.max_n, w.during_outages, w.per_second)

Times are ``time.monotonic()`` in both processes (one clock per machine). :func:`drive`
is a plain aiohttp load generator (no asyncwait), used here to measure the store itself:

    python -m bench._flaky [--seconds S] [--loop uvloop|asyncio]

prints what the store serves with no latency (1 and 2 client processes; the store's CPU
per request gives its capacity on one core), and how late it answers, against its latency
model, at 2,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from tests.integration._flaky_client import FlakyStore, StoreLog, start_flaky_store

__all__ = ("LoadResult", "Window", "drive", "flaky_store", "window")


@contextmanager
def flaky_store(
    *, loop: Literal["uvloop", "asyncio"] = "uvloop", **knobs: Any
) -> Iterator[FlakyStore]:
    """A store in its own process with ``knobs`` set, stopped on exit (see the module doc)."""
    store = start_flaky_store(loop=loop, **knobs)
    try:
        yield store
    finally:
        store.stop()


@dataclass(frozen=True, slots=True)
class Window:
    """What the store saw of the requests that arrived in ``[start, end)``.

    Attributes:
        calls: requests received (those refused by a ``refuse`` outage never arrive).
        rate: ``calls`` per second.
        statuses: answers by status (0: dropped without an answer).
        per_second: requests received in each second of the window.
        max_n: the most requests in flight seen by an arrival.
        during_outages: requests that arrived while an outage was on.
        lateness_p50, lateness_p99: seconds the answers came after the model's latency.
    """

    start: float
    end: float
    calls: int
    rate: float
    statuses: dict[int, int]
    per_second: list[int]
    max_n: int
    during_outages: int
    lateness_p50: float
    lateness_p99: float

    @property
    def throttled(self) -> int:
        """429 answers."""
        return self.statuses.get(429, 0)


def window(store: FlakyStore, start: float, end: float, log: StoreLog | None = None) -> Window:
    """Read the store's log for the window ``[start, end)`` (pass ``log`` to reuse one)."""
    log = store.log() if log is None else log
    outages = store.stats().outages
    picked = [i for i, t in enumerate(log.arrival) if start <= t < end]
    statuses = Counter(log.status[i] for i in picked)

    def down(t: float) -> bool:
        return any(s <= t and (e is None or t < e) for s, e, _ in outages)

    late = sorted(log.actual[i] - log.model[i] for i in picked if log.status[i])
    seconds = max(end - start, 1e-9)
    return Window(
        start=start,
        end=end,
        calls=len(picked),
        rate=len(picked) / seconds,
        statuses=dict(statuses),
        per_second=log.series(start, end, 1.0),
        max_n=max((log.n[i] for i in picked), default=0),
        during_outages=sum(1 for i in picked if down(log.arrival[i])),
        lateness_p50=late[len(late) // 2] if late else 0.0,
        lateness_p99=late[min(len(late) - 1, int(0.99 * len(late)))] if late else 0.0,
    )


# ---------------------------------------------------------------------------- load


@dataclass(slots=True)
class LoadResult:
    """What :func:`drive` sent and got back (latencies: send to answer, answered only)."""

    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    def latency(self, quantile: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if ordered else 0.0


async def drive(
    url_template: str,
    *,
    seconds: float,
    concurrency: int,
    rate: float | None = None,
    keys: int = 1000,
) -> LoadResult:
    """Send ``GET`` requests for ``seconds``: as fast as ``concurrency`` allows, or ``rate``/s.

    With ``rate``, request ``i`` is sent at ``start + i / rate`` (open loop) as long as fewer
    than ``concurrency`` are waiting for their answer; keys cycle over ``user_0`` ..
    ``user_{keys-1}``.
    """
    result = LoadResult(seconds=seconds)
    counter = itertools.count()
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        stop = start + seconds

        async def worker() -> None:
            while True:
                i = next(counter)
                if rate is not None:
                    due = start + i / rate
                    if due >= stop:
                        return
                    if due > loop.time():
                        await asyncio.sleep(due - loop.time())
                elif loop.time() >= stop:
                    return
                sent = loop.time()
                try:
                    async with session.get(url_template.format(key=f"user_{i % keys}")) as r:
                        await r.read()
                        result.statuses[r.status] += 1
                        result.latencies.append(loop.time() - sent)
                except aiohttp.ClientError as exc:
                    result.errors[type(exc).__name__] += 1

        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
        result.seconds = loop.time() - start
    return result


def _drive_in_process(args: tuple[str, float, int, float | None]) -> LoadResult:
    import uvloop

    url, seconds, concurrency, rate = args
    return uvloop.run(drive(url, seconds=seconds, concurrency=concurrency, rate=rate))


def _load(
    store: FlakyStore, clients: int, seconds: float, concurrency: int, rate: float | None
) -> list[LoadResult]:
    """Run ``clients`` load generators in processes of their own, at once."""
    per_client = None if rate is None else rate / clients
    jobs = [(store.url_template, seconds, concurrency, per_client)] * clients
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        return pool.map(_drive_in_process, jobs)


def measure(seconds: float, loop: Literal["uvloop", "asyncio"]) -> None:
    """Print the store's capacity and the accuracy of its latency model (see the module doc)."""
    print(f"flaky store on {loop}; {os.cpu_count()} cores; load average {os.getloadavg()}")
    with flaky_store(loop=loop) as store:
        for clients in (1, 2):
            store.reset()
            before = store.stats()
            results = _load(store, clients, seconds, 64, None)
            after = store.stats()
            served = after.received - before.received
            cpu = (after.cpu - before.cpu) / max(served, 1)
            rate = served / max(r.seconds for r in results)
            print(
                f"latency 0, {clients} client process(es) x 64 connections: {rate:,.0f} req/s; "
                f"store CPU {cpu * 1e6:.0f} us/request (one core: {1 / cpu:,.0f} req/s); "
                f"client p50 {results[0].latency(0.5) * 1e3:.2f} ms"
            )
        for knee in (None, 32):
            store.reset()
            store.configure(latency=0.005, knee=knee, step=0.002)
            t0 = time.monotonic()
            results = _load(store, 1, seconds, 256, 2000.0)
            w = window(store, t0, time.monotonic())
            log = store.log()
            over = [m for m, n in zip(log.model, log.n, strict=True) if knee and n > knee]
            print(
                f"2,000 req/s, latency 5 ms, knee {knee}, step 2 ms: store got {w.rate:,.0f} "
                f"req/s, max in flight {w.max_n}, {len(over)} requests over the knee "
                f"(mean model {sum(over) / max(len(over), 1) * 1e3:.1f} ms); answers late by "
                f"p50 {w.lateness_p50 * 1e3:.2f} ms, p99 {w.lateness_p99 * 1e3:.2f} ms; client "
                f"latency p50 {results[0].latency(0.5) * 1e3:.2f} ms, "
                f"p99 {results[0].latency(0.99) * 1e3:.2f} ms; errors {dict(results[0].errors)}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._flaky", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    measure(args.seconds, args.loop)


if __name__ == "__main__":
    main()
