"""What is said: ``archive index --speech`` transcribes each video's sound track with the real
Whisper base model (faster-whisper, from its two data wheels) into the ``speech`` and
``speech_words`` tables, on ads whose voice-overs espeak-ng says at known moments over a music bed
(:mod:`archive.bench.speechads`), with real DuckDB and FAISS."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from helpers import TEST_MODEL, env_for_cli, run_cli

from archive.bench import speechads
from archive.bench.speechads import Said, SpokenAd
from indexer.media import speech as speechmod
from indexer.run.options import IndexOptions
from indexer.run.pipeline import index_paths
from indexer.store import Reader, Writer
from indexer.store.records import normalize
from search import said

needs_speech = pytest.mark.skipif(
    not speechmod.available() or speechmod._wheel_dirs() is None,
    reason="faster-whisper and the Whisper base wheels are not installed (make install)",
)
needs_espeak = pytest.mark.skipif(not speechads.espeak_available(), reason="espeak-ng is not installed (make espeak)")

# Whisper's word times, pinned to the voice's onset, land within 0.5 s of it (the target);
# the test allows that, not the benchmark's median.
ONSET_S = 0.5


def _said(text: str, voice: str, start_s: float, wpm: int = 160) -> Said:
    x, sr = speechads.synth_speech(text, voice, wpm)
    return Said(text, voice, start_s, round(start_s + len(x) / sr, 3), wpm)


def _plans() -> list[SpokenAd]:
    return [
        SpokenAd(
            "said.mp4",
            10.0,
            [_said("open happiness", "en-us", 1.5), _said("terms and conditions apply", "en-us", 5.0)],
            channels=2,
            sample_rate=48000,
            snr_db=8.0,
        ),
        SpokenAd("surround.mp4", 7.0, [_said("just do it", "en-us", 2.0)], channels=6, sample_rate=96000),
        SpokenAd("phone.mp4", 7.0, [_said("the best a man can get", "en-us", 1.0)], channels=1, sample_rate=8000),
        SpokenAd("music.mp4", 8.0, sound="music", channels=2, sample_rate=44100),
        SpokenAd("silent.mp4", 5.0, sound="silence", bed=False, channels=2, sample_rate=48000),
        SpokenAd("mute.mp4", 5.0, sound="none", bed=False),
    ]


@pytest.fixture(scope="module")
def ad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ads of :func:`_plans`, written once for the module (their folder holds only them)."""
    if not speechads.espeak_available():
        pytest.skip("espeak-ng is not installed (make espeak)")
    d = tmp_path_factory.mktemp("speechads")
    for k, plan in enumerate(_plans()):
        speechads.write_ad(d / plan.name, plan, seed=k)
    return d


@pytest.fixture(scope="module")
def ads(ad_dir: Path) -> dict[str, SpokenAd]:
    return {p.name: p for p in _plans()}


