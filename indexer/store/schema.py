"""The catalog's tables, its schema version and the numbered migrations between versions.

``MIGRATIONS[v]`` turns a version-``v`` catalog into version ``v + 1`` inside one transaction; the
writer runs them in order when it opens an older store. Readers refuse a catalog of another
version with a message saying what to do.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from indexer.errors import ModelMismatch, StoreError

from .layout import now, transaction

SCHEMA_VERSION = 11

# Everything keyed by video_id, deleted together when a video is replaced or removed (and the
# matches of its pairs: video_a / video_b).
PER_VIDEO_TABLES = (
    "frames",
    "shots",
    "segments",
    "video_labels",
    "ocr",
    "speech",
    "speech_words",
    "sound_hashes",
    "versions",
    "videos",
)

VECTOR_SEGMENTS = """CREATE TABLE IF NOT EXISTS vector_segments (   -- the vector layer (indexer/store/segments.py)
        segment_id INTEGER PRIMARY KEY,
        file VARCHAR NOT NULL,          -- under vectors/
        kind VARCHAR NOT NULL,          -- flat: IndexIDMap2(IndexFlatIP), fp32; f16: ... (IndexScalarQuantizer fp16)
        n_vectors BIGINT NOT NULL,      -- rows in the file (live or dead)
        min_frame_id BIGINT NOT NULL,   -- the ids it holds lie in [min, max]; ranges never overlap
        max_frame_id BIGINT NOT NULL,
        bg_key VARCHAR,                 -- key of its background-term sidecar (NULL: none)
        created_at TIMESTAMP NOT NULL,
        ivf_id INTEGER                  -- its rows' codes in that IVF index (sidecar .ivf; NULL: none)
    )"""

VECTOR_IVF = """CREATE TABLE IF NOT EXISTS vector_ivf (   -- the IVF index that ranks large archives (segments.py)
        ivf_id INTEGER PRIMARY KEY,
        file VARCHAR NOT NULL,          -- under vectors/: the trained, empty FAISS index
        factory VARCHAR NOT NULL,       -- its FAISS factory string, e.g. IVF4096,PQ64
        nlist INTEGER NOT NULL,
        code_size INTEGER NOT NULL,     -- bytes per vector in each segment's .ivf sidecar
        trained_vectors BIGINT NOT NULL,   -- vectors in the training sample
        archive_vectors BIGINT NOT NULL,   -- live vectors in the archive when it was trained
        train_s DOUBLE,                 -- seconds training took
        created_at TIMESTAMP NOT NULL
    )"""

OCR = """CREATE TABLE IF NOT EXISTS ocr (   -- on-screen text lines (archive index --ocr, indexer/ocr.py)
        frame_id BIGINT NOT NULL,       -- the frame of its most confident reading
        video_id INTEGER NOT NULL,
        start_s DOUBLE NOT NULL,        -- first sample read with it on screen
        end_s DOUBLE NOT NULL,          -- end of the last such sample (the next sample, or the video's end)
        text VARCHAR NOT NULL,          -- as read
        confidence DOUBLE NOT NULL,     -- the recogniser's, 0-1
        x DOUBLE NOT NULL,              -- its box, 0-1 of the frame's width and height, from the top left
        y DOUBLE NOT NULL,
        w DOUBLE NOT NULL,
        h DOUBLE NOT NULL,
        text_norm VARCHAR NOT NULL      -- as matched: lower case, no accents, letters and digits only
    )"""

MATCHES = """CREATE TABLE IF NOT EXISTS matches (   -- footage two videos share (search/versions.py)
        video_a INTEGER NOT NULL,       -- the pair, each stored once: video_a < video_b
        video_b INTEGER NOT NULL,
        a_start_s DOUBLE NOT NULL,      -- [a_start_s, a_end_s] of video_a shows
        a_end_s DOUBLE NOT NULL,
        b_start_s DOUBLE NOT NULL,      -- ... what [b_start_s, b_end_s] of video_b shows
        b_end_s DOUBLE NOT NULL,
        score DOUBLE NOT NULL,          -- mean (whitened) cosine of the aligned samples
        samples INTEGER NOT NULL        -- samples of video_a it rests on
    )"""

VERSIONS = """CREATE TABLE IF NOT EXISTS versions (   -- videos linked by enough shared footage (--min-shared)
        group_id INTEGER NOT NULL,      -- the smallest video_id of the group
        video_id INTEGER NOT NULL,
        is_longest BOOLEAN NOT NULL,    -- the group's longest member (the master, most likely)
        shared_s DOUBLE NOT NULL        -- seconds of it shared with other members
    )"""

MATCH_BASIS = """CREATE TABLE IF NOT EXISTS match_basis (   -- how samples are compared for matching, measured once
        mean BLOB NOT NULL,             -- float32 (dim,)
        transform BLOB NOT NULL,        -- float32 (dim, dim): whitening
        level DOUBLE NOT NULL,          -- whitened cosine two samples of the same footage reach
        candidate_level DOUBLE NOT NULL,   -- raw cosine of the range search for candidates
        vectors BIGINT NOT NULL,        -- vectors it was measured on
        created_at TIMESTAMP NOT NULL
    )"""

SPEECH = """CREATE TABLE IF NOT EXISTS speech (   -- spoken lines (archive index --speech, indexer/media/speech.py)
        video_id INTEGER NOT NULL,
        line INTEGER NOT NULL,          -- 0, 1, ... in the order said
        start_s DOUBLE NOT NULL,        -- its first word's start, on the video's clock
        end_s DOUBLE NOT NULL,          -- its last word's end
        text VARCHAR NOT NULL,          -- as heard
        language VARCHAR,               -- the language it was heard in (ISO 639-1, e.g. en)
        confidence DOUBLE NOT NULL,     -- the mean of its words' probabilities, 0-1
        text_norm VARCHAR NOT NULL      -- as matched: lower case, no accents, letters and digits only
    )"""

SPEECH_WORDS = """CREATE TABLE IF NOT EXISTS speech_words (   -- the words of each spoken line
        video_id INTEGER NOT NULL,
        line INTEGER NOT NULL,          -- its line in the speech table
        word VARCHAR NOT NULL,          -- as heard, punctuation attached
        start_s DOUBLE NOT NULL,
        end_s DOUBLE NOT NULL,
        probability DOUBLE NOT NULL,    -- the recogniser's, 0-1
        word_norm VARCHAR NOT NULL      -- as matched (see speech.text_norm); may be empty for punctuation
    )"""

SOUND_HASHES = """CREATE TABLE IF NOT EXISTS sound_hashes (   -- landmark fingerprints of the sound (indexer/media/sound.py)
        hash INTEGER NOT NULL,          -- a pair of spectrogram peaks: anchor bin, bin and time differences (21 bits)
        video_id INTEGER NOT NULL,
        t INTEGER NOT NULL              -- the anchor's time in frames of 16 ms on the video's clock (t * 0.016 s)
    )"""

TABLES = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS videos (
        video_id INTEGER PRIMARY KEY,
        path VARCHAR NOT NULL UNIQUE,   -- absolute path when indexed
        name VARCHAR,                   -- file name
        size_bytes BIGINT,
        mtime DOUBLE,                   -- seconds since the epoch
        fingerprint VARCHAR,            -- blake2b of size + head + tail of the file
        duration_s DOUBLE,              -- from the first frame's start to the last frame's end
        fps DOUBLE,                     -- native frame rate (average, as the container states it)
        width INTEGER,
        height INTEGER,
        codec VARCHAR,
        n_frames INTEGER,               -- sampled (and embedded) frames
        sample_fps DOUBLE,              -- samples per second asked for at index time
        decoded_frames INTEGER,
        note VARCHAR,                   -- partial decode and other remarks, NULL when clean
        indexed_at TIMESTAMP,
        shot_detector VARCHAR,          -- fast or transnet (NULL: indexed before v5)
        ocr_lines INTEGER,              -- on-screen text lines read (NULL: its text was not read)
        matched BOOLEAN,                -- compared with the archive for shared footage (NULL: not yet)
        speech_lines INTEGER,           -- spoken lines heard (NULL: its sound was not transcribed)
        speech_language VARCHAR,        -- the language detected (NULL: nothing said, or not transcribed)
        speech_language_p DOUBLE,       -- ... and the detector's probability for it
        sound_s DOUBLE,                 -- seconds of sound track decoded (0: no sound stream)
        sound_hashes INTEGER            -- landmark fingerprints kept (NULL: its sound was not fingerprinted)
    )""",
    """CREATE TABLE IF NOT EXISTS frames (
        frame_id BIGINT NOT NULL,       -- = the vector's id in its segment under vectors/
        video_id INTEGER NOT NULL,
        ts_s DOUBLE NOT NULL,           -- presentation time of the sampled frame, seconds
        end_s DOUBLE NOT NULL,          -- this sample stands for [ts_s, end_s): next sample or video end
        shot_id BIGINT NOT NULL,        -- the shot it belongs to
        thumb_offset BIGINT,            -- its JPEG thumbnail in thumbs.bin (NULL: none yet)
        thumb_bytes INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS shots (
        shot_id BIGINT NOT NULL,
        video_id INTEGER NOT NULL,
        start_s DOUBLE NOT NULL,        -- first frame's presentation time
        end_s DOUBLE NOT NULL,          -- next shot's first frame, or the video's end
        kind VARCHAR NOT NULL,          -- content, black or blank (blank shots never match)
        transition VARCHAR,             -- how it begins: start, cut, dissolve or fade (NULL: before v5)
        trans_start_s DOUBLE,           -- the transition's first frame (a cut: = start_s)
        trans_end_s DOUBLE              -- ... and last frame
    )""",
    """CREATE TABLE IF NOT EXISTS labels (
        label VARCHAR PRIMARY KEY,
        prompts VARCHAR[] NOT NULL,     -- texts whose template ensemble defines the label
        threshold DOUBLE,               -- NULL: the presence rule; else a plain cosine cut
        created_at TIMESTAMP NOT NULL,
        calibrated_at TIMESTAMP,        -- when `archive label calibrate` chose the threshold (NULL: never)
        calib_precision DOUBLE,         -- precision and recall the threshold had on the truth file
        calib_recall DOUBLE,
        calib_videos INTEGER,           -- videos judged in the truth file
        calib_positives INTEGER,        -- ... of which the label is on screen
        calib_target DOUBLE,            -- the precision asked for (NULL: best F1)
        calib_truth VARCHAR,            -- the truth file
        ocr VARCHAR[],                  -- written words that show it too (archive search --ocr); NULL: none
        said VARCHAR[]                  -- spoken phrases that show it too (archive search --said); NULL: none
    )""",
    """CREATE TABLE IF NOT EXISTS segments (   -- materialised: each label's segments per video
        label VARCHAR NOT NULL,
        video_id INTEGER NOT NULL,
        start_s DOUBLE NOT NULL,
        end_s DOUBLE NOT NULL,
        peak_score DOUBLE NOT NULL,
        found_by VARCHAR                -- picture, text, speech or a mix joined by + (NULL: before v8)
    )""",
    """CREATE TABLE IF NOT EXISTS video_labels (   -- materialised: each label's answer per video
        video_id INTEGER NOT NULL,
        label VARCHAR NOT NULL,
        present BOOLEAN NOT NULL,
        first_seen_s DOUBLE,
        duration_s DOUBLE NOT NULL,
        n_segments INTEGER NOT NULL,
        best_s DOUBLE,
        score DOUBLE,
        rule VARCHAR                    -- presence (the presence rule), threshold (a cut given) or calibrated
    )""",
    OCR,
    SPEECH,
    SPEECH_WORDS,
    SOUND_HASHES,
    MATCHES,
    VERSIONS,
    MATCH_BASIS,
    VECTOR_SEGMENTS,
    VECTOR_IVF,
    """CREATE TABLE IF NOT EXISTS failures (
        path VARCHAR NOT NULL,
        error VARCHAR NOT NULL,
        seen_at TIMESTAMP NOT NULL
    )""",
]


