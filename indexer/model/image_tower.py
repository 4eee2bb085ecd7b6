"""The image tower as a saved TorchScript module, so an index run or an image query does not import
open_clip (and torchvision) or build the whole model.

Adding one clip to an archive is dominated by fixed costs: importing torchvision and open_clip
(about 2 s here), building the model (random init, then the checkpoint: 2-15 s) and the text
tower nobody uses at index time. Instead, the first time the full model is loaded on the CPU (by
:meth:`Encoder.load`), its image tower is traced in the precision it runs in and saved, with the
numbers of its preprocessing, to a cache folder (``ARCHIVE_CACHE_DIR/image/<key>/``; about 180 MB
for ViT-B-32 in bf16, once per model, weights, precision and torch version). An export is kept
only after it embedded probe images exactly as the model's own ``encode_image`` does (a different
batch size than it was traced with, after saving and loading it back). From then on every process
that needs the image tower on the CPU loads that module with torch alone; texts go through the
numpy text tower (:mod:`indexer.model.text_tower`), which is exported at the same time.

``ARCHIVE_IMAGE_TOWER=torch`` turns this off (the model is always built by open_clip). Models
whose ``encode_image`` is not their image tower's output (CoCa), or whose preprocessing is not the
plain resize, crop and normalise, are not exported.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from indexer import settings
from indexer.media.imageprep import ImagePrep

from . import text_tower

FORMAT = 1
MIN_COSINE = 0.9999  # bf16 kernels may pick another order of sums for another batch size


def cache_key(model: str, pretrained: str, precision: str) -> str:
    import torch  # lazy: heavy import (torch)

    return f"{text_tower.cache_key(model, pretrained)}-{precision}-f{FORMAT}-torch{torch.__version__.split('+')[0]}"


def export_dir(model: str, pretrained: str, precision: str) -> Path:
    return settings.cache_dir() / "image" / f"{model}-{cache_key(model, pretrained, precision)}"


class ImageTower:
    """A loaded export: ``module`` maps a ``(n, 3, size, size)`` tensor (in ``dtype``) to features."""

    def __init__(self, folder: Path) -> None:
        import torch  # lazy: heavy import (torch)

        self.meta = json.loads((folder / "meta.json").read_text())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            self.module = torch.jit.load(str(folder / "visual.pt"), map_location="cpu").eval()
        self.image_size = int(self.meta["image_size"])
        self.dim = int(self.meta["dim"])
        self.mean = torch.tensor(self.meta["mean"], dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(self.meta["std"], dtype=torch.float32).view(3, 1, 1)

    @classmethod
    def open(cls, model: str, pretrained: str, precision: str) -> "ImageTower | None":
        """The verified export for this model, weights and precision, or None (also when
        ``ARCHIVE_IMAGE_TOWER=torch``, or when it cannot be read)."""
        if settings.image_tower() != "auto":
            return None
        folder = export_dir(model, pretrained, precision)
        try:
            if not (folder / "meta.json").is_file():
                return None
            tower = cls(folder)
        except Exception:  # unreadable, another torch's format: the full model is built
            return None
        return tower if tower.meta.get("verified") else None

    def __call__(self, x: Any) -> Any:
        return self.module(x)


def prep_for(model: str, pretrained: str) -> Any:
    """The input preprocessing of a model that has a verified export here (any precision), read
    from its meta.json without torch: an :class:`~indexer.model.encoder.ImagePrep`, or None."""
    if settings.image_tower() != "auto":
        return None

    base = settings.cache_dir() / "image"
    prefix = f"{model}-{text_tower.cache_key(model, pretrained)}-"
    try:
        folders = sorted(base.glob(glob.escape(prefix) + "*"))
    except OSError:
        return None
    for folder in folders:
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("verified"):
                return ImagePrep(int(meta["image_size"]), meta["mean"], meta["std"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _probe(torch: Any, n: int, size: int, dtype: Any) -> Any:
    g = torch.Generator().manual_seed(n)
    return torch.randn((n, 3, size, size), generator=g).to(dtype)


def export(model: Any, name: str, pretrained: str, precision: str, image_size: int, mean_std: Any) -> bool:
    """Trace, save and verify the image tower of a loaded open_clip model (on the CPU, already in
    ``precision``); True when a verified export is now in the cache."""
    import torch  # lazy: heavy import (torch)

    if settings.image_tower() != "auto" or mean_std is None:
        return False
    from open_clip.model import CLIP, CustomTextCLIP  # lazy: heavy import (torch)

    if type(model).encode_image not in (CLIP.encode_image, CustomTextCLIP.encode_image):
        return False  # encode_image is not just the tower's output
    dest = export_dir(name, pretrained, precision)
    if ImageTower.open(name, pretrained, precision) is not None:
        return True  # (a damaged one is written again)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    except OSError:
        return False  # a read-only cache: the full model is built every time
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation notices
            traced = torch.jit.trace(model.visual, _probe(torch, 2, image_size, dtype), check_trace=False)
            torch.jit.save(traced, str(tmp / "visual.pt"))
        mean, std = mean_std
        meta = {
            "format": FORMAT,
            "model": name,
            "pretrained": pretrained,
            "precision": precision,
            "image_size": image_size,
            "mean": [float(v) for v in mean.flatten()],
            "std": [float(v) for v in std.flatten()],
            "dim": 0,
            "torch": torch.__version__,
            "verified": False,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        tower = ImageTower(tmp)
        probe = _probe(torch, 3, image_size, dtype)
        with torch.inference_mode():
            want = torch.nn.functional.normalize(model.encode_image(probe).float(), dim=-1)
            got = torch.nn.functional.normalize(tower(probe).float(), dim=-1)
        if want.shape != got.shape or not bool(((want * got).sum(-1) >= MIN_COSINE).all()):
            return False
        meta.update(dim=int(got.shape[1]), verified=True)
        (tmp / "meta.json").write_text(json.dumps(meta))
        if dest.exists():
            shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
        return True
    except Exception:  # a model the tracer cannot follow, a full disk: not exported
        return False
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
