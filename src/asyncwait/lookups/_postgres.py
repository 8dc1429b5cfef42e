"""PostgreSQL lookup table over an asyncpg connection pool.

Every statement is parameterized; the only identifiers in SQL text are the schema, table and
column names, which ``open()`` finds in ``pg_catalog`` and quotes. ``get`` is one prepared
``SELECT … WHERE key = $1 LIMIT 1`` (asyncpg prepares each statement once per connection and
caches it); ``get_many`` sends a whole chunk of keys as one array parameter,
``WHERE key = ANY($1::keytype[])``, and maps the rows back by their key; ``scan`` reads the
table with a server-side cursor inside a ``REPEATABLE READ READ ONLY`` transaction, so a
full cache loads one consistent snapshot.

Credentials come from the DSN or, when it is empty, from the standard ``PG*`` environment
variables (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``, ``~/.pgpass``),
which asyncpg reads itself. The password never appears in :attr:`PostgresTable.name`, in an
error message or in ``repr``. What the table learns of the server before its first query
(the DSN's target, the catalog's relations and types) is in ``_postgres_server``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, final

from .._checks import check_int, check_seconds
from .._reprs import short_repr
from ..errors import BadInputError, ConfigError, LookupFailedError
from ._base import Row, TableState, check_identifiers, import_driver, quote_identifier
from ._postgres_server import (
    column_types,
    connection_errors,
    find_relation,
    list_relations,
    target,
)
from ._sql import Pooled, PoolSize, SqlTable, key_chunks

if TYPE_CHECKING:
    import asyncpg

__all__ = ("PostgresStatistics", "PostgresTable", "postgres")

# Keys per get_many statement. One array parameter has no size limit that matters here;
# the chunk only bounds one round trip's size.
_CHUNK = 1000
# Rows per round trip of the scan's server-side cursor.
_SCAN_BATCH = 1000
# The default and the bound of pool_size (see postgres()), and the most connections a
# join's concurrency alone sizes the pool to (PostgreSQL allows 100 by default).
_DEFAULT_POOL = 10
_MAX_POOL = 100
_MAX_AUTO_POOL = 50
# Seconds to wait for busy connections to be released on close, before terminating them.
_CLOSE_GRACE = 10.0


@final
@dataclass(frozen=True, slots=True)
class PostgresStatistics:
    """A snapshot of a :class:`PostgresTable`'s counters.

    Attributes:
        queries: statements sent (a ``get``, each chunk of a ``get_many``, each ``scan``).
        in_flight: statements sent and not yet answered.
        connections: connections the pool holds now (at most ``pool_size``).
        idle: of those, the ones not running a statement.
    """

    queries: int
    in_flight: int
    connections: int
    idle: int


@final
class PostgresTable(SqlTable, Pooled):
    """A lookup table in PostgreSQL, read through an asyncpg connection pool.

    Users receive it from :func:`postgres`; see :class:`~asyncwait.lookups.LookupTable` for
    the contract. Rows hold the configured ``columns`` (all columns by default), in schema
    order, with asyncpg's Python types (``int``, ``str``, ``Decimal``, ``datetime``, …).
    Each query holds one pool connection while it runs; at most ``pool_size`` run at once
    and the rest wait for a connection.

    Errors: a key asyncpg cannot send as the key column's type (``'1'`` for an ``integer``
    key, a dict) raises :class:`~asyncwait.BadInputError` naming the key and the table; a
    row it cannot turn into Python values (a ``timestamp`` past year 9999) raises
    :class:`~asyncwait.LookupFailedError` (the table's data is at fault); a lost or
    unreachable server raises :class:`ConnectionError` naming ``host:port`` and the table
    (retry strategies can match it); other server errors propagate unchanged.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str,
        key: str,
        columns: tuple[str, ...] | None,
        schema: str | None,
        pool_size: int | None,
        connect_timeout: float,
    ) -> None:
        server = target(dsn)
        where = table if schema is None else f"{schema}.{table}"
        name = f"postgres://{server.user}@{server.address}/{server.database}/{where}"
        super().__init__(name, table=table, key=key, columns=columns)
        self._dsn = dsn
        self._target = server
        self._schema = schema
        self._size = PoolSize(pool_size, default=_DEFAULT_POOL, most=_MAX_AUTO_POOL)
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        # Set by open(); the SQL is built only from names found in the catalog.
        self._relation = ""  # "schema"."table", quoted
        self._get_sql = ""
        self._many_sql = ""
        self._scan_sql = ""
        self._driver: Any = None
        self._connection_errors: tuple[type[BaseException], ...] = (OSError,)
        self._data_error: type[BaseException] = ValueError

    @property
    def pool_size(self) -> int:
        """The most connections the pool opens."""
        return self._size.value

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._state is TableState.OPEN:
            return
        driver = import_driver("asyncpg", connector="postgres")
        exc_mod = driver.exceptions
        self._driver = driver
        self._connection_errors = connection_errors(exc_mod)
        self._data_error = exc_mod.DataError
        # min_size=0: connections open on demand (the first one just below), and asyncpg
        # does not keep reconnecting in the background while the server is down.
        pool = driver.create_pool(
            self._dsn or None,
            min_size=0,
            max_size=self._size.value,
            timeout=self._connect_timeout,
        )
        try:
            await pool
            try:
                conn = await pool.acquire()
            except self._connection_errors as exc:
                self._connection_failed(exc, "cannot connect to")
            except exc_mod.PostgresError as exc:
                # Login refused, no such database, too many connections...
                msg = (
                    f"lookup {self.name}: PostgreSQL at {self._target.address} refused the "
                    f"connection: {self._target.scrub(str(exc))}"
                )
                raise ConfigError(msg) from None
            try:
                await self._check_schema(conn)
            except self._connection_errors as exc:
                self._connection_failed(exc)
            finally:
                await pool.release(conn)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool
        self._state = TableState.OPEN

    async def _check_schema(self, conn: asyncpg.Connection) -> None:
        where = f"database {self._target.database!r} at {self._target.address}"
        found = await find_relation(conn, self._table, self._schema)
        if found is None:
            names = await list_relations(conn, qualify=self._schema is not None)
            place = "the search path" if self._schema is None else f"schema {self._schema!r}"
            self._no_table(where, names, place=f" in {place}")
        schema, oid = found
        types = await column_types(conn, oid)
        wanted = self._choose_columns(list(types), f"table {schema}.{self._table} in {where}")
        q = quote_identifier
        self._relation = source = f"{q(schema)}.{q(self._table)}"
        select = ", ".join(q(c) for c in wanted)
        key = q(self._key)
        # format_type() is the server's own spelling of the type, valid in a cast.
        key_type = types[self._key]
        self._get_sql = f"SELECT {select} FROM {source} WHERE {key} = $1 LIMIT 1"
        self._many_sql = f"SELECT {key}, {select} FROM {source} WHERE {key} = ANY($1::{key_type}[])"
        self._scan_sql = f"SELECT {key}, {select} FROM {source}"

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._state = TableState.CLOSED
        if pool is None:
            return
        try:
            # Lets statements still running finish; LookupJoin cancels its own first.
            await asyncio.wait_for(pool.close(), _CLOSE_GRACE)
        except TimeoutError:
            pool.terminate()
        except BaseException:
            pool.terminate()
            raise

    # ------------------------------------------------------------------ lookups

    def _require_pool(self) -> asyncpg.Pool:
        pool = self._pool
        if pool is None:
            raise self._closed()
        return pool

    def _connection_failed(
        self, exc: BaseException, what: str = "lost the connection to"
    ) -> NoReturn:
        text = self._target.scrub(f"{type(exc).__name__}: {exc}")
        msg = f"lookup {self.name}: {what} PostgreSQL at {self._target.address}: {text}"
        # The driver's message is in ours, scrubbed; chain it only when it holds no secret.
        cause = exc if text.endswith(str(exc)) else None
        raise ConnectionError(msg) from cause

    def _bad_input(self, exc: BaseException, keys: object) -> NoReturn:
        text = self._target.scrub(str(exc))
        if isinstance(exc, self._data_error):
            # The event's key cannot be used with this column: bad input.
            msg = (
                f"lookup {self.name}: key {short_repr(keys)} of table {self._table!r} "
                f"cannot be sent as the type of column {self._key!r}: {text}"
            )
            raise BadInputError(msg, source=self.name) from exc
        # The stored row cannot be read: the table is at fault, not the event.
        msg = (
            f"lookup {self.name}: key {short_repr(keys)} of table {self._table!r} has a row "
            f"that cannot be read (a value Python cannot represent): {text}"
        )
        raise LookupFailedError(msg, table=self.name) from exc

    def _lookup_failed(self, exc: Exception, keys: object) -> None:
        """Raise our error for a driver error of a lookup; return if ``exc`` stays as it is."""
        if isinstance(exc, self._data_error):
            self._bad_input(exc, keys)
        if isinstance(exc, self._connection_errors):
            self._connection_failed(exc)
        if isinstance(exc, ValueError | OverflowError):  # decoding the row
            self._bad_input(exc, keys)

    async def get(self, key: Hashable) -> Row | None:
        pool = self._require_pool()
        self._queries += 1
        self._in_flight += 1
        try:
            record = await pool.fetchrow(self._get_sql, key)
        except Exception as exc:
            self._lookup_failed(exc, key)
            raise
        finally:
            self._in_flight -= 1
        if record is None:
            return None
        return dict(zip(self._columns, record, strict=True))

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        pool = self._require_pool()
        result, chunks = key_chunks(keys, _CHUNK)
        columns = self._columns
        for chunk in chunks:
            self._queries += 1
            self._in_flight += 1
            try:
                records = await pool.fetch(self._many_sql, chunk)
            except Exception as exc:
                self._lookup_failed(exc, chunk)
                raise
            finally:
                self._in_flight -= 1
            # Rows come back in any order, keyed by the key column's value: that value equals
            # the requested key, because asyncpg sent the key as exactly that column's type.
            for record in records:
                k = record[0]
                if k in result and result[k] is None:  # a non-unique key: first row wins
                    result[k] = dict(zip(columns, record[1:], strict=True))
        return result

    async def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        pool = self._require_pool()
        columns = self._columns
        self._queries += 1
        try:
            # One snapshot for the whole read, however long it takes.
            async with (
                pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                async for record in conn.cursor(self._scan_sql, prefetch=_SCAN_BATCH):
                    yield record[0], dict(zip(columns, record[1:], strict=True))
        except self._connection_errors as exc:
            self._connection_failed(exc)
        except (ValueError, OverflowError) as exc:
            msg = (
                f"lookup {self.name}: table {self._table!r} has a row that cannot be read "
                f"(a value Python cannot represent): {exc}"
            )
            raise LookupFailedError(msg, table=self.name) from exc

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> PostgresStatistics:
        """Return the current counters."""
        pool = self._pool
        return PostgresStatistics(
            queries=self._queries,
            in_flight=self._in_flight,
            connections=0 if pool is None else pool.get_size(),
            idle=0 if pool is None else pool.get_idle_size(),
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<PostgresTable {self.name!r} {self._state.value} "
            f"connections={stats.connections}/{self._size.value} "
            f"queries={stats.queries} in-flight={stats.in_flight}>"
        )


def postgres(
    dsn: str | None,
    *,
    table: str,
    key: str,
    columns: Sequence[str] | None = None,
    schema: str | None = None,
    pool_size: int | None = None,
    connect_timeout: float = 10.0,
) -> PostgresTable:
    """Return a lookup table reading ``table`` of a PostgreSQL database by ``key``.

    Nothing connects here: ``open()`` creates the pool, connects once, finds the table in
    ``pg_catalog`` (in ``schema``, or the first schema of the search path that has it) and
    checks every column (else :class:`~asyncwait.ConfigError` listing the tables or columns
    that exist). ``get`` is one prepared ``SELECT … WHERE key = $1 LIMIT 1``; ``get_many``
    sends up to 1000 keys as one array, ``WHERE key = ANY($1::keytype[])``, and maps rows
    back by key; ``scan`` streams the table through a cursor in one ``REPEATABLE READ``
    read-only transaction. At most ``pool_size`` statements run at once.

    Sizing: without ``pool_size``, a :class:`~asyncwait.join.LookupJoin` sizes the pool
    before opening it (:meth:`PostgresTable.expect_queries`) to the queries it keeps in
    flight plus one for a full cache's scan: 2 when batching (the default: one query at a
    time), the operator's capacity + 1 with ``max_batch_size=1``, at most 50. A table used
    on its own opens at most 10 connections.

    Args:
        dsn: a ``postgresql://user:password@host:port/database`` URL (query parameters as
            asyncpg accepts them), or ``None``/``""`` to take everything from the ``PG*``
            environment variables. The password is never shown.
        table: the table (or view) to read.
        key: the column lookups match with ``=``; keys must have its Python type (``int``
            for ``integer``, ``str`` for ``text``), as asyncpg does not convert.
        columns: the columns to return; default all, in schema order.
        schema: the table's schema; default the search path.
        pool_size: the most connections, 1..100; default: sized by the join (see above).
        connect_timeout: seconds to wait for one connection to open.

    Returns:
        The table (a :class:`~asyncwait.lookups.LookupTable`), not yet open.

    Raises:
        ConfigError: ``dsn`` is not a ``postgres(ql)://`` URL, a name is empty, a column is
            repeated, or ``pool_size``/``connect_timeout`` is out of range.

    >>> users = postgres("postgresql://app:secret@db:5432/shop", table="dim_user", key="user_id")
    >>> users.name
    'postgres://app@db:5432/shop/dim_user'
    """
    if dsn is not None and not isinstance(dsn, str):
        msg = f"lookups.postgres: dsn must be a postgresql:// URL or None, got {type(dsn).__name__}"
        raise ConfigError(msg)
    dsn = dsn or ""
    if dsn and not dsn.startswith(("postgresql://", "postgres://")):
        # Never echo it: a key=value DSN may hold a password.
        msg = (
            "lookups.postgres: dsn must be a URL like postgresql://user:password@host:5432/db "
            f"(or empty to use the PG* environment variables); got a {len(dsn)}-character "
            "string that does not start with postgresql://"
        )
        raise ConfigError(msg)
    table, key, wanted = check_identifiers("lookups.postgres", table, key, columns)
    if schema is not None and (not isinstance(schema, str) or not schema or "\x00" in schema):
        msg = f"lookups.postgres: schema must be a non-empty name or None, got {schema!r}"
        raise ConfigError(msg)
    return PostgresTable(
        dsn,
        table=table,
        key=key,
        columns=wanted,
        schema=schema,
        pool_size=check_int(
            "lookups.postgres", "pool_size", pool_size, maximum=_MAX_POOL, optional=True
        ),
        connect_timeout=check_seconds("lookups.postgres", "connect_timeout", connect_timeout),
    )
