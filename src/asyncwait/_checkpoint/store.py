"""Checkpoint files: authenticated, atomic, checked on load, the last few kept (private).

Layout under ``checkpoint_dir``, one folder per job name (folders 0700, files 0600)::

    <checkpoint_dir>/<job>/chk-000012.ckpt   one complete checkpoint each
    <checkpoint_dir>/<job>/KEY               the job's key: authenticates its checkpoints
    <checkpoint_dir>/<job>/MANIFEST.json     the ids kept, newest last (a hint for people)

A checkpoint file is a header line, the payload's length, its SHA-256 and an HMAC-SHA256
under the job's key (of the header line, the checkpoint's id, the length and the SHA-256),
then the payload (a pickle of :class:`Checkpoint`). It is written to a temporary file,
fsynced, renamed into place and the folder fsynced, so a file named ``chk-*.ckpt`` is
complete unless the disk lied; a truncated or altered file fails its length or hash check
and is skipped with a warning, falling back to the one before.

Pickle, because in-flight elements are arbitrary Python values; and since unpickling runs
code, nothing is unpickled unless its HMAC proves this job wrote it, in folders only this
user can write (see :mod:`.secure`). A well-formed file without a valid HMAC (planted,
or from an asyncwait before authentication) is refused, not skipped: skipping it would
silently resume from an older state.
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
from .secure import Key, check_private, create_private_file, make_private_dirs

__all__ = ("Checkpoint", "CheckpointConfig", "CheckpointStore", "now")

_MAGIC: Final = b"ASYNCWAIT-CHECKPOINT 2\n"
_UNSIGNED: Final = b"ASYNCWAIT-CHECKPOINT 1\n"  # before checkpoints were authenticated
_LENGTH: Final = struct.Struct(">Q")
_HEAD: Final = len(_MAGIC) + _LENGTH.size + 32 + 32  # magic, length, SHA-256, HMAC
_FRESH: Final = "start over with --fresh (StreamEnvironment(..., fresh=True))"
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
        errors: the errors file's commit state (what it holds once this checkpoint
            commits), ``None`` for a job without one.
    """

    id: int
    job: str
    topology: Any
    finished: bool
    created: float
    stages: list[Any] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    errors: Any = None


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
        self.key = Key(self.dir)

    def __repr__(self) -> str:
        return f"<CheckpointStore {str(self.dir)!r} keep {self.keep}>"

    def check(self) -> None:
        """Refuse folders another user could write to; load the job's key (blocking).

        Raises:
            ConfigError: ``checkpoint_dir``, the job's folder or its key is owned by another
                user or writable by the group or others (the key: accessible to them).
        """
        check_private(self.root)
        if check_private(self.dir) is not None and not self.key.exists:
            self.key.load()

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
        """The payload for ``checkpoint`` (call it where the state cannot change)."""
        return pickle.dumps(checkpoint, protocol=pickle.HIGHEST_PROTOCOL)

    def _signed(self, checkpoint_id: int, length: bytes, digest: bytes) -> bytes:
        """What the HMAC covers: the format, the checkpoint's id, the payload's length and hash."""
        return _MAGIC + _LENGTH.pack(checkpoint_id) + length + digest

    def write(self, checkpoint_id: int, payload: bytes) -> Path:
        """Write ``payload`` as checkpoint ``checkpoint_id``, durably and atomically (blocking).

        The job's folder (0700) and key (0600) are created by the first write.
        """
        self.check()  # before anything is created in there
        try:
            make_private_dirs(self.dir)
        except OSError as exc:
            msg = f"checkpoint_dir {str(self.root)!r}: cannot create {str(self.dir)!r}: {exc}"
            raise ConfigError(msg) from exc
        self.key.create()
        length = _LENGTH.pack(len(payload))
        digest = hashlib.sha256(payload).digest()
        mac = self.key.sign(self._signed(checkpoint_id, length, digest))
        data = _MAGIC + length + digest + mac + payload
        final = self.path(checkpoint_id)
        temp = self.dir / f".{final.name}.tmp"
        with open(create_private_file(temp), "wb") as file:
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
        with open(create_private_file(temp), "w", encoding="utf-8") as file:
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
        """Delete every checkpoint of the job (a fresh start); the key stays.

        Raises:
            ConfigError: the folders are not private to this user (see :meth:`check`).
        """
        self.check()
        for old in self.ids():
            with contextlib.suppress(FileNotFoundError):
                self.path(old).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / _MANIFEST).unlink()

    # ------------------------------------------------------------------ reading

    def read(self, checkpoint_id: int) -> Checkpoint:
        """Read, check and authenticate one checkpoint; unpickle it only then.

        Raises:
            ConfigError: the file is not private to this user, or is well formed but not
                authenticated by the job's key (planted, or written before checkpoints
                were authenticated): it is never unpickled.
            ValueError: the file is truncated, altered or not a checkpoint of this job.
            OSError: it cannot be read.
        """
        path = self.path(checkpoint_id)
        check_private(path)
        data = path.read_bytes()
        if data.startswith(_UNSIGNED):
            msg = (
                f"checkpoint_dir: {str(path)!r} was written by an older asyncwait, without "
                f"authentication, so it is not loaded (loading runs code from it); {_FRESH}"
            )
            raise ConfigError(msg)
        if not data.startswith(_MAGIC):
            msg = "not an asyncwait checkpoint (bad header)"
            raise ValueError(msg)
        if len(data) < _HEAD:
            msg = f"truncated: {len(data)} bytes"
            raise ValueError(msg)
        at = len(_MAGIC)
        length = data[at : at + _LENGTH.size]
        digest = data[at + _LENGTH.size : at + _LENGTH.size + 32]
        mac = data[_HEAD - 32 : _HEAD]
        payload = data[_HEAD:]
        (size,) = _LENGTH.unpack(length)
        if len(payload) != size:
            msg = f"truncated or padded: payload of {len(payload)} bytes, header says {size}"
            raise ValueError(msg)
        if hashlib.sha256(payload).digest() != digest:
            msg = "corrupt: the SHA-256 of its contents does not match"
            raise ValueError(msg)
        if not self.key.exists:
            msg = (
                f"checkpoint_dir: {str(path)!r} cannot be authenticated: the job's key "
                f"{str(self.key.path)!r} is missing, so it is not loaded (loading runs code "
                f"from it); {_FRESH}"
            )
            raise ConfigError(msg)
        if not self.key.verify(self._signed(checkpoint_id, length, digest), mac):
            msg = (
                f"checkpoint_dir: {str(path)!r} was not written by this job (its HMAC does "
                f"not match the job's key {str(self.key.path)!r}), so it is not loaded "
                f"(loading runs code from it); delete it if you did not put it there, or "
                f"{_FRESH}"
            )
            raise ConfigError(msg)
        checkpoint = pickle.loads(payload)
        if not isinstance(checkpoint, Checkpoint) or checkpoint.id != checkpoint_id:
            msg = f"its contents are not checkpoint {checkpoint_id}"
            raise ValueError(msg)
        if checkpoint.job != self.job:
            msg = f"it belongs to job {checkpoint.job!r}, not {self.job!r}"
            raise ValueError(msg)
        return checkpoint

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that reads back intact; damaged ones are skipped, warning.

        Raises:
            ConfigError: see :meth:`check` and :meth:`read`: a file that may not be
                loaded is refused, not skipped.
        """
        self.check()
        for checkpoint_id in reversed(self.ids()):
            try:
                return self.read(checkpoint_id)
            except ConfigError:
                raise
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
