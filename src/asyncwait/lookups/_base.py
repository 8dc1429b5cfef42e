"""The lookup-table contract shared by every connector, and the helpers they all use.

:class:`LookupTable` is the contract, :class:`PooledTable` its extension for tables with a
pool that a join sizes, :class:`CountedTable` the one for tables with counters of their own
that a join reports; :class:`TableState` and :func:`closed_error` are every connector's
life cycle, :func:`import_driver` its optional driver; :func:`check_identifiers` and
:func:`quote_identifier` serve the SQL ones.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

from ..errors import ClosedError, ConfigError

__all__ = (
    "CountedTable",
    "LookupTable",
    "PooledTable",
    "Row",
    "TableState",
    "check_identifiers",
    "closed_error",
    "import_driver",
    "quote_identifier",
)

Row: TypeAlias = dict[str, Any]
"""One row of a lookup table: column name -> value."""


class TableState(enum.Enum):
    """Where a connector's table is in its life (shared by the connectors)."""

    NEW = "new"  # constructed; open() not called yet
    OPEN = "open"  # connected, configuration checked against the real system
    CLOSED = "closed"  # close() called; open() may connect again


def closed_error(name: str, state: TableState) -> ClosedError:
    """The error of a lookup on table ``name`` while it is not open (``state``)."""
    msg = f"lookup {name} {'was closed' if state is TableState.CLOSED else 'is not open yet'}"
    return ClosedError(msg)


