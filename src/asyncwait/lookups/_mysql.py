"""MySQL/MariaDB lookup table over aiomysql.

Every statement is parameterized (the driver escapes each key; keys never become SQL text);
the only identifiers in SQL text are the table and column names, which are checked against
``information_schema`` at ``open()`` and quoted with backticks.

Connections come from a small pool of our own (``_mysql_pool``; aiomysql's pool does not
wake waiters when a broken connection is dropped): at most ``pool_size`` connections, each
used by one query at a time. A connection interrupted mid-query (cancelled, lost) is
closed, never reused: the rest of its answer would be read by the next query.

``get_many`` sends ``WHERE key IN (%s, …)`` and maps each row back to the keys asked for by
the key value the server returns. The server compares with the key column's collation and
type, so the value returned may differ from the one asked for (``'USER_1 '`` finds
``'user_1'`` under ``utf8mb4_general_ci``; ``'7'`` finds ``7`` in an INT column). Both sides
are therefore normalised the same way before matching (``_mysql_dialect.normaliser``);
should a row come back that matches no key after normalising (a collation rule not
modelled), the keys of that chunk still without a row are asked one by one with ``get``,
so ``get_many`` agrees with ``get``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar, final

from .._checks import check_int
from .._reprs import short_repr
from ..errors import BadInputError, LookupFailedError
from ._base import Row, TableState, check_identifiers, import_driver
from ._mysql_dialect import (
    BINDABLE,
    TEMPORAL,
    identity,
    normaliser,
    quote,
    quote_for_params,
    server_error,
)
from ._mysql_pool import Dsn, Pool, parse_dsn
from ._secrets import Secrets
from ._sql import Pooled, PoolSize, SqlTable, Statements, key_chunks

__all__ = ("MysqlStatistics", "MysqlTable", "mysql")

_T = TypeVar("_T")

# Keys per get_many statement; far below max_allowed_packet for any sane key.
_CHUNK: Final = 1000
# Rows read per step of a scan's server-side cursor.
_SCAN_BATCH: Final = 1000
# Connections the pool opens at most when neither pool_size nor the join says otherwise.
_DEFAULT_POOL: Final = 10
# The most connections a join's concurrency alone sizes the pool to (MariaDB allows 151).
_MAX_AUTO_POOL: Final = 50
_BEGIN_SNAPSHOT: Final = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"


@final
@dataclass(frozen=True, slots=True)
class MysqlStatistics:
    """A snapshot of a :class:`MysqlTable`'s counters.

    Attributes:
        queries: statements sent (a ``get``, each chunk of a ``get_many``, each ``scan``).
        in_flight: statements sent and not yet answered.
        connections: open connections (idle and busy).
        pool_size: the most connections the table opens.
    """

    queries: int
    in_flight: int
    connections: int
    pool_size: int


@final
class MysqlTable(SqlTable, Pooled):
    """A lookup table in a MySQL or MariaDB database, read through aiomysql.

    Users receive it from :func:`mysql`; see :class:`~asyncwait.lookups.LookupTable` for the
    contract. Rows hold the configured ``columns`` (all columns by default) in schema order,
    with the driver's Python types (``int``, ``str``, ``Decimal``, ``datetime``, ``bytes``).

    Errors: a server that cannot be reached (at ``open`` or later) raises
    :class:`ConnectionError` naming the lookup and ``host:port`` (a retry strategy can
    match it: ``retry.exception_type(ConnectionError)``); wrong credentials or an unknown
    database, table or column raise :class:`~asyncwait.ConfigError` listing what exists;
    other server errors of a query propagate as the driver's ``pymysql.err`` exceptions,
    with a note naming the lookup; a key the driver cannot bind (a tuple, a dict) raises
    :class:`~asyncwait.BadInputError` naming the key and the table, and a row the driver
    cannot convert (a zero date) :class:`~asyncwait.LookupFailedError` (the table's data is
    at fault, not the event). The password appears in none of them, nor in ``name`` or
    repr.
    """

    def __init__(
        self,
        dsn: Dsn,
        *,
        table: str,
        key: str,
        columns: tuple[str, ...] | None,
        pool_size: int | None,
    ) -> None:
        name = f"mysql://{dsn.user}@{dsn.where}/{dsn.database}/{table}"
        super().__init__(name, table=table, key=key, columns=columns)
        self._dsn = dsn
        self._secrets = Secrets(dsn.password)
        self._size = PoolSize(pool_size, default=_DEFAULT_POOL, most=_MAX_AUTO_POOL)
        self._driver: Any = None
        self._pool = Pool(dsn, name=name, secrets=self._secrets)
        # Set by open(); the SQL is built only from names found in the schema.
        self._get_sql = ""
        self._many_head = ""
        self._many_sql = Statements(lambda n: self._many_head + "(" + ", ".join(["%s"] * n) + ")")
        self._scan_sql = ""
        self._normalise: Callable[[object], object] = identity
        self._temporal: tuple[int, ...] = ()  # row positions (after the key) of DATE etc.
        self._temporal_types: dict[int, str] = {}

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._state is TableState.OPEN:
            return
        self._driver = import_driver("aiomysql", connector="mysql")
        self._pool.start(self._driver, self._size.value)
        self._state = TableState.OPEN
        try:
            conn = await self._acquire()
            try:
                await self._check_schema(conn)
            finally:
                self._pool.release(conn, reusable=True)
        except BaseException:
            await self.close()
            raise

    async def _check_schema(self, conn: Any) -> None:
        dsn = self._dsn
        async with conn.cursor() as cursor:
            await cursor.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "ORDER BY TABLE_NAME",
                (dsn.database,),
            )
            tables = [str(r[0]) for r in await cursor.fetchall()]
            if self._table not in tables:
                self._no_table(f"database {dsn.database!r}", tables)
            await cursor.execute(
                "SELECT COLUMN_NAME, DATA_TYPE, COLLATION_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (dsn.database, self._table),
            )
            schema = {str(r[0]): (str(r[1]).lower(), r[2]) for r in await cursor.fetchall()}
        wanted = self._choose_columns(list(schema), f"table {self._table!r}")
        # Identifiers go into statements that the driver %-formats: double any '%'.
        q = quote_for_params
        select = ", ".join(q(c) for c in wanted)
        source = q(self._table)
        key = q(self._key)
        self._get_sql = f"SELECT {select} FROM {source} WHERE {key} = %s LIMIT 1"
        self._many_head = f"SELECT {key}, {select} FROM {source} WHERE {key} IN "
        self._many_sql.clear()
        self._scan_sql = (  # sent without parameters: not %-formatted
            f"SELECT {quote(self._key)}, {', '.join(quote(c) for c in wanted)} "
            f"FROM {quote(self._table)}"
        )
        key_type, collation = schema[self._key]
        self._normalise = normaliser(key_type, collation)
        self._temporal_types = {
            i: schema[c][0] for i, c in enumerate(wanted) if schema[c][0] in TEMPORAL
        }
        self._temporal = tuple(self._temporal_types)

    async def close(self) -> None:
        self._state = TableState.CLOSED
        self._pool.close()

    def _acquire(self) -> Awaitable[Any]:
        # Hands back the pool's own awaitable: no extra coroutine on every query.
        if self._state is not TableState.OPEN:
            raise self._closed()
        return self._pool.acquire()

    def _scrub(self, exc: BaseException) -> str:
        return self._secrets.scrub(f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ queries

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        conn = await self._acquire()
        self._queries += 1
        self._in_flight += 1
        reusable = False
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(sql, params)
                rows = list(await cursor.fetchall())
            reusable = True
            return rows
        except Exception as exc:
            reusable = server_error(exc)  # a statement error leaves the connection usable
            raise self._query_error(exc, params) from exc
        finally:
            self._in_flight -= 1
            self._pool.release(conn, reusable=reusable)

    def _query_error(self, exc: Exception, params: Sequence[Any]) -> Exception:
        if server_error(exc):
            exc.add_note(f"lookup {self.name}, keys {short_repr(list(params))}")
            return exc
        if isinstance(exc, UnicodeError | ValueError):
            msg = (
                f"lookup {self.name}: a row of key {short_repr(list(params))} in table "
                f"{self._table!r} cannot be read: {self._scrub(exc)}"
            )
            return LookupFailedError(msg, table=self.name)
        msg = (
            f"lookup {self.name}: lost the connection to MySQL at {self._dsn.where}: "
            f"{self._scrub(exc)}"
        )
        return ConnectionError(msg)

    def _check_key(self, key: object) -> None:
        if not isinstance(key, BINDABLE) or isinstance(key, bool):
            msg = (
                f"lookup {self.name}: key {short_repr(key)} of type {type(key).__name__} "
                f"cannot be looked up in table {self._table!r} (use str, int, float, "
                "Decimal, bytes or a date/time)"
            )
            raise BadInputError(msg, source=self.name)

    def _row(self, key: object, values: Sequence[Any]) -> Row:
        for i in self._temporal:
            if isinstance(values[i], str):
                column = self._columns[i]
                msg = (
                    f"lookup {self.name}: the row of key {short_repr(key)} in table "
                    f"{self._table!r} is malformed: column {column!r} "
                    f"({self._temporal_types[i].upper()}) holds {values[i]!r}, which is not a "
                    "valid value of its type"
                )
                raise LookupFailedError(msg, table=self.name)
        return dict(zip(self._columns, values, strict=True))

    async def get(self, key: Hashable) -> Row | None:
        self._check_key(key)
        rows = await self._fetch(self._get_sql, (key,))
        if not rows:
            return None
        return self._row(key, rows[0])

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        result, chunks = key_chunks(keys, _CHUNK)
        for key in result:
            self._check_key(key)
        normalise = self._normalise
        for chunk in chunks:
            asked: dict[object, list[Hashable]] = {}
            for key in chunk:
                asked.setdefault(normalise(key), []).append(key)
            unmatched = False
            for row in await self._fetch(self._many_sql[len(chunk)], chunk):
                found = asked.get(normalise(row[0]))
                if found is None:
                    unmatched = True
                    continue
                for key in found:
                    if result[key] is None:  # a non-unique key: the first row wins
                        result[key] = self._row(key, row[1:])
            if unmatched:
                # The server matched a key by a rule the normaliser does not model.
                for key in chunk:
                    if result[key] is None:
                        result[key] = await self.get(key)
        return result

    async def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        conn = await self._acquire()
        self._queries += 1
        reusable = False
        try:
            # One snapshot for the whole table, however long streaming it takes.
            await self._guard(self._execute(conn, _BEGIN_SNAPSHOT))
            cursor = await self._guard(self._open_scan(conn))
            while rows := await self._guard(cursor.fetchmany(_SCAN_BATCH)):
                for row in rows:
                    yield row[0], self._row(row[0], row[1:])
            await self._guard(cursor.close())
            await self._guard(self._execute(conn, "COMMIT"))
            reusable = True
        finally:
            # A scan left early still has rows on the wire: that connection is not reusable.
            self._pool.release(conn, reusable=reusable)

    async def _open_scan(self, conn: Any) -> Any:
        cursor = await conn.cursor(self._driver.SSCursor)
        await cursor.execute(self._scan_sql)
        return cursor

    @staticmethod
    async def _execute(conn: Any, sql: str) -> None:
        async with conn.cursor() as cursor:
            await cursor.execute(sql)

    async def _guard(self, step: Awaitable[_T]) -> _T:
        """Await a driver call of a scan, translating its errors as :meth:`_fetch` does."""
        try:
            return await step
        except Exception as exc:
            raise self._query_error(exc, ()) from exc

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> MysqlStatistics:
        """Return the current counters."""
        return MysqlStatistics(
            queries=self._queries,
            in_flight=self._in_flight,
            connections=self._pool.connections,
            pool_size=self._size.value,
        )

    def __repr__(self) -> str:
        return (
            f"<MysqlTable {self.name!r} {self._state.value} "
            f"connections={self._pool.connections}/{self._size.value} "
            f"queries={self._queries} in-flight={self._in_flight}>"
        )


def mysql(
    dsn: str,
    *,
    table: str,
    key: str,
    columns: Sequence[str] | None = None,
    pool_size: int | None = None,
) -> MysqlTable:
    """Return a lookup table reading ``table`` of a MySQL/MariaDB database by ``key``.

    Nothing connects here: ``open()`` connects, checks that the table and every column exist
    (else :class:`~asyncwait.ConfigError` listing the tables or columns that do exist) and
    prepares parameterized statements. ``get`` is one ``SELECT … WHERE key = %s LIMIT 1``;
    ``get_many`` sends up to 1000 keys per ``WHERE key IN (…)`` and maps the rows back
    through the key column's collation and type (module docstring); ``scan`` streams the
    table through a server-side cursor inside one consistent-snapshot transaction. At most
    ``pool_size`` queries run at once; the rest wait for a connection.

    Args:
        dsn: ``mysql://user:password@host:3306/database`` (``mariadb://`` too); the password
            and other parts URL-quoted; without a password, the ``MYSQL_PWD`` environment
            variable gives it. Options: ``?charset=utf8mb4`` (the default),
            ``connect_timeout=10`` (seconds), ``unix_socket=/path``.
        table: the table (or view) to read.
        key: the column that lookups match with SQL ``=`` (the column's collation applies:
            under a ``*_ci`` collation, ``'USER_1'`` finds ``'user_1'``).
        columns: the columns to return; default all, in schema order.
        pool_size: the most connections; default sized by the join that uses the table
            (its ``max_queries`` + 1, at most 50), else 10.

    Returns:
        The table (a :class:`~asyncwait.lookups.LookupTable`), not yet open. Its ``name``
        is ``mysql://user@host:port/database/table``: never the password.

    Raises:
        ConfigError: a malformed DSN, an empty or repeated name, or ``pool_size`` not an
            int >= 1.

    >>> users = mysql("mysql://shop:secret@127.0.0.1:3306/shop", table="dim_user",
    ...               key="user_id", columns=["age"])
    >>> users.name
    'mysql://shop@127.0.0.1:3306/shop/dim_user'
    """
    parsed = parse_dsn(dsn)
    table, key, wanted = check_identifiers("lookups.mysql", table, key, columns)
    pool_size = check_int("lookups.mysql", "pool_size", pool_size, optional=True)
    return MysqlTable(parsed, table=table, key=key, columns=wanted, pool_size=pool_size)
