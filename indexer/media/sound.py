"""Sound fingerprints: landmark hashes of a sound track, to find a sound (a jingle, a sound logo, a
voice-over) by example, wherever it plays, mixed under other sound.

The method is Avery Wang's, "An Industrial-Strength Audio Search Algorithm" (ISMIR 2003), the one
behind Shazam, audfprint and Dejavu; this is the project's own implementation, in numpy:

1. The sound, mono at :data:`RATE` Hz, becomes a magnitude spectrogram: frames of :data:`N_FFT`
   samples (64 ms, Hann window) every :data:`HOP` samples (16 ms, :data:`HOP_S`).
2. **Peaks**: the points of the log spectrogram that are the largest in their neighbourhood
   (±:data:`PEAK_DF` bins, ±:data:`PEAK_DT` frames) and within :data:`FLOOR_DB` of the loudest
   point of their second; at most :data:`PEAKS_PER_S` per second of sound, the strongest.
3. **Landmarks**: each peak (an anchor) is paired with up to :data:`FAN_OUT` later peaks at most
   :data:`MAX_DT` frames later and :data:`MAX_DF` bins away. A pair's hash packs the anchor's
   frequency bin (8 bits), the difference in frequency (7 bits) and in time (6 bits): 21 bits, kept
   with the anchor's time. A hash says nothing about loudness, and survives mixing, lossy codecs and
   a different sample rate, because peaks do.
4. **Matching** (:mod:`search.sound`): a query's hashes are looked up; each hit gives an offset
   (the anchor's time in the video minus its time in the query). Where the query plays, many hits
   share one offset; elsewhere, offsets scatter. The count of hits at one offset (±1 frame) is the
   evidence, and :mod:`search.sound` states the rule for "present".

What breaks it: changes of speed or pitch beyond about 2-3 % (peaks move to other bins and frames),
and sounds too short or too plain to give a few dozen landmarks (under about 1 s, or a pure tone).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from indexer.media.speech import SoundStats, sound_windows
from indexer.store.records import SOUND_HOP_S

RATE = 8_000  # samples per second fingerprinted (4 kHz of bandwidth holds a jingle's notes and a voice)
N_FFT = 512  # 64 ms frames
HOP_S = SOUND_HOP_S  # 16 ms between frames: the unit of the catalog's sound_hashes.t
HOP = int(round(RATE * HOP_S))  # 128 samples
BINS = 256  # frequency bins kept (1 .. 255: DC and Nyquist dropped): 8 bits
PEAK_DF = 16  # a peak is the largest within ±16 bins (±250 Hz) ...
PEAK_DT = 8  # ... and ±8 frames (±128 ms)
PEAKS_PER_S = 40  # at most this many peaks per second of sound, the strongest
FLOOR_DB = 60.0  # peaks quieter than the loudest point of their second by more than this are noise
FAN_OUT = 8  # landmarks per anchor, as stored
QUERY_FAN_OUT = 15  # ... and of a query (more pairs: more chances to meet the stored ones)
MAX_DT = 63  # frames (about 1 s): 6 bits
MAX_DF = 63  # bins: 7 bits with the sign
WINDOW_S = 300.0  # sound fingerprinted at once (bounded memory for hour-long files)


@dataclass
class Prints:
    """A sound's landmarks: ``hashes`` (int32, 21 bits) and their anchors' times ``t`` (int32,
    frames of :data:`HOP_S` seconds from the start of the sound, or of the video's clock)."""

    hashes: np.ndarray
    t: np.ndarray
    seconds: float = 0.0  # how much sound was fingerprinted
    stats: SoundStats = field(default_factory=SoundStats)

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def per_second(self) -> float:
        return len(self.hashes) / self.seconds if self.seconds else 0.0


def spectrogram(x: np.ndarray) -> np.ndarray:
    """Log magnitude (dB) of ``x`` (mono float at :data:`RATE`), shape ``(frames, BINS - 1)``:
    frame ``i`` starts at sample ``i * HOP``; column ``k`` is bin ``k + 1``."""
    x = np.asarray(x, np.float32)
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    mag = np.abs(np.fft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=1))[:, 1:BINS]
    return (20.0 * np.log10(mag + 1e-6)).astype(np.float32)


def _max_filter(s: np.ndarray, dt: int, df: int) -> np.ndarray:
    """The largest value within ±dt rows and ±df columns of each point (edges padded with -inf)."""
    out = s.copy()
    for axis, r in ((1, df), (0, dt)):
        src = out
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        p = np.pad(src, pad, constant_values=-np.inf)
        acc = src.copy()
        n = src.shape[axis]
        for k in range(2 * r + 1):
            sl = p[k : k + n] if axis == 0 else p[:, k : k + n]
            np.maximum(acc, sl, out=acc)
        out = acc
    return out


