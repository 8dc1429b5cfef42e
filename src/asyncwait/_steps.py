"""Chained steps (map, filter, flat_map) and the wrapper that keeps bad input out of operators.

Consecutive stateless steps run chained in one stage, like Flink's operator chaining: a
step turns a whole batch into the next batch in one synchronous pass, watermarks passing
through in place. A step calls its user function once per record:

* a :class:`~asyncwait.BadInputError` routes that record to the errors file (``reject``);
* any other exception fails the job with an :class:`~asyncwait.AsyncFunctionError` naming
  the step and the record.

Records of the first stage after a source are :class:`SourcedRecord` values, so that errors
can name the source line; steps there keep the line on the records they make.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, final

from ._channel import SourcedRecord
from .elements import Record, StreamElement, Watermark
from .errors import AsyncFunctionError, BadInputError, _short_repr
from .function import AsyncFunction, RuntimeContext, _adapt
from .retry import RetryStrategy


class StepReject(Protocol):
    """Routes one bad record of a step to the errors file (the job binds the step's name)."""

    def __call__(self, error: BadInputError, record: Record[Any] | None = None, /) -> None:
        """Route ``record`` aside because of ``error``."""
        ...


def step_failure(step: str, record: Record[Any], exc: BaseException) -> AsyncFunctionError:
    """The error that fails the job when a step's function raised ``exc`` on ``record``.

    ``.record`` stays the runtime's record until the job adds its line and makes it plain.
    """
    msg = f"{step}: could not process {_short_repr(record)}: {type(exc).__name__}: {exc}"
    error = AsyncFunctionError(msg, record)
    error.__cause__ = exc
    return error


class Step(ABC):
    """One chained step of a stage."""

    def __init__(self, name: str, reject: StepReject, sourced: bool) -> None:
        self.name = name
        self._reject = reject
        self._sourced = sourced  # the records are SourcedRecords: keep their line

    def start(self, wake: Callable[[], None]) -> None:  # noqa: B027 - optional hook
        """The stage starts; ``wake()`` makes it run :meth:`process` with an empty batch."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """The stage ends (or is cancelled): cancel timers."""

    def snapshot(self) -> Any:
        """The step's state at a checkpoint barrier (picklable); stateless steps have none."""
        return None

    def restore(self, state: Any) -> None:  # noqa: B027 - optional hook
        """Go on from :meth:`snapshot` of an earlier run (before :meth:`start`)."""

    @abstractmethod
    def process(self, batch: list[StreamElement]) -> list[StreamElement]:
        """Turn ``batch`` into the next one, synchronously."""


@final
class MapStep(Step):
    def __init__(
        self, fn: Callable[[Any], Any], name: str, reject: StepReject, sourced: bool
    ) -> None:
        super().__init__(name, reject, sourced)
        self._fn = fn

    def process(self, batch: list[StreamElement]) -> list[StreamElement]:
        fn, sourced = self._fn, self._sourced
        out: list[StreamElement] = []
        append = out.append
        records: list[Any] = batch
        for element in records:
            if type(element) is Watermark:
                append(element)
                continue
            try:
                value = fn(element.value)
            except BadInputError as exc:
                self._reject(exc, element)
                continue
            except Exception as exc:
                raise step_failure(self.name, element, exc) from exc
            if sourced:
                append(SourcedRecord(value, element.timestamp, element.line))
            else:
                append(Record(value, element.timestamp))
        return out


@final
class FilterStep(Step):
    def __init__(
        self, fn: Callable[[Any], object], name: str, reject: StepReject, sourced: bool
    ) -> None:
        super().__init__(name, reject, sourced)
        self._fn = fn

    def process(self, batch: list[StreamElement]) -> list[StreamElement]:
        fn = self._fn
        out: list[StreamElement] = []
        append = out.append
        records: list[Any] = batch
        for element in records:
            if type(element) is Watermark:
                append(element)
                continue
            try:
                keep = fn(element.value)
            except BadInputError as exc:
                self._reject(exc, element)
                continue
            except Exception as exc:
                raise step_failure(self.name, element, exc) from exc
            if keep:
                append(element)
        return out


@final
class FlatMapStep(Step):
    def __init__(
        self, fn: Callable[[Any], Iterable[Any]], name: str, reject: StepReject, sourced: bool
    ) -> None:
        super().__init__(name, reject, sourced)
        self._fn = fn

    def process(self, batch: list[StreamElement]) -> list[StreamElement]:
        fn, sourced = self._fn, self._sourced
        out: list[StreamElement] = []
        append = out.append
        records: list[Any] = batch
        for element in records:
            if type(element) is Watermark:
                append(element)
                continue
            try:
                values = list(fn(element.value))
            except BadInputError as exc:
                self._reject(exc, element)
                continue
            except Exception as exc:
                raise step_failure(self.name, element, exc) from exc
            timestamp = element.timestamp
            if sourced:
                line = element.line
                out.extend(SourcedRecord(value, timestamp, line) for value in values)
            else:
                out.extend(Record(value, timestamp) for value in values)
        return out


# --------------------------------------------------------------------------- async steps


@final
class Rejected:
    """An async function's output standing for "this input was bad" (never leaves the job)."""

    __slots__ = ("error", "line", "value")

    def __init__(self, value: Any, error: BadInputError, line: int | None) -> None:
        self.value = value
        self.error = error
        self.line = line


def guard_retry(retry: RetryStrategy) -> RetryStrategy:
    """``retry``, with a result predicate that never sees (so never retries) a rejection."""
    predicate = retry.on_result
    if predicate is None or not dataclasses.is_dataclass(retry):
        return retry  # a user's own strategy class: its predicate sees Rejected outputs

    def on_result(outputs: Sequence[Any]) -> bool:
        if len(outputs) == 1 and type(outputs[0]) is Rejected:
            return False
        return predicate(outputs)

    return dataclasses.replace(retry, on_result=on_result)


@final
class Guarded(AsyncFunction[Any, Any]):
    """Runs a user function for the runtime's operator, turning bad input into an output.

    A :class:`~asyncwait.BadInputError` from the function becomes one :class:`Rejected`
    output, emitted in the element's place, so the operator neither retries nor fails for
    it; the stage after the operator routes it to the errors file. Everything else (open,
    close, the timeout hook, other exceptions) passes through unchanged.

    ``lines`` maps ``id(value)`` to the source line of values in flight (first operator
    after a source only): an entry is set on admission and removed when the value's outcome
    is known, so a rejection can name its line.
    """

    def __init__(self, function: Any, *, track_lines: bool) -> None:
        adapted = _adapt(function)
        self._invoke = adapted.invoke
        self._on_timeout = adapted.on_timeout
        self._open = adapted.open
        self._close = adapted.close
        self._single = adapted.single
        self._label = adapted.label
        self.track_lines = track_lines
        self.lines: dict[int, int | None] = {}

    async def open(self, context: RuntimeContext) -> None:
        await self._open(context)

    async def close(self) -> None:
        await self._close()

    async def async_invoke(self, value: Any) -> tuple[Any, ...]:
        try:
            result = await self._invoke(value)
        except BadInputError as exc:
            return (Rejected(value, exc, self.lines.pop(id(value), None)),)
        # An exception above keeps the line: the element may be retried, or fail the job.
        if self.lines:
            self.lines.pop(id(value), None)
        if self._single:
            return (result,)
        try:
            return tuple(result)
        except TypeError as exc:
            msg = (
                f"{self._label}.async_invoke() returned {_short_repr(result)} for "
                f"{_short_repr(value)}; it must return an iterable of outputs (e.g. a list)"
            )
            raise TypeError(msg) from exc

    def timeout(self, value: Any) -> Any:
        if self.lines:
            self.lines.pop(id(value), None)
        return self._on_timeout(value)

    def __repr__(self) -> str:
        return f"<Guarded {self._label}>"
