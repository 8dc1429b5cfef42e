"""SQLite lookup table over aiosqlite: the embedded default of a dimension-table join.

The database is opened **read-only** (``file:…?mode=ro``): a lookup never writes, and a
missing file is reported instead of silently created. Every statement is parameterized; the
only identifiers in SQL text are the table and column names, which are checked against the
real schema at ``open()`` and quoted.

aiosqlite runs one thread per connection and queues calls on it; ``connections`` threads
serve lookups round-robin. One connection is the default because it measured fastest for
point lookups (``bench/lookups.py``): a query takes microseconds, so the cost is the hop to
the thread and back, and more threads only contend for the GIL.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

from .._checks import check_int
from .._paths import Access, PathUse
from .._reprs import short_repr
from ..errors import BadInputError, ConfigError
from ._base import Row, TableState, check_identifiers, import_driver, quote_identifier
from ._sql import SqlTable, Statements, key_chunks

if TYPE_CHECKING:
    import aiosqlite

__all__ = ("SqliteStatistics", "SqliteTable", "sqlite")

# The files SQLite may keep beside a database: rollback journal, write-ahead log, its index.
_COMPANIONS = ("-journal", "-wal", "-shm")
# Keys per get_many statement: two parameters each, far below SQLite's variable limit (999
# before 3.32, 32766 since).
_CHUNK = 250
# Rows fetched per hop to the connection's thread while scanning.
_SCAN_BATCH = 1024
# Rows fetched per hop by aiosqlite's own cursor iteration (we use fetchmany instead).
_ITER_CHUNK = 1024


@final
@dataclass(frozen=True, slots=True)
class SqliteStatistics:
    """A snapshot of a :class:`SqliteTable`'s counters.

    Attributes:
        queries: statements sent (a ``get``, each chunk of a ``get_many``, each ``scan``).
        in_flight: statements sent and not yet answered.
        connections: open connections (each with its own thread).
    """

    queries: int
    in_flight: int
    connections: int


@final
class SqliteTable(SqlTable):
    """A lookup table in an SQLite database file, read through aiosqlite.

    Users receive it from :func:`sqlite`; see :class:`~asyncwait.lookups.LookupTable` for
    the contract. Rows hold the configured ``columns`` (all columns by default), in schema
    order. Queries go to ``connections`` connections round-robin; each runs its queries one
    at a time on its own thread, so concurrent callers queue there. Driver errors of a query
    (``sqlite3.Error``) propagate unchanged; a key SQLite cannot bind (a tuple, a dict)
    raises :class:`~asyncwait.BadInputError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str,
        key: str,
        columns: tuple[str, ...] | None,
        connections: int,
    ) -> None:
        super().__init__(f"sqlite:{os.fspath(path)}/{table}", table=table, key=key, columns=columns)
        self._path = Path(path)
        self._n_connections = connections
        self._pool: list[aiosqlite.Connection] = []
        self._next = 0
        # Set by open(); the SQL is built only from names found in the schema.
        self._get_sql = ""
        self._scan_sql = ""
        self._many_template = ""
        self._many_sql = Statements(
            lambda n: self._many_template.format(values=", ".join(["(?, ?)"] * n))
        )

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._state is TableState.OPEN:
            return
        driver = import_driver("aiosqlite", connector="sqlite")
        path = self._path
        if not path.is_file():
            where = f" (resolved to {path.resolve()})" if not path.is_absolute() else ""
            problem = "is not a file" if path.exists() else "does not exist"
            msg = f"lookup {self.name}: database file {os.fspath(path)!r}{where} {problem}"
            raise ConfigError(msg)
        uri = path.resolve().as_uri() + "?mode=ro"
        pool: list[aiosqlite.Connection] = []
        try:
            for _ in range(self._n_connections):
                try:
                    conn = await driver.connect(uri, uri=True, iter_chunk_size=_ITER_CHUNK)
                except sqlite3.Error as exc:
                    msg = f"lookup {self.name}: cannot open {os.fspath(path)!r} read-only: {exc}"
                    raise ConfigError(msg) from exc
                pool.append(conn)
            await self._check_schema(pool[0])
        except BaseException:
            for conn in pool:
                await conn.close()
            raise
        self._pool = pool
        self._next = 0
        self._state = TableState.OPEN

    async def _check_schema(self, conn: aiosqlite.Connection) -> None:
        path = os.fspath(self._path)
        try:
            tables = [
                str(r[0])
                for r in await conn.execute_fetchall(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
                )
            ]
        except sqlite3.DatabaseError as exc:
            msg = f"lookup {self.name}: {path!r} is not a readable SQLite database: {exc}"
            raise ConfigError(msg) from exc
        if self._table not in tables:
            self._no_table(f"database {path!r}", tables)
        existing = [
            str(r[0])
            for r in await conn.execute_fetchall(
                "SELECT name FROM pragma_table_info(?) ORDER BY cid", (self._table,)
            )
        ]
        wanted = self._choose_columns(existing, f"table {self._table!r} in {path!r}")
        q = quote_identifier
        select = ", ".join(q(c) for c in wanted)
        source = q(self._table)
        self._get_sql = f"SELECT {select} FROM {source} WHERE {q(self._key)} = ? LIMIT 1"
        self._scan_sql = f"SELECT {q(self._key)}, {select} FROM {source}"
        # get_many joins the keys as (index, key) rows, so each result maps back to the key
        # exactly as requested (SQLite's affinity may turn '2' into 2 when comparing).
        self._many_template = (
            "WITH _k(_i, _v) AS (VALUES {values}) "
            f"SELECT _k._i, {', '.join(f'{source}.{q(c)}' for c in wanted)} "
            f"FROM _k JOIN {source} ON {source}.{q(self._key)} = _k._v"
        )
        self._many_sql.clear()

    async def close(self) -> None:
        pool, self._pool = self._pool, []
        self._state = TableState.CLOSED
        for conn in pool:
            await conn.close()

    # ------------------------------------------------------------------ lookups

    def _connection(self) -> aiosqlite.Connection:
        pool = self._pool
        if not pool:
            raise self._closed()
        i = self._next
        self._next = (i + 1) % len(pool)
        return pool[i]

    async def _fetchall(self, sql: str, params: Sequence[Any]) -> list[Any]:
        conn = self._connection()
        self._queries += 1
        self._in_flight += 1
        try:
            return list(await conn.execute_fetchall(sql, params))
        except sqlite3.ProgrammingError as exc:
            # The statement was validated at open(): what is left is an unbindable key.
            if self._pool and "binding" in str(exc):
                msg = f"lookup {self.name}: key {short_repr(params)} cannot be used: {exc}"
                raise BadInputError(msg, source=self.name) from exc
            raise
        finally:
            self._in_flight -= 1

    async def get(self, key: Hashable) -> Row | None:
        rows = await self._fetchall(self._get_sql, (key,))
        if not rows:
            return None
        return dict(zip(self._columns, rows[0], strict=True))

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        result, chunks = key_chunks(keys, _CHUNK)
        columns = self._columns
        for chunk in chunks:
            params = [p for i, k in enumerate(chunk) for p in (i, k)]
            for row in await self._fetchall(self._many_sql[len(chunk)], params):
                k = chunk[row[0]]
                if result[k] is None:  # a non-unique key: the first row wins, as in get()
                    result[k] = dict(zip(columns, row[1:], strict=True))
        return result

    async def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        conn = self._connection()
        columns = self._columns
        self._queries += 1
        async with conn.execute(self._scan_sql) as cursor:
            while rows := await cursor.fetchmany(_SCAN_BATCH):
                for row in rows:
                    yield row[0], dict(zip(columns, row[1:], strict=True))

    # ------------------------------------------------------------------ introspection

    def paths(self) -> tuple[PathUse, ...]:
        """The database file and the files SQLite keeps beside it (journal, WAL, shared memory).

        The job refuses to start when an output is one of them: writing there would corrupt
        the database.
        """
        field = f"lookup {self.name}"
        uses = [PathUse(field, self._path, Access.READ)]
        for suffix in _COMPANIONS:
            companion = self._path.with_name(self._path.name + suffix)
            uses.append(PathUse(field, companion, Access.READ, detail=f"its {suffix} file"))
        return tuple(uses)

    def statistics(self) -> SqliteStatistics:
        """Return the current counters."""
        return SqliteStatistics(
            queries=self._queries, in_flight=self._in_flight, connections=len(self._pool)
        )

    def __repr__(self) -> str:
        return (
            f"<SqliteTable {self.name!r} {self._state.value} connections={len(self._pool)} "
            f"queries={self._queries} in-flight={self._in_flight}>"
        )


def sqlite(
    path: str | os.PathLike[str],
    *,
    table: str,
    key: str,
    columns: Sequence[str] | None = None,
    connections: int = 1,
) -> SqliteTable:
    """Return a lookup table reading ``table`` of the SQLite database at ``path`` by ``key``.

    Nothing is opened here: ``open()`` connects read-only, checks that the file, the table
    and every column exist (else :class:`~asyncwait.ConfigError` naming the path, the table
    and the columns or tables that do exist) and prepares parameterized statements.
    ``get`` is one ``SELECT … WHERE key = ? LIMIT 1``; ``get_many`` sends up to 250 keys per
    statement; ``scan`` streams the table in batches. Each query is one hop to a
    connection's thread; at most ``connections`` queries run at once, the rest queue.

    Args:
        path: the database file; it must exist (it is never created).
        table: the table (or view) to read.
        key: the column that lookups match, with SQL ``=`` (so SQLite's type affinity
            applies: ``'2'`` finds the row of an INTEGER key ``2``).
        columns: the columns to return; default all, in schema order.
        connections: aiosqlite connections, each with its own thread.

    Returns:
        The table (a :class:`~asyncwait.lookups.LookupTable`), not yet open.

    Raises:
        ConfigError: a name is empty or not a string, a column is repeated, or
            ``connections`` is not an int >= 1.

    >>> import asyncio, os, sqlite3, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "dim.db")
    >>> with sqlite3.connect(path) as db:
    ...     _ = db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
    ...     _ = db.execute("INSERT INTO dim_user VALUES ('user_1', 22)")
    >>> async def main() -> object:
    ...     users = sqlite(path, table="dim_user", key="user_id", columns=["age"])
    ...     await users.open()
    ...     try:
    ...         return await users.get("user_1"), await users.get("user_9")
    ...     finally:
    ...         await users.close()
    >>> asyncio.run(main())
    ({'age': 22}, None)
    """
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        msg = f"lookups.sqlite: path must be a file path, got {path!r}"
        raise ConfigError(msg)
    table, key, wanted = check_identifiers("lookups.sqlite", table, key, columns)
    connections = check_int("lookups.sqlite", "connections", connections)
    return SqliteTable(path, table=table, key=key, columns=wanted, connections=connections)
