"""The `ocr` extra installs cleanly into a fresh virtualenv beside the headless OpenCV: nothing pulls
in the GUI build (which would replace the headless one and needs libGL), and the models inside the
wheel read a line of text there, offline.

The fresh environment gets exactly this package's headless OpenCV requirement and the `ocr`
extra's requirements, both read from pyproject.toml, from the package index (as `pip install
'.[ocr]'` would; the rest of this package, torch included, is not needed to show it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (3.10 has no TOML reader in its library)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

READ = r"""
import cv2, numpy as np
from rapidocr import RapidOCR
img = np.full((120, 560, 3), 40, np.uint8)
cv2.putText(img, "NOW 0% SUGAR", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 3)
out = RapidOCR(params={"Global.log_level": "error"})(img)
print("|".join(out.txts or ()))
"""


def _run(cmd: list[str], env: dict[str, str], timeout: int = 900) -> str:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def test_the_ocr_extra_installs_beside_the_headless_opencv_and_reads(tmp_path: Path) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    headless = [d for d in project["dependencies"] if d.startswith("opencv-python-headless")]
    extra = project["optional-dependencies"]["ocr"]
    assert headless and extra
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env)
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", *headless], env)
    _run([py, "-m", "pip", "install", "-q", *extra], env)
    names = {d["name"].lower() for d in json.loads(_run([py, "-m", "pip", "list", "--format", "json"], env))}
    assert "opencv-python-headless" in names
    assert not names & {"opencv-python", "opencv-contrib-python"}, names  # no GUI build pulled in
    read = _run([py, "-c", READ], {**env, "HOME": str(tmp_path)})
    assert "SUGAR" in read.upper(), read
