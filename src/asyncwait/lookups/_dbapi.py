"""Blocking DB-API 2 (PEP 249) drivers, adapted for the threaded lookup table.

A :class:`Worker` is one thread and the connection it owns: every call on the connection
(connect, query, scan, close) runs on that thread, since drivers such as sqlite3 allow a
connection only on the thread that made it. The functions below smooth over what differs
between drivers: their ``paramstyle`` (:func:`render`, :func:`bind`), identifier quoting,
autocommit, how they report a broken connection or a key they cannot bind, where a catalog
of tables can be found, and how the keys they convert are found in the rows
(:func:`match_rows`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, final

from ._base import Row

__all__ = (
    "MARK",
    "PARAMSTYLES",
    "Driver",
    "Unbindable",
    "Worker",
    "bind",
    "connect_for_lookups",
    "driver_name",
    "endpoint",
    "list_tables",
    "match_rows",
    "render",
    "rollback",
    "shutdown",
)

PARAMSTYLES: Final = ("qmark", "numeric", "named", "format", "pyformat")
# Placeholder for a parameter while SQL is built; replaced per paramstyle by render().
MARK: Final = "\x00"
# Drivers whose SQL quotes identifiers with backticks.
_MYSQL_DRIVERS: Final = frozenset({"pymysql", "MySQLdb", "mysql", "mariadb", "aiomysql"})


class Unbindable(Exception):
    """A ``TypeError`` of ``cursor.execute``: the driver cannot bind a key (PyMySQL)."""


@final
class Worker:
    """One thread and the connection it owns.

    Every method but the constructor runs on the worker's thread (through ``executor``).
    ``conn`` and ``reconnects`` are written only there (the loop only reads them, for
    statistics); ``busy`` only on the loop.
    """

    __slots__ = ("_connect", "busy", "conn", "executor", "reconnects")

    def __init__(self, index: int, prefix: str, connect: Callable[[], Any]) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"{prefix}-{index}")
        self._connect = connect
        self.conn: Any = None
        self.reconnects = 0
        self.busy = 0

    def open(self) -> None:
        """Connect."""
        self.conn = self._connect()

    def connection(self) -> Any:
        """The connection, reconnected first if it broke."""
        conn = self.conn
        if conn is None or _is_broken(conn):
            if conn is not None:
                self.conn = None
                _close_quietly(conn)
            self.reconnects += 1
            self.open()
            conn = self.conn
        return conn

    def fetch(self, sql: str, params: Any) -> list[Any]:
        """Run one parameterized query and return all its rows.

        Raises:
            Unbindable: ``cursor.execute`` raised ``TypeError``: it cannot bind a parameter.
        """
        conn = self.connection()
        cur = conn.cursor()
        try:
            try:
                cur.execute(sql, params)
            except TypeError as exc:  # PyMySQL: "dict can not be used as parameter"
                msg = f"{type(exc).__name__}: {exc}"
                raise Unbindable(msg) from exc
            return list(cur.fetchall())
        except Exception:
            rollback(conn)
            raise
        finally:
            _close_quietly(cur)

    def start_scan(self, sql: str) -> Any:
        """Run a query without parameters and return its open cursor (it stays here)."""
        conn = self.connection()
        cur = conn.cursor()
        try:
            cur.execute(sql)
        except BaseException:
            _close_quietly(cur)
            rollback(conn)
            raise
        return cur

    def scan_more(self, cur: Any, rows: int) -> list[Any]:
        """The next ``rows`` rows of a scan's cursor; none at its end."""
        return list(cur.fetchmany(rows))

    def stop_scan(self, cur: Any) -> None:
        """Close a scan's cursor."""
        _close_quietly(cur)

    def close(self) -> None:
        """Close the connection, if any."""
        conn, self.conn = self.conn, None
        if conn is not None:
            _close_quietly(conn)


@final
class Driver:
    """What the table needs to know of the driver module behind a connection.

    Attributes:
        name: the module's name, e.g. ``"psycopg"``.
        paramstyle: its ``paramstyle``, or ``None`` when it declares none.
        bad_key_errors: the errors that mean "this key cannot be used": :class:`Unbindable`
            and the module's ``DataError`` and ``ProgrammingError``, where it has them.
        mysql: whether it speaks MySQL's dialect (backticks, ``DATABASE()``).
    """

    __slots__ = ("bad_key_errors", "mysql", "name", "paramstyle")

    def __init__(self, conn: Any) -> None:
        module = sys.modules.get(type(conn).__module__.partition(".")[0])
        self.name: str = getattr(module, "__name__", type(conn).__module__)
        self.paramstyle: object = getattr(module, "paramstyle", None)
        self.bad_key_errors: tuple[type[BaseException], ...] = (
            Unbindable,
            *(
                cls
                for cls in (
                    getattr(module, "DataError", None),
                    getattr(module, "ProgrammingError", None),
                )
                if isinstance(cls, type) and issubclass(cls, BaseException)
            ),
        )
        self.mysql = self.name in _MYSQL_DRIVERS

    def quote(self, name: str) -> str:
        """Quote ``name`` as an identifier of the driver's dialect."""
        if self.mysql:
            return "`" + name.replace("`", "``") + "`"
        return '"' + name.replace('"', '""') + '"'


