"""The ``matches``, ``versions`` and ``match_basis`` tables: writing them and grouping versions.

Matches are found by the read path (:mod:`search.versions`) and committed here. ``versions`` is
derived from ``matches`` alone: videos linked, directly or through others, by pairs sharing at
least ``meta.min_shared`` seconds of footage (the fewer of the two sides' shared seconds) form a
group; it is regrouped in the same transaction as every change to ``matches`` or to the videos.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .layout import now, transaction

if TYPE_CHECKING:
    from .writer import Writer

DEFAULT_MIN_SHARED_S = 2.0  # seconds of shared footage that make two videos versions of one film


def min_shared(con: Any) -> float:
    row = con.execute("SELECT value FROM meta WHERE key = 'min_shared'").fetchall()
    return float(row[0][0]) if row else DEFAULT_MIN_SHARED_S


def save_basis(
    con: Any, mean: np.ndarray, transform: np.ndarray, level: float, candidate_level: float, vectors: int
) -> None:
    con.execute("DELETE FROM match_basis")
    con.execute(
        "INSERT INTO match_basis VALUES (?, ?, ?, ?, ?, ?)",
        [
            np.asarray(mean, np.float32).tobytes(),
            np.asarray(transform, np.float32).tobytes(),
            float(level),
            float(candidate_level),
            int(vectors),
            now(),
        ],
    )


def read_basis(con: Any) -> tuple[np.ndarray, np.ndarray, float, float, int] | None:
    """``(mean, transform, level, candidate_level, vectors)``, or None when not measured yet."""
    row = con.execute("SELECT mean, transform, level, candidate_level, vectors FROM match_basis").fetchall()
    if not row:
        return None
    mean = np.frombuffer(row[0][0], np.float32).copy()
    transform = np.frombuffer(row[0][1], np.float32).reshape(len(mean), len(mean)).copy()
    return mean, transform, float(row[0][2]), float(row[0][3]), int(row[0][4])


COLUMNS = ("video_a", "video_b", "a_start_s", "a_end_s", "b_start_s", "b_end_s", "score", "samples")


def replace(con: Any, video_ids: Sequence[int], rows: Sequence[tuple[Any, ...]]) -> None:
    """Replace every match of a pair with one of ``video_ids`` by ``rows``; mark them compared."""
    ids = [int(v) for v in video_ids]
    if ids:
        con.execute(
            "DELETE FROM matches WHERE video_a IN (SELECT unnest(?::INTEGER[])) "
            "OR video_b IN (SELECT unnest(?::INTEGER[]))",
            [ids, ids],
        )
    if rows:
        cols = {
            c: np.array([r[k] for r in rows], dtype=np.int32 if k < 2 or c == "samples" else np.float64)
            for k, c in enumerate(COLUMNS)
        }
        con.register("_new_matches", cols)
        try:
            con.execute(
                f"INSERT INTO matches SELECT {', '.join(COLUMNS)} FROM _new_matches m WHERE "
                "m.video_a IN (SELECT video_id FROM videos) AND m.video_b IN (SELECT video_id FROM videos)"
            )
        finally:
            con.unregister("_new_matches")
    if ids:
        con.execute("UPDATE videos SET matched = true WHERE video_id IN (SELECT unnest(?::INTEGER[]))", [ids])


def union_length(spans: Sequence[tuple[float, float]]) -> float:
    """Seconds covered by time ranges (overlaps counted once)."""
    total, cur = 0.0, None
    for lo, hi in sorted(spans):
        if cur is None or lo > cur[1]:
            if cur is not None:
                total += cur[1] - cur[0]
            cur = [lo, hi]
        else:
            cur[1] = max(cur[1], hi)
    return total + (cur[1] - cur[0] if cur is not None else 0.0)


def groups(
    pairs: dict[tuple[int, int], float], durations: dict[int, float], min_shared_s: float
) -> list[tuple[int, int, bool]]:
    """``(group_id, video_id, is_longest)`` for videos linked by pairs sharing at least
    ``min_shared_s`` seconds. Videos alone are left out; a group's id is its smallest video id; its
    longest member (ties: the smallest id) is marked."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for (va, vb), sec in pairs.items():
        if sec + 1e-9 >= min_shared_s:
            ra, rb = find(va), find(vb)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for v in list(parent):
        members.setdefault(find(v), []).append(v)
    out = []
    for vs in members.values():
        gid = min(vs)
        longest = min(vs, key=lambda v: (-durations.get(v, 0.0), v))
        out += [(gid, v, v == longest) for v in sorted(vs)]
    return out


