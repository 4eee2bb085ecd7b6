"""Saved labels: materialised tables that agree with `search`, refreshed when videos change."""

import numpy as np
import pytest
from gen.videos import Shot, make_video

from archive import Archive
from indexer.errors import ArchiveError, QueryError

pytestmark = (
    pytest.mark.slow
)  # each in-process index run decodes its first video in a child process (indexer.media.decode_child)


@pytest.fixture()
def arc(tmp_path, encoder):
    folder = tmp_path / "ads"
    folder.mkdir()
    make_video(folder / "a.mp4", [Shot(1, 30), Shot(2, 10), Shot(3, 40), Shot(2, 15)], "25")
    make_video(folder / "b.mp4", [Shot(4, 45), Shot(0, 15), Shot(5, 30)], "29.97")
    a = Archive(tmp_path / "store", encoder=encoder)
    a.index([folder])
    return a, folder


def rows(a, label):
    return {
        r["path"]: r
        for r in a.sql(
            "SELECT v.path, l.present, l.first_seen_s, l.duration_s, l.n_segments, l.score FROM video_labels l "
            f"JOIN videos v USING (video_id) WHERE l.label = '{label}'"
        ).records()
    }


def segs(a, label, path):
    return [
        (r["start_s"], r["end_s"])
        for r in a.sql(
            "SELECT s.start_s, s.end_s FROM segments s JOIN videos v USING (video_id) "
            f"WHERE s.label = '{label}' AND v.path = '{path}' ORDER BY s.start_s"
        ).records()
    ]


@pytest.mark.parametrize("use_threshold", [False, True])
def test_label_tables_agree_with_search(arc, use_threshold):
    a, _ = arc
    prompt = "a construction site"
    thr = None
    if use_threshold:  # random weights: a cut at the median score makes some frames match
        thr = float(
            np.median([r["s"] for r in a.sql(f"SELECT clip_score(frame_id, '{prompt}') AS s FROM frames").records()])
        )
    a.label_add("site", [prompt], threshold=thr)
    [res] = a.search(prompt, threshold=thr, top=None)
    table = rows(a, "site")
    assert len(table) == len(res.results) == 2
    if use_threshold:
        assert any(r.present for r in res.results)
    for r in res.results:
        row = table[r.video]
        assert row["present"] == r.present and row["n_segments"] == len(r.segments)
        assert row["duration_s"] == pytest.approx(r.duration_s)
        assert row["score"] == pytest.approx(r.score, abs=1e-6)
        assert (row["first_seen_s"] is None) == (r.first_seen_s is None)
        assert segs(a, "site", r.video) == [pytest.approx((s.start_s, s.end_s)) for s in r.segments]


def test_label_tables_follow_new_videos_and_removal(arc):
    a, folder = arc
    a.label_add("site", ["a construction site"], threshold=-1.0)  # everything non-blank matches
    assert len(rows(a, "site")) == 2
    make_video(folder / "c.mp4", [Shot(6, 25)], "25")
    a.index([folder])
    table = rows(a, "site")
    assert len(table) == 3
    assert table[str(folder / "c.mp4")]["duration_s"] == pytest.approx(1.0)
    # b.mp4 has half a second of black: never counted
    assert table[str(folder / "b.mp4")]["duration_s"] == pytest.approx((90 - 15) / 29.97, abs=2 / 29.97)
    a.label_remove("site")
    assert rows(a, "site") == {} and a.labels() == []
    assert a.sql("SELECT count(*) AS n FROM segments").records() == [{"n": 0}]
    with pytest.raises(ArchiveError, match="no label"):
        a.label_remove("site")


def test_label_names_and_prompts(arc):
    a, _ = arc
    a.label_add("beach")  # the name is the prompt
    [lab] = a.labels()
    assert (lab.name, lab.prompts, lab.threshold) == ("beach", ["beach"], None)
    with pytest.raises(ArchiveError, match="commas"):
        a.label_add("a,b", ["x"])


def test_classify_shares(arc):
    a, _ = arc
    a.label_add("site", ["a construction site"])
    a.label_add("football", ["football"])
    classes = a.classify()
    assert len(classes) == 2
    for c in classes:
        assert set(c.shares) == {"site", "football", "something else"}
        assert sum(c.shares.values()) == pytest.approx(1.0)
        assert c.best == max(c.shares, key=c.shares.get)
    only = a.classify(videos=["a.mp4"], labels=["site"])
    assert [c.video.endswith("a.mp4") for c in only] == [True] and set(only[0].shares) == {"site", "something else"}
    with pytest.raises(QueryError, match="unknown label"):
        a.classify(labels=["nope"])


def docs_sql():
    """Every SQL example of the docs site (```sql blocks; one statement after each ``--`` comment)."""
    import re
    from pathlib import Path

    docs = Path(__file__).parent.parent / "docs"
    text = "\n".join(p.read_text() for p in sorted(docs.rglob("*.md")))
    out = []
    for block in re.findall(r"```sql\n(.*?)```", text, re.S):
        cur: list[str] = []
        for line in block.splitlines():
            if line.startswith("--"):
                if cur:
                    out.append(" ".join(cur))
                cur = []
            elif line.strip():
                cur.append(line.strip())
        if cur:
            out.append(" ".join(cur))
    return out


def test_every_sql_example_in_the_docs_runs(arc):
    a, _ = arc
    for name in ("alcohol", "football", "beach", "car", "logo"):
        a.label_add(name, threshold=-1.0 if name in ("car", "beach") else None)
    queries = docs_sql()
    assert len(queries) >= 13
    for q in queries:
        a.sql(q.rstrip(";"))  # raises QueryError on any mistake
    both = a.sql(queries[6].rstrip(";")).records()  # car and beach: everything non-blank matches both
    assert len(both) == 2
