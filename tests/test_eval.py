"""`archive eval` and `archive label calibrate` end to end: ads built from real footage, queried by
stills of their shots, measured against a right and a deliberately wrong truth file.

Each shot appears in one video here. Footage that recurs across videos raises the image rule's
"above chance" level (a known limit, taken up with versions of the same film); these tests measure
the measuring, on answers the rule gets right.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gen.evalads import PLAN, STILL_FRAME, make_ads, mistaken_rows, still, truth_rows, write_csv
from helpers import env_for_cli, run_cli
from PIL import Image

from archive import Archive
from indexer.errors import QueryError

FRAME = 1 / 25  # the ads' native frame


@pytest.fixture(scope="module")
def ads(tmp_path_factory, encoder):
    d = tmp_path_factory.mktemp("evalads")
    truths, looks = make_ads(d, PLAN)
    for key, shot in looks.items():
        still(shot, STILL_FRAME, d / f"{key}.png")
    arc = Archive(d / "store", encoder=encoder)
    assert arc.index([d]).indexed == len(PLAN)
    return arc, truths, d


def _truth_rows(truths, keys="abcdefgh"):
    return truth_rows(truths, keys)


def _write(path: Path, rows) -> Path:
    return write_csv(path, rows)


def test_right_truth_scores_perfectly(ads, tmp_path):
    arc, truths, d = ads
    rep = arc.evaluate(_write(d / "right.csv", _truth_rows(truths)))
    assert rep.problems == [] and rep.judged_videos == 4 and len(rep.queries) == 8
    for q in rep.queries:
        assert q.counts.f1 == 1.0 and q.ap == 1.0, (q.query, q.counts)
        assert q.times.videos == 1 and q.times.first_max_frames <= 1.0 + 1e-6
        assert q.times.duration_max_s <= 2 * FRAME + 1e-6 and q.times.iou_mean >= 0.95
        assert q.sweep.best.f1 == 1.0
    assert (rep.micro.tp, rep.micro.fp, rep.micro.fn, rep.micro.tn) == (8, 0, 0, 24)
    assert rep.macro_f1 == 1.0 and rep.map == 1.0 and rep.times.r_at_07 == 1.0


def test_wrong_truth_gives_the_hand_computed_numbers(ads, tmp_path):
    arc, truths, d = ads
    # a is on screen 0.0-1.6 in ad0: the truth says from 0.5 (found 0.5 s = 12.5 frames early);
    # c is in ad1 only: the truth also puts it in ad2 (a miss); e is in ad2: the truth says absent (a false alarm)
    rows = mistaken_rows(truths)
    assert ("ad0.mp4", "image:a.png", 0.5, 1.6) in rows and ("ad2.mp4", "image:e.png", "", "") in rows
    rep = arc.evaluate(_write(d / "wrong.csv", rows))  # next to the stills it names
    by = {q.query: q for q in rep.queries}
    a, c, e = by["image:a.png"], by["image:c.png"], by["image:e.png"]
    # a: still a hit; first seen |0.0 - 0.5| = 0.5 s; IoU = 1.1 / 1.6; duration |1.6 - 1.1| = 0.5 (0.5/1.1 relative)
    assert (a.counts.tp, a.counts.fp, a.counts.fn) == (1, 0, 0)
    assert a.times.first_max_s == pytest.approx(0.5, abs=FRAME)
    assert a.times.first_max_frames == pytest.approx(12.5, abs=1.0)
    assert a.times.first_mean_signed_s == pytest.approx(-0.5, abs=FRAME)  # found early
    assert a.times.iou_mean == pytest.approx(1.1 / 1.6, abs=0.03)
    assert a.times.duration_max_s == pytest.approx(0.5, abs=FRAME)
    assert a.times.duration_mean_rel == pytest.approx(0.5 / 1.1, abs=0.05)
    assert (a.times.r_at_05, a.times.r_at_07) == (1.0, 0.0)
    # c: 1 hit, 1 miss: P 1, R 1/2, F1 2/3; AP = (1/1 + 2/r) / 2 with ad2 at rank r
    assert (c.counts.tp, c.counts.fp, c.counts.fn, c.counts.tn) == (1, 0, 1, 2)
    assert (c.counts.precision, c.counts.recall) == (1.0, 0.5) and c.counts.f1 == pytest.approx(2 / 3)
    [ad2] = [v for v in c.videos if v.video.endswith("ad2.mp4")]
    assert c.videos[0].video.endswith("ad1.mp4") and ad2.rank > 1
    assert c.ap == pytest.approx((1 + 2 / ad2.rank) / 2)
    # e: 1 false alarm, nothing truly present: P 0, R 1 (nothing to miss), F1 0, no AP
    assert (e.counts.tp, e.counts.fp, e.counts.fn) == (0, 1, 0) and e.counts.f1 == 0.0 and e.ap is None
    assert e.times.videos == 0
    # overall: TP 7, FP 1, FN 1 -> P = R = F1 = 7/8; macro F1 = (6 + 2/3 + 0) / 8; mAP over the 7 queries with a positive
    assert (rep.micro.tp, rep.micro.fp, rep.micro.fn) == (7, 1, 1)
    assert rep.micro.f1 == pytest.approx(7 / 8)
    assert rep.macro_f1 == pytest.approx((6 + 2 / 3) / 8)
    assert rep.map == pytest.approx((6 + c.ap) / 7)
    assert rep.times.videos == 7 and rep.times.first_mean_s == pytest.approx(0.5 / 7, abs=FRAME)


def test_a_plain_threshold_is_measured_instead_of_the_rule(ads, tmp_path):
    arc, truths, d = ads
    rep = arc.evaluate(_write(d / "right.csv", _truth_rows(truths)), threshold=0.5)
    for q in rep.queries:
        assert q.rule == "cosine >= 0.5"
        assert all(v.predicted == (v.score >= 0.5) for v in q.videos)
        # the sweep does not depend on the rule: its best cut still separates the stills' videos
        assert q.sweep.best.f1 == 1.0


@pytest.mark.slow  # the CLI in a process
def test_cli_eval_json_plot_and_bad_rows(ads, tmp_path):
    arc, truths, d = ads
    rows = _truth_rows(truths, "ab") + [
        ("nowhere.mp4", "image:a.png", 1, 2),
        ("ad0.mp4", "image:b.png", 3, 1),
        ("ad0.mp4", "label:nolabel", "", ""),
    ]
    truth = _write(d / "cli.csv", rows)
    env = env_for_cli(tmp_path, arc.store)
    png = tmp_path / "eval.png"
    p = run_cli(["eval", truth, "--json", "--plot", png], env)
    assert p.returncode == 1, p.stderr  # bad rows: measured anyway, and said
    body = json.loads(p.stdout)
    n = len(rows) + 1  # lines in the file
    skipped = [x for x in p.stderr.splitlines() if x.startswith("warning: line")]
    assert [x.split(":")[1] for x in skipped] == [f" line {n - 2}", f" line {n - 1}", f" line {n}"]
    assert "Traceback" not in p.stderr and len(body["problems"]) == 3
    # ad0's row for b was bad: ad0 is not judged for b (its truth is unknown), the other rows still are
    [b] = [q for q in body["queries"] if q["query"] == "image:b.png"]
    assert b["judged"] == 3 and b["positives"] == 0 and b["presence"]["fp"] == 0
    [a] = [q for q in body["queries"] if q["query"] == "image:a.png"]
    assert a["presence"]["f1"] == 1.0 and a["judged"] == 4
    assert {"micro", "macro", "map", "sweep"} <= set(body["overall"])
    assert body["overall"]["sweep"]["curve"] and body["queries"][0]["videos"][0]["rank"] == 1
    with Image.open(png) as im:
        assert im.size[0] > 600 and im.size[1] > 300


@pytest.mark.slow  # the CLI in a process
def test_cli_eval_text_output_and_one_line_errors(ads, tmp_path):
    arc, truths, d = ads
    env = env_for_cli(tmp_path, arc.store)
    # a query and a label name with rich markup and an emoji code in them are printed as written
    truth = _write(
        d / "text.csv",
        _truth_rows(truths, "g") + [("ad0.mp4", "a [/b] sign :dog:", "", ""), ("ad1.mp4", "label:[red]x", "", "")],
    )
    p = run_cli(["eval", truth], env)
    assert p.returncode == 1, p.stderr  # label:[red]x is not saved
    assert "Traceback" not in p.stderr and "label:[red]x: no saved label" in p.stderr
    for title in ("presence per video", "first seen", "time on screen", "a plain cosine cut", "a [/b] sign :dog:"):
        assert title in p.stdout
    utf16 = tmp_path / "utf16.csv"
    utf16.write_text("video,query,start_s,end_s\nad0.mp4,x,1,2\n", encoding="utf-16")
    for args in (
        ["eval", str(tmp_path / "missing.csv")],
        ["eval", str(utf16)],
        ["eval", str(truth), "--target-precision", "1.5"],
    ):
        p = run_cli(args, env)
        assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
        assert p.stderr.startswith("error:") and "Traceback" not in p.stderr


def _label_truth(truths, path: Path, present=("ad0.mp4", "ad1.mp4", "ad2.mp4")) -> Path:
    rows = [(n, "label:car", 0.0, 1.0) if n in present else (n, "label:car", "", "") for n in truths]
    return _write(path, rows)


def test_calibrated_label_takes_the_sweeps_threshold(ads, tmp_path):
    arc, truths, d = ads
    arc.label_add("car", ["a red car"])
    try:
        truth = _label_truth(truths, tmp_path / "car.csv")
        [q] = arc.evaluate(truth).queries
        best = q.sweep.best
        cal = arc.label_calibrate("car", truth)
        assert cal.threshold == pytest.approx(best.threshold, abs=1e-9) and cal.problems == []
        assert (cal.precision, cal.recall, cal.judged, cal.positives) == (best.precision, best.recall, 4, 3)
        rows = {
            r["name"]: r
            for r in arc.sql(
                "SELECT v.name, l.present, l.rule FROM video_labels l JOIN videos v USING (video_id) "
                "WHERE l.label = 'car'"
            ).records()
        }
        for v in q.videos:  # each video's answer follows the new cut of its best cosine
            assert rows[Path(v.video).name]["present"] == (v.score >= cal.threshold)
            assert rows[Path(v.video).name]["rule"] == "calibrated"
        assert sum(r["present"] for r in rows.values()) == best.counts.tp + best.counts.fp
        [lab] = arc.labels()
        assert lab.threshold == pytest.approx(best.threshold) and lab.rule == "calibrated"
        assert lab.calibration.videos == 4 and lab.calibration.positives == 3
        assert lab.calibration.precision == pytest.approx(best.precision)
        assert lab.calibration.target_precision is None and lab.calibration.truth.endswith("car.csv")
        # the search page's API says so too: the label list, and each video's label chips
        from archive.server.app import create_app
        from archive.server.routes import router

        app = create_app(arc.store)
        # the router's own routes: FastAPI 0.165 keeps an included router whole in app.routes
        routes = {r.path: r.endpoint for r in router.routes if hasattr(r, "endpoint")}
        [s_lab] = routes["/api/stats"](app.state.archive)["labels"]
        assert s_lab["rule"] == "calibrated" and s_lab["calibration"]["judged_videos"] == 4
        assert s_lab["calibration"]["precision"] == pytest.approx(best.precision, abs=1e-4)
        assert {
            lab_row["rule"] for v in routes["/api/videos"](app.state.archive)["videos"] for lab_row in v["labels"]
        } == {"calibrated"}
        # a target precision: the lowest cut that reaches it
        cal1 = arc.label_calibrate("car", truth, target_precision=1.0)
        want = min(
            (p for p in q.sweep.curve if p.counts.tp + p.counts.fp and p.precision >= 1.0), key=lambda p: p.threshold
        )
        assert cal1.threshold == pytest.approx(want.threshold) and cal1.precision == 1.0
        assert arc.labels()[0].calibration.target_precision == 1.0
        # rows that cannot be used are reported and the rest is used
        bad = _write(
            tmp_path / "bad.csv",
            [tuple(x.split(",")) for x in truth.read_text().splitlines()[1:]] + [("nowhere.mp4", "label:car", 1, 2)],
        )
        cal_bad = arc.label_calibrate("car", bad)
        assert cal_bad.problems == [
            "line 6: no indexed video has the path or name 'nowhere.mp4' "
            '(see `archive sql "SELECT path FROM videos"`).'
        ]
        assert cal_bad.threshold == pytest.approx(best.threshold)
        # the label's own prompt as the query works too
        prompt_truth = _write(
            tmp_path / "prompt.csv",
            [
                (n, "a red car", a, b)
                for n, _, a, b in [tuple(x.split(",")) for x in truth.read_text().splitlines()[1:]]
            ],
        )
        assert arc.label_calibrate("car", prompt_truth).threshold == pytest.approx(best.threshold)
        # saving the label again drops the calibration
        arc.label_add("car", ["a red car"])
        assert arc.labels()[0].rule == "presence" and arc.labels()[0].calibration is None
        assert {r["rule"] for r in arc.sql("SELECT rule FROM video_labels").records()} == {"presence"}
    finally:
        arc.label_remove("car")


def test_calibration_refuses_too_few_positives_and_unknown_labels(ads, tmp_path):
    arc, truths, d = ads
    arc.label_add("car", ["a red car"])
    try:
        few = _label_truth(truths, tmp_path / "few.csv", present=("ad0.mp4", "ad1.mp4"))
        with pytest.raises(QueryError, match="2 of 4 judged videos.*at least 3"):
            arc.label_calibrate("car", few)
        assert arc.labels()[0].threshold is None  # nothing changed
        every = _label_truth(truths, tmp_path / "every.csv", present=tuple(truths))
        with pytest.raises(QueryError, match="4 of 4 judged videos.*one where it is absent"):
            arc.label_calibrate("car", every)
        with pytest.raises(QueryError, match="no label named 'bus'"):
            arc.label_calibrate("bus", few)
        with pytest.raises(QueryError, match="no rows for label:car"):
            arc.label_calibrate("car", _write(tmp_path / "other.csv", [("ad0.mp4", "a dog", 0, 1)]))
    finally:
        arc.label_remove("car")
