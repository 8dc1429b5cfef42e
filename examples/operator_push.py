"""Driving AsyncWaitOperator by hand: records, a watermark, a snapshot and a restore."""

import asyncio

import asyncwait
from asyncwait import AsyncWaitOperator, OutputMode, Record, StreamElement, Watermark


async def lookup(user: str) -> str:
    await asyncio.sleep(0.001 * (5 - len(user)))  # shorter names take longer
    return user.upper()


async def main() -> None:
    out: list[StreamElement] = []
    op: AsyncWaitOperator[str, str] = AsyncWaitOperator(
        lookup, mode=OutputMode.UNORDERED, capacity=10, name="upper"
    )
    await op.open(out.append)
    for ts, user in enumerate(["a", "bb", "ccc"]):
        await op.process_element(Record(user, timestamp=ts))
    await op.process_watermark(Watermark(2))
    await op.process_element(Record("dddd", timestamp=3))
    snapshot = op.snapshot_state()  # the inputs not yet emitted, in input order
    await op.end_input()
    await op.close()
    print("emitted: ", out)
    print("snapshot:", snapshot)
    # Records never cross the watermark in UNORDERED mode.
    wm = out.index(Watermark(2))
    assert {e.value for e in out[:wm] if isinstance(e, Record)} == {"A", "BB", "CCC"}

    # Restoring the snapshot into a fresh operator replays those inputs.
    again: list[StreamElement] = []
    restored: AsyncWaitOperator[str, str] = AsyncWaitOperator(lookup, mode=OutputMode.UNORDERED)
    await restored.open(again.append, restored=snapshot)
    await restored.end_input()
    await restored.close()
    print("replayed:", again)
    print(asyncwait.__version__)


if __name__ == "__main__":
    asyncio.run(main())