@pytest.fixture(scope="module")
def store(ad_dir, ads, encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not speechmod.available() or speechmod._wheel_dirs() is None:
        pytest.skip("faster-whisper and the Whisper base wheels are not installed (make install)")
    d = tmp_path_factory.mktemp("speechstore") / "store"
    rep = index_paths([ad_dir], d, IndexOptions(speech=True), encoder=encoder)
    assert rep.ok and rep.indexed == len(ads) and rep.speech
    assert rep.speech_notes == [] and rep.failures == []
    return d


def _rows(store: Path, sql: str, params: list | None = None) -> list[tuple]:
    with Reader(store).connection() as con:
        return con.execute(sql, params or []).fetchall()


def _words(store: Path, name: str) -> list[tuple[str, float, float, float]]:
    return _rows(
        store,
        "SELECT w.word_norm, w.start_s, w.end_s, w.probability FROM speech_words w JOIN videos v USING (video_id) "
        "WHERE v.name = ? ORDER BY w.start_s",
        [name],
    )


def _find(words: list[tuple[str, float, float, float]], phrase: str) -> tuple[float, float] | None:
    """The first and last word times of ``phrase`` where ``archive search --said`` finds it."""
    if not words:
        return None
    norms = np.array([w[0] for w in words], dtype=str)
    linked = np.array([b[1] - a[2] <= said.MAX_GAP_S for a, b in zip(words, words[1:])] + [False])
    score, last = said.find(said.check_said(phrase), norms, linked)
    hits = np.flatnonzero(score >= said.SIMILARITY)
    if not len(hits):
        return None
    i = int(hits[0])
    return words[i][1], words[int(last[i])][2]


@needs_speech
@needs_espeak
@pytest.mark.slow  # Whisper base
def test_each_phrase_is_heard_word_by_word_at_its_moment(ads, store) -> None:
    heard, missed = 0, []
    for name, ad in ads.items():
        words = _words(store, name)
        for phrase in ad.phrases:
            at = _find(words, phrase.text)
            if at is None:
                missed.append((name, phrase.text, " ".join(w[0] for w in words)))
                continue
            heard += 1
            assert abs(at[0] - phrase.start_s) <= ONSET_S, (name, phrase.text, at, phrase.start_s)
            assert at[0] < at[1] <= phrase.end_s + ONSET_S, (name, phrase.text, at, phrase.end_s)
    phrases = sum(len(a.phrases) for a in ads.values())
    assert heard >= phrases - 1, f"{heard} of {phrases} phrases found as --said finds them; missed {missed}"
    for _, start, end, p in _words(store, "said.mp4"):
        assert 0 <= start <= end <= 10.0 + 1e-6 and 0 <= p <= 1


@needs_speech
@needs_espeak
@pytest.mark.slow  # Whisper base
def test_music_silence_and_no_sound_give_no_lines_and_say_which_is_which(ads, store) -> None:
    rows = {
        r[0]: r[1:]
        for r in _rows(store, "SELECT name, speech_lines, speech_language, speech_language_p, sound_s FROM videos")
    }
    for name in ("music.mp4", "silent.mp4", "mute.mp4"):
        assert rows[name][0] == 0 and rows[name][1] is None, name  # heard, nothing said (no invented words)
    assert rows["mute.mp4"][3] == 0  # no sound stream
    assert rows["music.mp4"][3] == pytest.approx(8.0, abs=0.1) and rows["silent.mp4"][3] == pytest.approx(5.0, abs=0.1)
    for name in ("said.mp4", "surround.mp4", "phone.mp4"):  # stereo 48 kHz, 5.1 at 96 kHz, mono 8 kHz
        lines, lang, p, sound = rows[name]
        assert lines >= 1 and lang == "en" and 0 < p <= 1, name
        assert sound == pytest.approx(ads[name].duration_s, abs=0.1), name
    n_lines, n_words = _rows(store, "SELECT (SELECT count(*) FROM speech), (SELECT count(*) FROM speech_words)")[0]
    assert n_lines == sum(r[0] for r in rows.values()) and n_words >= 9
    for video_id, line, start, end, text, lang, conf, norm in _rows(store, "SELECT * FROM speech"):
        assert start < end and text and lang == "en" and 0 < conf <= 1 and norm == normalize(text)
        first, last = _rows(
            store, "SELECT min(start_s), max(end_s) FROM speech_words WHERE video_id = ? AND line = ?", [video_id, line]
        )[0]
        assert (first, last) == pytest.approx((start, end))  # a line runs from its first word to its last
    assert not _rows(store, "SELECT * FROM failures")


@needs_speech
@needs_espeak
@pytest.mark.slow  # Whisper base, TransNetV2-free index runs
def test_speech_on_an_indexed_store_hears_only_what_lacks_it_and_reembeds_nothing(ad_dir, encoder, tmp_path) -> None:
    d = tmp_path / "store"
    src = sorted(str(p) for p in ad_dir.glob("*.mp4"))
    rep = index_paths(src[:3], d, IndexOptions(), encoder=encoder)
    assert rep.ok and not rep.speech
    assert _rows(d, "SELECT count(*) FROM videos WHERE speech_lines IS NULL")[0][0] == 3
    frames = _rows(d, "SELECT frame_id, video_id, ts_s FROM frames ORDER BY frame_id")
    segments = sorted(p.name for p in (d / "vectors").iterdir())
    rep = index_paths(src, d, IndexOptions(speech=True), encoder=encoder)
    assert rep.indexed == len(src) - 3 and rep.skipped == 3 and rep.speech_added == 3
    assert _rows(d, "SELECT count(*) FROM videos WHERE speech_lines IS NULL")[0][0] == 0
    assert _rows(d, "SELECT frame_id, video_id, ts_s FROM frames WHERE video_id < 3 ORDER BY frame_id") == [
        f for f in frames if f[1] < 3
    ]  # the first three keep their frames, ids and times
    assert set(segments) <= {p.name for p in (d / "vectors").iterdir()}  # their vectors were not rewritten
    assert Reader(d).meta().get("speech") == "1"
    again = index_paths(src, d, IndexOptions(), encoder=encoder)  # the store remembers: nothing left to hear
    assert again.speech and again.skipped == len(src) and again.speech_added == 0 and again.speech_lines == 0


@needs_speech
@needs_espeak
@pytest.mark.slow  # Whisper base
def test_damaged_sound_keeps_what_was_heard_and_a_recogniser_failure_is_retried(
    ad_dir, encoder, tmp_path, monkeypatch
) -> None:
    src = ad_dir
    d = tmp_path / "store"
    damaged = speechads.write_damaged_audio(src / "said.mp4", tmp_path / "v" / "damaged.mp4", span=(0.55, 0.75))
    shutil.copy(src / "phone.mp4", tmp_path / "v" / "phone.mp4")
    real = speechmod.SpeechEngine.transcribe

    def failing(self, path):
        if Path(path).name == "phone.mp4":
            raise RuntimeError("the recogniser ran out of memory")
        return real(self, path)

    monkeypatch.setattr(speechmod.SpeechEngine, "transcribe", failing)
    rep = index_paths([tmp_path / "v"], d, IndexOptions(speech=True), encoder=encoder)
    assert rep.indexed == 2 and rep.failed == 0  # both videos are indexed: pictures do not wait on sound
    notes = dict(rep.speech_notes)
    assert "the recogniser ran out of memory" in notes[str(tmp_path / "v" / "phone.mp4")]
    assert "damaged sound packet" in notes[str(damaged.path)]
    rows = dict(_rows(d, "SELECT name, speech_lines FROM videos"))
    assert rows["phone.mp4"] is None  # not heard: tried again next run
    assert rows["damaged.mp4"] >= 1  # what lies before the damage (from 5.5 s) is kept: "open ..." at 1.5 s
    # (the words themselves may differ from the clean file's: Whisper hears a window as a whole)
    before = [w for w in _words(d, "damaged.mp4") if w[2] <= 5.5]
    assert before and abs(before[0][1] - 1.5) <= ONSET_S, before
    failures = dict(_rows(d, "SELECT path, error FROM failures"))
    assert set(failures) == {str(damaged.path), str(tmp_path / "v" / "phone.mp4")}
    assert _rows(d, "SELECT count(*) FROM frames WHERE video_id IN (SELECT video_id FROM videos)")[0][0] > 0

    monkeypatch.setattr(speechmod.SpeechEngine, "transcribe", real)
    again = index_paths([tmp_path / "v"], d, IndexOptions(speech=True), encoder=encoder)
    assert again.skipped == 2 and again.speech_added == 1 and again.speech_notes == []
    assert (
        _find(_words(d, "phone.mp4"), "the best a man can get") is not None
        or dict(_rows(d, "SELECT name, speech_lines FROM videos"))["phone.mp4"] >= 1
    )


@needs_speech
@needs_espeak
@pytest.mark.slow  # the CLI as a process
def test_audio_only_files_are_named_plainly_and_cost_nothing_indexed(ad_dir, tmp_path) -> None:
    src = ad_dir
    env = env_for_cli(tmp_path)
    ok = run_cli(["index", src / "mute.mp4", "--speech", "--quiet"], env)
    assert ok.returncode == 0, ok.stderr
    plan = SpokenAd("song.wav", 3.0, sound="music", channels=2, sample_rate=44100)
    song = speechads.write_audio_only(tmp_path / "song.wav", plan)
    m4a = speechads.write_audio_only(tmp_path / "jingle.m4a", SpokenAd("jingle.m4a", 3.0, sound="music"))
    with wave.open(str(song)) as w:
        assert w.getnframes() == 3 * 44100
    bad = run_cli(["index", song, m4a, "--speech"], env)
    assert bad.returncode == 1
    lines = [ln for ln in bad.stderr.splitlines() if "audio-only" in ln]
    assert len(lines) == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert all("the archive indexes videos" in ln for ln in lines)
    info = json.loads(run_cli(["info", "--json"], env).stdout)
    assert info["videos"] == 1  # what was indexed before is still there
    assert env["ARCHIVE_MODEL"] == TEST_MODEL


def test_whispers_known_inventions_and_loops_are_dropped() -> None:
    from faster_whisper.transcribe import Segment, Word

    def seg(text, words=None, avg=-0.2, nsp=0.1, cr=1.2):
        ws = [Word(0.1 * k, 0.1 * k + 0.08, " " + w, 0.9) for k, w in enumerate(words or text.split())]
        return Segment(0, 0, 0.0, 1.0, text, [], avg, cr, nsp, ws, 0.0)

    line = speechmod._line(seg("Drink responsibly."), 10.0, "en")
    assert line is not None and line.start_s == pytest.approx(10.0) and line.norm == "drinkresponsibly"
    assert [w.norm for w in line.words] == ["drink", "responsibly"] and line.confidence == pytest.approx(0.9)
    assert speechmod._line(seg("Thank you for watching!"), 0.0, "en") is None
    assert speechmod._line(seg("Subtitles by the Amara.org community"), 0.0, "en") is None
    assert speechmod._line(seg("la la la la la la la la la"), 0.0, "en") is None  # a loop
    assert speechmod._line(seg("buy now buy now buy now buy now"), 0.0, "en") is None
    assert speechmod._line(seg("Order today", cr=2.6), 0.0, "en") is None  # compression ratio above 2.4
    assert speechmod._line(seg("Order today", avg=-1.3, nsp=0.7), 0.0, "en") is None  # silent and unsure
    assert speechmod._line(seg("Order today", avg=-1.3, nsp=0.2), 0.0, "en") is not None  # unsure, but speech
    assert speechmod._line(seg("Thank you for watching our new range"), 0.0, "en") is not None  # more than the credit


def test_a_line_that_begins_a_speech_chunk_starts_at_the_voice() -> None:
    def line(start):
        w = speechmod.Word("buy", start, start + 0.6, 0.9, "buy")
        return speechmod.SpokenLine(start, start + 0.6, "buy", 0.9, [w])

    early, late, far = line(1.6), line(5.1), line(9.0)
    speechmod.pin_onsets([early, late, far], [2.0, 5.0, 12.0])
    assert early.start_s == pytest.approx(2.0) and early.words[0].start_s == pytest.approx(2.0)  # 0.4 s early
    assert late.start_s == pytest.approx(5.0)  # 0.1 s late
    assert far.start_s == pytest.approx(9.0)  # no onset near: as heard
    short = line(3.0)
    short.words[0].end_s = 3.2
    speechmod.pin_onsets([short], [3.5])
    assert short.start_s == pytest.approx(3.0)  # never past its first word's end


def test_a_long_sound_track_comes_in_bounded_windows_on_the_videos_clock(tmp_path) -> None:
    plan = SpokenAd("long.mp4", 24.0, sound="music", channels=2, sample_rate=44100)
    path = speechads.write_ad(tmp_path / "long.mp4", plan, seed=1)
    stats = speechmod.SoundStats()
    windows = list(speechmod.sound_windows(path, stats, window_s=5.0, cut_search_s=2.0))
    assert stats.has_stream and stats.channels == 2 and stats.rate == 44100 and stats.bad_packets == 0
    assert len(windows) >= 4
    limit = (5.0 + 2.0) * speechmod.RATE
    pos = 0.0
    for start, x in windows:
        assert x.dtype == np.float32 and x.ndim == 1 and len(x) <= limit
        assert start == pytest.approx(pos, abs=1e-6)  # windows follow each other without a gap
        pos = start + len(x) / speechmod.RATE
    assert pos == pytest.approx(24.0, abs=0.05) and stats.seconds == pytest.approx(pos, abs=1e-6)
    whole = np.concatenate([x for _, x in windows])
    [(_, once)] = list(speechmod.sound_windows(path, window_s=100.0))
    np.testing.assert_array_equal(whole, once)  # cutting loses and repeats nothing
    mute = speechads.write_ad(tmp_path / "mute.mp4", SpokenAd("mute.mp4", 2.0, sound="none"), seed=0)
    stats = speechmod.SoundStats()
    assert list(speechmod.sound_windows(mute, stats)) == [] and not stats.has_stream


@needs_speech
def test_the_base_model_is_assembled_once_from_its_wheels_and_checked(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ARCHIVE_CACHE_DIR", str(tmp_path / "cache"))
    target = speechmod.base_from_wheels()
    assert target == tmp_path / "cache" / "whisper-base-ct2"
    assert (target / "model.bin.sha256").read_text().strip() == speechmod.MODEL_SHA256
    assert {p.name for p in target.iterdir()} == {"model.bin", "model.bin.sha256", *speechmod.BASE_FILES}
    stamp = (target / "model.bin").stat().st_mtime_ns
    assert speechmod.base_from_wheels() == target and (target / "model.bin").stat().st_mtime_ns == stamp  # once
    with open(target / "model.bin", "r+b") as f:  # a cut-short copy is assembled again
        f.truncate(1000)
    assert speechmod.base_from_wheels() == target and (target / "model.bin").stat().st_size > 1000
    assert speechmod.resolve_model("base") == str(target)
    assert speechmod.resolve_model(str(target)) == str(target)  # a local folder
    from indexer.errors import UsageError

    with pytest.raises(UsageError, match="model.bin"):
        speechmod.resolve_model(str(tmp_path))
    with pytest.raises(UsageError, match="a Whisper size"):
        speechmod.resolve_model("huge-v9")


def test_a_store_of_schema_9_gains_the_speech_tables_in_place(tmp_path) -> None:
    from indexer.store import schema

    d = tmp_path / "store"
    with Writer(d) as w:
        w.attach(speechmod_spec(), 4)
    with Reader(d).connection() as con:
        assert schema.version(con) == schema.SCHEMA_VERSION
    # back to v9 as a store of last week would be, then upgraded by the next writer
    import duckdb

    con = duckdb.connect(str(d / "catalog.duckdb"))
    con.execute("DROP TABLE speech")
    con.execute("DROP TABLE speech_words")
    con.execute("DROP TABLE sound_hashes")
    for col in ("speech_lines", "speech_language", "speech_language_p", "sound_s", "sound_hashes"):
        con.execute(f"ALTER TABLE videos DROP COLUMN {col}")
    con.execute("ALTER TABLE labels DROP COLUMN said")
    con.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    con.close()
    with Writer(d) as w:
        w.attach(speechmod_spec(), 4)
    with Reader(d).connection() as con:
        assert schema.version(con) == schema.SCHEMA_VERSION  # 9 -> 10 -> 11, one migration at a time
        cols = [r[0] for r in con.execute("DESCRIBE videos").fetchall()]
        assert cols[-5:] == ["speech_lines", "speech_language", "speech_language_p", "sound_s", "sound_hashes"]
        assert con.execute("SELECT count(*) FROM sound_hashes").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM speech_words").fetchone() == (0,)


def speechmod_spec():
    from indexer.store.records import ModelSpec

    return ModelSpec(TEST_MODEL, "none")


@needs_speech
@needs_espeak
@pytest.mark.slow  # Whisper base, `archive serve` in a process, Chromium
def test_the_page_listens_and_plays_a_spoken_line_from_its_moment(ads, store, tmp_path) -> None:
    from helpers import browser_page, start_server, stop

    [(vid,)] = _rows(store, "SELECT video_id FROM videos WHERE name = 'said.mp4'")
    said_at = ads["said.mp4"].phrases[1].start_s  # "terms and conditions apply"
    p, url = start_server(store, tmp_path)
    try:
        with browser_page() as (_, page, errors):
            page.goto(url)
            page.wait_for_selector("#said-label", state="visible")  # the store has speech: the box offers "said"
            page.check("#said-mode")
            page.fill("#q", "terms and conditions apply")
            page.keyboard.press("Enter")
            page.wait_for_function("document.querySelector('#status').textContent.includes('said')")
            assert page.url.endswith("/?said=terms%20and%20conditions%20apply")
            first = page.locator(".result").first
            assert "said.mp4" in first.locator("h3").inner_text()
            assert "terms" in first.inner_text().lower()  # the words heard are shown
            start = float(first.locator(".seg").first.get_attribute("data-start"))
            assert abs(start - said_at) <= ONSET_S
            # the video's page: its transcript, a click on a line plays from its first word
            lines = _rows(store, "SELECT start_s, text FROM speech WHERE video_id = ? ORDER BY start_s", [vid])
            k = next(i for i, (_, text) in enumerate(lines) if "terms" in text.lower())
            page.goto(f"{url}?video={vid}")
            buttons = page.locator(".transcript button.textline")
            buttons.first.wait_for()
            assert buttons.count() == len(lines) and "terms" in page.locator(".transcript").inner_text().lower()
            buttons.nth(k).click()
            page.wait_for_function("document.querySelector('#video').readyState >= 2", timeout=20000)
            t = page.evaluate("document.querySelector('#video').currentTime")
            assert lines[k][0] - 0.05 <= t <= lines[k][0] + 3.0  # from the line's first word (a keyframe's slack)
            assert page.evaluate("document.querySelector('#video').error") is None
            assert not errors, errors
    finally:
        stop(p)
