"""The smaller vector layer and the IVF index of large archives, on real FAISS, DuckDB and open_clip.

* Segments are fp16 FAISS indexes (IndexIDMap2(IndexScalarQuantizer QT_fp16)) that FAISS itself
  reads; old fp32 stores are read as they are and rewritten as fp16 by ``archive optimize``.
* ``archive optimize --ivf`` trains an IVF index; new videos get codes in it without retraining;
  queries rank candidates through it and rescore them exactly.
"""

from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pytest
from helpers import DATA, TEST_MODEL, env_for_cli, run_cli, video_record

from archive import Archive
from archive.bench.synthetic import build_synthetic
from indexer import settings
from indexer.errors import StoreError
from indexer.store import Reader, ShotRecord, Writer, check_store
from indexer.store import segments as segmod
from indexer.store import vectors as vecfile
from search.query import Searcher

STORES = DATA / "stores"


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def test_segments_are_fp16_faiss_indexes_that_faiss_reads(tmp_path):
    x = _unit(np.random.default_rng(0).standard_normal((300, 64)))
    ids = np.arange(1000, 1300, dtype=np.int64)
    ref = segmod.write_segment(tmp_path, 7, 64, iter([(ids[:100], x[:100], None), (ids[100:], x[100:], None)]))
    assert ref.kind == segmod.F16 and ref.n_vectors == 300 and (ref.min_frame_id, ref.max_frame_id) == (1000, 1299)
    assert ref.path(tmp_path).stat().st_size < 300 * 64 * 4  # smaller than fp32 alone
    index = faiss.read_index(str(ref.path(tmp_path)))  # FAISS's own reader
    assert index.ntotal == 300
    assert np.array_equal(faiss.vector_to_array(index.id_map), ids)
    half = x.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(faiss.downcast_index(index.index).reconstruct_n(0, 300), half)
    m_ids, m_vecs, _owner = vecfile.map_file(ref.path(tmp_path))  # and the archive maps it without reading it
    assert m_vecs.dtype == np.float16 and np.array_equal(m_ids, ids)
    np.testing.assert_array_equal(m_vecs.astype(np.float32), half)
    _d, found = index.search(x[:5], 1)
    assert found[:, 0].tolist() == ids[:5].tolist()


def test_an_old_fp32_store_is_read_then_rewritten_as_fp16_by_optimize(tmp_path, encoder):
    store = tmp_path / "store-v3"
    shutil.copytree(STORES / "v3", store)
    empty = tmp_path / "empty"
    empty.mkdir()
    a = Archive(store, encoder=encoder)
    a.index([empty])  # upgrades the catalog; the v3 vector file becomes segment 0 as it is (fp32)
    assert Reader(store).info().vector_kinds == {"flat": 58}
    before = a.search("a tree", "leaves", threshold=0.0)
    old = Reader(store).frames()
    old_vecs = old.vectors.take(old.row)

    rep = a.optimize()
    assert rep.written == 1 and rep.rows_copied == 58 and rep.ivf is None
    info = Reader(store).info()
    assert info.vector_kinds == {"f16": 58} and info.frames == 58
    new = Reader(store).frames()
    assert np.array_equal(new.frame_id, old.frame_id)
    np.testing.assert_allclose(new.vectors.take(new.row), old_vecs, atol=1e-3)
    after = Archive(store, encoder=encoder).search("a tree", "leaves", threshold=0.0)
    for b, c in zip(before, after):
        assert [(r.video, r.present, r.first_seen_s, r.duration_s) for r in b.results] == [
            (r.video, r.present, r.first_seen_s, r.duration_s) for r in c.results
        ]
        assert [round(r.score, 3) for r in b.results] == [round(r.score, 3) for r in c.results]
    assert check_store(store).ok
    with pytest.raises(StoreError, match="needs at least 10,240 vectors"):  # too small for an index
        a.optimize(ivf=True)
    assert check_store(store).ok and Reader(store).info().ivf is None


