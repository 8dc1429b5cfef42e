"""Browse events enriched with the user's age from a MySQL/MariaDB table (``lookups.mysql``).

Set ``ASYNCWAIT_MYSQL_DSN`` to a database you may create a table in, e.g.
``mysql://app:secret@127.0.0.1:3306/app`` (``mariadb://`` works too; without a password in
the DSN, ``MYSQL_PWD`` gives it), and install the extra (``pip install 'asyncwait[mysql]'``).
The example creates (or refreshes) a small table ``example_dim_user``, then runs a lookup
join over it: misses micro-batched into ``WHERE user_id IN (…)`` queries (up to 500 keys,
each batch waiting up to 2 ms for more), an LRU cache, and retries when the connection
fails. Without ``ASYNCWAIT_MYSQL_DSN`` it only says what it needs.
"""

import asyncio
import os
import sys
from urllib.parse import unquote, urlsplit

from asyncwait import StreamEnvironment, cache, lookups, retry, sinks

DSN = os.environ.get("ASYNCWAIT_MYSQL_DSN", "")
USERS = [("user_1", 22), ("user_2", 35), ("user_3", 41)]
EVENTS = [
    {"userID": "user_1", "eventType": "browse", "productID": 7},
    {"userID": "user_2", "eventType": "click", "productID": 3},
    {"userID": "user_9", "eventType": "browse", "productID": 7},  # no such user
    {"userID": "user_1", "eventType": "click", "productID": 9},
]


async def create_table() -> None:
    """Create the dimension table (parameterized inserts; aiomysql comes with the extra)."""
    import aiomysql

    url = urlsplit(DSN)
    conn = await aiomysql.connect(
        host=url.hostname or "127.0.0.1",
        port=url.port or 3306,
        user=unquote(url.username or ""),
        password=unquote(url.password) if url.password else os.environ.get("MYSQL_PWD", ""),
        db=unquote(url.path.lstrip("/")),
        autocommit=True,
    )
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(
                "CREATE TABLE IF NOT EXISTS example_dim_user "
                "(user_id VARCHAR(32) PRIMARY KEY, age INT)"
            )
            await cursor.executemany(
                "INSERT INTO example_dim_user VALUES (%s, %s) "
                "ON DUPLICATE KEY UPDATE age = VALUES(age)",
                USERS,
            )
    finally:
        conn.close()


async def main() -> None:
    await create_table()
    env = StreamEnvironment(name="enrich-from-mysql")
    enriched = (
        env.from_collection(EVENTS)
        .lookup_join(
            lookups.mysql(DSN, table="example_dim_user", key="user_id", columns=["age"]),
            on="userID",
            mode="ordered",
            cache=cache.lru(10_000, ttl=300, miss_ttl=30),
            capacity=100,
            timeout=5.0,
            retry=retry.exponential_backoff(
                3, 0.1, 2.0, on_exception=retry.exception_type(ConnectionError)
            ),
            max_batch_size=500,
            max_batch_wait=0.002,
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
            "set ASYNCWAIT_MYSQL_DSN=mysql://user:password@host:3306/db to run this example "
            "against your MySQL or MariaDB server (it creates a table example_dim_user)"
        )
        sys.exit(0)
    asyncio.run(main())
