"""What is said: `archive search --said` over the speech_words table, labels, eval, info and the page's API.

The stores are made up (random vectors, one frame per 0.5 s) and their transcripts written into the
catalog as an index run with --speech writes them, so these tests are fast and exact about times;
the speech model itself is tested with real sound by the indexing tests.
"""

import json

import duckdb
import numpy as np
import pytest
from helpers import TEST_MODEL, env_for_cli, run_cli, video_record

from archive import Archive
from indexer.errors import QueryError
from indexer.store import Reader, ShotRecord, Writer
from indexer.store.records import ModelSpec, normalize
from search.said import SIMILARITY, check_said, find, search_said

DIM = 256  # the test model's (ViT-S-32-alt): label and text queries embed with it
N = 24  # frames per video: 12 s at 2 samples a second

# per video: spoken lines, each a list of (word as heard, start_s, end_s); None: not transcribed
SPEECH = {
    "a.mp4": [
        [("Just", 1.0, 1.3), ("do", 1.35, 1.5), ("it.", 1.55, 1.8)],
        [("Drink", 4.0, 4.3), ("Heinekin", 4.35, 4.9), ("today!", 5.0, 5.4)],
        [("Coca-Cola,", 7.0, 7.6), ("the", 7.7, 7.8), ("real", 7.85, 8.1), ("thing.", 8.15, 8.5)],
    ],
    "b.mp4": [
        # "just do" and then "its": never "just do it"
        [("We", 0.5, 0.6), ("just", 0.7, 0.9), ("do", 0.95, 1.1), ("its", 1.2, 1.4), ("best.", 1.45, 1.7)],
        # a phrase over two of Whisper's lines: "the best a man" | "can get"
        [("Only", 3.0, 3.2), ("the", 3.3, 3.4), ("best", 3.45, 3.7), ("a", 3.75, 3.8), ("man", 3.85, 4.1)],
        [("can", 4.3, 4.5), ("get.", 4.55, 4.9)],
        # "drunk" is not "drink"; "just" and "do it" 5 s apart are not "just do it"
        [("Drunk", 6.0, 6.3), ("responsibly.", 6.35, 7.0), ("Just.", 7.1, 7.3)],
        [("Do", 10.5, 10.7), ("it", 10.75, 10.9)],
    ],
    "c.mp4": None,
    "d.mp4": [],  # transcribed: nothing said
}


