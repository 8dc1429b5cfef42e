"""Data for ``asyncwait demo``: browse events, a ``dim_user`` table and a job file joining them.

The scenario is the classic dimension-table join: a stream of user behaviour events
(``{"userID": "user_1", "eventTime": "2016-06-06 07:03:42", "eventType": "browse",
"productID": 2}``) enriched with the user's age from a ``dim_user`` table, here an embedded
SQLite database. Event times increase with a little out-of-orderness (at most
:data:`MAX_LATENESS_S` seconds), user ids are log-uniform (Zipf-like: ``user_1`` is the most
active) so a cache smaller than the table pays off, 2 % of the users are
missing from ``dim_user`` (a left join keeps their events unchanged) and about 0.1 % of the
lines are malformed (bad JSON, no ``userID``, a bad ``eventTime``) so the errors file has
something to show.

Generation is synchronous and fast (a million events in a few seconds): lines are formatted
directly into a large write buffer and the table is filled with one ``executemany``.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Final, final

from .._paths import PathUse, paths_of
from ..errors import ConfigError
from ..lookups import LookupTable, Row
from ..operator import OutputMode

__all__ = (
    "DB_FILE",
    "ERRORS_FILE",
    "EVENTS_FILE",
    "JOB_FILE",
    "MAX_LATENESS_S",
    "OUTPUT_FILE",
    "DemoData",
    "SlowTable",
    "generate",
    "slowed",
    "write_job",
)

MAX_LATENESS_S: Final = 3
"""The most seconds an event trails the newest one before it (well inside the 5 s bound)."""

_START: Final = 1_465_171_200  # 2016-06-06 00:00:00 UTC, the day of the seed's example
_EVENTS_PER_SECOND: Final = 50
_EVENT_TYPES: Final = ("browse", "click", "cart", "buy")
_EVENT_WEIGHTS: Final = (70, 20, 7, 3)
_CITIES: Final = ("Beijing", "Shanghai", "Hangzhou", "Shenzhen", "Chengdu", "Berlin", "Lisbon")
_MISSING_EVERY: Final = 50  # user_<n> with n % 50 == 0 has no row in dim_user
_MALFORMED_PER_MILLE: Final = 1
_CHUNK: Final = 50_000

EVENTS_FILE: Final = "events.jsonl"
DB_FILE: Final = "dim_user.db"
JOB_FILE: Final = "job.toml"
OUTPUT_FILE: Final = "enriched.jsonl"
ERRORS_FILE: Final = "errors.jsonl"
# Marks a folder whose demo files the demo wrote: only then may it replace them.
_MARKER: Final = ".asyncwait-demo"

Progress = Callable[[str, int, int], None]
"""``progress(what, done, total)``: called as the data is written (``what``: a file name)."""


@final
@dataclass(frozen=True, slots=True)
class DemoData:
    """What :func:`generate` wrote.

    Attributes:
        directory: the demo directory.
        events_path: the events, one JSON object per line.
        db_path: the SQLite database holding ``dim_user``.
        events: lines written (malformed ones included).
        malformed: lines that are bad input (each ends up in the errors file).
        users: distinct user ids the events draw from.
        rows: rows in ``dim_user`` (the users without a row are left-joined unchanged).
    """

    directory: Path
    events_path: Path
    db_path: Path
    events: int
    malformed: int
    users: int
    rows: int


def generate(
    directory: str | Path,
    *,
    events: int,
    users: int,
    seed: int | None = None,
    progress: Progress | None = None,
) -> DemoData:
    """Write ``events`` browse events and a ``dim_user`` table of ``users`` users.

    Args:
        directory: where to write (created when missing). Files of an earlier demo in it
            are replaced; files of the same names that the demo did not write are not.
        events: lines to write, about 0.1 % of them malformed.
        users: distinct users (``user_1`` .. ``user_<users>``).
        seed: seed of the random generator, for reproducible data.
        progress: told how far the writing is, every few tens of thousands of lines.

    Returns:
        What was written.

    Raises:
        ValueError: ``events`` or ``users`` is below 1.
        ConfigError: ``directory`` holds files of the demo's names that it did not write.

    >>> import tempfile
    >>> data = generate(tempfile.mkdtemp(), events=1000, users=10, seed=1)
    >>> data.events, data.malformed, data.rows
    (1000, 1, 10)
    """
    if events < 1 or users < 1:
        msg = f"the demo needs events >= 1 and users >= 1, got events={events}, users={users}"
        raise ValueError(msg)
    directory = Path(directory)
    _claim(directory)
    rng = random.Random(seed)
    events_path = directory / EVENTS_FILE
    malformed = _write_events(events_path, rng, events=events, users=users, progress=progress)
    db_path = directory / DB_FILE
    rows = _write_users(db_path, rng, users=users, progress=progress)
    return DemoData(directory, events_path, db_path, events, malformed, users, rows)


def _claim(directory: Path) -> None:
    """Make ``directory`` the demo's, refusing one whose demo-named files are someone else's."""
    if directory.exists() and not directory.is_dir():
        msg = f"--dir {str(directory)!r} is not a folder"
        raise ConfigError(msg)
    names = (EVENTS_FILE, DB_FILE, JOB_FILE, OUTPUT_FILE, ERRORS_FILE)
    theirs = [name for name in names if (directory / name).exists()]
    if theirs and not (directory / _MARKER).exists():
        msg = (
            f"--dir {str(directory)!r} holds {', '.join(theirs)}, which the demo did not write; "
            "choose another folder (nothing was changed)"
        )
        raise ConfigError(msg)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / _MARKER).write_text(
        "Written by `asyncwait demo`: it may replace its own files in this folder.\n",
        encoding="utf-8",
    )


def _write_events(
    path: Path, rng: random.Random, *, events: int, users: int, progress: Progress | None
) -> int:
    """Write the events file; return how many lines are malformed."""
    seconds = events // _EVENTS_PER_SECOND + 1
    stamps = [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(_START + s)) for s in range(seconds)]
    n_bad = max(1, events * _MALFORMED_PER_MILLE // 1000)
    bad = set(rng.sample(range(events), n_bad))
    random_ = rng.random
    top = users + 1  # int(top ** u) for u in [0, 1) covers 1 .. users
    with path.open("w", encoding="utf-8", buffering=1 << 20) as out:
        for start in range(0, events, _CHUNK):
            stop = min(start + _CHUNK, events)
            k = stop - start
            kinds = rng.choices(_EVENT_TYPES, _EVENT_WEIGHTS, k=k)
            late = rng.choices(range(MAX_LATENESS_S + 1), (85, 7, 5, 3), k=k)
            lines = []
            for i, kind, lag in zip(range(start, stop), kinds, late, strict=True):
                # Log-uniform ids (Zipf-like): a few users are very active, as in real
                # traffic, which is what lets an LRU cache smaller than dim_user pay off.
                user = int(top ** random_())
                stamp = stamps[max(0, i // _EVENTS_PER_SECOND - lag)]
                product = int(random_() * 1000) + 1
                lines.append(
                    f'{{"userID": "user_{user}", "eventTime": "{stamp}", '
                    f'"eventType": "{kind}", "productID": {product}}}\n'
                )
            for i in sorted(bad.intersection(range(start, stop))):
                lines[i - start] = _malformed(i, lines[i - start])
            out.writelines(lines)
            if progress is not None:
                progress(path.name, stop, events)
    return n_bad


def _malformed(i: int, line: str) -> str:
    """Spoil ``line`` one of three ways, chosen by ``i``: bad JSON, no userID, bad time."""
    kind = i % 3
    if kind == 0:
        return line[: len(line) // 2] + "\n"  # cut in half: not JSON any more
    if kind == 1:
        return '{"eventTime"' + line[line.index(', "eventTime"') + 13 :]  # no userID
    return line.replace('"eventTime": "2016', '"eventTime": "20l6')  # unparsable time


def _write_users(path: Path, rng: random.Random, *, users: int, progress: Progress | None) -> int:
    """Write ``dim_user`` (user_id, age, city); return its row count."""
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
        done, total = 0, users if users < _MISSING_EVERY else users - users // _MISSING_EVERY
        while batch := list(islice(rows, _CHUNK)):
            con.executemany("INSERT INTO dim_user VALUES (?, ?, ?)", batch)
            done += len(batch)
            if progress is not None:
                progress(path.name, done, total)
        con.commit()
        (count,) = con.execute("SELECT count(*) FROM dim_user").fetchone()
    finally:
        con.close()
    return int(count)


def write_job(
    data: DemoData,
    *,
    mode: OutputMode = OutputMode.UNORDERED,
    capacity: int = 100,
    cache: bool = True,
) -> Path:
    """Write the demo's job file next to its data and return its path.

    The job reads ``events.jsonl`` with event time from ``eventTime``, left-joins ``age`` from
    ``dim_user`` on ``userID`` and writes ``enriched.jsonl``; bad lines go to ``errors.jsonl``.

    Args:
        data: the generated data.
        mode: the lookup's output mode.
        capacity: the lookup's capacity.
        cache: whether the lookup has an LRU cache.

    Returns:
        The job file.
    """
    # Sized to hold the whole dimension table: a user's age is looked up once per TTL.
    size = max(10_000, data.users)
    cache_line = (
        f'cache = {{ type = "lru", max_size = {size}, ttl = 300, miss_ttl = 30 }}\n'
        if cache
        else ""
    )
    text = (
        "# Written by `asyncwait demo`: browse events enriched with the user's age.\n"
        "# Run it again with: asyncwait run " + JOB_FILE + "\n\n"
        "[job]\n"
        'name = "demo-enrich-browse-events"\n\n'
        "[source]\n"
        'type = "jsonl"\n'
        f'path = "{EVENTS_FILE}"\n\n'
        "[source.watermarks]\n"
        'timestamp_field = "eventTime"\n'
        'timestamp_format = "%Y-%m-%d %H:%M:%S"\n'
        "max_out_of_orderness_ms = 5000\n\n"
        "[[lookup]]\n"
        'type = "sqlite"\n'
        f'path = "{DB_FILE}"\n'
        'table = "dim_user"\n'
        'key = "user_id"\n'
        'on = "userID"\n'
        'columns = ["age"]\n'
        'how = "left"\n'
        f'mode = "{mode.value}"\n'
        f"capacity = {capacity}\n"
        "timeout = 5.0\n"
        f"{cache_line}"
        'retry = { type = "exponential", max_retries = 3, initial_delay = 0.1, '
        "max_delay = 2.0 }\n\n"
        "[sink]\n"
        'type = "jsonl"\n'
        f'path = "{OUTPUT_FILE}"\n\n'
        "[errors]\n"
        f'path = "{ERRORS_FILE}"\n'
        f"max_errors = {max(1000, data.events // 100)}\n"
    )
    path = data.directory / JOB_FILE
    path.write_text(text, encoding="utf-8")
    return path


@final
class SlowTable:
    """A lookup table answering ``latency`` seconds later than the one it wraps.

    It simulates a remote dimension store (``asyncwait demo --latency-ms``): the delay is an
    ``asyncio.sleep`` on the loop's clock, so concurrent lookups overlap as they would over a
    network, and a cache in front of the table hides it for the keys it holds.
    """

    def __init__(self, table: LookupTable, latency: float) -> None:
        self.name = table.name
        self._table = table
        self._latency = latency

    async def open(self) -> None:
        await self._table.open()

    async def close(self) -> None:
        await self._table.close()

    async def get(self, key: Hashable) -> Row | None:
        await asyncio.sleep(self._latency)
        return await self._table.get(key)

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        await asyncio.sleep(self._latency)
        return await self._table.get_many(keys)

    def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        return self._table.scan()

    def paths(self) -> tuple[PathUse, ...]:
        """The files of the wrapped table (see :class:`asyncwait._paths.HasPaths`)."""
        return paths_of(self._table)

    def __repr__(self) -> str:
        return f"<SlowTable {self.name!r} +{self._latency * 1000:g} ms>"


def slowed(latency: float) -> Callable[[LookupTable], LookupTable]:
    """Return a wrapper adding ``latency`` seconds to every lookup of a table."""

    def wrap(table: LookupTable) -> LookupTable:
        return SlowTable(table, latency)

    return wrap
