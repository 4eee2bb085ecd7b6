"""Several stores answer as one: each store (a shard: a year, a market, a disk) is searched on its
own, and the per-video answers are merged into one ranked list per query.

The merge is the same one a cluster of query servers would do (one server per shard, the fan-out
and the merge in front): videos where the query is present first, then by best match strength,
then by best raw cosine, exactly as one store ranks its own videos. Each answer names its store.

The stores must share a model and weights (their vectors are then comparable); the text rule is
the same everywhere. The image rule's levels are measured on each shard's own frames (what "the
same footage" and "chance" look like there), so a shard answers an example image as it would
alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from indexer import settings
from indexer.errors import QueryError
from indexer.model.encoder import Encoder, TextEncoder
from indexer.store import Reader

from .query import Searcher, resolve_scope
from .results import QueryResult, VideoResult


def _key(r: VideoResult) -> tuple[int, float, float]:
    """How a store ranks its own videos (see ``query._order``): hits, then strength, then score."""
    match = r.match if np.isfinite(r.match) else -1e9
    score = r.score if np.isfinite(r.score) else -1e9
    return (int(r.present), match, score)


def merge(per_store: Sequence[Sequence[QueryResult]], stores: Sequence[str], top: int | None) -> list[QueryResult]:
    """One ranked list per query from each store's answers (each result's ``store`` is set)."""
    out: list[QueryResult] = []
    for parts in zip(*per_store):
        first = parts[0]
        levels = {round(p.threshold, 6) for p in parts}
        res = QueryResult(
            query=first.query,
            kind=first.kind,
            threshold=max(p.threshold for p in parts),
            rule=first.rule if len(levels) == 1 else f"{first.rule.split(' (')[0]} (each store's own level)",
            warnings=list(dict.fromkeys(w for p in parts for w in p.warnings)),
            videos_searched=sum(p.videos_searched for p in parts),
            frames_searched=sum(p.frames_searched for p in parts),
        )
        rows = []
        for p, store in zip(parts, stores):
            for r in p.results:
                r.store = store
                rows.append(r)
        rows.sort(key=_key, reverse=True)
        res.results = rows if top is None else rows[:top]
        out.append(res)
    return out


class ShardedSearcher:
    """Answers queries over several stores as one (see the module docstring).

    Example::

        s = ShardedSearcher(["/archive/2025", "/archive/2026"])
        [res] = s.search(["a beach"])
        for v in res.results:
            print(v.store, v.video, v.present, v.first_seen_s)

    Raises:
        QueryError: fewer than one store, or stores built with different models.
        StoreNotFound: a folder is not a store.
    """

    def __init__(
        self,
        stores: Sequence[str | os.PathLike[str]],
        device: str = settings.DEFAULT_DEVICE,
        encoder: Encoder | None = None,
    ) -> None:
        self.stores = [Path(s) for s in dict.fromkeys(str(Path(s)) for s in stores)]
        if not self.stores:
            raise QueryError("no store to search.")
        specs = [Reader.of(s).spec() for s in self.stores]
        odd = [(s, sp) for s, sp in zip(self.stores, specs) if sp != specs[0]]
        if odd:
            s, sp = odd[0]
            raise QueryError(
                f"the stores {self.stores[0]} and {s} were built with different models ({specs[0].name} "
                f"{specs[0].pretrained} and {sp.name} {sp.pretrained}); their scores cannot be ranked together: "
                "search them separately."
            )
        self.spec = specs[0]
        text = None if encoder is not None else TextEncoder.open(self.spec)  # one text tower for every shard
        self.searchers = [Searcher(s, device, encoder=encoder, text_encoder=text) for s in self.stores]
        self.last_timings: dict[str, float] = {}

    def search(
        self,
        texts: Sequence[str] = (),
        images: Sequence[str | os.PathLike[str]] = (),
        videos: Sequence[str] | None = None,
        top: int | None = settings.DEFAULT_TOP,
        threshold: float | None = None,
        merge_gap_s: float = 0.0,
        min_duration_s: float = 0.0,
        ocr: Sequence[str] = (),
        said: Sequence[str] = (),
        false_videos: float | None = None,
    ) -> list[QueryResult]:
        """Like :meth:`search.query.Searcher.search`, over every store; ``videos`` may name videos of
        any of them (an argument must match in at least one store). ``false_videos`` is shared
        among the stores by their numbers of videos (the same rate per video everywhere)."""
        t0 = time.perf_counter()
        share = [1.0] * len(self.searchers)
        if false_videos is not None and images:
            sizes = [len(Reader(s.store_dir).image_levels_state()[3]) for s in self.searchers]
            share = [n / max(sum(sizes), 1) for n in sizes]
        per_store: list[list[QueryResult] | None] = []
        unmatched: dict[str, int] = {}
        for i, s in enumerate(self.searchers):
            if i and s._encoder is None and self.searchers[0]._encoder is not None:
                s._encoder = self.searchers[0]._encoder  # an example image loaded the model once
            if i and self.searchers[0]._text_cache:
                s._text_cache.update(self.searchers[0]._text_cache)  # each text embedded once
            vids = videos
            if videos:
                vids = [v for v in videos if _matches(s.store_dir, v)]
                for v in videos:
                    unmatched[v] = unmatched.get(v, 0) + (v not in vids)
                if not vids:
                    per_store.append(None)
                    continue
            per_store.append(
                s.search(
                    texts,
                    images,
                    videos=vids,
                    top=top,
                    threshold=threshold,
                    merge_gap_s=merge_gap_s,
                    min_duration_s=min_duration_s,
                    ocr=ocr,
                    said=said,
                    false_videos=None if false_videos is None else false_videos * share[i],
                )
            )
        missing = [v for v, n in unmatched.items() if n == len(self.searchers)]
        if missing:
            raise QueryError(
                f"--video {missing[0]}: no indexed video in any of the stores has that path, folder or name."
            )
        t1 = time.perf_counter()
        kept = [(p, str(s)) for p, s in zip(per_store, self.stores) if p is not None]
        out = merge([p for p, _ in kept], [s for _, s in kept], top)
        self.last_timings = {"stores": t1 - t0, "merge": time.perf_counter() - t1}
        return out


def _matches(store: Path, v: str) -> bool:

    try:
        resolve_scope(store, [v])
    except QueryError:
        return False
    return True
