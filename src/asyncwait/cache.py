"""Caches in front of a lookup table: ``lru`` (bounded, with TTLs) and ``full`` (whole table).

A cache is chosen with a *spec*, an immutable value (``cache.lru(10_000, ttl=300)``,
``cache.full(600)``), and built per operator when the lookup join opens. Both kinds answer
``get`` synchronously, without awaiting:

* an LRU cache returns the cached row, ``None`` for a cached miss (negative caching, when
  ``miss_ttl`` is set), or :data:`MISS` when the table must be asked; the join then stores
  the answer with ``put``.
* a full cache holds the whole table, loaded with ``table.scan()`` before the join's
  ``open`` returns and reloaded every ``reload_interval`` seconds in the background; a key
  that is not in the snapshot is a miss (``None``) without any query.

Time-to-live uses the event loop's clock (``loop.time()``), never the wall clock, so tests
run in virtual time. Everything here is touched only from the loop that opened the cache.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Protocol, final

from ._tasks import TaskOwner
from .errors import ConfigError
from .lookups._base import LookupTable, Row
from .metrics import Metrics

__all__ = (
    "MISS",
    "Cache",
    "CacheSpec",
    "CacheStatistics",
    "FullCache",
    "FullSpec",
    "LruCache",
    "LruSpec",
    "Miss",
    "full",
    "lru",
)

_log = logging.getLogger("asyncwait.cache")

_NEVER: Final = math.inf


class Miss(enum.Enum):
    """The type of :data:`MISS`."""

    MISS = "miss"  # the cache does not know the key: ask the table


MISS: Final = Miss.MISS
"""Returned by :meth:`Cache.get` when the table must be asked (not the same as ``None``)."""


@final
@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """A snapshot of a cache's counters.

    Attributes:
        hits: ``get`` calls answered from the cache (a row, or a cached/known miss).
        misses: ``get`` calls the cache could not answer (LRU: ``MISS``, the table is
            asked), or, for a full cache, keys absent from the snapshot.
        size: entries held now (LRU: including expired entries not read since).
        loads: data loaded into the cache: LRU: entries stored; full: complete loads.
        evictions: LRU entries dropped to stay within ``max_size``.
        expirations: LRU entries found expired on read and dropped.
        load_errors: full-cache reloads that failed (the previous snapshot stayed).
    """

    hits: int
    misses: int
    size: int
    loads: int
    evictions: int = 0
    expirations: int = 0
    load_errors: int = 0


class Cache(Protocol):
    """A cache of one lookup table, built by a :class:`CacheSpec` for one lookup join.

    ``open`` is awaited before the first ``get`` and ``close`` at the end (idempotent).
    ``get`` and ``put`` never await. Metrics: ``cache_hits``/``cache_misses`` per ``get``,
    ``cache_loads`` per load, gauge ``cache_size``.
    """

    async def open(self) -> None:
        """Prepare the cache (a full cache loads the table here)."""
        ...

    async def close(self) -> None:
        """Stop background work and drop the entries."""
        ...

    def get(self, key: Hashable) -> Row | Miss | None:
        """Return the row, ``None`` for a known miss, or :data:`MISS` to ask the table."""
        ...

    def put(self, key: Hashable, row: Row | None) -> None:
        """Store the table's answer for ``key`` (a row, or ``None`` for no row)."""
        ...

    def statistics(self) -> CacheStatistics:
        """Return the current counters."""
        ...


class CacheSpec(Protocol):
    """An immutable cache configuration that builds one :class:`Cache` per lookup join."""

    def create(self, table: LookupTable, metrics: Metrics) -> Cache:
        """Return a new, unopened cache of ``table`` reporting into ``metrics``."""
        ...


