"""Shared benchmark plumbing: event loops, timing, memory readings, result rows and tables."""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = (
    "Column",
    "CpuSample",
    "Loop",
    "Options",
    "Row",
    "SuiteResult",
    "Timing",
    "available_loops",
    "best_of",
    "machine_info",
    "print_table",
    "proc_status_kib",
    "time_in_fresh_loop",
)

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


@dataclass(frozen=True, slots=True)
class Options:
    """Command-line options every suite receives."""

    quick: bool = False  # tiny workloads: checks that everything runs, numbers meaningless
    baseline: str | None = None  # compare: the old tree's git revision (None: its default)
    new: str | None = None  # compare: the new tree's git revision (None: this checkout)
    callgrind: bool = True  # compare: False times section 2 instead of counting instructions


@dataclass(frozen=True, slots=True)
class Loop:
    """An event loop implementation to run measurements on."""

    name: str  # "asyncio" or "uvloop"
    factory: LoopFactory | None  # None: asyncio's default loop


def available_loops() -> tuple[list[Loop], list[str]]:
    """The loops to measure on, and notes about the ones that are missing."""
    loops = [Loop("asyncio", None)]
    notes: list[str] = []
    try:
        import uvloop
    except ImportError:
        notes.append("uvloop is not importable: uvloop rows skipped (pip install uvloop)")
    else:
        loops.append(Loop("uvloop", uvloop.new_event_loop))
    return loops, notes


def loop_by_name(name: str) -> Loop:
    """The loop called ``name``; raises ``LookupError`` if it is not importable."""
    loops, _ = available_loops()
    for loop in loops:
        if loop.name == name:
            return loop
    raise LookupError(f"event loop {name!r} is not available")


@dataclass(frozen=True, slots=True)
class Timing:
    """One timed run: wall time, and the CPU time this process spent meanwhile."""

    wall: float  # seconds, time.perf_counter
    cpu: float  # seconds, time.process_time: less disturbed by other processes than wall


def time_in_fresh_loop(
    loop: Loop, workload: Callable[[], Coroutine[Any, Any, int]], expected: int
) -> Timing:
    """Run ``workload`` on a new event loop and time it.

    Only the workload is timed, not creating or closing the loop. The workload returns how
    many outputs it consumed, which must equal ``expected``.
    """

    async def timed() -> tuple[Timing, int]:
        cpu = time.process_time()
        start = time.perf_counter()
        count = await workload()
        wall = time.perf_counter() - start
        return Timing(wall, time.process_time() - cpu), count

    gc.collect()
    with asyncio.Runner(loop_factory=loop.factory) as runner:
        timing, count = runner.run(timed())
    if count != expected:
        raise RuntimeError(f"workload produced {count} outputs, expected {expected}")
    return timing


def best_of(timings: Sequence[Timing]) -> Timing:
    """The run with the best (smallest) wall time: the least disturbed by the machine."""
    return min(timings, key=lambda timing: timing.wall)


def proc_status_kib(field_name: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``).

    Falls back to ``getrusage`` peak RSS where ``/proc`` is not available.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Machine-wide and own CPU time at one instant, to tell how busy *others* kept it."""

    wall: float
    machine_busy: float | None  # seconds of non-idle CPU over all cores (None: no /proc/stat)
    own: float  # CPU seconds of this process and its finished children

    @classmethod
    def now(cls) -> CpuSample:
        busy: float | None = None
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                ticks = [int(part) for part in stat.readline().split()[1:]]
            hz = os.sysconf("SC_CLK_TCK")
            busy = (sum(ticks) - ticks[3] - ticks[4]) / hz  # minus idle and iowait
        except (OSError, ValueError, IndexError):
            pass
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        return cls(time.perf_counter(), busy, own)

    def others_since(self, start: CpuSample) -> float | None:
        """Average cores used by other processes between ``start`` and this sample."""
        if self.machine_busy is None or start.machine_busy is None:
            return None
        wall = self.wall - start.wall
        others = (self.machine_busy - start.machine_busy) - (self.own - start.own)
        return max(others, 0.0) / wall if wall > 0 else None


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: cores, CPU model, Python, loops."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    loops, _ = available_loops()
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loops": [loop.name for loop in loops],
    }
    for dist in ("uvloop", "aiostream"):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = None
    return info


@dataclass(slots=True)
class Row:
    """One measured result.

    ``values`` holds the numbers (µs per element, elements/s, fractions, ratios, bytes);
    ``target`` describes the goal the row is checked against and ``met`` whether it was
    reached (``None``: the row has no target, e.g. a baseline).
    """

    section: str
    loop: str
    case: str
    impl: str
    n: int
    values: dict[str, float] = field(default_factory=dict)
    target: str = ""
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class SuiteResult:
    """Everything one suite measured, plus notes (skipped loops, parameters)."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": self.seconds,
            "notes": list(self.notes),
            "rows": [row.as_dict() for row in self.rows],
        }


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: a header and how to render one row's cell."""

    header: str
    cell: Callable[[Row], str]
    right: bool = True  # numbers align right


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    """Format ``value`` with ``spec`` and add ``suffix``; an em dash when it is missing."""
    return "—" if value is None else format(value, spec) + suffix


def verdict(row: Row) -> str:
    """``met``/``MISSED`` for a row with a target, blank otherwise."""
    if row.met is None:
        return ""
    return "met" if row.met else "MISSED"


def print_table(title: str, columns: Sequence[Column], rows: Iterable[Row]) -> None:
    """Print an aligned plain-text table (with a rule under the header)."""
    cells = [[column.cell(row) for column in columns] for row in rows]
    widths = [
        max([len(column.header)] + [len(line[i]) for line in cells])
        for i, column in enumerate(columns)
    ]

    def render(line: Sequence[str]) -> str:
        parts = [
            text.rjust(width) if column.right else text.ljust(width)
            for text, width, column in zip(line, widths, columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print()
    print(title)
    print(render([column.header for column in columns]))
    print("  ".join("-" * width for width in widths))
    for line in cells:
        print(render(line))
    sys.stdout.flush()
