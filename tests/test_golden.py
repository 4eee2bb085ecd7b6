"""Golden outputs of the random-weight test model: drift in weights, preprocessing or precision fails here.

tests/data/golden_vit_s_32_alt.npz holds what tests/gen/make_golden.py computed with
``ViT-S-32-alt`` / ``none`` (seeded random weights) in fp32 on CPU: the embedding of
tests/data/megamind_frame.png, of one text, and a summary of the model input for that frame
scaled like a decoded video frame. These tests recompute them with the installed libraries.
"""

from __future__ import annotations

import numpy as np
import pytest
from gen import make_golden as mg

COS_FP32, ABS_FP32 = 0.99999, 1e-4
PRE_TOL = 1e-5
COS_BF16 = 0.999


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(mg.GOLDEN, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def fresh(fp32) -> dict[str, np.ndarray]:
    return mg.compute(fp32)


def provenance(golden: dict[str, np.ndarray]) -> str:
    """Which versions made the golden file, which are installed, and how (not) to regenerate it."""
    made = ", ".join(f"{k[len('version_') :]} {golden[k]}" for k in sorted(golden) if k.startswith("version_"))
    now = ", ".join(f"{k} {v}" for k, v in sorted(mg.library_versions().items()))
    return (
        f"\n  golden file {mg.GOLDEN.name} was made with: {made}"
        f"\n  installed now:                            {now}"
        "\n  If this follows a deliberate upgrade (or a deliberate change in preprocessing), check the"
        "\n  new outputs, then regenerate with `python tests/gen/make_golden.py`; otherwise this is drift: fix it."
    )


def compare_vectors(
    name: str, got: np.ndarray, want: np.ndarray, min_cos: float, max_abs: float | None, golden: dict[str, np.ndarray]
) -> None:
    assert got.shape == want.shape and got.dtype == np.float32, (
        f"{name}: shape/dtype {got.shape} {got.dtype}, golden {want.shape} {want.dtype}{provenance(golden)}"
    )
    cos = float(np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want)))
    diff = float(np.max(np.abs(got - want)))
    ok = cos >= min_cos and (max_abs is None or diff <= max_abs)
    assert ok, (
        f"{name}: cosine {cos:.7f} to golden (need >= {min_cos}), max abs diff {diff:.2e}"
        + (f" (need <= {max_abs:.0e})" if max_abs is not None else "")
        + provenance(golden)
    )


def test_golden_file_describes_this_model(golden):
    """The golden file was made by the model and inputs this test recomputes with."""
    from indexer.model.encoder import RANDOM_SEED

    assert str(golden["model"]) == mg.MODEL and str(golden["pretrained"]) == mg.PRETRAINED
    assert int(golden["seed"]) == RANDOM_SEED, f"RANDOM_SEED changed: {RANDOM_SEED}, golden {int(golden['seed'])}"
    assert str(golden["text"]) == mg.TEXT and str(golden["precision"]) == "fp32"
    assert np.array_equal(golden["pixels"], mg.PIXELS)


def test_image_vector_matches_golden(golden, fresh):
    """fp32 embedding of megamind_frame.png: cosine >= 0.99999 and max abs diff <= 1e-4 to golden."""
    compare_vectors("image vector (fp32)", fresh["image_vec"], golden["image_vec"], COS_FP32, ABS_FP32, golden)


def test_text_vector_matches_golden(golden, fresh):
    """fp32 embedding of the golden text: cosine >= 0.99999 and max abs diff <= 1e-4 to golden."""
    compare_vectors("text vector (fp32)", fresh["text_vec"], golden["text_vec"], COS_FP32, ABS_FP32, golden)


def test_preprocessing_matches_golden(golden, fresh):
    """The scaled frame's shape, and the model input's shape, per-channel mean/std and fixed pixels, to 1e-5."""
    for key in ("scaled_shape", "pre_shape"):
        assert np.array_equal(fresh[key], golden[key]), (
            f"{key}: {fresh[key].tolist()}, golden {golden[key].tolist()}{provenance(golden)}"
        )
    for key in ("pre_mean", "pre_std", "pre_pixels"):
        diff = float(np.max(np.abs(fresh[key] - golden[key])))
        assert diff <= PRE_TOL, (
            f"{key}: {fresh[key].tolist()}, golden {golden[key].tolist()} "
            f"(max abs diff {diff:.2e} > {PRE_TOL:.0e}){provenance(golden)}"
        )


def test_bf16_vectors_are_close_to_golden_fp32(golden):
    """The bf16 model (emulated where the CPU lacks bf16) gives image and text vectors with cosine
    >= 0.999 to the golden fp32 ones."""
    enc = mg.load_encoder("bf16")
    assert enc.precision == "bf16"
    image = np.asarray(enc.encode_image_file(mg.FRAME), np.float32)
    text = np.asarray(enc.encode_texts([mg.TEXT])[0], np.float32)
    compare_vectors("image vector (bf16)", image, golden["image_vec"], COS_BF16, None, golden)
    compare_vectors("text vector (bf16)", text, golden["text_vec"], COS_BF16, None, golden)
