"""Versions of the same ad, cut from real footage, with the exact shared footage of every pair:
the truth for the versions tests (``archive versions``) and ``python tests/gen/versionads.py --eval``.

A *family* is one film: a master of several shots, each a stretch of the real clips in
``tests/data`` with a look of its own (:mod:`evalads`: crop, flip, colour gain and grade). Its
versions reuse the master's frames the way real versions do:

* ``reencode``: every shot, at another size and quality (or another codec);
* ``letterbox`` / ``pillarbox``: the picture inside black bars of a 4:3 / 16:9 frame;
* ``cutdown``: some shots dropped, a few frames trimmed at each cut, an end card of its own;
* ``recut``: every shot, each cut moved by up to ``HANDLE`` frames either way: frames trimmed, or
  added from the take the master's shot was cut from (with this kind, masters leave ``HANDLE``
  frames of each take unused before and after their shots);
* ``reorder``: the shots in another order;
* ``speed``: the same frames played 4% slower or faster (25 vs 24 fps transfers);
* ``bumper``: two shots and an end card.

*Distractors* are films of their own made the same way from the same clips (same grades, other
stretches, crops and flips): the generic look of the archive, and no shared footage.

Times come from frame indexes (frame ``i`` of a video written at ``rate`` has pts ``i / rate``).
No pytest dependency.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script (python tests/gen/versionads.py): tests/ on the path, for gen.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archive.bench import transitions
from archive.bench.transitions import _Shot, source_segments
from gen.evalads import GRADES, GradedShot

transitions.use_sources(*(Path(__file__).resolve().parents[1] / "data" / n for n in ("Megamind.avi", "tree.avi")))

BASE_RATE = 25  # the looks' own frame rate: look frame k is the k-th frame of that take
KINDS = ("reencode", "letterbox", "cutdown", "reorder", "speed", "bumper")  # the default versions of a film
HANDLE = 3  # with a ``recut``: frames of each take before and after the master's shot


@dataclass
class Cut:
    """One shot of a version: ``frames`` frames of look ``key`` from its frame ``first``."""

    key: str
    first: int
    frames: int


@dataclass
class Version:
    """One video file: its cuts, frame size, picture box inside the frame (bars), rate, codec."""

    name: str
    family: str | None  # None: a distractor
    kind: str
    cuts: list[Cut]
    size: tuple[int, int] = (320, 180)
    box: tuple[int, int, int, int] | None = None  # (x, y, w, h) of the picture; None: the whole frame
    rate: int = BASE_RATE
    crf: int = 20
    codec: str = "libx264"
    path: Path | None = None

    def spans(self) -> list[tuple[Cut, float, float]]:
        """Each cut with its start and end time in this video."""
        out, i = [], 0
        for c in self.cuts:
            out.append((c, i / self.rate, (i + c.frames) / self.rate))
            i += c.frames
        return out

    @property
    def duration_s(self) -> float:
        return sum(c.frames for c in self.cuts) / self.rate


@dataclass
class Shared:
    """Footage two versions share: ``a`` seconds in the first, ``b`` in the second."""

    a_start: float
    a_end: float
    b_start: float
    b_end: float


JOIN_S = 0.3  # pieces that continue each other within this on both sides (frames trimmed at a cut) are one


def shared(va: Version, vb: Version, min_s: float = 0.5, join_s: float = JOIN_S) -> list[Shared]:
    """The footage ``va`` and ``vb`` share, as aligned segments (pieces that continue each other
    within ``join_s`` on both sides, frames trimmed or added at a cut, are one), longest first;
    pieces shorter than ``min_s`` are left out."""
    pieces: list[Shared] = []
    for ca, a0, _a1 in va.spans():
        for cb, b0, _b1 in vb.spans():
            if ca.key != cb.key:
                continue
            lo, hi = max(ca.first, cb.first), min(ca.first + ca.frames, cb.first + cb.frames)
            if hi <= lo:
                continue
            pieces.append(
                Shared(
                    a0 + (lo - ca.first) / va.rate,
                    a0 + (hi - ca.first) / va.rate,
                    b0 + (lo - cb.first) / vb.rate,
                    b0 + (hi - cb.first) / vb.rate,
                )
            )
    pieces.sort(key=lambda p: p.a_start)
    merged: list[Shared] = []
    for p in pieces:
        m = merged[-1] if merged else None
        if m and -1e-6 <= p.a_start - m.a_end <= join_s and -1e-6 <= p.b_start - m.b_end <= join_s:
            m.a_end, m.b_end = p.a_end, p.b_end
        else:
            merged.append(Shared(p.a_start, p.a_end, p.b_start, p.b_end))
    return sorted([m for m in merged if m.a_end - m.a_start >= min_s], key=lambda m: m.a_start - m.a_end)


@dataclass
class VersionSet:
    """A generated archive: the versions (with their files) and the looks by key."""

    versions: list[Version] = field(default_factory=list)
    looks: dict[str, GradedShot] = field(default_factory=dict)

    def by_name(self) -> dict[str, Version]:
        return {v.name: v for v in self.versions}

    def pairs(self, min_s: float = 0.5, join_s: float = JOIN_S) -> dict[tuple[str, str], list[Shared]]:
        """Every pair (names sorted) that shares footage, with the segments (see :func:`shared`)."""
        out = {}
        vs = sorted(self.versions, key=lambda v: v.name)
        for i, va in enumerate(vs):
            for vb in vs[i + 1 :]:
                s = shared(va, vb, min_s, join_s)
                if s:
                    out[(va.name, vb.name)] = s
        return out


def _bars(size: tuple[int, int], aspect: float) -> tuple[int, int, int, int]:
    """The centred box of ``aspect`` (w/h) inside a frame of ``size``, even-sized."""
    w, h = size
    if w / h > aspect:  # pillarbox
        bw = int(round(h * aspect / 2)) * 2
        return ((w - bw) // 2, 0, bw, h)
    bh = int(round(w / aspect / 2)) * 2
    return (0, (h - bh) // 2, w, bh)


def family(
    name: str,
    rng: np.random.Generator,
    n_shots: int = 6,
    kinds: Sequence[str] = KINDS,
    base_size: tuple[int, int] = (320, 180),
    shot_s: tuple[float, float] = (1.2, 3.0),
) -> list[Version]:
    """A master of ``n_shots`` shots and one version of each of ``kinds``."""
    lengths = [int(round(rng.uniform(*shot_s) * BASE_RATE)) for _ in range(n_shots)]
    head = HANDLE if "recut" in kinds else 0  # the take's frames before the master's shot
    master = [Cut(f"{name}.{k}", head, n) for k, n in enumerate(lengths)]
    out = [Version(f"{name}_master.mp4", name, "master", master, size=base_size)]
    bw, bh = base_size
    for kind in kinds:
        v = Version(f"{name}_{kind}.mp4", name, kind, [Cut(c.key, c.first, c.frames) for c in master], size=base_size)
        if kind == "reencode":
            v.size, v.crf = (int(bw * 1.5) // 2 * 2, int(bh * 1.5) // 2 * 2), 32
            v.codec = "mpeg4" if rng.random() < 0.5 else "libx264"
        elif kind == "letterbox":  # a 16:9 picture in a 4:3 frame (or a 4:3 one in 16:9: pillarbox)
            v.size = (bw, int(round(bw * 3 / 4 / 2)) * 2) if bw / bh > 1.5 else (int(round(bh * 16 / 9 / 2)) * 2, bh)
            v.box = _bars(v.size, bw / bh)
        elif kind == "cutdown":
            keep = sorted(rng.choice(n_shots, size=max(2, n_shots // 2), replace=False).tolist())
            v.cuts = []
            for k in keep:
                c = master[k]
                a, b = int(rng.integers(0, 4)), int(rng.integers(0, 4))  # frames trimmed at the cuts
                v.cuts.append(Cut(c.key, c.first + a, c.frames - a - b))
            v.cuts.append(Cut(f"{name}.end_cutdown", 0, int(1.5 * BASE_RATE)))
        elif kind == "reorder":
            order = rng.permutation(n_shots).tolist()
            while order == list(range(n_shots)):
                order = rng.permutation(n_shots).tolist()
            v.cuts = [Cut(master[k].key, master[k].first, master[k].frames) for k in order]
        elif kind == "recut":  # each cut moved: frames trimmed (> 0) or added from the take (< 0)
            v.cuts = []
            for c in master:
                a, b = int(rng.integers(-HANDLE, HANDLE + 1)), int(rng.integers(-HANDLE, HANDLE + 1))
                v.cuts.append(Cut(c.key, c.first + a, c.frames - a - b))
        elif kind == "speed":
            v.rate = 24 if rng.random() < 0.5 else 26
        elif kind == "bumper":
            k = int(rng.integers(0, n_shots - 1))
            v.cuts = [
                Cut(master[k].key, master[k].first, master[k].frames),
                Cut(master[k + 1].key, master[k + 1].first, master[k + 1].frames),
                Cut(f"{name}.end_bumper", 0, int(1.2 * BASE_RATE)),
            ]
        out.append(v)
    return out


def distractor(
    name: str,
    rng: np.random.Generator,
    n_shots: int = 5,
    base_size: tuple[int, int] = (320, 180),
    shot_s: tuple[float, float] = (1.2, 3.0),
) -> Version:
    """An unrelated film made the same way (its own looks)."""
    cuts = [Cut(f"{name}.{k}", 0, int(round(rng.uniform(*shot_s) * BASE_RATE))) for k in range(n_shots)]
    return Version(f"{name}.mp4", None, "distractor", cuts, size=base_size)


def _frame(look: GradedShot, k: int, v: Version, cache: dict) -> np.ndarray:
    import cv2

    key = (id(look), k)
    if key not in cache:
        cache.clear() if len(cache) > 512 else None
        cache[key] = np.clip(look.frame(k) + 0.5, 0, 255).astype(np.uint8)
    img = cache[key]
    w, h = v.size
    x, y, bw, bh = v.box or (0, 0, w, h)
    pic = (
        img
        if (img.shape[1], img.shape[0]) == (bw, bh)
        else cv2.resize(img, (bw, bh), interpolation=cv2.INTER_AREA if bw < img.shape[1] else cv2.INTER_LINEAR)
    )
    if (bw, bh) == (w, h):
        return pic
    out = np.zeros((h, w, 3), np.uint8)
    out[y : y + bh, x : x + bw] = pic
    return out


def write(
    folder: str | Path,
    versions: Sequence[Version],
    seed: int = 0,
    look_size: tuple[int, int] = (320, 180),
    looks: dict | None = None,
) -> VersionSet:
    """Render every version into ``folder`` (H.264 MP4, or MPEG-4 part 2 for ``codec='mpeg4'``).
    ``looks`` (key: an object with ``frame(k)``) replaces the graded looks made here."""
    import av

    rng = np.random.default_rng(seed)
    segs = [s for sid in (0, 1) for s in source_segments(sid)]
    keys = list(dict.fromkeys(c.key for v in versions for c in v.cuts))
    need = {k: max(c.first + c.frames for v in versions for c in v.cuts if c.key == k) for k in keys}
    combos = [(sg, gr) for sg in range(len(segs)) for gr in range(len(GRADES))]
    if looks is None:
        if len(keys) > len(combos):
            raise ValueError(f"{len(keys)} shots: at most {len(combos)} looks are distinct")
        pick = rng.permutation(len(combos))  # every shot its own (source stretch, grade): no two share footage
        looks = {
            k: GradedShot(_Shot(segs[combos[pick[i]][0]], need[k], look_size, rng), combos[pick[i]][1])
            for i, k in enumerate(keys)
        }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    for v in versions:
        v.path = folder / v.name
        with av.open(str(v.path), mode="w") as container:
            stream = container.add_stream(v.codec, rate=v.rate)
            stream.width, stream.height = v.size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, v.rate)
            if v.codec == "libx264":
                stream.options = {"preset": "veryfast", "crf": str(v.crf)}
            else:
                stream.bit_rate = 400_000
            i = 0
            for c in v.cuts:
                for k in range(c.first, c.first + c.frames):
                    frame = av.VideoFrame.from_ndarray(_frame(looks[c.key], k, v, cache), format="rgb24")
                    frame.pts = i
                    frame.time_base = Fraction(1, v.rate)
                    for packet in stream.encode(frame):
                        container.mux(packet)
                    i += 1
            for packet in stream.encode():
                container.mux(packet)
    return VersionSet(list(versions), looks)


def make_set(
    folder: str | Path,
    families: int = 3,
    distractors: int = 4,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    n_shots: int = 6,
    size: tuple[int, int] = (320, 180),
) -> VersionSet:
    """``families`` films with a version of each of ``kinds``, and ``distractors`` unrelated films."""
    rng = np.random.default_rng(seed)
    versions: list[Version] = []
    for f in range(families):  # every other film is 4:3, so its "letterbox" version is pillarboxed
        fsize = size if f % 2 == 0 else (int(round(size[1] * 4 / 3 / 2)) * 2, size[1])
        versions += family(f"film{f}", rng, n_shots, kinds, fsize)
    versions += [distractor(f"other{d}", rng, base_size=size) for d in range(distractors)]
    return write(folder, versions, seed, look_size=size)


# -- measuring found matches against the truth -------------------------------------------------
def _union(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _length(spans: Sequence[tuple[float, float]]) -> float:
    return sum(b - a for a, b in _union(spans))


def iou(found: Sequence[tuple[float, float]], truth: Sequence[tuple[float, float]]) -> float:
    """Temporal intersection over union of two sets of time ranges."""
    inter = _length(found) + _length(truth) - _length(list(found) + list(truth))
    union = _length(list(found) + list(truth))
    return inter / union if union > 0 else 1.0


def score(
    vset: VersionSet, found: dict[tuple[str, str], list[Shared]], interval_s: float, min_s: float = 0.5
) -> dict[str, object]:
    """Pair precision and recall, the temporal IoU of shared footage (per pair, both sides), and
    how far found segment boundaries lie from the truth's (each truth segment against the found
    segment that overlaps it most), in seconds and in sample intervals. Truth pieces that continue
    each other within one sample interval on both sides (a cut moved by a few frames in one
    version and the other way in another) are one segment: boundaries are promised to an interval."""
    truth = vset.pairs(min_s, max(JOIN_S, interval_s))
    tp = sorted(set(truth) & set(found))
    fp = sorted(set(found) - set(truth))
    fn = sorted(set(truth) - set(found))
    ious, errors, worst = [], [], []
    for pair in tp:
        t, f = truth[pair], found[pair]
        ious.append(
            min(
                iou([(s.a_start, s.a_end) for s in f], [(s.a_start, s.a_end) for s in t]),
                iou([(s.b_start, s.b_end) for s in f], [(s.b_start, s.b_end) for s in t]),
            )
        )
        for s in t:
            best = max(f, key=lambda g: min(g.a_end, s.a_end) - max(g.a_start, s.a_start))
            if min(best.a_end, s.a_end) - max(best.a_start, s.a_start) <= 0:
                errors.append(math.inf)
                continue
            e = max(
                abs(best.a_start - s.a_start),
                abs(best.a_end - s.a_end),
                abs(best.b_start - s.b_start),
                abs(best.b_end - s.b_end),
            )
            errors.append(e)
            worst.append((e, pair, s, best))
    worst.sort(key=lambda w: -w[0])
    return {
        "pairs_true": len(truth),
        "pairs_found": len(found),
        "true_positive": len(tp),
        "precision": len(tp) / len(found) if found else 1.0,
        "recall": len(tp) / len(truth) if truth else 1.0,
        "false_pairs": [list(p) for p in fp],
        "missed_pairs": [list(p) for p in fn],
        "iou_min": min(ious) if ious else None,
        "iou_mean": float(np.mean(ious)) if ious else None,
        "boundary_error_max_s": max(errors) if errors else None,
        "boundary_error_median_s": float(np.median(errors)) if errors else None,
        "segments_within_one_interval": sum(e <= interval_s + 1e-6 for e in errors),
        "segments": len(errors),
        "worst": [
            {"pair": list(p), "error_s": round(e, 3), "truth": vars(s), "found": vars(g)} for e, p, s, g in worst[:5]
        ],
    }


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="where to write the videos (and the store, with --eval)")
    ap.add_argument("--families", type=int, default=4)
    ap.add_argument("--distractors", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval", action="store_true", help="index the set and score `archive versions` against the truth")
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help=f"versions of each film, comma-separated, of: {', '.join(KINDS + ('recut',))}",
    )
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(KINDS + ("recut",)))
    if unknown:
        ap.error(f"unknown version kind(s): {', '.join(unknown)}")
    vset = make_set(folder / "videos", args.families, args.distractors, args.seed, kinds=kinds)
    print(f"wrote {len(vset.versions)} videos into {folder / 'videos'}")
    if not args.eval:
        return
    from archive import Archive

    a = Archive(folder / "store")
    a.index([folder / "videos"], fps=args.fps)
    found: dict[tuple[str, str], list[Shared]] = {}
    for m in a.matches():
        pair = (m["name_a"], m["name_b"])
        s = Shared(m["a_start_s"], m["a_end_s"], m["b_start_s"], m["b_end_s"])
        if pair[0] > pair[1]:
            pair, s = (pair[1], pair[0]), Shared(s.b_start, s.b_end, s.a_start, s.a_end)
        found.setdefault(pair, []).append(s)
    print(json.dumps(score(vset, found, 1.0 / args.fps), indent=2, default=str))
    print(f"versions compared in {a.info().videos} videos")


if __name__ == "__main__":
    main()
