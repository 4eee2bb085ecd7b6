"""`python -m archive.bench.presence DIR`: the image rule's error rate at archive sizes of 20, 200
and 2,000 videos: examples not in the archive against stills of its own footage.

Real footage, made many: every *look* is a stretch of the source clips (the repository's test
clips, or the user's: ``--from``) with a crop window, a flip and a colour gain of its own
(:class:`archive.bench.transitions._Shot`) under a colour cast (hue, strength, brightness). Ads
come in campaigns of 1-4 versions (cut-downs) that share the campaign's own looks in different
orders and lengths, plus stock looks that recur across campaigns (a few very often: packshots,
logo cards, stock footage). *Unseen* looks are made the same way and are in no archive.

Each sampled frame (2 per second) goes through a JPEG round trip (quality 40, as a broadcast
re-encode blurs it) before it is embedded with the archive's model, and the archives are written
through the real store code, their versions compared and their levels measured as an index run
does. Nothing is decoded at question time; the queries are real ``Searcher`` queries by example,
with PNG stills taken between two samples of a shot.

For every size, the numbers side by side:

* found: (still, video) pairs where the still's look is on screen and the video is reported
  present, with the first moment seen exact (the look's first shot start in that video);
* false: (unseen example, video) pairs reported present (target: at most 1 in 1,000), and stills
  of the archive's own looks reported present in videos that do not show them;
* the levels: same footage, the per-video chance level of the median video, whether they
  overlap, and the false videos per query the rule expects at that size.

The random weights of the tests see mostly a picture's colours, so looks tell apart by their
casts: with thousands of looks their colours crowd, which is what an archive of one look is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from archive.bench import transitions
from archive.bench.transitions import _Shot, source_segments
from indexer.model import background
from indexer.model.background import background_vectors
from indexer.model.encoder import Encoder
from indexer.store import FrameRecord, Reader, ShotRecord, VideoRecord, Writer
from indexer.store.records import ModelSpec
from search import levels
from search import versions as versions_mod
from search.query import Searcher

SAMPLE_FPS = 2.0
SIZE = (320, 180)
BASE_RATE = 25


@dataclass
class Look:
    """A stretch of real footage with a crop, flip, gain and colour cast of its own, ``samples``
    frames long at 2 samples a second."""

    key: str
    shot: Any  # transitions._Shot
    tint: np.ndarray
    cast: float
    value: float
    samples: int

    def frame(self, k: int) -> np.ndarray:
        """The look's frame at ``k`` source frames from its start (uint8 RGB)."""
        img = (1.0 - self.cast) * self.shot.frame(k) + self.cast * self.tint
        return np.clip(img * self.value + 0.5, 0, 255).astype(np.uint8)

    def sample_frame(self, j: int) -> np.ndarray:
        return self.frame(int(round(j * BASE_RATE / SAMPLE_FPS)))

    def still(self) -> np.ndarray:
        """A frame between the look's two middle samples (no sample is that frame), as the
        archived video shows it (the same JPEG round trip as the samples)."""
        j = max(0, self.samples // 2 - 1)
        return _jpeg(self.frame(int(round((j + 0.5) * BASE_RATE / SAMPLE_FPS))))


GRID_STEPS = 5  # casts: the colours of a 5 x 5 x 5 grid of the RGB cube, one per look
CAST = 0.7  # how much of each pixel is the look's colour


def make_looks(rng: np.random.Generator) -> list[Look]:
    """One look per colour of the grid (125), in a seeded random order: each a stretch of the
    source footage with a crop, flip and gain of its own under a strong cast of its colour.
    Random weights see mostly colours: casts a grid step apart tell apart, finer ones do not."""

    segs = [s for sid in range(len(transitions.SOURCES)) for s in source_segments(sid)]
    steps = np.linspace(0.0, 255.0, GRID_STEPS, dtype=np.float32)
    colours = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    out = []
    for i, c in enumerate(colours[rng.permutation(len(colours))]):
        samples = int(rng.integers(2, 7))  # 1-3 s
        need = int(samples * BASE_RATE / SAMPLE_FPS) + 1
        shot = _Shot(segs[int(rng.integers(len(segs)))], need, SIZE, rng)
        out.append(Look(f"look{i}", shot, c, CAST, 1.0, samples))
    return out


def _jpeg(img: np.ndarray, quality: int = 40) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]


