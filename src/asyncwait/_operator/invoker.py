"""Starting calls: the callback form inline, coroutines on workers (private).

Flink runs every callback of its async operator on the task's mailbox thread. Here the
event loop is the mailbox, and the invoker decides how each call gets there::

    start(entry) ─► callback form? ─yes─► start_call(key, value, deliver) inline
         │                                   ├─ outputs now (a cache hit) ─► settle
         │                                   └─ a handle ─► deliver(...) later ─► settle
         └─no─► ready queue ─► a worker takes it ─► call(value), driven by hand up to its
                                first suspension; a call that never suspends costs no loop
                                iteration and wakes nobody

Workers replace a task per element. There are never more of them than ``capacity``, and
how many are woken follows the share of calls that suspend (a moving average): one when
calls complete at once, one per ready entry when every call waits on I/O.
"""

from __future__ import annotations

import asyncio
import math
import types
from collections import deque
from collections.abc import Coroutine, Generator
from typing import Any, Final, final

from .._tasks import TaskOwner
from ..function import CallbackFunction
from ..queues import EntryState, QueueEntry
from .adapter import Adapted
from .attempts import AttemptClock
from .outcome import Outcomes

__all__ = ("KEY_FAILED", "Invoker")

_RUNNING: Final = EntryState.RUNNING
_WAITING: Final = EntryState.WAITING
_CoroutineType: Final = types.CoroutineType
# The suspend rate is a moving average over roughly the last 16 calls.
_RATE_NEW: Final = 1 / 16
_RATE_KEEP: Final = 1 - _RATE_NEW
# Above this suspend rate, workers await calls directly, driving one in _SAMPLE by hand.
_MOSTLY: Final = 0.9
_SAMPLE: Final = 16


