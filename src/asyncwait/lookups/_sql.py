"""The skeleton the lookup tables share: state and counters, schema messages, batches, pools.

:class:`SqlTable` is the base of the four SQL tables (sqlite, postgres, mysql, threaded). It
holds what such a table *is* (name, table, key, columns, state, query counters) and says
what a schema check found missing; the subclass holds the driver, and with it the hot path
(``get``, ``get_many``), which stays free of helper calls per query or per key.

:class:`Statements` keeps an SQL table's ``get_many`` statement per chunk size. The rest
serves the key-value tables (redis, http) as well: :func:`key_chunks` splits a batch into
the distinct keys in chunks of the store's size and makes the result they fill, and
:class:`Pooled` with its :class:`PoolSize` is the pool sizing of
:class:`~asyncwait.lookups.PooledTable`, which every table with a pool inherits.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import NoReturn, final

from ..errors import ClosedError, ConfigError
from ._base import Row, TableState, closed_error

__all__ = ("PoolSize", "Pooled", "SqlTable", "Statements", "key_chunks")


def key_chunks(
    keys: Sequence[Hashable], size: int
) -> tuple[dict[Hashable, Row | None], list[list[Hashable]]]:
    """Split a ``get_many`` batch into the chunks of distinct keys the store is asked.

    Args:
        keys: the keys asked for; repeated keys are asked once.
        size: the most keys per chunk (one statement or request).

    Returns:
        The result to fill, ``{key: None}`` for every distinct key in the order first asked,
        and the chunks, in that order too.

    >>> key_chunks(["a", "b", "a", "c"], 2)
    ({'a': None, 'b': None, 'c': None}, [['a', 'b'], ['c']])
    """
    result: dict[Hashable, Row | None] = dict.fromkeys(keys)
    distinct = list(result)
    return result, [distinct[start : start + size] for start in range(0, len(distinct), size)]


@final
class Statements(dict[int, str]):
    """The ``get_many`` statements of a table by number of keys, each built on first use.

    Looking one up is a plain dict lookup; ``build(n)`` runs only for a count not seen yet.
    ``clear()`` it when the statements change (at ``open()``).

    >>> by_size = Statements(lambda n: "IN (" + ", ".join("?" * n) + ")")
    >>> by_size[3]
    'IN (?, ?, ?)'
    """

    __slots__ = ("_build",)

    def __init__(self, build: Callable[[int], str]) -> None:
        super().__init__()
        self._build = build

    def __missing__(self, keys: int) -> str:
        sql = self[keys] = self._build(keys)
        return sql


@final
class PoolSize:
    """How many connections (or threads) a pooled table opens.

    A size the user gave wins. Otherwise a join sizes it before the table opens
    (:meth:`expect`): its queries in flight plus one for a full cache's ``scan``, at most
    ``most``; a table used on its own opens ``default``.

    >>> size = PoolSize(None, default=10, most=50)
    >>> size.expect(1_000)
    >>> size.value
    50
    """

    __slots__ = ("_given", "_most", "value")

    def __init__(self, given: int | None, *, default: int, most: int) -> None:
        self._given = given
        self._most = most
        self.value = default if given is None else given

    def expect(self, queries: int) -> None:
        """Size the pool for ``queries`` queries in flight, unless the user gave a size."""
        if self._given is None:
            self.value = max(1, min(queries + 1, self._most))


class Pooled:
    """The :class:`~asyncwait.lookups.PooledTable` side of a table: a pool a join sizes.

    A private mixin. Contract for a subclass: it sets ``_size`` (a :class:`PoolSize` with
    the connector's default and bound), keeps ``_state`` (a :class:`TableState`) and opens
    ``_size.value`` connections (or threads) at ``open()``.
    """

    _size: PoolSize
    _state: TableState

    def expect_queries(self, queries: int) -> None:
        """Size the pool for ``queries`` concurrent queries, plus one for a cache's scan.

        :class:`~asyncwait.join.LookupJoin` calls this before ``open()`` with its
        ``max_queries``; a size given to the factory wins, the connector's bound caps the
        rest (see the factory), and a call on an open table changes nothing.
        """
        if self._state is not TableState.OPEN:
            self._size.expect(queries)


class SqlTable:
    """The state, counters and schema messages of an SQL lookup table (a private base).

    Contract for a subclass (each is ``@final``):

    * ``__init__`` passes the name, table, key and wanted columns (``None``: all of them).
    * Every statement sent adds one to ``_queries`` and holds ``_in_flight`` up until it is
      answered, inline in the subclass's lookups: a helper call per query would cost on
      the hot path.
    * ``open()`` checks the real schema with :meth:`_no_table` and :meth:`_choose_columns`
      (which fixes :attr:`columns`) and moves ``_state``; a lookup on a table that is not
      open raises the error :meth:`_closed` returns.
    """

    def __init__(self, name: str, *, table: str, key: str, columns: tuple[str, ...] | None) -> None:
        self.name = name
        self._table = table
        self._key = key
        self._wanted = columns
        self._state = TableState.NEW
        self._columns: tuple[str, ...] = ()  # set by open(), from names found in the schema
        self._queries = 0
        self._in_flight = 0

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of every row, in order (known after ``open()``)."""
        return self._columns

    @property
    def key(self) -> str:
        """The key column: the one lookups match (messages name it, e.g. a join's warning)."""
        return self._key

    def _closed(self) -> ClosedError:
        return closed_error(self.name, self._state)

    def _no_table(self, where: str, tables: Iterable[str], *, place: str = "") -> NoReturn:
        """Raise the error of a table that ``where`` lacks, listing the ``tables`` it has.

        Raises:
            ConfigError: always, e.g. ``database 'dim.db' has no table 'dim_users'; tables:
                dim_product, dim_user``.
        """
        msg = (
            f"lookup {self.name}: {where} has no table {self._table!r}{place}; "
            f"tables: {', '.join(tables) or '(none)'}"
        )
        raise ConfigError(msg)

    def _choose_columns(self, existing: Sequence[str], shown: str) -> tuple[str, ...]:
        """Fix :attr:`columns`: the wanted ones, or every ``existing`` column in order.

        Args:
            existing: the table's columns, in schema order.
            shown: the table as the message names it, e.g. ``"table 'dim_user'"``.

        Raises:
            ConfigError: the key or a wanted column is not among ``existing``; the message
                names each missing column once and lists those that exist.
        """
        wanted = self._wanted if self._wanted is not None else tuple(existing)
        missing = [c for c in (self._key, *wanted) if c not in existing]
        if missing:
            msg = (
                f"lookup {self.name}: {shown} has no column "
                f"{', '.join(repr(c) for c in dict.fromkeys(missing))}; "
                f"columns: {', '.join(existing)}"
            )
            raise ConfigError(msg)
        self._columns = wanted
        return wanted
