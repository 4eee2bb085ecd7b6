"""Archives where the same footage recurs: the truth for query by example when the archive holds
many versions of the same shots (``tests/test_recurring.py``, ``python tests/gen/recurads.py --eval``).

Every video is a few shots, each a *look*: a stretch of the real clips in ``tests/data`` with a
crop and flip of its own (:class:`transitions._Shot`) under a strong colour cast of its own, a hue
of the colour wheel. The cast is what makes looks tell apart under the tests' random weights,
which see mostly a picture's colours (two stretches of Megamind in one grade score up to 0.997
there; two casts 45 degrees apart at most 0.96). Every look recurs: look ``shared{j}`` is cut into
``recur[j]`` of the videos, and the other looks fill the remaining shots of the videos, a few
frames trimmed at their start each time, at a place of their own in each video. Every third video
repeats its opening shot at its end, as ads repeat a packshot. *Unseen* looks are made the same
way and written into no video: stills of them are examples that are not in the archive.

Times come from frame indexes (frame ``i`` of a video written at ``rate`` has pts ``i / rate``).
No pytest dependency.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script (python tests/gen/recurads.py): tests/ on the path, for gen.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archive.bench import transitions
from archive.bench.transitions import _Shot, source_segments

transitions.use_sources(*(Path(__file__).resolve().parents[1] / "data" / n for n in ("Megamind.avi", "tree.avi")))
from gen.versionads import BASE_RATE, Cut, Version, VersionSet, write

CAST = 0.5  # how much of each pixel is the look's hue


class TintedShot:
    """A :class:`transitions._Shot` under a colour cast: ``(1 - CAST) * frame + CAST * hue``."""

    def __init__(self, shot: _Shot, hue: float) -> None:
        import colorsys

        self.shot = shot
        self.tint = np.array(colorsys.hsv_to_rgb(hue % 1.0, 1.0, 1.0), np.float32) * 255.0

    def frame(self, k: int) -> np.ndarray:
        return (1.0 - CAST) * self.shot.frame(k) + CAST * self.tint


@dataclass
class Appearance:
    """Where a look is on screen in one video: its first appearance, and every one."""

    video: str
    first_s: float
    spans: list[tuple[float, float]]


@dataclass
class RecurringSet:
    """A generated archive and, for every look, where it appears."""

    vset: VersionSet
    unseen: list[str]  # looks in no video

    def appearances(self, key: str) -> list[Appearance]:
        out = []
        for v in self.vset.versions:
            spans = [(a, b) for c, a, b in v.spans() if c.key == key]
            if spans:
                out.append(Appearance(v.name, spans[0][0], spans))
        return out

    def keys(self) -> list[str]:
        """Every look written into a video."""
        return list(dict.fromkeys(c.key for v in self.vset.versions for c in v.cuts))

    def still(self, key: str, path: str | Path) -> Path:
        """A PNG of the middle frame of the part of ``key`` that every video showing it holds."""
        import cv2

        cuts = [c for v in self.vset.versions for c in v.cuts if c.key == key]
        look = self.vset.looks[key]
        if cuts:
            lo, hi = max(c.first for c in cuts), min(c.first + c.frames for c in cuts)
        else:
            lo, hi = 0, int(2 * BASE_RATE)
        img = np.clip(look.frame((lo + hi) // 2) + 0.5, 0, 255).astype(np.uint8)
        path = Path(path)
        cv2.imwrite(str(path), img[:, :, ::-1])
        return path


def make_recurring(
    folder: str | Path,
    videos: int = 20,
    recur: Sequence[int] = (10, 5, 2),
    shots: int = 3,
    fillers: int = 4,
    unseen: int = 1,
    seed: int = 0,
    size: tuple[int, int] = (320, 180),
    shot_s: tuple[float, float] = (1.2, 2.4),
) -> RecurringSet:
    """``videos`` videos of ``shots`` shots each: look ``shared{j}`` in ``recur[j]`` of them, and
    ``fillers`` more looks (``fill{k}``) in the remaining shots, in turn; ``unseen`` more looks are
    made and written nowhere. The looks' hues are evenly spread over the colour wheel."""
    rng = np.random.default_rng(seed)
    slots: list[list[str]] = [[] for _ in range(videos)]
    for j, r in enumerate(recur):
        if not 1 <= r <= videos:
            raise ValueError(f"a look cannot recur in {r} of {videos} videos")
        for i in rng.choice(videos, size=r, replace=False).tolist():
            slots[i].append(f"shared{j}")
    fill = [f"fill{k}" for k in range(fillers)]
    turn = 0
    for keys in slots:
        for _ in range(max(0, shots - len(keys))):
            free = [f for f in fill if f not in keys]
            if not free:
                raise ValueError(f"{fillers} filler looks cannot fill {shots} shots of a video")
            pick = min(free, key=lambda f: (fill.index(f) - turn) % len(fill))
            keys.append(pick)
            turn = fill.index(pick) + 1
    lengths: dict[str, int] = {}
    cuts_by_video: list[list[Cut]] = []
    for i, keys in enumerate(slots):
        order = rng.permutation(len(keys)).tolist()
        cuts = []
        for k in order:
            key = keys[k]
            n = lengths.setdefault(key, int(round(rng.uniform(*shot_s) * BASE_RATE)))
            trim = int(rng.integers(0, 4))  # frames trimmed at its start
            cuts.append(Cut(key, trim, n - trim))
        if i % 3 == 0:  # the opening shot again at the end (a packshot)
            cuts.append(Cut(cuts[0].key, cuts[0].first, cuts[0].frames))
        cuts_by_video.append(cuts)
    vs = [Version(f"ad{i:02d}.mp4", None, "recurring", cuts, size=size) for i, cuts in enumerate(cuts_by_video)]
    ghosts = [f"unseen{u}" for u in range(unseen)]
    keys = list(dict.fromkeys(c.key for cuts in cuts_by_video for c in cuts)) + ghosts
    segs = [s for sid in (0, 1) for s in source_segments(sid)]
    hues = rng.permutation(len(keys)) / len(keys)
    looks = {
        k: TintedShot(
            _Shot(segs[int(rng.integers(len(segs)))], lengths.get(k, int(2 * BASE_RATE)), size, rng), float(h)
        )
        for k, h in zip(keys, hues)
    }
    vset = write(folder, vs, seed, look_size=size, looks=looks)
    return RecurringSet(vset, ghosts)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="where to write the videos (and the store, with --eval)")
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--recur", type=int, nargs="+", default=[10, 5, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--eval", action="store_true", help="index the set and query a still of every look")
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    rs = make_recurring(folder / "videos", args.videos, args.recur, seed=args.seed)
    print(f"wrote {len(rs.vset.versions)} videos into {folder / 'videos'}")
    if not args.eval:
        return
    from archive import Archive

    a = Archive(folder / "store")
    a.index([folder / "videos"], fps=args.fps)
    stills = folder / "stills"
    stills.mkdir(exist_ok=True)
    keys = rs.keys() + rs.unseen
    results = a.search(image=[rs.still(k, stills / f"{k}.png") for k in keys], top=None)
    found = missed = false = 0
    worst_first = 0.0
    for key, res in zip(keys, results):
        truth = {ap_.video: ap_ for ap_ in rs.appearances(key)}
        for r in res.results:
            name = Path(r.video).name
            if name in truth:
                if r.present:
                    found += 1
                    worst_first = max(worst_first, abs(r.first_seen_s - truth[name].first_s))
                else:
                    missed += 1
            elif r.present:
                false += 1
    from indexer.store import Reader
    from search.presence import chance_cosine

    t = Reader(folder / "store").frames()  # for comparison: the level with every pair of different videos kept
    every = chance_cosine(t.vectors, t.row, t.video_id, t.ts_s, t.shot_id, t.blank, same_level=None)
    print(
        json.dumps(
            {
                "stills": len(keys),
                "level": results[0].threshold,
                "found": found,
                "missed": missed,
                "false": false,
                "first_seen_error_max_s": round(worst_first, 3),
                "chance_with_every_pair_kept": every.level,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
