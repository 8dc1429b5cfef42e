"""What ``asyncwait run`` shows while a job runs, and the summary it prints at the end.

Three displays share one small interface (``update(progress)``, ``close()``):

* :class:`LiveDisplay` redraws a rich table on a terminal (events in/out per second, each
  async operator's in-flight/capacity, cache hit ratio, p50/p99 latency, errors);
* :class:`LineDisplay` writes one plain line every few seconds when stderr is not a terminal;
* :class:`NullDisplay` shows nothing (``--quiet``).

Runtime snapshots are read through :class:`ProgressView`/:class:`OperatorView`, so the displays
and :func:`summarize` depend only on a few attribute names. Redraws happen on the event loop
(``auto_refresh`` is off): rich starts no thread.

This module needs the ``cli`` extra (``pip install 'asyncwait[cli]'``) for rich.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol, final

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = (
    "Display",
    "LineDisplay",
    "LiveDisplay",
    "NullDisplay",
    "OperatorView",
    "ProgressView",
    "print_summary",
    "summarize",
    "write_json_summary",
)

_LINE_EVERY: Final = 5.0  # seconds between two plain progress lines
_SHOWN_SAMPLES: Final = 3  # bad elements a summary shows when there is no errors file


@final
@dataclass(frozen=True, slots=True)
class OperatorView:
    """One operator's numbers, read from a runtime snapshot (missing ones are 0 / nan).

    Latencies are in seconds. ``capacity`` is 0 for operators without one (map, filter).
    """

    name: str
    in_flight: int = 0
    queued: int = 0
    capacity: int = 0
    emitted: int = 0
    retries: int = 0
    timeouts: int = 0
    failures: int = 0
    latency_p50: float = math.nan
    latency_p99: float = math.nan
    counters: Mapping[str, int] = field(default_factory=dict)

    @property
    def cache_hits(self) -> int:
        """Lookups answered by the cache."""
        return int(self.counters.get("cache_hits", 0))

    @property
    def cache_misses(self) -> int:
        """Lookups the cache could not answer."""
        return int(self.counters.get("cache_misses", 0))

    @property
    def cache_hit_ratio(self) -> float | None:
        """Hits over lookups, ``None`` when the operator has no cache activity."""
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else None

    @classmethod
    def of(cls, stats: Any) -> OperatorView:
        """Read the operator statistics of a runtime progress snapshot or job result."""
        counters = getattr(stats, "counters", None) or {}

        def num(name: str, default: float = 0) -> Any:
            value = getattr(stats, name, default)
            return default if value is None else value

        return cls(
            name=str(getattr(stats, "name", "?")),
            in_flight=int(num("in_flight")),
            queued=int(num("queued")),
            capacity=int(num("capacity")),
            emitted=int(num("emitted")),
            retries=int(num("retries")),
            timeouts=int(num("timeouts")),
            failures=int(num("failures")),
            latency_p50=float(num("latency_p50", math.nan)),
            latency_p99=float(num("latency_p99", math.nan)),
            counters=dict(counters),
        )


@final
@dataclass(frozen=True, slots=True)
class ProgressView:
    """A whole job's numbers at one moment (a progress snapshot or the final result)."""

    elapsed: float
    events_in: int
    events_out: int
    errors: int
    operators: tuple[OperatorView, ...] = ()

    @classmethod
    def of(cls, snapshot: Any) -> ProgressView:
        """Read a runtime ``JobProgress`` or ``JobResult``."""
        elapsed: Any = getattr(snapshot, "elapsed", None)
        if elapsed is None:
            elapsed = getattr(snapshot, "duration", 0.0)
        return cls(
            elapsed=float(elapsed),
            events_in=int(snapshot.events_in),
            events_out=int(snapshot.events_out),
            errors=int(snapshot.errors),
            operators=tuple(OperatorView.of(op) for op in getattr(snapshot, "operators", ())),
        )

    @property
    def cache_hit_ratio(self) -> float | None:
        """Cache hits over cache lookups across every operator, ``None`` without a cache."""
        hits = sum(op.cache_hits for op in self.operators)
        total = hits + sum(op.cache_misses for op in self.operators)
        return hits / total if total else None


class Display(Protocol):
    """Shows a running job's progress."""

    def update(self, progress: ProgressView) -> None:
        """Show ``progress`` (called about four times a second)."""
        ...

    def close(self) -> None:
        """Stop showing progress; idempotent."""
        ...


@final
class NullDisplay:
    """Shows nothing (``--quiet``)."""

    def update(self, progress: ProgressView) -> None:
        pass

    def close(self) -> None:
        pass


