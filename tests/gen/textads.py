"""Ad-like test videos with written words on screen: real footage (the clips in ``tests/data``, cut
into shots as in :mod:`archive.bench.transitions`) with text overlays rendered at known shots, in Pillow's
built-in scalable font, in varied sizes, colours and positions, some on a plain band and some
straight on the moving picture. The truth is where each phrase is on screen (seconds).

H.264 MP4s at 25 fps written with PyAV; times come from frame indexes (frame ``i`` has pts ``i / 25``).
No pytest dependency: ``python tests/gen/textads.py DIR`` writes the set the tests use;
``python tests/gen/textads.py --eval DIR [VIDEOS]`` writes :func:`random_plan`'s ads (random phrases on
random shots), indexes them with ``--ocr`` and prints recall, first-seen errors and false positives;
``--eval-numbers DIR [VIDEOS]`` does the same with prices, percentages, phone numbers, web
addresses, codes and dates (:func:`number_phrase`), near misses of them as the absent phrases, and
the matching before OCR's habits were known beside.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from archive.bench import transitions
from archive.bench.transitions import _Shot, source_segments

transitions.use_sources(*(Path(__file__).resolve().parents[1] / "data" / n for n in ("Megamind.avi", "tree.avi")))

SIZE = (640, 360)
RATE = 25


@dataclass(frozen=True)
class Overlay:
    """A phrase drawn on a shot from ``from_s`` into it (0: from the shot's first frame) to its end."""

    text: str
    px: int  # font size in pixels (the letters' height is about 0.7 of it)
    x: float  # left edge, 0-1 of the width
    y: float  # top edge, 0-1 of the height
    colour: tuple[int, int, int] = (255, 255, 255)
    band: tuple[int, int, int] | None = None  # a plain band behind it (None: on the picture itself)
    from_s: float = 0.0
    font: str | None = None  # a TrueType file (None: Pillow's built-in font)


# TrueType fonts of a Debian system (fonts-dejavu, fonts-liberation) that number phrases are drawn
# in when they are there: Pillow's built-in font has no glyph for the euro or the pound.
SYSTEM_FONTS = tuple(
    str(p)
    for p in (
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
        Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
        Path("/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"),
        Path("/usr/share/fonts/truetype/liberation/LiberationSerif-Bold.ttf"),
    )
    if p.is_file()
)


@dataclass
class TextAd:
    path: Path
    n_frames: int
    shots: list[tuple[float, float]] = field(default_factory=list)  # (start_s, end_s)
    shown: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # phrase -> spans

    @property
    def duration_s(self) -> float:
        return self.n_frames / RATE


def _draw(img: np.ndarray, overlays: Sequence[Overlay]) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    for o in overlays:
        font = ImageFont.truetype(o.font, o.px) if o.font else ImageFont.load_default(size=o.px)
        x, y = round(o.x * img.shape[1]), round(o.y * img.shape[0])
        if o.band is not None:
            box = d.textbbox((x, y), o.text, font=font)
            d.rectangle((box[0] - 8, box[1] - 6, box[2] + 8, box[3] + 6), fill=o.band)
        d.text((x, y), o.text, font=font, fill=o.colour)
    return np.asarray(im)


def make_text_ads(
    folder: str | Path,
    plan: dict[str, Sequence[tuple[float, Sequence[Overlay]]]],
    size: tuple[int, int] = SIZE,
    seed: int = 0,
) -> dict[str, TextAd]:
    """Write one H.264 MP4 per entry of ``plan`` (file name -> shots as ``(seconds, overlays)``),
    each shot a different stretch of real footage; return where each phrase is on screen."""
    import av

    rng = np.random.default_rng(seed)
    segments = [s for sid in (0, 1) for s in source_segments(sid)]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, TextAd] = {}
    n_shot = 0
    for name, shots in plan.items():
        ad = TextAd(folder / name, 0)
        with av.open(str(ad.path), mode="w") as container:
            stream = container.add_stream("libx264", rate=RATE)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, RATE)
            stream.options = {"preset": "veryfast", "crf": "20"}
            i = 0
            for sec, overlays in shots:
                n = int(round(sec * RATE))
                look = _Shot(segments[n_shot % len(segments)], n, size, rng)
                n_shot += 1
                first = i
                for k in range(n):
                    img = np.clip(look.frame(k) + 0.5, 0, 255).astype(np.uint8)
                    img = _draw(img, [o for o in overlays if k >= round(o.from_s * RATE)])
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                    frame.pts = i
                    frame.time_base = Fraction(1, RATE)
                    for packet in stream.encode(frame):
                        container.mux(packet)
                    i += 1
                ad.shots.append((first / RATE, i / RATE))
                for o in overlays:
                    start = (first + round(o.from_s * RATE)) / RATE
                    spans = ad.shown.setdefault(o.text, [])
                    if spans and abs(spans[-1][1] - start) < 1e-9:
                        spans[-1] = (spans[-1][0], i / RATE)  # on screen across the cut
                    else:
                        spans.append((start, i / RATE))
            for packet in stream.encode():
                container.mux(packet)
        ad.n_frames = i
        out[name] = ad
    return out


