"""Loading from the exports (indexer/image_tower.py, indexer/text_tower.py) gives the model's own
answers, without open_clip; a damaged or switched-off export falls back to building the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA, TEST_MODEL

from archive import Archive
from indexer.media.decode import sample_frames
from indexer.model import image_tower, text_tower
from indexer.model.encoder import Encoder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of this test's own, with the exports of a first, full load in it."""
    d = tmp_path / "cache"
    monkeypatch.setenv("ARCHIVE_CACHE_DIR", str(d))
    return d


def _store_rows(a: Archive) -> list[tuple]:
    return a.sql(
        "SELECT v.name, f.ts_s, f.end_s, s.start_s, s.end_s FROM frames f JOIN videos v USING (video_id) "
        "JOIN shots s USING (shot_id) ORDER BY 1, 2"
    ).rows


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_exported_towers_give_the_models_vectors_and_answers(cache, tmp_path, clips):
    full = Encoder.load(TEST_MODEL, "none", "cpu", full=True)
    assert full.model is not None
    lite = Encoder.load(TEST_MODEL, "none", "cpu", precision=full.precision)
    assert lite.model is None and lite.image_tower is not None and lite.text_np is not None
    assert (lite.dim, lite.image_size, lite.precision) == (full.dim, full.image_size, full.precision)

    frames = [f.rgb for f in sample_frames(DATA / "Megamind.avi", 2.0, full.image_size)][:12]
    a, b = full.encode_images(frames), lite.encode_images(frames)
    assert float(np.min(np.sum(a * b, axis=1))) >= 0.9999
    texts = ["a beach", "a cartoon character with a big blue head", "football"]
    assert float(np.min(np.sum(full.encode_texts(texts) * lite.encode_texts(texts), axis=1))) >= 0.99999

    # an index run that loads its own model (the exports; first videos decoded while it loads)
    # stores what a run with the whole model stores, and answers an image query the same way
    own = Archive(tmp_path / "own")
    rep = own.index([clips])
    assert rep.indexed == 2 and rep.encoder.model is None
    whole = Archive(tmp_path / "whole", encoder=full)
    assert whole.index([clips]).indexed == 2
    assert _store_rows(own) == _store_rows(whole) and len(_store_rows(own)) > 50
    still = DATA / "megamind_frame.png"
    [r1], [r2] = own.search(image=still), whole.search(image=still)
    key = [(r.video_id, r.present, r.first_seen_s, r.duration_s) for r in r1.results]
    assert key == [(r.video_id, r.present, r.first_seen_s, r.duration_s) for r in r2.results]
    assert any(r.present for r in r1.results)


def _in_fresh_process(code: str) -> dict:
    """Run ``code`` in a new Python process of this checkout; the JSON object it prints last."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a fresh Python process
def test_a_fresh_process_embeds_without_open_clip(cache):
    Encoder.load(TEST_MODEL, "none", "cpu", full=True)  # exports
    code = (
        "import json, sys\n"
        "from indexer.model.encoder import Encoder\n"
        "from indexer.media.decode import sample_frames\n"
        f"e = Encoder.load({TEST_MODEL!r}, 'none', 'cpu')\n"
        f"f = [x.rgb for x in sample_frames({str(DATA / 'tree.avi')!r}, 1.0, e.image_size)][:3]\n"
        "v = e.encode_images(f)\n"
        "print(json.dumps({'lite': e.model is None, 'n': len(v), 'open_clip': 'open_clip' in sys.modules,"
        " 'torchvision': 'torchvision' in sys.modules}))\n"
    )
    assert _in_fresh_process(code) == {"lite": True, "n": 3, "open_clip": False, "torchvision": False}


@pytest.mark.slow  # a fresh Python process
@pytest.mark.parametrize("freeze", [False, True])
def test_a_model_loads_without_garbage_collections(cache, freeze):
    """No full collection runs while a fresh process imports torch and loads the model (each
    walks every object torch made, for nothing: 3-4 of them before), at most the one the collector
    owes when it is on again after it. With the CLI's setting, what the load left alive is frozen
    out of later collections."""
    Encoder.load(TEST_MODEL, "none", "cpu", full=True)  # exports
    code = (
        "import gc, json\n"
        "from indexer import settings\n"
        "from indexer.model.encoder import Encoder\n"
        f"settings.FREEZE_AFTER_LOAD = {freeze}\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(info['generation']) if phase == 'start' else None)\n"
        f"e = Encoder.load({TEST_MODEL!r}, 'none', 'cpu')\n"
        "during = runs.count(2)\n"
        "n = len(runs)\n"
        "gc.collect()\n"
        "print(json.dumps({'during': during <= 1, 'enabled': gc.isenabled(), 'after': len(runs) - n,"
        " 'frozen': gc.get_freeze_count() > 10000, 'torch': 'torch' in __import__('sys').modules}))\n"
    )
    assert _in_fresh_process(code) == {"during": True, "enabled": True, "after": 1, "frozen": freeze, "torch": True}


def test_a_dropped_full_encoder_is_freed_without_the_cycle_collector(cache):
    """A whole model that is let go is freed at once (no reference cycle), so it is freed even in
    the CLI, where what a load leaves alive is frozen out of the collector's sight."""
    import gc
    import weakref

    enc = Encoder.load(TEST_MODEL, "none", "cpu", full=True)
    model, whole = weakref.ref(enc.model), weakref.ref(enc)
    was = gc.isenabled()
    gc.disable()
    try:
        del enc
        assert whole() is None and model() is None
    finally:
        if was:
            gc.enable()


