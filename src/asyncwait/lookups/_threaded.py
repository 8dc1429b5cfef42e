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
import contextlib
import functools
import sys
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TypeVar, final

from .._checks import check_int
from ..errors import BadInputError, ConfigError, _short_repr
from ._base import Row, TableState, check_identifiers
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
_PARAMSTYLES: Final = ("qmark", "numeric", "named", "format", "pyformat")
# Drivers whose SQL quotes identifiers with backticks.
_MYSQL_DRIVERS: Final = frozenset({"pymysql", "MySQLdb", "mysql", "mariadb", "aiomysql"})
# Placeholder for a parameter while SQL is built; replaced per paramstyle.
_MARK = "\x00"
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
class _Worker:
    """One thread and the connection it owns.

    ``conn`` and ``reconnects`` are written only on the worker's thread (the loop only reads
    them, for statistics); ``busy`` only on the loop.
    """

    __slots__ = ("busy", "conn", "executor", "reconnects")

    def __init__(self, index: int, prefix: str) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"{prefix}-{index}")
        self.conn: Any = None
        self.reconnects = 0
        self.busy = 0


def _is_broken(conn: Any) -> bool:
    """Whether a DB-API connection is known to be unusable (the driver's own flags)."""
    if getattr(conn, "broken", False) is True:  # psycopg 3
        return True
    closed = getattr(conn, "closed", False)
    if closed is True or (isinstance(closed, int) and not isinstance(closed, bool) and closed):
        return True  # psycopg 3 (bool), psycopg2 (int)
    return getattr(conn, "open", True) is False  # PyMySQL


def _autocommit(conn: Any) -> None:
    """Switch ``conn`` to autocommit: a read-only lookup must not hold a transaction open."""
    attr = getattr(conn, "autocommit", None)
    if callable(attr):
        attr(True)  # PyMySQL, MySQLdb
    elif isinstance(attr, bool):
        conn.autocommit = True  # psycopg, psycopg2, sqlite3 on 3.12+ (legacy mode is an int)