def peaks(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The constellation of a log spectrogram from :func:`spectrogram`: ``(t, f)`` of its peaks,
    sorted by time then frequency; ``f`` is the bin (1 .. 255)."""
    if not s.size:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    local = _max_filter(s, PEAK_DT, PEAK_DF)
    is_peak = (s >= local) & (s > -100.0)  # -100 dB: digital silence has no peaks
    per_block = max(1, int(round(1.0 / HOP_S)))
    ts, fs = np.nonzero(is_peak)
    if not len(ts):
        return ts.astype(np.int32), fs.astype(np.int32)
    block = ts // per_block
    loud = s[ts, fs]
    top = np.maximum.reduceat(loud, np.r_[0, np.flatnonzero(np.diff(block)) + 1])  # ts are sorted
    starts = np.r_[0, np.flatnonzero(np.diff(block)) + 1]
    top_of = np.repeat(top, np.diff(np.r_[starts, len(ts)]))
    keep = loud >= top_of - FLOOR_DB
    ts, fs, block, strength = ts[keep], fs[keep], block[keep], loud[keep]
    # the strongest PEAKS_PER_S of each second
    order = np.lexsort((-strength, block))
    ts, fs, block = ts[order], fs[order], block[order]
    first = np.r_[0, np.flatnonzero(np.diff(block)) + 1]
    rank = np.arange(len(block)) - np.repeat(first, np.diff(np.r_[first, len(block)]))
    sel = rank < PEAKS_PER_S
    ts, fs = ts[sel], fs[sel]
    order = np.lexsort((fs, ts))
    return ts[order].astype(np.int32), (fs[order] + 1).astype(np.int32)


def landmarks(t: np.ndarray, f: np.ndarray, fan_out: int = FAN_OUT) -> tuple[np.ndarray, np.ndarray]:
    """Hashes and anchor times of the peak pairs (see the module's step 3), in anchor order; each
    anchor paired with its first ``fan_out`` peaks in the target zone."""
    n = len(t)
    if n < 2:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    hashes, times = [], []
    taken = np.zeros(n, np.int32)
    for k in range(1, n):
        if taken.min() >= fan_out:
            break
        dt = t[k:] - t[:-k]
        if dt.min() > MAX_DT:
            break
        df = f[k:] - f[:-k]
        ok = (dt >= 1) & (dt <= MAX_DT) & (np.abs(df) <= MAX_DF) & (taken[: n - k] < fan_out)
        idx = np.flatnonzero(ok)
        if not len(idx):
            continue
        taken[idx] += 1
        hashes.append((f[idx] << 13) | ((df[idx] + 64) << 6) | dt[idx])
        times.append(t[idx])
    if not hashes:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    h = np.concatenate(hashes).astype(np.int32)
    tt = np.concatenate(times).astype(np.int32)
    order = np.argsort(tt, kind="stable")
    return h[order], tt[order]


def fingerprint(x: np.ndarray, start_s: float = 0.0, fan_out: int = FAN_OUT) -> tuple[np.ndarray, np.ndarray]:
    """Landmark hashes of ``x`` (mono float at :data:`RATE`) and their anchor times in frames of
    :data:`HOP_S`, counted from ``start_s`` (rounded to the nearest frame)."""
    t, f = peaks(spectrogram(x))
    h, tt = landmarks(t, f, fan_out)
    return h, tt + int(round(start_s / HOP_S))


def fingerprint_file(path: str | os.PathLike[str], stats: SoundStats | None = None) -> Prints:
    """Fingerprint the sound track of a video or sound file, in windows of :data:`WINDOW_S`
    (bounded memory), on the video's clock (as frames and words are). A file without sound gives no
    hashes (``stats.has_stream`` False); damaged packets are counted in ``stats``.

    Raises:
        VideoOpenError: the file cannot be opened as a media file.
    """
    stats = stats if stats is not None else SoundStats()
    hs, ts = [], []
    seconds = 0.0
    for start, x in _windows(path, stats):
        h, t = fingerprint(x, start)
        hs.append(h)
        ts.append(t)
        seconds += len(x) / RATE
    if not hs:
        return Prints(np.zeros(0, np.int32), np.zeros(0, np.int32), 0.0, stats)
    return Prints(np.concatenate(hs), np.concatenate(ts), seconds, stats)


def _windows(path: str | os.PathLike[str], stats: SoundStats) -> Iterator[tuple[float, np.ndarray]]:
    """The sound as windows of at most :data:`WINDOW_S` (+ the quiet cut's search) at :data:`RATE`,
    each with MAX_DT frames of the next one's start overlapping so that no pair across a cut is lost."""
    # A cut loses the pairs that straddle it (at most one second's landmarks per cut): at five
    # minutes a window, that is under 0.4 % of an hour's landmarks.
    yield from sound_windows(path, stats, window_s=WINDOW_S, cut_search_s=5.0, rate=RATE)


def read_query(
    path: str | os.PathLike[str], start_s: float | None = None, end_s: float | None = None
) -> tuple[np.ndarray, float, SoundStats]:
    """The sound of a query file (``start_s``..``end_s`` of it, None: from the start / to the end)
    as one mono array at :data:`RATE`, its length in seconds, and what decoding found.

    Raises:
        VideoOpenError: the file cannot be opened as a media file.
    """
    stats = SoundStats()
    parts: list[np.ndarray] = []
    origin: float | None = None
    for s, x in sound_windows(path, stats, window_s=WINDOW_S, cut_search_s=5.0, rate=RATE):
        origin = s if origin is None else origin  # windows follow each other without a gap
        parts.append(x)
        if end_s is not None and s + len(x) / RATE >= end_s:
            break
    x = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    o = origin or 0.0
    a = 0 if start_s is None else max(0, int(round((start_s - o) * RATE)))
    b = len(x) if end_s is None else max(a, int(round((end_s - o) * RATE)))
    x = x[a:b]
    return x, len(x) / RATE, stats
