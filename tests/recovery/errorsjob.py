"""The job the errors-file crash tests kill: ``python -m tests.recovery.errorsjob DIR``.

Reads ``DIR/in.jsonl`` (``{"i": n}`` per line, some lines not JSON, some events marked
``"reject": true``), calls a lookup of random latency that rejects the marked events as bad
input, writes ``{"i": n, "sq": n * n}`` to ``DIR/out.jsonl``, bad lines and rejected events
to ``DIR/errors.jsonl``, and checkpoints into ``DIR/cp`` every 20 ms. Prints
``restored_from=<id or None>`` when it completes.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from typing import Any

from asyncwait import BadInputError, StreamEnvironment, sinks, sources


async def lookup(value: dict[str, Any]) -> dict[str, int]:
    await asyncio.sleep(random.random() * 0.002)
    if value.get("reject"):
        msg = f"event {value['i']} is marked for rejection"
        raise BadInputError(msg)
    return {"i": value["i"], "sq": value["i"] ** 2}


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    env = StreamEnvironment(0.02, folder / "cp", name="errors", errors_path=folder / "errors.jsonl")
    (
        env.from_source(sources.jsonl(folder / "in.jsonl"))
        .ordered_wait(lookup, capacity=20)
        .sink_to(sinks.jsonl(folder / "out.jsonl"))
    )
    result = env.execute()
    print(f"restored_from={result.restored_from}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
