"""Fixtures only: a small open_clip model with seeded random weights, generated videos, stores.

What tests import by name (the test model, the data folder, the CLI runner, record builders) is in
``helpers.py``; the video generators are in ``gen/``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Exported towers (indexer/model/{image,text}_tower.py) go to a cache of this test session, not the
# user's; removed when the session ends (about 170 MB).
_OWN_CACHE: str | None = None
if "ARCHIVE_CACHE_DIR" not in os.environ:
    import tempfile

    _OWN_CACHE = os.environ["ARCHIVE_CACHE_DIR"] = tempfile.mkdtemp(prefix="archive-test-cache-")

from gen.videos import Shot, Truth, make_video, seconds_to_frames
from helpers import DATA, TEST_MODEL

from archive.bench import transitions


@pytest.fixture(scope="session", autouse=True)
def _session_cache() -> Iterator[None]:
    """Removes the session's model export cache (made above) at the end of the session."""
    yield
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _footage() -> None:
    """The footage that generated test videos are cut from (archive.bench.transitions)."""
    transitions.use_sources(DATA / "Megamind.avi", DATA / "tree.avi")


@pytest.fixture(autouse=True)
def _test_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARCHIVE_MODEL", TEST_MODEL)
    monkeypatch.setenv("ARCHIVE_PRETRAINED", "none")
    monkeypatch.setenv("ARCHIVE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def encoder():
    from indexer.model.encoder import Encoder

    return Encoder.load(TEST_MODEL, "none", "cpu")


@pytest.fixture(scope="session")
def fp32():
    """The whole open_clip model in fp32 (the ``encoder`` fixture follows the hardware's precision,
    and may load the exported towers instead of the model)."""
    from indexer.model.encoder import Encoder

    enc = Encoder.load(TEST_MODEL, "none", "cpu", precision="fp32", full=True)
    assert enc.precision == "fp32"
    return enc


@pytest.fixture(scope="session")
def shots_video(tmp_path_factory: pytest.TempPathFactory) -> Truth:
    """25 fps H.264: look 1 for 2.0 s, look 2 for 1.5 s, look 3 for 2.5 s, look 2 again for 1.0 s."""
    d = tmp_path_factory.mktemp("shots")
    r = "25"
    return make_video(
        d / "shots.mp4",
        [
            Shot(1, seconds_to_frames(2.0, r)),
            Shot(2, seconds_to_frames(1.5, r)),
            Shot(3, seconds_to_frames(2.5, r)),
            Shot(2, seconds_to_frames(1.0, r)),
        ],
        r,
    )


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    """A folder with the real sample clips (copied, so tests may move or change them)."""
    d = tmp_path / "clips"
    d.mkdir()
    for name in ("Megamind.avi", "tree.avi"):
        shutil.copy(DATA / name, d / name)
    return d
