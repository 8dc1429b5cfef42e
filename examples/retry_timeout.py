"""Retries with exponential backoff and a timeout() hook that supplies a fallback."""

import asyncio
import random
from collections.abc import Iterable

from asyncwait import AsyncFunction, ordered_wait, retry


class FlakyProfile(AsyncFunction[int, dict[str, object]]):
    """A profile service that fails 20 % of the time and sometimes hangs."""

    def __init__(self) -> None:
        self.rng = random.Random(7)

    async def async_invoke(self, value: int) -> list[dict[str, object]]:
        if self.rng.random() < 0.2:
            msg = f"profile service reset while fetching {value}"
            raise ConnectionError(msg)
        if value % 25 == 0:
            await asyncio.sleep(10)  # hangs: the timeout() hook answers instead
        return [{"id": value, "tier": "gold" if value % 3 == 0 else "basic"}]

    def timeout(self, value: int) -> Iterable[dict[str, object]]:
        return [{"id": value, "tier": "unknown"}]  # degrade instead of failing the stream


async def main() -> None:
    policy = retry.exponential_backoff(
        10, 0.01, 0.2, jitter=0.5, on_exception=retry.exception_type(ConnectionError)
    )
    rows = [
        row async for row in ordered_wait(range(100), FlakyProfile(), retry=policy, timeout=0.5)
    ]
    assert [row["id"] for row in rows] == list(range(100))
    print(sum(row["tier"] == "unknown" for row in rows), "lookups fell back after the timeout")


if __name__ == "__main__":
    asyncio.run(main())
