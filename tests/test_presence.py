import numpy as np
import pytest

from search.presence import (
    ImageCalibration, background_lse, calibrate_images, same_shot_cosine, shot_level, text_probability,
)


def test_text_probability_is_a_softmax_against_backgrounds():
    q = np.array([0.30, 0.20, 0.25])
    bg = np.array([[0.20, 0.21], [0.30, 0.29], [0.25, 0.10]])
    p = text_probability(q, background_lse(bg))
    e = np.exp(100 * np.column_stack([q, bg]))
    assert p == pytest.approx(e[:, 0] / e.sum(axis=1))
    assert p[0] > 0.99 and p[1] < 0.01 and p[2] == pytest.approx(0.5, abs=1e-6)
    # stable for large differences
    assert np.all(np.isfinite(text_probability(np.array([1.0, -1.0]), background_lse(np.array([[-1.0], [1.0]])))))


def test_shot_level_spreads_the_best_sample_over_short_shots():
    strength = np.array([0.1, 0.7, 0.2, 0.9, 0.1, 0.3, 0.8])
    shot = np.array([1, 1, 1, 2, 3, 3, 3])
    length = np.array([1.5, 1.5, 1.5, 0.4, 9.0, 9.0, 9.0])
    blank = np.array([False, False, False, True, False, False, False])
    out = shot_level(strength, shot, length, blank)
    assert out[:3].tolist() == [0.7, 0.7, 0.7]  # short shot: decided whole
    assert out[3] == -np.inf  # blank shot never matches
    assert out[4:].tolist() == [0.1, 0.3, 0.8]  # long shot: refined per sample


def test_same_shot_level_uses_consecutive_pairs_within_content_shots():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 16))
    vecs = []
    for k in range(3):
        for _ in range(40):
            v = base[k] + 0.05 * rng.normal(size=16)
            vecs.append(v / np.linalg.norm(v))
    vecs = np.array(vecs, np.float32)
    shot = np.repeat([0, 1, 2], 40)
    m = same_shot_cosine(vecs, np.arange(120), shot, np.zeros(120, bool))
    within = [float(vecs[i] @ vecs[i + 1]) for i in range(119) if shot[i] == shot[i + 1]]
    assert m == pytest.approx(np.percentile(within, 10))
    assert same_shot_cosine(vecs[:8], np.arange(8), shot[:8], np.zeros(8, bool)) is None
    cal = calibrate_images(vecs, np.arange(120), shot, np.zeros(120, bool))
    assert cal.same_shot == pytest.approx(m)
    across = [float(vecs[i] @ vecs[j]) for i in range(120) for j in range(120) if shot[i] != shot[j]]
    assert np.percentile(across, 99) < cal.chance < max(across) + 1e-6
    assert calibrate_images(vecs[:8], np.arange(8), shot[:8], np.zeros(8, bool)).chance == 0.80


def test_image_threshold_is_the_higher_of_same_footage_and_chance():
    assert ImageCalibration(same_shot=0.999, chance=0.9).threshold() == pytest.approx(0.996)
    assert ImageCalibration(same_shot=0.95, chance=0.9).threshold() == pytest.approx(0.9)
    assert ImageCalibration(None, 0.85).threshold() == pytest.approx(0.85)
