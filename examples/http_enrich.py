"""Browse events enriched with each user's profile from an HTTP service.

Set ``DIM_USER_URL`` to the service's per-user URL with ``{key}`` where the user id goes
(e.g. ``http://127.0.0.1:8080/users/{key}``): 200 with a JSON object is the row, 404 means
no such user. 429 and 5xx are retried (``Retry-After`` is honoured). Set
``DIM_USER_BATCH_URL`` too if the service has a batch endpoint (``POST {"keys": [...]}`` ->
``{key: row or null}``). Without ``DIM_USER_URL`` it only says so. Needs
``pip install 'asyncwait[http]'``.
"""

import os
import sys

from asyncwait import StreamEnvironment, cache, lookups, retry, sinks

url = os.environ.get("DIM_USER_URL")
if not url:
    print("set DIM_USER_URL=http://host:port/users/{key} to run this example")
    sys.exit(0)

events = [
    {"userID": "user_1", "eventType": "browse", "productID": 2},
    {"userID": "user_2", "eventType": "click", "productID": 5},
    {"userID": "ghost_7", "eventType": "browse", "productID": 7},
]
users = lookups.http(url, batch_url=os.environ.get("DIM_USER_BATCH_URL"), max_retry_after=2.0)
env = StreamEnvironment(name="http-enrich")
enriched = (
    env.from_collection(events)
    .lookup_join(
        users,
        on="userID",
        mode="ordered",
        timeout=10.0,
        # Only transient failures (429, 5xx, connection errors, timeouts) are worth a retry.
        retry=retry.exponential_backoff(
            4, 0.1, 2.0, jitter=0.2, on_exception=lookups.HttpStatusError.is_retryable
        ),
        cache=cache.lru(10_000, ttl=60, miss_ttl=10),
    )
    .sink_to(sinks.collect())
)
result = env.execute()
for event in enriched.values:
    print(event)  # ghost_7 is unknown (404): a left join passes it on unchanged
print(f"{result.events_in} events in, {result.events_out} out")
