"""Ad-like test videos with a sound track and known truth, for the speech feature's tests and benchmark:
slogans spoken by espeak-ng at known moments over a synthetic music bed, plus music-only ads, an ad
of digital silence and an ad with no audio stream at all.

The pictures are plain moving colour frames (320x180 at 25 fps, a new look every 2-5 s) so a set
is written in seconds; nothing here reads ``tests/data``. The sound is rendered with numpy:
:func:`music_bed` (chord pads, a bass line and a soft click track) and :func:`synth_speech`
(espeak-ng, trimmed to its first and last voiced sample, so a phrase's ``start_s`` is the moment
its voice begins, to the sample). Speech is mixed ``snr_db`` above the bed (RMS of the voiced
phrase over RMS of the bed). With 6 channels (5.1, FFmpeg order FL FR FC LFE BL BR) the voice is
in the centre channel only, as broadcast dialogue is, and the bed in the others.

Times: the truth's seconds are positions in the rendered track, which starts at the file's time 0.
FFmpeg's AAC encoder puts 1024 samples of priming in front (the first packet has pts -1024); the
MP4/M4A muxer writes an edit list and FFmpeg's decoder drops the priming, so PyAV's first decoded
audio frame has pts 0 and audio placed by ``frame.pts``/``frame.time`` lines up with the truth to the
sample (measured: cross-correlation lag 0 at 8-96 kHz, 1/2/6 channels; PyAV's ``AudioResampler`` to
16 kHz mono adds no lag either). A reader that ignores edit lists hears every phrase 1024 samples
late (21 ms at 48 kHz, 128 ms at 8 kHz). The decoded track is up to one AAC frame longer than
``duration_s`` (the last frame's padding is not cut). MP3 (:func:`write_audio_only`) differs: the
decoder drops the 1105 samples of encoder and decoder delay but FFmpeg still stamps the first frame
at 1105 samples (25 ms at 44.1 kHz, 69 ms at 16 kHz), so there the truth holds for samples counted
from the first decoded one, not for ``frame.time``. Onsets measured in the decoded files (energy of
decoded minus the rendered bed): within 10 ms of ``start_s``, up to 45 ms for a phrase that opens
on a weak fricative at 8 or 96 kHz; energy 3 dB above the bed in the mix comes 0-100 ms late.

One module, past 500 lines, because its parts share one truth: the sound rendered here is what the
files hold and what ``truth.json`` states (a split would put the sound, :func:`synth_speech` to
:func:`render_audio`, in a module of its own).

``python -m archive.bench.speechads DIR [--n N] [--seed S]`` writes :func:`make_speech_ads`'s set and
``DIR/truth.json``, and prints a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

SIZE = (320, 180)  # width, height of the generated pictures
FPS = 25
BED_RMS = 0.05  # the music bed's RMS (-26 dBFS) in the mono mix
SNR_DB = (6.0, 10.0)  # a speech ad's voice is this many dB above its bed (drawn per ad)
RATE_WPM = (150, 170)  # espeak-ng speaking rate, words per minute (drawn per phrase)
TRIM_DB = -40.0  # synth_speech keeps from the first to the last sample above this, relative to the peak
SOUNDS = ("speech", "music", "silence", "none")
LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
# English voices of espeak-ng 1.51+ that need no MBROLA data; "+f3"/"+m7" are variants (pitch, formants).
VOICES = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en+f3", "en+m7", "en-us+f2")
# Where the set's ads take their format from, in turn: (channels, sample rate).
FORMATS = ((2, 48000), (1, 16000), (2, 44100), (6, 48000), (1, 8000), (2, 96000), (1, 44100), (6, 44100))
# Ad phrases (some famous, two made-up brands, prices in words), " / " between them.
SLOGANS = tuple(
    " / ".join(
        [
            "drink responsibly / just do it / terms and conditions apply / available now at your local store",
            "the best a man can get / every little helps / only nine ninety nine / because you're worth it",
            "finger lickin' good / I'm lovin' it / have a break, have a kit kat / red bull gives you wings",
            "taste the rainbow / think different / open happiness / the ultimate driving machine",
            "save money, live better / melts in your mouth, not in your hands / order today and get free delivery",
            "call now, lines are open twenty four hours / new and improved formula / half price this weekend only",
            "buy one, get one free / see in store for details / visit our website to find out more",
            "your home may be repossessed if you do not keep up repayments / Zentora, the smarter way to bank",
            "Kolvex, power for your day / fresh from the oven every morning / now with twice the flavour",
            "made with real fruit juice / ask your pharmacist for advice / the offer ends on Sunday",
            "prices start from just forty nine pounds / download the app today / because every journey matters",
        ]
    ).split(" / ")
)


@dataclass(frozen=True)
class Said:
    """One phrase spoken from ``start_s`` (its first voiced sample) to ``end_s`` (its last), in seconds."""

    text: str
    voice: str
    start_s: float
    end_s: float
    rate_wpm: int = 160


@dataclass
class SpokenAd:
    """What one generated ad holds. ``sound`` is ``speech`` (the phrases, over the bed when ``bed``),
    ``music`` (the bed alone), ``silence`` (an audio stream of digital zeros) or ``none`` (no audio
    stream). ``name`` is the file name; ``audio_codec`` is filled in by :func:`write_ad`."""

    name: str
    duration_s: float
    phrases: list[Said] = field(default_factory=list)
    bed: bool = True
    sound: str = "speech"
    channels: int = 2
    sample_rate: int = 48000
    snr_db: float = 8.0
    audio_codec: str | None = None


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program is on the PATH."""
    return shutil.which("espeak-ng") is not None