class _Rates:
    """Events per second between two consecutive snapshots."""

    __slots__ = ("_last", "rate_in", "rate_out")

    def __init__(self) -> None:
        self._last: ProgressView | None = None
        self.rate_in = 0.0
        self.rate_out = 0.0

    def update(self, now: ProgressView) -> None:
        last = self._last
        if last is None:
            span = now.elapsed
            d_in, d_out = now.events_in, now.events_out
        else:
            span = now.elapsed - last.elapsed
            d_in, d_out = now.events_in - last.events_in, now.events_out - last.events_out
        if span > 0:
            self.rate_in, self.rate_out = d_in / span, d_out / span
        self._last = now


@final
class LineDisplay:
    """Writes a plain progress line at most every few seconds (stderr is not a terminal)."""

    def __init__(self, stream: IO[str], *, every: float = _LINE_EVERY) -> None:
        self._stream = stream
        self._every = every
        self._next = every
        self._rates = _Rates()

    def update(self, progress: ProgressView) -> None:
        if progress.elapsed < self._next:
            return
        self._rates.update(progress)
        self._next = progress.elapsed + self._every
        ops = "; ".join(_operator_line(op) for op in progress.operators if op.capacity)
        line = (
            f"[{progress.elapsed:7.1f} s] in {progress.events_in:,} "
            f"({self._rates.rate_in:,.0f}/s), out {progress.events_out:,} "
            f"({self._rates.rate_out:,.0f}/s), errors {progress.errors:,}"
        )
        print(f"{line}{' | ' + ops if ops else ''}", file=self._stream, flush=True)

    def close(self) -> None:
        pass


def _operator_line(op: OperatorView) -> str:
    text = f"{op.name}: in-flight {op.in_flight}/{op.capacity}"
    if op.cache_hit_ratio is not None:
        text += f", cache hits {op.cache_hit_ratio:.1%}"
    return f"{text}, p99 {_ms(op.latency_p99)}"


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.2f} ms"


def _ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


@final
class LiveDisplay:
    """Redraws a live rich table on a terminal; the event loop drives every redraw."""

    def __init__(self, console: Console, job: str) -> None:
        self._job = job
        self._rates = _Rates()
        self._live = Live(console=console, auto_refresh=False, transient=False)
        self._live.start()
        self._closed = False

    def update(self, progress: ProgressView) -> None:
        if self._closed:
            return
        self._rates.update(progress)
        self._live.update(self._render(progress), refresh=True)

    def _render(self, progress: ProgressView) -> Group:
        head = Text.assemble(
            (f"{self._job}", "bold"),
            f"  {progress.elapsed:6.1f} s   in ",
            (f"{progress.events_in:,}", "cyan"),
            f" ({self._rates.rate_in:,.0f}/s)   out ",
            (f"{progress.events_out:,}", "green"),
            f" ({self._rates.rate_out:,.0f}/s)   errors ",
            (f"{progress.errors:,}", "red" if progress.errors else ""),
        )
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("operator", "in-flight", "emitted", "cache hits", "p50", "p99"):
            table.add_column(column, justify="left" if column == "operator" else "right")
        table.add_column("retries/timeouts/failures", justify="right")
        for op in progress.operators:
            if not op.capacity:
                continue  # map/filter have nothing live worth a row
            table.add_row(
                op.name,
                f"{op.in_flight}/{op.capacity}",
                f"{op.emitted:,}",
                _ratio(op.cache_hit_ratio),
                _ms(op.latency_p50),
                _ms(op.latency_p99),
                f"{op.retries}/{op.timeouts}/{op.failures}",
            )
        return Group(head, table) if table.row_count else Group(head)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._live.stop()


