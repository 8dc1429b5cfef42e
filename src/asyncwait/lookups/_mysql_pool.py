"""Connections of the mysql lookup table: the DSN they are made from, the pool they come from.

:func:`parse_dsn` reads ``mysql://user:password@host:port/database?option=value`` without
ever echoing it (it may hold a password); :class:`Pool` lends at most ``pool_size``
connections, each to one query at a time.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigError

if TYPE_CHECKING:
    from ._secrets import Secrets

__all__ = ("Dsn", "Pool", "parse_dsn")

_SCHEMES: Final = ("mysql", "mariadb")
_DSN_OPTIONS: Final = ("charset", "connect_timeout", "unix_socket")


@final
@dataclass(frozen=True, slots=True)
class Dsn:
    """Where and as whom to connect, parsed from the DSN (the password never in a repr)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    charset: str
    connect_timeout: float
    unix_socket: str | None

    @property
    def where(self) -> str:
        """``host:port``, or the socket's path: what messages name."""
        return self.unix_socket or f"{self.host}:{self.port}"


def parse_dsn(dsn: object) -> Dsn:
    """Parse ``mysql://user:password@host:port/database?option=value`` (never echoing it)."""
    if not isinstance(dsn, str) or not dsn:
        msg = f"lookups.mysql: dsn must be a string like mysql://user:password@host:3306/db, got {type(dsn).__name__}"  # noqa: E501
        raise ConfigError(msg)
    try:
        parts = urlsplit(dsn)
        port = parts.port
        user = unquote(parts.username or "")
        password = parts.password
        host = parts.hostname or "127.0.0.1"
    except ValueError as exc:
        # The DSN may hold a password: describe the problem without repeating the text.
        msg = f"lookups.mysql: dsn is not a valid URL ({exc.args[0] if exc.args else exc})"
        raise ConfigError(msg) from None
    shown = f"{parts.scheme}://{user or '?'}@{host}"
    if parts.scheme not in _SCHEMES:
        msg = f"lookups.mysql: dsn {shown}/…: the scheme must be mysql:// or mariadb://"
        raise ConfigError(msg)
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        msg = f"lookups.mysql: dsn {shown}/…: name exactly one database after the host, e.g. /shop"
        raise ConfigError(msg)
    if not user:
        msg = f"lookups.mysql: dsn {shown}/{database}: a user is required (mysql://user@host/db)"
        raise ConfigError(msg)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_DSN_OPTIONS))
    if unknown:
        msg = (
            f"lookups.mysql: dsn {shown}/{database}: unknown option "
            f"{', '.join(unknown)} (allowed: {', '.join(_DSN_OPTIONS)})"
        )
        raise ConfigError(msg)
    try:
        timeout = float(options.get("connect_timeout", "10"))
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        msg = f"lookups.mysql: dsn {shown}/{database}: connect_timeout must be a number > 0"
        raise ConfigError(msg)
    return Dsn(
        host=host,
        port=3306 if port is None else port,
        user=user,
        password=unquote(password) if password is not None else os.environ.get("MYSQL_PWD", ""),
        database=database,
        charset=options.get("charset") or "utf8mb4",
        connect_timeout=timeout,
        unix_socket=options.get("unix_socket") or None,
    )


@final
class Pool:
    """At most ``size`` connections to MySQL, each lent to one query at a time.

    aiomysql's own pool does not wake its waiters when a broken connection is dropped, so
    this one is ours. A connection comes back through :meth:`release`, reusable or not: one
    interrupted mid-query (cancelled, lost) still has the rest of its answer on the wire,
    which the next query would read, so it is closed.
    """

    def __init__(self, dsn: Dsn, *, name: str, secrets: Secrets) -> None:
        self._dsn = dsn
        self._name = name  # the table's, for messages
        self._secrets = secrets
        self._driver: Any = None
        self._open = False
        # Invariant: _slots counts the connections not lent out, so at most the pool's size
        # exist; _free holds the idle ones (each with no pending result).
        self._slots: asyncio.Semaphore | None = None
        self._free: list[Any] = []
        self.connections = 0  # open connections, idle and lent out

    def start(self, driver: Any, size: int) -> None:
        """Lend connections of the aiomysql module ``driver``, at most ``size`` at once."""
        self._driver = driver
        self._slots = asyncio.Semaphore(size)
        self._open = True

    def close(self) -> None:
        """Close the idle connections; the ones lent out close when they come back."""
        self._open = False
        free, self._free = self._free, []
        for conn in free:
            conn.close()
            self.connections -= 1

    async def acquire(self) -> Any:
        """A connection of the pool, or a new one; waits while all of them are lent out."""
        slots = self._slots
        assert slots is not None  # the table starts the pool before any lookup
        await slots.acquire()
        try:
            while self._free:
                conn = self._free.pop()
                reader = getattr(conn, "_reader", None)
                if reader is not None and not reader.at_eof() and reader.exception() is None:
                    return conn
                conn.close()  # the server went away while it was idle
                self.connections -= 1
            return await self._connect()
        except BaseException:
            slots.release()
            raise

    def release(self, conn: Any, *, reusable: bool) -> None:
        """Take back a connection from :meth:`acquire`; it is closed unless ``reusable``."""
        if reusable and self._open and not conn.closed:
            self._free.append(conn)
        else:
            conn.close()
            self.connections -= 1
        assert self._slots is not None  # set by start() before any acquire
        self._slots.release()

    async def _connect(self) -> Any:
        dsn = self._dsn
        try:
            conn = await self._driver.connect(
                host=dsn.host,
                port=dsn.port,
                user=dsn.user,
                password=dsn.password,
                db=dsn.database,
                unix_socket=dsn.unix_socket,
                charset=dsn.charset,
                autocommit=True,
                connect_timeout=dsn.connect_timeout,
            )
        except Exception as exc:
            raise self._connect_error(exc) from exc
        self.connections += 1
        return conn

    def _connect_error(self, exc: Exception) -> Exception:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        reason = self._secrets.scrub(f"{type(exc).__name__}: {exc}")
        where = self._dsn.where
        if code == 1045:  # ER_ACCESS_DENIED_ERROR
            msg = f"lookup {self._name}: MySQL at {where} refused the login: {reason}"
            return ConfigError(msg)
        if code == 1049:  # ER_BAD_DB_ERROR
            msg = f"lookup {self._name}: MySQL at {where} has no such database: {reason}"
            return ConfigError(msg)
        msg = f"lookup {self._name}: cannot connect to MySQL at {where}: {reason}"
        return ConnectionError(msg)