def _record(name, seed):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((N, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return video_record(
        f"/ads/{name}", v, fingerprint=name, shots=[ShotRecord(0.0, 6.0), ShotRecord(6.0, 12.0)], bg_lse=np.full(N, 7.0)
    )


def add_speech(store, speech=SPEECH):
    """Write transcripts into the catalog as ``archive index --speech`` does: the ``speech`` and
    ``speech_words`` rows, ``videos.speech_lines`` and friends, and ``meta.speech``."""
    con = duckdb.connect(str(store / "catalog.duckdb"))
    try:
        ids = dict(con.execute("SELECT name, video_id FROM videos").fetchall())
        for name, lines in speech.items():
            vid = ids[name]
            if lines is None:
                continue
            for k, words in enumerate(lines):
                text = " ".join(w for w, _, _ in words)
                con.execute(
                    "INSERT INTO speech VALUES (?, ?, ?, ?, ?, 'en', 0.9, ?)",
                    [vid, k, words[0][1], words[-1][2], text, normalize(text)],
                )
                for w, a, b in words:
                    con.execute(
                        "INSERT INTO speech_words VALUES (?, ?, ?, ?, ?, 0.95, ?)", [vid, k, w, a, b, normalize(w)]
                    )
            con.execute(
                "UPDATE videos SET speech_lines = ?, speech_language = ?, speech_language_p = 0.99, sound_s = 12.0 "
                "WHERE video_id = ?",
                [len(lines), "en" if lines else None, vid],
            )
        con.execute("INSERT OR REPLACE INTO meta VALUES ('speech', '1')")
    finally:
        con.close()


@pytest.fixture()
def store(tmp_path):
    s = tmp_path / "store"
    with Writer(s) as w:
        w.attach(ModelSpec(TEST_MODEL, "none"), DIM)
        w.commit([_record(name, k) for k, name in enumerate(SPEECH)])
    add_speech(s)
    return s


def said(store, *phrases, videos=None, top=None):
    return {r.query: r for r in Archive(store).search(said=list(phrases), videos=videos, top=top)}


def by_name(res):
    return {r.video.rsplit("/", 1)[-1]: r for r in res.results}


# -- matching ------------------------------------------------------------------------------------


def _find(phrase, heard, gaps=None):
    norms = np.array([normalize(w) for w in heard], dtype=str)
    linked = np.ones(len(heard), bool) if gaps is None else np.array(gaps, bool)
    linked[-1] = False
    score, last = find(check_said(phrase), norms, linked)
    return score, last


@pytest.mark.parametrize(
    "phrase, heard, matches",
    [
        ("heineken", ["Heinekin"], True),  # one wrong letter in 8: 87.5
        ("schweppes", ["Schweps"], True),  # one missing of 9: 87.5
        ("häagen dazs", ["Haagen", "Das"], True),  # accents do not count; one missing of 4: 85.7
        ("coca cola", ["Coca-Cola"], True),  # two phrase words heard as one
        ("heineken", ["Heine", "ken"], True),  # one phrase word heard as two
        ("Just do it!", ["just", "do", "it"], True),
        ("drink responsibly", ["drunk", "responsibly"], False),  # 80: another word
        ("beer", ["bear"], False),  # 75
        ("just do it", ["just", "do"], False),  # a word missing
        ("just do it", ["just", "do", "its"], False),  # short words must be heard exactly
        ("do it", ["to", "it"], False),
        ("the best a man can get", ["the", "best", "man", "can", "get"], False),  # "a" missing
    ],
)
def test_words_match_one_by_one_with_a_tolerance_for_spelling(phrase, heard, matches):
    score, last = _find(phrase, heard)
    assert (score[0] >= SIMILARITY) == matches, (phrase, heard, score)
    if matches:
        assert last[0] == len(heard) - 1  # the stretch runs to the last word heard


def test_a_long_pause_breaks_a_phrase():
    score, _ = _find("just do it", ["just", "do", "it"], gaps=[True, False, False])
    assert score[0] < SIMILARITY
    assert _find("just do it", ["just", "do", "it"])[0][0] == 100


def test_phrases_need_letters_or_digits():
    with pytest.raises(QueryError, match="--said"):
        check_said(" ?! ")
    assert check_said("Coca-Cola, the REAL thing") == ["cocacola", "the", "real", "thing"]


# -- answers ------------------------------------------------------------------------------------


def test_said_answers_present_first_heard_and_time_said_from_first_to_last_word(store):
    res = said(store, "just do it", "heineken", "coca cola the real thing")
    jdi = by_name(res["just do it"])
    assert jdi["a.mp4"].present and not jdi["b.mp4"].present  # b says "just do its", and "Just." ... "Do it" 3 s apart
    a = jdi["a.mp4"]
    assert (a.first_seen_s, a.segments[0].end_s) == (1.0, 1.8)
    assert a.duration_s == pytest.approx(0.8) and a.best_s == 1.0
    assert a.segment_texts == ["Just do it."] and a.score == 1.0
    assert res["just do it"].results[0].video.endswith("a.mp4")  # present first
    assert res["just do it"].kind == "said"
    h = by_name(res["heineken"])["a.mp4"]
    assert h.present and h.segment_texts == ["Heinekin"] and (h.first_seen_s, h.segments[0].end_s) == (4.35, 4.9)
    assert h.score == pytest.approx(0.875)
    c = by_name(res["coca cola the real thing"])["a.mp4"]
    assert c.present and (c.first_seen_s, c.segments[0].end_s) == (7.0, 8.5)
    assert c.segment_texts == ["Coca-Cola, the real thing."]
    # the thumbnail is the frame on screen when the first word starts (a sample every 0.5 s: the one at 1.0 s)
    table = Reader(store).frames()
    at = {int(f): float(t) for f, t in zip(table.frame_id, table.ts_s)}
    assert at[a.best_frame_id] == 1.0 and a.segment_frame_ids == [a.best_frame_id]
    assert at[h.best_frame_id] == 4.0


def test_a_phrase_heard_over_two_lines_and_near_misses(store):
    res = said(store, "the best a man can get", "drink responsibly")
    b = by_name(res["the best a man can get"])["b.mp4"]
    assert b.present and (b.first_seen_s, b.segments[0].end_s) == (3.3, 4.9)
    assert b.segment_texts == ["the best a man can get."]
    drink = by_name(res["drink responsibly"])
    assert not any(r.present for r in drink.values())
    # the closest hearing, below the cut: "Drunk" (80) "responsibly", or "responsibly" alone against
    # "drinkresponsibly" (81.5)
    assert 0.8 <= drink["b.mp4"].score < SIMILARITY / 100
    assert res["drink responsibly"].results[0].video.endswith("b.mp4")  # near misses rank first among the absent


def test_videos_not_transcribed_are_told_apart_from_not_said(store):
    res = said(store, "just do it")["just do it"]
    got = by_name(res)
    assert got["c.mp4"].transcribed is False and not got["c.mp4"].present
    assert got["d.mp4"].transcribed is True and not got["d.mp4"].present
    assert res.results[-1].video.endswith("c.mp4")  # after every transcribed video
    assert res.warnings == [
        "1 of 4 video(s) have no speech transcribed yet: run `archive index` on their folders with --speech."
    ]
    assert res.to_dict()["results"][-1]["transcribed"] is False


def test_video_restricts_the_videos_listened_to(store):
    res = said(store, "just do it", videos=["b.mp4"])["just do it"]
    assert [r.video for r in res.results] == ["/ads/b.mp4"] and res.videos_searched == 1
    assert not res.warnings
    assert said(store, "heineken", videos=["a.mp4"], top=1)["heineken"].results[0].present


def test_a_store_without_speech_says_how_to_get_it(tmp_path, store):
    bare = tmp_path / "bare"
    with Writer(bare) as w:
        w.attach(ModelSpec(TEST_MODEL, "none"), DIM)
        w.commit([_record("x.mp4", 9)])
    with pytest.raises(QueryError, match=r"no transcribed speech: run `archive index FOLDER --speech`"):
        Archive(bare).search(said=["hello"])
    p = run_cli(["search", "--said", "hello"], env_for_cli(tmp_path, bare))
    assert p.returncode == 1 and p.stdout == ""
    [line] = p.stderr.strip().splitlines()
    assert "no transcribed speech" in line and "archive index FOLDER --speech" in line
    # and a phrase without letters is a usage error before anything is read
    p = run_cli(["search", "--said", "?!"], env_for_cli(tmp_path, store))
    assert p.returncode != 0 and "--said" in p.stderr


def test_cli_json_one_line_per_query_with_ocr_and_said_mixed(tmp_path, store):
    con = duckdb.connect(str(store / "catalog.duckdb"))
    try:  # a line of text on screen in b.mp4, as --ocr reads it
        vid, fid = con.execute(
            "SELECT v.video_id, min(f.frame_id) FROM videos v JOIN frames f USING (video_id) WHERE v.name = 'b.mp4' GROUP BY 1"
        ).fetchall()[0]
        con.execute(
            "INSERT INTO ocr VALUES (?, ?, 2.0, 4.0, 'Gillette', 0.99, 0.1, 0.8, 0.3, 0.1, 'gillette')", [fid, vid]
        )
        con.execute("UPDATE videos SET ocr_lines = 1")
        con.execute("INSERT OR REPLACE INTO meta VALUES ('ocr', '1')")
    finally:
        con.close()
    p = run_cli(
        [
            "search",
            "--ocr",
            "gillette",
            "--said",
            "the best a man can get",
            "--said",
            "just do it",
            "--json",
            "--top",
            "2",
        ],
        env_for_cli(tmp_path, store),
    )
    assert p.returncode == 0, p.stderr
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert [(o["query"], o["kind"]) for o in out] == [
        ("gillette", "ocr"),
        ("the best a man can get", "said"),
        ("just do it", "said"),
    ]
    best = out[1]["results"][0]
    assert best["video"] == "/ads/b.mp4" and best["present"] and best["transcribed"] is True
    assert best["first_seen_s"] == 3.3 and best["duration_s"] == 1.6
    assert best["segments"] == [
        {
            "start_s": 3.3,
            "end_s": 4.9,
            "peak_score": 1.0,
            "peak_frame_id": best["best_frame_id"],
            "text": "the best a man can get.",
        }
    ]
    assert set(best) == set(out[0]["results"][0]) | {"transcribed"}  # the shape of an ocr answer
    assert out[1]["rule"].startswith("spoken words") and out[1]["threshold"] == SIMILARITY / 100
    assert len(out[2]["results"]) == 2 and out[2]["results"][0]["video"] == "/ads/a.mp4"
    assert "1 of 4 video(s) have no speech transcribed" in p.stderr


def test_text_ocr_and_said_in_one_call(store, encoder):
    arc = Archive(store, encoder=encoder)
    res = arc.search("a beach", ocr=["gillette"], said=["just do it"], top=None)
    assert [(r.query, r.kind) for r in res] == [("a beach", "text"), ("gillette", "ocr"), ("just do it", "said")]
    assert by_name(res[2])["a.mp4"].present
    assert len(res[0].results) == 4  # the text query saw every video


# -- labels, eval, info, the page ----------------------------------------------------------------


def test_labels_with_said_phrases(store, encoder):
    arc = Archive(store, encoder=encoder)
    n = arc.label_add("nike", ["a running shoe"], threshold=2.0, said=["just do it"])  # the picture never matches
    assert n == 1
    rows = arc.sql(
        "SELECT v.name, s.start_s, s.end_s, s.found_by FROM segments s JOIN videos v USING (video_id) ORDER BY 1"
    ).records()
    assert rows == [{"name": "a.mp4", "start_s": 1.0, "end_s": 1.8, "found_by": "speech"}]
    [lab] = arc.labels()
    assert lab.said == ["just do it"] and lab.to_dict()["said"] == ["just do it"]
    vl = arc.sql(
        "SELECT v.name, l.present, l.first_seen_s FROM video_labels l JOIN videos v USING (video_id) WHERE l.present"
    ).records()
    assert vl == [{"name": "a.mp4", "present": True, "first_seen_s": 1.0}]
    # picture and speech together: one segment, found by both
    arc.label_add("all", ["anything"], threshold=-1.0, said=["heineken"], ocr=[])
    segs = arc.sql(
        "SELECT s.found_by FROM segments s JOIN videos v USING (video_id) WHERE s.label = 'all' AND v.name = 'a.mp4'"
    ).records()
    assert [s["found_by"] for s in segs] == ["picture+speech"]
    p = run_cli(["label", "list", "--json"], env_for_cli(store.parent, store))
    assert {lab["label"]: lab["said"] for lab in json.loads(p.stdout)} == {"all": ["heineken"], "nike": ["just do it"]}


def test_found_by_names_every_source():
    from search.labels import combine, found_by
    from search.timeline import Segment

    assert found_by({"picture", "text"}) == "both"  # as before speech
    assert found_by({"text", "speech"}) == "text+speech"
    got = combine([Segment(0.0, 2.0, 0.3)], [Segment(1.0, 3.0, 0.95)], [Segment(2.5, 4.0, 0.9), Segment(6.0, 7.0, 1.0)])
    assert [(s.start_s, s.end_s, s.found_by, s.peak_score) for s in got] == [
        (0.0, 4.0, "picture+text+speech", 0.3),
        (6.0, 7.0, "speech", 1.0),
    ]


def test_eval_measures_said_queries_like_ocr_ones(store, tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text(
        "video,query,start_s,end_s\n"
        "a.mp4,said:just do it,1.0,1.8\n"
        "b.mp4,said:just do it,,\n"
        "d.mp4,said:just do it,,\n"
        "b.mp4,said:the best a man can get,3.3,4.9\n"
        "a.mp4,said:?!,1,2\n"
    )
    rep = Archive(store).evaluate(truth)
    q = {e.query: e for e in rep.queries}
    assert set(q) == {"said:just do it", "said:the best a man can get"}
    assert q["said:just do it"].kind == "said" and q["said:just do it"].counts.f1 == 1.0
    assert q["said:the best a man can get"].counts.tp == 1 and q["said:the best a man can get"].counts.fp == 0
    v = next(x for x in q["said:just do it"].videos if x.video.endswith("a.mp4"))
    assert v.first_seen_s == v.true_first_s == 1.0 and v.iou == pytest.approx(1.0)
    assert any("said:?!" in p and "give letters or digits after said:" in p for p in rep.problems)


def test_info_counts_lines_words_and_videos_heard(store, tmp_path):
    info = Reader(store).info()
    assert info.speech and info.speech_lines == 8 and info.speech_words == 27
    assert info.speech_videos == 3 and info.speech_heard == 2
    p = run_cli(["info", "--json"], env_for_cli(tmp_path, store))
    d = json.loads(p.stdout)
    assert (d["speech"], d["speech_lines"], d["speech_words"], d["speech_videos"]) == (True, 8, 27, 3)
    p = run_cli(["info"], env_for_cli(tmp_path, store))
    assert "8 spoken lines, 27 words; 3 of 4 videos transcribed" in " ".join(p.stdout.split())


def test_the_page_api_gives_transcripts_and_said_searches(store):
    from fastapi import HTTPException

    from archive.server.app import create_app
    from archive.server.routes import router

    app = create_app(store)
    srv = app.state.archive
    routes = {r.path: r.endpoint for r in router.routes if hasattr(r, "endpoint")}
    a = Reader(store).video_refs()
    ids = {r.name: r.video_id for r in a}
    t = routes["/api/videos/{video_id}/transcript"](srv, video_id=ids["a.mp4"], store=0)
    assert t["transcribed"] and t["speech_lines"] == 3 and t["speech_language"] == "en"
    assert [(ln["start_s"], ln["end_s"], ln["text"]) for ln in t["lines"]][0] == (1.0, 1.8, "Just do it.")
    assert [w["word"] for w in t["lines"][1]["words"]] == ["Drink", "Heinekin", "today!"]
    assert routes["/api/videos/{video_id}/transcript"](srv, video_id=ids["c.mp4"], store=0)["transcribed"] is False
    with pytest.raises(HTTPException):
        routes["/api/videos/{video_id}/transcript"](srv, video_id=999, store=0)
    got = routes["/api/search"](
        srv, q=None, ocr=None, said="coca cola", top=10, video=None, threshold=None, merge_gap=0.0, min_duration=0.0
    )
    assert got["kind"] == "said" and got["results"][0]["segments"][0]["text"] == "Coca-Cola,"
    with pytest.raises(QueryError, match="one of the three"):
        routes["/api/search"](
            srv, q="x", ocr=None, said="y", top=10, video=None, threshold=None, merge_gap=0.0, min_duration=0.0
        )
    stats = routes["/api/stats"](srv)
    assert stats["speech"] and stats["speech_words"] == 27 and stats["speech_videos"] == 3


def test_search_said_direct_call_matches_the_api(store):
    [res] = search_said(store, ["just do it"], None, None)
    assert [r.video for r in res.results if r.present] == ["/ads/a.mp4"]


def test_a_store_written_by_the_writer_answers_the_same(tmp_path):
    """The transcripts committed as an index run with --speech commits them (the writer's own rows,
    ``VideoRecord.speech``), not written by hand."""
    from indexer.media.speech import SpokenLine, Transcript, Word

    def transcript(lines):
        spoken = []
        for words in lines:
            ws = [Word(w, a, b, 0.95, normalize(w)) for w, a, b in words]
            text = " ".join(w for w, _, _ in words)
            spoken.append(SpokenLine(ws[0].start_s, ws[-1].end_s, text, 0.9, ws, "en", normalize(text)))
        return Transcript(spoken, "en", 0.99, 12.0)

    s = tmp_path / "written"
    with Writer(s) as w:
        w.attach(ModelSpec(TEST_MODEL, "none"), DIM)
        w.remember_speech()
        recs = [_record(name, k) for k, name in enumerate(SPEECH)]
        for r, lines in zip(recs, SPEECH.values()):
            r.speech = None if lines is None else transcript(lines)
        w.commit(recs)
    got = said(s, "the best a man can get", "just do it")
    b = by_name(got["the best a man can get"])["b.mp4"]
    assert b.present and (b.first_seen_s, b.segments[0].end_s) == (3.3, 4.9)
    assert [r.video for r in got["just do it"].results if r.present] == ["/ads/a.mp4"]
    assert by_name(got["just do it"])["c.mp4"].transcribed is False
    info = Reader(s).info()
    assert (info.speech_lines, info.speech_words, info.speech_videos, info.speech_heard) == (8, 27, 3, 2)


def test_the_bench_store_answers_every_planted_phrase_and_a_commit_is_seen(tmp_path) -> None:
    """`archive bench --said N`'s store: each planted phrase is present in exactly its videos (the
    vocabulary pre-filter misses none), and words committed after a query are heard by the next."""

    from archive.bench import said as bench
    from search.query import Searcher

    out = bench.bench_said(400, runs=1)
    assert out["all_found"] and out["words"] >= 400 * bench.WORDS_PER_VIDEO
    assert all(out["found"][p] == 0 for p in bench.PHRASES if p not in bench.PLANTED)

    d = tmp_path / "store"
    bench.build_said_store(str(d), 50)
    s = Searcher(d)
    [res] = s.search(said=["heineken open"], top=None)
    assert not any(r.present for r in res.results)
    con = duckdb.connect(str(d / "catalog.duckdb"))
    for j, (w, n) in enumerate([("Heine", "heine"), ("ken", "ken"), ("open.", "open")]):
        con.execute("INSERT INTO speech_words VALUES (7, 50, ?, ?, ?, 0.9, ?)", [w, 40 + j * 0.3, 40.25 + j * 0.3, n])
    con.close()
    [res] = s.search(said=["heineken open"], top=3)
    assert [r.video_id for r in res.results if r.present] == [7]
    seg = res.results[0].segments[0]
    assert seg.start_s == pytest.approx(40.0) and seg.end_s == pytest.approx(40.85)
    assert res.results[0].segment_texts == ["Heine ken open."]
