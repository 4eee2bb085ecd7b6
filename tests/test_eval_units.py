"""Fast unit tests of ``search.eval.metrics``, ``search.eval.evaluate.TimeStats`` and ``search.eval.truth``.

No video, model or store: every expected value is worked out by hand in the comments.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from indexer.errors import QueryError
from indexer.store import LabelDef, VideoRef
from search.eval.evaluate import TimeStats, VideoEval
from search.eval.metrics import (
    Counts,
    Point,
    average_precision,
    best_f1,
    counts,
    for_precision,
    iou,
    length,
    merge,
    overlap,
    sweep,
)
from search.eval.truth import read_truth

approx = pytest.approx


# ---------------------------------------------------------------------------------------------
# intervals


def test_merge_sorts_and_joins_overlaps():
    # (1,3) and (2,4) overlap -> (1,4); (5,6) is apart.
    assert merge([(5, 6), (1, 3), (2, 4)]) == [(1, 4), (5, 6)]


def test_merge_joins_touching_intervals():
    assert merge([(0, 1), (1, 2)]) == [(0, 2)]


def test_merge_keeps_contained_interval_inside_outer():
    assert merge([(0, 10), (2, 3)]) == [(0, 10)]


def test_merge_drops_zero_and_negative_length():
    assert merge([(3, 3), (5, 4), (1, 2)]) == [(1, 2)]
    assert merge([]) == []


def test_merge_returns_floats():
    out = merge([(1, 2)])
    assert out == [(1.0, 2.0)] and all(isinstance(x, float) for x in out[0])


def test_length_counts_overlaps_once():
    # (0,2)+(1,3) -> (0,3) = 3; (5,6) = 1; total 4.
    assert length([(0, 2), (1, 3), (5, 6)]) == approx(4.0)
    assert length([]) == 0.0


def test_overlap_of_several_intervals():
    # x = (0,2),(4,6); y = (1,5): (1,2) -> 1 and (4,5) -> 1 = 2.
    assert overlap([(0, 2), (4, 6)], [(1, 5)]) == approx(2.0)
    assert overlap([(0, 1)], [(2, 3)]) == 0.0


def test_iou_half_overlap_is_one_third():
    # inter (1,2) = 1; union 2 + 2 - 1 = 3.
    assert iou([(0, 2)], [(1, 3)]) == approx(1 / 3)


def test_iou_disjoint_is_zero():
    assert iou([(0, 1)], [(2, 3)]) == 0.0


def test_iou_identical_is_one():
    assert iou([(1.5, 4.0)], [(1.5, 4.0)]) == approx(1.0)


def test_iou_both_empty_is_zero():
    assert iou([], []) == 0.0
    assert iou([(0, 1)], []) == 0.0


def test_iou_several_intervals_on_both_sides():
    # pred (0,2),(4,8) = 2 + 4 = 6;  true (1,5),(7,9) = 4 + 2 = 6.
    # inter: (0,2)&(1,5) = 1; (4,8)&(1,5) = 1; (4,8)&(7,9) = 1 -> 3.
    # union = 6 + 6 - 3 = 9 -> 3/9 = 1/3.
    assert iou([(0, 2), (4, 8)], [(1, 5), (7, 9)]) == approx(1 / 3)


def test_iou_merges_overlapping_predictions_first():
    # pred (0,2),(1,3) is (0,3) = 3; true (0,3) = 3 -> 1.
    assert iou([(0, 2), (1, 3)], [(0, 3)]) == approx(1.0)


# ---------------------------------------------------------------------------------------------
# average precision


def test_ap_two_hits_of_three():
    # hits at ranks 1 and 3: precision 1/1 and 2/3 -> mean 5/6.
    assert average_precision([True, False, True]) == approx((1 / 1 + 2 / 3) / 2)


def test_ap_hit_at_rank_two():
    assert average_precision([False, True]) == approx(0.5)


def test_ap_all_relevant_is_one():
    assert average_precision([True, True, True]) == approx(1.0)


def test_ap_nothing_relevant_is_none():
    assert average_precision([False, False]) is None
    assert average_precision([]) is None


# ---------------------------------------------------------------------------------------------
# counts


def test_counts_from_truth_and_prediction():
    # truth  T T F F F
    # pred   T F T F F  -> tp 1, fn 1, fp 1, tn 2
    c = counts([True, True, False, False, False], [True, False, True, False, False])
    assert (c.tp, c.fp, c.fn, c.tn) == (1, 1, 1, 2)
    assert c.precision == approx(0.5) and c.recall == approx(0.5) and c.f1 == approx(0.5)


def test_counts_f1_is_harmonic_mean():
    # P = 2/3, R = 2/4 = 1/2 -> F1 = 2*(1/3)/(7/6) = 4/7.
    c = Counts(tp=2, fp=1, fn=2, tn=0)
    assert c.f1 == approx(4 / 7)


def test_counts_nothing_claimed_precision_is_one():
    c = Counts(tp=0, fp=0, fn=3, tn=1)
    assert c.precision == 1.0 and c.recall == 0.0 and c.f1 == 0.0


def test_counts_nothing_present_recall_is_one():
    c = Counts(tp=0, fp=2, fn=0, tn=1)
    assert c.recall == 1.0 and c.precision == 0.0 and c.f1 == 0.0


def test_counts_all_negatives_correctly_rejected_is_perfect():
    c = Counts(tp=0, fp=0, fn=0, tn=5)
    assert (c.precision, c.recall, c.f1) == (1.0, 1.0, 1.0)


def test_counts_add_and_to_dict():
    c = Counts(1, 2, 3, 4) + Counts(1, 0, 0, 1)
    assert c == Counts(2, 2, 3, 5)
    # P 2/4 = 0.5, R 2/5 = 0.4, F1 = 0.4/0.9 = 0.4444
    assert c.to_dict() == {"tp": 2, "fp": 2, "fn": 3, "tn": 5, "precision": 0.5, "recall": 0.4, "f1": 0.4444}


# ---------------------------------------------------------------------------------------------
# sweep


def _tuple(p: Point):
    return (p.counts.tp, p.counts.fp, p.counts.fn, p.counts.tn)


def test_sweep_thresholds_and_counts():
    # levels 0.9, 0.8, 0.7, 0.6; cuts are midpoints: 0.85, 0.75, 0.65, and below 0.6 by
    # max(1e-3, 0.01*0.6) = 0.006 -> 0.594, midpoint 0.597.
    # truth T F T F:
    #   0.85: claim {0.9}           -> tp1 fp0 fn1 tn2
    #   0.75: claim {0.9,0.8}       -> tp1 fp1 fn1 tn1
    #   0.65: claim {0.9,0.8,0.7}   -> tp2 fp1 fn0 tn1
    #   0.597: claim all            -> tp2 fp2 fn0 tn0
    pts = sweep([0.9, 0.8, 0.7, 0.6], [True, False, True, False])
    assert [p.threshold for p in pts] == approx([0.85, 0.75, 0.65, 0.597])
    assert [_tuple(p) for p in pts] == [(1, 0, 1, 2), (1, 1, 1, 1), (2, 1, 0, 1), (2, 2, 0, 0)]
    # precision 1, 1/2, 2/3, 1/2; recall 1/2, 1/2, 1, 1; F1 2/3, 1/2, 4/5, 2/3
    assert [p.precision for p in pts] == approx([1, 0.5, 2 / 3, 0.5])
    assert [p.recall for p in pts] == approx([0.5, 0.5, 1, 1])
    assert [p.f1 for p in pts] == approx([2 / 3, 0.5, 0.8, 2 / 3])


def test_sweep_order_of_input_does_not_matter():
    a = sweep([0.9, 0.8, 0.7, 0.6], [True, False, True, False])
    b = sweep([0.6, 0.7, 0.9, 0.8], [False, True, True, False])
    assert [(p.threshold, _tuple(p)) for p in a] == [(p.threshold, _tuple(p)) for p in b]


def test_sweep_each_cut_separates_the_same_videos_as_its_level():
    scores = [0.9, 0.8, 0.7, 0.6]
    for p in sweep(scores, [True, False, True, False]):
        assert p.counts.tp + p.counts.fp == sum(s >= p.threshold for s in scores)


def test_sweep_tied_scores_are_one_level():
    # levels 0.9 (two videos) and 0.5; cuts (0.9+0.5)/2 = 0.7, and 0.5 - 0.005/2 = 0.4975.
    # truth T F T: 0.7 claims both 0.9s -> tp1 fp1 fn1 tn0; 0.4975 claims all -> tp2 fp1 fn0 tn0.
    pts = sweep([0.9, 0.9, 0.5], [True, False, True])
    assert [p.threshold for p in pts] == approx([0.7, 0.4975])
    assert [_tuple(p) for p in pts] == [(1, 1, 1, 0), (2, 1, 0, 0)]


def test_sweep_minus_inf_is_never_present():
    # the -inf video is truly present: it is a miss at every cut.
    # levels 0.9, 0.5: 0.7 -> tp1 fp0 fn1 tn1; 0.4975 -> tp1 fp1 fn1 tn0.
    pts = sweep([0.9, -math.inf, 0.5], [True, True, False])
    assert [p.threshold for p in pts] == approx([0.7, 0.4975])
    assert [_tuple(p) for p in pts] == [(1, 0, 1, 1), (1, 1, 1, 0)]


def test_sweep_all_minus_inf_or_empty_has_no_point():
    assert sweep([-math.inf, -math.inf], [True, False]) == []
    assert sweep([], []) == []


def test_sweep_lowest_cut_below_small_and_negative_scores():
    # 0.05: gap max(1e-3, 0.0005) = 1e-3 -> cut 0.05 - 0.0005 = 0.0495
    assert sweep([0.05], [True])[0].threshold == approx(0.0495)
    # -0.2: gap max(1e-3, 0.002) = 0.002 -> cut -0.201
    assert sweep([-0.2], [True])[0].threshold == approx(-0.201)


def test_best_f1_picks_highest_f1():
    # F1 per cut 2/3, 1/2, 4/5, 2/3 (see test_sweep_thresholds_and_counts): 0.65 wins.
    best = best_f1(sweep([0.9, 0.8, 0.7, 0.6], [True, False, True, False]))
    assert best is not None and best.threshold == approx(0.65)


def test_best_f1_tie_takes_higher_threshold():
    # truth T F F T: 0.85 -> P1 R1/2 F1 2/3; 0.75 -> 1/2; 0.65 -> P1/3 R1/2 F1 2/5;
    # 0.597 -> P1/2 R1 F1 2/3. The tie of 2/3 (computed two ways) goes to 0.85.
    pts = sweep([0.9, 0.8, 0.7, 0.6], [True, False, False, True])
    assert pts[0].f1 == approx(pts[-1].f1)
    best = best_f1(pts)
    assert best is not None and best.threshold == approx(0.85)
    assert best_f1([Point(0.3, Counts(1, 0, 1, 0)), Point(0.5, Counts(1, 0, 1, 0))]).threshold == 0.5


def test_best_f1_of_nothing_is_none():
    assert best_f1([]) is None


def test_for_precision_takes_lowest_cut_reaching_target():
    pts = sweep([0.9, 0.8, 0.7, 0.6], [True, False, True, False])
    # precision 1 only at 0.85
    assert for_precision(pts, 1.0).threshold == approx(0.85)
    # precision >= 0.6: 0.85 (1) and 0.65 (2/3) -> the lowest, 0.65
    assert for_precision(pts, 0.6).threshold == approx(0.65)
    # precision >= 0.5: every cut -> 0.597
    assert for_precision(pts, 0.5).threshold == approx(0.597)


def test_for_precision_unreachable_is_none():
    # truth F T: 0.85 claims the false one -> P 0; 0.7995... claims both -> P 1/2.
    pts = sweep([0.9, 0.8], [False, True])
    assert for_precision(pts, 1.0) is None
    assert for_precision([], 0.5) is None


def test_for_precision_ignores_cuts_claiming_nothing():
    # precision is 1 by convention with nothing claimed, but such a cut does not count.
    assert for_precision([Point(0.9, Counts(0, 0, 2, 2))], 1.0) is None


def test_point_to_dict_rounds():
    d = Point(0.123456789, Counts(1, 0, 1, 0)).to_dict()
    assert d["threshold"] == 0.123457 and d["precision"] == 1.0 and d["recall"] == 0.5 and d["f1"] == 0.6667


# ---------------------------------------------------------------------------------------------
# TimeStats (first seen, duration, IoU, R@0.5, R@0.7)


def _ve(vid, truth=True, predicted=True, fps=25.0, true_first=None, first=None, true_dur=0.0, dur=0.0, iou_=None):
    return VideoEval(
        video_id=vid,
        video=f"v{vid}.mp4",
        truth=truth,
        predicted=predicted,
        rank=vid,
        score=0.3,
        fps=fps,
        true_first_s=true_first,
        first_seen_s=first,
        true_duration_s=true_dur,
        duration_s=dur,
        iou=iou_,
        segments=[],
    )


def _three():
    return [
        # error +0.2 s (5 frames at 25 fps); duration 2.5 vs 2.0: |0.5|, rel 0.25; IoU 0.4
        _ve(1, fps=25, true_first=1.0, first=1.2, true_dur=2.0, dur=2.5, iou_=0.4),
        # error -0.1 s (3 frames at 30 fps); duration 3.0 vs 4.0: |1.0|, rel 0.25; IoU 0.6
        _ve(2, fps=30, true_first=5.0, first=4.9, true_dur=4.0, dur=3.0, iou_=0.6),
        # error +0.5 s (5 frames at 10 fps); duration equal: 0, rel 0; IoU 0.8
        _ve(3, fps=10, true_first=0.0, first=0.5, true_dur=1.0, dur=1.0, iou_=0.8),
    ]


def test_timestats_r_at_05_and_07():
    # IoUs 0.4, 0.6, 0.8: >= 0.5 -> 2 of 3; >= 0.7 -> 1 of 3; mean 0.6
    t = TimeStats.of(_three())
    assert t.videos == 3
    assert t.r_at_05 == approx(2 / 3) and t.r_at_07 == approx(1 / 3) and t.iou_mean == approx(0.6)


def test_timestats_r_at_thresholds_are_inclusive():
    t = TimeStats.of([_ve(1, true_first=0, first=0, iou_=0.5), _ve(2, true_first=0, first=0, iou_=0.7)])
    assert t.r_at_05 == 1.0 and t.r_at_07 == approx(0.5)


def test_timestats_first_seen_seconds_and_frames():
    # |err| 0.2, 0.1, 0.5 -> mean 0.8/3, median 0.2, max 0.5; signed (0.2 - 0.1 + 0.5)/3 = 0.2
    # frames 5, 3, 5 -> mean 13/3, median 5, max 5
    t = TimeStats.of(_three())
    assert t.first_mean_s == approx(0.8 / 3) and t.first_median_s == approx(0.2) and t.first_max_s == approx(0.5)
    assert t.first_mean_signed_s == approx(0.2)
    assert t.first_mean_frames == approx(13 / 3) and t.first_median_frames == approx(5)
    assert t.first_max_frames == approx(5)


def test_timestats_duration_errors():
    # |dur err| 0.5, 1.0, 0 -> mean 0.5, max 1.0; relative 0.25, 0.25, 0 -> mean 1/6, max 0.25
    t = TimeStats.of(_three())
    assert t.duration_mean_s == approx(0.5) and t.duration_max_s == approx(1.0)
    assert t.duration_mean_rel == approx(1 / 6) and t.duration_max_rel == approx(0.25)


def test_timestats_ignores_videos_not_present_in_both():
    extra = [
        _ve(4, truth=True, predicted=False, true_first=9.0, true_dur=3.0),  # missed
        _ve(5, truth=False, predicted=True, first=2.0, dur=7.0),  # false alarm
        _ve(6, truth=False, predicted=False),
    ]
    assert TimeStats.of(_three() + extra) == TimeStats.of(_three())


def test_timestats_frames_skip_videos_without_fps():
    # video 2 has no fps: frames over videos 1 and 3 only -> 5 and 5; seconds still over all three.
    vs = _three()
    vs[1].fps = None
    t = TimeStats.of(vs)
    assert t.first_mean_frames == approx(5) and t.first_max_frames == approx(5)
    assert t.first_mean_s == approx(0.8 / 3)
    assert TimeStats.of([_ve(1, fps=None, true_first=0, first=1, iou_=1.0)]).first_mean_frames is None


def test_timestats_of_nothing_is_empty():
    assert TimeStats.of([]) == TimeStats()
    assert TimeStats.of([_ve(1, truth=True, predicted=False)]) == TimeStats()


def test_timestats_mean_of_skips_missing_values():
    # r_at_05: (1.0 + 0.0)/2 = 0.5; the empty one adds nothing but its 0 videos.
    a = TimeStats(videos=2, r_at_05=1.0)
    b = TimeStats(videos=1, r_at_05=0.0)
    m = TimeStats.mean_of([a, b, TimeStats()])
    assert m.videos == 3 and m.r_at_05 == approx(0.5) and m.iou_mean is None


# ---------------------------------------------------------------------------------------------
# truth file


LABELS = [LabelDef("alcohol", ["a beer", "wine"], None)]


@pytest.fixture()
def refs(tmp_path: Path) -> list[VideoRef]:
    """beach (30 s at 25 fps: one frame 0.04 s), city (10 s at 25 fps), two dup.mp4 in a/ and b/,
    and free.mp4 with no known duration or fps."""
    return [
        VideoRef(1, str(tmp_path / "clips" / "beach.mp4"), "beach.mp4", 30.0, 25.0),
        VideoRef(2, str(tmp_path / "clips" / "city.mp4"), "city.mp4", 10.0, 25.0),
        VideoRef(3, str(tmp_path / "a" / "dup.mp4"), "dup.mp4", 5.0, 25.0),
        VideoRef(4, str(tmp_path / "b" / "dup.mp4"), "dup.mp4", 5.0, 25.0),
        VideoRef(5, str(tmp_path / "free.mp4"), "free.mp4", None, None),
    ]


def _png(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (200, 10, 10)).save(path)
    return path


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _q(truth, text):
    return next(q for q in truth.queries if q.query == text)


GOOD = """video,query,start_s,end_s
beach.mp4,a beach,12.4,18.0
beach.mp4,a beach,17.0,20.0
beach.mp4,a beach,2,3
city.mp4,a beach,,
beach.mp4,image:pack.png,27.0,30.0
city.mp4,label:alcohol,3.0,5.5
"""


def test_truth_good_file(tmp_path, refs):
    _png(tmp_path / "pack.png")
    path = _write(tmp_path / "truth.csv", GOOD)
    t = read_truth(path, refs, LABELS)
    assert t.problems == [] and t.rows == 6
    assert t.path == str(path)
    assert t.videos == [1, 2]
    assert [q.query for q in t.queries] == ["a beach", "image:pack.png", "label:alcohol"]


def test_truth_overlapping_intervals_merged_and_sorted(tmp_path, refs):
    _png(tmp_path / "pack.png")
    t = read_truth(_write(tmp_path / "truth.csv", GOOD), refs, LABELS)
    # (12.4,18) and (17,20) -> (12.4,20); (2,3) sorts first.
    assert _q(t, "a beach").intervals[1] == [(2.0, 3.0), (12.4, 20.0)]


def test_truth_explicit_absent_row(tmp_path, refs):
    _png(tmp_path / "pack.png")
    t = read_truth(_write(tmp_path / "truth.csv", GOOD), refs, LABELS)
    q = _q(t, "a beach")
    assert q.intervals[2] == []
    assert t.judged(q) == [1, 2]
    assert t.present(q, 1) and not t.present(q, 2)


def test_truth_judged_video_without_row_is_absent(tmp_path, refs):
    _png(tmp_path / "pack.png")
    t = read_truth(_write(tmp_path / "truth.csv", GOOD), refs, LABELS)
    img = _q(t, "image:pack.png")  # rows only for beach
    assert 2 not in img.intervals
    assert t.judged(img) == [1, 2] and not t.present(img, 2) and t.present(img, 1)
    lab = _q(t, "label:alcohol")  # rows only for city
    assert t.judged(lab) == [1, 2] and not t.present(lab, 1) and t.present(lab, 2)


def test_truth_query_kinds(tmp_path, refs):
    png = _png(tmp_path / "pack.png")
    t = read_truth(_write(tmp_path / "truth.csv", GOOD), refs, LABELS)
    text, img, lab = t.queries
    assert (text.kind, text.target) == ("text", "a beach")
    assert (img.kind, img.target) == ("image", str(png.resolve()))
    assert (lab.kind, lab.target) == ("label", "alcohol")


def test_truth_image_relative_to_working_directory(tmp_path, refs, monkeypatch):
    png = _png(tmp_path / "pics" / "x.png")
    monkeypatch.chdir(tmp_path / "pics")
    t = read_truth(
        _write(tmp_path / "t" / "truth.csv", "video,query,start_s,end_s\nbeach.mp4,image:x.png,1,2\n"), refs, LABELS
    )
    assert t.problems == [] and t.queries[0].target == str(png.resolve())


def test_truth_utf8_bom_accepted(tmp_path, refs):
    t = read_truth(
        _write(tmp_path / "truth.csv", b"\xef\xbb\xbf" + b"video,query,start_s,end_s\nbeach.mp4,sea,1,2\n"),
        refs,
        LABELS,
    )
    assert t.problems == [] and t.rows == 1 and _q(t, "sea").intervals == {1: [(1.0, 2.0)]}


def test_truth_crlf_line_ends(tmp_path, refs):
    t = read_truth(_write(tmp_path / "truth.csv", "video,query,start_s,end_s\r\nbeach.mp4,sea,1,2\r\n"), refs, LABELS)
    assert t.problems == [] and _q(t, "sea").intervals == {1: [(1.0, 2.0)]}


def test_truth_columns_in_other_order_and_extra_column(tmp_path, refs):
    text = "End_s,notes,Query,VIDEO,start_s\n2.5,seen twice,sea,beach.mp4,1\n,,sea,city.mp4,\n"
    t = read_truth(_write(tmp_path / "truth.csv", text), refs, LABELS)
    assert t.problems == [] and t.rows == 2
    assert _q(t, "sea").intervals == {1: [(1.0, 2.5)], 2: []}


def test_truth_quoted_query_with_comma(tmp_path, refs):
    t = read_truth(
        _write(tmp_path / "truth.csv", 'video,query,start_s,end_s\nbeach.mp4,"sand, sea",1,2\n'), refs, LABELS
    )
    assert [q.query for q in t.queries] == ["sand, sea"]


def test_truth_blank_lines_skipped(tmp_path, refs):
    t = read_truth(_write(tmp_path / "truth.csv", "video,query,start_s,end_s\n\nbeach.mp4,sea,1,2\n  \n"), refs, LABELS)
    assert t.problems == [] and t.rows == 1


# --- how a video is named


def _one(tmp_path, refs, video, folder="t"):
    text = f"video,query,start_s,end_s\n{video},sea,1,2\n"
    return read_truth(_write(tmp_path / folder / "truth.csv", text), refs, LABELS)


def test_video_by_absolute_path(tmp_path, refs):
    t = _one(tmp_path, refs, str(tmp_path / "b" / "dup.mp4"))
    assert t.problems == [] and t.videos == [4]


def test_video_relative_to_truth_file_folder(tmp_path, refs):
    # truth.csv in tmp/, so a/dup.mp4 is tmp/a/dup.mp4 (the name alone is ambiguous)
    t = _one(tmp_path, refs, "a/dup.mp4", folder=".")
    assert t.problems == [] and t.videos == [3]
    t = _one(tmp_path, refs, "../a/dup.mp4", folder="t")
    assert t.problems == [] and t.videos == [3]


def test_video_relative_to_working_directory(tmp_path, refs, monkeypatch):
    # "dup.mp4" alone names two videos, but from cwd tmp/b it is one path.
    monkeypatch.chdir(_mk(tmp_path / "b"))
    t = _one(tmp_path, refs, "dup.mp4")
    assert t.problems == [] and t.videos == [4]


def _mk(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_video_by_file_name(tmp_path, refs):
    t = _one(tmp_path, refs, "city.mp4")
    assert t.problems == [] and t.videos == [2]


def test_video_by_path_suffix(tmp_path, refs):
    # neither tmp/t/b/dup.mp4 nor cwd/b/dup.mp4 is indexed; the suffix /b/dup.mp4 names one video.
    t = _one(tmp_path, refs, "b/dup.mp4")
    assert t.problems == [] and t.videos == [4]


def test_video_suffix_must_match_whole_folder_names(tmp_path, refs):
    # "ips/beach.mp4" is a suffix of the string ".../clips/beach.mp4" but not of its folders.
    with pytest.raises(QueryError, match="no indexed video"):
        _one(tmp_path, refs, "ips/beach.mp4")


# --- bad rows: one problem line each, the other rows still read

HEAD = "video,query,start_s,end_s\nbeach.mp4,sea,1,2\n"
TAIL = "city.mp4,dog,1,2\n"


@pytest.mark.parametrize(
    "row, message, unjudged",
    [
        ("nope.mp4,sea,1,2", "no indexed video has the path or name 'nope.mp4'", False),
        ("dup.mp4,sea,1,2", "'dup.mp4' names 2 indexed videos", False),
        ("city.mp4,sea,5,4", "end_s 4 is before start_s 5", True),
        # city is 10 s at 25 fps: 10.05 is more than one frame (0.04 s) past the end
        ("city.mp4,sea,9,10.05", "end_s 10.05 is past the end of city.mp4 (10.000 s)", True),
        ("city.mp4,sea,-1,2", "start_s -1 is before the start of the video", True),
        ("city.mp4,sea,one,two", "must be seconds", True),
        ("city.mp4,sea,1.5,2,5s", None, False),  # an extra unnamed field is ignored: no problem
        ("city.mp4,sea,1,", "give both start_s and end_s", True),
        ("city.mp4,sea,,2", "give both start_s and end_s", True),
        ("city.mp4,sea,nan,2", "must be finite seconds", True),
        ("city.mp4,sea,1,inf", "must be finite seconds", True),
        ("city.mp4,image:x.png,1,2", "no readable image at x.png", False),
        ("city.mp4,image:missing.png,1,2", "no readable image at missing.png", False),
        ("city.mp4,label:nope,1,2", "no saved label named 'nope'", False),
        (",sea,1,2", "no video", False),
        ("city.mp4,,1,2", "no query", False),
    ],
)
def test_truth_bad_row_is_one_problem(tmp_path, refs, row, message, unjudged):
    _write(tmp_path / "x.png", "this is not a picture\n")
    t = read_truth(_write(tmp_path / "truth.csv", HEAD + row + "\n" + TAIL), refs, LABELS)
    if message is None:
        assert t.problems == [] and t.rows == 3
        return
    assert len(t.problems) == 1, t.problems
    assert t.problems[0].startswith("line 3: ") and message in t.problems[0], t.problems
    assert t.rows == 2
    assert _q(t, "sea").intervals[1] == [(1.0, 2.0)] and _q(t, "dog").intervals[2] == [(1.0, 2.0)]
    sea = _q(t, "sea")
    assert (2 in sea.unjudged) is unjudged
    if unjudged:
        assert t.judged(sea) == [1] and t.judged(_q(t, "dog")) == [1, 2]


def test_bad_times_leave_video_unjudged_for_that_query_only(tmp_path, refs):
    text = "video,query,start_s,end_s\nbeach.mp4,sea,1,2\ncity.mp4,sea,x,y\nbeach.mp4,dog,,\ncity.mp4,dog,3,4\n"
    t = read_truth(_write(tmp_path / "truth.csv", text), refs, LABELS)
    sea, dog = _q(t, "sea"), _q(t, "dog")
    assert sea.unjudged == {2} and dog.unjudged == set()
    assert t.judged(sea) == [1] and t.judged(dog) == [1, 2]
    assert len(t.problems) == 1 and t.problems[0].startswith("line 3: ")


def test_bad_image_reported_on_each_of_its_lines(tmp_path, refs):
    text = "video,query,start_s,end_s\nbeach.mp4,sea,1,2\nbeach.mp4,image:gone.png,1,2\ncity.mp4,image:gone.png,,\n"
    t = read_truth(_write(tmp_path / "truth.csv", text), refs, LABELS)
    assert [p[:8] for p in t.problems] == ["line 3: ", "line 4: "]
    assert [q.query for q in t.queries] == ["sea"]


def test_missing_header_is_a_problem_and_row_is_read(tmp_path, refs):
    t = read_truth(_write(tmp_path / "truth.csv", "beach.mp4,sea,1,2\ncity.mp4,sea,,\n"), refs, LABELS)
    assert len(t.problems) == 1 and t.problems[0].startswith("line 1: no header row")
    assert t.rows == 2 and _q(t, "sea").intervals == {1: [(1.0, 2.0)], 2: []}


def test_header_without_time_columns_stops_the_run(tmp_path, refs):
    # every row would read as "absent": nothing could be measured right
    with pytest.raises(QueryError, match=r"truth.csv line 1: the header has no start_s or end_s column"):
        read_truth(_write(tmp_path / "truth.csv", "video,query,start,end\nbeach.mp4,sea,1,2\n"), refs, LABELS)


def test_bare_carriage_returns_end_lines(tmp_path, refs):
    # "CSV (Macintosh)" writes \r alone between lines
    t = read_truth(
        _write(tmp_path / "truth.csv", b"video,query,start_s,end_s\rbeach.mp4,sea,1,2\rcity.mp4,sea,,\r"), refs, LABELS
    )
    assert t.problems == [] and t.rows == 2 and _q(t, "sea").intervals == {1: [(1.0, 2.0)], 2: []}


def test_quoted_line_break_is_one_problem_per_line(tmp_path, refs):
    t = read_truth(
        _write(tmp_path / "truth.csv", 'video,query,start_s,end_s\n"beach.mp4","a\ndog",1,2\nbeach.mp4,sea,1,2\n'),
        refs,
        LABELS,
    )
    assert t.problems[0].startswith("line 2: not a CSV row") and t.rows == 1
    assert [q.query for q in t.queries] == ["sea"]


def test_truncated_image_is_a_problem(tmp_path, refs):
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    t = read_truth(
        _write(tmp_path / "truth.csv", "video,query,start_s,end_s\nbeach.mp4,image:cut.jpg,1,2\nbeach.mp4,sea,1,2\n"),
        refs,
        LABELS,
    )
    assert len(t.problems) == 1 and "no readable image" in t.problems[0] and t.rows == 1


def test_line_not_utf8_is_one_problem(tmp_path, refs):
    # "city.mp4,a be" is 13 bytes: the bad byte is byte 14 of line 3.
    data = b"video,query,start_s,end_s\nbeach.mp4,sea,1,2\ncity.mp4,a be\xff\xfech,1,2\ncity.mp4,dog,1,2\n"
    t = read_truth(_write(tmp_path / "truth.csv", data), refs, LABELS)
    assert t.problems == ["line 3: not UTF-8 text (byte 14); save the file as CSV UTF-8."]
    assert t.rows == 2 and [q.query for q in t.queries] == ["sea", "dog"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_file_raises_one_line(tmp_path, refs, encoding):
    path = _write(tmp_path / "truth.csv", "video,query,start_s,end_s\nbeach.mp4,sea,1,2\n".encode(encoding))
    with pytest.raises(QueryError) as e:
        read_truth(path, refs, LABELS)
    assert "UTF-16" in str(e.value) and "\n" not in str(e.value)


def test_no_usable_rows_raises(tmp_path, refs):
    with pytest.raises(QueryError, match=r"no usable row; line 2: no indexed video"):
        read_truth(_write(tmp_path / "truth.csv", "video,query,start_s,end_s\nnope.mp4,sea,1,2\n"), refs, LABELS)
    with pytest.raises(QueryError, match="no usable row"):
        read_truth(_write(tmp_path / "h.csv", "video,query,start_s,end_s\n"), refs, LABELS)
    with pytest.raises(QueryError, match="no usable row"):
        read_truth(_write(tmp_path / "e.csv", b""), refs, LABELS)


def test_missing_file_raises(tmp_path, refs):
    with pytest.raises(QueryError, match="cannot read the truth file"):
        read_truth(tmp_path / "nope.csv", refs, LABELS)


def test_absent_and_interval_for_same_video_conflict(tmp_path, refs):
    text = (
        "video,query,start_s,end_s\n"
        "beach.mp4,sea,,\nbeach.mp4,sea,1,2\n"  # absent, then an interval: kept, line 3 reported
        "city.mp4,sea,1,2\ncity.mp4,sea,,\n"
    )  # interval, then absent: kept, line 5 reported
    t = read_truth(_write(tmp_path / "truth.csv", text), refs, LABELS)
    assert [p[:8] for p in t.problems] == ["line 3: ", "line 5: "]
    assert "line 2 says it is absent" in t.problems[0]
    assert _q(t, "sea").intervals == {1: [(1.0, 2.0)], 2: [(1.0, 2.0)]}


# --- times at the edges


def _times(tmp_path, refs, video, a, b):
    t = read_truth(
        _write(tmp_path / "truth.csv", f"video,query,start_s,end_s\nbeach.mp4,pad,0,1\n{video},sea,{a},{b}\n"),
        refs,
        LABELS,
    )
    return t, _q(t, "sea")


def test_end_within_one_frame_past_end_is_clipped(tmp_path, refs):
    # beach: 30 s at 25 fps, one frame 0.04 s: 30.03 is within a frame -> clipped to 30.
    t, q = _times(tmp_path, refs, "beach.mp4", 29, 30.03)
    assert t.problems == [] and q.intervals[1] == [(29.0, 30.0)]
    t, q = _times(tmp_path, refs, "beach.mp4", 29, 30.04)
    assert t.problems == [] and q.intervals[1] == [(29.0, 30.0)]


def test_end_more_than_one_frame_past_end_is_a_problem(tmp_path, refs):
    t, q = _times(tmp_path, refs, "beach.mp4", 29, 30.05)
    assert len(t.problems) == 1 and "past the end" in t.problems[0] and q.unjudged == {1}


def test_start_equal_end_is_one_frame(tmp_path, refs):
    # 25 fps: one frame 0.04 s
    t, q = _times(tmp_path, refs, "beach.mp4", 5, 5)
    assert t.problems == [] and q.intervals[1] == [(5.0, approx(5.04))]


def test_start_equal_end_without_fps_is_50ms(tmp_path, refs):
    # free.mp4 has no fps (0.05 s) and no duration (no end check, no clipping).
    t, q = _times(tmp_path, refs, "free.mp4", 5, 5)
    assert t.problems == [] and q.intervals[5] == [(5.0, approx(5.05))]
    t, q = _times(tmp_path, refs, "free.mp4", 100, 5000)
    assert t.problems == [] and q.intervals[5] == [(100.0, 5000.0)]


def test_a_start_at_the_very_end_is_reported_not_read_as_absent(tmp_path, refs):
    # beach is 30 s: start = end = 30 would be an empty interval once clipped to the video.
    t, q = _times(tmp_path, refs, "beach.mp4", 30, 30)
    assert any("past the end" in p for p in t.problems) and 1 in q.unjudged and not t.present(q, 1)


def test_empty_spreadsheet_rows_are_skipped(tmp_path, refs):
    p = tmp_path / "t.csv"
    p.write_text("video,query,start_s,end_s\n,,,\nbeach.mp4,sea,1,2\n,,,\n")
    t = read_truth(p, refs, [])
    assert t.problems == [] and t.rows == 1
