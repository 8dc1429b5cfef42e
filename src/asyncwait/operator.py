"""The async wait operator: Flink's ``AsyncWaitOperator`` on an asyncio event loop.

Life of an element::

    process_element ──(wait for a slot)──► admitted: entry in the queue, deadline armed
        │
        ├─► invoke ──► result ──► retry? ──yes──► backoff timer ──► invoke ...
        │                 │
        │                 └─no──► final (DONE / FAILED) ──► queue.complete
        │
        └─► deadline passes first ──► timeout() hook ──► final
                                                               │
    emit ◄── queue.pop_completed (mode decides what may leave) ◄┘   slot frees on emit

Bookkeeping is synchronous and runs inside the callbacks and tasks of the loop that opened
the operator; the only awaits are the user's function, an awaitable ``emit`` and the waits
for a free slot or for the end of input.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import math
import random
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, final

from .elements import Record, StreamElement, Watermark
from .errors import (
    AsyncFunctionError,
    AsyncTimeoutError,
    AsyncWaitError,
    BadInputError,
    ClosedError,
    _short_repr,
)
from .function import RuntimeContext, _adapt
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

__all__ = ("AsyncWaitOperator", "OperatorStatistics", "OutputMode")

IN = TypeVar("IN")
OUT = TypeVar("OUT")

Emit = Callable[[Any], Awaitable[None] | None]

_RUNNING = EntryState.RUNNING
_DONE = EntryState.DONE
_TIMING_OUT = EntryState.TIMING_OUT
_WAITING = EntryState.WAITING
_CoroutineType = types.CoroutineType
# asyncio runs a timer up to one clock tick early; a deadline that close counts as passed.
_TICK = time.get_clock_info("monotonic").resolution
# The suspend rate is a moving average over roughly the last 16 calls.
_RATE_NEW = 1 / 16
_RATE_KEEP = 1 - _RATE_NEW
# Above this suspend rate, workers await calls directly, driving one in _SAMPLE by hand.
_MOSTLY = 0.9
_SAMPLE = 16
# One element in this many is timed for the latency histogram (keeps the hot path cheap).
_LATENCY_SAMPLE = 8


class OutputMode(enum.Enum):
    """The order in which an :class:`AsyncWaitOperator` emits results."""

    ORDERED = "ordered"  # outputs in input order, watermarks included
    UNORDERED = "unordered"  # completion order; never across a watermark
    KEY_ORDERED = "key_ordered"  # per key: one call at a time, input order; keys concurrent


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
@dataclass(frozen=True, slots=True)
class OperatorStatistics:
    """A snapshot of an operator's counters.

    Attributes:
        in_flight: admitted records not yet complete (running, waiting for a retry or a key,
            or in the ``timeout()`` hook).
        queued: entries holding a slot: ``in_flight`` plus completed records not yet emitted
            and watermarks.
        capacity: the most entries the operator holds.
        emitted: entries emitted so far (records and watermarks).
        retries: retry attempts started.
        timeouts: elements whose deadline passed.
        failures: elements that failed.
    """

    in_flight: int
    queued: int
    capacity: int
    emitted: int
    retries: int
    timeouts: int
    failures: int


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
        mode: the output order.
        capacity: entries held at most (records in flight or not yet emitted, watermarks).
        timeout: seconds from admission until ``timeout()`` is called; ``None`` for never.
        retry: the retry strategy (:mod:`asyncwait.retry`).
        key: the key of a value; required for ``KEY_ORDERED``.
        name: the operator's name, used in errors and metrics.

    Raises:
        ValueError: ``capacity < 1``, ``timeout <= 0``, or ``KEY_ORDERED`` without ``key``.

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
        mode: OutputMode = OutputMode.ORDERED,
        capacity: int = 100,
        timeout: float | None = None,
        retry: RetryStrategy = NO_RETRY,
        key: Callable[[IN], Hashable] | None = None,
        name: str = "async-wait",
    ) -> None:
        if not isinstance(mode, OutputMode):
            msg = f"{name}: mode must be an OutputMode, got {mode!r}"
            raise ValueError(msg)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            msg = f"{name}: capacity must be an int >= 1, got {capacity!r}"
            raise ValueError(msg)
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            msg = f"{name}: timeout must be a number of seconds > 0 or None, got {timeout!r}"
            raise ValueError(msg)
        if not isinstance(retry, RetryStrategy):
            msg = f"{name}: retry must be a strategy from asyncwait.retry, got {retry!r}"
            raise ValueError(msg)
        if mode is OutputMode.KEY_ORDERED and key is None:
            msg = f"{name}: KEY_ORDERED needs key=, a function from value to key"
            raise ValueError(msg)
        if key is not None and not callable(key):
            msg = f"{name}: key must be callable, got {key!r}"
            raise ValueError(msg)
        self.name = name
        self.metrics = Metrics(name)
        self._function = function
        self._fn = _adapt(function)
        self._call = self._fn.invoke
        self._mode = mode
        self._capacity = capacity
        self._timeout = None if timeout is None else float(timeout)
        self._retry = retry
        self._key = key
        self._queue = _QUEUES[mode]()
        self._state = _State.NEW
        self._opened_function = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._emit: Emit = _unset_emit
        self._raw = False  # True: emit bare output values (the iterator helpers)
        # Set by the dataflow runtime before open(): its `emit` never returns an awaitable,
        # so an element whose outputs the function knows at once (a lookup join's cache
        # hit) may be emitted straight from _offer (see open()).
        self._sync_emit = False
        self._try_now: Callable[[Any], list[Any] | None] | None = None
        self._rng = random.Random()
        # The first failure; raised by every later call. An AsyncFunctionError for an element,
        # or whatever the downstream `emit` raised.
        self._failure: BaseException | None = None
        self._emit_broken = False
        self._space: asyncio.Future[None] | None = None  # resolved when a slot frees
        self._idle: asyncio.Future[None] | None = None  # resolved when nothing is held
        self._blocked: StreamElement | None = None  # an input waiting for admission
        # Set by the dataflow runtime: turns a BadInputError of the function into the
        # element's outputs (a marker routed to the errors file), instead of a retry or a
        # failure. Only on the exception path, so the hot path pays nothing for it.
        self._reject_bad_input: Callable[[StreamElement, BadInputError], tuple[Any, ...]] | None = (
            None
        )
        # True while an emission runs; an awaitable `emit` keeps it True until the emitter
        # task has caught up, so emission stays strictly sequential.
        self._emitting = False
        self._emitter: asyncio.Task[None] | None = None
        self._emitting_entry: QueueEntry | None = None  # popped but not fully emitted
        # Deadlines are admission time + one fixed timeout, so they arrive in admission
        # order: one deque and one armed timer replace a timer per element.
        self._deadlines: deque[QueueEntry] = deque()
        self._timer: asyncio.TimerHandle | None = None
        # Workers run the calls (see _work). `_ready` holds started entries no worker has
        # taken yet; `_waking` counts workers woken or spawned that have not looked at it.
        self._ready: deque[QueueEntry] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._idle_workers: list[asyncio.Future[None]] = []
        self._waking = 0
        self._worker_active = False  # a worker runs its synchronous span right now
        self._submitting = False  # a call is being started through the callback form
        # Moving average of the share of calls that suspend (see _dispatch).
        self._suspend_rate = 0.0
        self._in_flight = 0
        # Entries holding a slot: in the queue, or popped and still being emitted.
        self._held = 0
        self._admitted = 0
        self._emitted = 0
        self._retries = 0
        self._timeouts = 0
        self._failures = 0

    # ------------------------------------------------------------------ lifecycle

    async def open(self, emit: Emit, *, restored: Iterable[StreamElement] = ()) -> None:
        """Open the function, then re-process ``restored`` elements before returning.

        Args:
            emit: called with every output :class:`Record` and every :class:`Watermark`, one
                at a time; when it returns an awaitable, that is awaited before the next
                emission (so a slow consumer back-pressures the operator).
            restored: the result of an earlier :meth:`snapshot_state`; may hold more
                elements than ``capacity``.
        """
        if self._state is not _State.NEW:
            msg = f"{self.name}: open() called twice"
            raise AsyncWaitError(msg)
        if not callable(emit):
            msg = f"{self.name}: emit must be callable, got {emit!r}"
            raise TypeError(msg)
        self._loop = asyncio.get_running_loop()
        self._emit = emit
        self._opened_function = True
        await self._fn.open(RuntimeContext(self.name, self.metrics, self._capacity))
        if self._closed():
            return  # close() ran while the function was opening
        self._state = _State.OPEN
        if self._sync_emit and not self._raw and self._retry.on_result is None:
            self._try_now = self._fn.try_now
        for element in restored:
            if isinstance(element, Watermark):
                await self.process_watermark(element)
            else:
                await self.process_element(element)

    async def close(self) -> None:
        """Cancel everything in flight without emitting it and close the function (once).

        Idempotent; results that arrive afterwards are ignored.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines.clear()
        tasks: list[asyncio.Task[Any]] = list(self._workers)
        for worker in tasks:
            worker.cancel()
        for entry in self._queue.entries():
            if entry.handle is not None:
                entry.handle.cancel()
                entry.handle = None
            if entry.state is _TIMING_OUT and entry.task is not None:
                entry.task.cancel()  # the timeout() hook's task
                tasks.append(entry.task)
            entry.task = None
        self._ready.clear()
        if self._emitter is not None:
            self._emitter.cancel()
            tasks.append(self._emitter)
        self._wake()
        current = asyncio.current_task()
        tasks = [t for t in tasks if t is not current]
        if tasks:
            # Wait for the cancellations to land so no task outlives the operator.
            await asyncio.wait(tasks)
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
            msg = f"{self.name}: process_element() takes a Record, got {_short_repr(record)}"
            raise TypeError(msg)
        value = record.value
        key = None if self._key is None else self._key_of(value, record)
        # An entry whose awaitable emit is still pending holds its slot too.
        if self._held >= self._capacity:
            await self._wait_for_space(record)
        self._admit(QueueEntry(record, value, key))

    async def process_watermark(self, watermark: Watermark) -> None:
        """Admit ``watermark``; it is emitted at once when nothing is pending ahead of it."""
        if self._state is not _State.OPEN or self._failure is not None:
            self._raise_state()
        if not isinstance(watermark, Watermark):
            msg = (
                f"{self.name}: process_watermark() takes a Watermark, got {_short_repr(watermark)}"
            )
            raise TypeError(msg)
        if self._held >= self._capacity:
            await self._wait_for_space(watermark)
        entry = QueueEntry.watermark(watermark)
        self._held += 1
        self._admitted += 1
        entry.seq = self._admitted
        self._queue.put(entry)
        self._drain()

    async def end_input(self) -> None:
        """Return once every admitted element is complete and everything has been emitted.

        Timers and retries keep running meanwhile.
        """
        if self._state is not _State.OPEN or self._failure is not None:
            self._raise_state()
        loop = self._loop
        assert loop is not None  # state OPEN implies open() set the loop
        while self._held:
            fut = self._idle
            if fut is None or fut.done():
                fut = self._idle = loop.create_future()
            await fut
            if self._state is not _State.OPEN or self._failure is not None:
                self._raise_state()

    def snapshot_state(self) -> list[StreamElement]:
        """Return the inputs of every admitted element not yet fully emitted, in input order.

        An input still waiting for admission comes last. Outputs, attempt counts and timers
        are never part of it: restoring replays the inputs with fresh ones.
        """
        entries = list(self._queue.entries())
        partly = self._emitting_entry
        if partly is not None:
            entries.append(partly)
            entries.sort(key=_admission_order)
        state = [entry.element() for entry in entries]
        if self._blocked is not None:
            state.append(self._blocked)
        return state

    def statistics(self) -> OperatorStatistics:
        """Return the current counters."""
        return OperatorStatistics(
            in_flight=self._in_flight,
            queued=self._held,
            capacity=self._capacity,
            emitted=self._emitted,
            retries=self._retries,
            timeouts=self._timeouts,
            failures=self._failures,
        )

    def __repr__(self) -> str:
        return (
            f"<AsyncWaitOperator {self.name!r} {self._mode.name} {self._state.value} "
            f"in-flight {self._in_flight}/{self._capacity} queued {self._held} "
            f"emitted {self._emitted}>"
        )

    # ------------------------------------------------------------------ bare values
    # The iterator helpers feed bare values and take bare outputs: no Record per element.

    async def _open_values(self, emit: Emit) -> None:
        self._raw = True
        await self.open(emit)

    def _put_value_nowait(self, value: Any) -> bool:
        """Admit ``value`` if a slot is free; False when full."""
        if self._state is not _State.OPEN or self._failure is not None:
            self._raise_state()
        if self._held >= self._capacity:
            return False
        key = None if self._key is None else self._key_of(value, None)
        self._admit(QueueEntry(None, value, key))
        return True

    def _offer(self, record: Record[IN]) -> bool:
        """``process_element`` without the await: admit ``record`` if a slot is free.

        Returns False, admitting nothing, when the operator is full (the caller then awaits
        ``process_element``). For the dataflow runtime, which only passes Records.
        """
        if self._state is not _State.OPEN or self._failure is not None:
            self._raise_state()
        if self._held >= self._capacity:
            return False
        value = record.value
        key = None if self._key is None else self._key_of(value, record)
        try_now = self._try_now
        if try_now is not None and not self._emitting and self._queue.can_pass(key):
            outputs = try_now(value)
            if outputs is not None:
                self._pass(record, outputs)
                return True
        self._admit(QueueEntry(record, value, key))
        return True

    def _pass(self, record: Record[IN], outputs: list[Any]) -> None:
        """Emit the outputs of ``record``, complete at admission, as the queue would have.

        Only when it would have been the next to leave (``can_pass``), so the order is the
        mode's; it never holds a slot, a deadline or a queue entry.
        """
        self._admitted += 1
        self._emitted += 1
        if self._admitted % _LATENCY_SAMPLE == 0:
            self.metrics.latency.observe(0.0)  # complete at admission: no wait
        emit = self._emit
        timestamp = record.timestamp
        try:
            for out in outputs:
                emit(Record(out, timestamp))  # never awaitable: see _sync_emit
        except Exception as exc:
            self._break_emit(exc)

    async def _put_value(self, value: Any) -> None:
        """Admit ``value``, waiting for a slot."""
        if not self._put_value_nowait(value):
            key = None if self._key is None else self._key_of(value, None)
            await self._wait_for_space(Record(value))
            self._admit(QueueEntry(None, value, key))

    # ------------------------------------------------------------------ admission

    def _key_of(self, value: Any, record: Record[Any] | None) -> Hashable:
        assert self._key is not None  # callers check
        try:
            key = self._key(value)
            hash(key)
        except Exception as exc:
            element = Record(value) if record is None else record
            msg = f"{self.name}: key function failed on {_short_repr(element)}: {exc!r}"
            raise AsyncFunctionError(msg, element) from exc
        return key

    async def _wait_for_space(self, element: StreamElement) -> None:
        loop = self._loop
        assert loop is not None  # state OPEN implies open() set the loop
        self._blocked = element
        try:
            while self._held >= self._capacity:
                fut = self._space
                if fut is None or fut.done():
                    fut = self._space = loop.create_future()
                await fut
                if self._state is not _State.OPEN or self._failure is not None:
                    self._raise_state()
        finally:
            self._blocked = None

    def _admit(self, entry: QueueEntry) -> None:
        self._in_flight += 1
        self._held += 1
        self._admitted += 1
        entry.seq = seq = self._admitted
        start = self._queue.put(entry)
        timeout = self._timeout
        if timeout is not None:
            # Deadlines are admission time + one fixed timeout: they arrive in order.
            assert self._loop is not None  # state OPEN implies open() set the loop
            entry.deadline = self._loop.time() + timeout
            deadlines = self._deadlines
            while deadlines and deadlines[0].final:
                deadlines.popleft()
            if len(deadlines) > 2 * self._capacity + 16:
                # Completed entries behind a slow head: drop them (amortised O(1) per
                # element, since at most `capacity` are not final).
                deadlines = self._deadlines = deque(e for e in deadlines if not e.final)
            deadlines.append(entry)
            if self._timer is None:
                self._timer = self._loop.call_at(entry.deadline, self._on_deadline)
        if seq % _LATENCY_SAMPLE == 0:
            assert self._loop is not None  # state OPEN implies open() set the loop
            entry.admitted = self._loop.time()
        if start:
            self._start(entry)

    def _closed(self) -> bool:
        return self._state is _State.CLOSED

    def _raise_state(self) -> None:
        if self._state is _State.CLOSED:
            msg = f"{self.name}: the operator is closed"
            raise ClosedError(msg)
        if self._state is _State.NEW:
            msg = f"{self.name}: call open() first"
            raise AsyncWaitError(msg)
        assert self._failure is not None  # the only other reason to be here
        raise self._failure

    # ------------------------------------------------------------------ invocation

    def _start(self, entry: QueueEntry) -> None:
        """Start ``entry``'s call, or queue it for a worker and make sure one will look."""
        if entry.state is _WAITING:  # WAITING -> RUNNING: always a legal move
            entry.state = _RUNNING
        else:
            entry.transition(_RUNNING)
        entry.attempt += 1
        submit = self._fn.submit
        if submit is not None and not self._submitting:
            # The function's callback form needs no task: start the call here, and settle
            # it here when it completes at once (a cache hit). A start nested in such a
            # settle (the next entry of a key) goes to a worker, so chains of them never
            # deepen the stack.
            self._submit(submit, entry)
            return
        self._ready.append(entry)
        # A worker inside its synchronous span takes the entry itself before it next
        # suspends; otherwise wake as many workers as the ready entries will need (when
        # no call has suspended lately, that is one: skip the arithmetic).
        if not self._worker_active and (self._suspend_rate or not self._waking):
            self._dispatch()

    def _wake_worker(self) -> bool:
        self._waking += 1
        if self._idle_workers:
            self._idle_workers.pop().set_result(None)
            return True
        if len(self._workers) < self._capacity:
            assert self._loop is not None  # state OPEN implies open() set the loop
            worker = self._loop.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
            return True
        self._waking -= 1  # every worker is busy; the first to finish takes the entry
        return False

    def _dispatch(self) -> None:
        """Make sure enough workers will look at the ready entries.

        One worker runs ready entries back to back until a call suspends. So the entries
        need about ``len(ready) * suspend_rate`` workers: one when calls complete at once
        (cache hits), one per entry when every call waits on I/O. A worker whose call
        suspends calls this again for whatever is left.
        """
        want = len(self._ready)
        rate = self._suspend_rate
        if rate < _MOSTLY:
            if not want:
                return
            want = math.ceil(want * rate) or 1
        while self._waking < want and self._wake_worker():
            pass

    async def _work(self) -> None:
        """A worker: runs ready entries one after another, then waits for more.

        Workers replace a task per element, and a call is driven by hand up to its first
        suspension: a call that completes without suspending costs no loop iteration and
        wakes nobody. There are never more workers than ``capacity``.
        """
        loop = self._loop
        assert loop is not None  # state OPEN implies open() set the loop
        me = asyncio.current_task()
        assert me is not None  # a worker always runs as a task
        ready = self._ready
        call = self._call
        submit = self._fn.submit
        calls = 0
        self._waking -= 1
        try:
            while self._state is _State.OPEN:
                self._worker_active = True
                while ready:
                    entry = ready.popleft()
                    if entry.state is not _RUNNING or entry.task is not None:
                        continue  # timed out (or already taken) before its turn
                    attempt = entry.attempt
                    if submit is not None:
                        self._submit(submit, entry)
                        continue
                    entry.task = me
                    try:
                        awaitable = call(entry.value)
                        calls += 1
                        if self._suspend_rate > _MOSTLY and calls % _SAMPLE:
                            # Nearly every call waits on I/O: await it directly rather than
                            # drive its first step by hand (every _SAMPLE-th call still goes
                            # by hand to keep the suspend rate current). _start has already
                            # woken a worker per ready entry.
                            self._worker_active = False
                            result = await awaitable
                            self._worker_active = True
                        elif type(awaitable) is _CoroutineType:
                            try:
                                yielded = awaitable.send(None)
                            except StopIteration as stop:
                                result = stop.value
                                self._suspend_rate *= _RATE_KEEP
                            else:
                                self._suspend_rate = self._suspend_rate * _RATE_KEEP + _RATE_NEW
                                self._dispatch()
                                self._worker_active = False
                                result = await _resume(awaitable, yielded)
                                self._worker_active = True
                        else:
                            self._suspend_rate = self._suspend_rate * _RATE_KEEP + _RATE_NEW
                            self._dispatch()
                            self._worker_active = False
                            result = await awaitable
                            self._worker_active = True
                    except asyncio.CancelledError as exc:
                        self._worker_active = True
                        if self._state is not _State.OPEN:
                            raise  # close()
                        if entry.task is me:
                            if me.cancelling():
                                raise  # not a cancellation of this element
                            # Nobody cancelled us: the call raised CancelledError of its
                            # own (e.g. it awaited a future someone else cancelled).
                            entry.task = None
                            self._fail(entry, exc)
                            continue
                        # _revoke cancelled this element's call; the worker carries on.
                        me.uncancel()
                        continue
                    except Exception as exc:
                        self._worker_active = True
                        if entry.task is me and entry.attempt == attempt:
                            entry.task = None
                            self._on_exception(entry, exc)
                        elif me.cancelling():
                            me.uncancel()  # revoked; the call turned it into an exception
                        continue
                    if entry.task is me and entry.attempt == attempt:
                        entry.task = None
                        self._on_result(entry, result)
                    elif me.cancelling():
                        me.uncancel()  # revoked, but the call swallowed the cancellation
                self._worker_active = False
                if self._state is not _State.OPEN:
                    break
                if self._suspend_rate > 0.5:
                    # The slots this worker freed wake the feeder in the next iteration:
                    # yield once, behind it, to take its new entries without a wake-up.
                    self._waking += 1
                    await asyncio.sleep(0)
                    self._waking -= 1
                    if ready:
                        continue
                idle = loop.create_future()
                self._idle_workers.append(idle)
                await idle
                self._waking -= 1
        finally:
            self._worker_active = False

    def _submit(
        self, submit: Callable[[Any, Any, Callable[..., None]], Any], entry: QueueEntry
    ) -> None:
        """Start ``entry``'s call through the function's callback form (no task per call)."""
        self._submitting = True
        try:
            outcome = submit(entry.value, entry, self._delivered)
        except Exception as exc:
            self._on_exception(entry, exc)
            return
        else:
            if type(outcome) is list:
                self._on_fresh_result(entry, outcome)
            else:
                entry.task = outcome  # the pending call's handle: _revoke cancels it
        finally:
            self._submitting = False

    def _delivered(
        self, entry: QueueEntry, handle: Any, outputs: Any, exc: BaseException | None
    ) -> None:
        """The outcome of a call started by :meth:`_submit`."""
        if entry.task is not handle or self._state is not _State.OPEN:
            return  # revoked (timed out) or closed meanwhile
        entry.task = None
        if exc is None:
            self._on_fresh_result(entry, outputs)
        elif isinstance(exc, Exception):
            self._on_exception(entry, exc)
        else:
            self._fail(entry, exc)

    def _on_fresh_result(self, entry: QueueEntry, outputs: list[Any]) -> None:
        """``_on_result`` for the callback form, whose output lists are new: no copy needed."""
        if self._retry.on_result is None:
            self._settle(entry, _DONE, outputs)
        else:
            self._on_result(entry, outputs)

    def _revoke(self, entry: QueueEntry) -> None:
        """Stop ``entry``'s running call or pending retry; any late result is ignored."""
        worker = entry.task
        if worker is not None:
            entry.task = None
            worker.cancel()
        if entry.handle is not None:
            entry.handle.cancel()
            entry.handle = None

    def _on_result(self, entry: QueueEntry, result: Any) -> None:
        if self._fn.single:
            outputs: tuple[Any, ...] = (result,)
        else:
            try:
                outputs = tuple(result)
            except TypeError as exc:
                self._fail(entry, self._not_iterable("async_invoke", entry, result, exc))
                return
        retry = self._retry
        on_result = retry.on_result
        if on_result is not None and entry.attempt <= retry.max_retries:
            try:
                again = on_result(outputs)
            except Exception as exc:
                self._fail(entry, exc)
                return
            if again:
                self._schedule_retry(entry)
                return
        self._settle(entry, _DONE, outputs)

    def _on_exception(self, entry: QueueEntry, exc: Exception) -> None:
        reject = self._reject_bad_input
        if reject is not None and isinstance(exc, BadInputError):
            self._settle(entry, _DONE, reject(entry.element(), exc))
            return
        retry = self._retry
        on_exception = retry.on_exception
        if on_exception is not None and entry.attempt <= retry.max_retries:
            try:
                again = on_exception(exc)
            except Exception as predicate_exc:
                self._fail(entry, predicate_exc)
                return
            if again:
                self._schedule_retry(entry)
                return
        self._fail(entry, exc)

    def _schedule_retry(self, entry: QueueEntry) -> None:
        entry.transition(EntryState.RETRY_WAIT)
        entry.task = None
        delay = self._retry.backoff(entry.attempt, self._rng)
        assert self._loop is not None  # state OPEN implies open() set the loop
        entry.handle = self._loop.call_later(delay, self._retry_now, entry)

    def _retry_now(self, entry: QueueEntry) -> None:
        entry.handle = None
        if self._state is _State.OPEN and entry.state is EntryState.RETRY_WAIT:
            self._retries += 1
            self._start(entry)

    # ------------------------------------------------------------------ timeouts

    def _on_deadline(self) -> None:
        self._timer = None
        loop = self._loop
        if self._state is not _State.OPEN or loop is None:
            return
        limit = loop.time() + _TICK
        deadlines = self._deadlines
        while deadlines:
            entry = deadlines[0]
            if entry.final or entry.state is _TIMING_OUT:
                deadlines.popleft()
            elif entry.deadline > limit:
                self._timer = loop.call_at(entry.deadline, self._on_deadline)
                return
            else:
                deadlines.popleft()
                self._time_out(entry)
                if self._state is not _State.OPEN:
                    return

    def _time_out(self, entry: QueueEntry) -> None:
        self._timeouts += 1
        self._revoke(entry)
        if entry.state is _WAITING:
            self._queue.withdraw(entry)
        entry.transition(_TIMING_OUT)
        try:
            outcome = self._fn.on_timeout(entry.value)
        except Exception as exc:
            self._fail(entry, exc)
            return
        if inspect.isawaitable(outcome):
            assert self._loop is not None  # state OPEN implies open() set the loop
            entry.task = self._loop.create_task(self._await_timeout(entry, outcome))
        else:
            self._timeout_outcome(entry, outcome)

    async def _await_timeout(self, entry: QueueEntry, outcome: Awaitable[Any]) -> None:
        try:
            result = await outcome
        except asyncio.CancelledError as exc:
            me = asyncio.current_task()
            if self._state is not _State.OPEN or (me is not None and me.cancelling()):
                raise  # close()
            if entry.state is _TIMING_OUT:
                self._fail(entry, exc)  # the hook raised CancelledError of its own
            return
        except Exception as exc:
            if entry.state is _TIMING_OUT and self._state is _State.OPEN:
                self._fail(entry, exc)
            return
        if entry.state is _TIMING_OUT and self._state is _State.OPEN:
            self._timeout_outcome(entry, result)

    def _timeout_outcome(self, entry: QueueEntry, result: Any) -> None:
        try:
            outputs = tuple(result)
        except TypeError as exc:
            self._fail(entry, self._not_iterable("timeout", entry, result, exc))
            return
        self._settle(entry, _DONE, outputs)

    # ------------------------------------------------------------------ outcomes

    def _not_iterable(
        self, method: str, entry: QueueEntry, result: Any, exc: Exception
    ) -> TypeError:
        msg = (
            f"{self._fn.label}.{method}() returned {_short_repr(result)} for "
            f"{_short_repr(entry.value)}; it must return an iterable of outputs (e.g. a list)"
        )
        error = TypeError(msg)
        error.__cause__ = exc
        return error

    def _fail(self, entry: QueueEntry, exc: BaseException) -> None:
        self._failures += 1
        if self._failure is None:
            record = entry.element()
            assert isinstance(record, Record)  # only records fail
            reason = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, AsyncTimeoutError):
                reason = f"timed out after {self._timeout} s ({reason})"
            msg = f"{self.name}: could not complete {_short_repr(record)}: {reason}"
            error = AsyncFunctionError(msg, record)
            error.__cause__ = exc
            self._failure = error
            self._wake()
        self._settle(entry, EntryState.FAILED, ())

    def _settle(
        self, entry: QueueEntry, state: EntryState, outputs: tuple[Any, ...] | list[Any]
    ) -> None:
        """``entry`` reached its final ``state`` with ``outputs``: let it go."""
        entry.outputs = outputs
        if entry.state is _RUNNING:  # RUNNING -> DONE | FAILED: always a legal move
            entry.state = state
            entry.final = True
        else:
            entry.transition(state)
        entry.task = None
        self._in_flight -= 1
        if entry.admitted:
            assert self._loop is not None  # state OPEN implies open() set the loop
            self.metrics.latency.observe(self._loop.time() - entry.admitted)
        nxt = self._queue.complete(entry)
        if nxt is not None:
            self._start(nxt)
        self._drain()

    # ------------------------------------------------------------------ emission

    def _emissions(self, entry: QueueEntry) -> tuple[Any, ...] | list[Any]:
        """What `emit` receives for ``entry``, in order."""
        element = entry.input
        if self._raw:
            return entry.outputs
        if element is None:
            return [Record(out) for out in entry.outputs]
        if type(element) is Watermark:
            return (element,)
        timestamp = element.timestamp
        return [Record(out, timestamp) for out in entry.outputs]

    def _drain(self) -> None:
        """Emit every entry the queue lets go, synchronously while `emit` does not await."""
        if self._emitting or self._emit_broken or self._state is not _State.OPEN:
            return
        self._emitting = True
        queue = self._queue
        emit = self._emit
        raw = self._raw
        try:
            while (entry := queue.pop_completed()) is not None:
                outputs = entry.outputs
                element = entry.input
                if raw:
                    emissions = outputs
                elif len(outputs) == 1 and element is not None and type(element) is not Watermark:
                    emissions = (Record(outputs[0], element.timestamp),)  # the common case
                else:
                    emissions = self._emissions(entry)
                i = 0  # not enumerate(): one object less per entry on the hot path
                for out in emissions:
                    i += 1  # noqa: SIM113
                    pending = emit(out)
                    if pending is not None:
                        # Hand the rest over to a task that awaits; _emitting stays True.
                        self._emitting_entry = entry
                        assert self._loop is not None  # state OPEN implies open() set it
                        self._emitter = self._loop.create_task(
                            self._emit_awaiting(pending, emissions, i, entry)
                        )
                        return
                # The entry is out: its slot frees (as _release, inline on this hot path).
                self._emitted += 1
                self._held -= 1
                space = self._space
                if space is not None and not space.done():
                    space.set_result(None)
        except Exception as exc:
            self._emitting = False
            self._break_emit(exc)
            return
        self._emitting = False
        if not self._held:
            self._wake_idle()

    async def _emit_awaiting(
        self,
        pending: Awaitable[None],
        emissions: tuple[Any, ...] | list[Any],
        start: int,
        entry: QueueEntry,
    ) -> None:
        emit = self._emit
        queue = self._queue
        try:
            await pending
            for element in emissions[start:]:
                pending2 = emit(element)
                if pending2 is not None:
                    await pending2
            self._emitting_entry = None
            self._release()
            while self._state is _State.OPEN and (nxt := queue.pop_completed()) is not None:
                self._emitting_entry = nxt
                for element in self._emissions(nxt):
                    pending2 = emit(element)
                    if pending2 is not None:
                        await pending2
                self._emitting_entry = None
                self._release()
        except Exception as exc:
            self._break_emit(exc)
        finally:
            self._emitting = False
            self._emitter = None
        if not self._held:
            self._wake_idle()

    def _release(self) -> None:
        """An entry is out: its slot frees."""
        self._emitted += 1
        self._held -= 1
        space = self._space
        if space is not None and not space.done():
            space.set_result(None)

    def _break_emit(self, exc: Exception) -> None:
        # The downstream is broken: stop emitting and report its error as it is.
        self._emit_broken = True
        if self._failure is None:
            self._failure = exc
        self._wake()

    def _wake_idle(self) -> None:
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)

    def _wake(self) -> None:
        """Wake every waiting call so it can see a failure or the close."""
        for fut in (self._space, self._idle):
            if fut is not None and not fut.done():
                fut.set_result(None)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Finish awaiting ``coro`` after its first step was driven by hand with ``send``.

    Passes what the coroutine yields to the task and what the task sends or throws back,
    exactly as ``await coro`` would have done from the start.
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def _admission_order(entry: QueueEntry) -> int:
    return entry.seq


def _unset_emit(element: Any) -> None:
    msg = "the operator is not open"
    raise AsyncWaitError(msg)
