"""Write tests/data/golden_vit_s_32_alt.npz: reference outputs of the random-weight test model.

Like open_clip's own golden outputs of random-weight models, these catch silent drift in the
embedding path: the seeded weights, open_clip's model code, the tokenizer, the frame scaler
(swscale) and the normalisation, and fp32 numerics. tests/test_golden.py recomputes and compares.

Run it from the repository root, and only after a deliberate change (a torch / open_clip / PyAV
upgrade, or a change in preprocessing you mean to make), after checking that the new outputs are
right:

    .venv/bin/python tests/gen/make_golden.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data"
GOLDEN = DATA / "golden_vit_s_32_alt.npz"
FRAME = DATA / "megamind_frame.png"
MODEL, PRETRAINED = "ViT-S-32-alt", "none"
TEXT = "a cartoon character on a street"
# (channel, row, column) of the preprocessed input tensor whose values are recorded
PIXELS = np.array([[0, 0, 0], [1, 111, 111], [2, 223, 223], [0, 57, 170], [1, 200, 31], [2, 5, 218]], np.int64)


def library_versions() -> dict[str, str]:
    """The versions of the libraries whose changes the golden outputs would show."""
    import av
    import open_clip
    import torch

    return {
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "av": av.__version__,
        "numpy": np.__version__,
    }


def load_encoder(precision: str = "fp32"):
    from indexer.model.encoder import Encoder

    return Encoder.load(MODEL, PRETRAINED, "cpu", precision=precision)


def frame_rgb() -> np.ndarray:
    """The test frame as an HxWx3 uint8 RGB array, as decoded from the PNG."""
    from PIL import Image

    with Image.open(FRAME) as im:
        return np.asarray(im.convert("RGB"))


def preprocess_summary(enc) -> dict[str, np.ndarray]:
    """The model input for the frame scaled like decoded video frames: per-channel mean and std,
    and the values at :data:`PIXELS`."""
    from indexer.media.imageprep import scale_like_frames

    scaled = scale_like_frames(frame_rgb(), enc.image_size)
    x = enc.preprocess_array(scaled).float()
    flat = x.reshape(x.shape[0], -1)
    return {
        "pre_shape": np.array(x.shape, np.int64),
        "pre_mean": flat.mean(dim=1).numpy().astype(np.float32),
        "pre_std": flat.std(dim=1).numpy().astype(np.float32),
        "pre_pixels": x[tuple(PIXELS.T)].numpy().astype(np.float32),
        "scaled_shape": np.array(scaled.shape, np.int64),
    }


def compute(enc) -> dict[str, np.ndarray]:
    """Everything the golden file holds, computed with ``enc``."""
    out = {
        "image_vec": np.asarray(enc.encode_image_file(FRAME), np.float32),
        "text_vec": np.asarray(enc.encode_texts([TEXT])[0], np.float32),
    }
    out.update(preprocess_summary(enc))
    return out


def main() -> None:
    from indexer.model.encoder import RANDOM_SEED

    enc = load_encoder("fp32")
    arrays = compute(enc)
    meta = {f"version_{k}": np.array(v) for k, v in library_versions().items()}
    np.savez_compressed(
        GOLDEN,
        **arrays,
        **meta,
        pixels=PIXELS,
        model=np.array(MODEL),
        pretrained=np.array(PRETRAINED),
        seed=np.array(RANDOM_SEED),
        text=np.array(TEXT),
        precision=np.array(enc.precision),
    )
    print(
        f"wrote {GOLDEN.relative_to(ROOT)} ({GOLDEN.stat().st_size} bytes) with "
        + ", ".join(f"{k} {v}" for k, v in library_versions().items())
    )


if __name__ == "__main__":
    main()
