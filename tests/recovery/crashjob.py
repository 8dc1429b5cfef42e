"""The job the crash tests kill: ``python -m tests.recovery.crashjob DIR MODE CAPACITY``.

Reads ``DIR/in.jsonl`` (``{"i": n}`` per line), calls a lookup of random latency, writes
``{"i": n, "sq": n * n}`` to ``DIR/out.jsonl`` and checkpoints into ``DIR/cp`` every 50 ms.
Prints ``restored_from=<id or None>`` when it completes.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from typing import Any

from asyncwait import StreamEnvironment, sinks, sources


async def lookup(value: dict[str, Any]) -> dict[str, int]:
    await asyncio.sleep(random.random() * 0.004)
    return {"i": value["i"], "sq": value["i"] ** 2}


def main(argv: list[str]) -> int:
    folder, mode, capacity = Path(argv[0]), argv[1], int(argv[2])
    env = StreamEnvironment(0.05, folder / "cp", name="crash")
    stream = env.from_source(sources.jsonl(folder / "in.jsonl"))
    if mode == "ordered":
        stream = stream.ordered_wait(lookup, capacity=capacity)
    else:
        stream = stream.unordered_wait(lookup, capacity=capacity)
    stream.sink_to(sinks.jsonl(folder / "out.jsonl"))
    result = env.execute()
    print(f"restored_from={result.restored_from}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
