"""Checkpoint files: atomic writes, integrity checks, fallback to older ones, retention."""

from __future__ import annotations

import json
from pathlib import Path

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
