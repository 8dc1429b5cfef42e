"""Task ownership: every task asyncwait starts has an owner that awaits or cancels it (private).

``asyncio.TaskGroup`` needs one ``async with`` block around the lives of its tasks. The
operator, the lookup join and the checkpoint coordinator are push-style objects instead:
``open()`` returns, elements arrive through later calls, and ``close()`` comes from another
call again, so no block spans their tasks. :class:`TaskOwner` gives them the same guarantee
without the block::

    owner.spawn(coro)  ──►  task ──► done: forgotten (the task's coroutine handles its own
                               │     errors; nothing is swallowed here)
    owner.aclose()    ──►  cancel every live task ──► await them all ──► closed: spawn()
                                                                       raises ClosedError

No task outlives its owner's ``aclose()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, final

from .errors import ClosedError

__all__ = ("TaskOwner",)

T = TypeVar("T")


@final
class TaskOwner:
    """Starts tasks on one loop and guarantees that none outlives :meth:`aclose`.

    Args:
        name: the owner, in task names and errors (e.g. ``"lookup join on sqlite:dim.db"``).

    >>> async def main() -> int:
    ...     owner = TaskOwner("demo")
    ...     task = owner.spawn(asyncio.sleep(3600), "sleeper")
    ...     await owner.aclose()
    ...     return len(owner), task.cancelled()
    >>> asyncio.run(main())
    (0, True)
    """

    __slots__ = ("_closed", "_done", "_tasks", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._done: Callable[[asyncio.Task[Any]], None] = self._tasks.discard

    def __len__(self) -> int:
        """Live tasks."""
        return len(self._tasks)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<TaskOwner {self.name!r} {state} tasks {len(self._tasks)}>"

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def spawn(self, coro: Coroutine[Any, Any, T], what: str) -> asyncio.Task[T]:
        """Start ``coro`` as a task of this owner, named ``"<owner>: <what>"``.

        Raises:
            ClosedError: the owner is closed (``coro`` is closed, never run).
        """
        if self._closed:
            coro.close()
            msg = f"{self.name}: cannot start {what!r}, it is closed"
            raise ClosedError(msg)
        task = asyncio.get_running_loop().create_task(coro, name=f"asyncwait {self.name}: {what}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The live tasks (a copy)."""
        return list(self._tasks)

    async def cancel_and_wait(self, tasks: list[asyncio.Task[Any]] | None = None) -> None:
        """Cancel ``tasks`` (default: all live ones, except the caller) and wait for them.

        The caller's own cancellation still propagates; the cancelled tasks' outcomes are
        left on them for whoever holds them.
        """
        current = asyncio.current_task()
        chosen = [
            t
            for t in (self.tasks() if tasks is None else tasks)
            if t is not current and not t.done()
        ]
        for task in chosen:
            task.cancel()
        if chosen:
            await asyncio.wait(chosen)
        for task in chosen:
            # Ended; its done callback may not have run yet.
            self._tasks.discard(task)

    async def aclose(self) -> None:
        """Refuse new tasks, cancel every live one and wait until all have ended; idempotent.

        Called from one of its own tasks, it waits for all the others; that one ends when
        it returns.
        """
        self._closed = True
        current = asyncio.current_task()
        while any(t is not current and not t.done() for t in self._tasks):
            await self.cancel_and_wait()
