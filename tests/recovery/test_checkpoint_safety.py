"""`asyncwait run` with checkpoints, end to end: a resume refuses another input (exit 2,
nothing touched) and takes an input that only grew; a planted checkpoint never runs; a
folder others can write is refused; what the job creates is private; a skipped checkpoint
is one warning line; without checkpoints a stop flushes the errors file."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 30_000
USERS = 50

JOB = """
[job]
name = "safety"

[source]
type = "jsonl"
path = "events.jsonl"

[[lookup]]
type = "sqlite"
path = "dim.db"
table = "dim_user"
key = "user_id"
on = "user"
columns = ["age"]
mode = "ordered"

[sink]
type = "jsonl"
path = "out.jsonl"

[errors]
path = "errors.jsonl"
"""
CHECKPOINT = '\n[checkpoint]\ninterval = {interval}\ndir = "cp"\n'


def line(i: int) -> str:
    return f"bad {i}" if i % 100 == 7 else json.dumps({"i": i, "user": i % USERS})


def write_events(path: Path, start: int, stop: int) -> None:
    with path.open("a") as file:
        file.write("".join(line(i) + "\n" for i in range(start, stop)))


def make_job(folder: Path, *, checkpoint: bool = True, interval: float = 0.05) -> Path:
    write_events(folder / "events.jsonl", 0, EVENTS)
    con = sqlite3.connect(folder / "dim.db")
    con.execute("CREATE TABLE dim_user (user_id INTEGER PRIMARY KEY, age INTEGER)")
    con.executemany("INSERT INTO dim_user VALUES (?, ?)", [(u, 20 + u) for u in range(USERS)])
    con.commit()
    con.close()
    job = folder / "job.toml"
    job.write_text(JOB + (CHECKPOINT.format(interval=interval) if checkpoint else ""))
    return job


def expected_output(n: int) -> list[dict[str, int]]:
    return [{"i": i, "user": i % USERS, "age": 20 + i % USERS} for i in range(n) if i % 100 != 7]


def expected_errors(n: int) -> list[tuple[int, str]]:
    return [(i + 1, f"bad {i}") for i in range(n) if i % 100 == 7]


def read_output(folder: Path) -> list[Any]:
    return [json.loads(text) for text in (folder / "out.jsonl").read_text().splitlines()]


def read_errors(folder: Path) -> list[tuple[int, str]]:
    entries = map(json.loads, (folder / "errors.jsonl").read_text().splitlines())
    return [(e["line"], e["raw"]) for e in entries]


def asyncwait(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "asyncwait", *args]
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run(folder: Path, *args: str) -> tuple[int, str]:
    process = asyncwait("run", "--quiet", *args, "job.toml", cwd=folder)
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (checkpoints, part files, outputs) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def wait_for(condition: Any, process: subprocess.Popen[str], what: str) -> None:
    # Polling for what another process writes: the one wait these tests need.
    for _ in range(3000):
        if condition():
            return
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def stop_after_a_checkpoint(folder: Path) -> None:
    process = asyncwait("run", "--quiet", "job.toml", cwd=folder)
    wait_for(lambda: list(folder.glob("cp/*/chk-*.ckpt")), process, "a checkpoint")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "run it again to resume from there" in err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------ changed input on resume


def replace_with_a_shorter_file(path: Path) -> None:
    path.rename(path.with_name("events.orig"))
    write_events(path, 0, 1000)


def truncate_in_place(path: Path) -> None:
    os.link(path, path.with_name("events.orig"))  # the same file, to put back afterwards
    with path.open("r+b") as file:
        file.truncate(1000)


@pytest.mark.parametrize("change", [replace_with_a_shorter_file, truncate_in_place])
def test_a_resume_refuses_a_changed_input_and_takes_a_grown_one(
    tmp_path: Path, change: Any
) -> None:
    make_job(tmp_path)
    stop_after_a_checkpoint(tmp_path)
    events = tmp_path / "events.jsonl"
    original = events.read_bytes()
    change(events)
    before = snapshot(tmp_path)

    code, err = run(tmp_path)
    assert code == 2, err
    message = one_error_line(err)
    assert f"{str(events)!r} is not the input the checkpoint read" in message
    assert "--fresh" in message
    assert snapshot(tmp_path) == before  # outputs, part files, checkpoints: untouched

    # The original file back (the same file, for a truncated one: rewritten in place),
    # then appended to: a resume reads on from the checkpoint.
    orig = tmp_path / "events.orig"
    if orig.stat().st_ino == events.stat().st_ino:
        events.write_bytes(original)
        orig.unlink()
    else:
        orig.replace(events)
    write_events(events, EVENTS, EVENTS + 1000)
    code, err = run(tmp_path)
    assert code == 0, err
    assert read_output(tmp_path) == expected_output(EVENTS + 1000)
    assert read_errors(tmp_path) == expected_errors(EVENTS + 1000)


# ------------------------------------------------------------------ who wrote the checkpoint


class Planted:
    """A pickle that creates a marker file when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path, magic: bytes) -> None:
    """A checkpoint file with a valid header, length and SHA-256, and no valid HMAC."""
    payload = pickle.dumps(Planted(marker))
    head = magic + struct.pack(">Q", len(payload)) + hashlib.sha256(payload).digest()
    signed = magic.endswith(b" 2\n")
    path.write_bytes(head + (os.urandom(32) if signed else b"") + payload)
    path.chmod(0o600)


