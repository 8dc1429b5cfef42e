"""Memory probes, each run in a fresh interpreter so RSS readings are not polluted.

``python -m bench._memprobe inflight --impl asyncwait --loop asyncio --capacity 1000``
    RSS (and, with ``--tracemalloc``, the Python heap) before vs while ``capacity`` slow
    calls are in flight, each waiting on its own future as a socket read would.

``python -m bench._memprobe stream --loop asyncio --capacity 1000 --n 100000``
    RSS before vs the peak while streaming ``n`` elements through ``ordered_wait`` with a
    function that yields to the loop once, so ``capacity`` calls are always in flight.

Each prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from asyncwait import ordered_wait

from ._baselines import naive_ordered
from ._util import loop_by_name, proc_status_kib

Fn = Callable[[Any], Awaitable[Any]]
Impl = Callable[[Iterable[Any], Fn, int], AsyncIterator[Any]]


def _asyncwait_ordered(xs: Iterable[Any], fn: Fn, capacity: int) -> AsyncIterator[Any]:
    return ordered_wait(xs, fn, capacity=capacity)


_WARM_UP_CAPACITY = 8

IMPLS: dict[str, Impl] = {"asyncwait": _asyncwait_ordered, "naive": naive_ordered}


async def _yield_once(x: Any) -> Any:
    await asyncio.sleep(0)
    return x


async def _drain(outputs: AsyncIterator[Any]) -> int:
    count = 0
    async for _ in outputs:
        count += 1
    return count


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


async def inflight(impl: Impl, capacity: int, traced: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    # Warm every code path on a small window: a warm-up at full capacity would leave the
    # memory of its calls cached in the allocator and hide the growth being measured.
    await _drain(impl(range(64), _yield_once, _WARM_UP_CAPACITY))
    waiting: list[asyncio.Future[None]] = []
    all_in: asyncio.Future[None] = loop.create_future()

    async def slow(x: Any) -> Any:
        fut: asyncio.Future[None] = loop.create_future()
        waiting.append(fut)
        if len(waiting) == capacity:
            all_in.set_result(None)
        await fut
        return x

    gc.collect()
    if traced:
        tracemalloc.start()
    heap_before = tracemalloc.get_traced_memory()[0] if traced else 0
    rss_before = proc_status_kib("VmRSS")
    consumer = asyncio.create_task(_drain(impl(range(capacity), slow, capacity)))
    await all_in
    rss_during = proc_status_kib("VmRSS")
    heap_during = tracemalloc.get_traced_memory()[0] if traced else 0
    for fut in waiting:
        fut.set_result(None)
    count = await consumer
    if count != capacity:
        raise RuntimeError(f"inflight probe produced {count} outputs, expected {capacity}")
    return {
        "rss_before_kib": rss_before,
        "rss_during_kib": rss_during,
        "rss_bytes_per_element": (rss_during - rss_before) * 1024 / capacity,
        "heap_bytes_per_element": (heap_during - heap_before) / capacity if traced else None,
    }


async def stream(capacity: int, n: int) -> dict[str, Any]:
    await _drain(ordered_wait(range(64), _yield_once, capacity=_WARM_UP_CAPACITY))
    gc.collect()
    rss_before = proc_status_kib("VmRSS")
    peak_reset = _reset_peak()
    sampled_peak = rss_before
    count = 0
    async for _ in ordered_wait(range(n), _yield_once, capacity=capacity):
        count += 1
        if count % 2000 == 0:
            sampled_peak = max(sampled_peak, proc_status_kib("VmRSS"))
    if count != n:
        raise RuntimeError(f"stream probe produced {count} outputs, expected {n}")
    rss_after = proc_status_kib("VmRSS")
    peak = max(sampled_peak, rss_after)
    if peak_reset:
        peak = max(peak, proc_status_kib("VmHWM"))
    return {
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "peak_kib": peak,
        "peak_growth_kib": peak - rss_before,
        "hwm_reset": peak_reset,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._memprobe")
    parser.add_argument("kind", choices=("inflight", "stream"))
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--impl", choices=tuple(IMPLS), default="asyncwait")
    parser.add_argument("--capacity", type=int, default=1000)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    loop = loop_by_name(args.loop)
    with asyncio.Runner(loop_factory=loop.factory) as runner:
        if args.kind == "inflight":
            result = runner.run(inflight(IMPLS[args.impl], args.capacity, args.tracemalloc))
        else:
            result = runner.run(stream(args.capacity, args.n))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
