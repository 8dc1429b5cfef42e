"""`asyncwait validate` and `run` refuse outputs that are inputs or other outputs, and check
everything else that can be checked without running: they accept the same job files.

The alias table: each output (``sink.path``, ``errors.path``, ``checkpoint.dir``,
``--json-summary``) against each input (``source.path``, the SQLite ``lookup[0].path``, the
job file) and against the other outputs, spelled plainly, with ``./``, with ``..``, through a
symbolic link and through a hard link. Every case exits 2 naming both fields, and leaves
every file as it was (nothing created, nothing truncated).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from asyncwait.cli import main

from .test_jobfile import JOB, LOOKUP, make_data

INPUTS = {"source.path": "events.jsonl", "lookup[0].path": "dim.db", "the job file": "job.toml"}
COMMANDS = ("validate", "run")


def plain(folder: Path, name: str) -> str:
    return name


def dot(folder: Path, name: str) -> str:
    return f"./{name}"


def dotdot(folder: Path, name: str) -> str:
    return f"sub/../{name}"


def symlink(folder: Path, name: str) -> str:
    (folder / f"link-{name}").symlink_to(name)
    return f"link-{name}"


def hardlink(folder: Path, name: str) -> str:
    os.link(folder / name, folder / f"hard-{name}")
    return f"hard-{name}"


Spelling = Callable[[Path, str], str]
SPELLINGS: list[Spelling] = [plain, dot, dotdot, symlink, hardlink]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The job's folder: events.jsonl, dim.db, a subfolder, and job.toml written by `job`."""
    data = tmp_path / "data"
    data.mkdir()
    make_data(data)
    (data / "sub").mkdir()
    (data / "job.toml").write_text(JOB)
    return data


def job(
    folder: Path, *, sink: str = "out.jsonl", errors: str = "errors.jsonl", extra: str = ""
) -> Path:
    text = JOB.replace('path = "out.jsonl"', f'path = "{sink}"')
    text = text.replace('path = "errors.jsonl"', f'path = "{errors}"')
    path = folder / "job.toml"
    path.write_text(text + extra)
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<folder>"
        for p in sorted(root.rglob("*"))
    }


def refused(
    command: str, path: Path, capsys: pytest.CaptureFixture[str], *more: str
) -> tuple[int, str]:
    """Run ``command`` on the job file; its exit status and stderr (stdout must be empty)."""
    root = path.parent.parent
    before = snapshot(root)
    code = main([command, str(path), *more])
    out, err = capsys.readouterr()
    assert snapshot(root) == before, "a refused command changed files"
    assert out == ""
    return code, err


def assert_names(err: str, first: str, second: str) -> None:
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, err
    assert first in err, err
    assert second in err, err


