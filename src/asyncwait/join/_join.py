"""The lookup join itself: options, lifecycle, the key, the cache and the output (private).

Re-exported by :mod:`asyncwait.join`; the batching of misses lives in ``_batcher``, the
outcomes of the lookups (statistics, the no-match warning, ``min_match_ratio``) in
``_tally``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final, final

from .._reprs import short_repr
from ..cache import MISS, CacheSpec
from ..errors import BadInputError, ClosedError
from ..function import AsyncFunction, Deliver, RuntimeContext
from ..lookups import CountedTable, LookupTable, PooledTable, Row
from ..metrics import Metrics
from ._batcher import Batcher, Handoff
from ._options import check_batching, check_join, ratio_option
from ._tally import WARN_AFTER, JoinStatistics, check_ratio, warn_nothing_matched

__all__ = ("JoinStatistics", "JoinType", "LookupJoin")


class JoinType(enum.Enum):
    """What a lookup join emits for an event whose key has no row."""

    LEFT = "left"  # the event anyway: unchanged, or with the join's columns set to None
    INNER = "inner"  # nothing: the event is dropped


class _State(enum.Enum):
    NEW = "new"  # constructed; open() not called yet
    OPEN = "open"  # table open, cache built
    CLOSED = "closed"  # close() called


_KEY_ERRORS: Final = (KeyError, TypeError, IndexError, AttributeError)
_DEFAULT_BATCH: Final = 256
_BATCH_QUERIES: Final = 2  # queries in flight by default when batching


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

    Every lookup is counted as ``matched`` (a row), ``missed`` (no row, passed on by a left
    join), ``dropped`` (no row, inner join), ``failed`` or ``rejected`` (bad input); see
    :class:`JoinStatistics`. The first four are also the operator's counters ``matched``,
    ``missed``, ``dropped`` and ``lookup_failed`` (with a :class:`~asyncwait.lookups.CountedTable`,
    the table's counters too). When none of the first 1,000 lookups found a row, the join
    logs one warning (logger ``asyncwait.join``) naming the lookup, its key and the table:
    the sign of a wrong key column, ``on`` field or table.

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
        min_match_ratio: when the input ends, fail (:class:`~asyncwait.AsyncFunctionError`
            naming the join, the ratio and the threshold) if
            ``matched / (matched + missed + dropped)`` is below it; ``None`` (the default)
            never fails. Nothing is checked when no lookup found or missed a row.

    Raises:
        ConfigError: ``how`` is not ``"left"``/``"inner"``, ``columns`` is not a list of
            names, ``max_batch_size``/``max_batch``/``max_queries`` is not an int >= 1
            (or both batch sizes are given and differ), ``max_batch_wait`` is not a
            finite number >= 0, or ``min_match_ratio`` is not a number in [0, 1].
        TypeError: ``on``/``combine`` is not callable, or ``cache`` is not a cache spec.

    Errors while running: an event whose key cannot be taken (``on`` raises ``KeyError``,
    ``TypeError``, ``IndexError`` or ``AttributeError``, or returns ``None`` or an unhashable
    value), or that is not a dict when merged, raises :class:`~asyncwait.BadInputError`
    naming the event and the table; a failed query raises the table's error (e.g.
    :class:`~asyncwait.LookupFailedError` for an answer the table cannot read).

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
        min_match_ratio: float | None = None,
    ) -> None:
        name = getattr(table, "name", None)
        if not isinstance(name, str):
            msg = f"lookup join: table must be a lookup table (asyncwait.lookups), got {table!r}"
            raise TypeError(msg)
        source = f"lookup join on {name}"
        # The event side of the key, as the no-match warning names it.
        self._on_shown = (
            f"event field {on!r}" if isinstance(on, str) else f"key function {short_repr(on)}"
        )
        on, kind, columns = check_join(source, on, how, combine, cache, columns)
        check_batching(
            source,
            max_batch_size=max_batch_size,
            max_batch=max_batch,
            max_queries=max_queries,
            max_batch_wait=max_batch_wait,
        )
        self._min_match_ratio = ratio_option(source, min_match_ratio)
        self._table = table
        self._on = on
        self._how = JoinType(kind)
        self._combine = combine
        self._cache_spec = cache
        self._columns: tuple[str, ...] | None = columns
        self._no_row: dict[str, None] = dict.fromkeys(columns or ())
        self._state = _State.NEW
        self._cache: Any = None  # a Cache once open (Any: called on the hot path)
        self._metrics = Metrics("lookup-join")  # replaced by the operator's in open()
        self._source = source
        self._batcher: Batcher | None = None  # from open() on
        self._max_batch = max_batch_size or max_batch or _DEFAULT_BATCH
        self._max_batch_wait = float(max_batch_wait)
        self._max_queries_option = max_queries
        # What the lookups came to (see _tally). Plain ints: bumped once per lookup on the
        # hot path, read by statistics() and, through count_from, the operator's metrics.
        self.matched = self.missed = self.dropped = self.failed = self.rejected = 0
        # Bound once: every handoff of a miss calls them.
        self._handoff_calls = (self._output, self._count_failure)

    @property
    def table(self) -> LookupTable:
        """The lookup table."""
        return self._table

    # ------------------------------------------------------------------ lifecycle

    async def open(self, context: RuntimeContext) -> None:
        if self._state is _State.OPEN:
            msg = f"{self._source} is already open"
            raise RuntimeError(msg)
        self._metrics = metrics = context.metrics
        self._source = f"{context.name}: lookup join on {self._table.name}"
        self.matched = self.missed = self.dropped = self.failed = self.rejected = 0
        metrics.count_from(self._counters)  # a fresh Metrics per operator (and run)
        if isinstance(self._table, CountedTable):
            metrics.count_from(self._table.counters)
        capacity = context.capacity
        if self._max_queries_option is not None:
            max_queries = self._max_queries_option
        else:
            max_queries = _BATCH_QUERIES if self._max_batch > 1 else capacity
        # A connector with a connection pool sizes it from the queries we keep in flight.
        if isinstance(self._table, PooledTable):
            self._table.expect_queries(max_queries)
        await self._table.open()
        try:
            cache = None
            if self._cache_spec is not None:
                cache = self._cache_spec.create(self._table, context.metrics)
                await cache.open()
                self._cache = cache
        except BaseException:
            await self._table.close()
            raise
        # The operator has at most `capacity` keys in flight: spread them over the query
        # slots, so the table works on one batch while the answer of another is handed out.
        # One batch of them all would leave the other slots idle, the table and this loop
        # taking turns.
        self._batcher = Batcher(
            self._table,
            self._source,
            context.metrics,
            None if cache is None else cache.put,
            batch_limit=min(self._max_batch, -(-capacity // max_queries)),
            max_batch_wait=self._max_batch_wait,
            max_queries=max_queries,
            capacity=capacity,
        )
        self._state = _State.OPEN

    async def close(self) -> None:
        if self._state is not _State.OPEN:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        batcher = self._batcher
        if batcher is not None:
            await batcher.close()
        cache, self._cache = self._cache, None
        try:
            if cache is not None:
                await cache.close()
        finally:
            await self._table.close()

    # ------------------------------------------------------------------ the join

    async def async_invoke(self, value: Any) -> list[Any]:
        if self._state is not _State.OPEN:
            msg = f"{self._source} is not open (state {self._state.value})"
            raise ClosedError(msg)
        key = self.key_of(value)
        cache = self._cache
        if cache is not None:
            row = cache.get(key)
            if row is not MISS:
                return self._output(value, row)
        batcher = self._batcher
        assert batcher is not None  # open
        waiter: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        batch = batcher.enlist(key, waiter)
        try:
            row = await waiter
        except asyncio.CancelledError:
            self._count_failure(None)  # withdrawn: its element timed out, or closing
            batcher.abandon(batch)
            raise
        except Exception as exc:
            self._count_failure(exc)
            raise
        finally:
            batcher.waiting -= 1
        return self._output(value, row)

    def key_of(self, value: Any) -> Hashable:
        """The join key of event ``value`` (``on(value)``).

        Keys compare by JSON type: a boolean is never a key (``True == 1`` in Python, so
        ``true`` would find the row of key 1).

        Raises:
            BadInputError: the key cannot be taken, is ``None`` or a boolean, or cannot be
                hashed.
        """
        try:
            key = self._on(value)
            hash(key)
        except _KEY_ERRORS as exc:
            raise self._bad_key(value, exc) from exc
        if key is None or type(key) is bool:
            raise self._bad_key(value, None, key)
        return key

    def start_call(self, value: Any, deliver: Deliver) -> list[Any] | Handoff:
        """The lookup for the operator, without a coroutine, a future or a task switch.

        Returns the outputs when they are known at once (a cache hit). Otherwise returns a
        handle and later calls ``deliver(handle, outputs, None)`` or ``deliver(handle, None,
        error)``, exactly once, unless ``handle.cancel()`` withdrew the lookup first. A batch
        of 100 lookups answered by one query then costs 100 plain calls instead of 100 task
        wake-ups. The key is taken once and the cache asked once.
        """
        cache = self._cache
        try:
            key = self._on(value)
            if type(key) is bool:
                raise self._bad_key(value, None, key)
            if cache is not None and key is not None:
                row = cache.get(key)  # hashes the key: an unhashable one raises TypeError
            else:
                hash(key)
                row = MISS
        except _KEY_ERRORS as exc:
            raise self._bad_key(value, exc) from exc
        if row is not MISS:
            return self._output(value, row)
        if key is None:
            raise self._bad_key(value, None, None)
        return self._enlist(key, value, deliver)

    def start_keyed(self, key: Hashable, value: Any, deliver: Deliver) -> list[Any] | Handoff:
        """:meth:`start_call` for an event whose join key (:meth:`key_of`) is ``key``."""
        cache = self._cache
        if cache is not None:
            row = cache.get(key)
            if row is not MISS:
                return self._output(value, row)
        return self._enlist(key, value, deliver)

    def _enlist(self, key: Hashable, value: Any, deliver: Deliver) -> Handoff:
        batcher = self._batcher
        if batcher is None or self._state is not _State.OPEN:
            msg = f"{self._source} is not open (state {self._state.value})"
            raise ClosedError(msg)
        output, count_failure = self._handoff_calls
        handoff = Handoff(output, count_failure, value, deliver, batcher)
        handoff.batch = batcher.enlist(key, handoff)
        return handoff

    def _bad_key(self, value: Any, exc: Exception | None, key: object = None) -> BadInputError:
        if exc is None:
            why = "None" if key is None else f"{key!r}, a boolean, which matches no key"
            msg = f"{self._source}: the join key of event {short_repr(value)} is {why}"
        else:
            msg = (
                f"{self._source}: cannot take the join key of event {short_repr(value)}: "
                f"{type(exc).__name__}: {exc}"
            )
        return BadInputError(msg, source=self._source)

    def _output(self, event: Any, row: Row | None) -> list[Any]:
        """The outputs of ``event`` joined with ``row`` (``None``: no row), counted.

        Each lookup is counted once its outputs are built: one whose output cannot be built
        counts as failed (or rejected, for an event that is not a dict) instead.
        """
        try:
            if row is None:
                if self._how is JoinType.INNER:
                    outputs: list[Any] = []
                    self.dropped += 1
                else:
                    if self._combine is not None:
                        outputs = [self._combine(event, None)]
                    elif self._columns is None:
                        outputs = [event]
                    else:
                        outputs = [self._merge(event, self._no_row)]
                    self.missed += 1
                if not self.matched and self.missed + self.dropped == WARN_AFTER:
                    key = getattr(self._table, "key", None)  # an SQL table's key column
                    warn_nothing_matched(
                        self._source, self._on_shown, key if isinstance(key, str) else None
                    )
                return outputs
            if self._combine is not None:
                outputs = [self._combine(event, row)]
            else:
                if self._columns is not None:
                    row = {c: row.get(c) for c in self._columns}
                try:
                    outputs = [{**event, **row}]
                except TypeError as exc:
                    raise self._not_a_dict(event) from exc
            self.matched += 1
            return outputs
        except Exception as exc:
            self._count_failure(exc)
            raise

    def _merge(self, event: Any, row: Row) -> Any:
        try:
            return {**event, **row}
        except TypeError as exc:
            raise self._not_a_dict(event) from exc

    def _not_a_dict(self, event: Any) -> BadInputError:
        msg = (
            f"{self._source}: event {short_repr(event)} is not a dict, so the row "
            f"cannot be merged into it; pass combine=fn(event, row)"
        )
        return BadInputError(msg, source=self._source)

    def _count_failure(self, exc: BaseException | None) -> None:
        """Count a lookup that ended with ``exc`` (``None``: withdrawn, so failed too).

        Bad input counts as rejected, everything else as failed.
        """
        if isinstance(exc, BadInputError):
            self.rejected += 1
        else:
            self.failed += 1

    def _counters(self) -> dict[str, int]:
        """The operator's counters of this join (read when its metrics are read)."""
        return {
            "matched": self.matched,
            "missed": self.missed,
            "dropped": self.dropped,
            "lookup_failed": self.failed,
        }

    async def end_input(self) -> None:
        """Check ``min_match_ratio`` once the input has ended (the operator calls it).

        Raises:
            AsyncFunctionError: the share of lookups that found a row is below
                ``min_match_ratio``.
        """
        check_ratio(
            self._source,
            self._min_match_ratio,
            self.matched,
            self.matched + self.missed + self.dropped,
        )

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> JoinStatistics:
        """Return the current counters (the cache's included)."""
        cache = self._cache
        batcher = self._batcher
        outcomes = (self.matched, self.missed, self.dropped, self.failed, self.rejected)
        if batcher is None:
            return JoinStatistics(0, 0, 0, 0, 0, None, *outcomes)
        return JoinStatistics(
            batcher.lookups,
            batcher.keys,
            batcher.coalesced,
            batcher.errors,
            batcher.in_flight(),
            cache.statistics() if cache is not None else None,
            *outcomes,
        )

    def __repr__(self) -> str:
        cache = self._cache if self._cache is not None else self._cache_spec
        stats = self.statistics()
        return (
            f"<LookupJoin {self._table.name!r} {self._how.value} {self._state.value} "
            f"in-flight={stats.in_flight} lookups={stats.lookups} "
            f"coalesced={stats.coalesced} matched={self.matched} missed={self.missed} "
            f"dropped={self.dropped} failed={self.failed} cache={cache!r}>"
        )
