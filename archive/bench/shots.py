"""Shot-boundary evaluation on generated ad-like videos of real footage with exact truth.

    python -m archive.bench.shots [--videos 4] [--seconds 50] [--out DIR] [--flashes P] [--pans P] [--json]

Generates ``--videos`` held-out videos with :mod:`archive.bench.transitions` (seeds ``--seed``,
``--seed + 1``, ...; hard cuts, cross-dissolves, fades through black), runs each detector on them
and prints a markdown table per detector: precision, recall, F1, hits per transition kind, the
mean absolute error of matched boundaries and the detector's seconds. ``--flashes`` and
``--pans`` add photo flashes and whip pans inside shots (not transitions): the false positives
that fall in them get a column of their own.

Matching: a predicted boundary frame matches a true transition when it lies in
``[start_frame - 2, end_frame + 2]`` (a cut: within 2 frames of it). Pairs are taken greedily by
the distance to the transition's :meth:`TransitionTruth.boundary_frame`, each transition and each
prediction at most once; unmatched predictions are false positives. ``FP`` shows ``n (k in
window)``: k of the n fell inside a transition's window that another prediction had matched
(e.g. a fade reported both where the picture goes and where it comes back). Our detectors
report a fade through black once, where the picture comes back (:func:`boundaries`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from archive.bench import transitions
from indexer.media.decode import DecodeStats, sample_frames

TOLERANCE = 2  # frames either side of a transition
FADE_BLACK_MAX_S = 1.0  # a black shot up to this long between two pictures is a fade's middle
KINDS = ("cut", "dissolve", "fade")

Detector = Callable[[Path, float], list[int]]  # (video, frame rate) -> boundary frame indexes


class Unavailable(Exception):
    """A detector that cannot run here (not installed, feature not there yet)."""


def ours(mode: str) -> Detector:
    """Our decoder's shot detection (``indexer.media.decode.sample_frames``) in ``mode``."""

    def run(path: Path, rate: float) -> list[int]:

        kwargs: dict[str, str] = {}
        if "shots" in inspect.signature(sample_frames).parameters:
            kwargs["shots"] = mode
        elif mode != "fast":
            raise Unavailable("sample_frames() has no shots= keyword yet")
        stats = DecodeStats()
        try:
            for _ in sample_frames(path, 2.0, short_side=224, stats=stats, **kwargs):
                pass
        except TypeError as e:  # a signature inspect could not see (wrappers)
            raise Unavailable(f"sample_frames(shots={mode!r}): {e}") from e
        return boundaries(stats.shots, rate)

    return run


def boundaries(shots: list[Any], rate: float) -> list[int]:
    """The frames where our ``shots`` (:class:`indexer.media.shots.ShotSpan`) say a new picture begins.

    A fade through black is one transition: the dark frames between two pictures (flagged
    ``black`` shots, with any dim ``blank`` ones on the way, at most :data:`FADE_BLACK_MAX_S` in
    all, never matched) are its middle, and the boundary is where the next picture comes back, as
    in the truth (and as the ``shots`` table records it: that shot begins with ``transition =
    'fade'``). A longer black stretch, one at the video's end, or a blank one without black (a
    slate) is a shot of its own.
    """
    out: list[int] = []
    i = 1
    while i < len(shots):
        j = i  # shots[i:j] is a run of black or blank shots
        while j < len(shots) and shots[j].blank:
            j += 1
        middle = (
            j > i
            and j < len(shots)
            and any(s.kind == "black" for s in shots[i:j])
            and shots[j].start_s - shots[i].start_s <= FADE_BLACK_MAX_S
        )
        if middle:  # a fade's dark middle (dim flat frames on the way count blank): one boundary
            out.append(round(shots[j].start_s * rate))
            i = j + 1
        else:
            out.append(round(shots[i].start_s * rate))
            i += 1
    return out


def scenedetect_version() -> str | None:
    try:
        import scenedetect  # lazy: optional: the comparison detector of the shot benchmark
    except ImportError:
        return None
    return str(scenedetect.__version__)


