"""Written words on screen: ``archive index --ocr`` reads them into the ``ocr`` table and
``archive search --ocr`` finds them, on ad-like videos from real footage with overlays rendered at
known shots (:mod:`textads`), with the real OCR models, DuckDB and FAISS."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from gen import textads
from helpers import DATA, TEST_MODEL, env_for_cli, run_cli

from indexer.media import ocr as ocrmod
from indexer.run.options import IndexOptions
from indexer.run.pipeline import index_paths
from indexer.store import Reader

pytestmark = pytest.mark.skipif(
    not ocrmod.available(), reason="the OCR package (rapidocr, the ocr extra) is not installed"
)

SAMPLE_S = 0.5  # the default --fps 2


@pytest.fixture(scope="module")
def ads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, textads.TextAd]:
    return textads.make_text_ads(tmp_path_factory.mktemp("textads"), textads.PLAN)


@pytest.fixture(scope="module")
def store(ads, encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ocrstore") / "store"
    rep = index_paths([a.path for a in ads.values()], d, IndexOptions(ocr=True), encoder=encoder)
    assert rep.ok and rep.indexed == len(ads) and rep.ocr and rep.text_lines > 0
    return d


def _search(store: Path, *phrases: str, **kw):
    from search.query import Searcher

    return Searcher(store).search(ocr=list(phrases), top=None, **kw)


def _by_name(res) -> dict[str, object]:
    return {Path(r.video).name: r for r in res.results}


@pytest.mark.slow  # the OCR models (PP-OCRv4)
def test_every_overlaid_phrase_is_found_with_its_times(ads, store) -> None:
    found = 0
    results = _search(store, *textads.QUERIES)
    for res, (query, shown) in zip(results, textads.QUERIES.items()):
        assert res.kind == "ocr" and res.query == query
        ((name, ad),) = [(n, a) for n, a in ads.items() if shown in a.shown]
        ((start, end),) = ad.shown[shown]
        hits = [r for r in res.results if r.present]
        if [Path(r.video).name for r in hits] != [name]:
            continue
        found += 1
        r = hits[0]
        starts_with_shot = any(abs(start - a) < 1e-9 for a, _ in ad.shots)
        if starts_with_shot:
            assert r.first_seen_s == pytest.approx(start, abs=1e-3), query  # exact to the cut
        else:
            assert start - 1e-3 <= r.first_seen_s <= start + SAMPLE_S, query
        assert r.duration_s == pytest.approx(end - start, abs=SAMPLE_S + 1e-3), query
        assert r.segments[0].end_s <= ad.duration_s + 1e-3
        assert r.best_frame_id is not None and r.segment_texts
    assert found / len(textads.QUERIES) >= 0.95, f"recall {found}/{len(textads.QUERIES)}"


@pytest.mark.slow  # the OCR models (PP-OCRv4)
def test_phrases_never_shown_are_absent_everywhere(store) -> None:
    for res in _search(store, *textads.ABSENT):
        assert not any(r.present for r in res.results), res.query
        assert len(res.results) == 3  # every video answers, absent


def test_matching_ignores_case_accents_punctuation_and_spacing_and_tolerates_one_error() -> None:
    from search.written import SIMILARITY, similarity

    n = ocrmod.normalize
    assert n("Drink Responsibly!") == n("DRINKRESPONSIBLY") == "drinkresponsibly"
    assert n("Crème Brûlée") == "cremebrulee"
    assert n("49,99 €") == n("49.99") == "4999"
    lines = [n(x) for x in ("DRINKRESPONS1BLY", "Please drink responsibly.", "drink", "drive responsibly now")]
    s = similarity(n("drink responsibly"), lines)
    assert s[0] >= SIMILARITY  # one OCR error
    assert s[1] == 100  # part of a longer line
    assert s[2] < SIMILARITY  # a word of the phrase alone is not the phrase
    assert s[3] < SIMILARITY  # another phrase
    # short phrases must be read exactly, and a number is read whole: "0" is not in "10% off"
    assert similarity("10", ["10% off"])[0] == 100 and similarity("off", ["10% off"])[0] == 100
    assert similarity("0", ["10% off"])[0] == 0 and similarity("5", ["10% off"])[0] == 0


@pytest.mark.parametrize(
    "phrase, read",
    [
        ("NOW 0% SUGAR", "NOWO%SUGAR"),  # the zero read as an O, the spaces dropped
        ("CALL 0800 123 456", "CALL O8OO 123456"),  # zeros as Os, a space lost
        ("XC90", "XC9O"),
        ("ORIGINAL 1982", "0RIGINAL l982"),  # O as zero, one as l
        ("Illinois", "1ll1no1s"),  # i, l, I and 1
        ("ONLY €5", "ONLY €S"),  # five as S
        ("BE 88 BOLD", "B8 B8 80LD"),  # eight as B
        ("ZONE 2", "2ONE Z"),  # two as Z
        ("modern living", "rnodern living"),  # rn for m
        ("only 49.99", "ONLY 49,99"),  # a comma for the point
        ("www.brand.com/offer", "wwwbrand.com/offer"),  # a dot of a name lost (not a number's)
    ],
)
def test_ocr_confusions_still_match(phrase: str, read: str) -> None:
    from search.written import SIMILARITY, similarity

    assert similarity(phrase, [read])[0] >= SIMILARITY, (phrase, read)


@pytest.mark.parametrize(
    "phrase, read",
    [
        ("drink responsibly", "drive responsibly"),  # two letters
        ("Clean pure flavour", "Recipe pure flavour"),  # a word of the phrase is not there
        ("50%", "5.0%"),  # a number read otherwise is another number
        ("50%", "50€"),
        ("50%", "150%"),
        ("NOW 0% SUGAR", "NOW 10% SUGAR"),
        ("CALL 0800 123 456", "CALL 0800 123 457"),
        ("CALL 0800 123 456", "CALL 0800 123 4567"),
        ("XC90", "XC60"),
        ("XC90", "XC900"),
        ("only 49.99", "only 149.99"),
        ("only 49.99", "ONLY 49.90"),
        ("9.99", "999"),  # the point is part of the price
    ],
)
def test_near_misses_stay_absent(phrase: str, read: str) -> None:
    from search.written import SIMILARITY, similarity

    assert similarity(phrase, [read])[0] < SIMILARITY, (phrase, read)


def test_the_text_read_is_shown_as_read_and_folding_keeps_numbers_marked() -> None:
    from search.written import fold, fold_marked

    assert fold("NOW 0% SUGAR") == fold("now O% sugar") == "now o% sugar"
    assert fold("Crème  Brûlée!") == "creme brulee" and fold("rn") == "m"
    text, marks = fold_marked("www.x.com 5.0%")
    assert text == "www.x.com s.o%"
    assert [m for c, m in zip(text, marks) if c == "."] == [False, False, True]  # only the number's point


@pytest.mark.slow  # the OCR models (PP-OCRv4)
def test_the_ocr_table_holds_lines_with_times_and_normalised_boxes(ads, store) -> None:
    rows = Reader(store).ocr_lines()
    assert rows
    with Reader(store).connection() as con:
        frames = dict(con.execute("SELECT frame_id, video_id FROM frames").fetchall())
        lines = dict(con.execute("SELECT name, ocr_lines FROM videos").fetchall())
    for r in rows:
        assert 0 <= r["x"] <= 1 and 0 <= r["y"] <= 1 and 0 < r["w"] <= 1 and 0 < r["h"] <= 1
        assert r["x"] + r["w"] <= 1 + 1e-9 and r["y"] + r["h"] <= 1 + 1e-9
        assert r["start_s"] < r["end_s"] and ocrmod.MIN_CONFIDENCE <= r["confidence"] <= 1
        assert frames[r["frame_id"]] == r["video_id"]  # its frame is one of its video's
    assert sum(lines.values()) == len(rows) and set(lines) == set(ads)
    heineken = next(r for r in rows if r["text_norm"] == "heineken")
    assert heineken["x"] == pytest.approx(0.30, abs=0.03) and heineken["y"] == pytest.approx(0.35, abs=0.05)
    info = Reader(store).info()
    assert info.ocr and info.text_lines == len(rows) and info.text_videos == 3


@pytest.mark.slow  # the OCR models (PP-OCRv4)
def test_text_queries_mix_with_picture_queries_and_follow_video(ads, store) -> None:
    from search.query import Searcher

    res = Searcher(store).search(["a beer bottle"], ocr=["heineken", "terms apply"], videos=["text_ad0.mp4"], top=5)
    assert [r.kind for r in res] == ["text", "ocr", "ocr"]
    assert [Path(r.video).name for r in res[1].results] == ["text_ad0.mp4"] and res[1].results[0].present
    assert [Path(r.video).name for r in res[2].results] == ["text_ad0.mp4"] and not res[2].results[0].present


@pytest.mark.slow  # the OCR models (PP-OCRv4)
def test_text_is_added_to_an_indexed_store_without_re_embedding(ads, store, encoder, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    paths = [a.path for a in ads.values()]
    index_paths(paths[:2], plain, encoder=encoder)
    before = _vectors(plain)
    assert not Reader(plain).info().ocr and all(not r.present for r in _search(plain, "heineken")[0].results)
    assert "no on-screen text" in _search(plain, "heineken")[0].warnings[0]

    rep = index_paths(paths[:2], plain, IndexOptions(ocr=True), encoder=encoder)
    assert rep.indexed == 0 and rep.skipped == 2 and rep.text_added == 2
    assert _vectors(plain) == before  # nothing re-embedded: same frames, same segment files
    mine = {(r["text_norm"], r["start_s"], r["end_s"]) for r in Reader(plain).ocr_lines()}
    full = {(r["text_norm"], r["start_s"], r["end_s"]) for r in Reader(store).ocr_lines() if r["video_id"] < 2}
    assert mine == full  # the same lines as when read while indexing

    rep = index_paths(paths, plain, encoder=encoder)  # no --ocr: the store remembers it
    assert rep.indexed == 1 and rep.ocr and rep.text_lines > 0
    assert _by_name(_search(plain, "terms apply")[0])["text_ad2.mp4"].present


def _vectors(store: Path) -> tuple:
    with Reader(store).connection() as con:
        frames = con.execute("SELECT frame_id, video_id, ts_s FROM frames ORDER BY frame_id").fetchall()
        segs = con.execute("SELECT file, n_vectors FROM vector_segments ORDER BY 1").fetchall()
    return frames, segs


@pytest.mark.slow  # the OCR models (PP-OCRv4)
def test_failing_ocr_is_a_note_and_the_embeddings_are_kept(
    ads, encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ocrmod.OcrEngine.read
    bad = ads["text_ad1.mp4"].path

    def read(self, rgb):  # the OCR runtime failing on one video's frames (in its decoding thread)
        import threading

        if threading.current_thread().name == "decode" and _current.get("path") == str(bad):
            raise RuntimeError("onnxruntime: out of memory")
        return real(self, rgb)

    _current: dict[str, str] = {}
    real_produce = __import__("indexer.media.prefetch", fromlist=["FramePrefetch"]).FramePrefetch._produce

    def produce(self):
        _current["path"] = str(self.path)
        return real_produce(self)

    monkeypatch.setattr(ocrmod.OcrEngine, "read", read)
    monkeypatch.setattr("indexer.media.prefetch.FramePrefetch._produce", produce)
    monkeypatch.setenv("ARCHIVE_DECODERS", "1")  # one video decoded at a time: the path above is the one read
    d = tmp_path / "s"
    rep = index_paths([a.path for a in ads.values()], d, IndexOptions(ocr=True), encoder=encoder)
    assert rep.indexed == 3 and rep.failed == 0
    assert [p for p, _ in rep.text_notes] == [str(bad)] and "out of memory" in rep.text_notes[0][1]
    with Reader(d).connection() as con:
        got = dict(con.execute("SELECT name, ocr_lines FROM videos").fetchall())
        n_frames = con.execute(
            "SELECT count(*) FROM frames f JOIN videos v USING (video_id) WHERE v.name = ?", ["text_ad1.mp4"]
        ).fetchall()[0][0]
        fails = con.execute("SELECT path, error FROM failures").fetchall()
    assert got["text_ad1.mp4"] is None and got["text_ad0.mp4"] > 0 and n_frames > 0
    assert fails == [(str(bad), rep.text_notes[0][1])]

    monkeypatch.setattr(ocrmod.OcrEngine, "read", real)  # the next --ocr run reads what was missed
    rep = index_paths([a.path for a in ads.values()], d, IndexOptions(ocr=True), encoder=encoder)
    assert rep.text_added == 1 and rep.indexed == 0
    assert _by_name(_search(d, "www.example.com")[0])["text_ad1.mp4"].present


def _write(path: Path, size: tuple[int, int], frames: list[np.ndarray], codec: str = "libx264") -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height = size
        s.pix_fmt = "yuv420p" if codec == "libx264" else "bgr24"
        s.codec_context.time_base = Fraction(1, 25)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if codec != "libx264":
                f = f.reformat(format="bgr24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.slow  # the OCR models (PP-OCRv4), TransNetV2
def test_odd_pictures_read_no_invented_text(encoder, tmp_path: Path) -> None:
    from gen.textads import Overlay, _draw

    from archive.bench.transitions import load_source

    src = load_source(0)
    d = tmp_path / "odd"
    d.mkdir()
    import cv2

    big = cv2.resize(src[40], (3840, 2160))
    big = _draw(big, [Overlay("SUMMER SALE", 160, 0.1, 0.1, (255, 255, 0), band=(0, 0, 0))])
    _write(d / "uhd.mp4", (3840, 2160), [big] * 4)
    _write(d / "strip.mp4", (1280, 16), [cv2.resize(src[40], (1280, 16))] * 25)
    _write(d / "pixel.avi", (64, 1), [np.full((1, 64, 3), 8 * i, np.uint8) for i in range(25)], codec="rawvideo")
    shutil.copy(DATA / "tree.avi", d / "tree.avi")  # real footage without words
    rep = index_paths([d], tmp_path / "s", IndexOptions(ocr=True), encoder=encoder)
    assert rep.indexed == 4 and rep.failed == 0 and not rep.text_notes
    rows = Reader(tmp_path / "s").ocr_lines()
    with Reader(tmp_path / "s").connection() as con:
        names = dict(con.execute("SELECT video_id, name FROM videos").fetchall())
    assert {names[r["video_id"]] for r in rows} <= {"uhd.mp4"}
    assert [r["text_norm"] for r in rows] == ["summersale"]


@pytest.mark.slow  # the OCR models (PP-OCRv4), the CLI in processes
def test_cli_search_ocr_json_and_info(store, tmp_path: Path) -> None:
    env = env_for_cli(tmp_path, store)
    out = run_cli(
        ["search", "--ocr", "Drink responsibly!", "--ocr", "0800 999 000", "--top", "2", "--json"], env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    first, second = [json.loads(x) for x in out.stdout.splitlines()]
    assert first["kind"] == "ocr" and first["query"] == "Drink responsibly!"
    r = first["results"][0]
    assert r["present"] and Path(r["video"]).name == "text_ad0.mp4" and r["first_seen_s"] == pytest.approx(5.0)
    assert r["segments"][0]["text"].lower().replace(" ", "") == "drinkresponsibly"
    assert not any(x["present"] for x in second["results"])
    bad = run_cli(["search", "--ocr", "?!"], env, timeout=300)
    assert bad.returncode != 0 and "letters or digits" in bad.stderr and "Traceback" not in bad.stderr
    info = run_cli(["info", "--json"], env, timeout=300)
    d = json.loads(info.stdout)
    assert d["ocr"] is True and d["text_lines"] > 0 and d["text_videos"] == 3


@pytest.mark.slow  # the OCR models (PP-OCRv4)
def test_labels_see_names_and_say_what_found_them(ads, store, encoder, tmp_path: Path) -> None:
    from archive import Archive
    from search.labels import combine
    from search.timeline import Segment

    d = tmp_path / "s"
    shutil.copytree(store, d)
    arc = Archive(d)
    arc._encoder = encoder
    assert arc.label_add("heineken", ["a green beer bottle"], ocr=["heineken"]) == 1
    with Reader(d).connection() as con:
        segs = con.execute(
            "SELECT v.name, s.start_s, s.end_s, s.found_by FROM segments s JOIN videos v "
            "USING (video_id) WHERE label = 'heineken'"
        ).fetchall()
        vl = con.execute(
            "SELECT v.name, l.present, l.first_seen_s, l.duration_s FROM video_labels l JOIN videos v "
            "USING (video_id) WHERE label = 'heineken' AND present"
        ).fetchall()
    ((start, end),) = ads["text_ad0.mp4"].shown["Heineken"]
    assert segs == [("text_ad0.mp4", pytest.approx(start), pytest.approx(end), "text")]
    assert vl == [("text_ad0.mp4", True, pytest.approx(start), pytest.approx(end - start))]
    [lab] = [x for x in arc.labels() if x.name == "heineken"]
    assert lab.ocr == ["heineken"] and lab.to_dict()["ocr"] == ["heineken"]
    shares = {Path(c.video).name: c.shares["heineken"] for c in arc.classify()}
    assert shares["text_ad0.mp4"] == pytest.approx((end - start) / ads["text_ad0.mp4"].duration_s, abs=0.01)
    assert shares["text_ad1.mp4"] == 0
    # picture and words: joined where they overlap, each part saying what found it
    got = combine([Segment(0.0, 1.0, 0.31), Segment(4.0, 6.0, 0.30)], [Segment(5.0, 7.0, 0.95), Segment(9.0, 9.5, 1.0)])
    assert [(g.start_s, g.end_s, g.found_by, g.peak_score) for g in got] == [
        (0.0, 1.0, "picture", 0.31),
        (4.0, 7.0, "both", 0.30),
        (9.0, 9.5, "text", 1.0),
    ]


@pytest.mark.slow  # the OCR models (PP-OCRv4), `archive serve` and Chromium
def test_web_page_searches_written_words_and_lists_a_videos_text(store, tmp_path: Path) -> None:
    from helpers import browser_page, get, start_server, stop

    p, url = start_server(store, tmp_path)
    try:
        code, _, body = get(url + "api/search?ocr=0%25%20sugar")
        res = json.loads(body)
        assert code == 200 and res["kind"] == "ocr" and res["results"][0]["present"]
        seg = res["results"][0]["segments"][0]
        assert ocrmod.normalize(seg["text"]) == "0sugar" and seg["text"] in seg["text_read"]
        code, _, body = get(url + "api/search?q=a%20beach&ocr=x")
        assert code == 400 and b"one of the three" in body
        vid = res["results"][0]["video_id"]
        detail = json.loads(get(url + f"api/videos/{vid}")[2])
        assert [ocrmod.normalize(t["text"]) for t in detail["text_lines"]][:2] == ["summersale", "0sugar"]
        assert json.loads(get(url + "api/stats")[2])["ocr"] is True

        with browser_page() as (_browser, page, errors):
            page.goto(url + "?ocr=terms%20apply")
            page.wait_for_selector(".result .texts")
            assert "the words “terms apply” on screen" in page.locator("#status").inner_text()
            first = page.locator(".result").first
            assert "text_ad2.mp4" in first.locator("h3").inner_text()
            assert "terms" in first.locator(".texts").inner_text().lower()
            first.locator(".details").click()
            page.wait_for_selector(".textlines li")
            assert "video=" in page.url
            lines = page.locator(".textlines li").all_inner_texts()
            flat = [ocrmod.normalize(x) for x in lines]
            assert any("termsapply" in x for x in flat) and any("sale4999eur" in x for x in flat)
            page.goto(url)  # typed, with "written on screen" ticked
            page.wait_for_selector(".result")
            page.check("#ocr-mode")
            page.fill("#q", "limited edition")
            page.keyboard.press("Enter")
            page.wait_for_selector(".result .texts")
            assert page.url.endswith("/?ocr=limited%20edition")
            assert "“Limited / edition”" in page.locator(".result .texts").first.inner_text()
            assert not errors, errors
    finally:
        stop(p)


@pytest.mark.slow  # the OCR models (PP-OCRv4), Ray
def test_ray_workers_read_the_same_text(ads, store, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra")
    from indexer.run.options import RayOptions

    rep = index_paths(
        [a.path for a in ads.values()],
        tmp_path / "s",
        IndexOptions(model=TEST_MODEL, pretrained="none", ocr=True, ray=RayOptions("local", workers=2)),
    )
    assert rep.indexed == 3 and rep.ocr and not rep.text_notes

    def lines(d: Path) -> list[tuple]:
        with Reader(d).connection() as con:
            return con.execute(
                "SELECT v.name, o.text_norm, o.start_s, o.end_s FROM ocr o JOIN videos v USING (video_id) "
                "ORDER BY 1, 3, 2"
            ).fetchall()

    assert lines(tmp_path / "s") == lines(store)
    assert Reader(tmp_path / "s").info().ocr  # the store remembers it


@pytest.mark.slow  # the OCR models (PP-OCRv4)
def test_eval_measures_written_word_queries_on_a_truth_file(ads, store, tmp_path: Path) -> None:
    from archive import Archive

    rows = ["video,query,start_s,end_s"]
    for name, ad in ads.items():
        for phrase in ("Heineken", "Terms apply", "www.example.com"):
            spans = ad.shown.get(phrase) or [("", "")]
            rows += [f"{name},ocr:{phrase.lower()},{a},{b}" for a, b in spans]
    rows.append("text_ad0.mp4,ocr:?!,1,2")  # no letters: a problem line, the rest is measured
    rows.append("text_ad1.mp4,a red car,,")  # a picture query in the same file
    truth = tmp_path / "truth.csv"
    truth.write_text("\n".join(rows) + "\n")
    rep = Archive(store).evaluate(truth)
    assert any("ocr:?!" in p and "letters or digits" in p for p in rep.problems)
    assert {q.query for q in rep.queries} == {"ocr:heineken", "ocr:terms apply", "ocr:www.example.com", "a red car"}
    assert next(q for q in rep.queries if q.query == "a red car").kind == "text"
    for q in [q for q in rep.queries if q.kind == "ocr"]:
        assert q.kind == "ocr" and (q.counts.tp, q.counts.fp, q.counts.fn) == (1, 0, 0), q.query
        hit = next(v for v in q.videos if v.truth)
        assert hit.first_seen_s == pytest.approx(hit.true_first_s, abs=1e-3) and hit.iou == pytest.approx(1.0, abs=0.01)
