"""Fingerprints of an input file: is it still the file a checkpoint read (private)?

A checkpoint saves a file source's byte offset; resuming reads on from there. That is only
right if the file is the one read before, with the same bytes before the offset. Rereading
those bytes would cost as much as the run itself, so the fingerprint holds:

* the file's identity: device and inode (another file with the same name differs);
* the SHA-256 of its first 64 KiB, and of the 64 KiB before the offset (fewer when the
  offset is smaller): a file rewritten in place almost always differs there.

A file that only grew (appended after the offset) matches: resuming from the offset is
right. A shorter file, another file, or changed bytes in either window does not.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Final

__all__ = ("WINDOW", "fingerprint", "mismatch")

WINDOW: Final = 1 << 16  # bytes hashed at the start and before the offset


def _sha256(fd: int, start: int, size: int) -> str:
    data = os.pread(fd, size, start)
    return hashlib.sha256(data).hexdigest()


def fingerprint(fd: int, offset: int) -> dict[str, Any]:
    """The fingerprint of the open file ``fd`` read up to ``offset`` (two short reads)."""
    status = os.fstat(fd)
    head = min(WINDOW, offset)
    tail = max(0, offset - WINDOW)
    return {
        "device": status.st_dev,
        "inode": status.st_ino,
        "head": _sha256(fd, 0, head),
        "tail": _sha256(fd, tail, offset - tail),
    }


def mismatch(fd: int, offset: int, saved: dict[str, Any]) -> str | None:
    """Why the open file ``fd`` is not the one ``saved`` was taken of, or ``None``."""
    status = os.fstat(fd)
    if (status.st_dev, status.st_ino) != (saved["device"], saved["inode"]):
        return (
            f"it is another file than the one the checkpoint read (device and inode "
            f"{status.st_dev}:{status.st_ino}, then {saved['device']}:{saved['inode']}): "
            "replaced, or copied back"
        )
    if status.st_size < offset:
        return (
            f"it has {status.st_size:,} bytes, fewer than the {offset:,} the checkpoint had "
            "read: truncated"
        )
    now = fingerprint(fd, offset)
    if now["head"] != saved["head"]:
        return f"its first {min(WINDOW, offset):,} bytes changed since the checkpoint"
    if now["tail"] != saved["tail"]:
        return f"its bytes {max(0, offset - WINDOW):,} to {offset:,} changed since the checkpoint"
    return None