def _seconds(owner: str, field: str, value: object, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        allowed = "a number of seconds > 0" + (" or None" if optional else "")
        msg = f"{owner}: {field} must be {allowed}, got {value!r}"
        raise ConfigError(msg)
    return float(value)


# ---------------------------------------------------------------------------------- LRU


@final
@dataclass(frozen=True, slots=True)
class LruSpec:
    """The configuration of an LRU cache; build it with :func:`lru`."""

    max_size: int
    ttl: float | None = None
    miss_ttl: float | None = None

    def create(self, table: LookupTable, metrics: Metrics) -> LruCache:
        return LruCache(self, metrics)


@final
class LruCache:
    """A bounded least-recently-used cache with optional TTLs; built by :func:`lru`.

    ``get`` and ``put`` are O(1). An entry expires ``ttl`` (rows) or ``miss_ttl`` (``None``
    rows) seconds of loop time after it was stored; expiry is checked on read. When a
    ``put`` makes the cache exceed ``max_size``, the least recently read or stored entry goes.
    """

    __slots__ = (
        "_clock",
        "_entries",
        "_evictions",
        "_expirations",
        "_hits",
        "_loads",
        "_metrics",
        "_misses",
        "_spec",
    )

    def __init__(self, spec: LruSpec, metrics: Metrics) -> None:
        self._spec = spec
        self._metrics = metrics
        # key -> (row or None, loop time at which it expires; inf for never). Order: least
        # recently used first.
        self._entries: OrderedDict[Hashable, tuple[Row | None, float]] = OrderedDict()
        self._clock: Callable[[], float] | None = None
        self._hits = self._misses = self._loads = self._evictions = self._expirations = 0
        metrics.count_from(self._counters)  # cache_hits, cache_misses

    async def open(self) -> None:
        self._clock = asyncio.get_running_loop().time

    async def close(self) -> None:
        self._entries.clear()
        self._metrics.set_gauge("cache_size", 0)

    def _now(self) -> float:
        clock = self._clock
        if clock is None:
            clock = self._clock = asyncio.get_running_loop().time
        return clock()

    def get(self, key: Hashable) -> Row | Miss | None:
        entries = self._entries
        entry = entries.get(key)
        if entry is not None:
            row, expires = entry
            if expires == _NEVER or expires > (self._clock or self._now)():
                entries.move_to_end(key)
                self._hits += 1
                return row
            del entries[key]
            self._expirations += 1
            self._metrics.set_gauge("cache_size", len(entries))
        self._misses += 1
        return MISS

    def _counters(self) -> dict[str, int]:
        return {"cache_hits": self._hits, "cache_misses": self._misses}

    def put(self, key: Hashable, row: Row | None) -> None:
        spec = self._spec
        ttl = spec.ttl if row is not None else spec.miss_ttl
        if row is None and ttl is None:
            return  # misses are not cached without miss_ttl
        expires = _NEVER if ttl is None else self._now() + ttl
        entries = self._entries
        entries[key] = (row, expires)
        entries.move_to_end(key)
        self._loads += 1
        metrics = self._metrics
        metrics.inc("cache_loads")
        if len(entries) > spec.max_size:
            entries.popitem(last=False)
            self._evictions += 1
        metrics.set_gauge("cache_size", len(entries))

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(
            hits=self._hits,
            misses=self._misses,
            size=len(self._entries),
            loads=self._loads,
            evictions=self._evictions,
            expirations=self._expirations,
        )

    def __repr__(self) -> str:
        spec = self._spec
        return (
            f"<LruCache {len(self._entries)}/{spec.max_size} ttl={spec.ttl} "
            f"miss_ttl={spec.miss_ttl} hits={self._hits} misses={self._misses} "
            f"evictions={self._evictions}>"
        )


def lru(max_size: int, *, ttl: float | None = None, miss_ttl: float | None = None) -> LruSpec:
    """Return the spec of a least-recently-used cache of at most ``max_size`` rows.

    Rows found in the table are kept for ``ttl`` seconds (``None``: until evicted); keys the
    table has no row for are cached as misses for ``miss_ttl`` seconds (``None``: misses are
    not cached, every lookup of a missing key queries the table). Times are loop time.
    Failed lookups are never cached.

    Args:
        max_size: the most entries held (rows and cached misses together).
        ttl: seconds a row stays valid, or ``None`` for no expiry.
        miss_ttl: seconds a missing key stays cached, or ``None`` for no negative caching.

    Returns:
        The spec; pass it as ``cache=`` to a lookup join.

    Raises:
        ConfigError: ``max_size`` is not an int >= 1, or a TTL is not a finite number > 0
            (``ConfigError`` is a ``ValueError``).

    >>> lru(10_000, ttl=300, miss_ttl=30)
    LruSpec(max_size=10000, ttl=300.0, miss_ttl=30.0)
    """
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        msg = f"cache.lru: max_size must be an int >= 1, got {max_size!r}"
        raise ConfigError(msg)
    return LruSpec(
        max_size,
        _seconds("cache.lru", "ttl", ttl, optional=True),
        _seconds("cache.lru", "miss_ttl", miss_ttl, optional=True),
    )


# ---------------------------------------------------------------------------------- full


@final
@dataclass(frozen=True, slots=True)
class FullSpec:
    """The configuration of a full cache; build it with :func:`full`."""

    reload_interval: float | None

    def create(self, table: LookupTable, metrics: Metrics) -> FullCache:
        return FullCache(self, table, metrics)


@final
class FullCache:
    """The whole table in memory, reloaded periodically; built by :func:`full`.

    Timeline (``interval`` = ``reload_interval``; reloads are spaced from the end of the
    previous load, so they never overlap)::

        open ──load──► serve snapshot 1 ··· interval ··· load ──► serve snapshot 2 ···
                                                         │
                              (a failed load: keep serving snapshot 1, log, try again)

    A reload builds a new dict from ``table.scan()`` and swaps it in with one assignment:
    a ``get`` sees either the old snapshot or the new one, never a mix.
    """

    __slots__ = (
        "_hits",
        "_load_errors",
        "_loads",
        "_metrics",
        "_misses",
        "_owner",
        "_snapshot",
        "_spec",
        "_table",
        "_task",
    )

    def __init__(self, spec: FullSpec, table: LookupTable, metrics: Metrics) -> None:
        self._spec = spec
        self._table = table
        self._metrics = metrics
        self._snapshot: dict[Hashable, Row] = {}  # replaced whole, never mutated
        self._task: asyncio.Task[None] | None = None  # the reloader, while open
        self._owner: TaskOwner | None = None  # owns the reloader
        self._hits = self._misses = self._loads = self._load_errors = 0
        metrics.count_from(self._counters)  # cache_hits, cache_misses

    async def open(self) -> None:
        await self.reload()
        if self._spec.reload_interval is not None and self._task is None:
            owner = self._owner = TaskOwner(f"full cache of {self._table.name}")
            self._task = owner.spawn(
                self._reload_periodically(self._spec.reload_interval), "reload"
            )

    async def reload(self) -> None:
        """Load the whole table now and swap the snapshot in; errors propagate."""
        snapshot: dict[Hashable, Row] = {}
        async for key, row in self._table.scan():
            snapshot.setdefault(key, row)  # a non-unique key: the first row wins
        self._snapshot = snapshot
        self._loads += 1
        self._metrics.inc("cache_loads")
        self._metrics.set_gauge("cache_size", len(snapshot))

    async def _reload_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload()
            except Exception as exc:
                self._load_errors += 1
                self._metrics.inc("cache_load_errors")
                _log.warning(
                    "reloading the full cache of %s failed; still serving the %d rows "
                    "loaded before, next try in %s s: %s: %s",
                    self._table.name,
                    len(self._snapshot),
                    interval,
                    type(exc).__name__,
                    exc,
                )

    async def close(self) -> None:
        self._task = None
        owner, self._owner = self._owner, None
        if owner is not None:
            # Wait for the reloader to finish its cleanup (a scan in progress closes its
            # cursor) without turning its cancellation into ours.
            await owner.aclose()
        self._snapshot = {}
        self._metrics.set_gauge("cache_size", 0)

    def get(self, key: Hashable) -> Row | None:
        row = self._snapshot.get(key)
        if row is None:
            self._misses += 1
        else:
            self._hits += 1
        return row

    def _counters(self) -> dict[str, int]:
        return {"cache_hits": self._hits, "cache_misses": self._misses}

    def put(self, key: Hashable, row: Row | None) -> None:
        """Do nothing: the snapshot changes only by reloading."""

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(
            hits=self._hits,
            misses=self._misses,
            size=len(self._snapshot),
            loads=self._loads,
            load_errors=self._load_errors,
        )

    def __repr__(self) -> str:
        state = "reloading every " if self._task is not None else "interval "
        return (
            f"<FullCache {self._table.name!r} rows={len(self._snapshot)} "
            f"{state}{self._spec.reload_interval} s loads={self._loads} "
            f"load_errors={self._load_errors} hits={self._hits} misses={self._misses}>"
        )


def full(reload_interval: float | None) -> FullSpec:
    """Return the spec of a cache holding the whole table, reloaded every so often.

    The table is read with ``scan()`` when the lookup join opens (the join's ``open`` returns
    after this first load; its failure fails ``open``), then every ``reload_interval``
    seconds of loop time after the previous load ends, in a background task cancelled by
    ``close``. A reload swaps the new snapshot in at once; when it fails, the old snapshot
    keeps serving, a warning is logged (logger ``asyncwait.cache``), counter
    ``cache_load_errors`` goes up and the next interval tries again. A key not in the
    snapshot is a miss: ``None``, with no query.

    Args:
        reload_interval: seconds between loads, or ``None`` to load once.

    Returns:
        The spec; pass it as ``cache=`` to a lookup join.

    Raises:
        ConfigError: ``reload_interval`` is not a finite number > 0 or ``None``.

    >>> full(600)
    FullSpec(reload_interval=600.0)
    """
    return FullSpec(_seconds("cache.full", "reload_interval", reload_interval, optional=True))