def test_a_damaged_export_is_rebuilt_and_a_switched_off_one_unused(cache, monkeypatch):
    full = Encoder.load(TEST_MODEL, "none", "cpu", full=True)
    folder = image_tower.export_dir(TEST_MODEL, "none", full.precision)
    module = folder / "visual.pt"
    module.write_bytes(module.read_bytes()[:1000])  # cut short
    enc = Encoder.load(TEST_MODEL, "none", "cpu", precision=full.precision)
    assert enc.model is not None  # built by open_clip, which wrote the export again
    assert Encoder.load(TEST_MODEL, "none", "cpu", precision=full.precision).model is None
    monkeypatch.setenv("ARCHIVE_IMAGE_TOWER", "torch")
    assert Encoder.load(TEST_MODEL, "none", "cpu", precision=full.precision).model is not None
    monkeypatch.setenv("ARCHIVE_TEXT_TOWER", "torch")
    monkeypatch.delenv("ARCHIVE_IMAGE_TOWER")
    assert text_tower.NumpyTextTower.open(TEST_MODEL, "none") is None
    assert Encoder.load(TEST_MODEL, "none", "cpu", precision=full.precision).model is not None


@pytest.mark.slow  # an in-process index run decodes its first video in a child process
def test_decoders_started_for_another_input_size_are_restarted(cache, tmp_path, clips):
    full = Encoder.load(TEST_MODEL, "none", "cpu", full=True)
    # a verified export of the same model and weights that says frames are 160 px: found first
    odd = image_tower.export_dir(TEST_MODEL, "none", full.precision).parent / (
        f"{TEST_MODEL}-{text_tower.cache_key(TEST_MODEL, 'none')}-0odd"
    )
    odd.mkdir(parents=True)
    (odd / "meta.json").write_text(
        json.dumps({"verified": True, "image_size": 160, "mean": [0.5] * 3, "std": [0.5] * 3})
    )
    assert image_tower.prep_for(TEST_MODEL, "none").image_size == 160
    own = Archive(tmp_path / "own")
    assert own.index([clips]).indexed == 2
    whole = Archive(tmp_path / "whole", encoder=full)
    whole.index([clips])
    assert _store_rows(own) == _store_rows(whole)
    still = DATA / "megamind_frame.png"
    [r1], [r2] = own.search(image=still), whole.search(image=still)
    assert [(r.video_id, r.present, r.first_seen_s, round(r.score, 3)) for r in r1.results] == [
        (r.video_id, r.present, r.first_seen_s, round(r.score, 3)) for r in r2.results
    ]


def test_numpy_text_tower_gives_open_clips_vectors(cache, monkeypatch):
    import torch

    full = Encoder.load(TEST_MODEL, "none", "cpu", precision="fp32", full=True)
    tower = text_tower.NumpyTextTower.open(TEST_MODEL, "none")
    assert tower is not None
    assert tower.tokenizer._ranks is None  # built when a text is first tokenized, not at load
    # shared prefixes (templates), a text cut to the context, punctuation and unicode
    texts = [
        "a beach",
        "a photo of a beach.",
        "a photo of a dog.",
        "a still from a video showing a beach.",
        "stop! now",
        "Ünïcode &amp; text 123",
        "a very " + "long " * 100 + "text",
        "a",
    ]
    with torch.inference_mode():
        want = torch.nn.functional.normalize(full.model.encode_text(full.tokenizer(texts)).float(), dim=-1).numpy()
    for rows in (1024, 12):  # one pass; then passes of a few texts each
        monkeypatch.setattr(text_tower, "_ROWS", rows)
        got = tower.encode(texts)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert float(np.min(np.sum(want * got, axis=1))) >= 0.99999