def _has_table(con: Any, table: str) -> bool:
    return bool(
        con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchall()[0][0]
    )


def _has_column(con: Any, table: str, column: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = ?", [table, column]
        ).fetchall()[0][0]
    )


def _migrate_1_to_2(con: Any) -> None:
    """v2 adds shots: each existing video becomes one content shot (re-index it for real shots).

    The last two releases that wrote version 1 already had real shots (``shots`` and
    ``frames.shot_id``): their catalogs keep them.
    """
    if not _has_table(con, "shots"):
        con.execute(
            "CREATE TABLE shots (shot_id BIGINT NOT NULL, video_id INTEGER NOT NULL, start_s DOUBLE NOT NULL, "
            "end_s DOUBLE NOT NULL, kind VARCHAR NOT NULL)"
        )
        con.execute(
            "INSERT INTO shots SELECT video_id, video_id, 0.0, coalesce(duration_s, 0.0), 'content' FROM videos"
        )
    if not _has_column(con, "frames", "shot_id"):
        con.execute("ALTER TABLE frames ADD COLUMN shot_id BIGINT")
        con.execute("UPDATE frames SET shot_id = video_id")


def _migrate_2_to_3(con: Any) -> None:
    """v3 adds each frame's thumbnail (bytes in thumbs.bin); NULL until the video is indexed again."""
    con.execute("ALTER TABLE frames ADD COLUMN IF NOT EXISTS thumb_offset BIGINT")
    con.execute("ALTER TABLE frames ADD COLUMN IF NOT EXISTS thumb_bytes INTEGER")