def synth_speech(text: str, voice: str, rate_wpm: int | None = None) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng's ``voice`` at ``rate_wpm`` words per minute (espeak's default
    when None). Returns mono float32 samples in [-1, 1] and their rate (22050 Hz), trimmed to the
    first and last sample above :data:`TRIM_DB` of the peak, so sample 0 is where the voice begins.

    Raises:
        RuntimeError: espeak-ng is not installed, fails, or says nothing.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install -y espeak-ng (or brew install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        cmd = [exe, "-v", voice, "-w", str(out)] + (["-s", str(int(rate_wpm))] if rate_wpm else []) + [text]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"espeak-ng -v {voice} failed: {done.stderr.strip() or done.returncode}")
        with wave.open(str(out)) as w:
            sr, width, nch = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    if width != 2:
        raise RuntimeError(f"espeak-ng wrote {8 * width}-bit samples; 16-bit expected")
    x = np.frombuffer(raw, "<i2").reshape(-1, nch).mean(axis=1).astype(np.float32) / 32768.0
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak == 0.0:
        raise RuntimeError(f"espeak-ng -v {voice} produced no sound for {text!r}")
    loud = np.flatnonzero(np.abs(x) >= peak * 10 ** (TRIM_DB / 20))
    return np.ascontiguousarray(x[loud[0] : loud[-1] + 1]), sr


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """``x`` (1-D) at ``sr_to``, by zero-phase FFT resampling (no delay: onsets stay where they are);
    the signal is padded with silence first so its ends do not wrap around."""
    if sr_from == sr_to:
        return x.astype(np.float32)
    pad = sr_from // 10
    y = np.concatenate([np.zeros(pad, np.float32), x, np.zeros(pad, np.float32)])
    n_out = int(round(len(y) * sr_to / sr_from))
    spec = np.fft.rfft(y)
    keep = min(len(spec), n_out // 2 + 1)
    out_spec = np.zeros(n_out // 2 + 1, dtype=complex)
    out_spec[:keep] = spec[:keep]
    out = np.fft.irfft(out_spec, n_out) * (n_out / len(y))
    start = int(round(pad * sr_to / sr_from))
    return out[start : start + int(round(len(x) * sr_to / sr_from))].astype(np.float32)


def music_bed(seconds: float, sr: int, seed: int, rms: float = BED_RMS) -> np.ndarray:
    """A synthetic music bed, stereo float32 of shape (2, n), with RMS ``rms`` over both channels:
    chord pads (a four-chord loop in a seeded key, slow attack and release, panned apart), a bass
    line on the chords' roots in eighth notes, and a soft click track (a tick on every beat, a
    quieter one off the beat). The tempo (84-128 bpm), key, progression and timbre follow ``seed``."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    bpm = float(rng.uniform(84, 128))
    beat = 60.0 / bpm
    key = 45 + int(rng.integers(0, 12))  # MIDI note of the key's root, A2..G#3
    loops = ((0, 5, 7, 0), (0, 9, 5, 7), (0, 7, 9, 5), (0, 3, 8, 7), (0, 5, 3, 7))
    prog = loops[int(rng.integers(0, len(loops)))]
    minor = bool(rng.random() < 0.4)
    bar = 4 * beat
    harmonics = rng.uniform(0.1, 0.5, size=3)
    left, right = np.zeros(n), np.zeros(n)
    bass = np.zeros(n)
    for b in range(int(np.ceil(seconds / bar))):
        root = key + prog[b % len(prog)]
        i0, i1 = int(b * bar * sr), min(n, int((b + 1) * bar * sr))
        if i0 >= n:
            break
        tt = t[i0:i1] - t[i0]
        env = np.minimum(1.0, tt / 0.25) * np.minimum(1.0, (bar - tt) / 0.3)  # attack, release
        for k, step in enumerate((0, 3 if minor else 4, 7, 12)):
            f = 440.0 * 2 ** ((root + 12 + step - 69) / 12)
            tone = np.sin(2 * np.pi * f * tt) + sum(
                h * np.sin(2 * np.pi * f * (j + 2) * tt) for j, h in enumerate(harmonics)
            )
            pan = 0.3 + 0.4 * (k % 2)
            left[i0:i1] += (1 - pan) * env * tone
            right[i0:i1] += pan * env * tone
        fb = 440.0 * 2 ** ((root - 12 - 69) / 12)
        for e in range(8):  # eighth notes, the root or its fifth
            j0, j1 = i0 + int(e * beat / 2 * sr), min(i1, i0 + int((e + 1) * beat / 2 * sr))
            if j0 >= j1:
                continue
            ft = fb * (1.5 if e in (3, 7) else 1.0)
            te = t[j0:j1] - t[j0]
            note = np.sin(2 * np.pi * ft * te) + 0.3 * np.sin(4 * np.pi * ft * te)
            bass[j0:j1] += note * np.exp(-te * 6.0) * np.minimum(1.0, te / 0.005)
    clicks = np.zeros(n)
    click_len = int(0.03 * sr)
    burst = rng.standard_normal(click_len) * np.exp(-np.arange(click_len) / (0.004 * sr))
    burst = np.diff(burst, prepend=0.0)  # a high-passed tick
    for k in range(int(seconds / (beat / 2)) + 1):
        i = int(k * beat / 2 * sr)
        if i + click_len <= n:
            clicks[i : i + click_len] += burst * (1.0 if k % 2 == 0 else 0.4)
    bed = np.stack([left + 0.8 * bass + 0.15 * clicks, right + 0.8 * bass + 0.15 * clicks])
    bed *= rms / max(float(np.sqrt(np.mean(bed**2))), 1e-12)
    return bed.astype(np.float32)


def render_audio(plan: SpokenAd, seed: int) -> np.ndarray:
    """The ad's sound track, float32 of shape (channels, n) at ``plan.sample_rate``: the bed (when
    ``plan.bed``, and for ``music``), each phrase from ``start_s`` at ``snr_db`` above it (voiced RMS
    over :data:`BED_RMS`), zeros for ``silence``. Raises ValueError for ``none`` or an unknown layout."""
    if plan.sound not in SOUNDS or plan.sound == "none":
        raise ValueError(f"{plan.name}: sound {plan.sound!r} has no audio track to render")
    if plan.channels not in LAYOUTS:
        raise ValueError(f"{plan.name}: {plan.channels} channels; supported: {sorted(LAYOUTS)}")
    sr = plan.sample_rate
    n = int(round(plan.duration_s * sr))
    bed = np.zeros((2, n), np.float32)
    if plan.sound == "music" or (plan.sound == "speech" and plan.bed):
        bed = music_bed(plan.duration_s, sr, seed)
    voice = np.zeros(n, np.float32)
    if plan.sound == "speech":
        for said in plan.phrases:
            x = _voice(said.text, said.voice, said.rate_wpm, sr)
            x = x * BED_RMS * 10 ** (plan.snr_db / 20) / max(float(np.sqrt(np.mean(x**2))), 1e-12)
            i = int(round(said.start_s * sr))
            voice[i : i + len(x)] += x[: n - i]
    if plan.channels == 1:
        out = (bed.mean(axis=0) + voice)[None]
    elif plan.channels == 2:
        out = bed + voice
    else:  # 5.1: FL FR FC LFE BL BR; the voice in the centre only
        lfe = np.convolve(bed.mean(axis=0), np.ones(max(1, sr // 200)) / max(1, sr // 200), mode="same")
        out = np.stack([bed[0], bed[1], 0.5 * bed.mean(axis=0) + voice, lfe, 0.5 * bed[0], 0.5 * bed[1]])
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 0.98:
        out *= 0.98 / peak  # rare: keep the voice's peaks off the rails; the SNR is unchanged
    return np.ascontiguousarray(out, dtype=np.float32)


class _Look:
    """One shot's picture: a two-colour gradient drifting sideways, with a box moving across it."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]) -> None:
        w, h = size
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        self.period = int(round(2 * np.pi / 6 * w))  # the gradient repeats every this many pixels
        x = np.arange(w + self.period) / w
        y = np.arange(h) / h
        g = 0.5 + 0.5 * np.sin(6 * x[None, :] + 2 * y[:, None])
        self.strip = (c0 + (c1 - c0) * g[..., None]).astype(np.uint8)
        self.box_colour = (255 - c0).astype(np.uint8)
        self.speed = float(rng.uniform(0.5, 4.0))  # pixels per frame
        self.box, self.vel = rng.uniform(0, 200, 2), rng.uniform(-3, 3, 2)
        self.size = size

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (counted from the start of the video), RGB uint8."""
        w, h = self.size
        off = int(i * self.speed) % self.period
        img = self.strip[:, off : off + w].copy()
        bx, by = int((self.box[0] + self.vel[0] * i) % (w - 40)), int((self.box[1] + self.vel[1] * i) % (h - 40))
        img[by : by + 40, bx : bx + 40] = self.box_colour
        return img


def _codec_for(container_ext: str, sr: int, channels: int) -> tuple[str, str]:
    """(audio codec, file suffix) PyAV can write at ``sr`` and ``channels``: AAC in MP4 where FFmpeg's
    encoder takes the rate (7350-96000 Hz), else 16-bit PCM in Matroska."""
    import av  # lazy: PyAV loads the FFmpeg libraries; only writing needs them  # noqa: PLC0415

    rates = av.Codec("aac", "w").audio_rates or ()
    if sr in rates and channels in LAYOUTS:
        return "aac", container_ext
    return "pcm_s16le", ".mkv"


def write_ad(
    path: str | Path, plan: SpokenAd, seed: int, audio: np.ndarray | None = None, codec: str | None = None
) -> Path:
    """Write ``plan`` as a video: H.264 at 25 fps, :data:`SIZE`, and (unless ``sound`` is ``none``)
    one audio stream of ``plan.channels`` at ``plan.sample_rate``, AAC in MP4. A rate FFmpeg's AAC
    encoder refuses is written as PCM in a ``.mkv`` next to ``path`` instead. Audio and video packets
    are interleaved every frame. Sets ``plan.audio_codec``; returns the path written. ``audio``: the
    sound track to write, ``(channels, n)`` float32 (None: :func:`render_audio`'s); ``codec``:
    ``aac`` or ``mp3`` (libmp3lame), at 64 kbit/s per channel at most (None: as above)."""
    import av  # lazy: PyAV loads the FFmpeg libraries; only writing needs them  # noqa: PLC0415

    path = Path(path)
    if audio is None and plan.sound != "none":
        audio = render_audio(plan, seed)
    if audio is not None and codec is not None:
        path = path.with_suffix(path.suffix or ".mp4")
        codec = "libmp3lame" if codec == "mp3" else codec
    elif audio is not None:
        codec, suffix = _codec_for(path.suffix, plan.sample_rate, plan.channels)
        path = path.with_suffix(suffix)
    plan.audio_codec = codec
    rng = np.random.default_rng(seed + 7919)
    n_frames = int(round(plan.duration_s * FPS))
    w, h = SIZE
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.time_base = Fraction(1, FPS)
        vs.options = {"preset": "veryfast", "crf": "26"}
        ast = None
        if audio is not None:
            sr = plan.sample_rate
            ast = out.add_stream(codec, rate=sr, layout=LAYOUTS[plan.channels])
            if codec in ("aac", "libmp3lame"):
                ast.bit_rate = min(64000, 4 * sr) * (plan.channels if codec == "aac" else 1)
            ast.codec_context.time_base = Fraction(1, sr)
        fmt = {"aac": "fltp", "libmp3lame": "fltp"}.get(codec or "", "s16")
        sent = 0
        look, look_end = _Look(rng, SIZE), int(rng.integers(2 * FPS, 5 * FPS))
        for i in range(n_frames):
            if i >= look_end:  # a new look every 2-5 s (a cut)
                look, look_end = _Look(rng, SIZE), i + int(rng.integers(2 * FPS, 5 * FPS))
            frame = av.VideoFrame.from_ndarray(look.frame(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in vs.encode(frame):
                out.mux(packet)
            if ast is not None:
                upto = audio.shape[1] if i == n_frames - 1 else int(round((i + 1) * plan.sample_rate / FPS))
                sent = _send_audio(out, ast, audio, sent, upto, fmt, plan)
        for packet in vs.encode():
            out.mux(packet)
        if ast is not None:
            for packet in ast.encode():
                out.mux(packet)
    return path


def _send_audio(out: Any, ast: Any, audio: np.ndarray, sent: int, upto: int, fmt: str, plan: SpokenAd) -> int:
    """Encode ``audio[:, sent:upto]`` in 1024-sample frames (the last one may be shorter) and mux them."""
    import av  # lazy: PyAV loads the FFmpeg libraries; only writing needs them  # noqa: PLC0415

    step = 1024
    while sent < upto and (upto - sent >= step or upto == audio.shape[1]):
        chunk = audio[:, sent : min(sent + step, upto)]
        if fmt == "s16":
            arr = (np.clip(chunk, -1, 1) * 32767).round().astype("<i2").T.reshape(1, -1)
        else:
            arr = np.ascontiguousarray(chunk)
        frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout=LAYOUTS[plan.channels])
        frame.sample_rate = plan.sample_rate
        frame.pts, frame.time_base = sent, Fraction(1, plan.sample_rate)
        for packet in ast.encode(frame):
            out.mux(packet)
        sent += chunk.shape[1]
    return sent


def write_audio_only(path: str | Path, plan: SpokenAd, seed: int = 0) -> Path:
    """Write ``plan``'s sound track alone, by ``path``'s suffix: ``.wav`` (16-bit PCM, the ``wave``
    module), ``.m4a`` (AAC in MP4) or ``.mp3`` (MP3 via libmp3lame: 1-2 channels, 8000-48000 Hz).

    Raises:
        ValueError: an unknown suffix, ``sound="none"``, or a format the encoder cannot take.
        RuntimeError: this PyAV build has no MP3 encoder.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".wav", ".m4a", ".mp3"):
        raise ValueError(f"{path}: write .wav, .m4a or .mp3")
    audio = render_audio(plan, seed)
    sr = plan.sample_rate
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".wav":
        pcm = (np.clip(audio, -1, 1) * 32767).round().astype("<i2").T
        with wave.open(str(path), "wb") as w:
            w.setnchannels(plan.channels)
            w.setsampwidth(2)
            w.setframerate(sr)
            w.writeframes(pcm.tobytes())
        plan.audio_codec = "pcm_s16le"
        return path
    import av  # lazy: PyAV loads the FFmpeg libraries; only writing needs them  # noqa: PLC0415

    if suffix == ".mp3":
        try:
            codec = av.Codec("libmp3lame", "w")
        except Exception as exc:  # noqa: BLE001  # any lookup failure means: no MP3 encoder in this build
            raise RuntimeError(f"this PyAV build has no MP3 encoder (libmp3lame): {exc}") from exc
        if sr not in (codec.audio_rates or ()) or plan.channels > 2:
            raise ValueError(f"{path}: MP3 takes 1-2 channels at {sorted(codec.audio_rates or ())} Hz")
        name, fmt = "libmp3lame", "fltp"
    else:
        name, fmt = "aac", "fltp"
        if sr not in (av.Codec("aac", "w").audio_rates or ()):
            raise ValueError(f"{path}: FFmpeg's AAC encoder does not take {sr} Hz")
    with av.open(str(path), mode="w") as out:
        ast = out.add_stream(name, rate=sr, layout=LAYOUTS[plan.channels])
        ast.bit_rate = min(64000, 4 * sr) * plan.channels
        ast.codec_context.time_base = Fraction(1, sr)
        _send_audio(out, ast, audio, 0, audio.shape[1], fmt, plan)
        for packet in ast.encode():
            out.mux(packet)
    plan.audio_codec = name
    return path


@dataclass
class DamagedAudio:
    """What :func:`write_damaged_audio` overwrote: audio packets ``first``..``last`` (by decode order),
    covering ``start_s`` to ``end_s`` of the audio stream."""

    path: Path
    packets: int
    first: int
    last: int
    start_s: float
    end_s: float


def write_damaged_audio(
    src: str | Path, dst: str | Path, span: tuple[float, float] = (0.4, 0.6), seed: int = 0
) -> DamagedAudio:
    """Copy ``src`` (an MP4 :func:`write_ad` wrote) to ``dst`` with the audio packets in the ``span``
    fraction of the audio stream overwritten by seeded random bytes, in place (the container's
    tables are untouched, so the file still opens and every video packet is intact). Decoding the
    audio yields everything before the damage, sample for sample; each damaged packet fails with
    ``av.error.InvalidDataError`` (so a loop over ``container.decode(audio=0)`` stops at the first
    one: decode packet by packet to carry on), and the decoder recovers after them.

    Raises:
        ValueError: ``src`` has no audio stream.
    """
    import av  # lazy: PyAV loads the FFmpeg libraries; only reading packets needs them  # noqa: PLC0415

    src, dst = Path(src), Path(dst)
    with av.open(str(src)) as inp:
        if not inp.streams.audio:
            raise ValueError(f"{src}: no audio stream to damage")
        ast = inp.streams.audio[0]
        found = [(p.pos, p.size, float(p.pts * p.time_base)) for p in inp.demux(ast) if p.size and p.pos is not None]
    if not found:
        raise ValueError(f"{src}: the audio stream has no packets")
    a, b = int(len(found) * span[0]), max(int(len(found) * span[0]) + 1, int(len(found) * span[1]))
    rng = np.random.default_rng(seed)
    data = bytearray(src.read_bytes())
    for pos, size, _ in found[a:b]:
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))
    end = found[b][2] if b < len(found) else found[-1][2]
    return DamagedAudio(dst, b - a, a, b - 1, max(0.0, found[a][2]), end)


