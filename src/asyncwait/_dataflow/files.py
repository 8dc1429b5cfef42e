"""The files a job reads and writes: checked and locked before it opens anything (private).

``StreamEnvironment.execute_async`` runs the job inside :func:`guarded_outputs`: every
output must be writable, no output may be an input or another output (the same file by
path, symbolic link or hard link), and each output is locked against a second run for as
long as the job runs. Any refusal is a :class:`~asyncwait.ConfigError` raised before a
single file is created or truncated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from .._checkpoint.store import CheckpointConfig, CheckpointStore
from .._locks import Locks, lock_outputs
from .._paths import Access, PathUse, check_no_alias, check_outputs, paths_of
from ..join import LookupJoin
from .plan import AsyncSpec, Pipeline

__all__ = ("checkpoint_folder", "guarded_outputs", "job_paths")


def checkpoint_folder(root: Path, job: str) -> Path:
    """The folder of ``job``'s checkpoints under ``checkpoint_dir`` ``root``."""
    return CheckpointStore(root, job, 1).dir


def job_paths(
    name: str,
    pipelines: Sequence[Pipeline],
    *,
    errors_path: Path | None,
    checkpoint: CheckpointConfig | None,
) -> list[PathUse]:
    """Every file and folder the job reads or writes, as its parts declare them."""
    uses: list[PathUse] = []
    for pipeline in pipelines:
        uses += paths_of(pipeline.source)
        for spec in pipeline.steps:
            if isinstance(spec, AsyncSpec):
                uses += paths_of(spec.function)
                if isinstance(spec.function, LookupJoin):
                    uses += paths_of(spec.function.table)
        if pipeline.sink is not None:
            uses += paths_of(pipeline.sink)
    if errors_path is not None:
        uses.append(PathUse("errors_path", errors_path, Access.WRITE))
    if checkpoint is not None:
        folder = checkpoint_folder(checkpoint.dir, name)
        uses.append(PathUse("checkpoint_dir", folder, Access.WRITE, folder=True))
    return uses


@contextlib.contextmanager
def guarded_outputs(
    name: str,
    pipelines: Sequence[Pipeline],
    *,
    errors_path: Path | None,
    checkpoint: CheckpointConfig | None,
) -> Iterator[Locks]:
    """Check the job's files, lock its outputs, and release the locks when the block ends.

    Raises:
        ConfigError: an output cannot be written, is an input or another output, or is
            locked by another run (naming its process); nothing was created or truncated
            (but the checkpoint folder, created empty so that its lock can go inside).
    """
    owner = f"job {name!r}"
    uses = job_paths(name, pipelines, errors_path=errors_path, checkpoint=checkpoint)
    resolved = check_no_alias(uses, owner=owner)
    check_outputs(uses, owner=owner)
    if checkpoint is not None:
        # A folder another user could write is refused before its lock is created in it.
        CheckpointStore(checkpoint.dir, name, 1).check()
    with lock_outputs(resolved, owner=owner) as locks:
        yield locks