def pyscenedetect(name: str) -> Detector:
    """PySceneDetect's ``AdaptiveDetector`` or ``ContentDetector`` with default parameters,
    OpenCV backend; the start frames of its scenes after the first."""

    def run(path: Path, rate: float) -> list[int]:
        try:
            import scenedetect  # lazy: optional: the comparison detector of the shot benchmark
        except ImportError as e:
            raise Unavailable("scenedetect is not installed (pip install scenedetect-headless)") from e
        logging.getLogger("pyscenedetect").setLevel(logging.ERROR)
        scenes = scenedetect.detect(str(path), getattr(scenedetect, name)(), backend="opencv")
        starts = [getattr(a, "frame_num", None) for a, _ in scenes[1:]]
        return [int(f) if f is not None else int(a.get_frames()) for f, (a, _) in zip(starts, scenes[1:])]

    return run


DETECTORS: dict[str, Detector] = {
    "ours-fast": ours("fast"),
    "ours-transnet": ours("transnet"),
    "pyscenedetect-adaptive": pyscenedetect("AdaptiveDetector"),
    "pyscenedetect-content": pyscenedetect("ContentDetector"),
}


@dataclass
class Score:
    """Totals of one detector over all videos."""

    tp: int = 0
    fp: int = 0
    fp_in_window: int = 0
    fp_hazard: dict[str, int] = field(default_factory=lambda: {"flash": 0, "pan": 0})  # FPs in a flash / whip pan
    hazards: dict[str, int] = field(default_factory=lambda: {"flash": 0, "pan": 0})
    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    errors: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in KINDS})
    seconds: float = 0.0
    unavailable: str | None = None

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        n = sum(self.total.values())
        return self.tp / n if n else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def mae(self, kind: str) -> float | None:
        e = self.errors[kind]
        return sum(e) / len(e) if e else None

    def as_dict(self) -> dict[str, Any]:
        if self.unavailable:
            return {"unavailable": self.unavailable}
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fp_in_window": self.fp_in_window,
            "fp_hazard": self.fp_hazard,
            "hazards": self.hazards,
            "hits": self.hits,
            "total": self.total,
            "mae_frames": {k: self.mae(k) for k in KINDS},
            "seconds": self.seconds,
        }


