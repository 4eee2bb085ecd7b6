"""``thumbs.bin``: the frames' JPEG thumbnails, appended and fsynced before any catalog row points
into them (offsets and lengths live in ``frames``). Bytes no row points at are harmless."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from indexer.errors import StoreError

from .layout import THUMBS, fsync_dir


def append(
    store_dir: Path, groups: Sequence[tuple[int, Sequence[bytes] | None]]
) -> list[tuple[list[int | None], list[int | None]]]:
    """Append groups of thumbnails (a video's frames: ``(n_frames, jpegs or None)``) to
    thumbs.bin, fsynced; per group, each frame's (offsets, lengths), None where it has none."""
    out: list[tuple[list[int | None], list[int | None]]] = []
    if not any(thumbs for _, thumbs in groups):
        return [([None] * n, [None] * n) for n, _ in groups]
    path = store_dir / THUMBS
    new_file = not path.exists()
    try:
        with open(path, "ab") as fh:
            pos = fh.seek(0, os.SEEK_END)
            for n, thumbs in groups:
                if not thumbs or len(thumbs) != n:
                    out.append(([None] * n, [None] * n))
                    continue
                offs: list[int | None] = []
                lens: list[int | None] = []
                for jpeg in thumbs:
                    fh.write(jpeg)
                    offs.append(pos)
                    lens.append(len(jpeg))
                    pos += len(jpeg)
                out.append((offs, lens))
            fh.flush()
            os.fsync(fh.fileno())
        if new_file:  # the file's name must be on disk before a catalog row points into it
            fsync_dir(store_dir)
    except OSError as exc:
        raise StoreError(f"cannot write thumbnails to {path}: {exc.strerror or exc}") from exc
    return out