@pytest.fixture()
def big(tmp_path, monkeypatch):
    """A synthetic store of 200 ad-like videos (12,000 frames), large enough for its own IVF index
    once ARCHIVE_IVF_FRAMES is lowered to 5,000."""
    monkeypatch.setenv("ARCHIVE_IVF_FRAMES", "5000")
    store = tmp_path / "big"
    build_synthetic(str(store), 12_000, TEST_MODEL, "none")
    return store


def _shown(res):
    return [r.to_dict() for r in res.results]


@pytest.mark.slow  # the CLI in a process
def test_ivf_index_ranks_candidates_that_are_rescored_exactly_and_takes_new_videos_without_retraining(
    big, encoder, monkeypatch, tmp_path
):
    assert Reader(big).info().ivf is None and "scan" in Reader(big).info().query_index
    a = Archive(big, encoder=encoder)
    rep = a.optimize(ivf=True)
    assert rep.ivf == "IVF256,PQ32" and rep.encoded == 12_000 and rep.ivf_trained_on == 256 * 40
    info = Reader(big).info()
    assert info.ivf["vectors_with_codes"] == 12_000 and not info.ivf["stale"]
    assert info.query_index.startswith("IVF index (IVF256,PQ32")
    assert check_store(big).ok

    # Every list visited: the IVF path must give exactly what the brute-force exact path gives.
    monkeypatch.setenv("ARCHIVE_IVF_NPROBE", "256")
    fast = Searcher(big, encoder=encoder)
    exact = Searcher(big, encoder=encoder, exact=True)
    texts = ["a beach", "a red car", "people dancing", "a dog"]
    for t in texts:
        [f] = fast.search([t], top=5, threshold=0.3)
        assert fast.ivf_ranker(fast.scanner(None)) is not None  # answered through the index
        [e] = exact.search([t], top=5, threshold=0.3)
        assert _shown(f) == _shown(e)
        assert f.videos_searched == 200 and f.frames_searched == 12_000
        # The text rule (each frame's background term) too: the index is asked with the query minus
        # the background term's linear fit, so the rule's best videos are among the candidates.
        [f] = fast.search([t], top=5)
        [e] = exact.search([t], top=5)
        assert _shown(f) == _shown(e)

    # A new video joins the existing lists: its segment gets codes of the same index, no retraining.
    q = fast.text_vectors(["a lighthouse at dusk"])[0]
    rng = np.random.default_rng(5)
    vecs = _unit(q[None, :] + 0.05 * _unit(rng.standard_normal((8, len(q)))))
    rec = video_record(
        str(tmp_path / "new_ad.mp4"),
        vecs,
        fingerprint="f" * 32,
        width=64,
        height=64,
        decoded_frames=100,
        shots=[ShotRecord(0.0, 4.0)],
    )
    with Writer(big) as w:
        w.attach_existing()
        w.commit([rec])
    with Reader(big).connection() as con:
        segs = segmod.registered(con)
        ivf_rows = con.execute("SELECT ivf_id, trained_vectors FROM vector_ivf").fetchall()
    assert ivf_rows == [(1, 256 * 40)]  # the same index, not retrained
    assert all(s.ivf_id == 1 for s in segs) and segs[-1].n_vectors == 8
    assert segs[-1].ivf_path(big).stat().st_size == 8 * 33  # list number (1 byte: 256 lists) + 32 PQ bytes a row
    monkeypatch.setenv("ARCHIVE_IVF_NPROBE", "8")  # a few lists: still found, it is the best match by far
    [r] = Searcher(big, encoder=encoder).search(["a lighthouse at dusk"], top=3)
    assert r.results[0].video == rec.path and r.results[0].present
    assert r.results[0].first_seen_s == 0.0 and r.results[0].duration_s == 4.0
    assert check_store(big).ok

    # archive info says which index answers, from the CLI.
    env = env_for_cli(tmp_path, big)
    env["ARCHIVE_IVF_FRAMES"] = "5000"
    p = run_cli(["info", "--json"], env)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["ivf"]["factory"] == "IVF256,PQ32" and d["ivf"]["vectors_with_codes"] == 12_008
    assert d["vector_storage"] == {"f16": 12_008}


