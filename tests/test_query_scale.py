"""Large-archive query path: the vector file is memory-mapped, ranking uses bf16 vectors and the
shown videos are rescored exactly, so answers equal the brute-force exact ones."""

import mmap

import faiss
import numpy as np
import pytest
from gen.videos import Shot, ad_shots, frame_at, make_video
from helpers import IMAGE_THRESHOLD, video_record

from archive import Archive
from indexer.errors import StoreError
from indexer.store import Reader, ShotRecord, Writer
from indexer.store.records import ModelSpec
from search.query import Searcher
from search.scan import int8_kernel

SPEC = ModelSpec("ViT-S-32-alt", "none")


def synthetic(store, encoder, videos=120, per_video=24, seed=0):
    """Random unit vectors with ad-like metadata (2 samples/s, 3 s shots, a black first shot)."""
    rng = np.random.default_rng(seed)
    recs = []
    for v in range(videos):
        vec = rng.standard_normal((per_video, encoder.dim)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        dur = per_video * 0.5
        shots = [ShotRecord(0.0, 1.0, "black")] + [
            ShotRecord(float(a), float(min(a + 3.0, dur))) for a in np.arange(1.0, dur, 3.0)
        ]
        recs.append(video_record(f"/ads/ad{v:04d}.mp4", vec, fingerprint=f"{seed}-{v}", size_bytes=1000, shots=shots))
    with Writer(store) as w:
        w.attach(SPEC, encoder.dim)
        w.commit(recs[: videos // 2])
        w.commit(recs[videos // 2 :])
        w.remove_videos([recs[3].path])  # leaves a hole: rows no longer line up with frames
    return recs


def shown(results):
    return [
        [
            (
                r.video_id,
                r.present,
                r.first_seen_s,
                r.duration_s,
                r.best_s,
                [(s.start_s, s.end_s) for s in r.segments],
                round(r.score, 5),
            )
            for r in q.results
        ]
        for q in results
    ]


def test_vector_segments_are_mapped_and_match_faiss(tmp_path, encoder):
    synthetic(tmp_path, encoder)
    t = Reader(tmp_path).frames()
    assert len(t.vectors.owners) == 2 and all(isinstance(o, mmap.mmap) for o in t.vectors.owners)  # mapped, not read
    ref, ids = [], []
    for path in sorted((tmp_path / "vectors").glob("*.faiss")):  # FAISS reads the segments as its own files
        index = faiss.read_index(str(path))
        ref.append(index.index.reconstruct_n(0, index.ntotal))
        ids.append(faiss.vector_to_array(index.id_map))
    ref, ids = np.concatenate(ref), np.concatenate(ids)
    by_id = dict(zip(ids.tolist(), range(len(ids))))
    assert len(t) == 119 * 24 and len(ids) == 120 * 24  # the removed video's rows are dead, not gone
    assert np.array_equal(t.vectors[t.row], ref[[by_id[f] for f in t.frame_id.tolist()]])


def test_damaged_vector_file_is_one_clear_error(tmp_path, encoder):
    synthetic(tmp_path, encoder, videos=4)
    path = sorted((tmp_path / "vectors").glob("*.faiss"))[0]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(StoreError, match="damaged"):
        Reader(tmp_path).frames()


@pytest.mark.parametrize("threshold", [None, 0.12])
def test_bf16_ranking_gives_the_exact_answers(tmp_path, encoder, monkeypatch, threshold):
    synthetic(tmp_path, encoder)
    texts = ["a beach", "football", "a construction site", "alcohol", "a red car", "a family at dinner"]
    exact = Searcher(tmp_path, encoder=encoder, exact=True).search(texts, top=5, threshold=threshold)
    monkeypatch.setenv("ARCHIVE_BF16_SCAN_FRAMES", "1")
    s = Searcher(tmp_path, encoder=encoder)
    first = s.search(texts, top=5, threshold=threshold)  # a one-shot process: scans fp32, builds no copy
    assert s.scanner(None).approximate and s.scanner(None).copy_kind is None and s.scanner(None).last_exact
    fast = s.search(texts, top=5, threshold=threshold)  # later queries rank from the int8 (or bf16) copy
    assert s.scanner(None).copy_kind == ("int8" if int8_kernel() else "bf16") and not s.scanner(None).last_exact
    assert shown(first) == shown(fast) == shown(exact)
    if threshold is not None:
        assert sum(r.present for q in exact for r in q.results) >= 10  # the cut does find frames


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_bf16_ranking_on_real_video_finds_the_same_timings(tmp_path, encoder, monkeypatch):
    truth = make_video(tmp_path / "ad.mp4", ad_shots("25"), "25")
    other = make_video(tmp_path / "other.mp4", [Shot(5, 40), Shot(6, 30), Shot(7, 50)], "25")
    a = Archive(tmp_path / "store", encoder=encoder)
    a.index([truth.path, other.path])
    q = frame_at(truth, 2)
    exact = Searcher(tmp_path / "store", encoder=encoder, exact=True).search(images=[q], top=1)
    monkeypatch.setenv("ARCHIVE_BF16_SCAN_FRAMES", "1")
    s = Searcher(tmp_path / "store", encoder=encoder)
    s.search(images=[q], top=1)
    fast = s.search(images=[q], top=1)  # the second query ranks from bf16
    assert not s.scanner(None).last_exact and shown(fast) == shown(exact)
    [best] = fast[0].results
    assert best.video == str(truth.path) and best.present and fast[0].threshold > IMAGE_THRESHOLD - 0.05


def test_the_int8_ranking_copy_is_close_to_the_vectors(tmp_path, encoder, monkeypatch):
    if not int8_kernel():
        pytest.skip("this torch has no int8 weight kernel: the ranking copy is bf16")
    synthetic(tmp_path, encoder)
    monkeypatch.setenv("ARCHIVE_BF16_SCAN_FRAMES", "1")
    s = Searcher(tmp_path, encoder=encoder)
    q = s.text_vectors(["a beach", "football", "a red car"])
    sc = s.scanner(None)
    exact = sc.fast_scores(q)  # the first call scans the stored vectors
    ranked = sc.fast_scores(q)  # then the int8 copy
    assert sc.copy_kind == "int8" and ranked.shape == exact.shape
    err = np.abs(ranked - exact)
    assert float(err.max()) <= 0.01 and float(err.mean()) <= 0.002
    # ranking by the copy puts each query's exact best frame within its best few
    for j in range(len(q)):
        assert int(np.argmax(exact[:, j])) in set(np.argsort(-ranked[:, j])[:5].tolist())
