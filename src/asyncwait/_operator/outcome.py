"""What happens to an element once its call is started: Flink's ``ResultHandler`` (private).

Life of an element's call::

    start ─► result ──── retry on result? ─yes─► backoff timer ─► start ...
         │                     └─no──► settle DONE
         └─► exception ─ bad input? (runtime) ─► settle DONE with the rejection's outputs
                       └ retry on exception? ─yes─► backoff timer ─► start ...
                                    └─no──► fail ─► settle FAILED

    deadline passes first ─► revoke the call or the backoff ─► timeout() hook ─► settle

Deadlines are admission time + one fixed timeout, so they arrive in admission order: one
deque and one armed timer serve every element. ``settle`` is the one way out: it frees the
element's key for the next entry of that key and lets the emitter drain.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, final

from .._reprs import short_repr
from .._tasks import TaskOwner
from ..elements import Record, StreamElement
from ..errors import (
    AsyncFunctionError,
    AsyncTimeoutError,
    AttemptTimeoutError,
    BadInputError,
    CircuitOpenError,
)
from ..metrics import Histogram
from ..queues import ElementQueue, EntryState, QueueEntry
from ..retry import RetryStrategy
from .adapter import Adapted
from .attempts import AttemptClock
from .policy import ErrorPolicy

__all__ = ("LATENCY_SAMPLE", "Outcomes", "RejectBadInput")

_RUNNING: Final = EntryState.RUNNING
_DONE: Final = EntryState.DONE
_TIMING_OUT: Final = EntryState.TIMING_OUT
_WAITING: Final = EntryState.WAITING
# asyncio runs a timer up to one clock tick early; a deadline that close counts as passed.
_TICK: Final = time.get_clock_info("monotonic").resolution
# One element in this many is timed for the latency histogram (keeps the hot path cheap).
LATENCY_SAMPLE: Final = 8

RejectBadInput = Callable[[StreamElement, BadInputError], Iterable[Any]]
"""Turns an element whose call said its input is bad into that element's outputs."""


