"""Checkpoint files: atomic writes, integrity checks, fallback to older ones, retention;
private folders and files, and an HMAC so that only the job's own files are unpickled."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asyncwait import CheckpointWarning, ConfigError, Record, Watermark
from asyncwait._checkpoint.store import Checkpoint, CheckpointStore


def make(checkpoint_id: int, job: str = "job") -> Checkpoint:
    return Checkpoint(
        id=checkpoint_id,
        job=job,
        topology=[{"source": ["S", "in"]}],
        finished=False,
        created=0.0,
        stages=[{"offset": checkpoint_id * 10}, {"elements": [Record({"a": 1}, 5), Watermark(3)]}],
        counters={"events_in": checkpoint_id},
    )


def save(store: CheckpointStore, checkpoint: Checkpoint) -> Path:
    return store.write(checkpoint.id, CheckpointStore.encode(checkpoint))


def test_round_trip_and_manifest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "my job/1", keep=3)
    path = save(store, make(1, "my job/1"))
    assert path == tmp_path / "my_job_1" / "chk-000001.ckpt"
    back = store.read(1)
    assert back == make(1, "my job/1")
    assert back.stages[1]["elements"] == [Record({"a": 1}, 5), Watermark(3)]
    manifest = json.loads((store.dir / "MANIFEST.json").read_text())
    assert manifest == {"job": "my job/1", "latest": 1, "checkpoints": [1]}
    assert [p.name for p in store.dir.iterdir() if p.name.endswith(".tmp")] == []


def test_latest_is_the_newest_intact_one(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "job", keep=5)
    for n in (1, 2, 3):
        save(store, make(n))
    latest = store.latest()
    assert latest is not None
    assert latest.id == 3


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "SHA-256"),
        (lambda b: b"garbage", "bad header"),
        (lambda b: b + b"more", "padded"),
        (lambda b: b"", "bad header"),
    ],
)
def test_a_damaged_checkpoint_is_skipped_with_a_warning(
    tmp_path: Path, damage: object, reason: str
) -> None:
    store = CheckpointStore(tmp_path, "job", keep=5)
    save(store, make(1))
    path = save(store, make(2))
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.warns(CheckpointWarning, match=rf"chk-000002\.ckpt' skipped: .*{reason}"):
        latest = store.latest()
    assert latest is not None
    assert latest.id == 1


def test_all_damaged_means_no_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "job", keep=5)
    save(store, make(1)).write_bytes(b"x")
    with pytest.warns(CheckpointWarning):
        assert store.latest() is None


def test_a_checkpoint_of_another_job_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "job", keep=5)
    other = CheckpointStore(tmp_path, "job", keep=5)
    other.job = "other"  # same folder, another name inside the file
    save(other, make(4, "other"))
    with pytest.warns(CheckpointWarning, match="belongs to job 'other'"):
        assert store.latest() is None


def test_partial_temporary_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "job", keep=2)
    save(store, make(1))
    (store.dir / ".chk-000002.ckpt.tmp").write_bytes(b"half a checkp")
    assert store.ids() == [1]
    latest = store.latest()
    assert latest is not None
    assert latest.id == 1
    store.retain()
    assert not (store.dir / ".chk-000002.ckpt.tmp").exists()


def test_retain_keeps_the_newest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "job", keep=2)
    for n in range(1, 6):
        save(store, make(n))
        store.retain()
    assert store.ids() == [4, 5]
    assert json.loads((store.dir / "MANIFEST.json").read_text())["checkpoints"] == [4, 5]
    store.clear()
    assert store.ids() == []
    assert store.latest() is None


def test_an_unusable_checkpoint_dir_names_itself(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = CheckpointStore(blocker, "job", keep=2)
    with pytest.raises(ConfigError, match=r"checkpoint_dir '.*file': cannot create"):
        save(store, make(1))


# ------------------------------------------------------------------ who may write, who wrote


class Planted:
    """A pickle that runs a shell command when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def frame(payload: bytes, *, magic: bytes = b"ASYNCWAIT-CHECKPOINT 2\n", mac: bool = True) -> bytes:
    """A checkpoint file's bytes with a valid length and SHA-256 (and a made-up MAC)."""
    head = magic + struct.pack(">Q", len(payload)) + hashlib.sha256(payload).digest()
    return head + (bytes(32) if mac else b"") + payload


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_folders_are_created_0700_and_files_0600(tmp_path: Path) -> None:
    old = os.umask(0)  # even a permissive umask leaves them private
    try:
        store = CheckpointStore(tmp_path / "a" / "cp", "job", keep=3)
        save(store, make(1))
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", tmp_path / "a" / "cp", store.dir):
        assert mode(folder) == 0o700, folder
    assert sorted(p.name for p in store.dir.iterdir()) == [
        "KEY",
        "MANIFEST.json",
        "chk-000001.ckpt",
    ]
    for file in store.dir.iterdir():
        assert mode(file) == 0o600, file
    assert len((store.dir / "KEY").read_bytes()) == 32


