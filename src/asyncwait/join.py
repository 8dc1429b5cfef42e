"""The lookup join: enrich each event with the row of its key from a lookup table.

The dimension-table join of the seed scenario: browse events
``{"userID": "user_1", "eventType": "browse", ...}`` joined with ``dim_user`` by user id give
``{..., "age": 22}``. :class:`LookupJoin` is an :class:`~asyncwait.AsyncFunction`, so the
operator running it decides ordering, capacity, timeouts and retries.

Life of one lookup::

    event ─on(event)─► key ─cache.get─► hit ──────────────────────────────────────► output
                                 │
                                 └─ MISS ─► key in flight? ─yes─► wait for its answer ─► output
                                               │ no                        ▲
                                               ▼                           │
                       join the batch being gathered                       │
                       ─► (next loop iteration, or when a query slot frees)│
                       ─► table.get(key) / table.get_many(keys) ─► cache.put

Lookups of one key in flight together share one query (in-flight coalescing). Keys are
batched: the keys missed during one loop iteration, and those missed while the previous
query is still in flight, go out in one ``get_many`` (one round trip for up to
``max_batch_size`` keys; over aiosqlite this lifts throughput about 3x, see
``bench/lookups.py``). With ``max_batch_wait`` > 0 a new batch also waits up to that long
for more keys before it is sent (sooner when full)::

    key A misses ─► new batch [A] ─ timer max_batch_wait ─┐
    key B misses ─► [A, B]                                ├─► sent when the timer fires,
    key C misses ─► [A, B, C] ...                         │   or at once when it is full,
                                                          ┘   and a query slot is free

A failed query fails every lookup waiting for it and is not cached; a key the table cannot
use (``BadInputError`` from ``get_many``) is retried alone, so it fails only its own lookups.
"""

from __future__ import annotations

import asyncio
import enum
import math
import operator
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, final

from .cache import MISS, CacheSpec, CacheStatistics
from .errors import BadInputError, ClosedError, ConfigError, _short_repr
from .function import AsyncFunction, RuntimeContext
from .lookups._base import LookupTable, PooledTable, Row
from .metrics import Metrics

__all__ = ("JoinStatistics", "JoinType", "LookupJoin")


class JoinType(enum.Enum):
    """What a lookup join emits for an event whose key has no row."""

    LEFT = "left"  # the event anyway: unchanged, or with the join's columns set to None
    INNER = "inner"  # nothing: the event is dropped


@final
@dataclass(frozen=True, slots=True)
class JoinStatistics:
    """A snapshot of a :class:`LookupJoin`'s counters.

    Attributes:
        lookups: queries sent to the table (a ``get``, or a ``get_many`` for a batch).
        keys: keys sent to the table in those queries.
        coalesced: lookups that waited for another lookup's query of the same key.
        lookup_errors: queries that failed.
        in_flight: keys with a query in flight (or being gathered) now.
        cache: the cache's statistics, or ``None`` without a cache (or before ``open``).
    """

    lookups: int
    keys: int
    coalesced: int
    lookup_errors: int
    in_flight: int
    cache: CacheStatistics | None


class _State(enum.Enum):
    NEW = "new"  # constructed; open() not called yet
    OPEN = "open"  # table open, cache built
    CLOSED = "closed"  # close() called


_KEY_ERRORS = (KeyError, TypeError, IndexError, AttributeError)
_DEFAULT_BATCH = 256
_BATCH_QUERIES = 2  # queries in flight by default when batching


@final
class _Batch:
    """The keys of one query, gathered until it is sent; ``task`` runs it once sent."""

    __slots__ = ("due", "keys", "task", "timer")

    def __init__(self, due: bool) -> None:
        self.keys: list[Hashable] = []
        self.task: asyncio.Task[None] | None = None
        # May be sent once a query slot is free: at once without max_batch_wait, else when
        # full or when ``timer`` (its max_batch_wait) fires.
        self.due = due
        self.timer: asyncio.TimerHandle | None = None