def _grouping(con: Any) -> tuple[dict[tuple[int, int], tuple[list, list]], list[tuple[int, int, bool]]]:
    """Each pair's shared time ranges on both sides, and the groups ``matches`` and
    ``meta.min_shared`` make (:func:`groups`)."""
    rows = con.execute("SELECT video_a, video_b, a_start_s, a_end_s, b_start_s, b_end_s FROM matches").fetchall()
    spans: dict[tuple[int, int], tuple[list, list]] = {}
    for va, vb, a0, a1, b0, b1 in rows:
        sa, sb = spans.setdefault((int(va), int(vb)), ([], []))
        sa.append((a0, a1))
        sb.append((b0, b1))
    pairs = {p: min(union_length(sa), union_length(sb)) for p, (sa, sb) in spans.items()}
    durations = {int(v): float(d or 0.0) for v, d in con.execute("SELECT video_id, duration_s FROM videos").fetchall()}
    return spans, groups(pairs, durations, min_shared(con))


def regroup(con: Any) -> None:
    """Rebuild ``versions`` from ``matches`` and ``meta.min_shared``."""
    spans, found = _grouping(con)
    linked: dict[int, list[tuple[float, float]]] = {}
    members = {v: g for g, v, _ in found}
    for (va, vb), (sa, sb) in spans.items():
        if va in members and members.get(vb) == members[va]:
            linked.setdefault(va, []).extend(sa)
            linked.setdefault(vb, []).extend(sb)
    con.execute("DELETE FROM versions")
    if found:
        con.executemany(
            "INSERT INTO versions VALUES (?, ?, ?, ?)",
            [(g, v, longest, round(union_length(linked.get(v, [])), 4)) for g, v, longest in found],
        )


def verify(con: Any, load: Any, sample: int = 50) -> tuple[list[str], list[int]]:
    """Check ``matches`` and ``versions`` against the catalog and, on up to ``sample`` match rows
    spread over the table, against the stored vectors: along each sampled segment, each sample of
    ``video_a`` is compared (whitened, with the kept basis) with the samples of ``video_b`` around
    the aligned time; the median of their best cosines must reach the stay level
    (``1 - 2 (1 - level)``) the matching followed shared footage with. ``load(video_ids)`` gives their frame table.

    Returns:
        ``(problems, videos)``: each problem says what to do; ``videos`` are those whose matches
        disagree with their vectors (``archive check --repair`` has them compared again).
    """
    problems: list[str] = []
    n = con.execute("SELECT count(*) FROM matches").fetchall()[0][0]
    if not n:
        return problems, []
    orphan = con.execute(
        "SELECT count(*) FROM matches WHERE video_a NOT IN (SELECT video_id FROM videos) "
        "OR video_b NOT IN (SELECT video_id FROM videos)"
    ).fetchall()[0][0]
    if orphan:
        problems.append(f"{orphan} match row(s) name a video that is not in the catalog: run `archive check --repair`.")
    bad = con.execute(
        "SELECT count(*) FROM matches m JOIN videos a ON a.video_id = m.video_a JOIN videos b ON b.video_id = m.video_b "
        "WHERE m.video_a >= m.video_b OR m.a_start_s < -1e-3 OR m.b_start_s < -1e-3 OR m.a_end_s <= m.a_start_s "
        "OR m.b_end_s <= m.b_start_s OR m.a_end_s > a.duration_s + 0.05 OR m.b_end_s > b.duration_s + 0.05"
    ).fetchall()[0][0]
    if bad:
        problems.append(f"{bad} match row(s) have time ranges outside their videos: run `archive check --repair`.")
    kept = {
        (g, v, bool(lg)) for g, v, lg in con.execute("SELECT group_id, video_id, is_longest FROM versions").fetchall()
    }
    if set(_grouping(con)[1]) != kept:
        problems.append(
            "the versions table is out of step with the matches: run `archive check --repair` (it regroups)."
        )
    basis = read_basis(con)
    if basis is None:
        return problems, []
    mean, transform, level, _cand, _n = basis
    stay = 1.0 - 2.0 * (1.0 - level)
    rows = con.execute("SELECT video_a, video_b, a_start_s, a_end_s, b_start_s, b_end_s FROM matches").fetchall()
    known = {int(r[0]) for r in con.execute("SELECT video_id FROM videos").fetchall()}
    pick = np.unique(np.linspace(0, len(rows) - 1, min(sample, len(rows))).astype(np.int64))
    chosen = [rows[k] for k in pick if rows[k][0] in known and rows[k][1] in known]
    if not chosen:
        return problems, []
    table = load(sorted({int(r[0]) for r in chosen} | {int(r[1]) for r in chosen}))

    def whiten(x: np.ndarray) -> np.ndarray:
        y = (np.asarray(x, np.float32) - mean) @ transform
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)

    disagree: set[int] = set()
    for va, vb, a0, a1, b0, b1 in chosen:
        ia = np.flatnonzero(
            (table.video_id == va) & (table.ts_s >= a0 - 1e-6) & (table.ts_s < a1 - 1e-6) & ~table.blank
        )
        jb = np.flatnonzero((table.video_id == vb) & ~table.blank)
        if not len(ia) or not len(jb):
            continue
        at = b0 + (table.ts_s[ia] - a0) * ((b1 - b0) / max(a1 - a0, 1e-9))
        k = np.clip(np.searchsorted(table.ts_s[jb], at), 0, len(jb) - 1)
        va_v = whiten(table.vectors.take(table.row[ia]))
        best = np.full(len(ia), -1.0)
        for d in (-2, -1, 0, 1):  # the B samples around the aligned time (the sample grids differ)
            kk = np.clip(k + d, 0, len(jb) - 1)
            vb_v = whiten(table.vectors.take(table.row[jb[kk]]))
            best = np.maximum(best, np.einsum("ij,ij->i", va_v, vb_v))
        if float(np.median(best)) < stay:
            disagree.update((int(va), int(vb)))
    if disagree:
        problems.append(
            f"matches of {len(disagree)} video(s) disagree with their stored vectors: run `archive check "
            "--repair`, then `archive index` on any folder to compare them again."
        )
    return problems, sorted(disagree)