WHITE, YELLOW, BLACK, RED, CYAN = (255, 255, 255), (255, 230, 0), (15, 15, 15), (220, 30, 30), (0, 220, 240)

# Phrases of 20 px and larger at 360p, with their place in three ads; the end card of ad 0 holds
# two lines, and one phrase is read as words of two adjacent lines.
PLAN: dict[str, list[tuple[float, list[Overlay]]]] = {
    "text_ad0.mp4": [
        (1.6, []),
        (2.0, [Overlay("SUMMER SALE", 36, 0.08, 0.12, YELLOW)]),
        (1.4, [Overlay("0% sugar", 28, 0.60, 0.70, WHITE, band=RED)]),
        (
            2.2,
            [
                Overlay("Heineken", 44, 0.30, 0.35, WHITE, band=(0, 110, 40)),
                Overlay("Drink responsibly", 20, 0.30, 0.80, WHITE, band=BLACK),
            ],
        ),
    ],
    "text_ad1.mp4": [
        (1.2, []),
        (2.4, [Overlay("Call 0800 123 456", 24, 0.05, 0.82, WHITE, band=(20, 40, 120), from_s=0.8)]),
        (1.6, [Overlay("www.example.com", 28, 0.40, 0.10, BLACK, band=WHITE)]),
        (
            1.8,
            [
                Overlay("Limited", 32, 0.10, 0.40, CYAN, band=BLACK),
                Overlay("edition", 32, 0.10, 0.52, CYAN, band=BLACK),
            ],
        ),
    ],
    "text_ad2.mp4": [
        (1.8, [Overlay("New flavour", 30, 0.20, 0.20, WHITE, band=(90, 40, 20))]),
        (2.0, [Overlay("Sale 49,99 EUR", 24, 0.55, 0.75, YELLOW)]),
        (1.4, []),
        (1.6, [Overlay("Terms apply", 20, 0.62, 0.88, WHITE)]),
    ],
}
# Asked for and never shown (no false positives allowed).
ABSENT = ["free delivery", "organic coffee", "summer collection", "Carlsberg", "0800 999 000", "www.nothing.org"]
# Phrases as a user types them, with what they must find.
QUERIES = {
    "summer sale": "SUMMER SALE",
    "0% sugar": "0% sugar",
    "heineken": "Heineken",
    "drink responsibly": "Drink responsibly",
    "call 0800 123 456": "Call 0800 123 456",
    "www.example.com": "www.example.com",
    "limited edition": "Limited",  # two adjacent lines: "Limited" over "edition"
    "new flavour": "New flavour",
    "sale 49.99 eur": "Sale 49,99 EUR",
    "terms apply": "Terms apply",
}


