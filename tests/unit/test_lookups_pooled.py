"""The pooled-table contract: which connectors a join sizes before opening them."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Hashable, Sequence

import pytest

from asyncwait import lookups
from asyncwait.lookups import LookupTable, PooledTable, Row


class PlainTable:
    """A user's own table: the lookup contract without ``expect_queries``."""

    name = "plain"

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def get(self, key: Hashable) -> Row | None:
        return None

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        return dict.fromkeys(keys)

    async def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        nothing: list[tuple[Hashable, Row]] = []
        for item in nothing:
            yield item


@pytest.mark.parametrize(
    "table",
    [
        lookups.postgres(None, table="t", key="k"),
        lookups.mysql("mysql://u:p@127.0.0.1/db", table="t", key="k"),
        lookups.threaded(lambda: sqlite3.connect(":memory:"), table="t", key="k"),
        lookups.redis("redis://127.0.0.1:6379/0"),
        lookups.http("http://127.0.0.1:8080/users/{key}"),
    ],
    ids=lambda table: type(table).__name__,
)
def test_every_connector_with_a_pool_is_a_pooled_table(table: LookupTable) -> None:
    assert isinstance(table, PooledTable)


def test_tables_without_a_pool_are_not() -> None:
    assert not isinstance(lookups.sqlite("dim.db", table="t", key="k"), PooledTable)
    assert not isinstance(PlainTable(), PooledTable)