@pytest.mark.parametrize(
    "magic", [b"ASYNCWAIT-CHECKPOINT 1\n", b"ASYNCWAIT-CHECKPOINT 2\n"], ids=["v1", "v2"]
)
@pytest.mark.parametrize("ran_before", [False, True], ids=["new folder", "after a run"])
def test_a_planted_checkpoint_never_runs(tmp_path: Path, magic: bytes, ran_before: bool) -> None:
    make_job(tmp_path)
    folder = tmp_path / "cp" / "safety"
    if ran_before:
        code, err = run(tmp_path)
        assert code == 0, err
        planted = folder / "chk-999999.ckpt"
    else:
        folder.mkdir(parents=True, mode=0o700)
        planted = folder / "chk-000001.ckpt"
    marker = tmp_path / "marker"
    plant(planted, marker, magic)
    before = snapshot(tmp_path)

    code, err = run(tmp_path)
    assert code == 2, err
    assert not marker.exists()
    message = one_error_line(err)
    assert f"{str(planted)!r}" in message
    assert "is not loaded (loading runs code from it)" in message
    assert "--fresh" in message
    assert snapshot(tmp_path) == before

    code, err = run(tmp_path, "--fresh")  # the way out: the planted file is deleted
    assert code == 0, err
    assert not marker.exists()
    assert not planted.exists()
    assert read_output(tmp_path) == expected_output(EVENTS)


def test_a_checkpoint_dir_others_can_write_is_refused(tmp_path: Path) -> None:
    make_job(tmp_path)
    cp = tmp_path / "cp"
    cp.mkdir()
    cp.chmod(0o777)
    code, err = run(tmp_path)
    assert code == 2, err
    message = one_error_line(err)
    assert f"{str(cp)!r} is writable by its group and others (mode 0777)" in message
    assert f"chmod go-w {cp}" in message
    assert list(cp.iterdir()) == []
    assert not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "errors.jsonl").exists()


def test_checkpoint_folders_and_files_are_private(tmp_path: Path) -> None:
    make_job(tmp_path, interval=600)  # one checkpoint: the last
    code, err = run(tmp_path)
    assert code == 0, err
    folder = tmp_path / "cp" / "safety"
    modes = {
        str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
        for p in [tmp_path / "cp", *(tmp_path / "cp").rglob("*")]
    }
    assert modes == {
        "cp": 0o700,
        "cp/safety": 0o700,
        "cp/safety/KEY": 0o600,
        "cp/safety/MANIFEST.json": 0o600,
        "cp/safety/chk-000001.ckpt": 0o600,
    }
    assert len((folder / "KEY").read_bytes()) == 32


def test_a_damaged_checkpoint_is_skipped_with_one_warning_line(tmp_path: Path) -> None:
    make_job(tmp_path, interval=600)  # one checkpoint per run: the last
    for _ in range(2):  # two finished checkpoints: #1 and #2
        code, err = run(tmp_path)
        assert code == 0, err
    newest = tmp_path / "cp" / "safety" / "chk-000002.ckpt"
    data = newest.read_bytes()
    newest.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    code, err = run(tmp_path)
    assert code == 0, err
    assert err.splitlines() == [
        f"warning: job 'safety': checkpoint {str(newest)!r} skipped: corrupt: the SHA-256 of "
        "its contents does not match; trying the one before"
    ]
    assert read_output(tmp_path) == expected_output(EVENTS)


# ------------------------------------------------------------------ without checkpoints


def test_without_checkpoints_a_stop_writes_every_counted_error(tmp_path: Path) -> None:
    make_job(tmp_path, checkpoint=False)
    summary = tmp_path / "summary.json"
    process = asyncwait("run", "--quiet", "--json-summary", str(summary), "job.toml", cwd=tmp_path)
    # The errors file is created when the job opens; stop it while it reads.
    wait_for((tmp_path / "errors.jsonl").exists, process, "the errors file")
    time.sleep(0.3)  # a few thousand events (the job takes seconds)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    counted = json.loads(summary.read_text())["errors"]
    written = read_errors(tmp_path)
    assert counted > 0
    assert written == expected_errors(EVENTS)[:counted]  # all of them, none twice
