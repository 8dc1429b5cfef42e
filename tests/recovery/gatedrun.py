"""`asyncwait` with every lookup held until a file exists: ``python -m tests.recovery.gatedrun
GATE ARGS...`` runs ``asyncwait ARGS...`` (the real command line) with each query of each
lookup table waiting until the file ``GATE`` exists. A test can so keep a run going, with
its outputs locked, for exactly as long as it needs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Hashable, Sequence
from pathlib import Path
from typing import Any

from asyncwait import jobfile
from asyncwait._paths import PathUse, paths_of
from asyncwait.cli import main
from asyncwait.lookups import LookupTable, Row


class GatedTable:
    """A lookup table whose queries wait until ``gate`` exists."""

    def __init__(self, table: LookupTable, gate: Path) -> None:
        self.name = table.name
        self._table = table
        self._gate = gate

    async def _wait(self) -> None:
        # Polling for a file another process creates: the one wait this helper needs.
        while not self._gate.exists():  # noqa: ASYNC110 - no event crosses processes
            await asyncio.sleep(0.01)

    async def open(self) -> None:
        await self._table.open()

    async def close(self) -> None:
        await self._table.close()

    async def get(self, key: Hashable) -> Row | None:
        await self._wait()
        return await self._table.get(key)

    async def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Row | None]:
        await self._wait()
        return await self._table.get_many(keys)

    def scan(self) -> AsyncIterator[tuple[Hashable, Row]]:
        return self._table.scan()

    def paths(self) -> tuple[PathUse, ...]:
        return paths_of(self._table)


def run(argv: list[str]) -> int:
    gate = Path(argv[0])
    build = jobfile.build

    def gated_build(spec: jobfile.JobSpec, **options: Any) -> Any:
        return build(spec, **{**options, "wrap_lookup": lambda t: GatedTable(t, gate)})

    jobfile.build = gated_build  # what `asyncwait run` calls
    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
