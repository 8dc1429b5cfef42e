"""Everything about a job file that can be checked without running it (private).

``asyncwait validate`` and ``asyncwait run`` both call :func:`check` after reading the job
file, so they accept the same files: ``validate`` never says ok to what ``run`` refuses
before it starts. On top of the field checks of :func:`~asyncwait.jobfile.load`:

* every lookup is built as ``run`` builds it (nothing connects): its connector checks the
  connection string (a lookup whose driver is missing is left to its ``note:``);
* every output (``sink.path``, ``errors.path``, ``checkpoint.dir``, ``--json-summary``) can
  be written: its folder exists and is writable, and it is not a folder;
* no output is an input (``source.path``, a SQLite ``lookup[i].path`` and the files SQLite
  keeps beside it, the job file) or another output, however the path is spelled.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .._dataflow.files import checkpoint_folder
from .._paths import Access, PathUse, check_no_alias, check_outputs, paths_of
from ._build import lookup_table, missing_driver
from ._spec import JobSpec

__all__ = ("check", "job_paths")


def job_paths(spec: JobSpec, *, json_summary: Path | None = None) -> list[PathUse]:
    """Every file and folder ``spec`` reads or writes, named by its job-file field.

    Raises:
        ConfigError: a lookup's connector refuses an option (see :func:`check`).
    """
    uses = [PathUse("the job file", spec.file, Access.READ)]
    if spec.source.path is not None:
        uses.append(PathUse("source.path", spec.source.path, Access.READ))
    for index, lk in enumerate(spec.lookups):
        if missing_driver(lk.type) is not None:
            if lk.path is not None:
                uses.append(PathUse(f"lookup[{index}].path", lk.path, Access.READ))
            continue
        field = f"lookup[{index}].path"
        uses += [replace(use, field=field) for use in paths_of(lookup_table(spec, index, lk))]
    if spec.sink.path is not None:
        uses.append(PathUse("sink.path", spec.sink.path, Access.WRITE))
    if spec.errors is not None and spec.errors.path is not None:
        uses.append(PathUse("errors.path", spec.errors.path, Access.WRITE))
    if spec.checkpoint is not None:
        folder = checkpoint_folder(spec.checkpoint.dir, spec.name)
        uses.append(PathUse("checkpoint.dir", folder, Access.WRITE, folder=True))
    if json_summary is not None:
        uses.append(PathUse("--json-summary", json_summary, Access.WRITE))
    return uses


def check(spec: JobSpec, *, json_summary: Path | None = None) -> None:
    """Check what can be checked of ``spec`` without running it; nothing is created.

    Args:
        spec: a job file read by :func:`~asyncwait.jobfile.load`.
        json_summary: where ``--json-summary`` will write, if given.

    Raises:
        ConfigError: naming the job file and the field (or the option) and what is wrong.
    """
    if json_summary is not None:
        check_outputs([PathUse("--json-summary", json_summary, Access.WRITE)], owner="")
    uses = job_paths(spec, json_summary=json_summary)
    # Aliases first: "the sink is the source" says more than "the sink's folder is odd".
    check_no_alias(uses, owner=str(spec.file))
    check_outputs(uses, owner=str(spec.file))