def _migrate_3_to_4(con: Any) -> None:
    """v4 keeps vectors in segments registered in ``vector_segments``. The v3 vector file
    (``frames.faiss``) becomes segment 0 as it is, moved by the writer (nothing is re-embedded)."""
    con.execute(VECTOR_SEGMENTS)


def _migrate_4_to_5(con: Any) -> None:
    """v5 records how each shot begins (start, cut, dissolve, fade, and the transition's span) and
    which detector made a video's shots; NULL for what older versions indexed."""
    con.execute("ALTER TABLE shots ADD COLUMN IF NOT EXISTS transition VARCHAR")
    con.execute("ALTER TABLE shots ADD COLUMN IF NOT EXISTS trans_start_s DOUBLE")
    con.execute("ALTER TABLE shots ADD COLUMN IF NOT EXISTS trans_end_s DOUBLE")
    con.execute("ALTER TABLE videos ADD COLUMN IF NOT EXISTS shot_detector VARCHAR")


def _migrate_5_to_6(con: Any) -> None:
    """v6 records a label's calibration on a truth file (``archive label calibrate``) and, per
    answer in ``video_labels``, which rule gave it."""
    if not _has_table(con, "labels"):  # catalogs from before labels get the tables as they are now
        return
    for col, kind in (
        ("calibrated_at", "TIMESTAMP"),
        ("calib_precision", "DOUBLE"),
        ("calib_recall", "DOUBLE"),
        ("calib_videos", "INTEGER"),
        ("calib_positives", "INTEGER"),
        ("calib_target", "DOUBLE"),
        ("calib_truth", "VARCHAR"),
    ):
        con.execute(f"ALTER TABLE labels ADD COLUMN IF NOT EXISTS {col} {kind}")
    if _has_table(con, "video_labels"):
        con.execute("ALTER TABLE video_labels ADD COLUMN IF NOT EXISTS rule VARCHAR")
        con.execute(
            "UPDATE video_labels SET rule = CASE WHEN l.threshold IS NULL THEN 'presence' ELSE 'threshold' END "
            "FROM labels l WHERE l.label = video_labels.label"
        )