@dataclass
class Plan:
    """What each video shows: ``(look index, samples shown)`` per shot, in order."""

    videos: list[list[tuple[int, int]]]
    n_looks: int


def plan_archive(videos: int, looks: int, rng: np.random.Generator) -> Plan:
    """``videos`` ads in campaigns of 1-4 versions (cut-downs): a campaign shows 3-6 of the
    archive's ``looks``, each version all of them in its own order and its own lengths. Looks are
    drawn with a popularity that falls as ``1 / (rank + 3)``: every look recurs, the first few in
    a large share of the ads (packshots, logo cards, stock footage)."""
    out: list[list[tuple[int, int]]] = []
    pop = 1.0 / (np.arange(looks) + 3.0)
    pop /= pop.sum()
    while len(out) < videos:
        versions = min(int(rng.integers(1, 5)), videos - len(out))
        own = rng.choice(looks, int(rng.integers(3, 7)), replace=False, p=pop)
        for _ in range(versions):
            out.append([(int(k), -1) for k in rng.permutation(own)])
    return Plan(out, looks)


def build_store(
    store: Path,
    plan: Plan,
    look_vectors: list[np.ndarray],
    enc: Any,
    rng: np.random.Generator,
    versions: bool = True,
) -> dict[str, Any]:
    """Write the archive of ``plan`` (each shot shows 2 samples or more of its look, from its
    start: a cut-down trims the end) through the real store code; compare its versions and keep
    its levels as an index run does. Returns where each look is on screen and timings."""

    bg, key = background_vectors(enc)
    where: dict[int, dict[int, float]] = {}  # look -> video index -> first start
    t0 = time.perf_counter()
    records = []
    for v, shots in enumerate(plan.videos):
        frames, vecs, shot_recs = [], [], []
        t = 0.0
        for look, _ in shots:
            lv = look_vectors[look]
            n = int(rng.integers(2, len(lv) + 1)) if len(lv) > 2 else len(lv)
            where.setdefault(look, {}).setdefault(v, t)
            shot_recs.append(ShotRecord(t, t + n / SAMPLE_FPS, transition="cut" if t else "start"))
            for j in range(n):
                ts = t + j / SAMPLE_FPS
                frames.append(FrameRecord(ts, ts + 1 / SAMPLE_FPS, len(shot_recs) - 1))
            vecs.append(lv[:n])
            t += n / SAMPLE_FPS
        vec = np.concatenate(vecs).astype(np.float32)
        records.append(
            VideoRecord(
                path=f"/bench/presence/ad{v:05d}.mp4",
                size_bytes=1_000_000,
                mtime=0.0,
                fingerprint=f"presence{v:027d}",
                duration_s=t,
                fps=float(BASE_RATE),
                width=SIZE[0],
                height=SIZE[1],
                codec="h264",
                sample_fps=SAMPLE_FPS,
                decoded_frames=int(t * BASE_RATE),
                frames=frames,
                vectors=vec,
                shots=shot_recs,
                bg_lse=background.background_lse(vec @ bg.T),
                bg_key=key,
                shot_detector="fast",
            )
        )
    with Writer(store) as w:
        w.attach(ModelSpec(enc.spec.name, enc.spec.pretrained), enc.dim)
        for a in range(0, len(records), 1000):
            w.commit(records[a : a + 1000])
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows = []
    if versions:
        reader = Reader(store)
        todo = reader.unmatched_videos()
        basis, new, found = versions_mod.compare(reader, todo)
        rows = [
            (m.video_a, m.video_b, m.a_start_s, m.a_end_s, m.b_start_s, m.b_end_s, m.score, m.samples) for m in found
        ]
        with Writer(store) as w:
            if new:
                w.footage.save_basis(basis.mean, basis.transform, basis.level, basis.candidate_level, basis.vectors)
            w.footage.replace(todo, rows)
    versions_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    with Writer(store) as w:
        levels.refresh(store, w)
    return {
        "where": where,
        "build_s": round(build_s, 1),
        "versions_s": round(versions_s, 1),
        "matches": len(rows) if versions else None,
        "levels_s": round(time.perf_counter() - t2, 1),
        "frames": sum(len(r.frames) for r in records),
    }


