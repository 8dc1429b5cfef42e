"""Event time: timestamp assignment and periodic watermark generation, as in Flink.

A :class:`WatermarkStrategy` says where a record's timestamp comes from (``int``
milliseconds) and how far out of order records may arrive. Applied with
``stream.assign_timestamps_and_watermarks(strategy)``, it stamps every record and emits
watermarks periodically, every ``interval`` seconds of the event loop's clock (Flink's
``autoWatermarkInterval``, 200 ms by default)::

    records  ─► max timestamp seen M ─┐
                                      ├─► every interval: Watermark(M - bound - 1), if it grew
    loop clock ─► call_later(interval)┘

A watermark ``W`` promises that no later record has a timestamp ``<= W``. Watermarks only
grow; one is emitted after the batch of records it covers, never in front of them. At the
end of the input the source's final ``Watermark(MAX_TIMESTAMP)`` (Flink's ``Long.MAX_VALUE``)
passes through; other watermarks arriving from upstream are replaced by this strategy's.
With ``with_idleness(seconds)``, a stream that received no record for that long is idle and
emits no periodic watermarks until records arrive again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, final, overload

from .errors import ConfigError

__all__ = ("MAX_TIMESTAMP", "WatermarkStrategy")

T = TypeVar("T")
V = TypeVar("V")

MAX_TIMESTAMP: Final = 2**63 - 1
"""The final watermark's timestamp: the end of event time (Flink's ``Long.MAX_VALUE``)."""

_DEFAULT_INTERVAL: Final = 0.2  # seconds, Flink's default autoWatermarkInterval


def _positive_seconds(what: str, seconds: object) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        msg = f"watermark strategy: {what} must be a number of seconds > 0, got {seconds!r}"
        raise ConfigError(msg)
    return float(seconds)


@final
@dataclass(frozen=True, slots=True)
class WatermarkStrategy(Generic[T]):
    """How a stream's records get timestamps and how its watermarks are generated.

    Build one with :meth:`for_bounded_out_of_orderness` or :meth:`for_monotonous_timestamps`;
    the ``with_*`` methods return modified copies (a strategy is an immutable value).

    Attributes:
        max_out_of_orderness_ms: how late (ms) a record may arrive after a later-stamped one;
            the watermark trails the largest timestamp seen by this much, plus 1 ms.
        timestamp: ``timestamp(value) -> int`` ms; ``None`` keeps the records' own
            timestamps (a record without one is then bad input).
        interval: seconds of loop time between periodic watermarks.
        idle_timeout: seconds without records after which the stream is idle (no
            watermarks), or ``None``.

    A ``timestamp`` that raises :class:`~asyncwait.BadInputError` or returns something
    other than a number routes the record to the errors file; any other exception fails the
    job.

    >>> s = WatermarkStrategy.for_bounded_out_of_orderness(5_000, timestamp=lambda e: e["ts"])
    >>> s.max_out_of_orderness_ms, s.interval
    (5000, 0.2)
    >>> s.with_idleness(60).idle_timeout
    60.0
    """

    max_out_of_orderness_ms: int
    timestamp: Callable[[T], int] | None = None
    interval: float = _DEFAULT_INTERVAL
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        bound = self.max_out_of_orderness_ms
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
            msg = (
                "watermark strategy: max_out_of_orderness_ms must be an int >= 0 "
                f"(milliseconds), got {bound!r}"
            )
            raise ConfigError(msg)
        if self.timestamp is not None and not callable(self.timestamp):
            msg = f"watermark strategy: timestamp must be callable, got {self.timestamp!r}"
            raise ConfigError(msg)
        _positive_seconds("interval", self.interval)
        if self.idle_timeout is not None:
            _positive_seconds("idle_timeout", self.idle_timeout)

    @overload
    @staticmethod
    def for_bounded_out_of_orderness(
        max_out_of_orderness_ms: int, *, timestamp: Callable[[V], int]
    ) -> WatermarkStrategy[V]: ...

    @overload
    @staticmethod
    def for_bounded_out_of_orderness(
        max_out_of_orderness_ms: int, *, timestamp: None = None
    ) -> WatermarkStrategy[Any]: ...

    @staticmethod
    def for_bounded_out_of_orderness(
        max_out_of_orderness_ms: int, *, timestamp: Callable[[Any], int] | None = None
    ) -> WatermarkStrategy[Any]:
        """Records arrive at most ``max_out_of_orderness_ms`` late: watermark = max - bound - 1.

        Raises:
            ConfigError: a negative bound or a ``timestamp`` that is not callable.
        """
        return WatermarkStrategy(max_out_of_orderness_ms, timestamp)

    @overload
    @staticmethod
    def for_monotonous_timestamps(*, timestamp: Callable[[V], int]) -> WatermarkStrategy[V]: ...

    @overload
    @staticmethod
    def for_monotonous_timestamps(*, timestamp: None = None) -> WatermarkStrategy[Any]: ...

    @staticmethod
    def for_monotonous_timestamps(
        *, timestamp: Callable[[Any], int] | None = None
    ) -> WatermarkStrategy[Any]:
        """Timestamps never decrease: the watermark is the largest timestamp seen minus 1.

        >>> WatermarkStrategy.for_monotonous_timestamps().max_out_of_orderness_ms
        0
        """
        return WatermarkStrategy(0, timestamp)

    def with_timestamp_assigner(self, timestamp: Callable[[T], int]) -> WatermarkStrategy[T]:
        """A copy taking each record's timestamp from ``timestamp(value)``."""
        return dataclasses.replace(self, timestamp=timestamp)

    def with_idleness(self, seconds: float) -> WatermarkStrategy[T]:
        """A copy marking the stream idle after ``seconds`` without records."""
        return dataclasses.replace(self, idle_timeout=_positive_seconds("idleness", seconds))

    def with_watermark_interval(self, seconds: float) -> WatermarkStrategy[T]:
        """A copy emitting periodic watermarks every ``seconds`` of loop time."""
        return dataclasses.replace(self, interval=_positive_seconds("interval", seconds))