def test_files_of_an_interrupted_ivf_training_are_removed_and_lost_codes_are_scanned_exactly(big, encoder):
    a = Archive(big, encoder=encoder)
    a.optimize(ivf=True)
    folder = big / "vectors"
    with Reader(big).connection() as con:
        segs = segmod.registered(con)
    # What a crash between writing a new index and registering it leaves behind:
    (folder / "ivf-00000009.faiss").write_bytes(b"half")
    stray = folder / segmod.ivf_name(segs[0].file, 9)
    stray.write_bytes(b"\0" * 10)
    # ... and a lost sidecar of the registered index.
    segs[-1].ivf_path(big).unlink()
    rep = check_store(big)
    assert any("ivf-00000009.faiss" in n for n in rep.notes)
    assert not rep.ok and any("IVF codes" in p for p in rep.problems)
    with Writer(big) as w:  # what the next writer does on opening the store
        w.attach_existing()
    assert not (folder / "ivf-00000009.faiss").exists() and not stray.exists()
    with Reader(big).connection() as con:
        after = segmod.registered(con)
    assert after[-1].ivf_id is None and all(s.ivf_id == 1 for s in after[:-1])
    rep = check_store(big)
    assert rep.ok and any("no codes in the IVF index" in n for n in rep.notes)
    # Its frames are scored exactly: the answers match brute force with every list visited.
    import os

    os.environ["ARCHIVE_IVF_NPROBE"] = "256"
    try:
        [f] = Searcher(big, encoder=encoder).search(["a beach"], top=5, threshold=0.3)
        [e] = Searcher(big, encoder=encoder, exact=True).search(["a beach"], top=5, threshold=0.3)
    finally:
        del os.environ["ARCHIVE_IVF_NPROBE"]
    assert _shown(f) == _shown(e)
    a.optimize()  # encodes the segment that lost its codes, without retraining
    with Reader(big).connection() as con:
        assert all(s.ivf_id == 1 for s in segmod.registered(con))
    assert check_store(big).ok and not any("no codes" in n for n in check_store(big).notes)


