"""Sounds that come back: landmark fingerprints (:mod:`indexer.media.sound`), kept in the catalog
by every index run, and ``archive search --sound FILE`` / ``--sound-from VIDEO --at A-B``
(:mod:`search.sound`), on real files: jingles mixed under music beds, encoded as AAC and MP3 by
PyAV, indexed into a real DuckDB catalog."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from gen.videos import Shot, make_video
from helpers import env_for_cli, run_cli

from archive import Archive
from archive.bench.soundads import RATE, jingle, write_sound
from archive.bench.speechads import BED_RMS, SpokenAd, music_bed, write_ad
from indexer.errors import QueryError
from indexer.media import sound
from search import sound as soundq

# Where a play starts, against the truth: the anchors sit on a 16 ms grid and the codecs delay or
# smear onsets by a few ms; the benchmark's target is a median of 0.05 s and a maximum of 0.1 s.
START_TOL_S = 0.1


def _mix(duration_s: float, plays: list[tuple[str, float, float]], seed: int, bed: bool = True) -> np.ndarray:
    """A stereo track: a music bed (when ``bed``) and each ``(jingle, start_s, gain_db)``, the
    jingle's RMS ``gain_db`` against the bed's (0 dB: as loud as the bed)."""
    n = int(round(duration_s * RATE))
    mix = music_bed(duration_s, RATE, seed) if bed else np.zeros((2, n), np.float32)
    for name, start, gain in plays:
        j = jingle(name)
        j = j * BED_RMS * 10 ** (gain / 20) / float(np.sqrt(np.mean(j**2)))
        k = int(round(start * RATE))
        mix[:, k : k + len(j)] += j[: n - k]
    return np.ascontiguousarray(mix / max(1.0, float(np.abs(mix).max()) / 0.98), np.float32)


ADS = {  # name: (seconds, plays, codec)
    "twice.mp4": (9.0, [("chime", 0.8, 0.0), ("chime", 5.3, -3.0)], "aac"),
    "under.mp4": (7.0, [("chime", 2.45, -6.0)], "mp3"),
    "bells.mp4": (7.0, [("bells", 1.5, 0.0)], "aac"),
    "other.mp4": (7.0, [("harp", 3.0, 0.0)], "mp3"),
    "music.mp4": (6.0, [], "aac"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("soundads")
    for k, (name, (dur, plays, codec)) in enumerate(ADS.items()):
        plan = SpokenAd(name, dur, sound="speech", channels=2, sample_rate=RATE)
        write_ad(d / name, plan, k, audio=_mix(dur, plays, seed=k), codec=codec)
    make_video(d / "mute.mp4", [Shot(10, 30), Shot(40, 30)], "25")  # no sound stream
    return d


@pytest.fixture(scope="module")
def queries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("queries")
    out = {s: write_sound(d / f"chime{s}", jingle("chime")) for s in (".wav", ".mp3", ".m4a", ".flac")}
    out["bells"] = write_sound(d / "bells.wav", jingle("bells"))
    return out


@pytest.fixture(scope="module")
def arc(folder: Path, encoder, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    a = Archive(tmp_path_factory.mktemp("soundstore") / "store", encoder=encoder)
    rep = a.index([folder])
    assert rep.ok and rep.indexed == 6 and rep.sound_videos == 6 and rep.sound_notes == []
    return a


def _present(res) -> dict[str, object]:
    return {Path(r.video).name: r for r in res.results if r.present}


# -- the fingerprint itself ------------------------------------------------------------------------


def test_a_landmark_hash_packs_the_anchor_bin_and_the_bin_and_time_differences() -> None:
    t = np.array([10, 12, 20, 90], np.int32)
    f = np.array([100, 140, 60, 100], np.int32)
    h, at = sound.landmarks(t, f, fan_out=3)
    fields = (at, (h >> 13) & 0xFF, ((h >> 6) & 0x7F) - 64, h & 0x3F)
    pairs = list(zip(*(x.tolist() for x in fields)))
    # (anchor time, anchor bin, bin difference, time difference): 12 -> 20 is 80 bins apart and
    # every pair with 90 is more than 63 frames long, outside the target zone
    assert sorted(pairs) == [(10, 100, -40, 10), (10, 100, 40, 2)]
    assert h.max() < 1 << 21


def test_silence_gives_no_landmarks_and_a_jingle_gives_dozens() -> None:
    h, _ = sound.fingerprint(np.zeros(sound.RATE * 3, np.float32))
    assert len(h) == 0
    x = jingle("chime", sound.RATE)
    h, t = sound.fingerprint(x, 0.0, sound.QUERY_FAN_OUT)
    assert len(h) >= 40 and t.min() >= 0 and t.max() * sound.HOP_S <= len(x) / sound.RATE


def test_a_jingle_mixed_under_music_agrees_on_its_offset_and_an_unrelated_one_does_not() -> None:
    q = jingle("chime", sound.RATE)
    qh, qt = sound.fingerprint(q, 0.0, sound.QUERY_FAN_OUT)
    from archive.bench.speechads import resample

    def hits(track: np.ndarray) -> soundq.Hit | None:
        vh, vt = sound.fingerprint(resample(track.mean(axis=0), RATE, sound.RATE), 0.0)
        pairs = [(i, j) for i in range(len(qh)) for j in np.flatnonzero(vh == qh[i])]
        if not pairs:
            return None
        qi, vj = map(np.array, zip(*pairs))
        return soundq.best(qt[qi], vt[vj])

    found = hits(_mix(8.0, [("chime", 3.2, -6.0)], seed=5))
    assert found is not None and found.count >= soundq.MIN_LANDMARKS
    assert abs(found.offset * sound.HOP_S - 3.2) <= START_TOL_S
    other = hits(_mix(8.0, [("bells", 3.2, 0.0)], seed=5))
    assert other is None or other.count < soundq.MIN_LANDMARKS


def test_the_chance_level_rises_with_the_hits_a_video_gives() -> None:
    assert soundq.chance_level(0, 1000) == 1
    few, many = soundq.chance_level(20, 1000), soundq.chance_level(5000, 1000)
    assert few <= soundq.MIN_LANDMARKS < many
    # at the level, chance reaches it in at most 1 video in 1,000: a Poisson check by simulation
    rng = np.random.default_rng(0)
    level = soundq.chance_level(300, 2000)
    over = 0
    for _ in range(2000):
        c = np.bincount(rng.integers(0, 2000, 300), minlength=2002)
        w = c[:-2] + c[1:-1] + c[2:]
        over += int(w.max() >= level)
    assert over <= 6  # 2,000 videos at 1e-3: about 2 expected; 6 is far out in the tail


def test_at_takes_a_stretch_and_refuses_anything_else() -> None:
    assert soundq.parse_at("3.0-8.5") == (3.0, 8.5)
    for bad in ("8-3", "3", "a-b", "-1-2", "3-3", ""):
        with pytest.raises(QueryError, match="--at"):
            soundq.parse_at(bad)


# -- indexed and searched -------------------------------------------------------------------------


def test_every_play_is_found_at_its_moment_and_nowhere_else(arc: Archive, queries: dict[str, Path]) -> None:
    for suffix in (".wav", ".mp3", ".m4a", ".flac"):
        (res,) = arc.search(sound=queries[suffix])
        assert res.kind == "sound" and res.query == f"sound:chime{suffix}"
        got = _present(res)
        assert set(got) == {"twice.mp4", "under.mp4"}, (suffix, {Path(r.video).name: r.match for r in res.results})
        for name in got:
            starts = [p[1] for p in ADS[name][1]]
            segs = got[name].segments
            assert len(segs) == len(starts)
            for s, want in zip(segs, starts):
                assert abs(s.start_s - want) <= START_TOL_S, (suffix, name, s, want)
            assert got[name].first_seen_s == segs[0].start_s
            assert all(src[0] == 0.0 for src in got[name].segment_sources)  # the whole jingle plays
            assert abs(got[name].duration_s - len(segs) * len(jingle("chime")) / RATE) <= 0.2
    (res,) = arc.search(sound=queries["bells"])
    assert set(_present(res)) == {"bells.mp4"}


def test_a_stretch_of_an_indexed_video_finds_where_else_it_plays(arc: Archive, folder: Path) -> None:
    (res,) = arc.search(sound_from=(str(folder / "under.mp4"), 2.4, 4.5))
    got = _present(res)
    assert set(got) == {"twice.mp4", "under.mp4"}
    assert abs(got["under.mp4"].first_seen_s - 2.4) <= START_TOL_S  # itself, where the stretch was taken
    assert [round(s.start_s) for s in got["twice.mp4"].segments] == [1, 5]
    (mixed, res2) = arc.search("a tree", sound=str(folder / "bells.mp4"))  # a video file's sound, with a text query
    assert mixed.kind == "text" and set(_present(res2)) == {"bells.mp4"}
    (only,) = arc.search(sound_from=("twice.mp4", 0.5, 3.0), videos=str(folder / "under.mp4"))
    assert [Path(r.video).name for r in only.results] == ["under.mp4"] and only.results[0].present


def test_indexed_before_fingerprints_get_them_without_reembedding(folder: Path, encoder, tmp_path: Path) -> None:
    a = Archive(tmp_path / "store", encoder=encoder)
    rep = a.index([folder], sound=False)
    assert rep.ok and rep.sound_videos == 0
    before = a.sql("SELECT frame_id, video_id, ts_s FROM frames ORDER BY frame_id").rows
    (res,) = a.search(sound=str(folder / "bells.mp4"))
    assert not any(r.present for r in res.results) and "no sound fingerprints yet" in res.warnings[0]
    again = a.index([folder])  # fingerprints on by default: the indexed videos get theirs
    assert (again.indexed, again.skipped, again.sound_videos) == (0, 6, 6)
    assert a.sql("SELECT frame_id, video_id, ts_s FROM frames ORDER BY frame_id").rows == before
    [(mute,)] = a.sql("SELECT sound_hashes FROM videos WHERE name = 'mute.mp4'").rows
    assert mute == 0
    (res,) = a.search(sound=str(folder / "bells.mp4"))
    assert set(_present(res)) == {"bells.mp4"} and not res.warnings
    assert a.index([folder]).sound_videos == 0  # nothing left to do


def test_the_hash_table_is_put_in_hash_order_when_it_has_grown(arc: Archive) -> None:
    from indexer.store import Writer

    with Writer(arc.store) as w:
        assert w.sort_sound(min_unsorted=1, fraction=0.0)
        assert not w.sort_sound()  # nothing added since
    hashes = [h for (h,) in arc.sql("SELECT hash FROM sound_hashes").rows]
    assert hashes == sorted(hashes) and len(hashes) == arc.sql("SELECT sum(sound_hashes) FROM videos").rows[0][0]


def test_bad_sound_queries_get_one_line(arc: Archive, folder: Path, tmp_path: Path) -> None:
    env = env_for_cli(tmp_path, Path(arc.store))
    silent = tmp_path / "silent.wav"
    with wave.open(str(silent), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 32000)
    short = write_sound(tmp_path / "short.wav", jingle("chime")[: RATE // 2])
    text = tmp_path / "notes.wav"
    text.write_text("not a sound")
    cases = [
        (["--sound", tmp_path / "missing.wav"], "no such file"),
        (["--sound", text], "cannot be read as a sound or video file"),
        (["--sound", silent], "silent"),
        (["--sound", short], "at least 1 s"),
        (["--sound", folder / "mute.mp4"], "no sound track"),
        (["--sound-from", "mute.mp4", "--at", "1-3"], "no sound track"),
        (["--sound-from", "twice.mp4", "--at", "1-1.5"], "at least 1 s"),
        (["--sound-from", "twice.mp4", "--at", "30-40"], "lasts"),
        (["--sound-from", "nothere.mp4", "--at", "1-3"], "no indexed video"),
        (["--sound-from", "twice.mp4"], "go together"),
        (["--at", "1-3"], "go together"),
        (["--sound-from", "twice.mp4", "--at", "three-four"], "--at"),
    ]
    for args, says in cases:
        p = run_cli(["search", *args], env, timeout=120)
        lines = p.stderr.strip().splitlines()
        assert p.returncode in (1, 2) and len(lines) == 1 and says in lines[0], (args, p.stderr)
        assert "Traceback" not in p.stderr
    p = run_cli(["search", "--sound", folder / "twice.mp4", "--json"], env, timeout=120)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    seg = next(r for r in d["results"] if r["video"].endswith("twice.mp4"))["segments"][0]
    assert seg["query_start_s"] <= START_TOL_S and seg["start_s"] <= START_TOL_S  # itself, from its start


def test_a_damaged_sound_track_keeps_what_was_fingerprinted(folder: Path, encoder, tmp_path: Path) -> None:
    from archive.bench.speechads import write_damaged_audio

    clips = tmp_path / "clips"
    clips.mkdir()
    damaged = write_damaged_audio(folder / "twice.mp4", clips / "twice.mp4", (0.2, 0.4))  # 1.8-3.6 s of 9 s
    a = Archive(tmp_path / "store", encoder=encoder)
    rep = a.index([clips])
    assert rep.ok and rep.sound_videos == 1
    assert len(rep.sound_notes) == 1 and "damaged sound packet" in rep.sound_notes[0][1], (damaged, rep.sound_notes)
    (res,) = a.search(sound=str(folder / "bells.mp4"))
    assert not any(r.present for r in res.results)
    (res,) = a.search(sound_from=("twice.mp4", 5.0, 7.5))
    assert _present(res)["twice.mp4"].segments  # the second play, after the damage, is there


@pytest.mark.slow  # `archive serve` in a process, Chromium
def test_the_page_searches_by_a_sound_file_and_by_a_moment_of_a_video(arc: Archive, queries, tmp_path: Path) -> None:
    import http.client
    from urllib.parse import urlparse

    from helpers import browser_page, get, start_server, stop

    [(twice,)] = arc.sql("SELECT video_id FROM videos WHERE name = 'twice.mp4'").rows
    p, url = start_server(Path(arc.store), tmp_path)
    try:
        # the API: a sound file as the body; a stretch of an indexed video; an upload too large
        code, _, body = get(url + "api/search/sound?name=chime.wav", data=queries[".wav"].read_bytes(), method="POST")
        res = json.loads(body)
        assert code == 200 and res["query"] == "sound:chime.wav" and res["kind"] == "sound"
        assert {Path(r["video"]).name for r in res["results"] if r["present"]} == {"twice.mp4", "under.mp4"}
        code, _, body = get(url + f"api/search/sound?video_id={twice}&at=0.7-2.9")
        assert code == 200 and {Path(r["video"]).name for r in json.loads(body)["results"] if r["present"]} == {
            "twice.mp4",
            "under.mp4",
        }
        code, _, body = get(url + "api/search/sound?name=notes.txt", data=b"not a sound at all", method="POST")
        assert code == 400 and "notes.txt" in json.loads(body)["detail"]
        u = urlparse(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.putrequest("POST", "/api/search/sound")
        conn.putheader("Content-Length", str(1 << 30))
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 413 and "too large" in json.loads(r.read())["detail"]
        conn.close()
        # the page: the sound box, a hit played at its moment, "find this sound" from the player
        with browser_page() as (_, page, errors):
            page.goto(url)
            page.wait_for_selector("#sound-label", state="visible")
            page.set_input_files("#sound", str(queries[".mp3"]))
            page.wait_for_function("document.querySelector('#status').textContent.includes('the sound chime.mp3')")
            first = page.locator(".result").first
            assert first.locator("h3").inner_text() in ("twice.mp4", "under.mp4")
            assert "first heard" in first.inner_text()
            seg = first.locator(".seg").first
            start = float(seg.get_attribute("data-start"))
            seg.click()
            page.wait_for_function("document.querySelector('#video').readyState >= 2", timeout=20000)
            t = page.evaluate("document.querySelector('#video').currentTime")
            assert start - 0.05 <= t <= start + 3.0
            # the moment asked for is the player's: put it at the play's start (not wherever playback got to)
            page.evaluate(
                f"(() => {{ const v = document.querySelector('#video'); v.pause(); v.currentTime = {start}; }})()"
            )
            page.wait_for_function(f"Math.abs(document.querySelector('#video').currentTime - {start}) < 0.05")
            page.click("#find-sound")
            page.wait_for_function("document.querySelector('#status').textContent.includes('contain the sound')")
            names = page.locator(".result h3").all_inner_texts()
            assert set(names[:2]) == {"twice.mp4", "under.mp4"}
            assert not errors, errors
    finally:
        stop(p)
