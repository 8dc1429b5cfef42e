"""The README's "Dataflow in ten lines": browse events enriched with the user's age."""

import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from asyncwait import StreamEnvironment, WatermarkStrategy, cache, lookups, sinks, sources

tmp = Path(tempfile.mkdtemp())
db = sqlite3.connect(tmp / "dim.db")  # the dimension table
db.execute("CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER)")
db.executemany("INSERT INTO dim_user VALUES (?, ?)", [("user_1", 22), ("user_2", 35)])
db.commit()
db.close()
(tmp / "events.jsonl").write_text(  # the event stream
    '{"userID": "user_1", "eventTime": "2016-06-06 07:03:42", "eventType": "browse"}\n'
    '{"userID": "user_2", "eventTime": "2016-06-06 07:03:44", "eventType": "click"}\n'
    '{"userID": "user_9", "eventTime": "2016-06-06 07:03:43", "eventType": "browse"}\n'
)


def event_time(event: dict[str, str]) -> int:
    """Milliseconds since the epoch; the times are UTC."""
    return int(datetime.fromisoformat(event["eventTime"]).replace(tzinfo=UTC).timestamp() * 1000)


env = StreamEnvironment(name="enrich-browse-events")
enriched = (
    env.from_source(sources.jsonl(tmp / "events.jsonl"))
    .assign_timestamps_and_watermarks(
        WatermarkStrategy.for_bounded_out_of_orderness(5_000, timestamp=event_time)
    )
    .lookup_join(
        lookups.sqlite(tmp / "dim.db", table="dim_user", key="user_id", columns=["age"]),
        on="userID",
        cache=cache.lru(10_000, ttl=300, miss_ttl=30),
    )
    .sink_to(sinks.collect())
)
result = env.execute()
for event in enriched.values:
    print(event)  # user_9 has no row: a left join passes the event on unchanged
print(f"{result.events_in} events in, {result.events_out} out, {result.errors} bad")
