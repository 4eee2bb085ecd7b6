"""Shared fixtures: a small open_clip model with seeded random weights, generated videos, stores."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Exported text towers (indexer/model/text_tower.py) go to a cache of this test session, not the user's.
if "ARCHIVE_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["ARCHIVE_CACHE_DIR"] = tempfile.mkdtemp(prefix="archive-test-cache-")

from videos import Shot, Truth, make_video, seconds_to_frames

from archive.bench import transitions

TEST_MODEL = "ViT-S-32-alt"  # 43 M params, 256-d, builds with random weights and no network
DATA = Path(__file__).parent / "data"
# For random weights, frames of one shot score >= 0.999 against each other and <= ~0.97 against
# other generated shots: 0.98 splits them. (Pretrained CLIP uses the documented defaults.)
IMAGE_THRESHOLD = 0.98
transitions.use_sources(DATA / "Megamind.avi", DATA / "tree.avi")  # the footage generated test videos are cut from


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
def shots_video(tmp_path_factory: pytest.TempPathFactory) -> Truth:
    """25 fps H.264: look 1 for 2.0 s, look 2 for 1.5 s, look 3 for 2.5 s, look 2 again for 1.0 s."""
    d = tmp_path_factory.mktemp("shots")
    r = "25"
    return make_video(
        d / "shots.mp4",
        [Shot(1, seconds_to_frames(2.0, r)), Shot(2, seconds_to_frames(1.5, r)),
         Shot(3, seconds_to_frames(2.5, r)), Shot(2, seconds_to_frames(1.0, r))],
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


def env_for_cli(tmp_path: Path, store: Path | None = None) -> dict[str, str]:
    """Environment for a CLI subprocess: the test model, and the store ``store`` or ``tmp_path/store``."""
    env = dict(os.environ)
    env.update(ARCHIVE_MODEL=TEST_MODEL, ARCHIVE_PRETRAINED="none", ARCHIVE_STORE=str(store or tmp_path / "store"),
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env
