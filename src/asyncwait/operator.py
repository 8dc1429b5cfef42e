"""The async wait operator: Flink's ``AsyncWaitOperator`` on an asyncio event loop.

Life of an element::

    process_element / offer ──(wait for a slot)──► admitted: entry in the queue, deadline armed
        │
        ├─► invoke ──► result ──► retry? ──yes──► backoff timer ──► invoke ...
        │                 │
        │                 └─no──► final (DONE / FAILED) ──► queue.complete
        │
        └─► deadline passes first ──► timeout() hook ──► final
                                                               │
    emit ◄── queue.pop_completed (mode decides what may leave) ◄┘   slot frees on emit

This module is the facade: lifecycle, admission, snapshot and statistics. The work is done by
the parts in :mod:`asyncwait._operator`: the invoker starts calls, the outcomes decide what a
result, an exception or a deadline means, the emitter emits and frees slots. Bookkeeping is
synchronous and runs inside the callbacks and tasks of the loop that opened the operator; the
only awaits are the user's function, an awaitable ``emit`` and the waits for a free slot or
for the end of input.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar, final

from ._operator.adapter import adapt
from ._operator.admission import Admission
from ._operator.attempts import AttemptClock
from ._operator.emitter import Emit, Emitter
from ._operator.invoker import Invoker
from ._operator.mode import OutputMode as OutputMode
from ._operator.options import check_options
from ._operator.outcome import Outcomes, RejectBadInput
from ._operator.policy import DeadLetter, ErrorPolicy
from ._operator.policy import OnError as OnError
from ._operator.statistics import OperatorStatistics as OperatorStatistics
from ._reprs import short_repr
from ._tasks import TaskOwner
from .elements import Record, StreamElement, Watermark
from .errors import AsyncWaitError, ClosedError, ConfigError
from .function import RuntimeContext
from .metrics import Metrics
from .queues import (
    ElementQueue,
    EntryState,
    KeyOrderedQueue,
    OrderedQueue,
    QueueEntry,
    UnorderedQueue,
)
from .retry import NO_RETRY, RetryStrategy

__all__ = ("AsyncWaitOperator", "OnError", "OperatorStatistics", "OutputMode")

IN = TypeVar("IN")
OUT = TypeVar("OUT")

_RUNNING = EntryState.RUNNING


_QUEUES: dict[OutputMode, Callable[[], ElementQueue]] = {
    OutputMode.ORDERED: OrderedQueue,
    OutputMode.UNORDERED: UnorderedQueue,
    OutputMode.KEY_ORDERED: KeyOrderedQueue,
}


class _State(enum.Enum):
    NEW = "new"  # constructed; open() not called yet
    OPEN = "open"  # accepting elements
    CLOSED = "closed"  # close() called; everything in flight is cancelled


@final
class AsyncWaitOperator(Generic[IN, OUT]):
    """Calls an async function per record with at most ``capacity`` entries held at once.

    Ordering follows ``mode`` (see :class:`OutputMode`); a full operator makes
    ``process_element``/``process_watermark`` wait, which back-pressures the caller. Each
    element has one deadline of ``timeout`` seconds from admission covering every retry;
    when it passes the function's ``timeout()`` hook decides the outcome. A failed element
    emits nothing and the next call raises :class:`AsyncFunctionError`.

    Args:
        function: an :class:`~asyncwait.AsyncFunction` or a plain ``async def f(value)``.
        mode: the output order: an :class:`OutputMode`, or its value (``"ordered"``,
            ``"unordered"``, ``"key_ordered"``).
        capacity: entries held at most (records in flight or not yet emitted, watermarks).
        timeout: seconds from admission until ``timeout()`` is called; ``None`` for never.
        retry: the retry strategy (:mod:`asyncwait.retry`).
        key: the key of a value; required for ``KEY_ORDERED``.
        name: the operator's name, used in errors and metrics.
        attempt_timeout: seconds one attempt may take (shorter than ``timeout``); a slower
            one is abandoned with :class:`~asyncwait.AttemptTimeoutError`, which ``retry``
            retries like any exception while the element's deadline allows.
        on_error: what an element whose call finally failed or timed out does
            (:class:`OnError`): fail the operator (the default), ``"skip"`` it,
            ``"dead_letter"`` it (to ``open(dead_letter=...)``), or emit
            ``default(value, error)``.
        default: with ``on_error="default"``, the failed element's outputs.

    Raises:
        ValueError: ``capacity < 1``, ``timeout <= 0``, ``KEY_ORDERED`` without ``key``;
            :class:`~asyncwait.ConfigError` (a ValueError) for options that contradict
            each other (``attempt_timeout >= timeout``, ``default`` without
            ``on_error="default"``).

    >>> async def double(v: int) -> int:
    ...     return v * 2
    >>> async def main() -> list[StreamElement]:
    ...     out: list[StreamElement] = []
    ...     op = AsyncWaitOperator(double, capacity=2)
    ...     await op.open(out.append)
    ...     for v in (1, 2, 3):
    ...         await op.process_element(Record(v))
    ...     await op.end_input()
    ...     await op.close()
    ...     return out
    >>> [r.value for r in asyncio.run(main())]
    [2, 4, 6]
    """

    def __init__(
        self,
        function: Any,
        *,
        mode: OutputMode | str = OutputMode.ORDERED,
        capacity: int = 100,
        timeout: float | None = None,
        retry: RetryStrategy = NO_RETRY,
        key: Callable[[IN], Hashable] | None = None,
        name: str = "async-wait",
        attempt_timeout: float | None = None,
        on_error: OnError | str = OnError.FAIL,
        default: Callable[[IN, BaseException], Iterable[OUT]] | None = None,
    ) -> None:
        options = check_options(
            name,
            mode=mode,
            capacity=capacity,
            timeout=timeout,
            retry=retry,
            key=key,
            attempt_timeout=attempt_timeout,
            on_error=on_error,
            default=default,
        )
        mode, capacity, timeout = options.mode, options.capacity, options.timeout
        self.name = name
        self.metrics = Metrics(name)
        self._function = function
        self._fn = fn = adapt(function)
        self._mode = mode
        self._capacity = capacity
        self._retry = retry
        self._queue = queue = _QUEUES[mode]()
        callback = fn.callback
        # The callback form is started at admission, its outputs passed through when known
        # at once. Unkeyed, it takes the key (the join key) itself; KEY_ORDERED by that same
        # key, the operator takes it once per element and orders by it.
        call = callback if callback is not None and key is None else None
        keyed = callback if callback is not None and key == callback.key_of else None
        self._state = _State.NEW
        self._opened_function = False
        # The first failure; raised by every later call. An AsyncFunctionError for an element,
        # or whatever the downstream `emit` raised.
        self._failure: BaseException | None = None
        self._waiting: StreamElement | None = None  # an input waiting for admission
        # Owns the emitter's task and the tasks of awaitable timeout() hooks; the invoker
        # owns its workers.
        self._tasks = TaskOwner(name)
        self._emitter = Emitter(queue, self._tasks, self._failed)
        self._outcomes = outcomes = Outcomes(
            name,
            fn,
            queue,
            retry,
            timeout,
            capacity,
            self.metrics.latency,
            self._tasks,
        )
        self._invoker = invoker = Invoker(fn, outcomes, capacity, name, keyed=keyed is not None)
        outcomes.start = invoker.start
        outcomes.drain = self._emitter.drain
        outcomes.on_failure = self._failed
        self._policy: ErrorPolicy | None = None
        if options.on_error is not OnError.FAIL:
            self._policy = outcomes.policy = ErrorPolicy(options.on_error, options.default)
        self._attempts: AttemptClock | None = None
        if options.attempt_timeout is not None:
            self._attempts = AttemptClock(options.attempt_timeout, outcomes.attempt_expired)
            outcomes.attempts = invoker.attempts = self._attempts
        self._admission = admission = Admission(
            name,
            queue,
            self._emitter,
            invoker,
            outcomes,
            self.metrics.latency,
            key=key,
            call=call,
            keyed_call=keyed,
        )
        self._admit = admission.admit_function()
        if self._attempts is not None:
            admission.attempts = self._attempts

    # ------------------------------------------------------------------ lifecycle

    async def open(
        self,
        emit: Emit,
        *,
        restored: Iterable[StreamElement] = (),
        sync_emit: bool = False,
        on_bad_input: RejectBadInput | None = None,
        values: bool = False,
        dead_letter: DeadLetter | None = None,
        skipped: DeadLetter | None = None,
    ) -> None:
        """Open the function, then re-process ``restored`` elements before returning.

        Args:
            emit: called with every output :class:`Record` and every :class:`Watermark`, one
                at a time; when it returns an awaitable, that is awaited before the next
                emission (so a slow consumer back-pressures the operator).
            restored: the result of an earlier :meth:`snapshot_state`; may hold more
                elements than ``capacity``.
            sync_emit: a promise that ``emit`` never returns an awaitable. The outputs of an
                element known at admission (a lookup join's cache hit) are then emitted at
                once, without holding a slot, when the mode would let them leave next. An
                embedding runtime that back-pressures by other means sets it.
            on_bad_input: for an embedding runtime: ``on_bad_input(element, error)`` turns a
                :class:`~asyncwait.BadInputError` raised by the function (or by the key of a
                ``KEY_ORDERED`` operator) into that element's outputs, instead of a retry or
                a failure.
            values: feed bare values instead of records (:meth:`offer_value`,
                :meth:`process_value`); ``emit`` then gets bare output values and no
                watermarks. For the iterator helpers, which need no event time.
            dead_letter: with ``on_error="dead_letter"`` (required then):
                ``dead_letter(element, error, attempts)`` receives each element whose call
                finally failed; what it raises fails the element after all. What it
                returns (an iterable, or ``None`` for nothing) is emitted in the element's
                place.
            skipped: with ``on_error="skip"``, for an embedding runtime:
                ``skipped(element, error, attempts)`` returns what to emit in a skipped
                element's place (a marker it counts when the element's turn comes).

        Raises:
            AsyncWaitError: ``open`` was called before.
            TypeError: ``emit`` is not callable.
        """
        if self._state is not _State.NEW:
            msg = f"{self.name}: open() called twice"
            raise AsyncWaitError(msg)
        if not callable(emit):
            msg = f"{self.name}: emit must be callable, got {emit!r}"
            raise TypeError(msg)
        if on_bad_input is not None and not callable(on_bad_input):
            msg = f"{self.name}: on_bad_input must be callable or None, got {on_bad_input!r}"
            raise TypeError(msg)
        policy = self._policy
        if policy is not None and policy.on_error is OnError.DEAD_LETTER:
            if not callable(dead_letter):
                msg = f"{self.name}: on_error 'dead_letter' needs open(dead_letter=...)"
                raise ConfigError(msg)
            policy.dead_letter = dead_letter
        if policy is not None and skipped is not None:
            policy.on_skip = skipped
        self._emitter.start(emit, bare=values)
        self._outcomes.reject = on_bad_input
        self._opened_function = True
        await self._fn.open(RuntimeContext(self.name, self.metrics, self._capacity))
        if self._closed():
            return  # close() ran while the function was opening
        self._state = _State.OPEN
        loop = asyncio.get_running_loop()
        self._outcomes.bind(loop)
        if self._attempts is not None:
            self._attempts.bind(loop)
        self._invoker.open = True
        self._admission.pass_ok = sync_emit and self._retry.on_result is None
        for element in restored:
            if isinstance(element, Watermark):
                await self.process_watermark(element)
            else:
                await self.process_element(element)

    async def close(self) -> None:
        """Cancel everything in flight without emitting it and close the function (once).

        Idempotent; results that arrive afterwards are ignored. No task of the operator is
        left running when it returns.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._outcomes.stop()
        self._invoker.stop()
        self._emitter.open = False
        for entry in self._queue.entries():
            if entry.handle is not None:
                entry.handle.cancel()  # a retry's backoff timer
                entry.handle = None
            entry.task = None
        try:
            # Wait for the cancellations to land so no task outlives the operator.
            await self._invoker.workers.aclose()
            await self._tasks.aclose()
        finally:
            self._emitter.wake()
            if self._opened_function:
                self._opened_function = False
                await self._fn.close()

    # ------------------------------------------------------------------ input

    async def process_element(self, record: Record[IN]) -> None:
        """Admit ``record``, waiting while the operator is full, and invoke the function.

        Raises:
            AsyncFunctionError: an earlier element failed (``.record``, ``__cause__``).
            ClosedError: the operator is closed.
        """
        if self._state is not _State.OPEN or self._failure is not None:
            self._raise_state()
        if not isinstance(record, Record):
            msg = f"{self.name}: process_element() takes a Record, got {short_repr(record)}"
            raise TypeError(msg)
        # An entry whose awaitable emit is still pending holds its slot too.
        if self._emitter.held >= self._capacity:
            await self._wait_for_space(record)
        self._admit(record, record.value)

    def offer(self, record: Record[IN]) -> bool:
        """Admit ``record`` if a slot is free, without waiting; False (nothing admitted) if full.

        The non-blocking half of :meth:`process_element`, for a runtime that feeds batches:
        it offers each record and awaits ``process_element`` only for the one that did not
        fit. Raises what ``process_element`` raises.
        """
        if self._state is not _State.OPEN or self._failure is not None:
            self._raise_state()
        if self._emitter.held >= self._capacity:
            return False
        self._admit(record, record.value)
        return True

    async def process_watermark(self, watermark: Watermark) -> None:
        """Admit ``watermark``; it is emitted at once when nothing is pending ahead of it."""
        if self._state is not _State.OPEN or self._failure is not None:
            self._raise_state()
        if not isinstance(watermark, Watermark):
            msg = f"{self.name}: process_watermark() takes a Watermark, got {short_repr(watermark)}"
            raise TypeError(msg)
        emitter = self._emitter
        if emitter.held >= self._capacity:
            await self._wait_for_space(watermark)
        self._admission.admit_watermark(watermark)

    def offer_value(self, value: IN) -> bool:
        """:meth:`offer` for an operator opened with ``values=True``: admit a bare value."""
        if self._state is not _State.OPEN or self._failure is not None:
            self._raise_state()
        if self._emitter.held >= self._capacity:
            return False
        self._admit(None, value)
        return True

    async def process_value(self, value: IN) -> None:
        """:meth:`process_element` for an operator opened with ``values=True``."""
        if not self.offer_value(value):
            await self._wait_for_space(Record(value))
            self._admit(None, value)

    async def end_input(self) -> None:
        """Return once every admitted element is complete and everything has been emitted.

        Timers and retries keep running meanwhile. Then the function's ``end_input()`` hook
        runs (if it has one); what it raises, this raises.
        """
        if self._state is not _State.OPEN or self._failure is not None:
            self._raise_state()
        emitter = self._emitter
        while emitter.held:
            await emitter.idle()
            if self._state is not _State.OPEN or self._failure is not None:
                self._raise_state()
        await self._fn.end_input()

    @property
    def waiting_element(self) -> StreamElement | None:
        """The input that a call of ``process_*`` is waiting to admit, or ``None``.

        It is already part of :meth:`snapshot_state` (last).
        """
        return self._waiting

    def snapshot_state(self) -> list[StreamElement]:
        """Return the inputs of every admitted element not yet fully emitted, in input order.

        An input still waiting for admission comes last. Outputs, attempt counts and timers
        are never part of it: restoring replays the inputs with fresh ones.
        """
        entries = list(self._queue.entries())
        partly = self._emitter.partly
        if partly is not None:
            entries.append(partly)
            entries.sort(key=_admission_order)
        state = [entry.element() for entry in entries]
        if self._waiting is not None:
            state.append(self._waiting)
        return state

    def statistics(self) -> OperatorStatistics:
        """Return the current counters."""
        outcomes = self._outcomes
        policy = self._policy
        return OperatorStatistics(
            in_flight=outcomes.in_flight,
            queued=self._emitter.held,
            capacity=self._capacity,
            emitted=self._emitter.emitted,
            retries=outcomes.retries,
            timeouts=outcomes.timeouts,
            failures=outcomes.failures,
            passed=self._emitter.passed,
            skipped=0 if policy is None else policy.skipped,
            dead_letters=0 if policy is None else policy.dead_letters,
            defaulted=0 if policy is None else policy.defaulted,
            attempt_timeouts=0 if self._attempts is None else self._attempts.expirations,
            result_retries=outcomes.result_retries,
        )

    def __repr__(self) -> str:
        return (
            f"<AsyncWaitOperator {self.name!r} {self._mode.name} {self._state.value} "
            f"in-flight {self._outcomes.in_flight}/{self._capacity} "
            f"queued {self._emitter.held} emitted {self._emitter.emitted}>"
        )

    async def _wait_for_space(self, element: StreamElement) -> None:
        emitter = self._emitter
        self._waiting = element
        try:
            while emitter.held >= self._capacity:
                await emitter.room()
                if self._state is not _State.OPEN or self._failure is not None:
                    self._raise_state()
        finally:
            self._waiting = None

    def _closed(self) -> bool:
        return self._state is _State.CLOSED

    def _failed(self, exc: BaseException) -> None:
        """Record the operator's first failure and wake every waiting call to raise it."""
        if self._failure is None:
            self._failure = exc
            self._emitter.wake()

    def _raise_state(self) -> None:
        if self._state is _State.CLOSED:
            msg = f"{self.name}: the operator is closed"
            raise ClosedError(msg)
        if self._state is _State.NEW:
            msg = f"{self.name}: call open() first"
            raise AsyncWaitError(msg)
        assert self._failure is not None  # the only other reason to be here
        raise self._failure


def _admission_order(entry: QueueEntry) -> int:
    return entry.seq
