"""Checkpoint folders only their owner can change, and files only this job wrote (private).

Loading a checkpoint unpickles it, and unpickling runs whatever code the file's author put
in it. So a checkpoint is loaded only when nobody but the job's user could have written it
and the job itself did:

* folders are created ``0700`` and files ``0600``;
* an existing checkpoint folder, file or key owned by another user, or writable by its
  group or by others, is refused (:class:`ConfigError` naming it), as ssh refuses such
  keys; the key must not even be readable by them;
* every checkpoint file carries an HMAC-SHA256 under the job's key: 32 random bytes in
  ``<checkpoint_dir>/<job>/KEY``, created by the first run that writes a checkpoint. The MAC
  is checked before anything is unpickled, so a file the job did not write is never
  loaded, whatever its header and checksum say.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from .._paths import make_private_dirs
from ..errors import ConfigError, InternalError

__all__ = (
    "KEY_NAME",
    "Key",
    "check_private",
    "create_private_file",
    "make_private_dirs",
)

KEY_NAME: Final = "KEY"
_KEY_SIZE: Final = 32
_FRESH: Final = "start over with --fresh (StreamEnvironment(..., fresh=True))"


def _refuse(path: Path, why: str, fix: str) -> ConfigError:
    msg = (
        f"checkpoint_dir: {str(path)!r} {why}; refusing to use it, since loading a "
        f"checkpoint runs code from it ({fix})"
    )
    return ConfigError(msg)


def check_private(path: Path, *, secret: bool = False) -> os.stat_result | None:
    """Refuse ``path`` unless this user owns it and nobody else can write it.

    Args:
        path: a checkpoint folder, file or key.
        secret: also refuse any access by the group or others (the key).

    Returns:
        Its status, or ``None`` when it does not exist.

    Raises:
        ConfigError: owned by another user, or writable (``secret``: accessible) by the
            group or others, naming the path and the fix.
    """
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # creating it fails, naming what is in the way
    except OSError as exc:
        msg = f"checkpoint_dir: cannot check {str(path)!r}: {exc.strerror or exc}"
        raise ConfigError(msg) from exc
    user = os.geteuid()
    if status.st_uid != user:
        raise _refuse(
            path,
            f"is owned by user {status.st_uid}, not by this user ({user})",
            "use a checkpoint_dir of your own",
        )
    mode = stat.S_IMODE(status.st_mode)
    if secret and mode & 0o077:
        raise _refuse(
            path,
            f"can be read or written by other users (mode {mode:04o})",
            f"delete it and {_FRESH}: a new key is made",
        )
    if mode & 0o022:
        who = " and ".join(n for bit, n in ((0o020, "its group"), (0o002, "others")) if mode & bit)
        raise _refuse(path, f"is writable by {who} (mode {mode:04o})", f"chmod go-w {path}")
    return status


def create_private_file(path: Path) -> int:
    """Open ``path`` for writing, created (or emptied) with mode ``0600``; return the fd."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file of that name keeps its mode otherwise
    except BaseException:
        os.close(fd)
        raise
    return fd


class Key:
    """The job's checkpoint key: authenticates every checkpoint file it writes.

    Args:
        folder: the job's checkpoint folder (``<checkpoint_dir>/<job>``).
    """

    __slots__ = ("_secret", "path")

    def __init__(self, folder: Path) -> None:
        self.path = folder / KEY_NAME
        self._secret: bytes | None = None

    def __repr__(self) -> str:
        return f"<Key {str(self.path)!r} {'loaded' if self._secret else 'not loaded'}>"

    @property
    def exists(self) -> bool:
        """Whether the key was loaded (or created)."""
        return self._secret is not None

    def load(self) -> bool:
        """Load the key if there is one (blocking); False when there is none.

        Raises:
            ConfigError: the key is not private to this user, or not a key.
        """
        if check_private(self.path, secret=True) is None:
            return False
        try:
            secret = self.path.read_bytes()
        except OSError as exc:
            msg = f"checkpoint_dir: cannot read the job's key {str(self.path)!r}: {exc}"
            raise ConfigError(msg) from exc
        if len(secret) != _KEY_SIZE:
            msg = (
                f"checkpoint_dir: the job's key {str(self.path)!r} is damaged ({len(secret)} "
                f"bytes, not {_KEY_SIZE}): its checkpoints cannot be authenticated; {_FRESH}"
            )
            raise ConfigError(msg)
        self._secret = secret
        return True

    def create(self) -> None:
        """Load the key, or create one (blocking): 32 random bytes, mode 0600."""
        if self._secret is not None or self.load():
            return
        secret = secrets.token_bytes(_KEY_SIZE)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileExistsError:  # another writer created it meanwhile
            if not self.load():  # pragma: no cover - it existed an instant ago
                raise
            return
        try:
            os.write(fd, secret)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._secret = secret

    def sign(self, message: bytes) -> bytes:
        """The HMAC-SHA256 of ``message`` under the key (which must be loaded)."""
        secret = self._secret
        if secret is None:
            msg = f"{self.path}: sign() before load() or create() (a bug in asyncwait)"
            raise InternalError(msg)
        return hmac.new(secret, message, hashlib.sha256).digest()

    def verify(self, message: bytes, mac: bytes) -> bool:
        """Whether ``mac`` is the key's HMAC of ``message`` (in constant time)."""
        return self._secret is not None and hmac.compare_digest(self.sign(message), mac)