@pytest.mark.parametrize(
    "planted",
    [
        pytest.param(lambda p: frame(p), id="valid header and SHA-256, no valid HMAC"),
        pytest.param(
            lambda p: frame(p, magic=b"ASYNCWAIT-CHECKPOINT 1\n", mac=False), id="older format"
        ),
    ],
)
@pytest.mark.parametrize("key", [True, False], ids=["key", "no key"])
def test_a_planted_checkpoint_is_refused_and_never_unpickled(
    tmp_path: Path, planted: Callable[[bytes], bytes], key: bool
) -> None:
    marker = tmp_path / "marker"
    store = CheckpointStore(tmp_path / "cp", "job", keep=3)
    if key:
        save(store, make(1))  # the job's own, with its key
    else:
        store.dir.mkdir(parents=True, mode=0o700)
    target = store.path(2)
    target.write_bytes(planted(pickle.dumps(Planted(marker))))
    target.chmod(0o600)
    with pytest.raises(ConfigError, match=r"chk-000002\.ckpt'") as caught:
        CheckpointStore(tmp_path / "cp", "job", keep=3).latest()
    assert not marker.exists()
    assert "--fresh" in str(caught.value)
    assert "not loaded" in str(caught.value)


def test_another_jobs_key_fails_the_hmac(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "job", keep=3)
    save(store, make(1))
    (store.dir / "KEY").write_bytes(os.urandom(32))
    with pytest.raises(ConfigError, match=r"was not written by this job \(its HMAC does not match"):
        CheckpointStore(tmp_path, "job", keep=3).latest()


def test_the_hmac_binds_the_checkpoint_id(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "job", keep=3)
    save(store, make(1)).rename(store.path(7))
    with pytest.raises(ConfigError, match=r"chk-000007\.ckpt' was not written by this job"):
        CheckpointStore(tmp_path, "job", keep=3).latest()


@pytest.mark.parametrize(
    ("target", "bad_mode", "why"),
    [
        ("root", 0o777, "writable by its group and others"),
        ("root", 0o775, "writable by its group"),
        ("job", 0o757, "writable by others"),
        ("chk-000001.ckpt", 0o666, "writable by its group and others"),
        ("KEY", 0o640, "can be read or written by other users"),
    ],
)
def test_what_others_can_write_is_refused(
    tmp_path: Path, target: str, bad_mode: int, why: str
) -> None:
    root = tmp_path / "cp"
    store = CheckpointStore(root, "job", keep=3)
    save(store, make(1))
    path = {"root": root, "job": store.dir}.get(target, store.dir / target)
    path.chmod(bad_mode)
    fresh = CheckpointStore(root, "job", keep=3)
    with pytest.raises(ConfigError, match=rf"'{re.escape(str(path))}' .*{why}"):
        fresh.latest()
    if target != "chk-000001.ckpt":  # a fresh start may delete that one
        with pytest.raises(ConfigError, match=re.escape(str(path))):
            fresh.clear()  # a fresh start does not get around the others
        assert store.path(1).exists()


def test_a_new_checkpoint_is_not_written_into_an_open_folder(tmp_path: Path) -> None:
    root = tmp_path / "cp"
    root.mkdir(mode=0o700)
    root.chmod(0o777)
    store = CheckpointStore(root, "job", keep=3)
    with pytest.raises(ConfigError, match=rf"'{re.escape(str(root))}' is writable by"):
        save(store, make(1))
    assert list(root.iterdir()) == []


def test_a_folder_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(tmp_path / "cp", "job", keep=3)
    save(store, make(1))
    owner = (tmp_path / "cp").stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)
    with pytest.raises(ConfigError, match=rf"is owned by user {owner}, not by this user"):
        CheckpointStore(tmp_path / "cp", "job", keep=3).latest()


def test_a_damaged_key_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "job", keep=3)
    save(store, make(1))
    (store.dir / "KEY").write_bytes(b"short")
    with pytest.raises(ConfigError, match=r"KEY' is damaged \(5 bytes, not 32\)"):
        CheckpointStore(tmp_path, "job", keep=3).latest()


def test_a_fresh_start_keeps_the_key(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "job", keep=3)
    save(store, make(1))
    key = (store.dir / "KEY").read_bytes()
    store.clear()
    assert sorted(p.name for p in store.dir.iterdir()) == ["KEY"]
    again = CheckpointStore(tmp_path, "job", keep=3)
    save(again, make(2))
    assert (store.dir / "KEY").read_bytes() == key
    latest = again.latest()
    assert latest is not None
    assert latest.id == 2


def test_an_unreadable_key_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "job", keep=3)
    save(store, make(1))
    (store.dir / "KEY").unlink()
    (store.dir / "KEY").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=r"cannot read the job's key '.*KEY'"):
        CheckpointStore(tmp_path, "job", keep=3).latest()
