"""The lookup join itself: options, lifecycle, the key, the cache and the output (private).

Re-exported by :mod:`asyncwait.join`; the batching of misses lives in ``_batcher``, the
outcomes of the lookups (statistics, the no-match warning, ``min_match_ratio``) in
``_tally``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Final, final

from .._flow import AdaptiveSpec, BreakerSpec
from .._gate import FlowGate
from .._reprs import short_repr
from ..cache import MISS, CacheSpec
from ..errors import BadInputError, CircuitOpenError, ClosedError
from ..function import AsyncFunction, Deliver, RuntimeContext
from ..lookups import CountedTable, LookupTable, PooledTable, Row
from ..metrics import Metrics
from ..retry import MissedRow
from ._batcher import Batcher, Handoff
from ._options import bad_key, check_batching, check_join, not_a_dict, ratio_option
from ._policies import JoinPolicies
from ._tally import WARN_AFTER, JoinCounts, JoinStatistics, check_ratio, warn_nothing_matched

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
class LookupJoin(JoinCounts, AsyncFunction[Any, Any]):
    """Joins each event with the row of its key in ``table``: a lookup (dimension) join.

    For an event, ``key = on(event)`` is looked up through ``cache`` (if any), else in the
    table. Outputs per event (at most one):

    * row found: ``{**event, **row}``; with ``columns``, ``{**event, **{c: row.get(c)}}``
      for those columns only; with ``combine``, ``combine(event, row)``.
    * no row, ``how="left"``: the event unchanged; with ``columns``,
      ``{**event, **{c: None for c in columns}}``; with ``combine``, ``combine(event, None)``.
    * no row, ``how="inner"``: nothing.

    Concurrency is bounded by the operator's capacity and by ``max_queries``. Lookups of one
    key in flight together share one query; the keys missed meanwhile go out together in one
    ``get_many`` of at most ``max_batch_size`` keys (see ``_batcher``). A query runs in a task
    of the join: an element that times out stops waiting, and a query nobody waits for is
    cancelled. Output order, timeouts and retries are the operator's.

    Every lookup is counted (``matched``, ``missed``, ``dropped``, ``failed``, ``rejected``:
    :class:`JoinStatistics`, also the operator's counters); when none of the first 1,000
    found a row, the join logs one warning (logger ``asyncwait.join``).

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
        default: with the operator's ``on_error="default"``, the row merged into an event
            whose lookup finally failed (:meth:`default_outputs`).
        rate_limit, burst: at most ``rate_limit`` queries per second to the store, in
            bursts of up to ``burst`` (default ``rate_limit / 10``); queries wait for a
            token (nothing is dropped), and a 429/503 or ``Retry-After`` pauses the bucket.
        adaptive: ``{"min": ..., "max": ...}``: the queries in flight move between them
            from the store's latency, overload answers and timeouts (``max <= capacity``).
        circuit_breaker: ``{"failure_ratio": ..., "min_calls": ..., "open_for": ...}``:
            once that share of the last ``min_calls`` queries failed, lookups fail at once
            with :class:`~asyncwait.CircuitOpenError` for ``open_for`` seconds (routed by
            the operator's ``on_error``), then one probe query decides.
        retry_misses: return a miss as a :class:`~asyncwait.retry.MissedRow`, for
            :data:`~asyncwait.retry.MISSING_ROW` to ask again (``lookup_join`` sets it for
            a retry with ``on_result``).

    Raises:
        ConfigError: an option is out of range (named), e.g. ``how`` not ``"left"`` or
            ``"inner"``, or both batch sizes given and different.
        TypeError: ``on``/``combine`` is not callable, or ``cache`` is not a cache spec.

    Errors while running: an event whose key cannot be taken (``on`` raises ``KeyError``,
    ``TypeError``, ``IndexError`` or ``AttributeError``, or returns ``None`` or an unhashable
    value), or that is not a dict when merged, raises :class:`~asyncwait.BadInputError`
    naming the event and the table; a failed query raises the table's error (e.g.
    :class:`~asyncwait.LookupFailedError` for an answer the table cannot read).

    Example: see :mod:`asyncwait.join`.
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
        default: Mapping[str, Any] | None = None,
        rate_limit: float | None = None,
        burst: float | None = None,
        adaptive: Mapping[str, int] | AdaptiveSpec | None = None,
        circuit_breaker: Mapping[str, float] | BreakerSpec | None = None,
        retry_misses: bool = False,
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
        self._policies = JoinPolicies.of(
            source,
            default=default,
            rate_limit=rate_limit,
            burst=burst,
            adaptive=adaptive,
            circuit_breaker=circuit_breaker,
        )
        self._retry_misses = retry_misses  # a miss is a MissedRow: MISSING_ROW asks again
        self._gate: FlowGate | None = None  # from open() on, with a flow control policy
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
        self.reset_counts()
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
        self.reset_counts()
        metrics.count_from(self._counters)  # a fresh Metrics per operator (and run)
        if isinstance(self._table, CountedTable):
            metrics.count_from(self._table.counters)
        capacity = context.capacity
        self._policies.check_capacity(self._source, capacity)
        self._gate = gate = self._policies.gate(self._source, self._table)
        if gate is not None:
            metrics.count_from(lambda: gate.statistics().counters())  # rate_limit_waits...
        adaptive = self._policies.adaptive
        max_batch = self._policies.max_batch(self._table, self._max_batch)
        if self._max_queries_option is not None:
            max_queries = self._max_queries_option
        elif adaptive is not None:
            max_queries = adaptive.max  # the adaptive limit decides below that
        else:
            max_queries = _BATCH_QUERIES if max_batch > 1 else capacity
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
        # Spread the operator's `capacity` keys in flight over the query slots: the table
        # works on one batch while the answer of another is handed out.
        self._batcher = Batcher(
            self._table,
            self._source,
            context.metrics,
            None if cache is None else cache.put,
            batch_limit=min(max_batch, -(-capacity // max_queries)),
            max_batch_wait=self._max_batch_wait,
            max_queries=max_queries,
            capacity=capacity,
            gate=gate,
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
            raise self._not_open()
        key = self.key_of(value)
        cache = self._cache
        if cache is not None:
            row = cache.get(key)
            if row is not MISS:
                return self._output(value, row)
        batcher = self._batcher
        assert batcher is not None  # open
        loop = asyncio.get_running_loop()
        gate = self._gate
        if gate is not None and not gate.admit(loop.time()):
            raise self._circuit_open()
        waiter: asyncio.Future[Row | None] = loop.create_future()
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
            raise self._not_open()
        gate = self._gate
        if gate is not None and not gate.admit(asyncio.get_running_loop().time()):
            raise self._circuit_open()
        output, count_failure = self._handoff_calls
        handoff = Handoff(output, count_failure, value, deliver, batcher)
        handoff.batch = batcher.enlist(key, handoff)
        return handoff

    def _not_open(self) -> ClosedError:
        self.failed += 1  # a lookup started on a closed join (the operator is closing) failed
        return ClosedError(f"{self._source} is not open (state {self._state.value})")

    def _circuit_open(self) -> CircuitOpenError:
        self.failed += 1
        msg = f"{self._source}: the circuit breaker is open (the store failed too often)"
        return CircuitOpenError(msg)

    def default_outputs(self, value: Any, error: BaseException) -> list[Any]:
        """The outputs of event ``value`` whose lookup finally failed: merged with ``default``."""
        return self._policies.merged(self._source, value)

    def _bad_key(self, value: Any, exc: Exception | None, key: object = None) -> BadInputError:
        return bad_key(self._source, value, exc, key)

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
                if self._retry_misses:
                    outputs = MissedRow(outputs)
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
        return not_a_dict(self._source, event)

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
