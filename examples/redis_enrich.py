"""Browse events enriched with each user's age from Redis hashes ``dim_user:<id>``.

Set ``REDIS_URL`` (e.g. ``redis://:password@127.0.0.1:6379/0``) to a server you may write
to; the example stores two users there, then joins three events against them (batched:
the misses of one loop iteration go out as one pipeline). Without ``REDIS_URL`` it only
says so. Needs ``pip install 'asyncwait[redis]'``.
"""

import os
import sys

import redis as redis_py

from asyncwait import StreamEnvironment, cache, lookups, retry, sinks

url = os.environ.get("REDIS_URL")
if not url:
    print("set REDIS_URL=redis://[:password@]host:port/db to run this example")
    sys.exit(0)

with redis_py.Redis.from_url(url, decode_responses=True) as client:  # the dimension table
    client.hset("dim_user:user_1", mapping={"age": "22", "city": "Berlin"})
    client.hset("dim_user:user_2", mapping={"age": "35", "city": "Lisbon"})
    client.delete("dim_user:user_9")

events = [
    {"userID": "user_1", "eventType": "browse", "productID": 2},
    {"userID": "user_2", "eventType": "click", "productID": 5},
    {"userID": "user_9", "eventType": "browse", "productID": 7},
]
env = StreamEnvironment(name="redis-enrich")
enriched = (
    env.from_collection(events)
    .lookup_join(
        lookups.redis(url, key_prefix="dim_user:", value="hash"),
        on="userID",
        mode="ordered",
        capacity=100,
        timeout=5.0,
        retry=retry.exponential_backoff(
            3, 0.1, 1.0, on_exception=retry.exception_type(ConnectionError, TimeoutError)
        ),
        cache=cache.lru(10_000, ttl=60),
    )
    .sink_to(sinks.collect())
)
result = env.execute()
for event in enriched.values:
    print(event)  # hash values are strings: 'age': '22'; user_9 has no row (left join)
print(f"{result.events_in} events in, {result.events_out} out")
