"""The `archive` command: thin commands that parse, make one call into the API, and render.

Errors the user can fix end as one line on stderr and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from indexer import settings
from indexer.errors import ArchiveError

from . import bench, labels
from .common import DeviceOpt, StoreOpt, app, call, fail, open_archive


@app.command()
def index(
    paths: List[Path] = typer.Argument(
        ..., help="Video files and/or folders (walked recursively).", show_default=False
    ),
    fps: float = typer.Option(settings.DEFAULT_FPS, "--fps", help="Frames sampled per second of video time."),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        show_default=False,
        help="open_clip model. [default: $ARCHIVE_MODEL, else the store's, else ViT-B-32]",
    ),
    pretrained: Optional[str] = typer.Option(
        None,
        "--pretrained",
        show_default=False,
        help="Weights: an open_clip tag (laion2b_s34b_b79k, openai, ...), a checkpoint FILE, or 'none' for "
        "random weights (tests). [default: $ARCHIVE_PRETRAINED, else the store's, else laion2b_s34b_b79k]",
    ),
    batch_size: int = typer.Option(settings.DEFAULT_BATCH, "--batch-size", help="Frames per model call."),
    device: str = DeviceOpt,
    precision: str = typer.Option(
        settings.DEFAULT_PRECISION,
        "--precision",
        help="Image model precision: auto (bf16 where the hardware does it natively; $ARCHIVE_PRECISION), "
        "bf16 or fp32.",
    ),
    shots: Optional[str] = typer.Option(
        None,
        "--shots",
        show_default=False,
        help="Shot detector: auto (TransNetV2 where installed: dissolves and fades too), transnet, or fast "
        "(frame differences: cuts and fades only). Asked for explicitly, it re-indexes videos another detector "
        "made. [default: $ARCHIVE_SHOTS, else auto]",
    ),
    ray: Optional[str] = typer.Option(
        None,
        "--ray",
        show_default=False,
        metavar="[ADDRESS]",
        help="Run the per-video work on Ray (pip install 'clip-video-archive[ray]'): --ray alone starts a local "
        "runtime ($RAY_ADDRESS, if set, is joined instead); --ray auto or --ray HOST:PORT joins a running cluster. "
        "Files must be at the same path on every node. Commits stay in this process.",
    ),
    ray_workers: Optional[int] = typer.Option(
        None,
        "--ray-workers",
        show_default=False,
        help="Ray workers (each loads the model once). [default: as many as the cluster's CPUs (or GPUs) allow]",
    ),
    ray_cpus_per_worker: int = typer.Option(1, "--ray-cpus-per-worker", help="CPUs each Ray worker reserves."),
    ocr: bool = typer.Option(
        False,
        "--ocr",
        help="Also read the text on screen (PP-OCRv4: English and Chinese) into the `ocr` table, for "
        "`archive search --ocr`. The store remembers it: later runs read new videos' text too, and videos indexed "
        "before get theirs without being re-embedded. Costs up to about as much again as indexing. [env: ARCHIVE_OCR=1]",
    ),
    speech: bool = typer.Option(
        False,
        "--speech",
        help="Also transcribe what is said (Whisper, offline: base from its wheels) into the `speech` and "
        "`speech_words` tables, for `archive search --said`. The store remembers it: later runs transcribe new "
        "videos too, and videos indexed before get theirs from their sound alone (nothing decoded again or "
        "re-embedded). Runs beside the picture work. [env: ARCHIVE_SPEECH=1]",
    ),
    sound: Optional[bool] = typer.Option(
        None,
        "--sound/--no-sound",
        show_default=False,
        help="Fingerprint each video's sound (landmark hashes, about 1 KB per second of sound) for `archive search "
        "--sound`; videos indexed before get theirs from their sound alone. [default: on; env: ARCHIVE_SOUND=0/1]",
    ),
    min_shared: Optional[float] = typer.Option(
        None,
        "--min-shared",
        help="Seconds of shared footage that make two videos versions of one film (`archive versions`); the store "
        "keeps it. [default: 2]",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run's report as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Index video files and folders. Unchanged files are skipped; each video commits whole; new
    videos are then compared with the archive for shared footage (`archive versions`)."""
    from indexer.run.options import IndexOptions, RayOptions

    from .progress import IndexProgress
    from .render import err
    from .render_store import print_report

    ray_opts = None
    if ray is not None or ray_workers is not None:
        ray_opts = RayOptions(ray or "local", ray_workers, ray_cpus_per_worker)
    call(IndexOptions(fps=fps, batch_size=batch_size, shots=shots, ray=ray_opts).checked)  # one line, before any work
    weights = pretrained or settings.env_pretrained()
    if weights is not None and weights.strip().lower() in {"none", "random"}:
        err.print(
            "[yellow]warning:[/] --pretrained none: random weights. They tell shots apart (query by image works) "
            "but do not understand text; use them for tests and demos only.",
            highlight=False,
        )
    arc = open_archive(store, device)

    def run() -> Any:
        with IndexProgress(enabled=not quiet and not as_json) as bar:
            return arc.index(
                paths,
                fps=fps,
                model=model,
                pretrained=pretrained,
                batch_size=batch_size,
                progress=bar,
                precision=precision,
                shots=shots,
                ray=ray_opts,
                ocr=ocr or None,
                speech=speech or None,
                sound=sound,
                min_shared=min_shared,
            )

    report = call(run)
    print_report(report, as_json)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def search(
    texts: Optional[List[str]] = typer.Argument(
        None, help="Text queries; each argument is one query (quote multi-word ones).", show_default=False
    ),
    image: Optional[List[Path]] = typer.Option(
        None,
        "--image",
        help="Example image: find where this shot, logo or product appears. Repeatable.",
        show_default=False,
    ),
    ocr: Optional[List[str]] = typer.Option(
        None,
        "--ocr",
        metavar="WORDS",
        help="Words written on screen (a store indexed with --ocr): case, accents, punctuation and spaces do not "
        "count, small OCR errors are tolerated. Repeatable.",
        show_default=False,
    ),
    said: Optional[List[str]] = typer.Option(
        None,
        "--said",
        metavar="PHRASE",
        help="Words spoken (a store indexed with --speech), matched word by word in the order said: case, accents "
        "and punctuation do not count, a misheard letter in a longer word is tolerated, a missing word is not. "
        "Repeatable.",
        show_default=False,
    ),
    sound: Optional[List[Path]] = typer.Option(
        None,
        "--sound",
        metavar="FILE",
        help="Example sound: where does this jingle, sound logo or voice-over play? A sound file (wav, mp3, m4a, "
        "flac) or a video file's sound, at least 1 s. Found by landmark fingerprints, under other sound too. "
        "Repeatable.",
        show_default=False,
    ),
    sound_from: Optional[str] = typer.Option(
        None,
        "--sound-from",
        metavar="VIDEO",
        help="Example sound from an indexed video (its path or name), the stretch given by --at: where else "
        "does it play? Nothing is decoded: its fingerprints come from the catalog.",
        show_default=False,
    ),
    at: Optional[str] = typer.Option(
        None,
        "--at",
        metavar="START-END",
        help="The stretch of --sound-from, in seconds (e.g. 3.0-8.0).",
        show_default=False,
    ),
    video: Optional[List[str]] = typer.Option(
        None, "--video", help="Only these indexed files, folders or file names. Repeatable.", show_default=False
    ),
    like_video: Optional[Path] = typer.Option(
        None,
        "--like-video",
        metavar="FILE",
        help="Query by video: which indexed videos contain this file's footage, and where (versions, re-edits). An "
        "indexed file's stored vectors are used; another is decoded once, and the store is not changed.",
        show_default=False,
    ),
    top: int = typer.Option(settings.DEFAULT_TOP, "--top", help="Videos per query, best first."),
    threshold: Optional[float] = typer.Option(
        None,
        "--threshold",
        show_default=False,
        help="A plain cosine cut instead of the presence rule (see the docs: How present is decided). [default: the rule]",
    ),
    false_videos: Optional[float] = typer.Option(
        None,
        "--false-videos",
        show_default=False,
        help="Example images: allow at most this many videos per query, across the whole archive, where an example "
        "whose footage is not in it is reported present (e.g. 0.01). [default: 1 video in 1,000, whatever the size]",
    ),
    merge_gap: float = typer.Option(0.0, "--merge-gap", help="Join segments at most this many seconds apart."),
    template: Optional[List[str]] = typer.Option(
        None,
        "--template",
        show_default=False,
        help="Prompt template for text queries, with {} for the text; repeatable. [default: a built-in ensemble]",
    ),
    min_duration: float = typer.Option(0.0, "--min-duration", help="Drop segments shorter than this (seconds)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per query: {query, results}."),
    device: str = DeviceOpt,
    store: Optional[List[Path]] = typer.Option(
        None,
        "--store",
        show_default=False,
        help="Store folder; repeat it to answer over several stores as one ranked list (each result names its "
        "store; they must share a model). [default: $ARCHIVE_STORE (A:B for several), else ./data]",
    ),
) -> None:
    """Search the archive by text, example image, written or spoken words, or example video: per video, present /
    first seen / time on screen (or said)."""
    from .render import print_search

    stores = settings.store_dirs(store or None)
    stretch: list[tuple[str, float, float]] = []
    if (sound_from is None) != (at is None):
        fail("--sound-from VIDEO and --at START-END go together (the stretch of an indexed video to listen for).", 2)
    if sound_from is not None and at is not None:
        from search.sound import parse_at

        stretch = [(sound_from, *call(lambda: parse_at(at)))]
    if len(stores) > 1:
        if sound or stretch:
            fail("--sound and --sound-from work on one store at a time.", 2)
        if template:
            fail("--template works on one store at a time.", 2)
        if like_video is not None:
            fail("--like-video works on one store at a time.", 2)
        from archive.api import search_stores

        results = call(
            lambda: search_stores(
                stores,
                *(texts or []),
                image=image or None,
                videos=video or None,
                top=top,
                threshold=threshold,
                merge_gap_s=merge_gap,
                min_duration_s=min_duration,
                device=device,
                ocr=ocr or (),
                said=said or (),
                false_videos=false_videos,
            )
        )
        if texts or image:
            _warn_if_random(open_archive(stores[0], device))
        print_search(results, as_json)
        return
    arc = open_archive(stores[0], device)
    results = []
    if like_video is not None:
        results.append(call(lambda: arc.like_video(like_video, videos=video or None, top=top)))
    if texts or image or ocr or said or sound or stretch or like_video is None:
        results += call(
            lambda: arc.search(
                *(texts or []),
                image=image or None,
                videos=video or None,
                top=top,
                threshold=threshold,
                merge_gap_s=merge_gap,
                min_duration_s=min_duration,
                templates=template or None,
                ocr=ocr or (),
                said=said or (),
                sound=sound or (),
                sound_from=stretch,
                false_videos=false_videos,
            )
        )
    if texts or image:
        _warn_if_random(arc)
    print_search(results, as_json)


