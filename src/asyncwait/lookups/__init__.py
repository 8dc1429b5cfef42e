"""Lookup tables: the external side of a lookup (dimension-table) join.

A lookup table maps a key to one row (a ``dict`` of column -> value) or ``None``. Every
connector honours the :class:`LookupTable` contract; :func:`sqlite` is the embedded default,
and the network connectors (postgres, mysql, redis, http) import their driver only when used.

>>> from asyncwait import lookups
>>> users = lookups.sqlite("dim.db", table="dim_user", key="user_id", columns=["age"])
>>> users.name
'sqlite:dim.db/dim_user'
"""

from __future__ import annotations

from ._base import LookupTable as LookupTable
from ._base import PooledTable as PooledTable
from ._base import Row as Row
from ._http import HttpStatistics as HttpStatistics
from ._http import HttpStatusError as HttpStatusError
from ._http import HttpTable as HttpTable
from ._http import http as http
from ._redis import RedisStatistics as RedisStatistics
from ._redis import RedisTable as RedisTable
from ._redis import redis as redis
from .mysql import MysqlStatistics as MysqlStatistics
from .mysql import MysqlTable as MysqlTable
from .mysql import mysql as mysql
from .postgres import PostgresStatistics as PostgresStatistics
from .postgres import PostgresTable as PostgresTable
from .postgres import postgres as postgres
from .sqlite import SqliteStatistics as SqliteStatistics
from .sqlite import SqliteTable as SqliteTable
from .sqlite import sqlite as sqlite
from .threaded import ThreadedStatistics as ThreadedStatistics
from .threaded import ThreadedTable as ThreadedTable
from .threaded import threaded as threaded

__all__ = (
    "HttpStatistics",
    "HttpStatusError",
    "HttpTable",
    "LookupTable",
    "MysqlStatistics",
    "MysqlTable",
    "PooledTable",
    "PostgresStatistics",
    "PostgresTable",
    "RedisStatistics",
    "RedisTable",
    "Row",
    "SqliteStatistics",
    "SqliteTable",
    "ThreadedStatistics",
    "ThreadedTable",
    "http",
    "mysql",
    "postgres",
    "redis",
    "sqlite",
    "threaded",
)
