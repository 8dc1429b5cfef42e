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

A failed query fails every lookup waiting for it, once, and is not cached; only a key the
table cannot use (``BadInputError`` from ``get_many``) is retried alone, so it fails only its
own lookups. An answer the table cannot read (``LookupFailedError``) is a failed lookup.

For example, with the dimension table in SQLite:

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

Every lookup is counted once: matched, missed (left join), dropped (inner join), failed or
rejected (bad input); see :class:`JoinStatistics`.

Modules: ``_join`` (the join: lifecycle, key, cache, output, the operator's callback form),
``_batcher`` (coalescing, batches, queries, the callback handle), ``_options`` (the checks of
the options) and ``_tally`` (the statistics, the no-match warning, ``min_match_ratio``).
"""

from ._join import JoinType as JoinType
from ._join import LookupJoin as LookupJoin
from ._tally import JoinStatistics as JoinStatistics

__all__ = ("JoinStatistics", "JoinType", "LookupJoin")