def _migrate_6_to_7(con: Any) -> None:
    """v7 adds the IVF index of large archives (``vector_ivf``, and per segment the IVF its codes
    belong to) and fp16 segments (``kind = 'f16'``). Existing fp32 segments stay as they are and are
    read as before; merges and ``archive optimize`` rewrite them as fp16."""
    if _has_table(con, "vector_segments"):
        con.execute("ALTER TABLE vector_segments ADD COLUMN IF NOT EXISTS ivf_id INTEGER")
    con.execute(VECTOR_IVF)


def _migrate_7_to_8(con: Any) -> None:
    """v8 adds on-screen text: the ``ocr`` table, per video the lines read (NULL: not read, as for
    every video indexed before), per label its written words and per label segment what found it."""
    con.execute(OCR)
    con.execute("ALTER TABLE videos ADD COLUMN IF NOT EXISTS ocr_lines INTEGER")
    if _has_table(con, "labels"):
        con.execute("ALTER TABLE labels ADD COLUMN IF NOT EXISTS ocr VARCHAR[]")
    if _has_table(con, "segments"):
        con.execute("ALTER TABLE segments ADD COLUMN IF NOT EXISTS found_by VARCHAR")


def _migrate_8_to_9(con: Any) -> None:
    """v9 adds versions of the same film: ``matches``, ``versions``, the ``match_basis`` and, per
    video, whether it was compared (NULL for every video indexed before: the next index run
    compares them, from their stored vectors)."""
    con.execute(MATCHES)
    con.execute(VERSIONS)
    con.execute(MATCH_BASIS)
    con.execute("ALTER TABLE videos ADD COLUMN IF NOT EXISTS matched BOOLEAN")


