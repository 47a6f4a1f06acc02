"""The project's denoiser: a guided filter whose strength follows the noise that enhancement amplified.

Brightening a dark photo multiplies its sensor noise by each pixel's gain. That noise has a simple form
before enhancement, Poisson-Gaussian: ``variance = a * signal + b``. :func:`estimate_noise` measures ``a``
and ``b`` on the dark input (in its flattest places, per brightness); :func:`guided_denoise` carries that
variance through each pixel's gain (output over input) and smooths each channel of the output with a guided
filter (He, Sun & Tang, TPAMI 2013) guided by the output's luma, with the regulariser ``eps`` = ``strength``
times that variance: where the local variance is near the noise's, pixels are averaged; at edges, whose
variance is well above it, the output keeps them. No weights, no training, any size (tile by tile).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# The fewest pixels per brightness bin for the noise fit; the estimate looks at a grid of blocks of at most
# this many pixels in all (noise is a property of the camera, not of where it is measured).
MIN_BIN_PIXELS = 64
ESTIMATE_PIXELS = 1 << 20
ESTIMATE_BLOCK = 64
# The floor of the signal-independent variance: 0.5/255 squared (quantisation alone gives (1/255)^2 / 12).
MIN_READ_VARIANCE = (0.5 / 255) ** 2


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the ``(2 radius + 1)^2`` window around each pixel (edges replicated): ``(B, C, H, W)``."""
    padded = F.pad(x, (radius,) * 4, mode="replicate")
    return F.avg_pool2d(padded, 2 * radius + 1, stride=1)


def _blocks(image: torch.Tensor) -> torch.Tensor:
    """At most :data:`ESTIMATE_PIXELS` of each image, as a grid of blocks: ``(B, n, 3, s, s)`` (or the
    whole image, ``(B, 1, 3, H, W)``, when it is small enough)."""
    b, c, h, w = image.shape
    if h * w <= ESTIMATE_PIXELS or min(h, w) < ESTIMATE_BLOCK:
        return image[:, None]
    side = int(math.sqrt(ESTIMATE_PIXELS / ESTIMATE_BLOCK**2))
    rows = torch.linspace(0, h - ESTIMATE_BLOCK, side).long().tolist()
    cols = torch.linspace(0, w - ESTIMATE_BLOCK, side).long().tolist()
    return torch.stack([image[:, :, r : r + ESTIMATE_BLOCK, q : q + ESTIMATE_BLOCK] for r in rows for q in cols], 1)


def estimate_noise(image: torch.Tensor, bins: int = 10, quantile: float = 0.02) -> torch.Tensor:
    """The Poisson-Gaussian noise of dark photos ``(B, 3, H, W)`` in [0, 1]: ``(B, 2)``, ``(a, b)`` with
    ``variance = a * signal + b`` (per channel; ``b`` at least :data:`MIN_READ_VARIANCE`).

    The residual of a 3x3 mean holds 8/9 of the noise variance and little of smooth content; its local mean
    (5x5, over the channels) is the local variance. In each of ``bins`` brightness bins the ``quantile`` of
    that variance is taken (the flattest places: texture only adds variance), and a line is fitted through
    them by least squares, weighted alike.
    """
    estimates = []
    for blocks in _blocks(image.float()):
        residual = blocks - box_mean(blocks, 1)
        variance = box_mean(residual.square().mean(1, keepdim=True), 2).flatten() * (9 / 8)
        level = box_mean(blocks.mean(1, keepdim=True), 2).flatten()
        edges = torch.quantile(level, torch.linspace(0.02, 0.98, bins + 1))
        points = [
            (level[inside].mean(), torch.quantile(variance[inside], quantile))
            for lo, hi in zip(edges[:-1], edges[1:])
            if (inside := (level >= lo) & (level < hi)).sum() >= MIN_BIN_PIXELS
        ]
        if len(points) < 2:  # a flat image: one level, no slope to fit
            estimates.append(torch.tensor([0.0, float(variance.median())]))
            continue
        x, y = (torch.stack(p) for p in zip(*points))
        design = torch.stack((x, torch.ones_like(x)), 1)
        estimates.append(torch.linalg.lstsq(design, y[:, None]).solution.flatten())
    noise = torch.stack(estimates).to(image.device)
    return torch.stack((noise[:, 0].clamp_min(0.0), noise[:, 1].clamp_min(MIN_READ_VARIANCE)), 1)


def guided_denoise(enhanced: torch.Tensor, original: torch.Tensor, noise: torch.Tensor | None = None,
                   strength: float = 3.0, radius: int = 3) -> torch.Tensor:
    """Smooth the noise that enhancement amplified: ``(B, 3, H, W)`` in [0, 1].

    :param enhanced: the enhanced images ``(B, 3, H, W)``.
    :param original: the dark inputs they came from (the noise is measured on them, the gain against them).
    :param noise: ``(B, 2)`` Poisson-Gaussian ``(a, b)`` of ``original``; default: :func:`estimate_noise`.
    :param strength: ``eps`` of the guided filter in units of the amplified noise variance: more smooths more.
    :param radius: the guided filter's window radius; the output depends on pixels up to ``2 * radius`` away.
    """
    a, b = (estimate_noise(original) if noise is None else noise).T[:, :, None, None, None]
    gain = (enhanced + 0.01) / (original + 0.01)  # +0.01: a black input pixel has no defined gain
    eps = strength * (gain.square() * (a * original.clamp(0, 1) + b)).mean(1, keepdim=True)
    guide = enhanced.mean(1, keepdim=True)
    guide_mean = box_mean(guide, radius)
    guide_variance = box_mean(guide.square(), radius) - guide_mean.square()
    means = box_mean(enhanced, radius)
    slope = (box_mean(guide * enhanced, radius) - guide_mean * means) / (guide_variance + eps)
    offset = means - slope * guide_mean
    return (box_mean(slope, radius) * guide + box_mean(offset, radius)).clamp_(0, 1)