@pytest.mark.slow  # the CLI in a process
def test_an_index_run_that_grows_the_archive_large_trains_its_ivf_index_once(big, tmp_path):
    """Comparing new videos for shared footage scans every frame until the archive has an IVF index.
    An index run that adds videos to an archive of ``ARCHIVE_MATCH_IVF_FRAMES`` frames or more
    trains one (once, announced), every row gets its codes, and the run's versions compare goes
    through it; below the limit nothing is trained, and a later run does not train again."""
    from indexer.store import Reader

    env = env_for_cli(tmp_path, big)

    def index(name: str, limit: str, as_json: bool = True) -> tuple[dict, str]:
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(DATA / "tree.avi", folder / f"{name}.avi")
        p = run_cli(["index", folder] + (["--json"] if as_json else []), {**env, "ARCHIVE_MATCH_IVF_FRAMES": limit})
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout) if as_json else {}, p.stderr

    d, _ = index("below", "20000")  # 12,000 frames: below the limit
    assert d["indexed"] == 1 and d["versions_compared"] == 1 and d["ivf_trained_s"] == 0
    assert Reader(big).info().ivf is None

    _, err = index("crossing", "10000", as_json=False)
    info = Reader(big).info()
    assert "training its IVF index" in err and f"IVF index trained over {info.frames:,} frames" in err
    assert "indexed 1 video" in err and "versions: 1 video(s) compared" in err
    assert info.ivf is not None and info.ivf["vectors_with_codes"] == info.frames and not info.ivf["stale"]
    assert Reader(big).ivf_layer()[0] is not None  # what the versions compare reads candidates through
    assert check_store(big).ok

    # Trained for matching only: queries keep their scan (ARCHIVE_IVF_FRAMES is 5,000 here) until
    # the user opts them in with `archive optimize --ivf`.
    assert info.ivf["matching_only"] and "scan" in info.query_index
    assert Reader(big).frames().ivf is None

    d, err = index("later", "10000")  # the next run adds its rows' codes, no retraining
    assert d["indexed"] == 1 and d["ivf_trained_s"] == 0 and "training" not in err
    with Reader(big).connection() as con:
        assert con.execute("SELECT count(*) FROM vector_ivf").fetchall() == [(1,)]
    info = Reader(big).info()
    assert info.ivf["vectors_with_codes"] == info.frames

    with Reader(big).connection() as con:
        trained = con.execute("SELECT ivf_id, file FROM vector_ivf").fetchall()
    rep = Archive(big).optimize(ivf=True)  # that index fits the archive: kept, not trained again
    assert rep.ivf is None and rep.ivf_kept == info.ivf["factory"] and rep.train_s is None
    with Reader(big).connection() as con:
        assert con.execute("SELECT ivf_id, file FROM vector_ivf").fetchall() == trained
    info = Reader(big).info()
    assert not info.ivf["matching_only"] and info.query_index.startswith("IVF index")
    assert Reader(big).frames().ivf is not None
    assert check_store(big).ok

    rep = Archive(big).optimize(ivf=True, retrain=True)  # asked for: a new one
    assert rep.ivf == info.ivf["factory"] and rep.encoded == info.frames
    with Reader(big).connection() as con:
        [(new_id, _file)] = con.execute("SELECT ivf_id, file FROM vector_ivf").fetchall()
    assert new_id > trained[0][0]
    info = Reader(big).info()
    assert not info.ivf["matching_only"] and info.ivf["vectors_with_codes"] == info.frames
    assert check_store(big).ok


def test_candidates_follow_the_read_paths_order_where_strong_matches_saturate(big, encoder, monkeypatch):
    # The text rule's probability of a strong match rounds to 1.0; the read path then still orders
    # videos by the rule's logit (not by raw cosine among the ties), which is what the index's
    # candidates follow: the exact best videos are always among them.
    from search import presence
    from search.query import _order, rules_for
    from search.timeline import video_bounds

    Archive(big, encoder=encoder).optimize(ivf=True)
    monkeypatch.setenv("ARCHIVE_IVF_NPROBE", "256")  # every list: only the ordering is under test
    s = Searcher(big, encoder=encoder)
    scanner = s.scanner(None)
    ranker = s.ivf_ranker(scanner)
    t = scanner.table
    x = np.asarray(t.vectors.take(t.row), np.float64)
    rng = np.random.default_rng(3)
    q = _unit(x[0] + 0.3 * _unit(rng.standard_normal(x.shape[1])))
    w = 0.6 * _unit(rng.standard_normal(x.shape[1]))
    bg = 100.0 * (x @ w) - 60.0  # a background term linear in the vectors: logit = 100 x.(q - w) + 60
    raw = x @ q
    starts, _stops = video_bounds(t.video_id)
    [rule] = rules_for(["text"], t)
    top = 10
    want = _order(raw, bg, rule, t.blank, starts)[:top]
    z_best = np.maximum.reduceat(np.where(t.blank, -np.inf, 100 * raw - bg), starts)
    p_best = presence.text_probability(z_best, 0.0, 1.0)
    assert (p_best[want] == 1.0).all()  # saturated: every one of them has probability 1.0 ...
    by_raw = np.lexsort((-np.maximum.reduceat(raw, starts), -p_best))[:top]
    assert set(want) != set(by_raw)  # ... and ties broken by raw cosine would pick other videos
    cand = ranker.candidates(
        q[None, :].astype(np.float32), [True], bg, settings.ivf_candidate_videos(top), scanner.scores_at
    )
    got = set(np.unique(ranker.group[cand]).tolist())
    assert set(want.tolist()) <= got
