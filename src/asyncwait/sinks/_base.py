"""The sink contract (private; re-exported by :mod:`asyncwait.sinks`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any

from .._paths import PathUse
from .._rejects import Reject
from ..elements import Record, StreamElement
from ..errors import BadInputError

__all__ = ("Sink", "reject_nothing")


def reject_nothing(error: BadInputError, record: Record[Any] | None = None, /) -> None:
    raise error  # a sink used outside a job: bad input is an ordinary error


class Sink(ABC):
    """Where a job's records go: subclass it to write anywhere.

    The job calls :meth:`open` once before the first element, :meth:`write` with each batch
    in stream order (never again before the previous write finished), then :meth:`close`,
    also when the job fails. ``write`` may return an awaitable: the job awaits it before the
    next batch, so a slow sink back-pressures the whole job up to its source.

    Attributes:
        name: names the sink in messages and in the errors file.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._reject: Reject = reject_nothing

    async def open(self, reject: Reject) -> None:
        """Prepare to write; ``reject(error, record)`` routes one bad element aside.

        ``reject`` raises once the job has seen more than ``max_errors`` bad elements; let
        that error propagate.
        """
        self._reject = reject

    @abstractmethod
    def write(self, elements: list[StreamElement]) -> Awaitable[None] | None:
        """Write a batch of records (watermarks included, in order); maybe return an awaitable."""

    async def close(self) -> None:  # noqa: B027 - optional hook; the default has nothing to release
        """Flush and release everything; idempotent."""

    def result(self) -> Any:
        """What the job's result reports for this sink (``None`` by default)."""
        return None

    def paths(self) -> tuple[PathUse, ...]:
        """The files this sink writes (none by default), for the job's checks before it runs.

        The job refuses to start when one of them is an input or another output, and locks
        each against a second run (see ``docs/fault-tolerance.md``). A sink writing files
        should list them; it must not open them here.
        """
        return ()

    # Checkpointing: a two-phase commit, as Flink's TwoPhaseCommitSinkFunction. The
    # defaults keep nothing, so a sink that does not override them is at-least-once.

    def initialize_state(self, state: Any | None) -> None:  # noqa: B027 - optional hook
        """Called before :meth:`open` when the job takes checkpoints.

        Args:
            state: what :meth:`pre_commit` returned for the checkpoint the job resumes
                from; ``None`` when the job starts from the beginning.
        """

    async def pre_commit(self, checkpoint_id: int) -> Any:
        """Make everything written so far durable, but not yet visible; return the state.

        Called when checkpoint ``checkpoint_id``'s barrier reaches the sink: what was written
        before belongs to that checkpoint. The returned value (picklable) is saved in the
        checkpoint and handed to :meth:`initialize_state` on restore.
        """
        return None

    async def commit(self, checkpoint_id: int) -> None:  # noqa: B027 - optional hook
        """Make what :meth:`pre_commit` of ``checkpoint_id`` prepared visible.

        Called once the checkpoint is saved. It may run again for the same data after a
        crash (through ``initialize_state``), so it must be idempotent there.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
