"""Admission: an element becomes a queue entry, or passes straight through (private).

Admission runs only once the operator knows a slot is free. For a plain async function it
takes the element's key (``KEY_ORDERED``), makes the entry, arms its deadline and hands it
to the invoker when the queue lets it start. For a function with a callback form (the
lookup join) it starts the call first::

    value ─► start_call ─┬─ outputs now, and the mode lets them leave next ─► emit at once
                         │                                   (no entry, slot or deadline)
                         ├─ outputs now, something ahead ─► entry, settled at once
                         └─ a handle ─► entry RUNNING; the handle delivers later

so the join key is taken once per element and the cache asked once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Final, final

from .._reprs import short_repr
from ..elements import Record, Watermark
from ..errors import AsyncFunctionError, BadInputError
from ..function import CallbackFunction, Pending
from ..metrics import Histogram
from ..queues import ElementQueue, EntryState, QueueEntry
from .attempts import AttemptClock
from .emitter import Emitter
from .invoker import KEY_FAILED, Invoker
from .outcome import LATENCY_SAMPLE, Outcomes

__all__ = ("Admission",)

_RUNNING: Final = EntryState.RUNNING


@final
class Admission:
    """Admits elements into the operator's queue (or past it).

    Args:
        name: the operator's name, in errors.
        queue: the operator's queue.
        emitter: emits and counts slots.
        invoker: starts calls.
        outcomes: handles what calls return.
        latency: the admission-to-completion histogram.
        key: the operator's key function, or ``None``.
        call: the function's callback form, used unkeyed (it takes its own key).
        keyed_call: the function's callback form whose ``key_of`` is the operator's key.
    """

    __slots__ = (
        "_call",
        "_emitter",
        "_invoker",
        "_key",
        "_keyed_call",
        "_latency",
        "_name",
        "_outcomes",
        "_queue",
        "admitted",
        "attempts",
        "pass_ok",
    )

    def __init__(
        self,
        name: str,
        queue: ElementQueue,
        emitter: Emitter,
        invoker: Invoker,
        outcomes: Outcomes,
        latency: Histogram,
        *,
        key: Callable[[Any], Hashable] | None,
        call: CallbackFunction | None,
        keyed_call: CallbackFunction | None,
    ) -> None:
        self._name = name
        self._queue = queue
        self._emitter = emitter
        self._invoker = invoker
        self._outcomes = outcomes
        self._latency = latency
        self._key = key
        self._call = call
        self._keyed_call = keyed_call
        self.attempts: AttemptClock | None = None  # per-attempt deadlines, when configured
        self.admitted = 0  # elements admitted (or passed through): the next entry's seq
        # Outputs known at admission may be emitted at once (the operator's sync_emit).
        self.pass_ok = False

    def admit_function(self) -> Callable[[Record[Any] | None, Any], None]:
        """The admission of a value for this operator's kind of function (bound once)."""
        if self._call is not None:
            return self.admit_call
        if self._keyed_call is not None:
            return self.admit_keyed_call
        return self.admit_value

    def admit_watermark(self, watermark: Watermark) -> None:
        """Admit ``watermark`` (complete from the start) and emit what may leave."""
        entry = QueueEntry.watermark(watermark)
        emitter = self._emitter
        emitter.held += 1
        self.admitted += 1
        entry.seq = self.admitted
        self._queue.put(entry)
        emitter.drain()

    def admit_value(self, record: Record[Any] | None, value: Any) -> None:
        """Admit ``value`` (of ``record``, or bare) for a plain async function."""
        key = None
        if self._key is not None:
            try:
                key = self._key(value)
                hash(key)
            except Exception as exc:
                if isinstance(exc, BadInputError) and self._outcomes.reject is not None:
                    self._admit_failed(record, value, exc)
                    return
                element = Record(value) if record is None else record
                msg = f"{self._name}: key function failed on {short_repr(element)}: {exc!r}"
                raise AsyncFunctionError(msg, element) from exc
        self._admit(QueueEntry(record, value, key))

    def admit_call(self, record: Record[Any] | None, value: Any) -> None:
        """Admit ``value`` for a function with a callback form, its call started at once."""
        call = self._call
        assert call is not None  # admit_function chose this
        if self._invoker.submitting:
            # Nested in the settle of a call: the invoker starts it, on a worker.
            self._admit(QueueEntry(record, value, None))
            return
        emitter = self._emitter
        passable = self.pass_ok and not emitter.emitting and self._queue.can_pass(None)
        try:
            outcome = call.start_call(value, self._outcomes.delivered)
        except Exception as exc:
            self._admit_failed(record, value, exc, None)
            return
        if passable and type(outcome) is list:
            self.admitted += 1
            if self.admitted % LATENCY_SAMPLE == 0:
                self._latency.observe(0.0)  # complete at admission: no wait
            emitter.pass_through(record, outcome)
            return
        self._admit_outcome(record, value, None, outcome)

    def admit_keyed_call(self, record: Record[Any] | None, value: Any) -> None:
        """:meth:`admit_call` for KEY_ORDERED by the callback form's own key."""
        call = self._keyed_call
        assert call is not None  # admit_function chose this
        try:
            key = call.key_of(value)
        except Exception as exc:
            self._admit_failed(record, value, exc)
            return
        queue = self._queue
        if self._invoker.submitting or not queue.can_start(key):
            # Nested in a call's settle, or its key is busy: the invoker starts it in turn.
            self._admit(QueueEntry(record, value, key))
            return
        emitter = self._emitter
        passable = self.pass_ok and not emitter.emitting and queue.can_pass(key)
        try:
            outcome = call.start_keyed(key, value, self._outcomes.delivered)
        except Exception as exc:
            self._admit_failed(record, value, exc, key)
            return
        if passable and type(outcome) is list:
            self.admitted += 1
            if self.admitted % LATENCY_SAMPLE == 0:
                self._latency.observe(0.0)  # complete at admission: no wait
            emitter.pass_through(record, outcome)
            return
        self._admit_outcome(record, value, key, outcome)

    def _admit_outcome(
        self, record: Record[Any] | None, value: Any, key: Hashable, outcome: list[Any] | Pending
    ) -> None:
        """Admit an element whose call was started with ``outcome`` (outputs or a handle)."""
        entry = QueueEntry(record, value, key)
        self._admit_started(entry)
        if type(outcome) is list:
            invoker = self._invoker
            invoker.submitting = True
            try:
                self._outcomes.on_fresh_result(entry, outcome)
            finally:
                invoker.submitting = False
            return
        entry.task = outcome
        outcome.token = entry  # type: ignore[union-attr]  # a Pending: not a list

    def _admit_failed(
        self, record: Record[Any] | None, value: Any, exc: Exception, key: Hashable = KEY_FAILED
    ) -> None:
        """Admit an element whose key or call raised at once; ``exc`` is its first outcome."""
        entry = QueueEntry(record, value, key)
        self._admit_started(entry)
        invoker = self._invoker
        invoker.submitting = True
        try:
            self._outcomes.on_exception(entry, exc)
        finally:
            invoker.submitting = False

    def _admit_started(self, entry: QueueEntry) -> None:
        """Admit ``entry`` whose first attempt is already under way."""
        self._emitter.held += 1
        self.admitted += 1
        entry.seq = self.admitted
        self._queue.put(entry)
        entry.state = _RUNNING  # WAITING -> RUNNING: always a legal move
        entry.attempt = 1
        self._outcomes.track(entry)
        if self.attempts is not None:
            self.attempts.started(entry)

    def _admit(self, entry: QueueEntry) -> None:
        self._emitter.held += 1
        self.admitted += 1
        entry.seq = self.admitted
        start = self._queue.put(entry)
        self._outcomes.track(entry)
        if start:
            self._invoker.start(entry)
