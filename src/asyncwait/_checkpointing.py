"""The checkpoint coordinator of a running job: barriers, acknowledgements, commit (private).

Aligned checkpoints, as Flink's for a chain of tasks::

    trigger n ─► each source, between two batches: saves its position, sends barrier n
              ─► each operator stage, when barrier n arrives: saves its steps' state and
                 its operator's snapshot_state() (the inputs still in flight), passes it on
              ─► each sink stage: saves its steps' state, sink.pre_commit(n)
    every stage acknowledged ─► checkpoint file written (atomic, fsync) ─► sink.commit(n)

Everything before barrier n in a channel is reflected in the states the stages downstream
save for n, and nothing after it, so the saved states fit together. Once a source has
ended, the coordinator acknowledges it (and any stage after it that has ended too) with
its final state and hands the barrier to the first stage still running, behind the rest
of its input; the job's last checkpoint, taken after every stage ended, is marked
*finished*. One checkpoint runs at a time.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, final

from ._channel import Barrier
from ._checkpoints import Checkpoint, CheckpointStore, crash_point, now
from .errors import AsyncWaitError

if TYPE_CHECKING:
    from ._job import Job, _Stage

__all__ = ("Coordinator",)


@final
class Coordinator:
    """Takes a job's checkpoints: periodically, on request (stop), and at the end."""

    def __init__(
        self,
        job: Job,
        store: CheckpointStore,
        interval: float | None,
        topology: Any,
        first_id: int,
    ) -> None:
        self.job = job
        self.store = store
        self.interval = interval
        self.topology = topology
        self.requested = 0  # the newest checkpoint whose barriers the sources must send
        self.next_id = first_id
        self.completed = 0  # checkpoints completed by this run
        self.last_id: int | None = None
        self._acks: dict[int, Any] = {}
        self._complete: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._periodic: asyncio.Task[None] | None = None
        self._helpers: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return (
            f"<Coordinator {str(self.store.dir)!r} next {self.next_id} completed {self.completed}>"
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.interval is not None:
            self._periodic = loop.create_task(
                self._every(self.interval), name=f"asyncwait {self.job.name}: checkpoints"
            )

    async def _every(self, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                await self.checkpoint()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.job.fail(exc)

    async def finish(self) -> None:
        """End the periodic checkpoints, letting one under way complete first."""
        async with self._lock:
            periodic, self._periodic = self._periodic, None
            if periodic is not None and not periodic.done():
                periodic.cancel()
                await asyncio.wait([periodic])

    async def stop(self) -> None:
        """Cancel the periodic checkpoints and any acknowledgement still running."""
        tasks = [t for t in (self._periodic, *self._helpers) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._periodic = None

    # ------------------------------------------------------------------ one checkpoint

    async def checkpoint(self, *, final: bool = False) -> int:
        """Take a checkpoint and commit it; return its id.

        Raises:
            AsyncWaitError: the state cannot be saved (e.g. a value that cannot be pickled).
            OSError: the checkpoint cannot be written.
        """
        async with self._lock:
            n = self.next_id
            self.next_id += 1
            self._acks = {}
            complete = self._complete = asyncio.get_running_loop().create_future()
            self.requested = n
            for pipeline in range(len(self.job.pipelines)):
                self._reach(pipeline, n)
            await complete
            job = self.job
            checkpoint = Checkpoint(
                id=n,
                job=job.name,
                topology=self.topology,
                finished=final,
                created=now(),
                stages=[self._acks[i] for i in range(len(job.stages))],
                counters={
                    "events_in": job.events_in,
                    "events_out": job.events_out,
                    "errors": job.errors.count,
                },
            )
            self._acks = {}
            try:
                data = CheckpointStore.encode(checkpoint)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                msg = (
                    f"job {job.name!r}: checkpoint {n} cannot be saved: a value in flight "
                    f"cannot be pickled: {exc}"
                )
                raise AsyncWaitError(msg) from exc
            await asyncio.to_thread(self.store.write, n, data)
            crash_point("checkpoint-written")
            for sink in job.sinks:
                await sink.commit(n)
            await asyncio.to_thread(self.store.retain)
            self.completed += 1
            self.last_id = n
            return n

    def ack(self, n: int, stage: int, state: Any) -> None:
        """Stage ``stage`` saved ``state`` for checkpoint ``n``."""
        if n != self.requested:
            return  # a barrier of a checkpoint abandoned when the job stopped
        acks = self._acks
        acks[stage] = state
        complete = self._complete
        if len(acks) == len(self.job.stages) and complete is not None and not complete.done():
            complete.set_result(None)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                self.job.fail(exc)

        task = asyncio.get_running_loop().create_task(guarded())
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def _reach(self, pipeline: int, n: int) -> None:
        """Get barrier ``n`` past the stages of ``pipeline`` that have ended.

        A running source sends the barrier itself, between two batches (at once when it
        waits for room). Stages that have
        ended are acknowledged here with their final state, and the barrier goes into the
        input of the first stage still running, behind everything it has still to take.
        """
        stages = self.job.pipeline_stages(pipeline)
        for stage in stages:
            if not stage.finished:
                if stage is not stages[0]:
                    stage.accept_barrier(Barrier(n))
                else:
                    stage.nudge(self)
                return
            if stage is stages[-1]:
                self._spawn(self._ack_later(stage, n))
            else:
                self.ack(n, stage.index, stage.final_state())

    async def _ack_later(self, stage: _Stage, n: int) -> None:
        self.ack(n, stage.index, await stage.drained_state(n))
