"""NIQE against the LIVE MATLAB release's scores, and its behaviour on degraded, small and 8-bit images."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agents.niqe import block_features, imresize_half, mscn, niqe

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTO = "bsds500/val/101085.jpg"


def read_rgb(name: str) -> np.ndarray:
    """A photo of ../shared/data as float RGB in [0, 1], or skip the test saying why."""
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"test image {path} is absent (only the project's own machines have ../shared/data)")
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) / 255.0


# Scores of LIVE's MATLAB code (computequality.m with modelparameters.mat, 96x96 blocks).
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("real-samples/easy_0016.png", 2.7077),
        ("real-samples/difficult_2015_02057.jpg", 4.3866),
        ("bsds500/val/101085.jpg", 2.8265),
    ],
)
def test_matches_matlab_reference(name: str, expected: float) -> None:
    assert niqe(read_rgb(name)) == pytest.approx(expected, abs=1e-3)


def test_blur_and_noise_score_worse() -> None:
    photo = read_rgb(PHOTO)
    score = niqe(photo)
    blurred = cv2.GaussianBlur(photo, (0, 0), 3)
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 0.1, photo.shape), 0, 1)
    assert niqe(blurred) > score + 1
    assert niqe(noisy) > score + 1


def test_uint8_float_and_grey_inputs_agree() -> None:
    photo = read_rgb(PHOTO)
    as_uint8 = np.round(photo * 255).astype(np.uint8)
    score = niqe(photo)
    assert niqe(as_uint8) == score
    assert niqe(photo.astype(np.float32)) == pytest.approx(score, abs=1e-9)
    grey = np.floor(as_uint8.astype(np.float64) @ [0.298936021293775, 0.587043074451121, 0.114020904255103] + 0.5)
    assert niqe(grey.astype(np.uint8)) == score
    assert niqe(grey / 255) == score


def test_too_small_or_flat_images_raise() -> None:
    rng = np.random.default_rng(1)
    for shape in [(95, 500, 3), (500, 95, 3), (96, 96, 3), (191, 191, 3)]:
        with pytest.raises(ValueError, match="two whole 96x96 blocks"):
            niqe(rng.random(shape))
    assert np.isfinite(niqe(rng.random((96, 192, 3))))
    with pytest.raises(ValueError, match="flat image"):
        niqe(np.zeros((200, 200, 3)))


def test_imresize_half_geometry() -> None:
    # MATLAB's half-size pixel i (0-based) is centred on input coordinate 2i + 0.5, and its bicubic kernel
    # reproduces a linear ramp away from the borders; sizes round up and a constant stays constant.
    ramp = np.tile(np.arange(40, dtype=np.float64), (40, 1))
    half = imresize_half(ramp)
    np.testing.assert_allclose(half[:, 2:-2], np.tile(2 * np.arange(2, 18) + 0.5, (20, 1)), atol=1e-12)
    odd = imresize_half(np.full((7, 9), 5.0))
    assert odd.shape == (4, 5)
    np.testing.assert_allclose(odd, 5.0)
    # The antialiasing kernel spans 8 input pixels: a single bright pixel spreads over 4 output pixels per axis.
    dot = np.zeros((40, 40))
    dot[20, 20] = 1
    assert np.count_nonzero(np.abs(imresize_half(dot)[10]) > 1e-12) == 4


def test_mscn_is_imfilter_replicate() -> None:
    # MATLAB: window = fspecial('gaussian', 7, 7/6) normalised, imfilter(im, window, 'replicate'), done here
    # directly in 2-D on an edge-padded image.
    image = np.random.default_rng(2).random((30, 40)) * 255
    x, y = np.meshgrid(np.arange(-3, 4), np.arange(-3, 4))
    window = np.exp(-(x**2 + y**2) / (2 * (7 / 6) ** 2))
    window /= window.sum()

    def imfilter(a: np.ndarray) -> np.ndarray:
        padded = np.pad(a, 3, mode="edge")
        return sum(window[i, j] * padded[i : i + 30, j : j + 40] for i in range(7) for j in range(7))

    mu = imfilter(image)
    sigma = np.sqrt(np.abs(imfilter(image * image) - mu * mu))
    np.testing.assert_allclose(mscn(image), (image - mu) / (sigma + 1), atol=1e-9)


def test_black_blocks_follow_matlab() -> None:
    # A black block has all-zero MSCN coefficients: MATLAB's min over NaNs picks the first shape, 0.2, and the
    # scales are NaN; nanmean keeps such blocks' shapes, nancov leaves them out, so a part-black photo scores.
    features = block_features(np.zeros((96, 96)), 96)[0]
    np.testing.assert_array_equal(features[[0, 2, 6, 10, 14]], 0.2)
    assert np.isnan(features[[1, 3, 4, 5]]).all()
    photo = read_rgb(PHOTO)
    photo[:, :200] = 0
    assert np.isfinite(niqe(photo))