def run(
    out: Path,
    sizes: Sequence[int] = (20, 200, 2000),
    unseen: int = 50,
    stills: int = 50,
    model: str = "ViT-S-32-alt",
    pretrained: str = "none",
    seed: int = 0,
    false_videos: float | None = None,
    versions_up_to: int = 500,
) -> dict[str, Any]:

    enc = Encoder.load(model, pretrained, "cpu")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    every = make_looks(rng)
    if not 1 <= unseen < len(every) - 10:
        raise SystemExit(f"--unseen {unseen}: give 1 to {len(every) - 11} (the grid has {len(every)} looks)")
    looks, ghosts = every[: len(every) - unseen], every[len(every) - unseen :]
    n_looks = len(looks)
    plans = {n: plan_archive(n, n_looks, np.random.default_rng(seed + n)) for n in sizes}
    look_vectors = []
    for a in range(0, len(looks), 64):
        batch = looks[a : a + 64]
        frames = [_jpeg(lk.sample_frame(j)) for lk in batch for j in range(lk.samples)]
        vec = enc.encode_images(frames).astype(np.float16).astype(np.float32)  # as stored
        k = 0
        for lk in batch:
            look_vectors.append(vec[k : k + lk.samples])
            k += lk.samples
    embed_s = time.perf_counter() - t0
    still_dir = out / "stills"
    still_dir.mkdir(parents=True, exist_ok=True)
    for g in ghosts:
        cv2.imwrite(str(still_dir / f"unseen-{g.key}.png"), g.still()[:, :, ::-1])
    report: dict[str, Any] = {
        "model": f"{model} ({pretrained})",
        "looks": n_looks,
        "unseen": unseen,
        "embed_s": round(embed_s, 1),
        "sizes": [],
    }
    for n in sizes:
        plan = plans[n]
        store = out / f"store{n}"
        if store.exists():
            shutil.rmtree(store)
        built = build_store(
            store, plan, look_vectors, enc, np.random.default_rng(seed + 7 * n), versions=n <= versions_up_to
        )
        where = built.pop("where")
        used = sorted(where)
        srng = np.random.default_rng(seed + 3 * n)
        # stills: the most recurring looks first, then a random draw of the rest
        by_count = sorted(used, key=lambda k: -len(where[k]))
        pick = by_count[: stills // 5] + [
            int(x) for x in srng.permutation(by_count[stills // 5 :])[: stills - stills // 5]
        ]
        for k in pick:
            cv2.imwrite(str(still_dir / f"look{k}.png"), looks[k].still()[:, :, ::-1])
        s = Searcher(store, encoder=enc)
        t1 = time.perf_counter()
        res = s.search(
            images=[str(still_dir / f"look{k}.png") for k in pick]
            + [str(still_dir / f"unseen-{g.key}.png") for g in ghosts],
            top=None,
            false_videos=false_videos,
        )
        query_s = time.perf_counter() - t1
        found = exact = pairs = elsewhere = 0
        for k, r in zip(pick, res[: len(pick)]):
            truth = where[k]
            for vr in r.results:
                v = _vid(vr)
                if v in truth:
                    pairs += 1
                    found += int(vr.present)
                    exact += int(vr.present and vr.first_seen_s is not None and abs(vr.first_seen_s - truth[v]) < 1e-3)
                else:
                    elsewhere += int(vr.present)
        false = sum(vr.present for r in res[len(pick) :] for vr in r.results)
        cal = s.image_levels()
        # the rule before: one level for every video, the per-pair 99.9th percentile (or the same
        # footage); a video's best sample decides (the first moment is not checked here)
        before = max(cal.same_footage(), cal.chance)
        found_before = sum(
            vr.score >= before for k, r in zip(pick, res[: len(pick)]) for vr in r.results if _vid(vr) in where[k]
        )
        false_before = sum(vr.score >= before for r in res[len(pick) :] for vr in r.results)
        vc = cal.video
        top_unseen = max((vr.score for r in res[len(pick) :] for vr in r.results), default=float("nan"))
        row = {
            "videos": n,
            "frames": built["frames"],
            "looks_in_archive": len(used),
            "found": found,
            "pairs": pairs,
            "recall": round(found / max(pairs, 1), 4),
            "first_seen_exact": exact,
            "false_unseen": int(false),
            "unseen_pairs": unseen * n,
            "false_rate": round(false / max(unseen * n, 1), 5),
            "stills": len(pick),
            "false_elsewhere": elsewhere,
            "elsewhere_pairs": len(pick) * n - pairs,
            "before": {"level": round(before, 4), "found": int(found_before), "false_unseen": int(false_before)},
            "expected_false_per_query": round(res[-1].expected_false or 0.0, 3),
            "same_footage": round(cal.same_footage(), 4),
            "chance_per_pair": round(cal.chance, 4),
            "chance_median_video": round(float(cal.chance_level()), 4),
            "level_median_video": round(cal.threshold(), 4),
            "overlap": cal.overlap(),
            "best_unseen_score": round(float(top_unseen), 4),
            "probes": None if vc is None else vc.probes,
            "margin": None if vc is None else vc.margin,
            "checked": None if vc is None else f"{vc.checked_over}/{vc.checked_pairs}",
            "query_s": round(query_s, 2),
            **built,
        }
        report["sizes"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return report


def _vid(vr: Any) -> int:
    """The plan's index of a result's video (its path is ``.../adNNNNN.mp4``)."""
    return int(Path(vr.video).stem[2:])


def table(rep: dict[str, Any]) -> str:
    lines = [
        f"{rep['model']}; {rep['looks']} looks, {rep['unseen']} unseen examples",
        "| videos | frames | found (first seen exact) | false: unseen | false: elsewhere | "
        "same footage | chance (median video) | overlap | before: found | before: false |",
        "|---:|---:|---|---|---:|---:|---:|---|---|---|",
    ]
    for r in rep["sizes"]:
        lines.append(
            f"| {r['videos']:,} | {r['frames']:,} | {r['found']}/{r['pairs']} = {100 * r['recall']:.1f}% "
            f"({r['first_seen_exact']}) | {r['false_unseen']}/{r['unseen_pairs']:,} = {100 * r['false_rate']:.2f}% | "
            f"{r['false_elsewhere']} | {r['same_footage']:.4f} | {r['chance_median_video']:.4f} | "
            f"{'yes' if r['overlap'] else 'no'} | {r['before']['found']}/{r['pairs']} | "
            f"{r['before']['false_unseen']}/{r['unseen_pairs']:,} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m archive.bench.presence", description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="folder for the archives and stills")
    ap.add_argument(
        "--from",
        dest="sources",
        nargs="+",
        type=Path,
        help="real footage the looks are cut from (default, in a checkout: tests/data/Megamind.avi tests/data/tree.avi)",
    )
    ap.add_argument("--sizes", default="20,200,2000", help="archive sizes in videos (default 20,200,2000)")
    ap.add_argument("--unseen", type=int, default=50, help="examples not in the archive (default 50)")
    ap.add_argument("--stills", type=int, default=50, help="stills of the archive's own looks (default 50)")
    ap.add_argument("--model", default="ViT-S-32-alt")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--false-videos", type=float, default=None, help="as archive search --false-videos")
    ap.add_argument(
        "--versions-up-to",
        type=int,
        default=500,
        help="compare versions (as index runs do) in archives of up to this many videos (default 500); in bigger "
        "ones, where every video shares looks with hundreds of others, that takes hours, and the levels leave the "
        "same footage out by the same-footage test alone",
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    sources = args.sources or [
        Path(__file__).resolve().parents[2] / "tests" / "data" / n for n in ("Megamind.avi", "tree.avi")
    ]
    try:
        transitions.use_sources(*sources)
    except FileNotFoundError as exc:
        print(f"error: {exc}; give real footage with --from CLIP ...", file=sys.stderr)
        return 2
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        print(f"error: --sizes {args.sizes}: give archive sizes in videos, e.g. 20,200,2000", file=sys.stderr)
        return 2
    rep = run(
        args.out,
        sizes,
        args.unseen,
        args.stills,
        args.model,
        args.pretrained,
        false_videos=args.false_videos,
        versions_up_to=args.versions_up_to,
    )
    print(json.dumps(rep, indent=1) if args.json else table(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
