"""`python -m archive.bench.serve STORE`: a bounded load on `archive serve`, on loopback only.

The server runs as users run it (a fresh ``archive serve --port 0`` process on 127.0.0.1, with a
token); then the same text queries (:data:`archive.bench.common.QUERIES`, in turn) are sent by one
client, and by ``--clients`` clients at once, each request after the last one's answer. Reported
for each: requests a second, p50 and p95 latency, errors; and the server's peak resident memory
(its ``VmHWM``, Linux). Build a store to load with ``archive bench --frames 100000 --queries 0
--keep STORE``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .common import QUERIES, _archive_cmd


def _start(store: Path, token: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [*_archive_cmd(), "serve", "--port", "0", "--store", str(store)],
        env={**env, "ARCHIVE_TOKEN": token},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert p.stderr is not None
    deadline = time.time() + 300
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        m = re.search(r"at (http://\S+/)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr or []], daemon=True).start()  # keep it drained
            return p, m[1]
    p.kill()
    raise SystemExit("the server did not start")


def _peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _load(url: str, token: str, clients: int, requests: int) -> dict[str, Any]:
    """``requests`` searches spread over ``clients`` threads, each waiting for its answer."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                return
            q = urllib.parse.quote(QUERIES[k % len(QUERIES)])
            req = urllib.request.Request(f"{url}api/search?q={q}", headers={"Authorization": f"Bearer {token}"})
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=300) as r:
                    r.read()
                    ok = r.status == 200
            except (urllib.error.URLError, OSError) as exc:
                ok = False
                with lock:
                    errors.append(str(exc)[:120])
            dt = time.perf_counter() - t0
            with lock:
                if ok:
                    lat.append(dt)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000 if lat else np.zeros(1)
    return {
        "clients": clients,
        "requests": requests,
        "requests_per_s": round(len(lat) / wall, 2),
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p95_ms": round(float(np.percentile(a, 95)), 1),
        "errors": len(errors) + (requests - len(lat) - len(errors)),
        "error_examples": errors[:3],
    }


def bench_serve(
    store: Path, clients: int = 16, requests: int = 200, env: dict[str, str] | None = None
) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    p, url = _start(store, token, dict(env or os.environ))
    try:
        _load(url, token, 1, len(QUERIES))  # warm: every query once (the model, the frame table, the texts)
        one = _load(url, token, 1, max(len(QUERIES), requests // 4))
        many = _load(url, token, clients, requests)
        peak = _peak_mb(p.pid)
    finally:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    return {
        "store": str(store),
        "single": one,
        "concurrent": many,
        "throughput_ratio": round(many["requests_per_s"] / max(one["requests_per_s"], 1e-9), 2),
        "p95_over_single_p50": round(many["p95_ms"] / max(one["p50_ms"], 1e-9), 2),
        "server_peak_rss_mb": peak,
        "cores": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m archive.bench.serve", description=__doc__.split("\n")[0])
    ap.add_argument("store", type=Path, help="the store to serve (archive bench --frames 100000 --keep STORE)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    ap.add_argument("--requests", type=int, default=200, help="requests of the concurrent run (default 200)")
    args = ap.parse_args(argv)
    if not (args.store / "catalog.duckdb").is_file():
        print(
            f"error: no archive at {args.store}: build one with archive bench --frames 100000 --keep DIR",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(bench_serve(args.store, args.clients, args.requests), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