class _Waiter(Protocol):
    """What waits for a key's row: an ``asyncio.Future``, or a :class:`_Handoff`."""

    def done(self) -> bool: ...

    def set_result(self, result: Row | None, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


_Deliver = Callable[[Any, "_Handoff", "list[Any] | None", "BaseException | None"], None]


@final
class _Handoff:
    """A lookup of :meth:`LookupJoin._invoke_nowait`: passes its outcome to a callback."""

    __slots__ = ("batch", "deliver", "finished", "join", "token", "value")

    def __init__(self, join: LookupJoin, value: Any, token: Any, deliver: _Deliver) -> None:
        self.join = join
        self.value = value
        self.token = token
        self.deliver = deliver
        self.finished = False
        self.batch: _Batch | None = None

    def done(self) -> bool:
        return self.finished

    def set_result(self, row: Row | None) -> None:
        self.finished = True
        join = self.join
        join._waiting -= 1
        try:
            outputs = join._output(self.value, row)
        except Exception as exc:
            self.deliver(self.token, self, None, exc)
            return
        self.deliver(self.token, self, outputs, None)

    def set_exception(self, exception: BaseException) -> None:
        self.finished = True
        self.join._waiting -= 1
        self.deliver(self.token, self, None, exception)

    def cancel(self) -> None:
        """Withdraw the lookup (its element timed out): no outcome will be delivered."""
        if self.finished:
            return
        self.finished = True
        join = self.join
        join._waiting -= 1
        if self.batch is not None:
            join._abandon(self.batch)


@final
class LookupJoin(AsyncFunction[Any, Any]):
    """Joins each event with the row of its key in ``table``: a lookup (dimension) join.

    For an event, ``key = on(event)`` is looked up through ``cache`` (if any), else in the
    table. Outputs per event (at most one):

    * row found: ``{**event, **row}``; with ``columns``, ``{**event, **{c: row.get(c)}}``
      for those columns only; with ``combine``, ``combine(event, row)``.
    * no row, ``how="left"``: the event unchanged; with ``columns``,
      ``{**event, **{c: None for c in columns}}``; with ``combine``, ``combine(event, None)``.
    * no row, ``how="inner"``: nothing.

    Concurrency is bounded by the operator's capacity and by ``max_queries``. Lookups of one
    key in flight together share one query. Keys are batched: those missed in one loop
    iteration, and those missed while ``max_queries`` queries are in flight, go out together
    in one ``get_many`` of at most ``max_batch_size`` keys (a single key uses ``get``); with
    ``max_batch_wait`` > 0 a batch also waits up to that long for more keys, unless it fills
    up first. A key the table rejects as bad input is retried alone, so the other lookups
    of its batch still get their rows. Queries
    run in tasks of the join, not of the elements: when an element times out (the
    operator's timeout), its lookup stops waiting while the query goes on for the lookups
    that still wait; a query nobody waits for is cancelled, so a hung query never holds a
    query slot. Output order, timeouts and retries are the operator's.

    Args:
        table: the lookup table (e.g. :func:`asyncwait.lookups.sqlite`); opened by ``open``
            and closed by ``close``.
        on: the event's join key, ``on(event)``; a string is a field name
            (``operator.itemgetter``).
        how: ``"left"`` or ``"inner"`` (or a :class:`JoinType`).
        combine: ``combine(event, row)`` builds the output instead of merging dicts; it gets
            ``None`` for a missing row in a left join. Must not modify ``row``.
        cache: a cache spec (:func:`asyncwait.cache.lru`, :func:`asyncwait.cache.full`), or
            ``None`` to query the table for every lookup.
        columns: the row columns to add to the event; also the ones set to ``None`` when a
            left join finds no row. Default: the whole row.
        max_batch_size: the most keys per query (default 256); 1 sends one ``get`` per key.
        max_batch: the former name of ``max_batch_size``, still accepted.
        max_batch_wait: seconds a new batch waits for more keys before it is sent (sooner
            when it holds ``max_batch_size`` keys, or when all of the operator's
            ``capacity`` elements wait for lookups). The default 0 sends it on the next loop
            iteration: adaptive batching, where batches grow only while queries are in
            flight. A wait adds up to that much latency to a miss, for fewer, fuller
            queries; the operator's timeout still counts from admission.
        max_queries: the most queries in flight at once; the keys missed meanwhile gather
            into the next batch. Default: 2 when batching, else the operator's capacity.
            A batch holds at most ``ceil(capacity / max_queries)`` keys, so the keys the
            operator can have in flight spread over the query slots and the table answers
            one batch while the answer of another is handed out (``max_queries=1``: one
            batch of up to ``capacity`` keys at a time, the fewest queries). A table with a
            connection pool is told this (``expect_queries``) to size it.

    Raises:
        ConfigError: ``how`` is not ``"left"``/``"inner"``, ``columns`` is not a list of
            names, ``max_batch_size``/``max_batch``/``max_queries`` is not an int >= 1
            (or both batch sizes are given and differ), or ``max_batch_wait`` is not a
            finite number >= 0.
        TypeError: ``on``/``combine`` is not callable, or ``cache`` is not a cache spec.

    Errors while running: an event whose key cannot be taken (``on`` raises ``KeyError``,
    ``TypeError``, ``IndexError`` or ``AttributeError``, or returns ``None`` or an unhashable
    value), or that is not a dict when merged, raises :class:`~asyncwait.BadInputError`
    naming the event and the table; a failed query raises the table's error.

    >>> import asyncio, os, sqlite3, tempfile
    >>> import asyncwait
    >>> from asyncwait import cache, lookups
    >>> path = os.path.join(tempfile.mkdtemp(), "dim.db")
    >>> with sqlite3.connect(path) as db:
    ...     _ = db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
    ...     _ = db.execute("INSERT INTO dim_user VALUES ('user_1', 22)")
    >>> events = [{"userID": "user_1", "productID": 2}, {"userID": "user_7", "productID": 3}]
    >>> join = LookupJoin(
    ...     lookups.sqlite(path, table="dim_user", key="user_id", columns=["age"]),
    ...     on="userID",
    ...     cache=cache.lru(1000, ttl=300),
    ... )
    >>> async def main() -> list[object]:
    ...     return [e async for e in asyncwait.ordered_wait(events, join)]
    >>> asyncio.run(main())
    [{'userID': 'user_1', 'productID': 2, 'age': 22}, {'userID': 'user_7', 'productID': 3}]
    """

    def __init__(
        self,
        table: LookupTable,
        *,
        on: Callable[[Any], Hashable] | str,
        how: str | JoinType = "left",
        combine: Callable[[Any, Row | None], Any] | None = None,
        cache: CacheSpec | None = None,
        columns: Sequence[str] | None = None,
        max_batch_size: int | None = None,
        max_batch_wait: float = 0.0,
        max_batch: int | None = None,
        max_queries: int | None = None,
    ) -> None:
        name = getattr(table, "name", None)
        if not isinstance(name, str):
            msg = f"lookup join: table must be a lookup table (asyncwait.lookups), got {table!r}"
            raise TypeError(msg)
        if isinstance(on, str):
            on = operator.itemgetter(on)
        if not callable(on):
            msg = f"lookup join on {name}: on must be a callable or a field name, got {on!r}"
            raise TypeError(msg)
        try:
            kind = JoinType(how.value if isinstance(how, JoinType) else how)
        except ValueError:
            msg = f"lookup join on {name}: how must be 'left' or 'inner', got {how!r}"
            raise ConfigError(msg) from None
        if combine is not None and not callable(combine):
            msg = f"lookup join on {name}: combine must be callable or None, got {combine!r}"
            raise TypeError(msg)
        if cache is not None and not callable(getattr(cache, "create", None)):
            msg = (
                f"lookup join on {name}: cache must be a spec from asyncwait.cache "
                f"(cache.lru(...), cache.full(...)) or None, got {cache!r}"
            )
            raise TypeError(msg)
        if columns is not None:
            if isinstance(columns, str | bytes) or not all(isinstance(c, str) for c in columns):
                msg = f"lookup join on {name}: columns must be a list of names, got {columns!r}"
                raise ConfigError(msg)
            columns = tuple(columns)
        for field, value in (
            ("max_batch_size", max_batch_size),
            ("max_batch", max_batch),
            ("max_queries", max_queries),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"lookup join on {name}: {field} must be an int >= 1, got {value!r}"
                raise ConfigError(msg)
        if max_batch is not None and max_batch_size is not None and max_batch != max_batch_size:
            msg = (
                f"lookup join on {name}: max_batch is the old name of max_batch_size; "
                f"give one of them, got max_batch_size={max_batch_size} and "
                f"max_batch={max_batch}"
            )
            raise ConfigError(msg)
        if (
            isinstance(max_batch_wait, bool)
            or not isinstance(max_batch_wait, int | float)
            or not math.isfinite(max_batch_wait)
            or max_batch_wait < 0
        ):
            msg = (
                f"lookup join on {name}: max_batch_wait must be a number of seconds >= 0, "
                f"got {max_batch_wait!r}"
            )
            raise ConfigError(msg)
        self._table = table
        self._on = on
        self._how = kind
        self._combine = combine
        self._cache_spec = cache
        self._columns: tuple[str, ...] | None = columns
        self._no_row: dict[str, None] = dict.fromkeys(columns or ())
        self._state = _State.NEW
        self._cache: Any = None  # a Cache once open (Any: called on the hot path)
        self._peek: Callable[[Hashable], Any] | None = None  # its _peek, if it has one
        self._metrics = Metrics("lookup-join")  # replaced by the operator's in open()
        self._source = f"lookup join on {name}"
        # key -> (its batch, the futures of the lookups waiting for its answer). Invariant: a
        # key is here exactly from the moment it joins a batch until its outcome is handed
        # out (or nobody waits any more), and its batch holds it exactly once.
        self._in_flight: dict[Hashable, tuple[_Batch, list[_Waiter]]] = {}
        # The batch still taking keys (the last of _batches), or None.
        self._collecting: _Batch | None = None
        self._batches: deque[_Batch] = deque()  # gathered, not sent yet, in order
        self._pump_scheduled = False  # a call of _pump is due on the next loop iteration
        self._queries: set[asyncio.Task[None]] = set()  # the batches being queried
        self._max_batch = max_batch_size or max_batch or _DEFAULT_BATCH
        self._batch_limit = self._max_batch  # the keys per batch, settled in open()
        self._max_batch_wait = float(max_batch_wait)
        self._max_queries_option = max_queries
        self._max_queries = max_queries or 1  # the default is settled in open()
        self._lookups = self._keys = self._coalesced = self._errors = 0
        self._waiting = 0  # lookups awaiting a query's answer (they hold operator slots)
        self._capacity = 100  # the operator's, from open()

    @property
    def table(self) -> LookupTable:
        """The lookup table."""
        return self._table

    # ------------------------------------------------------------------ lifecycle

    async def open(self, context: RuntimeContext) -> None:
        if self._state is _State.OPEN:
            msg = f"{self._source} is already open"
            raise RuntimeError(msg)
        self._metrics = context.metrics
        self._source = f"{context.name}: lookup join on {self._table.name}"
        self._capacity = context.capacity
        if self._max_queries_option is not None:
            self._max_queries = self._max_queries_option
        else:
            self._max_queries = _BATCH_QUERIES if self._max_batch > 1 else context.capacity
        # The operator has at most `capacity` keys in flight: spread them over the query
        # slots, so the table works on one batch while the answer of another is handed out.
        # One batch of them all would leave the other slots idle, the table and this loop
        # taking turns.
        self._batch_limit = min(self._max_batch, -(-context.capacity // self._max_queries))
        # A connector with a connection pool sizes it from the queries we keep in flight.
        if isinstance(self._table, PooledTable):
            self._table.expect_queries(self._max_queries)
        await self._table.open()
        try:
            if self._cache_spec is not None:
                cache = self._cache_spec.create(self._table, context.metrics)
                await cache.open()
                self._cache = cache
                self._peek = getattr(cache, "_peek", None)
        except BaseException:
            await self._table.close()
            raise
        self._state = _State.OPEN

    async def close(self) -> None:
        if self._state is not _State.OPEN:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        if self._batches:
            self._pump()  # fails the batches not sent yet (ClosedError), stops their timers
        queries = tuple(self._queries)
        for task in queries:
            task.cancel()
        if queries:
            # Let each query hand out its cancellation; our own cancellation still propagates.
            await asyncio.wait(queries)
        cache, self._cache = self._cache, None
        self._peek = None
        try:
            if cache is not None:
                await cache.close()
        finally:
            await self._table.close()

    # ------------------------------------------------------------------ the join

    async def async_invoke(self, value: Any) -> list[Any]:
        key = self._key_of(value)
        cache = self._cache
        if cache is not None:
            row = cache.get(key)
            if row is not MISS:
                return self._output(value, row)
        waiter: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        batch = self._enlist(key, waiter)
        try:
            row = await waiter
        except asyncio.CancelledError:
            self._abandon(batch)  # this element timed out or the operator is closing
            raise
        finally:
            self._waiting -= 1
        return self._output(value, row)

    def _invoke_nowait(self, value: Any, token: Any, deliver: _Deliver) -> list[Any] | _Handoff:
        """``async_invoke`` for the operator, without a coroutine, a future or a task switch.

        Returns the outputs when they are known at once (a cache hit). Otherwise returns a
        handle and later calls ``deliver(token, handle, outputs, None)``, or
        ``deliver(token, handle, None, error)``, exactly once, unless ``handle.cancel()``
        withdrew the lookup first. A batch of 100 lookups answered by one query then costs
        100 plain calls instead of 100 task wake-ups. Raises what ``async_invoke`` raises
        before its first await.
        """
        key = self._key_of(value)
        cache = self._cache
        if cache is not None:
            row = cache.get(key)
            if row is not MISS:
                return self._output(value, row)
        handoff = _Handoff(self, value, token, deliver)
        handoff.batch = self._enlist(key, handoff)
        return handoff

    def _try_now(self, value: Any) -> list[Any] | None:
        """The outputs for ``value`` if the cache knows its row, else None; never raises.

        Lets the operator pass a cache hit straight through, without holding a slot.
        """
        peek = self._peek
        if peek is None or self._state is not _State.OPEN:
            return None
        try:
            key = self._on(value)
            if key is None:
                return None
            row = peek(key)  # a miss is not counted: _invoke_nowait asks the cache again
            if row is MISS:
                return None
            return self._output(value, row)
        except Exception:
            # A bad key or event: _invoke_nowait raises its error with the element's context.
            return None

    def _key_of(self, value: Any) -> Hashable:
        if self._state is not _State.OPEN:
            msg = f"{self._source} is not open (state {self._state.value})"
            raise ClosedError(msg)
        try:
            key = self._on(value)
            hash(key)
        except _KEY_ERRORS as exc:
            msg = (
                f"{self._source}: cannot take the join key of event {_short_repr(value)}: "
                f"{type(exc).__name__}: {exc}"
            )
            raise BadInputError(msg, source=self._source) from exc
        if key is None:
            msg = f"{self._source}: the join key of event {_short_repr(value)} is None"
            raise BadInputError(msg, source=self._source)
        return key

    def _enlist(self, key: Hashable, waiter: _Waiter) -> _Batch:
        """Make ``waiter`` wait for ``key``'s row: on a query in flight, or in a batch.

        The caller decrements ``_waiting`` once the waiter is answered or withdrawn.
        """
        pending = self._in_flight.get(key)
        if pending is not None:
            self._coalesced += 1
            self._metrics.inc("coalesced")
            batch = pending[0]
            pending[1].append(waiter)
        else:
            collecting = self._collecting
            if collecting is not None and len(collecting.keys) < self._batch_limit:
                batch = collecting
            else:
                wait = self._max_batch_wait
                batch = self._collecting = _Batch(due=not wait)
                self._batches.append(batch)
                if wait:
                    batch.timer = asyncio.get_running_loop().call_later(
                        wait, self._batch_due, batch
                    )
                else:
                    self._schedule_pump()
            batch.keys.append(key)
            self._in_flight[key] = (batch, [waiter])
        self._waiting += 1
        if not batch.due and (
            len(batch.keys) >= self._batch_limit or self._waiting >= self._capacity
        ):
            # Full, or every element the operator admits waits for us: no key can join.
            self._batch_due(batch)
        return batch

    def _abandon(self, batch: _Batch) -> None:
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

    def _batch_due(self, batch: _Batch) -> None:
        """Mark ``batch`` ready to send (its wait is over, or it is full)."""
        batch.due = True
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if self._batches and self._batches[0] is batch:
            self._schedule_pump()

    def _pump(self) -> None:
        """Send the due batches, while fewer than ``max_queries`` queries are in flight.

        Each query runs in a task of its own, owned by no element, so one element's timeout
        never cancels the lookups of others. Batches go out in the order they were started;
        only the last one (still collecting) can be not due yet, as each earlier one was
        full when the next began.
        """
        self._pump_scheduled = False
        batches = self._batches
        if self._state is not _State.OPEN:
            while batches:
                batch = batches.popleft()
                if batch.timer is not None:
                    batch.timer.cancel()
                msg = f"{self._source} was closed"
                self._fail(batch, ClosedError(msg))
            self._collecting = None
            return
        loop = asyncio.get_running_loop()
        while batches and batches[0].due and len(self._queries) < self._max_queries:
            batch = batches.popleft()
            if batch is self._collecting:
                self._collecting = None
            task = batch.task = loop.create_task(self._query(batch))
            self._queries.add(task)
            task.add_done_callback(self._query_done)

    def _query_done(self, task: asyncio.Task[None]) -> None:
        # A query slot is free: send what gathered meanwhile (a bigger batch).
        self._queries.discard(task)
        if self._batches:
            self._pump()

    async def _query(self, batch: _Batch) -> None:
        """Query the table for ``batch`` and hand every waiting lookup its outcome.

        Never raises: a failure goes to the lookups waiting for it.
        """
        table = self._table
        keys = batch.keys
        self._lookups += 1
        self._keys += len(keys)
        self._metrics.inc("lookups")
        self._metrics.inc("lookup_keys", len(keys))
        rows: dict[Hashable, Row | Exception | None] = {}
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
                        self._lookups += 1
                        self._metrics.inc("lookups")
                        try:
                            rows[key] = await table.get(key)
                        except BadInputError as exc:
                            rows[key] = exc
        except Exception as exc:
            self._errors += 1
            self._metrics.inc("lookup_errors")
            self._fail(batch, exc)
        except BaseException:
            # Cancelled: by close() (the lookups still waiting learn why), or abandoned.
            self._fail(batch, ClosedError(f"{self._source} was closed during the lookup"))
            raise
        else:
            self._answer(batch, rows)

    def _answer(self, batch: _Batch, rows: dict[Hashable, Row | Exception | None]) -> None:
        """Cache each key's row (or miss) and hand it to the lookups waiting for it."""
        in_flight = self._in_flight
        cache = self._cache
        for key in batch.keys:
            outcome = rows.get(key)
            pending = in_flight.get(key)
            if pending is None or pending[0] is not batch:
                continue  # abandoned meanwhile
            if isinstance(outcome, Exception):
                self._fail_key(key, outcome)
                continue
            if cache is not None:
                cache.put(key, outcome)
            del in_flight[key]
            for waiter in pending[1]:
                if not waiter.done():  # done: its element timed out or was cancelled
                    waiter.set_result(outcome)

    def _fail(self, batch: _Batch, error: BaseException) -> None:
        """Hand ``error`` to every lookup still waiting for a key of ``batch``."""
        for key in batch.keys:
            pending = self._in_flight.get(key)
            if pending is not None and pending[0] is batch:
                self._fail_key(key, error)

    def _fail_key(self, key: Hashable, error: BaseException) -> None:
        for waiter in self._in_flight.pop(key)[1]:
            if not waiter.done():
                waiter.set_exception(error)

    def _output(self, event: Any, row: Row | None) -> list[Any]:
        if row is None:
            if self._how is JoinType.INNER:
                return []
            if self._combine is not None:
                return [self._combine(event, None)]
            if self._columns is None:
                return [event]
            row = self._no_row
        elif self._combine is not None:
            return [self._combine(event, row)]
        elif self._columns is not None:
            row = {c: row.get(c) for c in self._columns}
        try:
            return [{**event, **row}]
        except TypeError as exc:
            msg = (
                f"{self._source}: event {_short_repr(event)} is not a dict, so the row "
                f"cannot be merged into it; pass combine=fn(event, row)"
            )
            raise BadInputError(msg, source=self._source) from exc

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> JoinStatistics:
        """Return the current counters (the cache's included)."""
        cache = self._cache
        return JoinStatistics(
            lookups=self._lookups,
            keys=self._keys,
            coalesced=self._coalesced,
            lookup_errors=self._errors,
            in_flight=len(self._in_flight),
            cache=cache.statistics() if cache is not None else None,
        )

    def __repr__(self) -> str:
        cache = self._cache if self._cache is not None else self._cache_spec
        return (
            f"<LookupJoin {self._table.name!r} {self._how.value} {self._state.value} "
            f"in-flight={len(self._in_flight)} lookups={self._lookups} "
            f"coalesced={self._coalesced} cache={cache!r}>"
        )
