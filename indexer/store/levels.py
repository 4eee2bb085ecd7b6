"""The image rule's levels kept in the catalog (measured by :mod:`search.levels`): the stamp of
the archive they were measured on, and whether they still hold for the archive as it is now."""

from __future__ import annotations

from typing import Any

IMAGE_LEVELS_KEY = "image_levels"  # meta key: the image rule's levels (search.levels), JSON


def levels_stamp(con: Any) -> str:
    """What the image rule's levels depend on: the live frames and the matches. Changes whenever a
    video is added, replaced or removed, or the matches change."""
    f = con.execute("SELECT count(*), coalesce(max(frame_id), -1), coalesce(sum(frame_id), 0) FROM frames").fetchone()
    m = con.execute(
        "SELECT count(*), coalesce(sum(hash(video_a, video_b, a_start_s, b_start_s) % 1000000007), 0) FROM matches"
    ).fetchone()
    return ":".join(str(int(x)) for x in (*f, *m))


LEVELS_DRIFT = 0.01  # kept image levels hold while at most this share of the frames (and of the matches) changed


def levels_fresh(kept: dict | None, stamp: str) -> bool:
    """Whether levels kept at ``kept["stamp"]`` still hold for a store now at ``stamp``
    (:func:`levels_stamp`: frames, max frame id, sum of ids, matches, hash)."""
    if not isinstance(kept, dict) or not isinstance(kept.get("stamp"), str):
        return False
    if kept["stamp"] == stamp:
        return True
    try:
        f0, m0, _s0, k0, _h0 = (int(x) for x in kept["stamp"].split(":"))
        f1, m1, _s1, k1, _h1 = (int(x) for x in stamp.split(":"))
    except ValueError:
        return False
    # new frames get ids above the largest one (ids that `archive optimize` frees may be given again:
    # then a change reads up to twice too small)
    added = max(0, m1 - m0)
    removed = max(0, f0 + added - f1)
    # matches: 1% of them, and at least one per 10,000 frames (a big archive with few matches takes a
    # clip that matches something without measuring again)
    return added + removed <= LEVELS_DRIFT * f0 and abs(k1 - k0) <= LEVELS_DRIFT * max(k0, f0 / 100)
