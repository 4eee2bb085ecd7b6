"""Finding shared footage across the archive: each new video's samples against every stored one
(an exact scan, or the IVF index's neighbours), then the candidates aligned (:mod:`.align`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from indexer import settings
from indexer.store import Reader
from search.scan import matvecs
from search.timeline import video_bounds

if TYPE_CHECKING:
    pass
from .align import BASIS_VIDEOS, MIN_RUN, Basis, Match, Side, align, measure_basis, side_of

PASS_SAMPLES = 2048  # samples compared with the archive in one pass over its vectors


IVF_NEIGHBOURS = 256  # nearest stored samples asked of the IVF index per sample (archives that have one)


MATCH_NPROBE_DIV = 8  # the same footage lies in the nearest lists: an eighth of the lists a query visits


IVF_MARGIN = 0.05  # ... kept when their approximate (PQ) cosine is at most this far below the candidate level


def find(
    store_dir: "str | os.PathLike[str]",
    sides: Sequence[Side],
    basis: Basis,
    skip: Any = None,
    videos: Sequence[int] | None = None,
    step: int = 8192,
    use_ivf: bool = True,
) -> list[Match]:
    """Every aligned shared segment between each of ``sides`` and the stored videos (module
    docstring): one range search of all their samples over the stored vectors (read in file
    order, memory-mapped; the catalog is asked only about the frames that came close), then the
    alignment of each candidate video. A side's own video is not compared with itself;
    ``skip(video_a, video_b)`` may leave other pairs out (already compared); ``videos`` limits the
    candidates to those ids; ``use_ivf`` False scans every vector exactly even where the archive
    has an IVF index."""
    usable = [s for s in sides if len(s) and (~s.blank).any()]
    if not usable:
        return []
    q = np.ascontiguousarray(np.concatenate([s.vectors[~s.blank] for s in usable]), np.float32)
    owner = np.concatenate([np.full(int((~s.blank).sum()), k) for k, s in enumerate(usable)])
    hit_ids, hit_q = [], []
    index, view, ids, _key = Reader.of(store_dir).ivf_layer() if use_ivf else (None, None, None, ())
    if index is not None:  # a large archive: nearest neighbours through its IVF index
        index.set_nprobe(max(1, settings.ivf_nprobe() // MATCH_NPROBE_DIV))
        dist, found = index.search(q, IVF_NEIGHBOURS)
        r, c = np.nonzero((found >= 0) & (dist >= basis.candidate_level - IVF_MARGIN))
        hit_ids.append(found[r, c])
        hit_q.append(r)
    else:
        view, ids = Reader.of(store_dir).vector_layer()
    if view is not None:  # every vector (or those the IVF index does not hold yet), exactly
        assert ids is not None  # read with the view
        for r0, block in view.blocks(step, reuse=True):
            r, c = np.nonzero(matvecs(block, q) >= basis.candidate_level)
            if len(r):
                hit_ids.append(ids[r0 + r])
                hit_q.append(c)
            view.release_pages()
    del view
    if not hit_ids or not sum(len(h) for h in hit_ids):
        return []
    fid, qi = np.concatenate(hit_ids), np.concatenate(hit_q)
    video_of = Reader.of(store_dir).frame_videos(fid)
    vid = np.array([video_of.get(int(f), -1) for f in fid], np.int64)
    keep = vid >= 0
    if videos is not None:
        keep &= np.isin(vid, np.asarray(list(videos), np.int64))
    vid, qi = vid[keep], qi[keep]
    wanted: dict[int, list[int]] = {}
    for k, a in enumerate(usable):
        mine = owner[qi] == k
        if not mine.any():
            continue
        pairs = np.unique(np.stack([vid[mine], qi[mine]], axis=1), axis=0)  # distinct (video, A sample)
        cand, n = np.unique(pairs[:, 0], return_counts=True)
        wanted[k] = [
            int(v) for v in cand[n >= MIN_RUN] if int(v) != a.video_id and not (skip and skip(a.video_id, int(v)))
        ]
    every = sorted({v for vs in wanted.values() for v in vs})
    if not every:
        return []
    table = Reader.of(store_dir).frames(every)
    starts, stops = video_bounds(table.video_id)
    at = {int(table.video_id[s0]): (int(s0), int(s1)) for s0, s1 in zip(starts, stops)}
    out: list[Match] = []
    white: dict[int, np.ndarray] = {}
    for k, vs in wanted.items():
        a = usable[k]
        wa = basis.whiten(a.vectors)
        for v in vs:
            if v not in at:
                continue
            b = side_of(table, *at[v])
            if v not in white:
                white[v] = basis.whiten(b.vectors)
            out += align(a, b, wa @ white[v].T, basis.level, white=(wa, white[v]))
    return out


def basis_of(store_dir: "str | os.PathLike[str]") -> tuple[Basis, bool]:
    """The store's kept basis, or one measured now on a sample of its videos (then ``True``: to be kept)."""
    kept = Reader.of(store_dir).match_basis()
    if kept is not None:
        mean, transform, level, cand, n = kept
        return Basis(mean, transform, level, cand, n), False
    refs = Reader.of(store_dir).video_refs()
    ids = [r.video_id for r in refs]
    if len(ids) > BASIS_VIDEOS:  # videos spread over the archive, each with all its samples
        ids = [ids[k] for k in np.linspace(0, len(ids) - 1, BASIS_VIDEOS).astype(np.int64)]
    return measure_basis(Reader.of(store_dir).frames(ids)), True


def compare(
    store_dir: "str | os.PathLike[str]", video_ids: Sequence[int], progress: Any = None
) -> tuple[Basis, bool, list[Match]]:
    """Compare the stored videos ``video_ids`` with the whole archive: ``(basis, new_basis,
    matches)``, each pair once (a pair of two of them is compared from the lower id). Their samples
    go through the range search a few thousand at a time."""
    basis, new = basis_of(store_dir)
    wanted = sorted(set(int(v) for v in video_ids))
    out: list[Match] = []
    k = 0
    while k < len(wanted):
        chunk = wanted[k : k + 512]
        table = Reader.of(store_dir).frames(chunk)
        starts, stops = video_bounds(table.video_id)
        sides = [side_of(table, int(a), int(b)) for a, b in zip(starts, stops)]
        batch: list[Side] = []
        for s in sides + [None]:
            if s is not None and (not batch or sum(len(x) for x in batch) + len(s) <= PASS_SAMPLES):
                batch.append(s)
                continue
            if batch:
                out += find(store_dir, batch, basis, skip=lambda va, vb: vb in set(wanted) and vb < va)
            batch = [s] if s is not None else []
        k += len(chunk)
        if progress is not None:
            progress(min(k, len(wanted)), len(wanted))
    return basis, new, [m.ordered() for m in out]
