"""Every setting and default in one place: the ``ARCHIVE_*`` environment variables, the defaults
of the CLI, the API and the server, and the checks on user-given values (one wording each).

No other module reads an ``ARCHIVE_*`` variable or repeats a default. Every variable this module
reads is listed once in :data:`VARIABLES` (name, default, meaning); the settings reference of the
docs (``docs/reference/settings.md``) is generated from it, and ``tests/test_docs.py`` checks that
it names every ``ARCHIVE_*`` variable the code mentions. A command-line option wins over its
variable, except ``--precision auto``, which defers to ``ARCHIVE_PRECISION``.

Values are read when asked for (not at import), so a test or a notebook can change them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import NothingToSearch, QueryError, UsageError

DEFAULT_STORE = "data"
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_FPS = 2.0  # samples per second of video time
MAX_FPS = 1000.0
DEFAULT_BATCH = 32  # frames per model call
DEFAULT_TOP = 20  # videos per query
DEFAULT_PRECISION = "auto"
PRECISIONS = ("auto", "bf16", "fp32")
DEFAULT_DEVICE = "auto"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
COMMIT_INTERVAL_S = 5.0
DEFAULT_DECODERS = 2
BF16_SCAN_FRAMES = 50_000
IVF_FRAMES = 2_000_000  # brute force (bf16) took 94 ms at 1M frames here: past 2M it leaves the 150 ms goal
IVF_NPROBE = 64
SPEECH_MODEL = "base"  # Whisper base, offline from its two data wheels; real-time factor 0.35 (docs/speech.md)
OCR_SIDE = 360  # 20 px text at 360p stays 20 px; 12 px still reads (indexer.media.ocr); cost grows with pixels
# Comparing a new video for shared footage scans the whole archive exactly until it has an IVF
# index: about 2.3 s a video at 1M frames, 1.1 s at 500k (a tenth of a 30 s clip's index run).
MATCH_IVF_FRAMES = 500_000
IVF_RETRAIN_GROWTH = 4.0  # `archive optimize` retrains when the archive is this many times the trained one


@dataclass(frozen=True)
class Variable:
    """One ``ARCHIVE_*`` environment variable: its name, its default as a user reads it, and what it sets."""

    name: str
    default: str
    meaning: str


# Every ARCHIVE_* variable this module reads, in the order a user meets them. The docs' settings
# reference is generated from this tuple (docs/gen_ref.py); tests/test_docs.py checks it against the code.
VARIABLES: tuple[Variable, ...] = (
    Variable(
        "ARCHIVE_TOKEN",
        "none",
        "`archive serve`: the token every request must carry (as `--token`; not shown in the process "
        "list); required to listen beyond this machine unless `--no-auth`",
    ),
    Variable(
        "ARCHIVE_STORE",
        f"./{DEFAULT_STORE}",
        "the store folder; `archive search` and `archive serve` also take several, joined by the path "
        "separator (`A:B`), other commands then ask for `--store DIR`",
    ),
    Variable("ARCHIVE_MODEL", f"the store's, else {DEFAULT_MODEL}", "open_clip model for a new store"),
    Variable(
        "ARCHIVE_PRETRAINED",
        f"the store's, else {DEFAULT_PRETRAINED}",
        "weights: an open_clip tag, a checkpoint file, or `none` (random weights, for tests and offline demos)",
    ),
    Variable(
        "ARCHIVE_MODEL_DIR", "open_clip's own (~/.cache/huggingface)", "where open_clip caches downloaded weights"
    ),
    Variable(
        "ARCHIVE_CACHE_DIR",
        "$XDG_CACHE_HOME/archive, else ~/.cache/archive",
        "this tool's cache: the exported text and image towers",
    ),
    Variable(
        "ARCHIVE_TEXT_TOWER",
        "auto",
        "`auto`: texts are embedded by the numpy export of the text tower where one was verified; "
        "`torch`: always by open_clip's own text tower",
    ),
    Variable(
        "ARCHIVE_IMAGE_TOWER",
        "auto",
        "`auto`: images are embedded by the saved TorchScript export of the image tower where one was "
        "verified; `torch`: always build the open_clip model",
    ),
    Variable(
        "ARCHIVE_PRECISION",
        DEFAULT_PRECISION,
        "image tower precision: `auto` (bf16 where the hardware does it natively, else fp32), `bf16` or "
        "`fp32`; `--precision auto` defers to it",
    ),
    Variable(
        "ARCHIVE_SHOTS",
        "auto",
        "shot detector: `auto` (TransNetV2 where its package is installed), `transnet` or `fast`",
    ),
    Variable(
        "ARCHIVE_COMMIT_INTERVAL_S", f"{COMMIT_INTERVAL_S:g}", "seconds finished videos wait at most for their commit"
    ),
    Variable("ARCHIVE_DECODERS", str(DEFAULT_DECODERS), "videos decoded at once while indexing (at least 1)"),
    Variable(
        "ARCHIVE_EARLY_DECODE",
        "process",
        "`process`: the videos that start decoding while the model loads are decoded in a child process; "
        "`thread`: in the index run's own process",
    ),
    Variable(
        "ARCHIVE_OCR",
        "the store's choice (off for a new store)",
        "`1` (or true, yes, on): read on-screen text while indexing, as `--ocr`; `0` (or false, no, off): "
        "do not, even in a store that does",
    ),
    Variable(
        "ARCHIVE_OCR_SIDE",
        str(OCR_SIDE),
        "short side, in pixels, that frames are read at for on-screen text (never enlarged; at least 32)",
    ),
    Variable(
        "ARCHIVE_OCR_MODELS",
        "PP-OCRv6",
        "the OCR models: `PP-OCRv6` (small detection and recognition, in the rapidocr 3.10.0 wheel, the "
        "`ocr` extra) or `PP-OCRv4` (in rapidocr-onnxruntime 1.4.4, installed with --no-deps); a store "
        "keeps the text its index runs read",
    ),
    Variable(
        "ARCHIVE_SOUND",
        "1",
        "`0` (or false, no, off): do not fingerprint the sound while indexing (`archive search --sound` "
        "then finds nothing new), as `--no-sound`; `1`: do, as `--sound` (the default)",
    ),
    Variable(
        "ARCHIVE_SPEECH",
        "the store's choice (off for a new store)",
        "`1` (or true, yes, on): transcribe what is said while indexing, as `--speech`; `0` (or false, "
        "no, off): do not, even in a store that does",
    ),
    Variable(
        "ARCHIVE_SPEECH_MODEL",
        SPEECH_MODEL,
        "the Whisper model: a size (tiny, base, small, medium, large-v3; base comes from its wheels "
        "with no model hub, the others from the hub) or a folder holding a CTranslate2 Whisper model",
    ),
    Variable(
        "ARCHIVE_SPEECH_LANGUAGE",
        "detected per video",
        "the language spoken (an ISO 639-1 code such as `en`), instead of detecting it per video",
    ),
    Variable(
        "ARCHIVE_SPEECH_THREADS",
        "1",
        "CPU threads of the speech recogniser (it runs beside the picture work, which keeps the other cores busy)",
    ),
    Variable(
        "ARCHIVE_VERSIONS",
        "1 (on)",
        "`0` (or false, no, off): index runs do not compare new videos with the archive for shared "
        "footage; the next run that does compares them",
    ),
    Variable(
        "ARCHIVE_BF16_SCAN_FRAMES",
        f"{BF16_SCAN_FRAMES:,}",
        "archives of at least this many frames are ranked, from a process's second query on, from a "
        "compact copy of the vectors in memory (int8, or bf16 where torch has no int8 kernel) and the "
        "videos shown rescored exactly",
    ),
    Variable(
        "ARCHIVE_IVF_FRAMES",
        f"{IVF_FRAMES:,}",
        "archives of at least this many frames whose IVF index came from `archive optimize --ivf` rank "
        "query candidates with it (an index trained by an index run, for matching, is not used for queries)",
    ),
    Variable("ARCHIVE_IVF_NPROBE", str(IVF_NPROBE), "IVF lists a query visits (at least 1)"),
    Variable(
        "ARCHIVE_MATCH_IVF_FRAMES",
        f"{MATCH_IVF_FRAMES:,}",
        "an index run that adds videos to an archive of at least this many frames without an IVF index "
        "trains one (once), for matching versions; `0`: never",
    ),
    Variable(
        "ARCHIVE_TEST_PAUSE",
        "off",
        "tests only: `POINT[:N]=FILE` stops an index run at a named crash point (`indexer.crashpoints`); "
        "never set it in normal use",
    ),
)


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def store_dir(store: str | os.PathLike[str] | None = None) -> Path:
    """``store`` if given, else ``$ARCHIVE_STORE``, else ``./data``.

    Raises:
        UsageError: ``$ARCHIVE_STORE`` names several stores (only search and serve answer over several).
    """
    if store:
        return Path(store).expanduser()
    dirs = store_dirs()
    if len(dirs) > 1:
        raise UsageError(
            f"ARCHIVE_STORE names {len(dirs)} stores; this command works on one store: give it with "
            "--store DIR (only `archive search` and `archive serve` answer over several)."
        )
    return dirs[0]


def store_dirs(stores: "list[str | os.PathLike[str]] | None" = None) -> list[Path]:
    """The stores a search answers over: ``stores`` if given, else ``$ARCHIVE_STORE`` split at
    ``os.pathsep`` (``A:B``; a value that is itself an existing folder is one store), else ``./data``."""
    if stores:
        return [Path(s).expanduser() for s in dict.fromkeys(str(s) for s in stores)]
    env = _env("ARCHIVE_STORE")
    if not env:
        return [Path(DEFAULT_STORE)]
    if os.pathsep in env and not Path(env).expanduser().is_dir():
        return [Path(p).expanduser() for p in dict.fromkeys(x for x in env.split(os.pathsep) if x)]
    return [Path(env).expanduser()]


def env_model() -> str | None:
    """``$ARCHIVE_MODEL`` (None: the store's model, or ViT-B-32 for a new store)."""
    return _env("ARCHIVE_MODEL")


def env_pretrained() -> str | None:
    """``$ARCHIVE_PRETRAINED`` (None: the store's weights, or laion2b_s34b_b79k for a new store)."""
    return _env("ARCHIVE_PRETRAINED")


def model_dir() -> str | None:
    """``$ARCHIVE_MODEL_DIR``: open_clip's download cache (None: its own default)."""
    return _env("ARCHIVE_MODEL_DIR")


def cache_dir() -> Path:
    """``$ARCHIVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/archive``, else ``~/.cache/archive``."""
    explicit = _env("ARCHIVE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(_env("XDG_CACHE_HOME") or Path.home() / ".cache") / "archive"


def text_tower() -> str:
    """``$ARCHIVE_TEXT_TOWER``: ``auto`` (the numpy export where there is one) or ``torch``."""
    value = (_env("ARCHIVE_TEXT_TOWER") or "auto").lower()
    return value if value in ("auto", "torch") else "auto"


def image_tower() -> str:
    """``$ARCHIVE_IMAGE_TOWER``: ``auto`` (the saved TorchScript export where there is one) or
    ``torch`` (always build the model with open_clip)."""
    value = (_env("ARCHIVE_IMAGE_TOWER") or "auto").lower()
    return value if value in ("auto", "torch") else "auto"


def precision(asked: str | None = None) -> str:
    """The precision asked for, or ``$ARCHIVE_PRECISION`` when that is ``auto``/None; lower case."""
    p = (asked or DEFAULT_PRECISION).lower()
    if p == "auto":
        p = (_env("ARCHIVE_PRECISION") or "auto").lower()
    return p


def commit_interval_s() -> float:
    """Seconds finished videos may wait for their commit (``$ARCHIVE_COMMIT_INTERVAL_S``)."""
    try:
        return max(0.0, float(_env("ARCHIVE_COMMIT_INTERVAL_S") or COMMIT_INTERVAL_S))
    except ValueError:
        return COMMIT_INTERVAL_S


def decoders() -> int:
    """Videos decoded at once while indexing (``$ARCHIVE_DECODERS``, at least 1)."""
    try:
        return max(1, int(_env("ARCHIVE_DECODERS") or DEFAULT_DECODERS))
    except ValueError:
        return DEFAULT_DECODERS


def early_decode() -> str:
    """``$ARCHIVE_EARLY_DECODE``: ``process`` (default) or ``thread``, where the videos that start
    decoding while the model loads are decoded (:mod:`indexer.media.decode_child`)."""
    return "thread" if (_env("ARCHIVE_EARLY_DECODE") or "").strip().lower() == "thread" else "process"


def bf16_scan_frames() -> int:
    """Frame tables at least this large rank from bf16 (``$ARCHIVE_BF16_SCAN_FRAMES``, at least 1)."""
    try:
        return max(1, int(_env("ARCHIVE_BF16_SCAN_FRAMES") or BF16_SCAN_FRAMES))
    except ValueError:
        return BF16_SCAN_FRAMES


def _int_env(name: str, default: int, least: int = 1) -> int:
    try:
        return max(least, int(_env(name) or default))
    except ValueError:
        return default


def ivf_frames() -> int:
    """Archives of at least this many live frames get (``archive optimize``) and use an IVF index
    (``$ARCHIVE_IVF_FRAMES``, at least 1)."""
    return _int_env("ARCHIVE_IVF_FRAMES", IVF_FRAMES)


def match_ivf_frames() -> int:
    """An index run that adds videos to an archive of at least this many frames without an IVF
    index trains one (once), so comparing new videos for shared footage stays fast; queries still
    use it only from :func:`ivf_frames` (``$ARCHIVE_MATCH_IVF_FRAMES``; 0: never)."""
    return _int_env("ARCHIVE_MATCH_IVF_FRAMES", MATCH_IVF_FRAMES, least=0)


def ivf_nprobe() -> int:
    """IVF lists a query visits (``$ARCHIVE_IVF_NPROBE``, at least 1)."""
    return _int_env("ARCHIVE_IVF_NPROBE", IVF_NPROBE)


def ivf_candidate_videos(top: int) -> int:
    """Candidate videos per query that the IVF index hands on to exact rescoring, for ``top`` shown."""
    return 4 * top + 20


def versions_enabled() -> bool:
    """Whether index runs compare new videos with the archive for shared footage
    (``$ARCHIVE_VERSIONS``, default on; 0, false or no turns it off)."""
    return (_env("ARCHIVE_VERSIONS") or "1").strip().lower() not in ("0", "false", "no", "off")


def ocr(asked: bool | None = None, store_has_it: bool = False) -> bool:
    """Whether an index run reads on-screen text: ``--ocr`` given, else ``$ARCHIVE_OCR`` (1, true,
    yes), else whether the store already does (it remembers its first ``--ocr`` run). Whether the
    OCR package is installed is checked where the engine loads (:func:`indexer.media.ocr.engine`)."""
    env = (_env("ARCHIVE_OCR") or "").strip().lower()
    return bool(asked) or env in ("1", "true", "yes", "on") or (store_has_it and env not in ("0", "false", "no", "off"))


def sound(asked: bool | None = None) -> bool:
    """Whether an index run fingerprints the sound (:mod:`indexer.media.sound`, for ``archive search
    --sound``): ``--sound``/``--no-sound`` given, else ``$ARCHIVE_SOUND`` (1 or 0), else on."""
    if asked is not None:
        return bool(asked)
    return (_env("ARCHIVE_SOUND") or "1").strip().lower() not in ("0", "false", "no", "off")


def speech(asked: bool | None = None, store_has_it: bool = False) -> bool:
    """Whether an index run transcribes what is said: ``--speech`` given, else ``$ARCHIVE_SPEECH``
    (1, true, yes), else whether the store already does (it remembers its first ``--speech`` run)."""
    env = (_env("ARCHIVE_SPEECH") or "").strip().lower()
    return bool(asked) or env in ("1", "true", "yes", "on") or (store_has_it and env not in ("0", "false", "no", "off"))


def speech_model() -> str:
    """``$ARCHIVE_SPEECH_MODEL``: a Whisper size or a CTranslate2 folder (default ``base``)."""
    return (_env("ARCHIVE_SPEECH_MODEL") or SPEECH_MODEL).strip()


def speech_model_dir() -> str | None:
    """Where Whisper sizes fetched from the hub are kept (``$ARCHIVE_MODEL_DIR``; None: the hub's own cache)."""
    return _env("ARCHIVE_MODEL_DIR") or None


def speech_language() -> str | None:
    """``$ARCHIVE_SPEECH_LANGUAGE`` (None: detected per video).

    Raises:
        UsageError: not a two- or three-letter code.
    """
    lang = (_env("ARCHIVE_SPEECH_LANGUAGE") or "").strip().lower()
    if not lang or lang == "auto":
        return None
    if not lang.isalpha() or not 2 <= len(lang) <= 3:
        raise UsageError(f"ARCHIVE_SPEECH_LANGUAGE {lang!r}: give a language code such as en, de or fr.")
    return lang


def speech_threads() -> int:
    """CPU threads of the speech recogniser (``$ARCHIVE_SPEECH_THREADS``, at least 1)."""
    return _int_env("ARCHIVE_SPEECH_THREADS", 1, 1)


OCR_MODELS = ("PP-OCRv6", "PP-OCRv4")


def ocr_models() -> str:
    """The OCR models (``$ARCHIVE_OCR_MODELS``: PP-OCRv6 or PP-OCRv4; default PP-OCRv6).

    Raises:
        UsageError: another value.
    """
    value = (_env("ARCHIVE_OCR_MODELS") or OCR_MODELS[0]).strip()
    for m in OCR_MODELS:
        if value.lower() == m.lower():
            return m
    raise UsageError(f"ARCHIVE_OCR_MODELS={value}: give one of {', '.join(OCR_MODELS)}.")


def ocr_side() -> int:
    """Short side in pixels frames are read at for text (``$ARCHIVE_OCR_SIDE``, at least 32)."""
    return _int_env("ARCHIVE_OCR_SIDE", OCR_SIDE, 32)


def pause_hook() -> str | None:
    """``$ARCHIVE_TEST_PAUSE``: the test hook's ``point[:n]=marker-file`` (None: off)."""
    return _env("ARCHIVE_TEST_PAUSE")


# Set by the `archive` command (one command a process): the objects alive once a model is loaded
# are frozen out of the garbage collector's sight (indexer.model.encoder._collector_paused).
FREEZE_AFTER_LOAD = False

SPIN_COUNT = "10000"  # GOMP_SPINCOUNT of an index run: about 0.1 ms of spinning, not libgomp's 3 ms


def idle_threads_sleep() -> None:
    """Let torch's idle OpenMP threads go to sleep soon during an index run
    (``GOMP_SPINCOUNT=10000``, unless the user set it or ``OMP_WAIT_POLICY``).

    An index run shares the cores between the model and the decoding processes. An OpenMP thread
    that waits at the end of a parallel region first spins, by default for about 3 ms, and on a
    core the decoder needs that spinning is lost work. Measured on 2 cores (2-vCPU EPYC, `archive
    index`): adding a 30 s clip to a 1M-frame store took 9.7-10.0 s of user time and 5.8-6.2 s
    wall with the default, 8.7-8.9 and 5.2-5.4 with this; a 6-clip folder 55-57 and 30-31 s
    against 48-49 and 26-27. No spinning at all (``OMP_WAIT_POLICY=PASSIVE``) indexes as fast but
    makes warm queries in the same process 15-20 % slower (each parallel region wakes its threads);
    this count does not. libgomp (torch's OpenMP on Linux) reads it once, when torch loads, so it
    is set only where torch is not loaded yet: a notebook that imported torch keeps its own.
    """
    if "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)


# -- checks on values users give (the CLI and the server only translate the errors) --------------
def check_fps(fps: float) -> float:
    """Raises UsageError unless ``0 < fps <= 1000``."""
    if not 0 < fps <= MAX_FPS:
        raise UsageError(f"--fps must be more than 0 and at most {MAX_FPS:g} samples per second, not {fps:g}.")
    return float(fps)


SHOT_DETECTORS = ("auto", "transnet", "fast")


def shots_asked(asked: str | None = None) -> str:
    """The shot detector as asked for (``--shots``, else ``$ARCHIVE_SHOTS``, else ``auto``),
    lower case and not yet resolved; an explicit choice (not ``auto``) re-indexes videos made by
    another detector."""
    return (asked or _env("ARCHIVE_SHOTS") or "auto").strip().lower()


def shots(asked: str | None = None) -> str:
    """The shot detector asked for (``--shots``, else ``$ARCHIVE_SHOTS``, else ``auto``), lower
    case and checked, not yet resolved: :func:`indexer.media.transnet.detector` turns ``auto``
    into TransNetV2 where its package is installed, else the fast detector.

    Raises:
        UsageError: not one of auto, transnet, fast.
    """
    value = shots_asked(asked)
    if value not in SHOT_DETECTORS:
        raise UsageError(f"--shots must be auto, transnet or fast, not '{value}'.")
    return value


def check_batch_size(batch_size: int) -> int:
    """Raises UsageError unless ``batch_size >= 1``."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}.")
    return int(batch_size)


def check_top(top: int | None) -> int | None:
    """Raises UsageError unless ``top`` is None (all) or at least 1."""
    if top is not None and top < 1:
        raise UsageError(f"--top must be at least 1, not {top}.")
    return top


def check_seconds(option: str, value: float) -> float:
    """Raises UsageError unless ``value`` is a number of seconds >= 0 (``option`` names it)."""
    if not value >= 0:
        raise UsageError(f"{option} takes seconds >= 0, not {value:g}.")
    return float(value)


EMPTY_QUERY = "empty query: give words to search for, or an example image."


def check_query_text(text: str) -> str:
    """Raises QueryError for an empty or blank query text."""

    if not text or not text.strip():
        raise QueryError(EMPTY_QUERY)
    return text


def check_queries(texts: "list[str]", images: "list[str]", ocr: "list[str] | tuple[str, ...]" = ()) -> None:
    """Raises NothingToSearch when there is no text, image or written-word query, QueryError for
    an empty text or a missing image file."""

    if not texts and not images and not ocr:
        raise NothingToSearch(
            "nothing to search for: give a text query, --image FILE, --ocr WORDS, --said PHRASE or --sound FILE."
        )
    for t in texts:
        check_query_text(t)
    for i in images:
        if not Path(i).expanduser().is_file():
            raise QueryError(f"image file not found: {i}")


LOOPBACK = ("127.0.0.1", "localhost", "::1")
MIN_TOKEN = 16  # characters a serve token needs at least


def serve_token(token: str | None, token_file: str | os.PathLike[str] | None, host: str, no_auth: bool) -> str | None:
    """The token ``archive serve`` requires: ``--token``, else the first line of ``--token-file``,
    else ``$ARCHIVE_TOKEN``; None with ``--no-auth`` or none given on a loopback address.

    Raises:
        UsageError: a token and --no-auth both given; a token file that cannot be read or is empty; a
            token shorter than :data:`MIN_TOKEN` characters; no token to listen beyond loopback
            without --no-auth.
    """
    if token is not None and token_file is not None:
        raise UsageError("--token and --token-file: give one of them.")
    if token_file is not None:
        try:
            token = (Path(token_file).expanduser().read_text(encoding="utf-8").splitlines() or [""])[0].strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--token-file {token_file}: cannot read it ({exc.__class__.__name__}).") from None
        if not token:
            raise UsageError(f"--token-file {token_file}: its first line is empty; put the token there.")
    token = token if token is not None else _env("ARCHIVE_TOKEN")
    if no_auth:
        if token:
            raise UsageError("--no-auth and a token (--token, --token-file or ARCHIVE_TOKEN): give one of them.")
        return None
    if token is not None and len(token.strip()) < MIN_TOKEN:
        raise UsageError(
            f"the token has {len(token.strip())} characters: give at least {MIN_TOKEN} "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')."
        )
    if not token and host not in LOOPBACK:
        raise UsageError(
            f"listening on {host} without a token would let anyone who can reach this machine search the archive "
            "and play its videos: give --token-file FILE (or ARCHIVE_TOKEN), or --no-auth to allow it."
        )
    return token.strip() if token else None


def check_port(port: int) -> int:
    """Raises UsageError unless ``0 <= port <= 65535`` (0: any free port)."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: give a port between 0 and 65535.")
    return int(port)
