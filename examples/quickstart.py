"""The README quickstart: 1,000 lookups of 10 ms each, 100 in flight, in input order."""

import asyncio
import time

import asyncwait


async def lookup_age(user_id: str) -> dict[str, object]:
    await asyncio.sleep(0.010)  # a 10 ms round trip to the user service
    return {"user": user_id, "age": 20 + int(user_id.split("_")[1]) % 50}


async def main() -> None:
    users = [f"user_{i}" for i in range(1_000)]
    started = time.perf_counter()
    rows = [row async for row in asyncwait.ordered_wait(users, lookup_age, capacity=100)]
    elapsed = time.perf_counter() - started
    assert [row["user"] for row in rows] == users  # input order
    print(f"{len(rows)} lookups in {elapsed:.2f} s (one at a time: {len(users) * 0.010:.0f} s)")
    print(rows[:3])


if __name__ == "__main__":
    asyncio.run(main())
