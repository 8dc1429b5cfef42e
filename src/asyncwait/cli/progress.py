"""What ``asyncwait run`` shows while a job runs.

Three displays share one small interface (``update(progress)``, ``close()``):

* :class:`LiveDisplay` redraws a rich table on a terminal (events in/out per second, each
  async operator's in-flight/capacity, cache hit ratio, p50/p99 latency, a lookup join's
  matched/missed/dropped/failed lookups, errors);
* :class:`LineDisplay` writes one plain line every few seconds when stderr is not a terminal;
* :class:`NullDisplay` shows nothing (``--quiet``).

Redraws happen on the event loop (``auto_refresh`` is off): rich starts no thread. This
module needs the ``cli`` extra (``pip install 'asyncwait[cli]'``) for rich.
"""

from __future__ import annotations

from typing import IO, Final, Protocol, final

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .views import OperatorView, ProgressView, fmt_ms, fmt_ratio

__all__ = ("Display", "LineDisplay", "LiveDisplay", "NullDisplay")

_LINE_EVERY: Final = 5.0  # seconds between two plain progress lines


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
    if op.is_join:
        text += f", matched {_matched(op)}, missed {op.join_count('missed'):,}"
        text += f", dropped {op.join_count('dropped'):,}"
        text += f", failed {op.join_count('lookup_failed'):,}"
    row = _flow_row(op)
    if row is not None:
        limit, breaker, waits, skipped, dead = row
        text += f", limit {limit}, breaker {breaker}, rate waits {waits}"
        text += f", skipped {skipped}, dead letters {dead}"
    return f"{text}, p99 {fmt_ms(op.latency_p99)}"


def _flow_row(op: OperatorView) -> tuple[str, ...] | None:
    """A lookup's flow control and error routing now, or ``None`` when it has neither."""
    counters = op.counters
    limit = counters.get("concurrency_limit")
    opened = counters.get("breaker_open")
    waits = counters.get("rate_limit_waits")
    if (limit, opened, waits) == (None, None, None) and not (op.skipped or op.dead_letters):
        return None
    breaker = "-" if opened is None else ("OPEN" if opened else "closed")
    if opened is not None and counters.get("breaker_openings"):
        breaker += f" ({counters['breaker_openings']:,} openings)"
    return (
        "-" if limit is None else str(limit),
        breaker,
        "-" if waits is None else f"{waits:,}",
        f"{op.skipped:,}",
        f"{op.dead_letters:,}",
    )


def _matched(op: OperatorView) -> str:
    """A join's matched lookups, with their share once there is one: ``9,800 (98.0%)``."""
    text = f"{op.join_count('matched'):,}"
    ratio = op.match_ratio
    return text if ratio is None else f"{text} ({fmt_ratio(ratio)})"


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
                fmt_ratio(op.cache_hit_ratio),
                fmt_ms(op.latency_p50),
                fmt_ms(op.latency_p99),
                f"{op.retries}/{op.timeouts}/{op.failures}",
            )
        joins = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("lookup join", "matched", "missed", "dropped", "failed"):
            joins.add_column(column, justify="left" if column == "lookup join" else "right")
        for op in progress.operators:
            if op.is_join:
                joins.add_row(
                    op.name,
                    _matched(op),
                    f"{op.join_count('missed'):,}",
                    f"{op.join_count('dropped'):,}",
                    f"{op.join_count('lookup_failed'):,}",
                )
        flow = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("resilience", "limit", "breaker", "rate waits", "skipped", "dead letters"):
            flow.add_column(column, justify="left" if column == "resilience" else "right")
        for op in progress.operators:
            row = _flow_row(op)
            if row is not None:
                flow.add_row(op.name, *row)
        return Group(head, *(t for t in (table, joins, flow) if t.row_count))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._live.stop()
