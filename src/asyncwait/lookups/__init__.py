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
from ._base import Row as Row
from .sqlite import SqliteStatistics as SqliteStatistics
from .sqlite import SqliteTable as SqliteTable
from .sqlite import sqlite as sqlite

__all__ = ("LookupTable", "Row", "SqliteStatistics", "SqliteTable", "sqlite")
