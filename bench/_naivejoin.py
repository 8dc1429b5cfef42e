"""The naive synchronous baseline of the demo job, run in its own interpreter.

``python -m bench._naivejoin EVENTS.jsonl DIM.db OUT.jsonl``

What a blocking ``RichMapFunction`` does: for each line, ``json.loads``, one
``SELECT age FROM dim_user WHERE user_id = ?`` on one ``sqlite3`` connection, merge the age
into the event (left join: the event unchanged when the user has no row) and write
``json.dumps`` of it to the output. Lines that are not JSON objects with a ``userID`` are
counted and skipped. Unlike the asyncwait job it parses no event time, emits no watermarks
and writes no errors file: it is the least work that produces the same enrichment.

Prints one JSON object: ``events_in``, ``events_out``, ``errors``, ``seconds`` (the loop
alone, not interpreter start-up) and ``cpu_seconds``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

QUERY = "SELECT age FROM dim_user WHERE user_id = ?"


def enrich(events: Path, db: Path, out: Path) -> dict[str, Any]:
    cpu, start = time.process_time(), time.perf_counter()
    con = sqlite3.connect(db)
    events_in = events_out = errors = 0
    try:
        with (
            events.open(encoding="utf-8") as source,
            out.open("w", encoding="utf-8") as sink,
        ):
            for line in source:
                events_in += 1
                try:
                    event = json.loads(line)
                    row = con.execute(QUERY, (event["userID"],)).fetchone()
                except (ValueError, KeyError, TypeError):
                    errors += 1
                    continue
                if row is not None:
                    event["age"] = row[0]
                sink.write(json.dumps(event) + "\n")
                events_out += 1
    finally:
        con.close()
    return {
        "events_in": events_in,
        "events_out": events_out,
        "errors": errors,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m bench._naivejoin EVENTS.jsonl DIM.db OUT.jsonl", file=sys.stderr)
        return 2
    events, db, out = (Path(arg) for arg in args)
    print(json.dumps(enrich(events, db, out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