# Words of random overlays (random_plan) and, disjoint from them, of phrases never shown.
WORDS = (
    "fresh taste summer offer new only today free delivery quality since best price save online shop "
    "original recipe premium natural ingredients limited edition available stores nationwide discover more "
    "visit crispy golden smooth rich coffee morning energy family holiday winter classic flavour better "
    "together light bright clean strong simple pure local farm garden"
).split()
NUMBERS = ["1923", "50%", "0% fat", "9,99 EUR", "24/7", "0800 555 123", "www.brand.com", "2 for 1"]
ABSENT_WORDS = (
    "zebra quantum velvet harbor violin tundra meteor saffron glacier marble orbit canyon lantern pepper falcon"
).split()


def _digits(rng: np.random.Generator, n: int) -> str:
    """``n`` digits, rich in the confusable ones (0, 1, 5, 8, 2)."""
    return "".join(str(rng.choice(list("0000111558822346799"))) for _ in range(n))


CONFUSABLE_WORDS = "ORIGINAL ILLINOIS MODERN BOLD ZERO SOLID SIMPLE LITRE BIOLOGICAL CLASSIC".split()


def number_phrase(rng: np.random.Generator) -> str:
    """A line of the kind regulators and analysts ask about: a price, a percentage, a phone
    number, a web address, a model code, a date or a quantity, rich in OCR's confusable glyphs."""
    d = functools.partial(_digits, rng)
    word = str(rng.choice(list(WORDS) + [w.lower() for w in CONFUSABLE_WORDS]))
    kind = int(rng.integers(0, 9))
    if kind == 0:
        return f"{rng.choice(['ONLY ', 'NOW ', ''])}{rng.choice(['£', '€', '$'])}{int(d(2))}.{d(2)}"
    if kind == 1:
        return f"{rng.choice(['NOW ', 'UP TO ', ''])}{int(d(2))}% {rng.choice(['OFF', 'SUGAR', 'FAT', 'MORE'])}"
    if kind == 2:
        return f"CALL 0{d(3)} {d(3)} {d(3)}"
    if kind == 3:
        return f"www.{word}{d(2)}.{rng.choice(['com', 'co.uk', 'de'])}"
    if kind == 4:
        return f"{rng.choice(['XC', 'GT', 'B', 'A', 'Q', 'S'])}{int(d(2))}{rng.choice(['', ' HYBRID', ' PLUS'])}"
    if kind == 5:
        return f"{int(d(2)) % 28 + 1:02d}/{int(d(1)) + 1:02d}/20{d(2)}"
    if kind == 6:
        return f"{rng.choice(CONFUSABLE_WORDS)} {rng.choice(['SINCE ', 'EST. ', ''])}{1900 + int(d(2))}"
    if kind == 7:
        return f"{int(d(3))}{rng.choice(['ml', 'g', 'kcal'])} {rng.choice(['PACK', 'ONLY', 'SERVING'])}"
    return f"{int(d(1)) + 1} FOR {int(d(1)) + 1}" if rng.random() < 0.5 else f"24/7 {word.upper()}"


def near_miss(phrase: str, rng: np.random.Generator) -> str:
    """``phrase`` with one of its numbers read otherwise: a digit changed to a digit of another
    glyph class, a digit added, or a decimal point moved."""
    idx = [i for i, c in enumerate(phrase) if c.isdigit()]
    i = int(rng.choice(idx))
    how = int(rng.integers(0, 3))
    if how == 0:
        other = {"0": "6", "1": "4", "5": "3", "8": "7", "2": "9"}.get(phrase[i], "0" if phrase[i] != "0" else "3")
        return phrase[:i] + other + phrase[i + 1 :]
    if how == 1:
        return phrase[:i] + "3" + phrase[i:]
    if "." in phrase[max(0, i - 3) : i + 3] and phrase.find(".") > 0 and phrase[phrase.find(".") - 1].isdigit():
        j = phrase.find(".")
        return phrase[: j - 1] + "." + phrase[j - 1] + phrase[j + 1 :]
    return phrase[:i] + "4" + phrase[i:]