def _warn_if_random(arc: Any) -> None:
    from indexer.store import Reader

    from .render import err

    try:
        pretrained = Reader(arc.store).meta().get("pretrained")
    except ArchiveError:
        return  # the search itself will say what is wrong
    if pretrained == "none":
        err.print(
            "[yellow]warning:[/] this store was built with random weights (--pretrained none): text scores mean "
            "nothing; only query by image is meaningful.",
            highlight=False,
        )


app.add_typer(labels.label_app, name="label")
app.command("eval")(labels.evaluate)
app.command()(labels.classify)


@app.command()
def versions(
    videos: Optional[List[str]] = typer.Argument(
        None,
        help="Indexed files, folders or names: show their group and the footage they share. [default: list groups]",
        show_default=False,
    ),
    min_shared: Optional[float] = typer.Option(
        None,
        "--min-shared",
        help="Regroup by this many seconds of shared footage (the store keeps it). [default: 2]",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: groups, members, shared segments."),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Versions of the same film: which videos share footage, where in each, and which is longest."""
    from .render import print_versions

    arc = open_archive(store)
    print_versions(call(lambda: arc.versions(videos or None, min_shared)), as_json)


@app.command()
def sql(
    query: str = typer.Argument(
        ..., help='One read-only SQL statement, e.g. "SELECT * FROM videos".', show_default=False
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of row objects."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV with a header row."),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Run read-only SQL on the catalog (videos, frames, shots, segments, video_labels, labels, ocr, speech, speech_words, matches, versions, failures, meta, vector_segments)."""
    from .render import print_sql

    if as_json and as_csv:
        fail("choose one of --json and --csv.", 2)
    arc = open_archive(store)
    res = call(lambda: arc.sql(query))
    print_sql(res, "json" if as_json else "csv" if as_csv else "table")


@app.command()
def info(
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: videos, frames, seconds, model, pretrained, dim, bytes."
    ),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Show what the archive holds: videos, frames, seconds, model, size on disk."""
    from .render_store import print_info

    arc = open_archive(store)
    print_info(call(arc.info), as_json)


app.command()(bench.bench)


@app.command()
def check(
    repair: bool = typer.Option(
        False,
        "--repair",
        help="First delete leftover segment files, move damaged ones aside and drop videos "
        "whose vectors are lost (index their folders again to re-embed them).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Verify that the catalog and the vector segments agree; explain any mismatch and its fix."""
    from .render_store import print_check

    rep = call(lambda: open_archive(store).check(repair=repair))
    print_check(rep, as_json)
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
def optimize(
    ivf: bool = typer.Option(
        False,
        "--ivf",
        help="Have queries in archives of ARCHIVE_IVF_FRAMES frames or more "
        "rank candidates through an IVF index (FAISS IVF,PQ; see the docs, Scaling out): the one "
        "an index run trained for matching versions when it fits the archive, else a new one.",
    ),
    retrain: bool = typer.Option(
        False, "--retrain", help="With --ivf: train a new IVF index even when the existing one fits."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Merge the vector segments into few large fp16 ones, drop the vectors of replaced or removed videos,
    and (--ivf) let queries of a large archive use its IVF index."""
    from .render_store import print_optimize

    arch = open_archive(store)
    print_optimize(call(lambda: arch.optimize(ivf=ivf, retrain=retrain)), as_json)


@app.command()
def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
    as_json: bool = typer.Option(False, "--json", help="Print the removed paths as JSON."),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Remove indexed videos whose files no longer exist."""
    from .render import dumps, err, esc

    gone = call(lambda: open_archive(store).prune(dry_run))
    if as_json:
        print(dumps({"removed": [] if dry_run else gone, "would_remove": gone if dry_run else []}))
        return
    for p in gone:
        err.print(f"{'would remove' if dry_run else 'removed'} {esc(p)}", highlight=False)
    err.print(f"{len(gone)} video(s) {'would be ' if dry_run else ''}removed.", highlight=False)


@app.command()
def serve(
    host: str = typer.Option(settings.DEFAULT_HOST, "--host", help="Address to listen on (0.0.0.0: every network)."),
    port: int = typer.Option(settings.DEFAULT_PORT, "--port", help="Port to listen on (0: any free port)."),
    device: str = DeviceOpt,
    store: Optional[List[Path]] = typer.Option(
        None,
        "--store",
        show_default=False,
        help="Store folder; repeat it to serve several stores as one archive (searches are merged; they must "
        "share a model). [default: $ARCHIVE_STORE (A:B for several), else ./data]",
    ),
    token: Optional[str] = typer.Option(
        None,
        "--token",
        show_default=False,
        help="Require this token on every route (the page asks for it once; scripts send 'Authorization: Bearer "
        "TOKEN'). Visible in the process list: prefer --token-file or $ARCHIVE_TOKEN.",
    ),
    token_file: Optional[Path] = typer.Option(
        None, "--token-file", show_default=False, help="Read the token from the first line of this file."
    ),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Listen beyond this machine without a token: anyone who can reach it can search."
    ),
) -> None:
    """Serve a search page with thumbnails, timelines and playback, and its JSON API (/docs)."""
    from .render import err

    call(lambda: settings.check_port(port))
    need = call(lambda: settings.serve_token(token, token_file, host, no_auth))
    stores = settings.store_dirs(store or None)
    store_dir = stores[0] if len(stores) == 1 else stores
    shown = os.pathsep.join(str(x) for x in stores)
    if host not in settings.LOOPBACK and need is None:
        err.print(
            f"[yellow]warning:[/] listening on {host} with --no-auth: anyone who can reach this machine can "
            "search the archive and play its videos.",
            highlight=False,
            soft_wrap=True,
        )
    err.print(f"loading the model and {shown} ...", highlight=False)

    def ready(url: str) -> None:
        gate = "; a token is required" if need else ""
        err.print(
            f"serving {shown} at [bold]{url}[/]  (API: {url}docs{gate}; Ctrl-C to stop)",
            highlight=False,
            soft_wrap=True,
        )

    from archive.server.app import serve as run

    try:
        call(lambda: run(store_dir, host, port, device, ready=ready, token=need))
    except KeyboardInterrupt:  # pragma: no cover - uvicorn handles Ctrl-C itself
        pass


_RAY_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.\-\[\]:]+:\d+)$")


def _ray_flag(argv: List[str]) -> List[str]:
    """``--ray`` takes an optional address: alone (or before a path or another option) it means a
    local runtime, so ``--ray`` gets ``local`` unless an address (``auto``, ``HOST:PORT``,
    ``ray://...``) follows it."""
    out = []
    for i, a in enumerate(argv):
        out.append(a)
        if a == "--ray" and (i + 1 >= len(argv) or not _RAY_ADDRESS.match(argv[i + 1])):
            out.append("local")
    return out


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings.FREEZE_AFTER_LOAD = True  # one command a process: nothing loaded with a model is garbage later
    sys.argv[1:] = _ray_flag(sys.argv[1:])
    try:
        app()
    except BrokenPipeError:  # `archive sql ... | head`
        sys.stderr.close()
        sys.exit(0)
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            _exit(exc.code or 0)
        raise
    _exit(0)


def _exit(code: int) -> None:
    """Leave at once once torch is loaded: the command is done, its stores are closed and its
    output is flushed here, and torch's own teardown costs 0.5-0.9 s of every run on 2 cores."""
    if "torch" not in sys.modules:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a closed pipe: nothing left to say
        pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