class _KeyFailed:
    """The key of an entry whose key could not be taken at admission (see the operator)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<key failed>"


KEY_FAILED: Final = _KeyFailed()
"""Stands for the key of an element whose key function raised; its call raises again."""


@final
class Invoker:
    """Starts the calls of admitted entries.

    Args:
        fn: the adapted user function.
        outcomes: where each call's outcome goes.
        capacity: the most workers.
        name: the operator's name, in the workers' task names.
        keyed: the entries' keys are the callback form's keys (``KEY_ORDERED`` by the join
            key): calls start with ``start_keyed``; else with ``start_call``.
    """

    __slots__ = (
        "_call",
        "_callback",
        "_capacity",
        "_idle_workers",
        "_keyed",
        "_outcomes",
        "_ready",
        "_suspend_rate",
        "_waking",
        "_worker_active",
        "attempts",
        "open",
        "submitting",
        "workers",
    )

    def __init__(
        self,
        fn: Adapted,
        outcomes: Outcomes,
        capacity: int,
        name: str,
        *,
        keyed: bool,
    ) -> None:
        self._call = fn.invoke
        self._callback: CallbackFunction | None = fn.callback
        self._outcomes = outcomes
        self._capacity = capacity
        # Owns the workers: close() cancels them and waits until every one has ended.
        self.workers = TaskOwner(f"{name} workers")
        self._keyed = keyed
        self.open = False
        self.attempts: AttemptClock | None = None  # per-attempt deadlines, when configured
        # `_ready` holds started entries no worker has taken yet; `_waking` counts workers
        # woken or spawned that have not looked at it.
        self._ready: deque[QueueEntry] = deque()
        self._idle_workers: list[asyncio.Future[None]] = []
        self._waking = 0
        self._worker_active = False  # a worker runs its synchronous span right now
        # A call is being started through the callback form (or its immediate result
        # settled): a start nested in it goes to a worker, so chains never deepen the stack.
        self.submitting = False
        # Moving average of the share of calls that suspend (see dispatch).
        self._suspend_rate = 0.0

    def stop(self) -> None:
        """The operator closes: forget the ready entries and wake idle workers to exit."""
        self.open = False
        self._ready.clear()
        for idle in self._idle_workers:
            if not idle.done():
                idle.set_result(None)
        self._idle_workers.clear()

    # ------------------------------------------------------------------ starting

    def start(self, entry: QueueEntry) -> None:
        """Start ``entry``'s call, or queue it for a worker and make sure one will look."""
        if entry.state is _WAITING:  # WAITING -> RUNNING: always a legal move
            entry.state = _RUNNING
        else:
            entry.transition(_RUNNING)
        entry.attempt += 1
        if self.attempts is not None:
            self.attempts.started(entry)
        if self._callback is not None and not self.submitting:
            # The callback form needs no task: start the call here, and settle it here when
            # it completes at once (a cache hit). A start nested in such a settle (the next
            # entry of a key) goes to a worker, so chains of them never deepen the stack.
            self.submit(entry)
            return
        self._ready.append(entry)
        # A worker inside its synchronous span takes the entry itself before it next
        # suspends; otherwise wake as many workers as the ready entries will need (when
        # no call has suspended lately, that is one: skip the arithmetic).
        if not self._worker_active and (self._suspend_rate or not self._waking):
            self.dispatch()

    def submit(self, entry: QueueEntry) -> None:
        """Start ``entry``'s call through the callback form (no task per call)."""
        callback = self._callback
        assert callback is not None  # start() checks
        outcomes = self._outcomes
        self.submitting = True
        try:
            if not self._keyed:
                outcome = callback.start_call(entry.value, outcomes.delivered)
            else:
                key = entry.key
                if key is KEY_FAILED:
                    key = callback.key_of(entry.value)  # raises again, as at admission
                outcome = callback.start_keyed(key, entry.value, outcomes.delivered)
        except Exception as exc:
            outcomes.on_exception(entry, exc)
            return
        else:
            if type(outcome) is list:
                outcomes.on_fresh_result(entry, outcome)
            else:
                entry.task = outcome  # the pending call's handle: revoke() cancels it
                outcome.token = entry  # type: ignore[union-attr]
        finally:
            self.submitting = False

    # ------------------------------------------------------------------ workers

    def _wake_worker(self) -> bool:
        self._waking += 1
        if self._idle_workers:
            self._idle_workers.pop().set_result(None)
            return True
        if len(self.workers) < self._capacity:
            self.workers.spawn(self._work(), "worker")
            return True
        self._waking -= 1  # every worker is busy; the first to finish takes the entry
        return False

    def dispatch(self) -> None:
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

        A call is driven by hand up to its first suspension: a call that completes without
        suspending costs no loop iteration and wakes nobody.
        """
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None  # a worker always runs as a task
        ready = self._ready
        call = self._call
        outcomes = self._outcomes
        callback = self._callback
        calls = 0
        self._waking -= 1
        try:
            while self.open:
                self._worker_active = True
                while ready:
                    entry = ready.popleft()
                    if entry.state is not _RUNNING or entry.task is not None:
                        continue  # timed out (or already taken) before its turn
                    attempt = entry.attempt
                    if callback is not None:
                        self.submit(entry)
                        continue
                    entry.task = me
                    try:
                        awaitable = call(entry.value)
                        calls += 1
                        if self._suspend_rate > _MOSTLY and calls % _SAMPLE:
                            # Nearly every call waits on I/O: await it directly rather than
                            # drive its first step by hand (every _SAMPLE-th call still goes
                            # by hand to keep the suspend rate current). start() has already
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
                                self.dispatch()
                                self._worker_active = False
                                result = await _resume(awaitable, yielded)
                                self._worker_active = True
                        else:
                            self._suspend_rate = self._suspend_rate * _RATE_KEEP + _RATE_NEW
                            self.dispatch()
                            self._worker_active = False
                            result = await awaitable
                            self._worker_active = True
                    except asyncio.CancelledError as exc:
                        self._worker_active = True
                        if not self.open:
                            raise  # close()
                        if entry.task is me:
                            if me.cancelling():
                                raise  # not a cancellation of this element
                            # Nobody cancelled us: the call raised CancelledError of its
                            # own (e.g. it awaited a future someone else cancelled).
                            entry.task = None
                            outcomes.fail(entry, exc)
                            continue
                        # revoke() cancelled this element's call; the worker carries on.
                        me.uncancel()
                        continue
                    except Exception as exc:
                        self._worker_active = True
                        if entry.task is me and entry.attempt == attempt:
                            entry.task = None
                            outcomes.on_exception(entry, exc)
                        elif me.cancelling():
                            me.uncancel()  # revoked; the call turned it into an exception
                        continue
                    if entry.task is me and entry.attempt == attempt:
                        entry.task = None
                        outcomes.on_result(entry, result)
                    elif me.cancelling():
                        me.uncancel()  # revoked, but the call swallowed the cancellation
                self._worker_active = False
                if not self.open:
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

    def __repr__(self) -> str:
        return (
            f"<Invoker workers {len(self.workers)} ready {len(self._ready)} "
            f"suspend-rate {self._suspend_rate:.2f}>"
        )


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