@functools.lru_cache(maxsize=256)
def _voice(text: str, voice: str, rate_wpm: int, sr: int) -> np.ndarray:
    """:func:`synth_speech` at ``sr``, trimmed again after resampling (a fricative's first samples may
    lie above the new Nyquist frequency), so sample 0 is still the first voiced one. Read-only."""
    x, sr0 = synth_speech(text, voice, rate_wpm)
    x = resample(x, sr0, sr)
    peak = float(np.abs(x).max())
    loud = np.flatnonzero(np.abs(x) >= peak * 10 ** (TRIM_DB / 20))
    x = np.ascontiguousarray(x[loud[0] : loud[-1] + 1])
    x.setflags(write=False)
    return x


def plan_speech_ads(n: int = 12, seed: int = 0) -> tuple[list[SpokenAd], list[str]]:
    """The plans of :func:`make_speech_ads`'s set, and slogans said in none of them (for queries that
    must find nothing). ``n - 4`` speech ads (at least one), then two music-only ads, one of digital
    silence and one with no audio stream, as far as ``n`` allows, in a seeded order under neutral
    names (``spot_00.mp4``...). A speech ad lasts 15-30 s and says 1-3 slogans, each in one of
    :data:`VOICES`, starting on a 10 ms grid, 1-3 s apart; one slogan recurs in two ads (a tagline),
    every other one is said in one ad only. One speech ad in four has no bed (the voice over
    digital silence). Formats cycle through :data:`FORMATS`."""
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = np.random.default_rng(seed)
    kinds = (["speech"] * max(1, n - 4) + ["music", "music", "silence", "none"])[:n]
    order = rng.permutation(n)
    slogans = [SLOGANS[i] for i in rng.permutation(len(SLOGANS))]
    n_speech = kinds.count("speech")
    tagline = slogans.pop() if n_speech >= 2 else None
    tagline_ads = set(rng.choice(n_speech, 2, replace=False).tolist()) if tagline else set()
    fmt0 = int(rng.integers(0, len(FORMATS)))
    plans: list[SpokenAd] = []
    k_speech = 0
    for slot, kind in enumerate(kinds):
        channels, sr = FORMATS[(fmt0 + slot) % len(FORMATS)]
        ad = SpokenAd(
            name=f"spot_{int(order[slot]):02d}.mp4",
            duration_s=round(float(rng.uniform(15, 30)) * FPS) / FPS,
            sound=kind,
            bed=kind == "music" or (kind == "speech" and k_speech % 4 != 3),
            channels=channels,
            sample_rate=sr,
            snr_db=round(float(rng.uniform(*SNR_DB)), 1) if kind == "speech" else 0.0,
        )
        if kind == "speech":
            texts = [slogans.pop() for _ in range(int(rng.integers(1, 4)))]
            if k_speech in tagline_ads:
                texts.insert(int(rng.integers(0, len(texts) + 1)), tagline)
            t = round(float(rng.uniform(0.8, 3.0)), 2)
            for text in texts:
                voice = VOICES[int(rng.integers(0, len(VOICES)))]
                wpm = int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1))
                length = len(_voice(text, voice, wpm, sr)) / sr
                if t + length > ad.duration_s - 0.5:
                    if text == tagline:
                        tagline_ads.discard(k_speech)
                    else:
                        slogans.insert(0, text)  # does not fit: unsaid, still unused elsewhere
                    continue
                ad.phrases.append(Said(text, voice, t, round(t + length, 6), wpm))
                t = round(t + length + float(rng.uniform(1.0, 3.0)), 2)
            k_speech += 1
        plans.append(ad)
    plans.sort(key=lambda p: p.name)
    return plans, slogans[:8]


