"""Where the model runs and in what precision: the device (CPU, CUDA, MPS) and bf16 or fp32.

Shared by the CLIP encoder (:mod:`indexer.model.encoder`) and TransNetV2 (:mod:`indexer.media.transnet`).
torch is imported only inside the functions that ask it (it is a heavy import).
"""

from __future__ import annotations

from pathlib import Path

from indexer import settings
from indexer.errors import ModelLoadError


def pick_device(device: str = settings.DEFAULT_DEVICE) -> str:
    """``auto`` -> ``cuda`` if available, else ``mps``, else ``cpu``; an explicit choice is checked."""
    import torch  # lazy: heavy import (torch)

    device = (device or settings.DEFAULT_DEVICE).lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda asked for, but torch sees no CUDA GPU here. Use --device cpu or auto.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("--device mps asked for, but this torch build has no MPS. Use --device cpu or auto.")
    if device not in {"cpu", "mps"} and not device.startswith("cuda"):
        raise ModelLoadError(f"unknown device '{device}'. Use auto, cpu, cuda or mps.")
    return device


def native_bf16(device: str) -> bool:
    """Does this device do bf16 arithmetic natively (so bf16 is faster, not emulated)?"""
    if device.startswith("cuda"):
        import torch  # lazy: heavy import (torch)

        return bool(torch.cuda.is_bf16_supported())
    if device != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(precision: str = settings.DEFAULT_PRECISION, device: str = "cpu") -> str:
    """``auto`` -> ``bf16`` where native (see :func:`native_bf16`), else ``fp32``; env ARCHIVE_PRECISION."""
    p = settings.precision(precision)
    if p == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if p not in {"fp32", "bf16"}:
        raise ModelLoadError(f"unknown precision '{precision}': use auto, fp32 or bf16.")
    return p
