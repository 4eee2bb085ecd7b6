"""A query sound from a file, fingerprinted here, above the read path (:mod:`search.sound` matches
it against the catalog): ``archive search --sound FILE`` takes a sound file (wav, mp3, m4a, flac, ...)
or a video file's sound, decoded once with PyAV, as ``--like-video`` embeds a file not indexed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from indexer.errors import QueryError, VideoOpenError
from indexer.media import sound
from search.sound import MAX_QUERY_BYTES, MAX_QUERY_S, MIN_LANDMARKS, MIN_QUERY_S, SoundQuery, min_s_line


def query_from_file(path: str | os.PathLike[str]) -> SoundQuery:
    """The landmarks of a sound file (wav, mp3, m4a, flac, ...) or of a video file's sound.

    Raises:
        QueryError: the file is missing, unreadable, too large or too long, has no sound, or too
            little to decide on.
    """
    p = Path(path).expanduser()
    what = f"--sound {path}"
    if not p.is_file():
        raise QueryError(f"{what}: no such file.")
    size = p.stat().st_size
    if size > MAX_QUERY_BYTES:
        raise QueryError(f"{what}: {size / 2**30:.1f} GiB is too large for a query sound; cut the stretch you want.")
    try:
        x, seconds, stats = sound.read_query(p, end_s=MAX_QUERY_S + 1.0)
    except VideoOpenError:
        raise QueryError(f"{what}: cannot be read as a sound or video file (wav, mp3, m4a, flac, mp4, ...).") from None
    if not stats.has_stream:
        raise QueryError(f"{what}: the file has no sound track.")
    if seconds > MAX_QUERY_S:
        raise QueryError(
            f"{what}: longer than {MAX_QUERY_S / 60:g} minutes; cut the stretch you want (or use --sound-from "
            "VIDEO --at START-END on an indexed video)."
        )
    if seconds < MIN_QUERY_S or not np.any(x):
        raise QueryError(
            min_s_line(what, seconds) if np.any(x) else f"{what}: the sound is silent; nothing to listen for."
        )
    h, t = sound.fingerprint(x, 0.0, sound.QUERY_FAN_OUT)
    if len(h) < MIN_LANDMARKS:
        raise QueryError(
            f"{what}: the sound gives {len(h)} landmarks, fewer than the {MIN_LANDMARKS} the rule needs; give a "
            "longer or more distinctive stretch (a plain tone or noise has almost none)."
        )
    return SoundQuery(f"sound:{p.name}", h, t, seconds)
