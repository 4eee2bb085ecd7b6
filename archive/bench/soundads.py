"""Ads that carry sound logos at known moments, for the sound search's tests and benchmark.

Each ad is a short H.264 video whose sound track is a voice-over (espeak-ng) over a music bed; some
carry one of :data:`QUERIED` jingles (synthetic four-to-six-note chimes, each with its own timbre)
once or twice, mixed 0 to 6 dB under the voice; others carry no jingle, or a jingle that is never
asked for (:data:`DISTRACTORS`). The tracks are encoded as AAC or MP3 at 64 kbit/s.

``python -m archive.bench.soundads DIR [--with N] [--without M]`` writes the ads into ``DIR/ads``,
each queried jingle as ``DIR/queries/NAME.wav`` (and the first also as ``.mp3``, ``.m4a`` and
``.flac``), and the truth as ``DIR/truth.json``: for every ad, the plays (jingle, start_s, end_s:
seconds from the file's time 0). ``archive bench --index DIR/ads --sound`` then scores the answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .speechads import BED_RMS, LAYOUTS, VOICES, SpokenAd, _voice, espeak_available, music_bed, write_ad

RATE = 44_100  # the ads' sample rate
QUERIED = ("chime", "bells", "sting")  # the jingles asked for
DISTRACTORS = ("harp", "buzz")  # jingles some ads carry that are never asked for
SLOGANS = (
    "the taste of summer",
    "because you are worth it",
    "nothing else comes close",
    "built to last",
    "feel the difference",
    "save more every day",
    "the choice of champions",
    "simply better",
    "made for real life",
    "drive the future",
    "your bank, your way",
    "fresh ideas daily",
)


def jingle(name: str, sr: int = RATE) -> np.ndarray:
    """The sound logo ``name``: mono float32 at ``sr``, 1.4-2.6 s of notes with an attack and a
    decay, its notes, rhythm and timbre drawn from the name (the same name gives the same sound)."""
    rng = np.random.default_rng(sum(map(ord, name)) * 7919)
    n_notes = int(rng.integers(4, 7))
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16])
    root = 60 + int(rng.integers(0, 12))
    durs = rng.choice([0.18, 0.25, 0.35, 0.5], n_notes)
    harm = rng.uniform(0.05, 0.6, 4)
    decay = float(rng.uniform(2.0, 6.0))
    out = []
    for k in range(n_notes):
        f = 440.0 * 2 ** ((root + int(rng.choice(scale)) - 69) / 12)
        t = np.arange(int(durs[k] * sr)) / sr
        tone = np.sin(2 * np.pi * f * t) + sum(h * np.sin(2 * np.pi * f * (j + 2) * t) for j, h in enumerate(harm))
        env = np.minimum(1.0, t / 0.008) * np.exp(-t * decay)
        out.append(tone * env)
    x = np.concatenate(out)
    return (x / np.abs(x).max() * 0.5).astype(np.float32)


@dataclass
class Play:
    jingle: str
    start_s: float
    end_s: float
    gain_db: float  # the jingle's RMS against the voice's (0 to -6 dB: under the voice)


@dataclass
class SoundAd:
    name: str
    duration_s: float
    plays: list[Play] = field(default_factory=list)
    slogan: str = ""
    voice: str = "en-us"
    codec: str = "aac"
    bed: bool = True


def plan_sound_ads(with_jingle: int = 30, without: int = 100, seed: int = 0) -> list[SoundAd]:
    """``with_jingle`` ads that play a queried jingle (in turn; one in four plays it twice), and
    ``without`` that play none (one in five of those plays a distractor jingle instead)."""
    rng = np.random.default_rng(seed)
    ads = []
    for i in range(with_jingle + without):
        dur = float(rng.uniform(8.0, 14.0))
        ad = SoundAd(
            f"ad_{i:03d}.mp4",
            round(dur, 2),
            slogan=str(rng.choice(SLOGANS)),
            voice=str(VOICES[int(rng.integers(0, len(VOICES)))]),
            codec="mp3" if rng.random() < 0.4 else "aac",
            bed=bool(rng.random() < 0.85),
        )
        names: list[str] = []
        if i < with_jingle:
            names = [QUERIED[i % len(QUERIED)]] * (2 if i % 4 == 3 else 1)
        elif rng.random() < 0.2:
            names = [DISTRACTORS[int(rng.integers(0, len(DISTRACTORS)))]]
        at = float(rng.uniform(0.3, 2.0))
        for name in names:
            length = len(jingle(name)) / RATE
            if at + length > dur - 0.2:
                break
            ad.plays.append(Play(name, round(at, 3), round(at + length, 3), round(-float(rng.uniform(0, 6)), 2)))
            at += length + float(rng.uniform(1.0, 4.0))
        ads.append(ad)
    return ads


def render(ad: SoundAd, seed: int) -> np.ndarray:
    """The ad's stereo sound track at :data:`RATE`: the bed, the voice-over from 0.5 s (the voice's
    RMS 8 dB over the bed), the jingles at ``gain_db`` against the voice."""
    n = int(round(ad.duration_s * RATE))
    mix = music_bed(ad.duration_s, RATE, seed) if ad.bed else np.zeros((2, n), np.float32)
    v = _voice(ad.slogan, ad.voice, 160, RATE)
    voice_rms = BED_RMS * 10 ** (8 / 20)
    v = v * voice_rms / max(float(np.sqrt(np.mean(v**2))), 1e-12)
    i = int(0.5 * RATE)
    mix[:, i : i + len(v)] += v[: n - i]
    for p in ad.plays:
        j = jingle(p.jingle)
        j = j * voice_rms * 10 ** (p.gain_db / 20) / max(float(np.sqrt(np.mean(j**2))), 1e-12)
        k = int(round(p.start_s * RATE))
        mix[:, k : k + len(j)] += j[: n - k]
    peak = float(np.abs(mix).max())
    if peak > 0.98:
        mix *= 0.98 / peak
    return np.ascontiguousarray(mix, np.float32)


def write_wav(path: Path, x: np.ndarray, sr: int = RATE) -> Path:
    """``x`` (mono float) as 16-bit PCM WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes())
    return path


