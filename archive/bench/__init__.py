"""`archive bench`: measured numbers for indexing and queries on this machine, as JSON.

    archive bench --make-ads DIR --ads-from CLIP  ad-like 720p clips cut from real footage
    archive bench --index PATH... [--naive]      a real index run into a temporary store
    archive bench --frames N --queries Q         a synthetic store of N frames, Q real text queries
    archive bench --said N                       a synthetic store of N transcripts, --said queries
    archive bench --sound-table N                a synthetic hash table of N ads' sound, --sound queries
    archive bench --add CLIP --store DIR         `archive index CLIP` into a kept store, and one commit
    archive bench --cold TEXT --store DIR        `archive search TEXT` as fresh processes
    archive bench --eval --store DIR             `archive eval TRUTH` (N videos x Q queries) as fresh processes

One module per benchmark (:mod:`.ads`, :mod:`.indexing`, :mod:`.synthetic`, :mod:`.queries`,
:mod:`.processes`, :mod:`.evaluation`; the shot-boundary evaluation is ``python -m
archive.bench.shots``). :func:`run` checks a :class:`BenchOptions` and runs the benchmarks it asks
for. Numbers are for the machine they run on: the docs' performance pages say which machine gave the
published ones, when, and the command that reproduces them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from indexer import settings
from indexer.errors import UsageError

from .ads import make_ads
from .evaluation import bench_eval
from .indexing import bench_index
from .processes import bench_add, bench_cold
from .queries import bench_query_mode, bench_shards
from .said import bench_said
from .sound import bench_sound


@dataclass
class BenchOptions:
    """What ``archive bench`` measures; each field is the CLI option of the same name."""

    index_paths: list[Path] = field(default_factory=list)  # with index
    index: bool = False
    naive: bool = False
    ocr: bool = False
    speech: bool = False
    sound: bool = False
    said: int = 0
    sound_table: int = 0
    frames: int = 0
    queries: int = 20
    shards: int | None = None
    model: str = settings.DEFAULT_MODEL
    pretrained: str = "none"
    precision: str = settings.DEFAULT_PRECISION
    fps: float = settings.DEFAULT_FPS
    shots: str | None = None
    ray_workers: int | None = None
    keep: Path | None = None
    make_ads: Path | None = None
    ads_from: list[Path] = field(default_factory=list)
    ads: int = 6
    ads_size: str = "1280x720"
    ads_seconds: float = 30.0
    add: Path | None = None
    cold: str | None = None
    eval: bool = False
    eval_videos: int = 1000
    eval_queries: int = 20
    runs: int = 3
    store: Path | None = None


def check(o: BenchOptions) -> list[Callable[[], dict[str, Any]]]:
    """The benchmarks ``o`` asks for, in the order they run, each ready to call.

    Raises:
        UsageError: a combination that measures nothing or cannot run (one line saying what to give).
    """
    if o.index and not o.index_paths:
        raise UsageError("--index needs the files or folders to index: archive bench --index PATH...")
    if o.index_paths and not o.index:
        raise UsageError("paths are for --index: archive bench --index PATH...")
    if (
        not o.index
        and o.frames <= 0
        and o.make_ads is None
        and o.add is None
        and o.cold is None
        and not o.eval
        and o.said <= 0
        and o.sound_table <= 0
    ):
        raise UsageError(
            "give --index PATH... and/or --frames N (or --said N, --sound-table N, --make-ads DIR, --add CLIP, "
            "--cold TEXT, --eval)."
        )
    if o.sound and not o.index:
        raise UsageError("--sound compares index runs: give --index PATH... (for query times: --sound-table N).")
    if (o.add is not None or o.cold is not None or o.eval) and o.store is None:
        raise UsageError(
            "--add, --cold and --eval measure a kept store: give it with --store DIR "
            "(build one with archive bench --frames 100000 --queries 0 --keep DIR)."
        )
    if o.eval and (o.eval_videos < 1 or o.eval_queries < 1 or o.runs < 1):
        raise UsageError("--eval-videos, --eval-queries and --runs must be at least 1.")
    todo: list[Callable[[], dict[str, Any]]] = []
    if o.make_ads is not None:
        m = re.fullmatch(r"(\d+)x(\d+)", o.ads_size.strip())
        if not m or int(m[1]) < 64 or int(m[2]) < 64 or int(m[1]) % 2 or int(m[2]) % 2:
            raise UsageError(f"--ads-size {o.ads_size}: give an even WIDTHxHEIGHT of at least 64x64, e.g. 1280x720.")
        size = (int(m[1]), int(m[2]))
        if o.ads < 1 or not 0 < o.ads_seconds <= 3600:
            raise UsageError("--ads must be at least 1 and --ads-seconds between 0 and 3600.")
        dest, sources = str(o.make_ads), [str(p) for p in o.ads_from]

        def ads() -> dict[str, Any]:
            return {"mode": "make-ads", **make_ads(dest, sources, o.ads, seconds=o.ads_seconds, size=size)}

        todo.append(ads)
    if o.index:
        if o.ray_workers is not None and o.ray_workers < 1:
            raise UsageError(f"--ray-workers {o.ray_workers}: give at least 1.")
        if o.ocr and o.ray_workers is not None:
            raise UsageError("--ocr compares in-process runs: leave out --ray-workers.")
        if o.speech and o.ray_workers is not None:
            raise UsageError("--speech compares in-process runs: leave out --ray-workers.")
        if o.sound and o.ray_workers is not None:
            raise UsageError("--sound compares in-process runs: leave out --ray-workers.")

        def index() -> dict[str, Any]:
            return bench_index(
                [str(p) for p in o.index_paths],
                o.model,
                o.pretrained,
                o.fps,
                precision=o.precision,
                naive=o.naive,
                shots=o.shots,
                ray_workers=o.ray_workers,
                ocr=o.ocr,
                speech=o.speech,
                sound=o.sound,
            )

        todo.append(index)
    if o.shards is not None and (o.shards < 2 or o.frames < 2 * o.shards or o.queries < 2 or o.keep is not None):
        raise UsageError("--shards K needs K >= 2, --frames N of at least 2K, --queries of at least 2, and no --keep.")
    if o.frames > 0:

        def queries() -> dict[str, Any]:
            if o.shards is not None:
                return bench_shards(o.frames, o.shards, o.queries, o.model, o.pretrained)
            return bench_query_mode(o.frames, o.queries, o.model, o.pretrained, str(o.keep) if o.keep else None)

        todo.append(queries)
    if o.said > 0:

        def said() -> dict[str, Any]:
            return bench_said(o.said)

        todo.append(said)
    if o.sound_table > 0:

        def sound_table() -> dict[str, Any]:
            return bench_sound(o.sound_table, keep=str(o.keep) if o.keep and o.frames <= 0 else None)

        todo.append(sound_table)
    if o.add is not None:

        def add() -> dict[str, Any]:
            return bench_add(str(o.store), str(o.add))

        todo.append(add)
    if o.cold is not None:
        text = o.cold

        def cold() -> dict[str, Any]:
            return bench_cold(str(o.store), text, max(1, o.runs))

        todo.append(cold)
    if o.eval:

        def evaluation() -> dict[str, Any]:
            return bench_eval(str(o.store), o.eval_videos, o.eval_queries, o.runs)

        todo.append(evaluation)
    return todo


def run(o: BenchOptions) -> list[dict[str, Any]]:
    """Run every benchmark ``o`` asks for (see the module's table); one JSON-ready dict each.

    Raises:
        UsageError: see :func:`check`; nothing runs then.
    """
    return [bench() for bench in check(o)]