def random_plan(
    n_videos: int = 6, shots: int = 8, seed: int = 1, numbers: bool = False
) -> dict[str, list[tuple[float, list[Overlay]]]]:
    """Ads of ``shots`` shots of 1.2-3 s; about 60% of shots get a phrase of 1-3 words (or a number,
    URL or price) at 20-44 px, in a random colour and place, on a band or straight on the picture,
    from the shot's start or (one in three) from 0.6 s into it. Every phrase is shown once. With
    ``numbers``, every phrase is a :func:`number_phrase`."""
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    plan: dict[str, list[tuple[float, list[Overlay]]]] = {}
    for v in range(n_videos):
        ad: list[tuple[float, list[Overlay]]] = []
        for _ in range(shots):
            sec = float(rng.uniform(1.2, 3.0))
            overlays = []
            if rng.random() < 0.6:
                while True:
                    if numbers:
                        text = number_phrase(rng)
                    elif rng.random() < 0.2:
                        text = str(rng.choice(NUMBERS))
                    else:
                        text = " ".join(str(w) for w in rng.choice(WORDS, size=int(rng.integers(1, 4)), replace=False))
                        text = text.upper() if rng.random() < 0.3 else text.capitalize()
                    if text.lower() not in used and all(text.lower() not in u and u not in text.lower() for u in used):
                        used.add(text.lower())
                        break
                px = int(rng.integers(20, 45))
                band = tuple(int(c) for c in rng.integers(0, 256, 3)) if rng.random() < 0.5 else None
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                if band is not None and abs(sum(colour) - sum(band)) < 250:  # keep the words legible on their band
                    colour = (255, 255, 255) if sum(band) < 384 else (0, 0, 0)
                if band is None:  # straight on the picture: light or dark, like real supers
                    colour = (255, 255, 255) if rng.random() < 0.6 else (255, 220, 0)
                width = 0.6 * px * len(text) / SIZE[0]
                x = float(rng.uniform(0.03, max(0.04, 0.97 - width)))
                y = float(rng.uniform(0.05, 0.85))
                font = str(rng.choice(SYSTEM_FONTS)) if numbers and SYSTEM_FONTS else None
                overlays.append(Overlay(text, px, x, y, colour, band, 0.6 if rng.random() < 1 / 3 else 0.0, font))
            ad.append((sec, overlays))
        plan[f"rand_ad{v}.mp4"] = ad
    return plan


def absent_phrases(n: int = 20, seed: int = 2) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        " ".join(str(w) for w in rng.choice(ABSENT_WORDS, size=int(rng.integers(1, 3)), replace=False))
        for _ in range(n)
    ]


def _before(phrase: str, lines: Sequence[str]) -> bool:
    """The matching before OCR's habits were known (letters and digits only, rapidfuzz at 90, no
    folding): whether one line matches, for comparison."""
    from rapidfuzz import fuzz

    from indexer.store.records import normalize

    p = normalize(phrase)
    for ln in (normalize(x) for x in lines):
        if len(p) < 4:
            if p in ln:
                return True
        elif (fuzz.partial_ratio(p, ln) if len(ln) >= len(p) else fuzz.ratio(p, ln)) >= 90:
            return True
    return False


