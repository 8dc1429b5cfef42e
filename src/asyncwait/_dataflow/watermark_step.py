"""The chained step that stamps records and emits a strategy's watermarks (private).

See :mod:`asyncwait.watermarks` for what a :class:`~asyncwait.WatermarkStrategy` means.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any, final

from .._reprs import short_repr
from ..elements import Record, StreamElement, Watermark
from ..errors import BadInputError
from ..sources._base import SourcedRecord
from ..watermarks import MAX_TIMESTAMP, WatermarkStrategy
from .steps import Step, StepReject, step_failure

__all__ = ("WatermarkStep",)


@final
class WatermarkStep(Step):
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
        return f"<WatermarkStep {self.name!r} max {self._max} watermark {self._emitted}>"


def _nothing() -> None:
    return None
