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

from ..errors import HttpStatusError as HttpStatusError
from ._base import LookupTable as LookupTable
from ._base import PooledTable as PooledTable
from ._base import Row as Row
from ._http import HttpStatistics as HttpStatistics
from ._http import HttpTable as HttpTable
from ._http import http as http
from ._mysql import MysqlStatistics as MysqlStatistics
from ._mysql import MysqlTable as MysqlTable
from ._mysql import mysql as mysql
from ._postgres import PostgresStatistics as PostgresStatistics
from ._postgres import PostgresTable as PostgresTable
from ._postgres import postgres as postgres
from ._redis import RedisStatistics as RedisStatistics
from ._redis import RedisTable as RedisTable
from ._redis import redis as redis
from ._sqlite import SqliteStatistics as SqliteStatistics
from ._sqlite import SqliteTable as SqliteTable
from ._sqlite import sqlite as sqlite
from ._threaded import ThreadedStatistics as ThreadedStatistics
from ._threaded import ThreadedTable as ThreadedTable
from ._threaded import threaded as threaded

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
