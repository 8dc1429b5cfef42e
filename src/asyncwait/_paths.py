"""The files a job reads and writes: resolved as the OS does, checked before anything opens.

A job must never write what it reads, nor write one file through two outputs: the sink
pointed at the source would truncate the input before reading it. Every source, sink and
lookup that uses files declares them (:class:`HasPaths`: a ``paths()`` method returning
:class:`PathUse` values); the runtime adds the errors file and the checkpoint folder, the
command line the job file and ``--json-summary``. Then, before anything is opened:

* :func:`check_outputs` checks that each output can be written: its folder exists, is a
  folder and is writable, and the output itself is not a folder;
* :func:`check_no_alias` refuses two uses of one file where either writes it.

Two paths are the same file when the OS resolves them to one: the same absolute path after
``..`` and symbolic links (:func:`os.path.realpath`), or, for files that exist, the same
``(st_dev, st_ino)`` (hard links). A folder the job owns (the checkpoint folder) also covers
everything inside it. A character device (``/dev/null``, a terminal) may be used more than
once: it is a stream, and writing it destroys nothing.

>>> from pathlib import Path
>>> uses = [PathUse("source.path", Path("/data/events.jsonl"), Access.READ),
...         PathUse("sink.path", Path("/data/x/../events.jsonl"), Access.WRITE)]
>>> check_no_alias(uses, owner="job.toml")
Traceback (most recent call last):
asyncwait.errors.ConfigError: job.toml: sink.path and source.path are the same file (...
"""

from __future__ import annotations

import contextlib
import enum
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, final, runtime_checkable

from .errors import ConfigError

__all__ = (
    "Access",
    "HasPaths",
    "PathUse",
    "Resolved",
    "check_no_alias",
    "check_outputs",
    "make_private_dirs",
    "output_problem",
    "paths_of",
    "resolve",
    "shown",
)


class Access(enum.Enum):
    """How a job uses a path."""

    READ = "read"  # an input: opened for reading only, never changed
    WRITE = "write"  # an output: created, truncated, appended to, replaced or deleted


@final
@dataclass(frozen=True, slots=True)
class PathUse:
    """One file or folder a job uses, and the option (field) that names it.

    Attributes:
        field: what names it in messages: a job-file field (``sink.path``), an option
            (``--json-summary``) or a component (``sink 'out.jsonl'``).
        path: the path as given (relative paths resolve against the working directory).
        access: read (an input) or write (an output).
        folder: a folder the job owns: every path inside it belongs to the job too.
        detail: which file of the field this is, when it names several (``-wal file``).
    """

    field: str
    path: Path
    access: Access
    folder: bool = False
    detail: str = ""

    @property
    def label(self) -> str:
        """The field, with the detail when there is one: ``lookup[0].path (its -wal file)``."""
        return f"{self.field} ({self.detail})" if self.detail else self.field


@runtime_checkable
class HasPaths(Protocol):
    """Something that reads or writes files and says which (sources, sinks, lookup tables).

    Contract: ``paths()`` returns every file or folder the object opens when the job runs,
    without opening any of them; it may be called before ``open()``, any number of times.
    """

    def paths(self) -> tuple[PathUse, ...]:
        """The files and folders this object reads or writes."""
        ...


def paths_of(thing: object) -> tuple[PathUse, ...]:
    """``thing.paths()`` when it declares its files (:class:`HasPaths`), else ``()``."""
    if isinstance(thing, HasPaths):
        return tuple(thing.paths())
    return ()


@final
@dataclass(frozen=True, slots=True)
class Resolved:
    """A path as the OS resolves it.

    Attributes:
        use: what the path is.
        real: absolute, with ``..`` and symbolic links resolved (as far as the path exists).
        inode: ``(st_dev, st_ino)`` when the path exists, else ``None``.
        device: the path is a character device (``/dev/null``, a terminal): a stream, not
            a file that writing could destroy.
    """

    use: PathUse
    real: Path
    inode: tuple[int, int] | None
    device: bool = False


def resolve(use: PathUse) -> Resolved:
    """Resolve ``use.path`` the way opening it would.

    Raises:
        ConfigError: the path cannot be a file name (it holds a NUL character).
    """
    try:
        real = Path(os.path.realpath(os.path.abspath(use.path)))
    except ValueError as exc:  # an embedded NUL: no file can have that name
        msg = f"{use.label}: not a usable path: {exc}"
        raise ConfigError(msg) from None
    try:
        st = os.stat(real)
    except (OSError, ValueError):
        return Resolved(use, real, None)  # missing (or unreachable): only the name collides
    return Resolved(use, real, (st.st_dev, st.st_ino), stat.S_ISCHR(st.st_mode))


def shown(path: Path | str) -> str:
    r"""``path`` for a one-line message: as it is, or quoted when it has unprintable characters.

    >>> shown(Path("/data/out.jsonl")), shown("new\nline")
    ('/data/out.jsonl', "'new\\nline'")
    """
    text = str(path)
    return text if text.isprintable() else repr(text)


