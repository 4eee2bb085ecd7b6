"""Shared by the benchmarks: the text queries they time, peak memory, fresh `archive` processes."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

QUERIES = [
    "a beach",
    "football",
    "a construction site",
    "alcohol",
    "a car on a road",
    "a family at dinner",
    "a city at night",
    "a dog",
    "a smartphone",
    "a logo on a white background",
    "people dancing",
    "a supermarket",
    "snow in the mountains",
    "a kitchen",
    "a doctor",
    "a stadium crowd",
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(cmd: Sequence[str]) -> tuple[float, float, str, int]:
    """Run ``cmd`` as users do (a fresh process, compiled-bytecode caches allowed): (wall s, its
    peak RSS MB, stdout, exit status)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    p = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    out = p.stdout.read() if p.stdout else ""
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024.0, out, p.returncode


def _archive_cmd() -> list[str]:
    return [sys.executable, "-m", "archive.cli"]


def _wchar() -> int:
    """Bytes this process has passed to write() so far (Linux)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _threads() -> int:
    import torch  # lazy: heavy import (torch)

    return int(torch.get_num_threads())


@contextmanager
def _timed(module: Any, names: Sequence[str]) -> Iterator[dict[str, float]]:
    """While open, wrap ``module``'s functions ``names`` so that the seconds spent in each (summed
    over calls) are added up in the dict yielded; they are put back on leaving."""
    spent = {n: 0.0 for n in names}
    saved = {n: getattr(module, n) for n in names}

    def wrap(n: str, fn: Any) -> Any:
        def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[n] += time.perf_counter() - t0

        return timed

    for n, fn in saved.items():
        setattr(module, n, wrap(n, fn))
    try:
        yield spent
    finally:
        for n, fn in saved.items():
            setattr(module, n, fn)