def make_speech_ads(out_dir: str | Path, n: int = 12, seed: int = 0) -> list[SpokenAd]:
    """Write :func:`plan_speech_ads`'s set into ``out_dir`` and its truth as ``out_dir/truth.json``:
    every ad's plan (``name``, ``sound``, ``bed``, ``channels``, ``sample_rate``, ``snr_db``,
    ``audio_codec``, ``phrases`` with ``text``, ``voice``, ``start_s``, ``end_s``), where each phrase
    is said (``said_in``: text -> names) and ``never_said`` slogans. Deterministic for a seed (and an
    espeak-ng version). Returns the plans.

    Raises:
        RuntimeError: espeak-ng is missing (the set needs it when it has a speech ad).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans, unsaid = plan_speech_ads(n, seed)
    for k, plan in enumerate(plans):
        written = write_ad(out / plan.name, plan, seed * 1000 + k)
        plan.name = written.name
    said_in: dict[str, list[str]] = {}
    for plan in plans:
        for s in plan.phrases:
            said_in.setdefault(s.text, []).append(plan.name)
    truth = {
        "seed": seed,
        "fps": FPS,
        "size": list(SIZE),
        "note": "start_s/end_s: first/last voiced sample of each phrase, seconds from the file's time 0",
        "ads": [asdict(p) for p in plans],
        "said_in": said_in,
        "never_said": unsaid,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return plans


def main(argv: list[str] | None = None) -> int:
    """``python -m archive.bench.speechads DIR [--n N] [--seed S]``: write the set, print a JSON line."""
    ap = argparse.ArgumentParser(prog="python -m archive.bench.speechads", description=main.__doc__)
    ap.add_argument("dir", help="folder to write the ads and truth.json into")
    ap.add_argument("--n", type=int, default=12, help="number of ads (default 12)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = ap.parse_args(argv)
    if not espeak_available():
        print("espeak-ng is not installed: apt-get install -y espeak-ng", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    plans = make_speech_ads(args.dir, args.n, args.seed)
    summary = {
        "dir": str(Path(args.dir).resolve()),
        "ads": len(plans),
        "by_sound": {s: sum(p.sound == s for p in plans) for s in SOUNDS},
        "phrases": sum(len(p.phrases) for p in plans),
        "seconds": round(sum(p.duration_s for p in plans), 2),
        "elapsed_s": round(time.perf_counter() - t0, 2),
        "truth": str(Path(args.dir).resolve() / "truth.json"),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
