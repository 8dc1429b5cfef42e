"""In-flight coalescing and micro-batching of a lookup join's misses (private).

One :class:`Batcher` per join. Lookups of one key in flight together share one query
(coalescing); the keys missed during one loop iteration, and those missed while
``max_queries`` queries are in flight, go out together in one ``get_many``::

    key A misses ─► new batch [A] ─ (max_batch_wait timer, if any) ─┐
    key B misses ─► [A, B]                                         ├─► sent when due and a
    key A again ─► waits for A's answer (coalesced)                │   query slot is free
    key C misses ─► [A, B, C] ...                                  ┘

Queries run in tasks owned by the batcher, not by the elements: when an element times out
its lookup stops waiting while the query goes on for the others, and a query nobody waits
for any more is cancelled, so a hung query never holds a query slot.

A failed query fails every lookup waiting for it, once: only :class:`~asyncwait.BadInputError`
(a key the table cannot use) makes the batcher ask the batch's keys again one by one, so
that the bad key fails alone. Any other error (a failed connection, an answer the table
cannot read: :class:`~asyncwait.LookupFailedError`) is not asked again here; the operator's
retry strategy decides.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Final, Protocol, final

from .._gate import FlowGate
from .._tasks import TaskOwner
from ..errors import BadInputError, ClosedError, HttpStatusError
from ..function import Deliver
from ..lookups import LookupTable, Row
from ..metrics import Metrics

__all__ = ("MAX_REQUEUES", "Batch", "Batcher", "Handoff", "Waiter")

MAX_REQUEUES: Final = 5  # times one batch is sent again after "overloaded" (429/503)


class Waiter(Protocol):
    """What waits for a key's row: an ``asyncio.Future``, or a join's callback handle."""

    def done(self) -> bool: ...

    def set_result(self, result: Row | None, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


@final
class Handoff:
    """A lookup of the operator's callback form: hands its outcome to ``deliver``.

    Args:
        output: the join's outputs of an event and its row (counts the lookup).
        count_failure: counts a lookup that failed (``None``: withdrawn).
        value: the event.
        deliver: the operator's ``deliver(handle, outputs, error)``.
        batcher: the batcher it waits in.
    """

    __slots__ = (
        "batch",
        "batcher",
        "count_failure",
        "deliver",
        "finished",
        "output",
        "token",
        "value",
    )

    def __init__(
        self,
        output: Callable[[Any, Row | None], list[Any]],
        count_failure: Callable[[BaseException | None], None],
        value: Any,
        deliver: Deliver,
        batcher: Batcher,
    ) -> None:
        self.output = output
        self.count_failure = count_failure
        self.value = value
        self.deliver = deliver
        self.batcher = batcher
        self.token: Any = None  # the caller's, set once start_call returned this handle
        self.finished = False
        self.batch: Batch | None = None

    def done(self) -> bool:
        return self.finished

    def set_result(self, row: Row | None) -> None:
        self.finished = True
        self.batcher.waiting -= 1
        try:
            outputs = self.output(self.value, row)
        except Exception as exc:
            self.deliver(self, None, exc)
            return
        self.deliver(self, outputs, None)

    def set_exception(self, exception: BaseException) -> None:
        self.finished = True
        self.batcher.waiting -= 1
        self.count_failure(exception)
        self.deliver(self, None, exception)

    def cancel(self) -> None:
        """Withdraw the lookup (its element timed out): no outcome will be delivered."""
        if self.finished:
            return
        self.finished = True
        self.count_failure(None)
        batcher = self.batcher
        batcher.waiting -= 1
        if self.batch is not None:
            batcher.abandon(self.batch)


@final
class Batch:
    """The keys of one query, gathered until it is sent; ``task`` runs it once sent."""

    __slots__ = ("due", "keys", "requeued", "task", "timer")

    def __init__(self, due: bool) -> None:
        self.keys: list[Hashable] = []
        self.requeued = 0  # times the store answered "overloaded" and it was sent again
        self.task: asyncio.Task[None] | None = None
        # May be sent once a query slot is free: at once without max_batch_wait, else when
        # full or when ``timer`` (its max_batch_wait) fires.
        self.due = due
        self.timer: asyncio.TimerHandle | None = None


@final
class Batcher:
    """Gathers a join's missed keys into batches and queries the table for them.

    Args:
        table: the (open) lookup table.
        source: the join, in messages (``"<operator>: lookup join on <table>"``).
        metrics: the operator's metrics (counters ``lookups``, ``lookup_keys``,
            ``coalesced``, ``lookup_errors``).
        store: called with each key's answer before it is handed out (the cache's ``put``),
            or ``None``.
        batch_limit: the most keys per batch.
        max_batch_wait: seconds a new batch waits for more keys (0: the next loop iteration).
        max_queries: the most queries in flight.
        capacity: the operator's capacity: when that many lookups wait, no key can join a
            batch any more, so it is sent at once.
        gate: the join's flow control (rate limit, adaptive concurrency, breaker), asked
            before each query is sent and told how it ended; ``None``: none.
    """

    __slots__ = (
        "_batch_limit",
        "_batches",
        "_capacity",
        "_collecting",
        "_gate",
        "_gate_timer",
        "_in_flight",
        "_max_batch_wait",
        "_max_queries",
        "_metrics",
        "_pump_scheduled",
        "_queries",
        "_source",
        "_store",
        "_table",
        "coalesced",
        "errors",
        "keys",
        "lookups",
        "open",
        "waiting",
    )

    def __init__(
        self,
        table: LookupTable,
        source: str,
        metrics: Metrics,
        store: Callable[[Hashable, Row | None], None] | None,
        *,
        batch_limit: int,
        max_batch_wait: float,
        max_queries: int,
        capacity: int,
        gate: FlowGate | None = None,
    ) -> None:
        self._table = table
        self._gate = gate
        self._gate_timer: asyncio.TimerHandle | None = None  # a token is due: pump again
        self._source = source
        self._metrics = metrics
        self._store = store
        self._batch_limit = batch_limit
        self._max_batch_wait = max_batch_wait
        self._max_queries = max_queries
        self._capacity = capacity
        self.open = True
        # key -> (its batch, the lookups waiting for its answer). Invariant: a key is here
        # exactly from the moment it joins a batch until its outcome is handed out (or
        # nobody waits any more), and its batch holds it exactly once.
        self._in_flight: dict[Hashable, tuple[Batch, list[Waiter]]] = {}
        # The batch still taking keys (the last of _batches), or None.
        self._collecting: Batch | None = None
        self._batches: deque[Batch] = deque()  # gathered, not sent yet, in order
        self._pump_scheduled = False  # a call of _pump is due on the next loop iteration
        self._queries = TaskOwner(f"{source} queries")  # the batches being queried
        self.lookups = self.keys = self.coalesced = self.errors = 0
        # Lookups waiting for a query's answer (they hold operator slots). Whoever enlisted
        # a waiter decrements it once the waiter is answered or withdrawn.
        self.waiting = 0

    def in_flight(self) -> int:
        """Keys with a query in flight (or being gathered)."""
        return len(self._in_flight)

    async def close(self) -> None:
        """Fail the batches not sent yet (ClosedError) and cancel the queries in flight."""
        self.open = False
        if self._gate_timer is not None:
            self._gate_timer.cancel()
            self._gate_timer = None
        if self._batches:
            self._pump()  # fails the batches not sent yet, stops their timers
        # Let each query hand out its cancellation; our own cancellation still propagates.
        await self._queries.aclose()
        # A query cancelled before its task first ran never reached its handler: its
        # lookups still wait. Each lookup gets exactly one outcome.
        for key in list(self._in_flight):
            self._fail_key(key, ClosedError(f"{self._source} was closed before the lookup"))

    def enlist(self, key: Hashable, waiter: Waiter) -> Batch:
        """Make ``waiter`` wait for ``key``'s row: on a query in flight, or in a batch."""
        pending = self._in_flight.get(key)
        if pending is not None:
            self.coalesced += 1
            self._metrics.inc("coalesced")
            batch = pending[0]
            pending[1].append(waiter)
        else:
            collecting = self._collecting
            if collecting is not None and len(collecting.keys) < self._batch_limit:
                batch = collecting
            else:
                wait = self._max_batch_wait
                batch = self._collecting = Batch(due=not wait)
                self._batches.append(batch)
                if wait:
                    batch.timer = asyncio.get_running_loop().call_later(
                        wait, self._batch_due, batch
                    )
                else:
                    self._schedule_pump()
            batch.keys.append(key)
            self._in_flight[key] = (batch, [waiter])
        self.waiting += 1
        if not batch.due and (
            len(batch.keys) >= self._batch_limit or self.waiting >= self._capacity
        ):
            # Full, or every element the operator admits waits for us: no key can join.
            self._batch_due(batch)
        return batch

    def abandon(self, batch: Batch) -> None:
        """Drop ``batch`` when no lookup waits for any of its keys any more.

        A query nobody waits for is cancelled (a hung query must not hold a query slot and
        every later lookup of its keys); a batch not sent yet is forgotten.
        """
        in_flight = self._in_flight
        for key in batch.keys:
            pending = in_flight.get(key)
            if pending is None or pending[0] is not batch:
                return  # answered already
            if not all(waiter.done() for waiter in pending[1]):
                return  # someone still waits
        for key in batch.keys:
            del in_flight[key]
        if batch.task is not None:
            batch.task.cancel()
            return
        if batch.timer is not None:
            batch.timer.cancel()
        self._batches.remove(batch)
        if self._collecting is batch:
            self._collecting = None

    def _schedule_pump(self) -> None:
        if len(self._queries) < self._max_queries and not self._pump_scheduled:
            # Send on the next loop iteration: the lookups started alongside join in.
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _batch_due(self, batch: Batch) -> None:
        """Mark ``batch`` ready to send (its wait is over, or it is full)."""
        batch.due = True
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if self._batches and self._batches[0] is batch:
            self._schedule_pump()

    def _pump(self) -> None:
        """Send the due batches, while fewer than ``max_queries`` queries are in flight.

        Batches go out in the order they were started; only the last one (still collecting)
        can be not due yet, as each earlier one was full when the next began.
        """
        self._pump_scheduled = False
        batches = self._batches
        if not self.open:
            while batches:
                batch = batches.popleft()
                if batch.timer is not None:
                    batch.timer.cancel()
                msg = f"{self._source} was closed"
                self._fail(batch, ClosedError(msg))
            self._collecting = None
            return
        queries = self._queries
        gate = self._gate
        while batches and batches[0].due and len(queries) < self._max_queries:
            if gate is not None and not self._gate_allows(gate, len(queries)):
                break
            batch = batches.popleft()
            if batch is self._collecting:
                self._collecting = None
            task = batch.task = queries.spawn(self._query(batch), "query")
            task.add_done_callback(self._query_done)

    def _gate_allows(self, gate: FlowGate, in_flight: int) -> bool:
        """Whether the gate lets one more query go now; else pump again when it will."""
        loop = asyncio.get_running_loop()
        at = gate.next_send(loop.time(), in_flight)
        if at is None:
            return True
        # The rate limit: pump when the next token is due. The concurrency limit (at is
        # infinite): _query_done pumps when a query ends.
        if at != math.inf and self._gate_timer is None:
            self._gate_timer = loop.call_at(at, self._token_due)
        return False

    def _token_due(self) -> None:
        self._gate_timer = None
        if self._batches:
            self._pump()

    def _query_done(self, task: asyncio.Task[None]) -> None:
        # A query slot is free: send what gathered meanwhile (a bigger batch).
        if self._batches:
            self._pump()

    async def _query(self, batch: Batch) -> None:
        """Query the table for ``batch`` and hand every waiting lookup its outcome.

        Never raises: a failure goes to the lookups waiting for it.
        """
        table = self._table
        keys = batch.keys
        metrics = self._metrics
        self.lookups += 1
        self.keys += len(keys)
        metrics.inc("lookups")
        metrics.inc("lookup_keys", len(keys))
        rows: dict[Hashable, Row | Exception | None] = {}
        gate = self._gate
        clock = asyncio.get_running_loop().time
        started = 0.0 if gate is None else clock()
        try:
            if len(keys) == 1:
                rows[keys[0]] = await table.get(keys[0])
            else:
                try:
                    rows.update(await table.get_many(keys))
                except BadInputError:
                    # Some key cannot be used with this table: isolate it, one key at a time,
                    # so the other lookups of the batch still get their rows.
                    for key in keys:
                        self.lookups += 1
                        metrics.inc("lookups")
                        try:
                            rows[key] = await table.get(key)
                        except BadInputError as exc:
                            rows[key] = exc
        except Exception as exc:
            if gate is not None:
                now = clock()
                gate.ended(now, now - started, exc)
                if self._throttled(gate, batch, exc):
                    return
            self.errors += 1
            metrics.inc("lookup_errors")
            self._fail(batch, exc)
        except BaseException:
            # Cancelled: by close() (the lookups still waiting learn why), or abandoned.
            if gate is not None:
                now = clock()
                gate.abandoned(now, now - started)
            self._fail(batch, ClosedError(f"{self._source} was closed during the lookup"))
            raise
        else:
            if gate is not None:
                now = clock()
                gate.ended(now, now - started, None)
            self._answer(batch, rows)

    def _throttled(self, gate: FlowGate, batch: Batch, exc: Exception) -> bool:
        """Send ``batch`` again once the rate limit allows, if the store said it is overloaded.

        A 429/503 is the store asking to slow down, not a failed lookup: with a rate limit
        (which the answer just paused) the batch goes back to the front of the queue, up to
        ``MAX_REQUEUES`` times; the elements' own deadlines still apply.
        """
        if (
            not isinstance(exc, HttpStatusError)
            or exc.status not in (429, 503)
            or batch.requeued >= MAX_REQUEUES
            or not gate.rate_limited
        ):
            return False
        batch.requeued += 1
        batch.task = None
        self._metrics.inc("throttled")
        self._batches.appendleft(batch)  # _query_done pumps: the gate says when
        return True

    def _answer(self, batch: Batch, rows: dict[Hashable, Row | Exception | None]) -> None:
        """Store each key's row (or miss) and hand it to the lookups waiting for it."""
        in_flight = self._in_flight
        store = self._store
        for key in batch.keys:
            outcome = rows.get(key)
            pending = in_flight.get(key)
            if pending is None or pending[0] is not batch:
                continue  # abandoned meanwhile
            if isinstance(outcome, Exception):
                self._fail_key(key, outcome)
                continue
            if store is not None:
                store(key, outcome)
            del in_flight[key]
            for waiter in pending[1]:
                if not waiter.done():  # done: its element timed out or was cancelled
                    waiter.set_result(outcome)

    def _fail(self, batch: Batch, error: BaseException) -> None:
        """Hand ``error`` to every lookup still waiting for a key of ``batch``."""
        for key in batch.keys:
            pending = self._in_flight.get(key)
            if pending is not None and pending[0] is batch:
                self._fail_key(key, error)

    def _fail_key(self, key: Hashable, error: BaseException) -> None:
        for waiter in self._in_flight.pop(key)[1]:
            if not waiter.done():
                waiter.set_exception(error)
