"""Per-operator metrics: counters, gauges and latency histograms.

Everything here is touched only from the event loop thread; reads are cheap snapshots.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import final

__all__ = ("Histogram", "HistogramSnapshot", "Metrics", "MetricsSnapshot")

# Log-spaced bucket bounds from 10 µs to ~100 s: 20 buckets per decade keeps p99 within ~12 %.
_BOUNDS: tuple[float, ...] = tuple(10 ** (e / 20) for e in range(-100, 41))


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A point-in-time copy of a :class:`Histogram`, in Prometheus' shape.

    Attributes:
        count: observations so far.
        total: their sum, in seconds.
        buckets: ``(upper bound, observations <= it)`` pairs, bounds increasing, counts
            cumulative; the last bound is ``inf`` and its count is ``count``.
    """

    count: int = 0
    total: float = 0.0
    buckets: tuple[tuple[float, int], ...] = ((math.inf, 0),)


@final
class Histogram:
    """A fixed-bucket histogram of durations in seconds, with quantile estimates.

    >>> h = Histogram()
    >>> for ms in range(1, 101):
    ...     h.observe(ms / 1000)
    >>> round(h.quantile(0.5), 3)
    0.05
    """

    __slots__ = ("_buckets", "count", "total")

    def __init__(self) -> None:
        self._buckets = [0] * (len(_BOUNDS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Add one observation."""
        self._buckets[bisect.bisect_left(_BOUNDS, seconds)] += 1
        self.count += 1
        self.total += seconds

    def quantile(self, q: float) -> float:
        """Return an estimate of quantile ``q`` (0..1), or ``nan`` with no observations."""
        if not self.count:
            return math.nan
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self._buckets):
            seen += n
            if seen >= rank and n:
                return _BOUNDS[min(i, len(_BOUNDS) - 1)]
        return _BOUNDS[-1]  # pragma: no cover - rank <= count always stops the loop above

    def snapshot(self, step: int = 5) -> HistogramSnapshot:
        """Return the counts so far with cumulative buckets at every ``step``-th bound.

        The bounds are the histogram's own (log-spaced, 20 a decade), so each bucket's
        count is exact; ``step = 5`` gives four a decade, 10 µs to 100 s.

        >>> h = Histogram()
        >>> for s in (0.002, 0.002, 0.5):
        ...     h.observe(s)
        >>> snap = h.snapshot(step=20)  # one bound a decade
        >>> [(round(le, 6), n) for le, n in snap.buckets if 0.001 <= le <= 1]
        [(0.001, 0), (0.01, 2), (0.1, 2), (1.0, 3)]
        >>> snap.count, snap.buckets[-1]
        (3, (inf, 3))
        """
        buckets: list[tuple[float, int]] = []
        seen = 0
        for i, n in enumerate(self._buckets[:-1]):
            seen += n
            if i % step == 0 or i == len(_BOUNDS) - 1:
                buckets.append((_BOUNDS[i], seen))
        buckets.append((math.inf, self.count))
        return HistogramSnapshot(self.count, self.total, tuple(buckets))


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """A point-in-time copy of an operator's metrics."""

    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    latency_p50: float = math.nan
    latency_p99: float = math.nan


@final
class Metrics:
    """The metrics of one operator, handed to user functions via ``RuntimeContext.metrics``.

    >>> m = Metrics("lookup")
    >>> m.inc("cache_hits", 3)
    >>> m.counter("cache_hits")
    3
    """

    __slots__ = ("_counters", "_gauges", "_sources", "latency", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._counters: dict[str, int] = {}
        self._gauges: dict[str, float] = {}
        # Counters kept elsewhere and read only when asked (see count_from).
        self._sources: list[Callable[[], Mapping[str, int]]] = []
        self.latency = Histogram()

    def inc(self, counter: str, amount: int = 1) -> None:
        """Add ``amount`` to ``counter``."""
        self._counters[counter] = self._counters.get(counter, 0) + amount

    def counter(self, counter: str) -> int:
        """Return the value of ``counter`` (0 when never incremented)."""
        value = self._counters.get(counter, 0)
        for source in self._sources:
            value += source().get(counter, 0)
        return value

    def count_from(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Add the counters ``source()`` returns to this object's, whenever they are read.

        For counters bumped on every element (a cache's hits): their owner keeps them in
        attributes, and nothing is paid per element for the metrics.
        """
        self._sources.append(source)

    def _all_counters(self) -> dict[str, int]:
        counters = dict(self._counters)
        for source in self._sources:
            for name, value in source().items():
                counters[name] = counters.get(name, 0) + value
        return counters

    def set_gauge(self, gauge: str, value: float) -> None:
        """Set ``gauge`` to ``value``."""
        self._gauges[gauge] = value

    def snapshot(self) -> MetricsSnapshot:
        """Return a copy of the current values."""
        return MetricsSnapshot(
            self._all_counters(),
            dict(self._gauges),
            self.latency.quantile(0.5),
            self.latency.quantile(0.99),
        )

    def __repr__(self) -> str:
        return f"<Metrics {self.name!r} {self._all_counters()}>"
