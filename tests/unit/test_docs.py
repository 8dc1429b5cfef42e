"""The documentation's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Pages whose every ```python block is a complete program.
RUNNABLE_PAGES = [
    "docs/concepts.md",
    "docs/dataflow.md",
    "docs/lookup-join.md",
    "docs/fault-tolerance.md",
    "docs/resilience.md",
    "docs/observability.md",
]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in RUNNABLE_PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            found.append((f"{page}#{i}", block))
    return found


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # TMPDIR: the files an example makes with tempfile land in the test's own directory.
    env = {**os.environ, "TMPDIR": str(cwd)}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=lambda v: v if "#" in v else "")
def test_doc_block_runs(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0, f"{where} failed:\n{done.stderr}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    done = _run([str(example)], tmp_path)
    assert done.returncode == 0, f"{example.name} failed:\n{done.stderr}"
    assert done.stdout.strip(), f"{example.name} printed nothing"


def test_readme_dataflow_example_is_the_example_file() -> None:
    """The README's "Dataflow in ten lines" is examples/dataflow_quickstart.py, which runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Dataflow in ten lines", 1)[1]
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    example = (ROOT / "examples" / "dataflow_quickstart.py").read_text(encoding="utf-8")
    assert example.split('"""\n\n', 1)[1] == block


def test_there_are_examples() -> None:
    assert len(_blocks()) >= 5
    assert len(EXAMPLES) >= 3