# ------------------------------------------------------------------ the alias table


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("spelling", SPELLINGS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("input_field", list(INPUTS))
@pytest.mark.parametrize("output", ["sink.path", "errors.path", "--json-summary"])
def test_a_file_output_that_is_an_input_is_refused(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    spelling: Spelling,
    input_field: str,
    output: str,
) -> None:
    where = spelling(folder, INPUTS[input_field])
    more: list[str] = []
    if output == "sink.path":
        path = job(folder, sink=where)
    elif output == "errors.path":
        path = job(folder, errors=where)
    else:
        path = job(folder)
        more = ["--json-summary", str(folder / where)]
    code, err = refused(command, path, capsys, *more)
    assert code == 2
    assert_names(err, output, input_field)
    assert "are the same file" in err
    assert "the job would overwrite its input; nothing was written" in err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("spelling", ["..", "./..", "sub/../..", "up"])
@pytest.mark.parametrize("input_field", list(INPUTS))
def test_a_checkpoint_folder_that_is_an_input_is_refused(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    spelling: str,
    input_field: str,
) -> None:
    # Checkpoints go to <dir>/<job name>/: named after the input, in the input's folder.
    (folder / "up").symlink_to("..")
    name = INPUTS[input_field]
    path = job(folder, extra=f'\n[checkpoint]\ninterval = 1.0\ndir = "{spelling}/data"\n')
    path.write_text(path.read_text().replace('name = "enrich"', f'name = "{name}"'))
    code, err = refused(command, path, capsys)
    assert code == 2
    assert_names(err, "checkpoint.dir", input_field)
    assert "are the same file" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_checkpoint_folder_holding_the_inputs_is_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    # Job "data" checkpointing into the parent folder: its checkpoints folder is data/.
    path = job(folder, extra='\n[checkpoint]\ninterval = 1.0\ndir = ".."\n')
    path.write_text(path.read_text().replace('name = "enrich"', 'name = "data"'))
    code, err = refused(command, path, capsys)
    assert code == 2
    assert_names(err, "checkpoint.dir", "the job file")
    assert f"is inside checkpoint.dir ({folder})" in err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("spelling", [plain, dotdot, symlink, hardlink], ids=lambda s: s.__name__)
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("sink.path", "errors.path"),
        ("sink.path", "--json-summary"),
        ("errors.path", "--json-summary"),
    ],
)
def test_two_outputs_of_one_file_are_refused(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    spelling: Spelling,
    first: str,
    second: str,
) -> None:
    (folder / "previous.jsonl").write_text("an earlier run's output\n")
    other = spelling(folder, "previous.jsonl")
    fields = {first: "previous.jsonl", second: other}
    path = job(
        folder,
        sink=fields.get("sink.path", "out.jsonl"),
        errors=fields.get("errors.path", "errors.jsonl"),
    )
    more = (
        ["--json-summary", str(folder / fields["--json-summary"])]
        if "--json-summary" in fields
        else []
    )
    code, err = refused(command, path, capsys, *more)
    assert code == 2
    assert_names(err, first, second)
    assert "two outputs would overwrite each other" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_inside_the_checkpoint_folder_is_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    (folder / "cp" / "enrich").mkdir(parents=True)
    path = job(
        folder, sink="cp/enrich/out.jsonl", extra='\n[checkpoint]\ninterval = 1.0\ndir = "cp"\n'
    )
    code, err = refused(command, path, capsys)
    assert code == 2
    assert_names(err, "sink.path", "checkpoint.dir")
    assert "a folder the job manages" in err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("suffix", ["-wal", "-journal", "-shm"])
def test_an_output_onto_sqlites_own_files_is_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], command: str, suffix: str
) -> None:
    code, err = refused(command, job(folder, sink=f"dim.db{suffix}"), capsys)
    assert code == 2
    assert_names(err, "sink.path", f"lookup[0].path (its {suffix} file)")