def score(truth: Any, predictions: list[int], into: Score) -> None:
    """Match ``predictions`` (frame indexes) against ``truth`` and add the result to ``into``."""
    trans = truth.transitions
    windows = [(t.start_frame - TOLERANCE, t.end_frame + TOLERANCE) for t in trans]
    pairs = sorted(
        (abs(p - truth.boundary_frame(t)), pi, ti)
        for pi, p in enumerate(predictions)
        for ti, t in enumerate(trans)
        if windows[ti][0] <= p <= windows[ti][1]
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    for dist, pi, ti in pairs:
        if pi in used_p or ti in used_t:
            continue
        used_p.add(pi)
        used_t.add(ti)
        into.hits[trans[ti].kind] += 1
        into.errors[trans[ti].kind].append(dist)
    for t in trans:
        into.total[t.kind] += 1
    into.tp += len(used_p)
    unmatched = [p for pi, p in enumerate(predictions) if pi not in used_p]
    into.fp += len(unmatched)
    into.fp_in_window += sum(any(lo <= p <= hi for lo, hi in windows) for p in unmatched)
    for kind, first, last in getattr(truth, "hazards", []):
        into.hazards[kind] += 1
        into.fp_hazard[kind] += sum(first - TOLERANCE <= p <= last + TOLERANCE for p in unmatched)


def evaluate(videos: list[Any], names: list[str]) -> dict[str, Score]:
    """Run each detector on each video and score it."""
    scores: dict[str, Score] = {}
    for name in names:
        sc = scores[name] = Score()
        for truth in videos:
            t0 = time.perf_counter()
            try:
                predicted = DETECTORS[name](truth.path, float(truth.rate))
            except Unavailable as e:
                sc.unavailable = str(e)
                break
            except Exception as e:  # a failing detector is a row, not a traceback
                sc.unavailable = f"failed: {type(e).__name__}: {e}"
                break
            sc.seconds += time.perf_counter() - t0
            score(truth, sorted(set(predicted)), sc)
    return scores


def table(scores: dict[str, Score]) -> str:
    """The markdown table of ``scores``."""
    hz = next((s.hazards for s in scores.values() if not s.unavailable), {})
    with_hz = any(hz.values())
    lines = [
        "| detector | precision | recall | F1 | cuts | dissolves | fades | FP (in window) "
        + (f"| FP in {hz['flash']} flashes / {hz['pan']} whip pans " if with_hz else "")
        + "| mean \\|err\\| frames (cut/dissolve/fade) | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | " + ("--- | " if with_hz else "") + "--- | --- |",
    ]
    for name, s in scores.items():
        if s.unavailable:
            lines.append(f"| {name} | unavailable: {s.unavailable} | | | | | | | " + ("| " if with_hz else "") + "| |")
            continue
        hits = " | ".join(f"{s.hits[k]}/{s.total[k]}" for k in KINDS)
        mae = "/".join("-" if s.mae(k) is None else f"{s.mae(k):.2f}" for k in KINDS)
        extra = f"| {s.fp_hazard['flash']} / {s.fp_hazard['pan']} " if with_hz else ""
        lines.append(
            f"| {name} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {hits} "
            f"| {s.fp} ({s.fp_in_window}) {extra}| {mae} | {s.seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m archive.bench.shots", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sources",
        type=Path,
        nargs="+",
        metavar="CLIP",
        help="real footage the videos are cut from (in a checkout: tests/data/Megamind.avi tests/data/tree.avi)",
    )
    ap.add_argument("--videos", type=int, default=4, help="generated videos (default 4)")
    ap.add_argument("--seconds", type=float, default=50.0, help="length of each video (default 50)")
    ap.add_argument("--seed", type=int, default=1000, help="seed of the first video (default 1000, held out)")
    ap.add_argument("--out", type=Path, help="keep the videos and their truth here (default: a temporary folder)")
    ap.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated, of: " + ", ".join(DETECTORS))
    ap.add_argument(
        "--flashes",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a shot of >= 0.8 s gets a photo flash (default 0)",
    )
    ap.add_argument(
        "--pans", type=float, default=0.0, metavar="P", help="probability that a shot is a whip pan (default 0)"
    )
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or args.videos < 1 or args.seconds <= 2:
        ap.error(f"unknown detector(s): {', '.join(unknown)}" if unknown else "need --videos >= 1 and --seconds > 2")

    if not args.sources:
        ap.error(
            "give the footage to cut the videos from: --sources CLIP [CLIP ...] "
            "(in a checkout: --sources tests/data/Megamind.avi tests/data/tree.avi)"
        )
    try:
        transitions.use_sources(*args.sources)
    except FileNotFoundError as exc:
        ap.error(str(exc))
    tr = transitions
    out = args.out or Path(tempfile.mkdtemp(prefix="shoteval-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        videos = []
        t0 = time.perf_counter()
        for i in range(args.videos):
            seed = args.seed + i
            truth = tr.make_transition_video(
                out / f"shoteval_{seed}.mp4", seconds=args.seconds, seed=seed, flashes=args.flashes, pans=args.pans
            )
            videos.append(truth)
            if args.out:
                (out / f"shoteval_{seed}.json").write_text(
                    json.dumps(
                        {
                            "rate": str(truth.rate),
                            "n_frames": truth.n_frames,
                            "shots": truth.shots,
                            "transitions": [dict(vars(t), boundary=truth.boundary_frame(t)) for t in truth.transitions],
                            "hazards": truth.hazards,
                        }
                    )
                )
        gen_s = time.perf_counter() - t0
        scores = evaluate(videos, names)
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)

    counts = {k: sum(v.counts()[k] for v in videos) for k in KINDS}
    version = scenedetect_version()
    if args.json:
        print(
            json.dumps(
                {
                    "videos": args.videos,
                    "seconds": args.seconds,
                    "seeds": [args.seed + i for i in range(args.videos)],
                    "truth": counts,
                    "flashes": args.flashes,
                    "pans": args.pans,
                    "scenedetect": version,
                    "tolerance_frames": TOLERANCE,
                    "detectors": {n: s.as_dict() for n, s in scores.items()},
                },
                indent=2,
            )
        )
        return 0
    print(
        f"{args.videos} video(s) x {args.seconds:g} s at {videos[0].rate} fps, seeds {args.seed}.."
        f"{args.seed + args.videos - 1}: {counts['cut']} cuts, {counts['dissolve']} dissolves, "
        f"{counts['fade']} fades (generated in {gen_s:.1f} s); match within {TOLERANCE} frames of a transition"
    )
    print(f"scenedetect: {version or 'not installed'}\n")
    print(table(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
