"""The ``--report`` page of a real demo run, opened in a real headless browser (chromium).

The page is rendered to a screenshot; the PNG is decoded here (zlib and the PNG row
filters, no imaging library) and must show the charts' own colours, and the browser must
log no console error. Without chromium the test fails: it is what this test is about.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

from ._system import ensure_installed

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
WIDTH, HEIGHT = 1200, 3000
BLUE = (0x1F, 0x77, 0xB4)  # lines and histogram bars (charts.py's first colour)
RED = (0xD6, 0x27, 0x28)  # the errors-by-reason bars


def chromium() -> str:
    """Debian's chromium, installed when missing (a fresh machine): never a skipped test."""
    return ensure_installed(("chromium", "chromium-browser", "google-chrome"), "chromium")


def screenshot(page: Path, png: Path) -> str:
    """Render ``page`` to ``png`` and return the browser's log (stderr)."""
    command = [
        chromium(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        # Any request to the network would fail: the page must need none.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--screenshot={png}",
        f"--window-size={WIDTH},{HEIGHT}",
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stderr


def pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the unfiltered rows (RGB or RGBA, 8 bits) of a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, body = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), "an 8-bit, non-interlaced PNG"
    channels = {2: 3, 6: 4}[color]
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        if kind == 1:  # Sub
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + (left + previous[i]) // 2) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = previous[i]
                c = previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        previous = bytes(line)
    return width, height, [bytes(r) for r in rows] if channels == 3 else [_rgb(r) for r in rows]


def _rgb(row: bytes) -> bytes:
    return b"".join(row[i : i + 3] for i in range(0, len(row), 4))


def colours(rows: list[bytes]) -> Counter[tuple[int, int, int]]:
    found: Counter[tuple[int, int, int]] = Counter()
    for row in rows:
        found.update(zip(row[0::3], row[1::3], row[2::3], strict=True))
    return found


def test_the_report_of_a_demo_run_renders_in_chromium(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    summary_path = tmp_path / "summary.json"
    command = [sys.executable, "-m", "asyncwait", "demo", "--dir", str(tmp_path / "demo")]
    command += ["--events", "4000", "--users", "2000", "--capacity", "16"]
    command += ["--latency-ms", "20", "--seed", "7", "--quiet"]  # about 1-3 s: many samples
    command += ["--report", str(report), "--json-summary", str(summary_path)]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    page = report.read_text(encoding="utf-8")
    summary = json.loads(summary_path.read_text())
    assert f"<td>{summary['events_in']:,}</td>" in page
    for chart in ("throughput", "latency", "in-flight", "cache", "errors"):
        assert f'data-chart="{chart}"' in page

    png = tmp_path / "report.png"
    log = screenshot(report, png)
    page_errors = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert page_errors == []
    assert "ERR_NAME_NOT_RESOLVED" not in log  # nothing was fetched

    width, height, rows = pixels(png.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    found = colours(rows)
    white = found[(255, 255, 255)]
    assert white < width * height * 0.97  # not a blank page
    # The charts were drawn: the histogram's blue bars and the errors' red bars are
    # solid rectangles in exactly those colours, many pixels each.
    assert found[BLUE] > 2000
    assert found[RED] > 500

    # A blank page of the same size, as the browser renders it: the report differs.
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    screenshot(blank, tmp_path / "blank.png")
    _, _, blank_rows = pixels((tmp_path / "blank.png").read_bytes())
    assert colours(blank_rows)[(255, 255, 255)] == width * height


def test_a_stopped_run_still_writes_its_report(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "asyncwait", "demo", "--dir", str(out), "--quiet"]
    command += ["--events", "20000", "--users", "20000", "--latency-ms", "50"]
    command += ["--capacity", "10", "--seed", "3", "--report", str(report)]  # ~100 s unstopped
    child = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Polling for the file the job's sink creates when it opens: the one wait needed here.
    for _ in range(6000):
        if (out / "enriched.jsonl").exists() or child.poll() is not None:
            break
        time.sleep(0.01)
    time.sleep(0.5)  # a few progress samples
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err.decode()  # no checkpoints: stopped before its end
    page = report.read_text(encoding="utf-8")
    assert 'class="status-stopped">stopped' in page
    assert 'data-chart="throughput"' in page