@pytest.mark.parametrize("command", COMMANDS)
def test_the_cli_in_a_subprocess_refuses_and_keeps_the_input(folder: Path, command: str) -> None:
    path = job(folder, sink="events.jsonl")
    before = snapshot(folder.parent)
    done = subprocess.run(
        [sys.executable, "-m", "asyncwait", command, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: {path}: sink.path and source.path are the same file ({folder / 'events.jsonl'}): "
        "the job would overwrite its input; nothing was written\n"
    )
    assert snapshot(folder.parent) == before


# ------------------------------------------------------------------ what validate checks


POSTGRES = '[[lookup]]\ntype = "postgres"\ndsn = "{dsn}"\ntable = "t"\nkey = "k"\non = "userID"\n'
MYSQL = '[[lookup]]\ntype = "mysql"\ndsn = "{dsn}"\ntable = "t"\nkey = "k"\non = "userID"\n'
REDIS = '[[lookup]]\ntype = "redis"\nurl = "{dsn}"\non = "userID"\n'
HTTP = '[[lookup]]\ntype = "http"\nurl = "{dsn}"\non = "userID"\n'


@pytest.mark.parametrize(
    ("lookup", "dsn", "field", "problem"),
    [
        (POSTGRES, "host=db dbname=shop user=app password=s3cret", "lookup[0].dsn",
         "a libpq keyword DSN (host=... dbname=...) is not supported"),
        (POSTGRES, "postgress://app:s3cret@db/shop", "lookup[0].dsn",
         "the scheme 'postgress://' is not one of postgresql://, postgres://; "
         "did you mean 'postgres://'?"),
        (POSTGRES, "db.example.com", "lookup[0].dsn", "not a URL; expected one starting with "
         "postgresql://, postgres://"),
        (MYSQL, "mysq://app:s3cret@db/shop", "lookup[0].dsn",
         "the scheme 'mysq://' is not one of mysql://, mariadb://; did you mean 'mysql://'?"),
        (MYSQL, "mysql://db:3306/shop", "lookup[0]", "a user is required"),
        (REDIS, "redis:/127.0.0.1", "lookup[0].url", "not a URL; expected one starting with "
         "redis://, rediss://, unix://"),
        (REDIS, "http://127.0.0.1/{key}", "lookup[0].url", "the scheme 'http://' is not one of "
         "redis://, rediss://, unix://"),
        (HTTP, "htp://127.0.0.1/{key}", "lookup[0].url", "the scheme 'htp://' is not one of "
         "http://, https://; did you mean 'http://'?"),
        (HTTP, "http:///users/{key}", "lookup[0]", "must be an http:// or https:// URL"),
    ],
)  # fmt: skip
def test_validate_and_run_refuse_the_same_connection_strings(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    lookup: str,
    dsn: str,
    field: str,
    problem: str,
) -> None:
    path = folder / "job.toml"
    path.write_text(JOB.replace(LOOKUP, lookup.format(dsn=dsn)))
    messages = []
    for command in COMMANDS:
        code, err = refused(command, path, capsys)
        assert code == 2, err
        assert err.startswith(f"error: {path}: {field}: "), err
        assert problem in err
        assert "s3cret" not in err
        messages.append(err)
    assert messages[0] == messages[1]  # validate says what run says


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://app:s3cret@db:5432/shop", "postgres://app@db/shop?sslmode=disable"],
)
def test_postgres_urls_pass_validate(
    folder: Path, capsys: pytest.CaptureFixture[str], dsn: str
) -> None:
    path = folder / "job.toml"
    path.write_text(JOB.replace(LOOKUP, POSTGRES.format(dsn=dsn)))
    assert main(["validate", str(path)]) == 0
    assert "s3cret" not in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_a_sink_path_that_is_a_folder_is_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, err = refused(command, job(folder, sink="sub"), capsys)
    assert code == 2
    assert (
        err
        == f"error: {folder / 'job.toml'}: sink.path: {folder / 'sub'} is a folder, not a file\n"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_output_folder_is_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    # Root may write anywhere, so the OS's answer for this folder is faked (only it).
    real_access = os.access
    read_only = folder / "sub"

    def access(path: os.PathLike[str] | str, mode: int) -> bool:
        return Path(path) != read_only and real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    code, err = refused(command, job(folder, errors="sub/errors.jsonl"), capsys)
    assert code == 2
    assert err == f"error: {folder / 'job.toml'}: errors.path: folder {read_only} is not writable\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_checkpoint_folder_under_a_file_is_refused(
    folder: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = job(folder, extra='\n[checkpoint]\ninterval = 1.0\ndir = "events.jsonl/cp"\n')
    code, err = refused(command, path, capsys)
    assert code == 2
    assert err.startswith(f"error: {path}: checkpoint.dir: cannot create ")
    assert err.endswith(f"{folder / 'events.jsonl'} is not a folder\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_json_summary_into_a_missing_folder_is_refused_before_the_job_runs(
    folder: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    summary = folder / "missing" / "summary.json"
    code, err = refused(command, job(folder), capsys, "--json-summary", str(summary))
    assert code == 2
    assert err == f"error: --json-summary: folder does not exist: {folder / 'missing'}\n"
    assert not (folder / "out.jsonl").exists()  # the job did not run


def test_demo_refuses_a_json_summary_into_a_missing_folder_before_generating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--events", "10", "--users", "2", "--dir", str(tmp_path / "demo")]
    argv += ["--json-summary", str(tmp_path / "missing" / "s.json")]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: --json-summary: folder does not exist: {tmp_path / 'missing'}\n"
    )
    assert not (tmp_path / "demo").exists()


def test_validate_accepts_a_json_summary_it_could_write(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = job(folder)
    assert main(["validate", str(path), "--json-summary", str(folder / "summary.json")]) == 0
    assert capsys.readouterr().out.endswith(f"{path}: ok\n")
    assert not (folder / "summary.json").exists()
