"""The path checks: one file however it is spelled, outputs that can be written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asyncwait import ConfigError
from asyncwait._paths import (
    Access,
    PathUse,
    check_no_alias,
    check_outputs,
    output_problem,
    paths_of,
    resolve,
    shown,
)


def read(field: str, path: Path) -> PathUse:
    return PathUse(field, path, Access.READ)


def write(field: str, path: Path, *, folder: bool = False) -> PathUse:
    return PathUse(field, path, Access.WRITE, folder=folder)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """``tmp/data/events.jsonl`` with a symbolic link, a hard link and a subfolder."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "events.jsonl").write_text('{"a": 1}\n')
    (folder / "sub").mkdir()
    (folder / "link.jsonl").symlink_to("events.jsonl")
    os.link(folder / "events.jsonl", folder / "hard.jsonl")
    (tmp_path / "up").symlink_to(folder)
    return folder


# ------------------------------------------------------------------ resolving


def test_resolve_gives_the_real_path_and_the_inode(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(data)
    st = (data / "events.jsonl").stat()
    for spelling in ("events.jsonl", "./events.jsonl", "sub/../events.jsonl", "link.jsonl"):
        resolved = resolve(read("f", Path(spelling)))
        assert resolved.real == data / "events.jsonl"
        assert resolved.inode == (st.st_dev, st.st_ino)
    hard = resolve(read("f", Path("hard.jsonl")))
    assert hard.real == data / "hard.jsonl"
    assert hard.inode == (st.st_dev, st.st_ino)
    missing = resolve(write("f", data.parent / "up" / "new.jsonl"))
    assert missing.real == data / "new.jsonl"  # the folder's link resolved
    assert missing.inode is None


def test_a_path_with_a_nul_character_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^sink: not a usable path: .*null"):
        resolve(write("sink", Path("a\x00b")))


def test_shown_quotes_only_unprintable_paths() -> None:
    assert shown(Path("/data/events.jsonl")) == "/data/events.jsonl"
    assert shown("a\nb") == "'a\\nb'"


# ------------------------------------------------------------------ aliases


@pytest.mark.parametrize(
    "spelling",
    ["events.jsonl", "./events.jsonl", "sub/../events.jsonl", "link.jsonl", "hard.jsonl"],
)
def test_an_output_that_is_an_input_is_refused_naming_both(data: Path, spelling: str) -> None:
    uses = [read("source.path", data / "events.jsonl"), write("sink.path", data / spelling)]
    with pytest.raises(ConfigError) as info:
        check_no_alias(uses, owner="job.toml")
    message = str(info.value)
    assert message.startswith("job.toml: sink.path and source.path are the same file (")
    assert str(data / "events.jsonl") in message
    assert message.endswith("the job would overwrite its input; nothing was written")
    if spelling == "hard.jsonl":
        assert "are hard links" in message


def test_two_outputs_of_one_file_are_refused(data: Path) -> None:
    uses = [write("sink.path", data / "out.jsonl"), write("errors.path", data / "sub/../out.jsonl")]
    with pytest.raises(ConfigError, match=r"errors.path and sink.path are the same file .*"):
        check_no_alias(uses, owner="job.toml")
    with pytest.raises(ConfigError, match="two outputs would overwrite each other"):
        check_no_alias(uses, owner="job.toml")


def test_inputs_may_share_a_file_and_outputs_may_differ(data: Path) -> None:
    uses = [
        read("source.path", data / "events.jsonl"),
        read("lookup[0].path", data / "link.jsonl"),
        write("sink.path", data / "out.jsonl"),
        write("errors.path", data / "errors.jsonl"),
    ]
    resolved = check_no_alias(uses, owner="job.toml")
    assert [r.use for r in resolved] == uses


def test_nothing_may_live_inside_a_folder_the_job_owns(data: Path) -> None:
    folder = write("checkpoint.dir", data.parent / "up", folder=True)  # a link to data/
    with pytest.raises(ConfigError) as info:
        check_no_alias([read("source.path", data / "events.jsonl"), folder], owner="job.toml")
    message = str(info.value)
    assert f"source.path ({data / 'events.jsonl'}) is inside checkpoint.dir ({data})" in message
    # The folder itself, as a file of another field, is the same path.
    with pytest.raises(ConfigError, match=r"checkpoint.dir and sink.path are the same file"):
        check_no_alias([write("sink.path", data), folder], owner="job.toml")
    # Next to it is fine.
    check_no_alias([folder, read("source.path", data.parent / "data2" / "x")], owner="j")


def test_a_character_device_may_be_used_twice() -> None:
    null = Path("/dev/null")
    uses = [read("source.path", null), write("sink.path", null), write("errors.path", null)]
    assert all(r.device for r in check_no_alias(uses, owner="job.toml"))


def test_the_owner_prefix_is_left_out_when_empty(data: Path) -> None:
    uses = [read("a", data / "events.jsonl"), write("b", data / "events.jsonl")]
    with pytest.raises(ConfigError, match=r"^b and a are the same file"):
        check_no_alias(uses, owner="")


# ------------------------------------------------------------------ writable outputs


def test_an_output_needs_an_existing_writable_folder(tmp_path: Path) -> None:
    assert output_problem(write("sink", tmp_path / "out.jsonl")) is None
    problem = output_problem(write("sink", tmp_path / "missing" / "out.jsonl"))
    assert problem == f"folder does not exist: {tmp_path / 'missing'}"
    (tmp_path / "file").write_text("x")
    problem = output_problem(write("sink", tmp_path / "file" / "out.jsonl"))
    assert problem == f"{tmp_path / 'file'} is not a folder"


def test_an_output_path_may_not_be_a_folder(tmp_path: Path) -> None:
    problem = output_problem(write("sink", tmp_path))
    assert problem == f"{tmp_path} is a folder, not a file"


def test_a_read_only_folder_or_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The permission answer comes from the OS (root may write anywhere): fake only it.
    real_access = os.access
    denied = {tmp_path / "ro", tmp_path / "ro.jsonl"}

    def access(path: os.PathLike[str] | str, mode: int) -> bool:
        return Path(path) not in denied and real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro.jsonl").write_text("")
    problem = output_problem(write("sink", tmp_path / "ro" / "out.jsonl"))
    assert problem == f"folder {tmp_path / 'ro'} is not writable"
    assert output_problem(write("sink", tmp_path / "ro.jsonl")) == (
        f"{tmp_path / 'ro.jsonl'} is not writable"
    )
    problem = output_problem(write("cp", tmp_path / "ro" / "a" / "b", folder=True))
    assert problem == (
        f"cannot create {tmp_path / 'ro' / 'a' / 'b'}: folder {tmp_path / 'ro'} is not writable"
    )


def test_a_device_is_a_writable_output() -> None:
    assert output_problem(write("sink", Path("/dev/null"))) is None


def test_a_folder_output_may_be_created_below_an_existing_folder(tmp_path: Path) -> None:
    assert output_problem(write("cp", tmp_path / "a" / "b" / "c", folder=True)) is None
    assert output_problem(write("cp", tmp_path, folder=True)) is None
    (tmp_path / "file").write_text("x")
    problem = output_problem(write("cp", tmp_path / "file", folder=True))
    assert problem == f"{tmp_path / 'file'} is not a folder"
    problem = output_problem(write("cp", tmp_path / "file" / "x", folder=True))
    assert (
        problem == f"cannot create {tmp_path / 'file' / 'x'}: {tmp_path / 'file'} is not a folder"
    )


def test_an_unusable_path_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    problem = output_problem(write("sink", tmp_path / ("a" * 300) / "x"))
    assert problem is not None
    assert problem.startswith("not a usable path: ")


def test_check_outputs_names_the_field_and_skips_inputs(tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "x"
    check_outputs([read("source.path", missing)], owner="job.toml")  # inputs: not checked
    with pytest.raises(ConfigError, match=r"^job.toml: errors.path: folder does not exist: "):
        check_outputs([write("errors.path", missing)], owner="job.toml")
    with pytest.raises(ConfigError, match=r"^--json-summary: folder does not exist: "):
        check_outputs([write("--json-summary", missing)], owner="")


# ------------------------------------------------------------------ declared paths


def test_parts_declare_their_files(tmp_path: Path) -> None:
    from asyncwait import lookups, sinks, sources

    db = tmp_path / "dim.db"
    assert paths_of(sources.jsonl(tmp_path / "in.jsonl")) == (
        PathUse(f"jsonl source {str(tmp_path / 'in.jsonl')!r}", tmp_path / "in.jsonl", Access.READ),
    )
    assert [u.path.name for u in paths_of(sources.csv(tmp_path / "in.csv"))] == ["in.csv"]
    assert paths_of(sources.stdin()) == ()
    assert paths_of(sinks.jsonl(tmp_path / "out.jsonl"))[0].access is Access.WRITE
    assert paths_of(sinks.csv(tmp_path / "out.csv"))[0].path == tmp_path / "out.csv"
    assert paths_of(sinks.stdout()) == ()
    assert paths_of(sinks.collect()) == ()
    table = lookups.sqlite(db, table="t", key="k")
    files = paths_of(table)
    assert [u.path.name for u in files] == ["dim.db", "dim.db-journal", "dim.db-wal", "dim.db-shm"]
    assert {u.access for u in files} == {Access.READ}
    assert files[2].label == f"lookup {table.name} (its -wal file)"
    assert paths_of(object()) == ()
