"""The demo job's data and job file, written by the bench itself (standard library only).

``bench compare`` runs the demo job against two source trees, so its data must not come
from either of them: ``asyncwait.demo`` may move or change while the package is being
restructured. This module writes the same shape the demo writes (see
``src/asyncwait/demo.py``): JSONL browse events (``userID``, ``eventTime``, ``eventType``,
``productID``) with log-uniform user ids, event times a few seconds out of order and about
0.1 % malformed lines; a SQLite ``dim_user`` table (``user_id``, ``age``, ``city``) missing
every 50th user; and the demo's job file, whose TOML format is public API.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

__all__ = ("DemoFiles", "write_demo", "write_events", "write_job", "write_users")

EVENTS_FILE = "events.jsonl"
DB_FILE = "dim_user.db"
OUTPUT_FILE = "enriched.jsonl"
ERRORS_FILE = "errors.jsonl"

_START = 1_465_171_200  # 2016-06-06 00:00:00 UTC, as in the demo
_EVENTS_PER_SECOND = 50
_EVENT_TYPES = ("browse", "click", "cart", "buy")
_EVENT_WEIGHTS = (70, 20, 7, 3)
_LATENESS_WEIGHTS = (85, 7, 5, 3)  # seconds behind the newest event: 0, 1, 2, 3
_CITIES = ("Beijing", "Shanghai", "Hangzhou", "Shenzhen", "Chengdu", "Berlin", "Lisbon")
_MISSING_EVERY = 50  # user_<n> with n % 50 == 0 has no row: the left join keeps the event
_CHUNK = 50_000


@dataclass(frozen=True, slots=True)
class DemoFiles:
    """What :func:`write_demo` wrote into ``directory``."""

    directory: Path
    events: int
    users: int
    job: Path  # the demo's job file, LRU cache sized to the table


def write_events(path: Path, *, events: int, users: int, seed: int) -> None:
    """Write ``events`` browse events; about one line in 1,000 is malformed.

    The lines depend only on ``seed`` and their index, so the first ``k`` lines of a larger
    file equal a file of ``k`` events written with the same seed and ``users``.
    """
    rng = random.Random(seed)
    seconds = events // _EVENTS_PER_SECOND + 1
    stamps = [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(_START + s)) for s in range(seconds)]
    with path.open("w", encoding="utf-8", buffering=1 << 20) as out:
        for start in range(0, events, _CHUNK):
            stop = min(start + _CHUNK, events)
            lines = []
            for i in range(start, stop):
                # Log-uniform ids (Zipf-like), as in the demo: an LRU cache pays off.
                user = int((users + 1) ** rng.random())
                lag = rng.choices(range(4), _LATENESS_WEIGHTS)[0]
                kind = rng.choices(_EVENT_TYPES, _EVENT_WEIGHTS)[0]
                stamp = stamps[max(0, i // _EVENTS_PER_SECOND - lag)]
                product = rng.randrange(1, 1001)
                line = (
                    f'{{"userID": "user_{user}", "eventTime": "{stamp}", '
                    f'"eventType": "{kind}", "productID": {product}}}\n'
                )
                if rng.random() < 0.001:
                    line = _malformed(i, line)
                lines.append(line)
            out.writelines(lines)


def _malformed(i: int, line: str) -> str:
    """Spoil ``line`` as the demo does, one of three ways: bad JSON, no userID, bad time."""
    kind = i % 3
    if kind == 0:
        return line[: len(line) // 2] + "\n"
    if kind == 1:
        return '{"eventTime"' + line[line.index(', "eventTime"') + 13 :]
    return line.replace('"eventTime": "2016', '"eventTime": "20l6')


def write_users(path: Path, *, users: int, seed: int) -> int:
    """Write ``dim_user`` (user_id, age, city) into a new database; return its row count."""
    rng = random.Random(seed + 1)
    path.unlink(missing_ok=True)
    rows = (
        (f"user_{n}", rng.randint(16, 80), rng.choice(_CITIES))
        for n in range(1, users + 1)
        if n % _MISSING_EVERY or users < _MISSING_EVERY
    )
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        con.execute(
            "CREATE TABLE dim_user (user_id TEXT PRIMARY KEY, age INTEGER NOT NULL, city TEXT)"
        )
        while batch := list(islice(rows, _CHUNK)):
            con.executemany("INSERT INTO dim_user VALUES (?, ?, ?)", batch)
        con.commit()
        (count,) = con.execute("SELECT count(*) FROM dim_user").fetchone()
    finally:
        con.close()
    return int(count)


def write_job(
    path: Path,
    *,
    events: int,
    users: int,
    events_path: Path | None = None,
    db: Path | None = None,
    timeout: float = 5.0,
) -> None:
    """Write the demo's default job file (UNORDERED, capacity 100, LRU cache) to ``path``.

    The text follows ``asyncwait demo``'s job: event time from ``eventTime``, a left lookup
    join of ``age`` from ``dim_user``, timeout 5 s, an LRU cache sized to hold the table,
    exponential retry, a jsonl sink and an errors file. The output and errors files go next
    to the job file; the inputs are the given paths, or the demo's names next to it (so jobs
    in several directories can share one data set and run at the same time). ``timeout``
    is the lookup's per-event timeout in seconds (the demo's 5 s is too short under
    callgrind, which runs Python ~35 times slower).
    """
    size = max(10_000, users)
    # JSON string syntax is valid TOML basic-string syntax: it quotes any path safely.
    source = json.dumps(str(events_path) if events_path is not None else EVENTS_FILE)
    table = json.dumps(str(db) if db is not None else DB_FILE)
    path.write_text(
        "[job]\n"
        'name = "demo-enrich-browse-events"\n\n'
        "[source]\n"
        'type = "jsonl"\n'
        f"path = {source}\n\n"
        "[source.watermarks]\n"
        'timestamp_field = "eventTime"\n'
        'timestamp_format = "%Y-%m-%d %H:%M:%S"\n'
        "max_out_of_orderness_ms = 5000\n\n"
        "[[lookup]]\n"
        'type = "sqlite"\n'
        f"path = {table}\n"
        'table = "dim_user"\n'
        'key = "user_id"\n'
        'on = "userID"\n'
        'columns = ["age"]\n'
        'how = "left"\n'
        'mode = "unordered"\n'
        "capacity = 100\n"
        f"timeout = {float(timeout)!r}\n"
        f'cache = {{ type = "lru", max_size = {size}, ttl = 300, miss_ttl = 30 }}\n'
        'retry = { type = "exponential", max_retries = 3, initial_delay = 0.1, '
        "max_delay = 2.0 }\n\n"
        "[sink]\n"
        'type = "jsonl"\n'
        f'path = "{OUTPUT_FILE}"\n\n'
        "[errors]\n"
        f'path = "{ERRORS_FILE}"\n'
        f"max_errors = {max(1000, events // 100)}\n",
        encoding="utf-8",
    )


def write_demo(directory: Path, *, events: int, users: int, seed: int) -> DemoFiles:
    """Write events, ``dim_user`` and ``job.toml`` into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_events(directory / EVENTS_FILE, events=events, users=users, seed=seed)
    write_users(directory / DB_FILE, users=users, seed=seed)
    job = directory / "job.toml"
    write_job(job, events=events, users=users)
    return DemoFiles(directory, events, users, job)