def evaluate(folder: str | Path, n_videos: int = 6, seed: int = 1, numbers: bool = False) -> dict[str, object]:
    """Write :func:`random_plan`'s ads, index them with ``--ocr`` (the store's default model with
    random weights: the OCR does not depend on it) and measure ``archive search --ocr`` on them:
    recall of the shown phrases, first-seen errors, and false positives of never-shown phrases.
    With ``numbers``: phrases rich in digits, symbols and confusable glyphs
    (:func:`number_phrase`), near misses of them (:func:`near_miss`) as the never-shown phrases,
    and the recall and false positives of the matching before (:func:`_before`) beside."""
    from indexer.run.options import IndexOptions
    from indexer.run.pipeline import index_paths
    from indexer.store import Reader
    from search.query import Searcher

    folder = Path(folder)
    plan = random_plan(n_videos, seed=seed, numbers=numbers)
    ads = make_text_ads(folder / "ads", plan, seed=seed)
    rep = index_paths(
        [a.path for a in ads.values()], folder / "store", IndexOptions(model="ViT-B-32", pretrained="none", ocr=True)
    )
    shown = {p: (name, ad, spans[0]) for name, ad in ads.items() for p, spans in ad.shown.items()}
    s = Searcher(folder / "store")
    found, exact, late, wrong, errs, misses, by_size, off = 0, 0, [], 0, [], [], {}, []
    starts_at_cut = 0
    for res in s.search(ocr=list(shown), top=None):
        name, ad, (a, b) = shown[res.query]
        size = next(o.px for _, ovs in plan[name] for o in ovs if o.text == res.query)
        hit = [r for r in res.results if r.present]
        ok = [r for r in hit if Path(r.video).name == name]
        wrong += len(hit) - len(ok)
        by_size.setdefault(size // 10 * 10, [0, 0])[1] += 1
        if not ok:
            misses.append(res.query)
            continue
        found += 1
        by_size[size // 10 * 10][0] += 1
        err = ok[0].first_seen_s - a
        errs.append(abs(ok[0].duration_s - (b - a)))
        if any(abs(a - c) < 1e-9 for c, _ in ad.shots):
            starts_at_cut += 1
            exact += abs(err) < 1e-3
            if abs(err) >= 1e-3:
                off.append((res.query, name, round(a, 3), round(err, 3)))
        else:
            late.append(round(err, 3))
    absent = absent_phrases()
    before: dict[str, object] = {}
    if numbers:
        rng = np.random.default_rng(seed + 1)
        shown_l = {p.lower() for p in shown}
        absent = [m for m in (near_miss(p, rng) for p in sorted(shown)) if m.lower() not in shown_l]
        names = {v.video_id: Path(v.path).name for v in Reader(folder / "store").video_refs()}
        by_name: dict[str, list[str]] = {}
        for r in Reader(folder / "store").ocr_lines():
            by_name.setdefault(names[r["video_id"]], []).append(r["text"])
        before = {
            "found": sum(_before(p, by_name.get(shown[p][0], [])) for p in shown),
            "absent_found": [m for m in absent if any(_before(m, ls) for ls in by_name.values())],
        }
    fp = [r.query for r in s.search(ocr=absent, top=None) if any(x.present for x in r.results)]
    return {
        "videos": len(ads),
        "phrases": len(shown),
        "found": found,
        "recall": round(found / len(shown), 3),
        "missed": misses,
        "found_elsewhere": wrong,
        "absent_phrases": len(absent),
        "absent_phrases_found": fp,
        **({"before": before} if before else {}),
        "first_seen_exact_at_cut": f"{exact}/{starts_at_cut}",
        "at_cut_not_exact": off,
        "first_seen_late_mid_shot_s": sorted(late),
        "duration_error_s": {
            "median": round(float(np.median(errs)), 3) if errs else None,
            "max": round(float(np.max(errs)), 3) if errs else None,
        },
        "recall_by_size_px": {f"{k}-{k + 9}": f"{v[0]}/{v[1]}" for k, v in sorted(by_size.items())},
        "index_wall_s": round(rep.wall_s, 2),
        "frames": rep.frames,
        "frames_read": rep.stages.ocr_frames,
        "ocr_s": round(rep.stages.ocr, 2),
        "ocr_s_per_frame_read": round(rep.stages.ocr / max(rep.stages.ocr_frames, 1), 3),
        "text_lines": rep.text_lines,
    }


if __name__ == "__main__":
    import json

    if len(sys.argv) > 2 and sys.argv[1] in ("--eval", "--eval-numbers"):
        n = int(sys.argv[3]) if len(sys.argv) > 3 else 6
        print(json.dumps(evaluate(sys.argv[2], n, numbers=sys.argv[1] == "--eval-numbers"), indent=1))
    else:
        made = make_text_ads(sys.argv[1] if len(sys.argv) > 1 else "text-ads", PLAN)
        for ad in made.values():
            print(ad.path, f"{ad.duration_s:.2f} s", {k: v for k, v in ad.shown.items()})
