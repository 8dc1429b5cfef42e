"""Snapshots of a job as the displays and the summary read them, and number formats (private).

The runtime's ``JobProgress``/``JobResult`` are read through :class:`ProgressView` and
:class:`OperatorView`, so the displays and the summary depend on a few attribute names only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, final

__all__ = ("OperatorView", "ProgressView", "fmt_ms", "fmt_ratio")


@final
@dataclass(frozen=True, slots=True)
class OperatorView:
    """One operator's numbers, read from a runtime snapshot (missing ones are 0 / nan).

    Latencies are in seconds. ``capacity`` is 0 for operators without one (map, filter).
    ``retries`` counts the operator's retries and the requests an HTTP lookup sent again
    after a ``Retry-After`` (its ``retry_after_waits`` counter).
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
    skipped: int = 0
    dead_letters: int = 0
    defaulted: int = 0
    attempt_timeouts: int = 0
    result_retries: int = 0

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

    @property
    def is_join(self) -> bool:
        """Whether the operator runs a lookup join (it counts matched lookups)."""
        return "matched" in self.counters

    def join_count(self, name: str) -> int:
        """A lookup join's counter: ``matched``, ``missed``, ``dropped``, ``lookup_failed``."""
        return int(self.counters.get(name, 0))

    @property
    def match_ratio(self) -> float | None:
        """Matched over lookups that found a row or not; ``None`` before any (or no join)."""
        matched = self.join_count("matched")
        looked = matched + self.join_count("missed") + self.join_count("dropped")
        return matched / looked if looked else None

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
            # A Retry-After wait inside an HTTP lookup sends the request again: a retry.
            retries=int(num("retries")) + int(counters.get("retry_after_waits", 0)),
            timeouts=int(num("timeouts")),
            failures=int(num("failures")),
            latency_p50=float(num("latency_p50", math.nan)),
            latency_p99=float(num("latency_p99", math.nan)),
            counters=dict(counters),
            skipped=int(num("skipped")),
            dead_letters=int(num("dead_letters")),
            defaulted=int(num("defaulted")),
            attempt_timeouts=int(num("attempt_timeouts")),
            result_retries=int(num("result_retries")),
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
    skipped: int = 0
    dead_letters: int = 0

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
            skipped=int(getattr(snapshot, "skipped", 0)),
            dead_letters=int(getattr(snapshot, "dead_letters", 0)),
        )

    @property
    def cache_hit_ratio(self) -> float | None:
        """Cache hits over cache lookups across every operator, ``None`` without a cache."""
        hits = sum(op.cache_hits for op in self.operators)
        total = hits + sum(op.cache_misses for op in self.operators)
        return hits / total if total else None


def fmt_ms(seconds: float) -> str:
    """``seconds`` for people: ``"12.34 ms"``, ``"1.50 s"``, ``"-"`` for none."""
    if math.isnan(seconds):
        return "-"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.2f} ms"


def fmt_ratio(ratio: float | None) -> str:
    """A ratio as a percentage, ``"-"`` for none."""
    return "-" if ratio is None else f"{ratio:.1%}"
