"""Lookup tables: the external side of a lookup (dimension-table) join.

A lookup table maps a key to one row (a ``dict`` of column -> value) or ``None``. Every
connector honours the :class:`LookupTable` contract (:class:`PooledTable` when a join sizes
its pool); :func:`sqlite` is the embedded default, and the network connectors (postgres,
mysql, redis, http) import their driver only when used. Every module is private; this one
is the public surface. The layout::

    _base.py       the contract (LookupTable, PooledTable, ThrottledTable, CountedTable,
                   Row), states, shared checks
    _sql.py        the tables' skeleton: SqlTable, key_chunks, Statements, Pooled/PoolSize
    _secrets.py    Secrets: passwords and tokens masked in names, reprs and messages
    _sqlite.py     sqlite()    over aiosqlite
    _postgres.py   postgres()  over asyncpg;  _postgres_server.py: DSN target, pg_catalog
    _mysql.py      mysql()     over aiomysql; _mysql_pool.py: DSN and connection pool,
                                              _mysql_dialect.py: quoting, key comparison
    _threaded.py   threaded()  any DB-API 2 driver in threads; _dbapi.py: the adaptation
    _redis.py      redis()     over redis-py; _redis_replies.py: replies into rows
    _http.py       http()      over aiohttp;  _http_client.py: session and requests

>>> from asyncwait import lookups
>>> users = lookups.sqlite("dim.db", table="dim_user", key="user_id", columns=["age"])
>>> users.name
'sqlite:dim.db/dim_user'
"""

from __future__ import annotations

from ..errors import HttpStatusError as HttpStatusError
from ..errors import LookupFailedError as LookupFailedError
from ._base import CountedTable as CountedTable
from ._base import LookupTable as LookupTable
from ._base import PooledTable as PooledTable
from ._base import Row as Row
from ._base import ThrottledTable as ThrottledTable
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
    "CountedTable",
    "HttpStatistics",
    "HttpStatusError",
    "HttpTable",
    "LookupFailedError",
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
    "ThrottledTable",
    "http",
    "mysql",
    "postgres",
    "redis",
    "sqlite",
    "threaded",
)
