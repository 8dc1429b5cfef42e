"""A lookup table over any blocking DB-API 2 driver, run in worker threads.

The fallback for systems without an async client: psycopg, sqlite3, PyMySQL or any other
PEP 249 driver. Each of ``threads`` workers is one thread owning one connection, made by
the caller's ``connect()`` on that thread (drivers such as sqlite3 allow a connection only
on the thread that made it) and closed there. Queries go to the least busy worker; the
event loop only waits for their futures, so it keeps running while a driver blocks.

Every statement is parameterized in the driver's ``paramstyle``; the only identifiers in
SQL text are the table and column names, checked against the real schema at ``open()`` and
quoted (double quotes, or backticks for MySQL drivers).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TypeVar, final

from .._checks import check_int
from .._reprs import short_repr
from ..errors import BadInputError, ConfigError
from ._base import Row, TableState, check_identifiers
from ._dbapi import (
    MARK,
    PARAMSTYLES,
    Driver,
    Unbindable,
    Worker,
    bind,
    connect_for_lookups,
    driver_name,
    endpoint,
    list_tables,
    match_rows,
    render,
    rollback,
    shutdown,
)
from ._sql import Pooled, PoolSize, SqlTable, Statements, key_chunks

__all__ = ("ThreadedStatistics", "ThreadedTable", "threaded")

_T = TypeVar("_T")

# Keys per get_many statement: one parameter each, below SQLite's old limit of 999.
_CHUNK = 250
# Rows per hop to the worker's thread while scanning.
_SCAN_BATCH = 1000
_MAX_THREADS = 64
_DEFAULT_THREADS = 4  # a table used on its own
_MAX_AUTO_THREADS = 16  # the most a join's concurrency alone sizes it to
# Keys that are no single SQL value: some drivers expand them (PyMySQL turns ('a',) into
# ('a'), which MySQL compares as 'a'), others reject them; all are refused before a query.
_CONTAINERS: Final = (tuple, list, set, frozenset, dict)


@final
@dataclass(frozen=True, slots=True)
class ThreadedStatistics:
    """A snapshot of a :class:`ThreadedTable`'s counters.

    Attributes:
        queries: statements sent (a ``get``, each chunk of a ``get_many``, each ``scan``).
        in_flight: statements sent and not yet answered.
        connections: workers holding an open connection.
        reconnects: connections replaced after they broke.
    """

    queries: int
    in_flight: int
    connections: int
    reconnects: int


@final
class ThreadedTable(SqlTable, Pooled):
    """A lookup table read through a blocking DB-API 2 driver in worker threads.

    Users receive it from :func:`threaded`; see :class:`~asyncwait.lookups.LookupTable` for
    the contract. Rows hold the configured ``columns`` (all by default), in the order of the
    driver's ``cursor.description``. At most ``threads`` statements run at once, one per
    worker; the rest queue on the least busy worker.

    Errors: a key the driver rejects (its ``DataError`` or ``ProgrammingError``, or a
    ``TypeError`` of ``cursor.execute`` — it cannot bind the key, or the server cannot
    compare it with the key column) and a key that is a container (tuple, list, set, dict)
    raise :class:`~asyncwait.BadInputError` naming the key and the table; a connection that
    cannot be opened raises :class:`ConnectionError` naming the table (and the ``host`` and
    ``port`` keywords of a ``functools.partial`` ``connect``, when given). A worker whose
    connection broke (the driver's ``closed``/``broken``/``open`` flags) reconnects on its
    next query; the failed query's driver error propagates unchanged (a retry strategy can
    match it), as do all other driver errors.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        table: str,
        key: str,
        columns: tuple[str, ...] | None,
        paramstyle: str | None,
        threads: int | None,
        name: str,
    ) -> None:
        super().__init__(name, table=table, key=key, columns=columns)
        # Each worker makes its connection on its own thread.
        self._connect = functools.partial(
            connect_for_lookups, connect, name=name, where=endpoint(connect)
        )
        self._paramstyle_option = paramstyle
        self._paramstyle = paramstyle or "qmark"
        self._size = PoolSize(threads, default=_DEFAULT_THREADS, most=_MAX_AUTO_THREADS)
        self._workers: list[Worker] = []
        self._next = 0
        # Set by open(); the SQL is built only from names found in the schema.
        self._get_sql = ""
        self._scan_sql = ""
        self._many_template = ""
        self._many_sql = Statements(
            lambda n: render(
                self._many_template.format(marks=", ".join([MARK] * n)), self._paramstyle
            )
        )
        self._bad_key_errors: tuple[type[BaseException], ...] = ()
        self._reconnects = 0  # of workers already shut down by close()

    @property
    def threads(self) -> int:
        """The worker threads (and connections) the table opens."""
        return self._size.value

    @property
    def paramstyle(self) -> str:
        """The DB-API paramstyle of the statements (the driver's, unless given)."""
        return self._paramstyle

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._state is TableState.OPEN:
            return
        loop = asyncio.get_running_loop()
        prefix = f"asyncwait-lookup-{self._table}"
        workers = [Worker(i, prefix, self._connect) for i in range(self._size.value)]
        try:
            connected = await asyncio.gather(
                *(loop.run_in_executor(w.executor, w.open) for w in workers),
                return_exceptions=True,
            )
            for outcome in connected:
                if isinstance(outcome, BaseException):
                    raise outcome
            first = workers[0]
            await loop.run_in_executor(first.executor, self._check_schema, first.conn)
        except BaseException:
            await shutdown(workers)
            raise
        self._workers = workers
        self._next = 0
        self._state = TableState.OPEN

    def _check_schema(self, conn: Any) -> None:
        """Find the table and its columns with portable queries, then build the SQL."""
        driver = Driver(conn)
        style = self._paramstyle_option or driver.paramstyle
        if not isinstance(style, str) or style not in PARAMSTYLES:
            msg = (
                f"lookup {self.name}: cannot tell the paramstyle of driver {driver.name!r} "
                f"(found {style!r}); pass paramstyle= one of {', '.join(PARAMSTYLES)}"
            )
            raise ConfigError(msg)
        self._paramstyle = style
        self._bad_key_errors = driver.bad_key_errors
        q = driver.quote
        tables = list_tables(conn, mysql=driver.mysql)
        if tables is not None and self._table not in tables:
            self._no_table("the database", tables)
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT * FROM {q(self._table)} WHERE 1 = 0")
            existing = [str(d[0]) for d in cur.description or ()]
            cur.fetchall()
        except Exception as exc:
            rollback(conn)
            msg = f"lookup {self.name}: cannot read table {self._table!r}: {exc}"
            raise ConfigError(msg) from exc
        finally:
            cur.close()
        wanted = self._choose_columns(existing, f"table {self._table!r}")
        select = ", ".join(q(c) for c in wanted)
        source = q(self._table)
        key = q(self._key)
        self._get_sql = render(f"SELECT {select} FROM {source} WHERE {key} = {MARK} LIMIT 1", style)
        # Sent without parameters, so not rendered: drivers of the format paramstyles
        # leave a doubled % as it is in a statement without parameters.
        self._scan_sql = f"SELECT {key}, {select} FROM {source}"
        self._many_template = f"SELECT {key}, {select} FROM {source} WHERE {key} IN ({{marks}})"
        self._many_sql.clear()

    async def close(self) -> None:
        workers, self._workers = self._workers, []
        self._state = TableState.CLOSED
        self._reconnects += sum(w.reconnects for w in workers)
        await shutdown(workers)

    # ------------------------------------------------------------------ lookups

    def _worker(self) -> Worker:
        workers = self._workers
        if not workers:
            raise self._closed()
        # The least busy worker; among equals, the next in turn.
        n = len(workers)
        start = self._next
        best = workers[start]
        for i in range(1, n):
            if best.busy == 0:
                break
            w = workers[(start + i) % n]
            if w.busy < best.busy:
                best = w
        self._next = (start + 1) % n
        return best

    async def _on(self, worker: Worker, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)``, a method of ``worker``, on ``worker``'s thread."""
        loop = asyncio.get_running_loop()
        worker.busy += 1
        self._in_flight += 1
        try:
            return await loop.run_in_executor(worker.executor, fn, *args)
        finally:
            worker.busy -= 1
            self._in_flight -= 1

    def _bad_key(self, exc: BaseException, keys: object) -> NoReturn:
        reason = str(exc) if isinstance(exc, Unbindable) else f"{type(exc).__name__}: {exc}"
        msg = (
            f"lookup {self.name}: key {short_repr(keys)} of table {self._table!r} "
            f"cannot be looked up: {reason}"
        )
        raise BadInputError(msg, source=self.name) from exc

    def _check_key(self, key: object) -> None:
        if isinstance(key, _CONTAINERS):
            msg = (
                f"lookup {self.name}: key {short_repr(key)} of table {self._table!r} "
                f"cannot be looked up: a {type(key).__name__} is not a single value"
            )
            raise BadInputError(msg, source=self.name)

    async def _query(self, sql: str, values: Sequence[Any], keys: object) -> list[Any]:
        worker = self._worker()
        self._queries += 1
        try:
            return await self._on(worker, worker.fetch, sql, bind(values, self._paramstyle))
        except self._bad_key_errors as exc:
            self._bad_key(exc, keys)

    async def get(self, key: Hashable) -> Row | None:
        self._check_key(key)
        rows = await self._query(self._get_sql, (key,), key)
        if not rows:
            return None
        return dict(zip(self._columns, rows[0], strict=True))

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        result, chunks = key_chunks(keys, _CHUNK)
        for key in result:
            self._check_key(key)
        columns = self._columns
        for chunk in chunks:
            rows = await self._query(self._many_sql[len(chunk)], chunk, chunk)
            # A row no key found: the database matched a key by a rule of its own, such as
            # MySQL's case-insensitive and PAD SPACE collations ('USER_1 ' finds 'user_1').
            # Ask it about each key still missing, as get() would.
            for k in match_rows(chunk, rows, columns, result):
                result[k] = await self.get(k)
        return result

    async def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        worker = self._worker()
        columns = self._columns
        self._queries += 1
        cursor = await self._on(worker, worker.start_scan, self._scan_sql)
        try:
            while rows := await self._on(worker, worker.scan_more, cursor, _SCAN_BATCH):
                for row in rows:
                    yield row[0], dict(zip(columns, row[1:], strict=True))
        finally:
            await self._on(worker, worker.stop_scan, cursor)

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> ThreadedStatistics:
        """Return the current counters."""
        return ThreadedStatistics(
            queries=self._queries,
            in_flight=self._in_flight,
            connections=sum(w.conn is not None for w in self._workers),
            reconnects=self._reconnects + sum(w.reconnects for w in self._workers),
        )

    def __repr__(self) -> str:
        return (
            f"<ThreadedTable {self.name!r} {self._state.value} threads={self._size.value} "
            f"queries={self._queries} in-flight={self._in_flight}>"
        )