class MatchWriter:
    """Writes of the shared-footage tables; reached as ``writer.footage`` (it holds the store's lock)."""

    def __init__(self, writer: "Writer") -> None:
        self.w = writer

    # -- versions (matches between videos) ----------------------------------------------------------
    def save_basis(
        self, mean: np.ndarray, transform: np.ndarray, level: float, candidate_level: float, vectors: int
    ) -> None:
        """Keep how samples are compared for matching (measured once, :mod:`search.versions`)."""
        with self.w.catalog() as con, transaction(con):
            save_basis(con, mean, transform, level, candidate_level, vectors)

    def replace(self, video_ids: Sequence[int], rows: Sequence[tuple[Any, ...]]) -> None:
        """The matches of ``video_ids`` (every pair with one of them) become ``rows``
        (``video_a, video_b, a_start_s, a_end_s, b_start_s, b_end_s, score, samples``), the videos
        are marked compared and the versions table is regrouped, in one transaction. Rows of videos
        no longer in the catalog (removed meanwhile) are left out."""
        with self.w.catalog() as con, transaction(con):
            replace(con, video_ids, rows)
            regroup(con)

    def repair(self, video_ids: Sequence[int]) -> None:
        """Drop match rows of missing videos or with bad ranges, forget the matches of ``video_ids``
        (the next index run compares them again) and regroup, in one transaction."""
        with self.w.catalog() as con, transaction(con):
            con.execute(
                "DELETE FROM matches WHERE video_a NOT IN (SELECT video_id FROM videos) OR video_b NOT IN "
                "(SELECT video_id FROM videos) OR video_a >= video_b OR a_end_s <= a_start_s OR b_end_s <= b_start_s"
            )
            con.execute(
                "DELETE FROM matches m USING videos a, videos b WHERE a.video_id = m.video_a AND "
                "b.video_id = m.video_b AND (m.a_end_s > a.duration_s + 0.05 OR m.b_end_s > b.duration_s + 0.05)"
            )
            ids = [int(v) for v in video_ids]
            if ids:
                con.execute(
                    "DELETE FROM matches WHERE video_a IN (SELECT unnest(?::INTEGER[])) OR "
                    "video_b IN (SELECT unnest(?::INTEGER[]))",
                    [ids, ids],
                )
                con.execute("UPDATE videos SET matched = NULL WHERE video_id IN (SELECT unnest(?::INTEGER[]))", [ids])
            regroup(con)

    def set_min_shared(self, seconds: float) -> None:
        """Group versions by ``seconds`` of shared footage from now on (``meta.min_shared``)."""
        with self.w.catalog() as con, transaction(con):
            con.execute("DELETE FROM meta WHERE key = 'min_shared'")
            con.execute("INSERT INTO meta VALUES ('min_shared', ?)", [repr(float(seconds))])
            regroup(con)
