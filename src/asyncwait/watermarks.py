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

import asyncio
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, final, overload

from ._channel import SourcedRecord
from ._reprs import short_repr
from ._steps import Step, StepReject, step_failure
from .elements import Record, StreamElement, Watermark
from .errors import BadInputError, ConfigError

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


@final
class _WatermarkStep(Step):
    """Stamps records and emits the strategy's watermarks (a chained step; private).

    Invariant: ``_emitted`` is the last watermark emitted (``None`` before the first); every
    emitted watermark is larger than the one before.
    """

    def __init__(
        self, strategy: WatermarkStrategy[Any], name: str, reject: StepReject, sourced: bool
    ) -> None:
        super().__init__(name, reject, sourced)
        self._strategy = strategy
        self._fn = strategy.timestamp
        self._lag = strategy.max_out_of_orderness_ms + 1
        self._max: int | None = None  # the largest timestamp seen
        self._emitted: int | None = None
        self._due = False  # the periodic timer fired: emit after the current batch
        # Idleness, as Flink's IdlenessTimer: records since the last tick mean active; else
        # inactivity counts from the first tick that saw none.
        self.idle = False
        self._active = False
        self._inactive_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wake: Callable[[], None] = _nothing

    @property
    def current_watermark(self) -> int | None:
        """The last watermark emitted, or ``None``."""
        return self._emitted

    def snapshot(self) -> Any:
        # Idleness is not saved: a resumed stream is active until its timer says otherwise.
        return {"max": self._max, "emitted": self._emitted}

    def restore(self, state: Any) -> None:
        self._max = state["max"]
        self._emitted = state["emitted"]

    def start(self, wake: Callable[[], None]) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self._wake = wake
        self._timer = loop.call_later(self._strategy.interval, self._tick)

    def stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None  # start() ran
        self._timer = loop.call_later(self._strategy.interval, self._tick)
        idle_timeout = self._strategy.idle_timeout
        if self._active:
            self._active = False
            self._inactive_since = None
        elif idle_timeout is not None:
            now = loop.time()
            if self._inactive_since is None:
                self._inactive_since = now
            elif now - self._inactive_since > idle_timeout:
                self.idle = True
        if self.idle:
            return  # an idle stream emits no watermarks until records arrive again
        if self._max is not None and (
            self._emitted is None or self._max - self._lag > self._emitted
        ):
            self._due = True
            self._wake()

    def process(self, batch: list[StreamElement]) -> list[StreamElement]:
        fn, sourced = self._fn, self._sourced
        out: list[StreamElement] = []
        append = out.append
        top = self._max
        records: list[Any] = batch
        seen = False
        for element in records:
            if type(element) is Watermark:
                # Upstream watermarks give way to this strategy's, except the final one.
                if element.timestamp == MAX_TIMESTAMP and self._emitted != MAX_TIMESTAMP:
                    self._emitted = MAX_TIMESTAMP
                    append(element)
                continue
            seen = True
            value = element.value
            if fn is None:
                timestamp = element.timestamp
            else:
                try:
                    timestamp = fn(value)
                except BadInputError as exc:
                    self._reject(exc, element)
                    continue
                except Exception as exc:
                    raise step_failure(self.name, element, exc) from exc
            if type(timestamp) is not int:
                timestamp = self._coerce(timestamp, element)
                if timestamp is None:
                    continue
            if top is None or timestamp > top:
                top = timestamp
            if sourced:
                append(SourcedRecord(value, timestamp, element.line))
            else:
                append(Record(value, timestamp))
        self._max = top
        if seen:
            self._active = True
            self.idle = False
        if self._due:
            self._due = False
            if top is not None:
                watermark = top - self._lag
                if self._emitted is None or watermark > self._emitted:
                    self._emitted = watermark
                    append(Watermark(watermark))
        return out

    def _coerce(self, timestamp: object, element: Record[Any]) -> int | None:
        if isinstance(timestamp, float) and math.isfinite(timestamp):
            return int(timestamp)
        if timestamp is None and self._fn is None:
            reason = f"{self.name}: the record has no timestamp and the strategy has no assigner"
        else:
            reason = (
                f"{self.name}: the timestamp of {short_repr(element.value)} is "
                f"{short_repr(timestamp)}; event time must be int milliseconds"
            )
        self._reject(BadInputError(reason), element)
        return None

    def __repr__(self) -> str:
        return f"<_WatermarkStep {self.name!r} max {self._max} watermark {self._emitted}>"


def _nothing() -> None:
    return None
