"""What every route of ``archive serve`` shares: the stores, the searcher (one model, loaded once),
the lock searches take, and how rows and results are tagged with their store."""

from __future__ import annotations

import datetime as dt
import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException, Request

from indexer.errors import QueryError
from indexer.store import FrameTable, Reader
from search.query import Searcher
from search.shards import ShardedSearcher

MAX_PIXELS = 40_000_000  # pixels of an example image
# What a browser's <video> plays (the page offers the file for download otherwise).
_PLAYABLE = {"h264", "vp8", "vp9", "av1", "theora", "hevc"}


class ServerState:
    """The stores a server answers over and the one searcher that answers for them.

    ``lock`` is held by every search (and by the thumbnail lookup, which reads the searcher's frame
    table): the searcher's caches are not thread-safe, so the server answers one search at a time.
    """

    def __init__(self, stores: list[Path], searcher: Searcher | ShardedSearcher) -> None:
        self.stores = stores
        self.several = len(stores) > 1
        self.searcher = searcher
        self.per_store = searcher.searchers if isinstance(searcher, ShardedSearcher) else [searcher]
        self.index_of = {str(st): i for i, st in enumerate(stores)}
        self.lock = threading.Lock()
        self._by_id: dict[int, Any] = {}  # per store: its frame table and its ids, sorted

    def store_dir(self, k: int) -> Path:
        """Store ``k`` (its ``store_index``); 404 when there is none."""
        if k >= len(self.stores):
            raise HTTPException(404, f"no store {k}: this server has {len(self.stores)} (see /api/stats).")
        return self.stores[k]

    def tagged(self, rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
        """``rows`` of store ``k``, each naming its store when the server has several."""
        if self.several:
            for r in rows:
                r["store"], r["store_index"] = str(self.stores[k]), k
        return rows

    def result(self, res: Any, t0: float) -> dict[str, Any]:
        """A query's answer as JSON: its store index on each result, the text read in each segment."""
        out = result_dict(res, t0)
        if self.several:
            for r in out["results"]:
                r["store_index"] = self.index_of.get(r.get("store", ""), 0)
        for k, st in enumerate(self.stores):  # the text read on screen in each segment, where there is text
            mine = [r for r in out["results"] if r.get("store_index", 0) == k and r["segments"]]
            if mine:
                add_text_read(st, mine)
        return out

    def frame_position(self, store: int, frame_id: int) -> tuple[FrameTable, int] | None:
        """Where frame ``frame_id`` of store ``store`` is in its searcher's frame table (so a
        thumbnail needs no catalog read); None: no such frame."""
        with self.lock:
            table = self.per_store[store].frames(None)
            if self._by_id.get(store, (None,))[0] is not table:
                order = np.argsort(table.frame_id)
                self._by_id[store] = (table, (table.frame_id[order], order))
            ids = self._by_id[store][1]
        k = int(np.searchsorted(ids[0], frame_id))
        if k >= len(ids[0]) or ids[0][k] != frame_id:
            return None
        return table, int(ids[1][k])


def current(request: Request) -> ServerState:
    """The server's state (a FastAPI dependency of every route)."""
    return request.app.state.archive


def check_image(body: bytes, name: str) -> None:
    """Raise QueryError unless ``body`` is an image PIL can read."""

    from PIL import Image, UnidentifiedImageError  # lazy: Pillow is loaded only for image files

    try:
        with Image.open(io.BytesIO(body)) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise QueryError(
                    f"{name}: {im.size[0]}x{im.size[1]} is too large; use an image under "
                    f"{MAX_PIXELS // 1_000_000} megapixels."
                )
            im.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise QueryError(f"{name}: not a readable image; upload a PNG, JPEG or WebP file.") from exc


def add_text_read(store: Path, results: list[dict[str, Any]]) -> None:
    """Give each segment of ``results`` (one store's) ``text_read``: the lines on screen during it."""
    if Reader(store).meta().get("ocr") != "1":
        return
    lines: dict[int, list[dict[str, Any]]] = {}
    for row in Reader(store).ocr_lines(sorted({r["video_id"] for r in results})):
        lines.setdefault(row["video_id"], []).append(row)
    for r in results:
        for seg in r["segments"]:
            seg["text_read"] = list(
                dict.fromkeys(
                    ln["text"]
                    for ln in lines.get(r["video_id"], [])
                    if ln["start_s"] < seg["end_s"] and ln["end_s"] > seg["start_s"]
                )
            )


def result_dict(res: Any, t0: float) -> dict[str, Any]:
    out = res.to_dict()
    out["videos_searched"] = res.videos_searched
    out["frames_searched"] = res.frames_searched
    out["took_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return out


def jsonable(d: dict[str, Any]) -> dict[str, Any]:

    return {k: (v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v) for k, v in d.items()}


def playable(v: dict[str, Any]) -> bool:
    """Whether a browser's <video> is likely to play this file (H.264/VP9/AV1 in MP4/WebM/MOV)."""
    return str(v.get("codec") or "").lower() in _PLAYABLE and Path(v["path"]).suffix.lower() in {
        ".mp4",
        ".m4v",
        ".mov",
        ".webm",
        ".mkv",
        ".ogv",
    }
