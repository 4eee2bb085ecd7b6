"""End to end through the Python API: real videos, real open_clip (random weights), FAISS, DuckDB."""

import os
import shutil

import numpy as np
import pytest
from gen.videos import Shot, make_video, pattern
from helpers import IMAGE_THRESHOLD
from PIL import Image

from archive import Archive
from indexer.errors import ModelMismatch, QueryError, StoreNotFound

pytestmark = (
    pytest.mark.slow
)  # each in-process index run decodes its first video in a child process (indexer.media.decode_child)

INTERVAL = 0.5  # seconds between samples at the default --fps 2


def frame_png(video_path, at_s, dest):
    import av

    with av.open(str(video_path)) as c:
        for f in c.decode(video=0):
            if f.time >= at_s:
                f.to_image().save(dest)
                return dest
    raise AssertionError("no frame")


@pytest.fixture()
def indexed(tmp_path, shots_video, encoder):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(shots_video.path, folder / "shots.mp4")
    arc = Archive(tmp_path / "store", encoder=encoder)
    report = arc.index([folder])
    assert report.ok and report.indexed == 1
    return arc, folder, shots_video


def test_image_query_finds_the_shot_with_its_timings(indexed, tmp_path):
    arc, folder, truth = indexed
    q = frame_png(folder / "shots.mp4", 2.6, tmp_path / "q.png")  # inside look 2's first shot
    [res] = arc.search(image=q, threshold=IMAGE_THRESHOLD)
    [hit] = res.results
    spans = truth.spans(2)  # look 2 appears twice
    assert hit.present
    assert abs(hit.first_seen_s - spans[0][0]) <= INTERVAL
    assert abs(hit.duration_s - sum(b - a for a, b in spans)) <= INTERVAL
    assert len(hit.segments) == 2
    for seg, (a, b) in zip(hit.segments, spans):
        assert abs(seg.start_s - a) <= INTERVAL and abs(seg.end_s - b) <= INTERVAL
        assert seg.peak_score >= IMAGE_THRESHOLD
    assert spans[0][0] <= hit.best_s < spans[0][1] or spans[1][0] <= hit.best_s < spans[1][1]


def test_absent_content_is_not_present(indexed, tmp_path):
    arc, _, _ = indexed
    q = tmp_path / "other.png"
    Image.fromarray(pattern(7)).save(q)  # a look that is not in the video
    [res] = arc.search(image=q, threshold=IMAGE_THRESHOLD)
    assert not res.results[0].present
    assert res.results[0].first_seen_s is None and res.results[0].duration_s == 0.0


def test_search_needs_no_video_files(indexed, tmp_path):
    arc, folder, truth = indexed
    q = frame_png(folder / "shots.mp4", 0.5, tmp_path / "q.png")
    before = arc.search(image=q, threshold=IMAGE_THRESHOLD)[0].results[0]
    shutil.rmtree(folder)
    after = Archive(arc.store).search(image=q, threshold=IMAGE_THRESHOLD)[0].results[0]
    assert after.video == before.video and after.segments == before.segments
    assert abs(after.first_seen_s - truth.spans(1)[0][0]) <= INTERVAL


def test_second_run_embeds_nothing_and_changed_files_are_redone(indexed, tmp_path):
    arc, folder, _ = indexed
    again = arc.index([folder])
    assert (again.indexed, again.skipped, again.frames) == (0, 1, 0)
    os.utime(folder / "shots.mp4", (1, 1))  # touched, same content: still skipped
    assert arc.index([folder]).skipped == 1
    make_video(folder / "shots.mp4", [Shot(5, 50)], "25")  # new content, same path
    redo = arc.index([folder])
    assert (redo.indexed, redo.skipped) == (1, 0)
    info = arc.info()
    assert info.videos == 1 and info.frames == 4  # 2 s at 2 samples/s, old frames replaced


def test_many_videos_ranked_and_scoped(indexed, tmp_path):
    arc, folder, _ = indexed
    make_video(folder / "other.mp4", [Shot(6, 50), Shot(2, 25)], "30")
    make_video(folder / "none.mp4", [Shot(7, 40)], "23.976")
    arc.index([folder])
    q = frame_png(folder / "shots.mp4", 2.6, tmp_path / "q.png")
    [res] = arc.search(image=q, threshold=IMAGE_THRESHOLD)
    names = [os.path.basename(r.video) for r in res.results]
    assert [r.present for r in res.results] == [True, True, False]
    assert names[2] == "none.mp4"
    other = next(r for r in res.results if r.video.endswith("other.mp4"))
    assert abs(other.first_seen_s - 50 / 30) <= INTERVAL
    assert [os.path.basename(r.video) for r in arc.search(image=q, videos=["other.mp4"])[0].results] == ["other.mp4"]
    assert len(arc.search(image=q, top=1)[0].results) == 1
    with pytest.raises(QueryError, match="--video"):
        arc.search(image=q, videos=[str(tmp_path / "nope")])


