"""Chained steps (map, filter, flat_map), and the marker of an async function's bad input.

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

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, Protocol, final

from .._reprs import short_repr
from ..elements import Record, StreamElement, Watermark
from ..errors import AsyncFunctionError, BadInputError
from ..sources._base import SourcedRecord


class StepReject(Protocol):
    """Routes one bad record of a step to the errors file (the job binds the step's name)."""

    def __call__(self, error: BadInputError, record: Record[Any] | None = None, /) -> None:
        """Route ``record`` aside because of ``error``."""
        ...


def step_failure(step: str, record: Record[Any], exc: BaseException) -> AsyncFunctionError:
    """The error that fails the job when a step's function raised ``exc`` on ``record``.

    ``.record`` stays the runtime's record until the job adds its line and makes it plain.
    """
    msg = f"{step}: could not process {short_repr(record)}: {type(exc).__name__}: {exc}"
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
    """An async function's output standing for an input set aside (never leaves the job).

    ``kind`` says why: ``"bad_input"`` (the function said the input was bad),
    ``"lookup_failed"`` (its call finally failed and ``on_error`` is ``"dead_letter"``:
    ``attempts`` were made) or ``"skipped"`` (``on_error = "skip"``). Emitted in the
    element's place, it is routed when the element's turn to leave comes: after the
    snapshot of a checkpoint that still holds the element, so it is routed once.
    """

    __slots__ = ("attempts", "error", "kind", "line", "value")

    def __init__(
        self,
        value: Any,
        error: BaseException,
        line: int | None,
        kind: str = "bad_input",
        attempts: int = 0,
    ) -> None:
        self.value = value
        self.error = error
        self.line = line
        self.kind = kind
        self.attempts = attempts
