"""Run a module as ``__main__`` and record this process's peak RSS when it exits.

``python -m bench._hwm OUT.json MODULE [ARGS...]`` runs ``python -m MODULE ARGS...`` in this
same process (``runpy``, exactly as ``-m`` does) and, at exit, writes ``{"vm_hwm_kib": ...}``
(``VmHWM`` from ``/proc/self/status``; ``null`` where there is no ``/proc``) to ``OUT.json``.

Why not the parent's ``wait4``/``getrusage(RUSAGE_CHILDREN)``: on Linux a child's
``ru_maxrss`` starts from the peak RSS of the memory it was forked (or vforked) from, i.e.
the *parent's*, so a small job run from a big benchmark process reports the benchmark's
size. ``VmHWM`` is reset when ``exec`` gives the child its own memory.
"""

from __future__ import annotations

import atexit
import json
import runpy
import sys
from pathlib import Path


def _vm_hwm_kib() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main() -> None:
    if len(sys.argv) < 3:
        print("usage: python -m bench._hwm OUT.json MODULE [ARGS...]", file=sys.stderr)
        sys.exit(2)
    out, module, *args = sys.argv[1:]

    def report() -> None:
        Path(out).write_text(json.dumps({"vm_hwm_kib": _vm_hwm_kib()}), encoding="utf-8")

    atexit.register(report)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