def write_sound(path: Path, x: np.ndarray, sr: int = RATE) -> Path:
    """``x`` (mono float) as a sound file by ``path``'s suffix: ``.wav``, ``.mp3``, ``.m4a`` or ``.flac``."""
    if path.suffix == ".wav":
        return write_wav(path, x, sr)
    import av  # lazy: PyAV loads the FFmpeg libraries; only writing needs them  # noqa: PLC0415

    codec = {".mp3": "libmp3lame", ".m4a": "aac", ".flac": "flac"}[path.suffix]
    fmt = "s16" if codec == "flac" else "fltp"
    with av.open(str(path), mode="w") as out:
        st = out.add_stream(codec, rate=sr, layout="mono")
        if codec != "flac":
            st.bit_rate = 64000
        st.codec_context.time_base = Fraction(1, sr)
        for k in range(0, len(x), 1024):
            c = x[k : k + 1024][None]
            arr = (np.clip(c, -1, 1) * 32767).round().astype("<i2") if fmt == "s16" else np.ascontiguousarray(c)
            fr = av.AudioFrame.from_ndarray(arr, format=fmt, layout="mono")
            fr.sample_rate, fr.pts, fr.time_base = sr, k, Fraction(1, sr)
            for pkt in st.encode(fr):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path


def make_sound_ads(out_dir: str | Path, with_jingle: int = 30, without: int = 100, seed: int = 0) -> list[SoundAd]:
    """Write :func:`plan_sound_ads`'s set into ``out_dir/ads``, the queries into ``out_dir/queries``
    and the truth into ``out_dir/truth.json``. Deterministic for a seed (and an espeak-ng version).

    Raises:
        RuntimeError: espeak-ng is missing.
    """
    out = Path(out_dir)
    (out / "ads").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(parents=True, exist_ok=True)
    ads = plan_sound_ads(with_jingle, without, seed)
    for k, ad in enumerate(ads):
        plan = SpokenAd(ad.name, ad.duration_s, sound="speech", channels=2, sample_rate=RATE)
        write_ad(out / "ads" / ad.name, plan, seed * 1000 + k, audio=render(ad, seed * 1000 + k), codec=ad.codec)
    queries = {}
    for i, name in enumerate(QUERIED):
        queries[name] = [str(write_wav(out / "queries" / f"{name}.wav", jingle(name)).resolve())]
        if i == 0:
            for suffix in (".mp3", ".m4a", ".flac"):
                queries[name].append(str(write_sound(out / "queries" / f"{name}{suffix}", jingle(name)).resolve()))
    truth = {
        "seed": seed,
        "note": "start_s/end_s: where each jingle plays, seconds from the file's time 0",
        "layout": LAYOUTS[2],
        "queries": queries,
        "ads": [asdict(a) for a in ads],
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return ads


def main(argv: list[str] | None = None) -> int:
    """``python -m archive.bench.soundads DIR [--with N] [--without M] [--seed S]``."""
    ap = argparse.ArgumentParser(prog="python -m archive.bench.soundads", description=main.__doc__)
    ap.add_argument("dir", help="folder to write ads/, queries/ and truth.json into")
    ap.add_argument("--with", dest="with_jingle", type=int, default=30, help="ads with a queried jingle (30)")
    ap.add_argument("--without", type=int, default=100, help="ads without one (100)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = ap.parse_args(argv)
    if not espeak_available():
        print("espeak-ng is not installed: apt-get install -y espeak-ng", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    ads = make_sound_ads(args.dir, args.with_jingle, args.without, args.seed)
    print(
        json.dumps(
            {
                "dir": str(Path(args.dir).resolve()),
                "ads": len(ads),
                "plays": sum(p.jingle in QUERIED for a in ads for p in a.plays),
                "distractor_plays": sum(p.jingle in DISTRACTORS for a in ads for p in a.plays),
                "seconds": round(sum(a.duration_s for a in ads), 1),
                "elapsed_s": round(time.perf_counter() - t0, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