def import_driver(module: str, *, connector: str, package: str | None = None) -> Any:
    """Import a connector's optional driver, or name the extra that installs it.

    Args:
        module: the driver's module, e.g. ``"asyncpg"``.
        connector: the connector (and the extra of the same name), e.g. ``"postgres"``.
        package: the driver as the message names it; default ``module``.

    Raises:
        ConfigError: the driver is not installed, e.g. ``lookups.postgres needs asyncpg:
            pip install 'asyncwait[postgres]'``.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:  # pragma: no cover - the dev environment has them all
        msg = f"lookups.{connector} needs {package or module}: pip install 'asyncwait[{connector}]'"
        raise ConfigError(msg) from exc


class LookupTable(Protocol):
    """A keyed, read-only view of an external table: the dimension side of a lookup join.

    Contract (every connector in :mod:`asyncwait.lookups` honours it, and so must your own):

    * ``name`` identifies the table in errors, logs and metrics, e.g.
      ``"sqlite:dim.db/dim_user"``. It never contains a password or other secret.
    * ``open()`` is awaited once before any other call; it connects and checks the
      configuration against the real system (tables, columns), raising
      :class:`~asyncwait.ConfigError` naming what is wrong and what exists. ``close()``
      releases everything, may be called at any time and is idempotent; calls after it
      raise :class:`~asyncwait.ClosedError`.
    * ``get(key)`` returns one row (a fresh ``dict`` of column -> value) or ``None`` when no row
      has that key. When the key is not unique, one of the matching rows is returned.
    * A key the table cannot use (a type the key column cannot hold) raises
      :class:`~asyncwait.BadInputError`: the event is at fault, and the join routes it aside
      (``get_many`` raising it makes the join ask the batch's keys again one by one). An
      answer the table cannot read as a row or a miss (a body or value that is not the
      declared format, a row the driver cannot decode) raises
      :class:`~asyncwait.LookupFailedError`: the store is at fault; the batch fails, once.
    * ``get_many(keys)`` looks up several keys in one round trip (or as few as the system's
      limits allow) and returns a dict with an entry for every distinct requested key.
    * ``scan()`` iterates over the whole table as ``(key, row)`` pairs: what a full cache
      loads. It reads a consistent snapshot where the system offers one.
    * Every method may be called concurrently from many tasks of the loop that opened the
      table; the table bounds its own use of connections. Driver errors of a query propagate
      (a retry strategy can match them); nothing is retried inside the table.
    * Rows handed out are never modified by the table afterwards, and callers must not
      modify them either: caches share them between events.
    """

    name: str

    async def open(self) -> None:
        """Connect and validate the configuration against the real table."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...

    async def get(self, key: Hashable) -> Row | None:
        """Return the row whose key column equals ``key``, or ``None``."""
        ...

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        """Return ``{key: row or None}`` for every key in ``keys``, in one round trip."""
        ...

    def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        """Iterate over every row of the table as ``(key, row)``."""
        ...


@runtime_checkable
class PooledTable(LookupTable, Protocol):
    """A lookup table with a pool of connections (or threads) sized from its use.

    Contract, on top of :class:`LookupTable`: a join tells the table how many queries it
    keeps in flight, before ``open()``, so a pooled table sizes its pool: enough for those
    queries and a full cache's ``scan``, within the table's own bound. A size the user gave
    explicitly wins; a call after ``open()`` changes nothing. Tables without the method
    (yours, test fakes) are used as they are.
    """

    def expect_queries(self, queries: int) -> None:
        """Size the pool for ``queries`` concurrent queries (called before ``open()``)."""
        ...


@runtime_checkable
class ThrottledTable(LookupTable, Protocol):
    """A lookup table that waits out a server's ``Retry-After`` itself, unless told not to.

    A join with a rate limit calls :meth:`defer_retry_after` before ``open()``: the table
    then raises the overload answer at once (``HttpStatusError`` 429/503 with
    ``retry_after``), and the join's rate limit pauses for the time the server asked,
    for every call of the lookup instead of one.
    """

    def defer_retry_after(self) -> None:
        """Raise overload answers at once instead of waiting (called before ``open()``)."""
        ...

    def one_call_per_key(self) -> bool:
        """Whether each key of a ``get_many`` is a call of its own to the store.

        A join with flow control then sends one key per query, so that its rate limit,
        concurrency limit and breaker count the calls the store sees.
        """
        ...


def quote_identifier(name: str) -> str:
    """Return ``name`` quoted as an SQL identifier (double quotes, inner quotes doubled).

    Quoting is the second line of defence: connectors first check every identifier against
    the real schema, so only names that exist ever reach a statement.

    >>> quote_identifier('dim_user')
    '"dim_user"'
    >>> quote_identifier('we"ird')
    '"we""ird"'
    """
    return '"' + name.replace('"', '""') + '"'


def check_identifiers(
    connector: str, table: object, key: object, columns: object
) -> tuple[str, str, tuple[str, ...] | None]:
    """Check the types of a SQL connector's ``table``, ``key`` and ``columns`` arguments.

    Args:
        connector: the connector's name for messages, e.g. ``"lookups.sqlite"``.
        table: the table name.
        key: the key column.
        columns: the columns to return, or ``None`` for all of them.

    Returns:
        ``(table, key, columns)`` with ``columns`` as a tuple.

    Raises:
        ConfigError: an argument is not a non-empty string (or a sequence of them), or a
            column is repeated.
    """
    for field, value in (("table", table), ("key", key)):
        if not isinstance(value, str) or not value or "\x00" in value:
            msg = f"{connector}: {field} must be a non-empty name, got {value!r}"
            raise ConfigError(msg)
    assert isinstance(table, str)  # checked just above
    assert isinstance(key, str)
    if columns is None:
        return table, key, None
    if isinstance(columns, str | bytes) or not isinstance(columns, Sequence):
        msg = f"{connector}: columns must be a list of column names or None, got {columns!r}"
        raise ConfigError(msg)
    names: list[str] = []
    for column in columns:
        if not isinstance(column, str) or not column or "\x00" in column:
            msg = f"{connector}: columns must be non-empty names, got {column!r} in {columns!r}"
            raise ConfigError(msg)
        if column in names:
            msg = f"{connector}: column {column!r} is listed twice in columns={columns!r}"
            raise ConfigError(msg)
        names.append(column)
    if not names:
        msg = f"{connector}: columns must name at least one column (or be None for all)"
        raise ConfigError(msg)
    return table, key, tuple(names)


@runtime_checkable
class CountedTable(LookupTable, Protocol):
    """A lookup table with counters of its own, reported with the operator's metrics.

    Contract, on top of :class:`LookupTable`: ``counters()`` is cheap (it reads attributes)
    and returns running totals by name, e.g. the HTTP table's ``{"retry_after_waits": 3}``.
    A join reads them whenever the operator's metrics are read (``Metrics.count_from``), so
    they appear in ``OperatorSummary.counters``, the CLI summary and ``--json-summary``.
    """

    def counters(self) -> Mapping[str, int]:
        """The table's running totals, by counter name."""
        ...
