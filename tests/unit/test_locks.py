"""Output locks: one holder at a time, named when refused, released however the holder ends."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from asyncwait import ConfigError
from asyncwait import _locks as locks_module
from asyncwait._locks import FOLDER_LOCK, acquire, holder_of, lock_file, lock_outputs
from asyncwait._paths import Access, PathUse, Resolved, resolve

HOLD = """
import sys
from pathlib import Path
from asyncwait._locks import lock_outputs
from asyncwait._paths import Access, PathUse, resolve
out = resolve(PathUse("sink.path", Path(sys.argv[1]), Access.WRITE))
held = lock_outputs([out], owner="holder")
print("locked", flush=True)
sys.stdin.read()  # hold until the test closes stdin (or kills this process)
held.release()
"""


def output(path: Path, *, folder: bool = False, field: str = "sink.path") -> Resolved:
    return resolve(PathUse(field, path, Access.WRITE, folder=folder))


def hold(path: Path) -> subprocess.Popen[str]:
    """Another process holding the lock of output ``path``, once this returns."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "locked\n"
    return process


def test_the_lock_file_sits_next_to_the_output_or_inside_the_folder(tmp_path: Path) -> None:
    assert lock_file(output(tmp_path / "out.jsonl")) == tmp_path / ".out.jsonl.lock"
    assert lock_file(output(tmp_path / "cp", folder=True)) == tmp_path / "cp" / FOLDER_LOCK
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    assert lock_file(output(tmp_path / "link" / "o")) == tmp_path / "real" / ".o.lock"


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    out = output(tmp_path / "out.jsonl")
    with lock_outputs([out], owner="job 'a'") as held:
        (lock,) = held.locks
        record = json.loads(lock.path.read_text())
        assert record["pid"] == os.getpid()
        assert record["host"] == socket.gethostname()
        with pytest.raises(ConfigError) as info:
            lock_outputs([out], owner="job 'b'")
        message = str(info.value)
        assert message.startswith(
            f"job 'b': sink.path: {tmp_path / 'out.jsonl'} is being written by another run: "
            f"process {os.getpid()} on host {socket.gethostname()} (since "
        )
        assert f"holds the lock {tmp_path / '.out.jsonl.lock'}" in message
    # Released: taken again at once.
    lock_outputs([out], owner="job 'b'").release()


def test_another_process_is_named_and_its_death_frees_the_lock(tmp_path: Path) -> None:
    process = hold(tmp_path / "out.jsonl")
    try:
        with pytest.raises(ConfigError, match=f"process {process.pid} on host"):
            lock_outputs([output(tmp_path / "out.jsonl")], owner="job")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    # kill -9 left the lock file behind; its lock is free, so it is simply taken.
    leftover = tmp_path / ".out.jsonl.lock"
    assert leftover.exists()
    with lock_outputs([output(tmp_path / "out.jsonl")], owner="job") as held:
        assert not held.locks[0].created
        assert json.loads(leftover.read_text())["pid"] == os.getpid()
    assert leftover.exists()  # not ours: left where it was


def test_a_created_lock_file_is_removed_on_release(tmp_path: Path) -> None:
    held = lock_outputs([output(tmp_path / "out.jsonl")], owner="job")
    (lock,) = held.locks
    assert lock.created
    assert lock.held
    held.release()
    held.release()  # idempotent
    assert not lock.held
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert repr(lock).endswith("released>")


def test_all_or_none(tmp_path: Path) -> None:
    first, second = output(tmp_path / "a.jsonl"), output(tmp_path / "b.jsonl", field="errors")
    process = hold(tmp_path / "b.jsonl")
    try:
        with pytest.raises(ConfigError, match=r"^job: errors: .*b.jsonl is being written"):
            lock_outputs([first, second], owner="job")
    finally:
        process.communicate(input="")
    # The first lock was given back: another run takes it at once.
    lock_outputs([first], owner="job").release()
    assert not (tmp_path / ".a.jsonl.lock").exists()


def test_a_folder_is_created_owner_only_with_its_lock_inside(tmp_path: Path) -> None:
    folder = tmp_path / "cp" / "job"
    with lock_outputs([output(folder, folder=True)], owner="job") as held:
        assert folder.is_dir()
        assert folder.stat().st_mode & 0o777 == 0o700
        assert held.locks[0].path == folder / FOLDER_LOCK
    assert folder.is_dir()  # the folder stays; the lock file this run made goes
    assert list(folder.iterdir()) == []


def test_inputs_and_devices_are_not_locked(tmp_path: Path) -> None:
    source = resolve(PathUse("source.path", tmp_path / "in.jsonl", Access.READ))
    null = output(Path("/dev/null"))
    with lock_outputs([source, null], owner="job") as held:
        assert held.locks == []


def test_the_same_lock_twice_is_taken_once(tmp_path: Path) -> None:
    out = output(tmp_path / "out.jsonl")
    with lock_outputs([out, out], owner="job") as held:
        assert len(held.locks) == 1


def test_a_lock_file_removed_before_it_was_locked_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race of a holder removing its lock file between our open and our flock: we end
    # up locking a file no longer at the path, so we must start over.
    path = tmp_path / ".out.jsonl.lock"
    real_open = locks_module._open
    opened: list[int] = []

    def open_then_lose(lock: Path) -> tuple[int, bool]:
        fd, created = real_open(lock)
        if not opened:
            lock.unlink()  # the previous holder removes it just now
        opened.append(fd)
        return fd, created

    monkeypatch.setattr(locks_module, "_open", open_then_lose)
    lock = acquire(path, field="sink.path", guarded=tmp_path / "out.jsonl", owner="job")
    try:
        assert len(opened) == 2
        assert path.exists()
        assert os.fstat(opened[1]).st_ino == path.stat().st_ino  # the file at the path
    finally:
        lock.release()


def test_a_lock_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("")
    (tmp_path / ".out.jsonl.lock").symlink_to(tmp_path / "real")  # never followed
    with pytest.raises(ConfigError, match=r"^job: sink.path: cannot lock .*out.jsonl: "):
        lock_outputs([output(tmp_path / "out.jsonl")], owner="job")


def test_holder_of_a_file_without_a_record(tmp_path: Path) -> None:
    (tmp_path / "lock").write_text("not a record")
    assert holder_of(tmp_path / "lock") == "another process"
    assert holder_of(tmp_path / "missing") == "another process"