def summarize(
    result: ProgressView,
    *,
    job: str,
    status: str = "succeeded",
    errors_path: Path | None = None,
    error: str | None = None,
    error_samples: Sequence[Mapping[str, Any]] = (),
    checkpoints: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the job summary as JSON-ready data (what ``--json-summary`` writes).

    Args:
        result: the final numbers.
        job: the job's name.
        status: ``"succeeded"``, ``"stopped"`` or ``"failed"``.
        errors_path: the errors file, when bad input is written to one.
        error: the error that ended the job, when it failed.
        error_samples: the first few bad input elements (``source``, ``line``, ``raw``,
            ``reason``), shown when there is no errors file to look at.
        checkpoints: when the job checkpoints: ``restored_from``, ``completed``, ``last``
            and ``dir``.

    >>> s = summarize(ProgressView(2.0, 10, 9, 1), job="j")
    >>> s["events_in"], s["events_out"], s["errors"], s["throughput_eps"]
    (10, 9, 1, 5.0)
    """
    duration = result.elapsed

    def maybe_ms(seconds: float) -> float | None:
        return None if math.isnan(seconds) else round(seconds * 1000, 3)

    return {
        "job": job,
        "status": status,
        "error": error,
        "events_in": result.events_in,
        "events_out": result.events_out,
        "errors": result.errors,
        "errors_path": None if errors_path is None else str(errors_path),
        "error_samples": [dict(sample) for sample in error_samples],
        "duration_s": round(duration, 3),
        "throughput_eps": round(result.events_in / duration, 1) if duration > 0 else None,
        "cache_hit_ratio": _round(result.cache_hit_ratio),
        "checkpoints": None if checkpoints is None else dict(checkpoints),
        "operators": [
            {
                "name": op.name,
                "capacity": op.capacity or None,
                "emitted": op.emitted,
                "retries": op.retries,
                "timeouts": op.timeouts,
                "failures": op.failures,
                "latency_p50_ms": maybe_ms(op.latency_p50),
                "latency_p99_ms": maybe_ms(op.latency_p99),
                "cache_hits": op.cache_hits,
                "cache_misses": op.cache_misses,
                "cache_hit_ratio": _round(op.cache_hit_ratio),
                "counters": dict(op.counters),
            }
            for op in result.operators
        ],
    }


def _round(ratio: float | None) -> float | None:
    return None if ratio is None else round(ratio, 4)


def write_json_summary(summary: Mapping[str, Any], path: Path) -> None:
    """Write ``summary`` to ``path`` as indented JSON."""
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def print_summary(summary: Mapping[str, Any], console: Console) -> None:
    """Print ``summary``: a rich table on a terminal, plain aligned text otherwise."""
    if console.is_terminal:
        console.print(_summary_table(summary))
    else:
        console.print(_summary_text(summary), markup=False, highlight=False, soft_wrap=True)


def _totals(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors = f"{summary['errors']:,}"
    if summary["errors_path"] and summary["errors"]:
        errors += f" (see {summary['errors_path']})"
    throughput = summary["throughput_eps"]
    rows = [
        ("status", str(summary["status"])),
        ("events in", f"{summary['events_in']:,}"),
        ("events out", f"{summary['events_out']:,}"),
        ("errors", errors),
        ("duration", f"{summary['duration_s']:.2f} s"),
        ("throughput", "-" if throughput is None else f"{throughput:,.0f} events/s"),
    ]
    if summary["cache_hit_ratio"] is not None:
        rows.append(("cache hit ratio", _ratio(summary["cache_hit_ratio"])))
    cp = summary.get("checkpoints")
    if cp is not None:
        text = f"{cp['completed']:,} taken"
        if cp["last"] is not None:
            text += f", last #{cp['last']}"
        if cp["restored_from"] is not None:
            text += f"; resumed from #{cp['restored_from']}"
        rows.append(("checkpoints", f"{text} ({cp['dir']})"))
    return rows


def _sample_lines(summary: Mapping[str, Any]) -> list[str]:
    """The first bad elements, when no errors file holds them."""
    if summary["errors_path"] or not summary["errors"]:
        return []
    lines = []
    for sample in summary["error_samples"][:_SHOWN_SAMPLES]:
        at = sample.get("source", "?")
        if sample.get("line") is not None:
            at += f":{sample['line']}"
        lines.append(f"bad input at {at}: {sample.get('reason', '?')}")
    more = summary["errors"] - len(lines)
    if more > 0:
        lines.append(f"... and {more:,} more (set [errors] path to keep them all)")
    return lines


def _operator_cells(op: Mapping[str, Any]) -> list[str]:
    def ms(value: float | None) -> str:
        return "-" if value is None else _ms(value / 1000)

    return [
        str(op["name"]),
        f"{op['emitted']:,}",
        ms(op["latency_p50_ms"]),
        ms(op["latency_p99_ms"]),
        _ratio(op["cache_hit_ratio"]),
        f"{op['retries']}/{op['timeouts']}/{op['failures']}",
    ]


_OPERATOR_HEADERS: Final = ("operator", "emitted", "p50", "p99", "cache hits", "retr/tmo/fail")


def _summary_table(summary: Mapping[str, Any]) -> Group:
    totals = Table(
        title=f"job {summary['job']}", show_header=False, title_justify="left", box=box.SIMPLE
    )
    totals.add_column(style="bold")
    totals.add_column()
    for name, value in _totals(summary):
        totals.add_row(name, value)
    parts: list[Any] = [totals]
    if summary["operators"]:
        ops = Table(header_style="bold")
        for header in _OPERATOR_HEADERS:
            ops.add_column(header, justify="left" if header == "operator" else "right")
        for op in summary["operators"]:
            ops.add_row(*_operator_cells(op))
        parts.append(ops)
    parts += [Text(line, style="yellow") for line in _sample_lines(summary)]
    return Group(*parts)


def _summary_text(summary: Mapping[str, Any]) -> str:
    lines = [f"job {summary['job']}"]
    lines += [f"  {name:<18}{value}" for name, value in _totals(summary)]
    if summary["operators"]:
        rows = [list(_OPERATOR_HEADERS)] + [_operator_cells(op) for op in summary["operators"]]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_OPERATOR_HEADERS))]
        for row in rows:
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
            lines.append("  " + "  ".join(cells).rstrip())
    lines += [f"  {line}" for line in _sample_lines(summary)]
    return "\n".join(lines)
