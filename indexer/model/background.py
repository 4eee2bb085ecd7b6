"""Per-frame terms computed once, at index time, and stored with the vectors: today the
background prompts' term of the text rule (:mod:`search.presence`).

A text query's probability against the generic background prompts needs, per frame,
``log(sum_b exp(100 * s_b))`` over the background prompts' cosines ``s_b``. It depends only on
the frame and the model, so it is computed when the frame is embedded, stored beside its vector
segment, and memory-mapped by queries instead of being recomputed by every process.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the encoder module imports this one
    from .encoder import Encoder

BACKGROUND_PROMPTS: tuple[str, ...] = (
    "a photo.",
    "a video frame.",
    "a picture of something.",
    "an image.",
    "a still from a video.",
    "a blurry photo.",
    "a close-up photo.",
    "a photo of a scene.",
    "a photo of an object.",
    "a screenshot.",
)
LOGIT_SCALE = 100.0


def background_lse(background_scores: np.ndarray, scale: float = LOGIT_SCALE) -> np.ndarray:
    """Per frame, ``log(sum_b exp(scale * s_b))`` over the background prompts' scores
    ``(n_frames, n_prompts)``: all the text rule needs of them (float64)."""
    scores = np.asarray(background_scores)
    out = np.full(len(scores), -np.inf)
    if scores.size == 0:
        return out
    for a in range(0, len(scores), 65536):  # in chunks: a few MB of temporaries at any size
        z = scale * np.asarray(scores[a : a + 65536], np.float64)
        m = z.max(axis=1)
        out[a : a + 65536] = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
    return out


def background_key(model: str, pretrained: str, precision: str, prompts: tuple[str, ...] = BACKGROUND_PROMPTS) -> str:
    """What a stored background term was computed with (model, weights, text precision, prompts):
    a stored term is used only by queries that would compute the same one."""
    h = hashlib.blake2b(digest_size=8)
    for part in (model, pretrained, precision, *prompts):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def background_vectors(encoder: Encoder) -> tuple[Any, str]:
    """The background prompts' vectors the stored per-frame term is computed with (fp32, as every
    process embeds texts), and the term's key."""
    spec = encoder.spec
    return (
        encoder.encode_fixed(list(BACKGROUND_PROMPTS)),
        background_key(spec.name, spec.pretrained, encoder.text_precision),
    )
