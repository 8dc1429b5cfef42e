"""Helpers for integration tests and benchmarks that run real servers on loopback.

A fresh CI machine may lack a server: :func:`ensure_installed` installs its Debian package
(``apt-get update`` once per process, then ``apt-get install``) and fails loudly when that is
impossible, so a missing server is a red test, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ("ensure_installed", "free_port", "wait_for_port")

_apt_lock = threading.Lock()
_apt_updated = False


def _find(candidates: Sequence[str]) -> str | None:
    for candidate in candidates:
        if os.sep in candidate:
            if Path(candidate).is_file() and os.access(candidate, os.X_OK):
                return candidate
            continue
        found = shutil.which(candidate)
        if found is not None:
            return found
    return None


def ensure_installed(candidates: Sequence[str], package: str) -> str:
    """Return the path of the first of ``candidates`` found, installing ``package`` if none is.

    Args:
        candidates: executable names (looked up on PATH) or absolute paths, best first.
        package: the Debian package that provides them.

    Raises:
        RuntimeError: none is found and ``apt-get install package`` did not provide one.
    """
    global _apt_updated
    found = _find(candidates)
    if found is not None:
        return found
    with _apt_lock:
        found = _find(candidates)
        if found is not None:
            return found
        if shutil.which("apt-get") is None:
            msg = f"{candidates[0]} is not installed and there is no apt-get to install {package}"
            raise RuntimeError(msg)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-q"], check=False, env=env, capture_output=True)
            _apt_updated = True
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        found = _find(candidates)
        if found is None:
            msg = (
                f"could not install {package} (for {candidates[0]}): apt-get exited "
                f"{done.returncode}: {done.stderr.strip()[-2000:]}"
            )
            raise RuntimeError(msg)
        return found


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, *, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``.

    Raises:
        RuntimeError: the port did not open within ``timeout`` seconds, or ``process`` exited.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            msg = f"server process exited with {process.returncode} before 127.0.0.1:{port} opened"
            raise RuntimeError(msg)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    msg = f"nothing listens on 127.0.0.1:{port} after {timeout:g} s"
    raise RuntimeError(msg)