@final
class Outcomes:
    """Decides what each outcome of a call means for its element, and settles it.

    Args:
        name: the operator's name, in failures.
        fn: the adapted user function.
        queue: the operator's queue.
        retry: the retry strategy.
        timeout: the per-element deadline in seconds, or ``None``.
        capacity: the operator's capacity (bounds the deadline deque).
        latency: the histogram of admission-to-completion times (sampled).
        owner: owns the tasks of awaitable ``timeout()`` hooks.
    """

    __slots__ = (
        "_capacity",
        "_deadlines",
        "_fn",
        "_latency",
        "_loop",
        "_name",
        "_owner",
        "_queue",
        "_retry",
        "_rng",
        "_timer",
        "attempts",
        "drain",
        "failures",
        "in_flight",
        "on_failure",
        "open",
        "policy",
        "reject",
        "result_retries",
        "retries",
        "start",
        "timeout",
        "timeouts",
    )

    def __init__(
        self,
        name: str,
        fn: Adapted,
        queue: ElementQueue,
        retry: RetryStrategy,
        timeout: float | None,
        capacity: int,
        latency: Histogram,
        owner: TaskOwner,
    ) -> None:
        self._name = name
        self._fn = fn
        self._queue = queue
        self._retry = retry
        self.timeout = timeout
        self._capacity = capacity
        self._latency = latency
        self._owner = owner
        self._rng = random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.open = False
        # Wired by the operator: start an entry's next attempt, drain the emitter, record
        # the operator's failure, and (in a dataflow) turn bad input into outputs.
        self.start: Callable[[QueueEntry], None] = _unwired
        self.drain: Callable[[], None] = _nothing
        self.on_failure: Callable[[BaseException], None] = _nothing_with
        self.reject: RejectBadInput | None = None
        # What a final failure becomes (None: it fails the operator), and the clock of
        # per-attempt deadlines (None without attempt_timeout); set by the operator.
        self.policy: ErrorPolicy | None = None
        self.attempts: AttemptClock | None = None
        # Deadlines in admission order; entries that became final stay until they reach the
        # head (or until the deque is compacted), so arming one costs O(1).
        self._deadlines: deque[QueueEntry] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.in_flight = 0  # admitted records not yet final
        self.retries = 0
        self.result_retries = 0  # of which asked by on_result (e.g. a missing row)
        self.timeouts = 0
        self.failures = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` from now on."""
        self._loop = loop
        self.open = True

    def stop(self) -> None:
        """The operator closes: disarm the deadline timer; later outcomes are ignored."""
        self.open = False
        if self.attempts is not None:
            self.attempts.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines.clear()

    def deadlines_held(self) -> int:
        """Entries in the deadline deque (final ones not yet dropped included)."""
        return len(self._deadlines)

    # ------------------------------------------------------------------ admission

    def track(self, entry: QueueEntry) -> None:
        """A record entry was admitted: count it in flight, arm its deadline, maybe time it."""
        self.in_flight += 1
        loop = self._loop
        assert loop is not None  # bound at open
        timeout = self.timeout
        if timeout is not None:
            entry.deadline = loop.time() + timeout
            deadlines = self._deadlines
            while deadlines and deadlines[0].final:
                deadlines.popleft()
            if len(deadlines) > 2 * self._capacity + 16:
                # Completed entries behind a slow head: drop them (amortised O(1) per
                # element, since at most `capacity` are not final).
                deadlines = self._deadlines = deque(e for e in deadlines if not e.final)
            deadlines.append(entry)
            if self._timer is None:
                self._timer = loop.call_at(entry.deadline, self._on_deadline)
        if entry.seq % LATENCY_SAMPLE == 0:
            entry.admitted = loop.time()

    # ------------------------------------------------------------------ results

    def delivered(self, handle: Any, outputs: Any, exc: BaseException | None) -> None:
        """The outcome of a call started through the function's callback form."""
        entry: QueueEntry = handle.token
        if entry.task is not handle or not self.open:
            return  # revoked (timed out) or closed meanwhile
        entry.task = None
        if exc is None:
            self.on_fresh_result(entry, outputs)
        elif isinstance(exc, Exception):
            self.on_exception(entry, exc)
        else:
            self.fail(entry, exc)

    def on_fresh_result(self, entry: QueueEntry, outputs: list[Any]) -> None:
        """``on_result`` for the callback form, whose output lists are new: no copy needed."""
        if self._retry.on_result is None:
            self.settle(entry, _DONE, outputs)
        else:
            self.on_result(entry, outputs)

    def on_result(self, entry: QueueEntry, result: Any) -> None:
        """The call of ``entry``'s current attempt returned ``result``."""
        outputs: tuple[Any, ...] | list[Any]
        if self._fn.single:
            outputs = (result,)
        elif isinstance(result, list):
            outputs = result  # as returned: a list subclass may mean something to on_result
        else:
            try:
                outputs = tuple(result)
            except TypeError as exc:
                self.fail(entry, self._not_iterable("async_invoke", entry, result, exc))
                return
        retry = self._retry
        on_result = retry.on_result
        if on_result is not None and entry.attempt <= retry.max_retries:
            try:
                again = on_result(outputs)
            except Exception as exc:
                self.fail(entry, exc)
                return
            if again:
                self.result_retries += 1
                self._schedule_retry(entry)
                return
        self.settle(entry, _DONE, outputs)

    def on_exception(self, entry: QueueEntry, exc: Exception) -> None:
        """The call of ``entry``'s current attempt raised ``exc``."""
        reject = self.reject
        if reject is not None and isinstance(exc, BadInputError):
            self.settle(entry, _DONE, tuple(reject(entry.element(), exc)))
            return
        if isinstance(exc, CircuitOpenError):
            self.fail(entry, exc)  # refused without reaching the store: never retried
            return
        retry = self._retry
        on_exception = retry.on_exception
        if on_exception is not None and entry.attempt <= retry.max_retries:
            try:
                again = on_exception(exc)
            except Exception as predicate_exc:
                self.fail(entry, predicate_exc)
                return
            if again:
                self._schedule_retry(entry)
                return
        self.fail(entry, exc)

    def _schedule_retry(self, entry: QueueEntry) -> None:
        entry.transition(EntryState.RETRY_WAIT)
        entry.task = None
        delay = self._retry.backoff(entry.attempt, self._rng)
        assert self._loop is not None  # bound at open
        entry.handle = self._loop.call_later(delay, self._retry_now, entry)

    def _retry_now(self, entry: QueueEntry) -> None:
        entry.handle = None
        if self.open and entry.state is EntryState.RETRY_WAIT:
            self.retries += 1
            self.start(entry)

    def attempt_expired(self, entry: QueueEntry) -> None:
        """``entry``'s current attempt ran out of ``attempt_timeout``: abandon it, maybe retry."""
        if not self.open:
            return
        self.revoke(entry)
        attempts = self.attempts
        assert attempts is not None  # only its clock calls this
        msg = f"attempt {entry.attempt} timed out after {attempts.seconds} s"
        self.on_exception(entry, AttemptTimeoutError(msg))

    def revoke(self, entry: QueueEntry) -> None:
        """Stop ``entry``'s running call or pending retry; any late result is ignored."""
        task = entry.task
        if task is not None:
            entry.task = None
            task.cancel()
        if entry.handle is not None:
            entry.handle.cancel()
            entry.handle = None

    # ------------------------------------------------------------------ timeouts

    def _on_deadline(self) -> None:
        self._timer = None
        loop = self._loop
        if not self.open or loop is None:
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
                if not self.open:
                    return

    def _time_out(self, entry: QueueEntry) -> None:
        self.timeouts += 1
        self.revoke(entry)
        if entry.state is _WAITING:
            self._queue.withdraw(entry)
        entry.transition(_TIMING_OUT)
        try:
            outcome = self._fn.on_timeout(entry.value)
        except Exception as exc:
            self.fail(entry, exc)
            return
        if inspect.isawaitable(outcome):
            entry.task = self._owner.spawn(self._await_timeout(entry, outcome), "timeout()")
        else:
            self._timeout_outcome(entry, outcome)

    async def _await_timeout(self, entry: QueueEntry, outcome: Awaitable[Any]) -> None:
        try:
            result = await outcome
        except asyncio.CancelledError as exc:
            me = asyncio.current_task()
            if not self.open or (me is not None and me.cancelling()):
                raise  # close()
            if entry.state is _TIMING_OUT:
                self.fail(entry, exc)  # the hook raised CancelledError of its own
            return
        except Exception as exc:
            if entry.state is _TIMING_OUT and self.open:
                self.fail(entry, exc)
            return
        if entry.state is _TIMING_OUT and self.open:
            self._timeout_outcome(entry, result)

    def _timeout_outcome(self, entry: QueueEntry, result: Any) -> None:
        try:
            outputs = tuple(result)
        except TypeError as exc:
            self.fail(entry, self._not_iterable("timeout", entry, result, exc))
            return
        self.settle(entry, _DONE, outputs)

    # ------------------------------------------------------------------ final outcomes

    def _not_iterable(
        self, method: str, entry: QueueEntry, result: Any, exc: Exception
    ) -> TypeError:
        msg = (
            f"{self._fn.label}.{method}() returned {short_repr(result)} for "
            f"{short_repr(entry.value)}; it must return an iterable of outputs (e.g. a list)"
        )
        error = TypeError(msg)
        error.__cause__ = exc
        return error

    def fail(self, entry: QueueEntry, exc: BaseException) -> None:
        """``entry`` failed with ``exc`` for good: its ``on_error`` policy decides what it emits.

        Without a policy (FAIL) it settles as FAILED and the operator fails.
        """
        self.failures += 1
        record = entry.element()
        assert isinstance(record, Record)  # only records fail
        policy = self.policy
        if policy is not None:
            try:
                outputs = policy.route(record, entry.value, exc, entry.attempt)
            except Exception as routing:
                routing.__context__ = exc
                exc = routing  # the policy could not place it (e.g. max_errors): it fails
            else:
                if outputs is not None:
                    self.settle(entry, _DONE, outputs)
                    return
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, AsyncTimeoutError):
            reason = f"timed out after {self.timeout} s ({reason})"
        msg = f"{self._name}: could not complete {short_repr(record)}: {reason}"
        error = AsyncFunctionError(msg, record)
        error.__cause__ = exc
        self.on_failure(error)
        self.settle(entry, EntryState.FAILED, ())

    def settle(
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
        self.in_flight -= 1
        if entry.admitted:
            assert self._loop is not None  # bound at open
            self._latency.observe(self._loop.time() - entry.admitted)
        nxt = self._queue.complete(entry)
        if nxt is not None:
            self.start(nxt)
        self.drain()


def _unwired(entry: QueueEntry) -> None:  # pragma: no cover - wired before any start
    msg = "an operator part was used before the operator wired it (a bug in asyncwait)"
    raise AssertionError(msg)


def _nothing() -> None:
    return None


def _nothing_with(exc: BaseException) -> None:
    return None
