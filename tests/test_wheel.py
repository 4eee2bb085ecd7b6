"""The wheel stands alone: built from this checkout, installed in a fresh virtual environment and run
from a folder outside the checkout, `archive index` and `archive search` work on a real clip, the
search page's files are inside it, and nothing reads tests/ or the checkout.

The fresh environment gets the wheel only (pip --no-deps); its third-party dependencies (torch,
open_clip, FAISS, ...) come from this test run's own environment through a ``.pth`` line, so the
test needs no network and no second 5 GB install. Our own packages cannot leak in that way: the
running environment has them as an editable install, whose finder is set up by a ``.pth`` file of
its own site folder, and ``.pth`` files of a folder that a ``.pth`` line adds are not read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
TEST_MODEL = "ViT-S-32-alt"
OURS = ("archive", "indexer", "search")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


def test_the_wheel_indexes_and_searches_on_its_own(tmp_path: Path) -> None:
    # 1. a wheel from a copy of the sources (a build writes build/ and *.egg-info where it runs)
    src = tmp_path / "src"
    src.mkdir()
    for name in (*OURS, "pyproject.toml", "README.md", "LICENSE"):
        item = REPO / name
        if item.is_dir():
            shutil.copytree(item, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, src / name)
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        tmp_path,
        base_env,
    )
    [wheel] = dist.glob("clip_video_archive-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "archive/server/web/index.html" in names and "archive/server/web/app.js" in names
    assert not [n for n in names if n.startswith("tests/") or "conftest" in n]

    # 2. a fresh environment with the wheel alone; dependencies from this one
    venv = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, base_env)
    py = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], tmp_path, base_env
    )
    site = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, base_env
        ).stdout.strip()
    )
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    # 3. run it from an empty folder, with its own store and caches
    work = tmp_path / "work"
    work.mkdir()
    env = dict(
        base_env,
        ARCHIVE_MODEL=TEST_MODEL,
        ARCHIVE_PRETRAINED="none",
        HF_HUB_OFFLINE="1",
        ARCHIVE_STORE=str(work / "store"),
        ARCHIVE_CACHE_DIR=str(tmp_path / "cache"),
    )
    where = json.loads(
        _run(
            [
                str(py),
                "-c",
                "import json, archive, indexer, search; "
                "print(json.dumps([m.__file__ for m in (archive, indexer, search)]))",
            ],
            work,
            env,
        ).stdout
    )
    assert all(Path(f).is_relative_to(site) for f in where), where
    clip = work / "Megamind.avi"
    shutil.copy2(DATA / "Megamind.avi", clip)
    archive = str(venv / "bin" / "archive")
    report = json.loads(_run([archive, "index", str(clip), "--json", "--quiet"], work, env).stdout)
    assert report["indexed"] == 1 and report["failed"] == 0 and report["frames"] > 10
    [answer] = [
        json.loads(line)
        for line in _run(
            [archive, "search", "--image", str(DATA / "megamind_frame.png"), "--json"], work, env
        ).stdout.splitlines()
    ]
    [hit] = answer["results"]
    assert hit["video"] == str(clip) and hit["present"] and hit["segments"]
    # what the installed package cannot have (footage to cut ads from) is asked for, in one line
    bare = subprocess.run(
        [archive, "bench", "--make-ads", str(work / "ads")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bare.returncode == 2 and "--ads-from" in bare.stderr and len(bare.stderr.strip().splitlines()) == 1