def _prefix(owner: str) -> str:
    return f"{owner}: " if owner else ""


def _inside(path: Path, folder: Path) -> bool:
    return path != folder and path.is_relative_to(folder)


def _conflict(a: Resolved, b: Resolved) -> str | None:
    """Why ``a`` and ``b`` may not be used together, or ``None``."""
    same_name = a.real == b.real
    if a.device and (same_name or a.inode == b.inode):
        return None  # /dev/null twice, a terminal read and written: nothing to destroy
    if same_name or (a.inode is not None and a.inode == b.inode):
        where = shown(a.real)
        if not same_name:
            where += f" and {shown(b.real)} are hard links"
        if a.use.access is Access.WRITE and b.use.access is Access.WRITE:
            harm = "two outputs would overwrite each other"
        else:
            harm = "the job would overwrite its input"
        return f"{a.use.label} and {b.use.label} are the same file ({where}): {harm}"
    for owner, other in ((a, b), (b, a)):
        if owner.use.folder and _inside(other.real, owner.real):
            return (
                f"{other.use.label} ({shown(other.real)}) is inside {owner.use.label} "
                f"({shown(owner.real)}), a folder the job manages and deletes files in; "
                "choose a path outside it"
            )
    return None


def check_no_alias(uses: Iterable[PathUse], *, owner: str) -> list[Resolved]:
    """Refuse two uses of one file (or of a job-owned folder's content) where one writes.

    Args:
        uses: every input and output of the job.
        owner: what the message starts with (the job file, or ``job 'name'``; none if empty).

    Returns:
        The uses, resolved (what the locks are taken on).

    Raises:
        ConfigError: naming both fields and the shared file; the first conflict found,
            outputs against inputs first.
    """
    resolved: list[Resolved] = []
    for use in uses:
        try:
            resolved.append(resolve(use))
        except ConfigError as exc:
            msg = f"{_prefix(owner)}{exc}"
            raise ConfigError(msg) from None
    # Outputs first, each against every use listed before it and every input: so the
    # message names the output and what it would destroy.
    writes = [r for r in resolved if r.use.access is Access.WRITE]
    reads = [r for r in resolved if r.use.access is Access.READ]
    for i, out in enumerate(writes):
        for other in (*reads, *writes[:i]):
            problem = _conflict(out, other)
            if problem is not None:
                msg = f"{_prefix(owner)}{problem}; nothing was written"
                raise ConfigError(msg)
    return resolved


def _writable_folder(folder: Path) -> str | None:
    """Why ``folder`` cannot take a new file, or ``None``."""
    if not folder.exists():
        return f"folder does not exist: {shown(folder)}"
    if not folder.is_dir():
        return f"{shown(folder)} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"folder {shown(folder)} is not writable"
    return None


def output_problem(use: PathUse) -> str | None:
    """Why the output ``use`` cannot be written, or ``None`` when it can (nothing is created).

    A file output needs a writable existing folder (its lock file and, with checkpoints,
    its part files go next to it) and must not be a folder; an existing file must be
    writable. A folder output (``use.folder``) must be a writable folder, or be creatable:
    its nearest existing ancestor is a writable folder.
    """
    try:
        path = Path(os.path.abspath(use.path))
        exists = path.exists()
        if use.folder:
            if exists:
                return _writable_folder(path)
            ancestor = path.parent
            while not ancestor.exists() and ancestor != ancestor.parent:
                ancestor = ancestor.parent
            problem = _writable_folder(ancestor)
            return None if problem is None else f"cannot create {shown(path)}: {problem}"
        if path.is_dir():
            return f"{shown(path)} is a folder, not a file"
        if exists and not os.access(path, os.W_OK):
            return f"{shown(path)} is not writable"
        if exists and not path.is_file():
            return None  # a device such as /dev/null: writable, nothing to lock next to it
        return _writable_folder(Path(os.path.realpath(path)).parent)
    except (OSError, ValueError) as exc:
        return f"not a usable path: {getattr(exc, 'strerror', None) or exc}"


def check_outputs(uses: Sequence[PathUse], *, owner: str) -> None:
    """Check that every output of ``uses`` can be written (see :func:`output_problem`).

    Raises:
        ConfigError: ``"<owner>: <field>: <problem>"`` for the first output that cannot be
            (without ``<owner>:`` when ``owner`` is empty).
    """
    for use in uses:
        if use.access is not Access.WRITE:
            continue
        problem = output_problem(use)
        if problem is not None:
            msg = f"{_prefix(owner)}{use.label}: {problem}"
            raise ConfigError(msg)


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each ``0700`` (blocking).

    Raises:
        OSError: a folder cannot be created.
    """
    missing: list[Path] = []
    at = path
    while not at.exists():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created meanwhile: checked by the caller
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)  # whatever the umask left
