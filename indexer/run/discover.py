"""Find the video files under the paths a user gives, and fingerprint their content."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .qt .avi .mkv .webm .wmv .asf .flv .f4v .mpg .mpeg .m2v .mpe .ts .m2ts .mts "
    ".vob .3gp .3g2 .ogv .mxf .dv .divx .y4m .h264 .264 .hevc .265".split()
)


def is_video_name(path: str | os.PathLike[str]) -> bool:
    """True when the file name has a known video extension (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand files and folders into video files.

    Folders are walked recursively (hidden entries skipped, symlinked folders not followed, so
    link loops cannot trap the walk) and their files picked by extension; a file named directly
    is taken whatever its name, and the decoder's probe decides later whether it is a video.

    Returns:
        (absolute file paths, sorted and without repeats; [(path, problem)] for paths that
        do not exist or cannot be read).
    """
    found: dict[str, None] = {}
    problems: list[tuple[str, str]] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            problems.append((str(raw), "no such file or folder"))
            continue
        if p.is_dir():
            walk_errors: list[OSError] = []
            for root, dirs, files in os.walk(p, onerror=walk_errors.append, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith(".") or not is_video_name(name):
                        continue
                    fp = Path(root) / name
                    found.setdefault(os.path.abspath(fp), None)
            problems.extend((e.filename or str(p), f"cannot read folder ({e.strerror})") for e in walk_errors)
        else:
            found.setdefault(os.path.abspath(p), None)
    return sorted(found), problems


def fingerprint(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """A fast content fingerprint of a file: blake2b over its size, first and last MiB."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(p, "rb") as fh:
        h.update(fh.read(chunk))
        if size > 2 * chunk:
            fh.seek(-chunk, os.SEEK_END)
            h.update(fh.read(chunk))
    return h.hexdigest()
