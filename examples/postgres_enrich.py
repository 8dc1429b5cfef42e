"""Browse events enriched with the user's age from a PostgreSQL table (``lookups.postgres``).

Set ``ASYNCWAIT_PG_DSN`` to a database you may create a table in, e.g.
``postgresql://app:secret@127.0.0.1:5432/app``, and install the extra
(``pip install 'asyncwait[postgres]'``). The example creates (or refreshes) a small table
``example_dim_user``, then runs a lookup join over it: batched ``= ANY($1)`` lookups, an
LRU cache, and retries when the connection fails. Without ``ASYNCWAIT_PG_DSN`` it only says
what it needs.
"""

import asyncio
import os
import sys

from asyncwait import StreamEnvironment, cache, lookups, retry, sinks

DSN = os.environ.get("ASYNCWAIT_PG_DSN", "")
USERS = [("user_1", 22), ("user_2", 35), ("user_3", 41)]
EVENTS = [
    {"userID": "user_1", "eventType": "browse", "productID": 7},
    {"userID": "user_2", "eventType": "click", "productID": 3},
    {"userID": "user_9", "eventType": "browse", "productID": 7},  # no such user
    {"userID": "user_1", "eventType": "click", "productID": 9},
]


async def create_table() -> None:
    """Create the dimension table (parameterized inserts; asyncpg comes with the extra)."""
    import asyncpg

    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS example_dim_user (user_id text PRIMARY KEY, age integer)"
        )
        await conn.executemany(
            "INSERT INTO example_dim_user VALUES ($1, $2) "
            "ON CONFLICT (user_id) DO UPDATE SET age = EXCLUDED.age",
            USERS,
        )
    finally:
        await conn.close()


async def main() -> None:
    await create_table()
    env = StreamEnvironment(name="enrich-from-postgres")
    enriched = (
        env.from_collection(EVENTS)
        .lookup_join(
            lookups.postgres(DSN, table="example_dim_user", key="user_id", columns=["age"]),
            on="userID",
            mode="ordered",
            cache=cache.lru(10_000, ttl=300, miss_ttl=30),
            capacity=100,
            timeout=5.0,
            retry=retry.exponential_backoff(
                3, 0.1, 2.0, on_exception=retry.exception_type(ConnectionError)
            ),
        )
        .sink_to(sinks.collect())
    )
    result = await env.execute_async()
    for event in enriched.values:
        print(event)  # user_9 has no row: a left join passes the event on unchanged
    print(f"{result.events_in} events in, {result.events_out} out")


if __name__ == "__main__":
    if not DSN:
        print(
            "set ASYNCWAIT_PG_DSN=postgresql://user:password@host:5432/db to run this example "
            "against your PostgreSQL server (it creates a table example_dim_user)"
        )
        sys.exit(0)
    asyncio.run(main())
