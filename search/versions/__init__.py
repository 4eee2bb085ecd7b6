"""Versions of the same film: which videos share footage, and where, from the stored vectors alone.

Shared footage leaves runs of near-identical vectors, in the same order, in two videos. For each
new video (or a file given to ``archive search --like-video``):

1. **Neighbours.** Every sample is compared with the whole archive: in one exact scan of the
   stored vectors (a range search: every stored sample at or above the *candidate level*), or,
   in an archive with an IVF index (``archive optimize``), through FAISS: its ``IVF_NEIGHBOURS``
   nearest stored samples (PQ cosines, ``IVF_MARGIN`` of slack), plus an exact scan of the
   segments the index does not hold yet. Videos with at least ``MIN_RUN`` samples near some
   become candidates. Nothing is compared video by video.
2. **Alignment.** For each candidate, the cosine matrix of the two videos' whitened samples is
   computed, and shared footage is found as lines ``t_b = s * t_a + c`` (speeds 0.96-1.04, any
   offset) through the cells at or above the *match level*, followed through cells at or above
   the *stay level* (twice as far from 1). A line's cells are cut into runs (gaps up to
   ``BRIDGE_S`` bridged; a run goes on across a cut only when both videos cut there), and each
   run is placed shot pair by shot pair (:func:`_place`: the offset that lines up all samples of
   the two shots best, one that puts their cuts together winning near ties; the shared part is
   where the shots overlap), so boundaries at cuts are exact to the frame on both sides and
   others lie within a sample interval. The shots placed leave play before the next line is
   looked for: dropped shots split a segment, reordered shots give segments of their own, and a
   held shot matches once.
3. **Pairs.** A pair is matched only when one of its segments rests on ``MIN_RUN`` samples of each
   video at the match level and averages it, and does not line up two still pictures (a run
   whose consecutive samples are closer than half the way from the match level to 1 in both
   videos: two stills match at any offset, so they show no footage in order); weaker segments
   (motion-heavy shots, stills) count only beside such a one.

The match level is the archive's own "same footage" distance: ``1 - MATCH_SPREAD * d``, where
``d`` is the median distance (``1 - cosine``) between consecutive samples of one shot, measured once
on the archive and kept in the store (table ``match_basis``, with the whitening), so later runs match alike. Two
samples match when they are closer than motion inside a shot typically moves a picture.

One module per step: :mod:`.align` (two videos' samples lined up), :mod:`.find` (a video's
samples against the whole archive) and :mod:`.report` (groups, segments, query by video).
"""

from .align import Basis, Match, Side, align, make_side, measure_basis, side_of
from .find import basis_of, compare, find
from .report import Group, Member, VersionsReport, like_video, report, segment_dict

__all__ = [
    "Basis",
    "Group",
    "Match",
    "Member",
    "Side",
    "VersionsReport",
    "align",
    "basis_of",
    "compare",
    "find",
    "like_video",
    "make_side",
    "measure_basis",
    "report",
    "segment_dict",
    "side_of",
]