def test_several_text_queries_in_one_call(indexed):
    arc, _, _ = indexed
    res = arc.search("a beach", "football", "construction site")
    assert [r.query for r in res] == ["a beach", "football", "construction site"]
    assert all(r.kind == "text" and r.threshold == 0.5 and "background" in r.rule for r in res)
    for r in res:  # asked together or alone, each query gets the same answers
        [alone] = arc.search(r.query)
        assert [(v.video, v.present) for v in r.results] == [(v.video, v.present) for v in alone.results]
        assert [v.score for v in r.results] == pytest.approx([v.score for v in alone.results], abs=1e-6)


def test_prompt_templates_can_be_changed(indexed):
    arc, _, _ = indexed
    [plain] = arc.search("a red car", templates=["{}"])
    [photo] = arc.search("a red car", templates=["a photo of {}."])
    [default] = arc.search("a red car")
    scores = {plain.results[0].score, photo.results[0].score, default.results[0].score}
    assert len(scores) == 3  # each template set embeds the text differently
    with pytest.raises(QueryError, match="template"):
        arc.search("a red car", templates=["no placeholder"])


def test_bad_queries_raise_clear_errors(indexed, tmp_path):
    arc, _, _ = indexed
    with pytest.raises(QueryError, match="empty"):
        arc.search("  ")
    with pytest.raises(QueryError, match="nothing to search"):
        arc.search()
    with pytest.raises(QueryError, match="not found"):
        arc.search(image=tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(QueryError, match="not a readable image"):
        arc.search(image=bad)
    with pytest.raises(StoreNotFound):
        Archive(tmp_path / "empty").search("x")


def test_other_model_on_existing_store_is_refused(indexed):
    arc, folder, _ = indexed
    with pytest.raises(ModelMismatch, match="ViT-S-32-alt"):
        arc.index([folder], model="ViT-B-32", pretrained="none")


def test_real_clips_and_sql(clips, encoder, tmp_path):
    arc = Archive(tmp_path / "s2", encoder=encoder)
    report = arc.index([clips])
    assert report.indexed == 2 and report.failed == 0
    rows = arc.sql("SELECT name, n_frames, round(duration_s, 2) AS d, fps FROM videos ORDER BY name").records()
    assert [r["name"] for r in rows] == ["Megamind.avi", "tree.avi"]
    assert rows[0]["n_frames"] == 23 + 4 and rows[0]["d"] == pytest.approx(11.30, abs=0.01)  # grid + shot starts
    shots = arc.sql(
        "SELECT s.kind, round(s.start_s * 23.976) AS first_frame FROM shots s JOIN videos v USING (video_id) "
        "WHERE v.name = 'Megamind.avi' ORDER BY s.start_s"
    ).records()
    assert [(r["kind"], r["first_frame"]) for r in shots] == [
        ("black", 1),
        ("content", 2),
        ("content", 99),
        ("content", 155),
        ("content", 201),
    ]
    # every frame lies inside its shot
    assert arc.sql(
        "SELECT count(*) AS n FROM frames f JOIN shots s USING (shot_id) "
        "WHERE f.ts_s < s.start_s OR f.end_s > s.end_s + 1e-9"
    ).records() == [{"n": 0}]
    assert rows[0]["fps"] == pytest.approx(23.976, abs=1e-3)
    # frames cover each video without gaps: end_s of one sample is ts_s of the next
    gaps = arc.sql(
        "SELECT count(*) AS n FROM (SELECT end_s, lead(ts_s) OVER (PARTITION BY video_id ORDER BY ts_s) AS nxt "
        "FROM frames) WHERE nxt IS NOT NULL AND abs(nxt - end_s) > 1e-9"
    ).records()
    assert gaps == [{"n": 0}]
    # the stored vectors are the encoder's own embeddings of those frames
    from indexer.media.decode import sample_frames
    from indexer.store import Reader

    t = Reader(arc.store).frames()
    first = next(sample_frames(clips / "tree.avi", 2.0, encoder.image_size))
    vid = next(k for k, v in t.videos.items() if v["name"] == "tree.avi")
    row = t.row[np.flatnonzero(t.video_id == vid)[0]]
    assert float(t.vectors[row] @ encoder.encode_images([first.rgb])[0]) > 0.999


def test_sql_clip_score_agrees_with_search(indexed, tmp_path):
    arc, folder, _ = indexed
    make_video(folder / "more.mp4", [Shot(4, 40), Shot(6, 40)], "25")
    arc.index([folder])
    text = "a red car"
    scores = [r["s"] for r in arc.sql(f"SELECT clip_score(frame_id, '{text}') AS s FROM frames").records()]
    assert len(scores) == arc.info().frames and len(set(scores)) > 1  # one score per frame, not a constant
    [res] = arc.search(text)
    rows = arc.sql(
        f"SELECT v.path, max(clip_score(f.frame_id, '{text}')) AS score, arg_max(f.ts_s, clip_score(f.frame_id, '{text}')) AS best_s "
        "FROM frames f JOIN videos v USING (video_id) GROUP BY v.path"
    ).records()
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(res.results) == 2
    for r in res.results:
        assert by_path[r.video]["score"] == pytest.approx(r.score, abs=1e-5)
        assert by_path[r.video]["best_s"] == pytest.approx(r.best_s)