def _migrate_9_to_10(con: Any) -> None:
    """v10 adds speech: the ``speech`` and ``speech_words`` tables, per video the lines heard, the
    language and the seconds of sound (NULL for every video indexed before: the next ``--speech``
    run transcribes them, from their sound track only), and per label its spoken phrases."""
    con.execute(SPEECH)
    con.execute(SPEECH_WORDS)
    for col, kind in (
        ("speech_lines", "INTEGER"),
        ("speech_language", "VARCHAR"),
        ("speech_language_p", "DOUBLE"),
        ("sound_s", "DOUBLE"),
    ):
        con.execute(f"ALTER TABLE videos ADD COLUMN IF NOT EXISTS {col} {kind}")
    if _has_table(con, "labels"):
        con.execute("ALTER TABLE labels ADD COLUMN IF NOT EXISTS said VARCHAR[]")


def _migrate_10_to_11(con: Any) -> None:
    """v11 adds sound fingerprints: the ``sound_hashes`` table and per video the count kept (NULL
    for every video indexed before: the next index run fingerprints them from their sound track)."""
    con.execute(SOUND_HASHES)
    con.execute("ALTER TABLE videos ADD COLUMN IF NOT EXISTS sound_hashes INTEGER")


MIGRATIONS: dict[int, Callable[[Any], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
    3: _migrate_3_to_4,
    4: _migrate_4_to_5,
    5: _migrate_5_to_6,
    6: _migrate_6_to_7,
    7: _migrate_7_to_8,
    8: _migrate_8_to_9,
    9: _migrate_9_to_10,
    10: _migrate_10_to_11,
}


def version(con: Any) -> int | None:
    """The catalog's schema version; None for a new catalog (no meta table, or no version in it yet).
    Readers take a missing version for 0 (too old); the writer leaves such a catalog as it is."""
    if not _has_table(con, "meta"):
        return None
    row = next(iter(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()), None)
    return int(row[0]) if row else None


def require_current(con: Any, store_dir: str | os.PathLike[str]) -> None:
    """Raises StoreError unless the catalog is of this program's schema version (readers)."""
    v = version(con) or 0
    if v < SCHEMA_VERSION:
        raise StoreError(
            f"the store {store_dir} has schema version {v}, older than this program's ({SCHEMA_VERSION}): "
            "run `archive index` once on any folder to upgrade it (nothing is re-embedded)."
        )
    if v > SCHEMA_VERSION:
        raise _newer(store_dir, v)


def _newer(store_dir: str | os.PathLike[str], v: int) -> StoreError:
    return StoreError(
        f"the store {store_dir} has schema version {v}, newer than this program knows "
        f"({SCHEMA_VERSION}): upgrade the archive tool."
    )


def migrate(con: Any, store_dir: str | os.PathLike[str]) -> None:
    """Bring an older catalog up to SCHEMA_VERSION, one numbered migration at a time.

    Raises:
        StoreError: the catalog is newer than this program.
    """
    v = version(con)
    if v is None:
        return
    if v > SCHEMA_VERSION:
        raise _newer(store_dir, v)
    while v < SCHEMA_VERSION:
        with transaction(con):
            MIGRATIONS[v](con)
            con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(v + 1)])
        v += 1


def create(con: Any, store_dir: str | os.PathLike[str], model: str, pretrained: str, dim: int) -> None:
    """Migrate an older catalog, create missing tables, and write ``meta`` for a new one.

    Raises:
        StoreError: the catalog is newer than this program.
        ModelMismatch: the store was built with another model or weights.
    """
    migrate(con, store_dir)
    for stmt in TABLES:
        con.execute(stmt)
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    if not meta:
        rows = [
            ("schema_version", str(SCHEMA_VERSION)),
            ("model", model),
            ("pretrained", pretrained),
            ("dim", str(dim)),
            ("created_at", now().isoformat(timespec="seconds")),
        ]
        con.executemany("INSERT INTO meta VALUES (?, ?)", rows)
    elif (meta["model"], meta["pretrained"]) != (model, pretrained):
        raise ModelMismatch(
            f"the store {store_dir} was built with {meta['model']} ({meta['pretrained']}), not "
            f"{model} ({pretrained}); use the same model, or another --store."
        )