def threaded(
    connect: Callable[[], Any],
    *,
    table: str,
    key: str,
    columns: Sequence[str] | None = None,
    paramstyle: str | None = None,
    threads: int | None = None,
    name: str | None = None,
) -> ThreadedTable:
    """Return a lookup table over a blocking DB-API 2 driver, queried in worker threads.

    ``connect()`` is called once per worker, on the worker's thread, at ``open()`` (and
    again when a worker's connection broke); the connections are switched to autocommit,
    since lookups only read. ``open()`` lists the tables (``information_schema``, or
    ``sqlite_master``), reads the table's columns from ``SELECT * … WHERE 1 = 0`` and
    checks ``key`` and ``columns`` against them (else :class:`~asyncwait.ConfigError`
    listing what exists). ``get`` is one ``SELECT … WHERE key = ? LIMIT 1``; ``get_many``
    sends up to 250 keys per ``WHERE key IN (…)`` and maps rows back by key (or, when the
    database converted the key's type, by its text; when a row still matches no key, as
    under MySQL's case-insensitive collations, each key still missing is asked for with
    ``get``); ``scan`` streams one ``SELECT`` in batches on one worker. At most
    ``threads`` statements run at once.

    Args:
        connect: makes one DB-API connection, e.g.
            ``functools.partial(psycopg.connect, dsn)``,
            ``functools.partial(pymysql.connect, host=..., user=..., password=...,
            database=...)`` or ``lambda: sqlite3.connect(path)``.
        table: the table (or view) to read.
        key: the column lookups match with ``=``.
        columns: the columns to return; default all.
        paramstyle: ``qmark``, ``numeric``, ``named``, ``format`` or ``pyformat``; default
            the driver module's ``paramstyle``.
        threads: worker threads, each with its own connection (1..64). Default: a
            :class:`~asyncwait.join.LookupJoin` sizes them before opening the table to the
            queries it keeps in flight plus one (2 when batching; capacity + 1 unbatched),
            at most 16; a table used on its own starts 4.
        name: the table's name in errors and metrics; default
            ``threaded:<driver module>/<table>``. It must not hold a password.

    Returns:
        The table (a :class:`~asyncwait.lookups.LookupTable`), not yet open.

    Raises:
        ConfigError: ``connect`` is not callable, a name is empty, a column is repeated, or
            ``paramstyle``/``threads``/``name`` is invalid.

    >>> import asyncio, functools, os, sqlite3, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "dim.db")
    >>> with sqlite3.connect(path) as db:
    ...     _ = db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
    ...     _ = db.execute("INSERT INTO dim_user VALUES ('user_1', 22)")
    >>> async def main() -> object:
    ...     users = threaded(
    ...         functools.partial(sqlite3.connect, path), table="dim_user", key="user_id"
    ...     )
    ...     await users.open()
    ...     try:
    ...         return users.name, await users.get("user_1"), await users.get("user_9")
    ...     finally:
    ...         await users.close()
    >>> asyncio.run(main())
    ('threaded:sqlite3/dim_user', {'user_id': 'user_1', 'age': 22}, None)
    """
    if not callable(connect):
        msg = (
            f"lookups.threaded: connect must be a callable returning a connection, got {connect!r}"
        )
        raise ConfigError(msg)
    table, key, wanted = check_identifiers("lookups.threaded", table, key, columns)
    if paramstyle is not None and paramstyle not in PARAMSTYLES:
        msg = (
            f"lookups.threaded: paramstyle must be one of {', '.join(PARAMSTYLES)}, "
            f"got {paramstyle!r}"
        )
        raise ConfigError(msg)
    threads = check_int("lookups.threaded", "threads", threads, maximum=_MAX_THREADS, optional=True)
    if name is None:
        name = f"threaded:{driver_name(connect)}/{table}"
    elif not isinstance(name, str) or not name:
        msg = f"lookups.threaded: name must be a non-empty string or None, got {name!r}"
        raise ConfigError(msg)
    return ThreadedTable(
        connect,
        table=table,
        key=key,
        columns=wanted,
        paramstyle=paramstyle,
        threads=threads,
        name=name,
    )
