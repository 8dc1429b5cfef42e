"""Checkpoint files: written atomically, checked on load, the last few kept (private).

Layout under ``checkpoint_dir``, one folder per job name::

    <checkpoint_dir>/<job>/chk-000012.ckpt   one complete checkpoint each
    <checkpoint_dir>/<job>/MANIFEST.json     the ids kept, newest last (a hint for people)

A checkpoint file is a header line, the payload's length and SHA-256, then the payload (a
pickle of :class:`Checkpoint`). It is written to a temporary file, fsynced, renamed into
place and the folder fsynced, so a file named ``chk-*.ckpt`` is complete unless the disk
lied; a truncated or altered file fails its length or hash check and is skipped with a
warning, falling back to the one before.

Pickle, because in-flight elements are arbitrary Python values: load checkpoints only from
a folder you trust, as you would the job's own code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import struct
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, final

from .._faults import crash_point
from ..errors import CheckpointWarning, ConfigError

__all__ = ("Checkpoint", "CheckpointConfig", "CheckpointStore", "now")

_MAGIC: Final = b"ASYNCWAIT-CHECKPOINT 1\n"
_LENGTH: Final = struct.Struct(">Q")
_NAME: Final = re.compile(r"^chk-(\d{6,})\.ckpt$")
_MANIFEST: Final = "MANIFEST.json"


@final
@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """How a job checkpoints (from ``StreamEnvironment``'s options).

    Attributes:
        interval: seconds between checkpoints; ``None``: only when stopped and at the end.
        dir: ``checkpoint_dir``; the job's checkpoints go to a folder named after it.
        keep: complete checkpoints kept.
        fresh: ignore (and delete) the job's existing checkpoints.
    """

    interval: float | None
    dir: Path
    keep: int
    fresh: bool


@final
@dataclass(slots=True)
class Checkpoint:
    """Everything a job needs to resume: what each stage held at the barrier.

    Attributes:
        id: the checkpoint's number, increasing over the job's runs.
        job: the job's name.
        topology: the job's shape (sources, steps, operators, sinks), compared on restore.
        finished: the job had reached the end of every source and committed everything.
        created: wall-clock time of completion (seconds since the epoch).
        stages: each stage's state, by stage index.
        counters: events in and out and bad elements so far.
    """

    id: int
    job: str
    topology: Any
    finished: bool
    created: float
    stages: list[Any] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)


def _safe_name(job: str) -> str:
    """A folder name for ``job``: letters, digits, ``._-``; anything else becomes ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", job).strip(".")
    return name or "job"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@final
class CheckpointStore:
    """The checkpoints of one job in one folder.

    Args:
        root: ``checkpoint_dir``; the job's folder is created below it on the first write.
        job: the job's name.
        keep: how many complete checkpoints to keep (the newest).
    """

    def __init__(self, root: Path, job: str, keep: int) -> None:
        self.root = root
        self.job = job
        self.dir = root / _safe_name(job)
        self.keep = keep

    def __repr__(self) -> str:
        return f"<CheckpointStore {str(self.dir)!r} keep {self.keep}>"

    def ids(self) -> list[int]:
        """The ids of the checkpoint files present, oldest first."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            msg = f"checkpoint_dir {str(self.dir)!r}: cannot list it: {exc.strerror or exc}"
            raise ConfigError(msg) from exc
        found = [int(m.group(1)) for n in names if (m := _NAME.match(n))]
        return sorted(found)

    def path(self, checkpoint_id: int) -> Path:
        return self.dir / f"chk-{checkpoint_id:06d}.ckpt"

    # ------------------------------------------------------------------ writing

    @staticmethod
    def encode(checkpoint: Checkpoint) -> bytes:
        """The file contents for ``checkpoint`` (call it where the state cannot change)."""
        payload = pickle.dumps(checkpoint, protocol=pickle.HIGHEST_PROTOCOL)
        return _MAGIC + _LENGTH.pack(len(payload)) + hashlib.sha256(payload).digest() + payload

    def write(self, checkpoint_id: int, data: bytes) -> Path:
        """Write ``data`` as checkpoint ``checkpoint_id``, durably and atomically (blocking)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"checkpoint_dir {str(self.root)!r}: cannot create {str(self.dir)!r}: {exc}"
            raise ConfigError(msg) from exc
        final = self.path(checkpoint_id)
        temp = self.dir / f".{final.name}.tmp"
        with open(temp, "wb") as file:
            half = len(data) // 2
            file.write(data[:half])
            file.flush()
            crash_point("checkpoint-partial")
            file.write(data[half:])
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, final)
        _fsync_dir(self.dir)
        crash_point("checkpoint-renamed")
        self._write_manifest()
        return final

    def _write_manifest(self) -> None:
        ids = self.ids()
        text = json.dumps(
            {"job": self.job, "latest": ids[-1] if ids else None, "checkpoints": ids}, indent=1
        )
        temp = self.dir / f".{_MANIFEST}.{os.getpid()}.tmp"
        with open(temp, "w", encoding="utf-8") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, self.dir / _MANIFEST)

    def retain(self) -> None:
        """Delete all but the newest ``keep`` checkpoints, and leftover temporary files."""
        ids = self.ids()
        for old in ids[: max(0, len(ids) - self.keep)]:
            with contextlib.suppress(FileNotFoundError):
                self.path(old).unlink()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.dir):
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        (self.dir / name).unlink()
        self._write_manifest()

    def clear(self) -> None:
        """Delete every checkpoint of the job (a fresh start)."""
        for old in self.ids():
            with contextlib.suppress(FileNotFoundError):
                self.path(old).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / _MANIFEST).unlink()

    # ------------------------------------------------------------------ reading

    def read(self, checkpoint_id: int) -> Checkpoint:
        """Read and check one checkpoint.

        Raises:
            ValueError: the file is truncated, altered or not a checkpoint of this job.
            OSError: it cannot be read.
        """
        data = self.path(checkpoint_id).read_bytes()
        head = len(_MAGIC) + _LENGTH.size + 32
        if not data.startswith(_MAGIC):
            msg = "not an asyncwait checkpoint (bad header)"
            raise ValueError(msg)
        if len(data) < head:
            msg = f"truncated: {len(data)} bytes"
            raise ValueError(msg)
        (length,) = _LENGTH.unpack_from(data, len(_MAGIC))
        digest = data[len(_MAGIC) + _LENGTH.size : head]
        payload = data[head:]
        if len(payload) != length:
            msg = f"truncated or padded: payload of {len(payload)} bytes, header says {length}"
            raise ValueError(msg)
        if hashlib.sha256(payload).digest() != digest:
            msg = "corrupt: the SHA-256 of its contents does not match"
            raise ValueError(msg)
        checkpoint = pickle.loads(payload)
        if not isinstance(checkpoint, Checkpoint) or checkpoint.id != checkpoint_id:
            msg = f"its contents are not checkpoint {checkpoint_id}"
            raise ValueError(msg)
        if checkpoint.job != self.job:
            msg = f"it belongs to job {checkpoint.job!r}, not {self.job!r}"
            raise ValueError(msg)
        return checkpoint

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that reads back intact; unusable ones are skipped, warning."""
        for checkpoint_id in reversed(self.ids()):
            try:
                return self.read(checkpoint_id)
            except (OSError, ValueError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
                warnings.warn(
                    f"job {self.job!r}: checkpoint {str(self.path(checkpoint_id))!r} skipped: "
                    f"{exc}; trying the one before",
                    CheckpointWarning,
                    stacklevel=2,
                )
        return None


def now() -> float:
    """Wall-clock time for the record (checkpoint ids, not times, order checkpoints)."""
    return time.time()