def render(text: str, style: str) -> str:
    """Replace each :data:`MARK` of ``text`` with the placeholder of ``style``."""
    if style in ("format", "pyformat"):
        text = text.replace("%", "%%")  # a literal % (in a quoted name) must be doubled
    parts = text.split(MARK)
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


def bind(values: Sequence[Any], style: str) -> Sequence[Any] | dict[str, Any]:
    """The parameters of a statement :func:`render` made, in the form ``style`` takes."""
    if style == "named":
        return {f"p{i}": v for i, v in enumerate(values)}
    return tuple(values)


def match_rows(
    chunk: Sequence[Hashable],
    rows: Sequence[Any],
    columns: tuple[str, ...],
    result: dict[Hashable, Row | None],
) -> list[Hashable]:
    """Map the rows of ``SELECT key, columns… WHERE key IN (chunk)`` back to ``chunk``.

    Each key found sets its row in ``result`` (a non-unique key: the first row wins), by
    equal key, or else by equal text: the database may have converted the key to the
    column's type (``'2'`` -> ``2`` in SQLite and MySQL, text -> integer in PostgreSQL).

    Returns:
        The keys still without a row, when some row matched none of the keys (the database
        compared by a rule of its own, such as a case-insensitive collation), so the caller
        asks for each of them alone; otherwise nothing.
    """
    by_key: dict[Any, Any] = {}
    for row in rows:
        by_key.setdefault(row[0], row)
    by_text: dict[str, Any] | None = None
    claimed: set[Any] = set()  # the key values of by_key some key found
    missed: list[Hashable] = []
    for k in chunk:
        row = by_key.get(k)
        if row is None and by_key:
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
    return missed if missed and len(claimed) < len(by_key) else []


def connect_for_lookups(connect: Callable[[], Any], *, name: str, where: str | None) -> Any:
    """Make one connection with ``connect()`` and switch it to autocommit.

    Raises:
        ConnectionError: ``connect()`` failed; the message names the table ``name`` and,
            when known, ``where`` it connects.
    """
    try:
        conn = connect()
    except Exception as exc:
        to = f" to {where}" if where else ""
        msg = f"lookup {name}: cannot connect{to}: {type(exc).__name__}: {exc}"
        raise ConnectionError(msg) from exc
    try:
        _autocommit(conn)
    except Exception:
        conn.close()
        raise
    return conn


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


def list_tables(conn: Any, *, mysql: bool) -> list[str] | None:
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
            rollback(conn)
        finally:
            _close_quietly(cur)
    return None


def rollback(conn: Any) -> None:
    """Roll back after a failed statement, ignoring a connection too broken for it."""
    # After an error some drivers refuse further statements until a rollback (psycopg
    # outside autocommit); a broken connection refuses the rollback too, which is fine.
    with contextlib.suppress(Exception):
        conn.rollback()


def _close_quietly(thing: Any) -> None:
    # Closing a broken connection or cursor may fail; it is being dropped anyway.
    with contextlib.suppress(Exception):
        thing.close()


async def shutdown(workers: Sequence[Worker]) -> None:
    """Close every worker's connection on its own thread, then stop the threads."""
    loop = asyncio.get_running_loop()
    try:
        await asyncio.gather(
            *(loop.run_in_executor(w.executor, w.close) for w in workers),
            return_exceptions=True,
        )
    finally:
        for worker in workers:
            worker.executor.shutdown(wait=False)


def endpoint(connect: Callable[[], Any]) -> str | None:
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


def driver_name(connect: Callable[[], Any]) -> str:
    """The top-level module of ``connect`` (through ``functools.partial``), for the name."""
    fn: Any = connect
    while hasattr(fn, "func"):
        fn = fn.func
    module = getattr(fn, "__module__", None) or "dbapi"
    top = module.partition(".")[0]
    if top.startswith("__"):  # __main__, __builtin__: says nothing about the driver
        return "dbapi"
    return top.lstrip("_") or "dbapi"  # _sqlite3 -> sqlite3
