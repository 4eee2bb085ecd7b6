"""``archive bench``: parse the options into a :class:`~archive.bench.BenchOptions`, run, print JSON."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from indexer import settings

from .common import call


def bench(
    index_paths: Optional[List[Path]] = typer.Argument(
        None, help="With --index: the files/folders to index.", show_default=False
    ),
    index: bool = typer.Option(False, "--index", help="Time a real index run of PATHS (into a temporary store)."),
    naive: bool = typer.Option(False, "--naive", help="With --index: also time the naive per-frame loop."),
    bench_ocr: bool = typer.Option(
        False, "--ocr", help="With --index: index the files again with on-screen text read (--ocr) and compare."
    ),
    bench_speech: bool = typer.Option(
        False,
        "--speech",
        help="With --index: index the files again with what is said transcribed (--speech) and compare.",
    ),
    bench_sound: bool = typer.Option(
        False,
        "--sound",
        help="With --index: index the files without sound fingerprints, then with them, and compare; on a set of "
        "`python -m archive.bench.soundads` also score --sound answers against its truth.json.",
    ),
    sound_table: int = typer.Option(
        0, "--sound-table", help="Build a synthetic hash table of N ads' sound and time --sound queries on it."
    ),
    said: int = typer.Option(
        0, "--said", help="Build a synthetic store of N videos' transcripts and time --said phrase queries on it."
    ),
    frames: int = typer.Option(0, "--frames", help="Build a synthetic store of N frames and time queries on it."),
    queries: int = typer.Option(20, "--queries", help="Text queries to time with --frames (0: only build the store)."),
    shards: Optional[int] = typer.Option(
        None,
        "--shards",
        show_default=False,
        help="With --frames N: build K stores of N/K frames and time the queries over them as one (the fan-out).",
    ),
    model: str = typer.Option(settings.DEFAULT_MODEL, "--model", help="open_clip model."),
    pretrained: str = typer.Option("none", "--pretrained", help="Weights (timings do not depend on them)."),
    precision: str = typer.Option(
        settings.DEFAULT_PRECISION, "--precision", help="Image tower precision: auto, fp32 or bf16."
    ),
    fps: float = typer.Option(settings.DEFAULT_FPS, "--fps", help="Samples per second for --index."),
    shots: Optional[str] = typer.Option(
        None, "--shots", show_default=False, help="With --index: shot detector, auto, transnet or fast. [default: auto]"
    ),
    bench_ray_workers: Optional[int] = typer.Option(
        None,
        "--ray-workers",
        show_default=False,
        help="With --index: run the per-video work on N workers of a local Ray runtime (needs the ray extra: pip install 'clip-video-archive[ray]').",
    ),
    keep: Optional[Path] = typer.Option(
        None, "--keep", help="With --frames: build the store here and keep it.", show_default=False
    ),
    make_ads: Optional[Path] = typer.Option(
        None,
        "--make-ads",
        show_default=False,
        help="First write ad-like 720p H.264 clips (the --ads-from footage, cut into shots) into this folder.",
    ),
    ads_from: Optional[List[Path]] = typer.Option(
        None,
        "--ads-from",
        show_default=False,
        help="With --make-ads: a video file of real footage to cut the clips from (repeatable; in a checkout: "
        "tests/data/Megamind.avi, tests/data/tree.avi).",
    ),
    ads: int = typer.Option(6, "--ads", help="How many clips --make-ads writes."),
    ads_size: str = typer.Option("1280x720", "--ads-size", help="Frame size of the --make-ads clips, WxH."),
    ads_seconds: float = typer.Option(30.0, "--ads-seconds", help="Length of each --make-ads clip."),
    add: Optional[Path] = typer.Option(
        None,
        "--add",
        show_default=False,
        help="Time `archive index CLIP` into the kept store --store (fresh process), and one commit.",
    ),
    cold: Optional[str] = typer.Option(
        None,
        "--cold",
        show_default=False,
        help="Time `archive search TEXT` on --store as fresh processes.",
    ),
    run_eval: bool = typer.Option(
        False,
        "--eval",
        help="Time `archive eval TRUTH` on --store (fresh processes) with a generated truth file.",
    ),
    eval_videos: int = typer.Option(1000, "--eval-videos", help="With --eval: judged videos in the truth file."),
    eval_queries: int = typer.Option(20, "--eval-queries", help="With --eval: text queries in the truth file."),
    runs: int = typer.Option(3, "--runs", help="Fresh processes to time with --cold and --eval."),
    store: Optional[Path] = typer.Option(
        None,
        "--store",
        show_default=False,
        help="The kept store for --add, --cold and --eval (e.g. one --keep built).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per benchmark)."),
) -> None:
    """Measure indexing (frames/s, stage split, RSS), query latency (p50/p95) and `archive eval` on this machine."""
    from archive.bench import BenchOptions, run

    from .render import dumps, out

    opts = BenchOptions(
        index_paths=list(index_paths or []),
        index=index,
        naive=naive,
        ocr=bench_ocr,
        speech=bench_speech,
        sound=bench_sound,
        said=said,
        sound_table=sound_table,
        frames=frames,
        queries=queries,
        shards=shards,
        model=model,
        pretrained=pretrained,
        precision=precision,
        fps=fps,
        shots=shots,
        ray_workers=bench_ray_workers,
        keep=keep,
        make_ads=make_ads,
        ads_from=list(ads_from or []),
        ads=ads,
        ads_size=ads_size,
        ads_seconds=ads_seconds,
        add=add,
        cold=cold,
        eval=run_eval,
        eval_videos=eval_videos,
        eval_queries=eval_queries,
        runs=runs,
        store=store,
    )
    for r in call(lambda: run(opts)):
        if as_json:
            print(dumps(r))
        else:
            out.print_json(dumps(r))