class _Unbindable(Exception):
    """A ``TypeError`` of ``cursor.execute``: the driver cannot bind a key (PyMySQL)."""


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
        self._connect = connect
        self._where = _endpoint(connect)
        self._paramstyle_option = paramstyle
        self._paramstyle = paramstyle or "qmark"
        self._size = PoolSize(threads, default=_DEFAULT_THREADS, most=_MAX_AUTO_THREADS)
        self._workers: list[_Worker] = []
        self._next = 0
        # Set by open(); the SQL is built only from names found in the schema.
        self._get_sql = ""
        self._scan_sql = ""
        self._many_template = ""
        self._many_sql = Statements(
            lambda n: self._sql(self._many_template.format(marks=", ".join([_MARK] * n)))
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
        workers = [_Worker(i, prefix) for i in range(self._size.value)]
        try:
            connected = await asyncio.gather(
                *(loop.run_in_executor(w.executor, self._open_connection, w) for w in workers),
                return_exceptions=True,
            )
            for outcome in connected:
                if isinstance(outcome, BaseException):
                    raise outcome
            first = workers[0]
            await loop.run_in_executor(first.executor, self._check_schema, first.conn)
        except BaseException:
            await _shutdown(workers)
            raise
        self._workers = workers
        self._next = 0
        self._state = TableState.OPEN

    def _open_connection(self, worker: _Worker) -> None:
        """Connect ``worker`` (on its own thread)."""
        try:
            conn = self._connect()
        except Exception as exc:
            where = f" to {self._where}" if self._where else ""
            msg = f"lookup {self.name}: cannot connect{where}: {type(exc).__name__}: {exc}"
            raise ConnectionError(msg) from exc
        try:
            _autocommit(conn)
        except Exception:
            conn.close()
            raise
        worker.conn = conn

    def _check_schema(self, conn: Any) -> None:
        """Find the table and its columns with portable queries, then build the SQL."""
        module = sys.modules.get(type(conn).__module__.partition(".")[0])
        driver = getattr(module, "__name__", type(conn).__module__)
        style = self._paramstyle_option or getattr(module, "paramstyle", None)
        if style not in _PARAMSTYLES:
            msg = (
                f"lookup {self.name}: cannot tell the paramstyle of driver {driver!r} "
                f"(found {style!r}); pass paramstyle= one of {', '.join(_PARAMSTYLES)}"
            )
            raise ConfigError(msg)
        self._paramstyle = style
        self._bad_key_errors = (
            _Unbindable,
            *(
                cls
                for cls in (
                    getattr(module, "DataError", None),
                    getattr(module, "ProgrammingError", None),
                )
                if isinstance(cls, type) and issubclass(cls, BaseException)
            ),
        )
        backtick = driver in _MYSQL_DRIVERS

        def q(name: str) -> str:
            if backtick:
                return "`" + name.replace("`", "``") + "`"
            return '"' + name.replace('"', '""') + '"'

        tables = _list_tables(conn, mysql=backtick)
        if tables is not None and self._table not in tables:
            self._no_table("the database", tables)
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT * FROM {q(self._table)} WHERE 1 = 0")
            existing = [str(d[0]) for d in cur.description or ()]
            cur.fetchall()
        except Exception as exc:
            _rollback(conn)
            msg = f"lookup {self.name}: cannot read table {self._table!r}: {exc}"
            raise ConfigError(msg) from exc
        finally:
            cur.close()
        wanted = self._choose_columns(existing, f"table {self._table!r}")
        select = ", ".join(q(c) for c in wanted)
        source = q(self._table)
        key = q(self._key)
        self._get_sql = self._sql(f"SELECT {select} FROM {source} WHERE {key} = {_MARK} LIMIT 1")
        # Sent without parameters, so not through _sql: drivers of the format paramstyles
        # leave a doubled % as it is in a statement without parameters.
        self._scan_sql = f"SELECT {key}, {select} FROM {source}"
        self._many_template = f"SELECT {key}, {select} FROM {source} WHERE {key} IN ({{marks}})"
        self._many_sql.clear()

    def _sql(self, text: str) -> str:
        """Replace each parameter mark of ``text`` with the paramstyle's placeholder."""
        style = self._paramstyle
        if style in ("format", "pyformat"):
            text = text.replace("%", "%%")  # a literal % (in a quoted name) must be doubled
        parts = text.split(_MARK)
        out = [parts[0]]
        for i, part in enumerate(parts[1:]):
            if style == "qmark":
                out.append("?")
            elif style == "numeric":
                out.append(f":{i + 1}")
            elif style == "named":
                out.append(f":p{i}")
            else:
                out.append("%s")
            out.append(part)
        return "".join(out)

    def _params(self, values: Sequence[Any]) -> Sequence[Any] | dict[str, Any]:
        if self._paramstyle == "named":
            return {f"p{i}": v for i, v in enumerate(values)}
        return tuple(values)

    async def close(self) -> None:
        workers, self._workers = self._workers, []
        self._state = TableState.CLOSED
        self._reconnects += sum(w.reconnects for w in workers)
        await _shutdown(workers)

    # ------------------------------------------------------------------ lookups

    def _worker(self) -> _Worker:
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

    async def _on(self, worker: _Worker, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(worker, *args)`` on ``worker``'s thread."""
        loop = asyncio.get_running_loop()
        worker.busy += 1
        self._in_flight += 1
        try:
            return await loop.run_in_executor(worker.executor, fn, worker, *args)
        finally:
            worker.busy -= 1
            self._in_flight -= 1

    def _ensure_connection(self, worker: _Worker) -> Any:
        """The worker's connection, reconnecting it if it broke (on the worker's thread)."""
        conn = worker.conn
        if conn is None or _is_broken(conn):
            if conn is not None:
                worker.conn = None
                _close_quietly(conn)
            worker.reconnects += 1
            self._open_connection(worker)
            conn = worker.conn
        return conn

    def _fetch(self, worker: _Worker, sql: str, params: Any) -> list[Any]:
        conn = self._ensure_connection(worker)
        cur = conn.cursor()
        try:
            try:
                cur.execute(sql, params)
            except TypeError as exc:  # PyMySQL: "dict can not be used as parameter"
                msg = f"{type(exc).__name__}: {exc}"
                raise _Unbindable(msg) from exc
            return list(cur.fetchall())
        except Exception:
            _rollback(conn)
            raise
        finally:
            _close_quietly(cur)

    def _bad_key(self, exc: BaseException, keys: object) -> NoReturn:
        reason = str(exc) if isinstance(exc, _Unbindable) else f"{type(exc).__name__}: {exc}"
        msg = (
            f"lookup {self.name}: key {_short_repr(keys)} of table {self._table!r} "
            f"cannot be looked up: {reason}"
        )
        raise BadInputError(msg, source=self.name) from exc

    def _check_key(self, key: object) -> None:
        if isinstance(key, _CONTAINERS):
            msg = (
                f"lookup {self.name}: key {_short_repr(key)} of table {self._table!r} "
                f"cannot be looked up: a {type(key).__name__} is not a single value"
            )
            raise BadInputError(msg, source=self.name)

    async def _query(self, sql: str, values: Sequence[Any], keys: object) -> list[Any]:
        worker = self._worker()
        self._queries += 1
        try:
            return await self._on(worker, self._fetch, sql, self._params(values))
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
            by_key: dict[Any, Any] = {}
            for row in rows:
                by_key.setdefault(row[0], row)  # a non-unique key: first row wins
            by_text: dict[str, Any] | None = None
            claimed: set[Any] = set()  # the key values of by_key some key found
            missed: list[Hashable] = []
            for k in chunk:
                row = by_key.get(k)
                if row is None and by_key:
                    # The database may have converted the key to the column's type ('2' -> 2
                    # in SQLite and MySQL, text -> integer in PostgreSQL): match its text too.
                    if by_text is None:
                        by_text = {}
                        for r in by_key.values():
                            by_text.setdefault(str(r[0]), r)
                    row = by_text.get(str(k))
                if row is None:
                    missed.append(k)
                else:
                    claimed.add(row[0])
                    result[k] = dict(zip(columns, row[1:], strict=True))
            if missed and len(claimed) < len(by_key):
                # A row no key found: the database matched a key by a rule of its own, such
                # as MySQL's case-insensitive and PAD SPACE collations ('USER_1 ' finds
                # 'user_1'). Ask it about each key still missing, as get() would.
                for k in missed:
                    result[k] = await self.get(k)
        return result

    async def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        worker = self._worker()
        columns = self._columns
        self._queries += 1
        cursor = await self._on(worker, _Scan.start, self, self._scan_sql)
        try:
            while rows := await self._on(worker, _Scan.more, cursor):
                for row in rows:
                    yield row[0], dict(zip(columns, row[1:], strict=True))
        finally:
            await self._on(worker, _Scan.stop, cursor)

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


class _Scan:
    """The steps of a scan, each run on the worker's thread (its cursor stays there)."""

    @staticmethod
    def start(worker: _Worker, table: ThreadedTable, sql: str) -> Any:
        conn = table._ensure_connection(worker)
        cur = conn.cursor()
        try:
            cur.execute(sql)
        except BaseException:
            _close_quietly(cur)
            _rollback(conn)
            raise
        return cur

    @staticmethod
    def more(worker: _Worker, cur: Any) -> list[Any]:
        return list(cur.fetchmany(_SCAN_BATCH))

    @staticmethod
    def stop(worker: _Worker, cur: Any) -> None:
        _close_quietly(cur)


def _list_tables(conn: Any, *, mysql: bool) -> list[str] | None:
    """The tables and views of the database, or ``None`` when no portable query knows them."""
    standard = (
        # MySQL/MariaDB: a schema is a database, and the account may see several.
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
        "ORDER BY table_name"
        if mysql
        # PostgreSQL, SQL Server...: the standard catalog, of the current database.
        else "SELECT table_name FROM information_schema.tables WHERE table_schema NOT IN "
        "('pg_catalog', 'information_schema', 'mysql', 'performance_schema', 'sys') "
        "ORDER BY table_name"
    )
    queries = (
        standard,
        # SQLite.
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name",
    )
    for sql in queries:
        cur = conn.cursor()
        try:
            cur.execute(sql)
            return [str(r[0]) for r in cur.fetchall()]
        except Exception:
            _rollback(conn)
        finally:
            _close_quietly(cur)
    return None


def _rollback(conn: Any) -> None:
    # After an error some drivers refuse further statements until a rollback (psycopg
    # outside autocommit); a broken connection refuses the rollback too, which is fine.
    with contextlib.suppress(Exception):
        conn.rollback()


def _close_quietly(thing: Any) -> None:
    # Closing a broken connection or cursor may fail; it is being dropped anyway.
    with contextlib.suppress(Exception):
        thing.close()


async def _shutdown(workers: Sequence[_Worker]) -> None:
    """Close every worker's connection on its own thread, then stop the threads."""
    loop = asyncio.get_running_loop()

    def close(worker: _Worker) -> None:
        conn, worker.conn = worker.conn, None
        if conn is not None:
            _close_quietly(conn)

    try:
        await asyncio.gather(
            *(loop.run_in_executor(w.executor, close, w) for w in workers),
            return_exceptions=True,
        )
    finally:
        for worker in workers:
            worker.executor.shutdown(wait=False)


def _endpoint(connect: Callable[[], Any]) -> str | None:
    """``host:port`` from the keywords of a ``functools.partial`` ``connect``, if it has them.

    For connection errors of drivers whose message leaves the port out (PyMySQL names only
    the host). Only ``host`` and ``port`` are read: never a password.
    """
    keywords: dict[str, Any] = {}
    fn: Any = connect
    while isinstance(fn, functools.partial):
        keywords = {**fn.keywords, **keywords}  # an outer partial's keywords win
        fn = fn.func
    host, port = keywords.get("host"), keywords.get("port")
    if not isinstance(host, str) or not host:
        return None
    if isinstance(port, int) and not isinstance(port, bool):
        return f"{host}:{port}"
    return host


def _driver_name(connect: Callable[[], Any]) -> str:
    """The top-level module of ``connect`` (through ``functools.partial``), for the name."""
    fn: Any = connect
    while hasattr(fn, "func"):
        fn = fn.func
    module = getattr(fn, "__module__", None) or "dbapi"
    top = module.partition(".")[0]
    if top.startswith("__"):  # __main__, __builtin__: says nothing about the driver
        return "dbapi"
    return top.lstrip("_") or "dbapi"  # _sqlite3 -> sqlite3


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
    if paramstyle is not None and paramstyle not in _PARAMSTYLES:
        msg = (
            f"lookups.threaded: paramstyle must be one of {', '.join(_PARAMSTYLES)}, "
            f"got {paramstyle!r}"
        )
        raise ConfigError(msg)
    threads = check_int("lookups.threaded", "threads", threads, maximum=_MAX_THREADS, optional=True)
    if name is None:
        name = f"threaded:{_driver_name(connect)}/{table}"
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
